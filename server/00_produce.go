package server

import (
	"encoding/binary"
	"math"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/replica"
	"github.com/kvlog/kvlog/server/txn"
)

// Produce: v3-12
//
// Each partition's records must be exactly one magic-2 batch. The server
// checks the framing, attributes and timestamps it owns (docs/protocol.md#produce-validation), the
// engine validates the batch (CRC, counts, keys on compacted topics,
// idempotent sequences) and appends it in place, through the partition
// manager (replica.Manager) on a single node and in a cluster alike: the
// high watermark passes the batch once it is as durable as configured
// (fsynced while the leader is alone in the ISR with kvlog.fsync.acks.all,
// replicated to the ISR otherwise). acks=1 is answered after the append,
// acks=all once the high watermark passed the batch (REQUEST_TIMED_OUT
// after the request's timeout). acks=0 gets no response; an error then
// closes the connection, as Kafka does, so the client notices.
//
// Transactions: a request with a TransactionalID is served only while the
// local transaction coordinator has an ongoing transaction for it (else
// TRANSACTIONAL_ID_AUTHORIZATION_FAILED for every partition, as before
// transactions); its transactional batches must carry that transaction's
// producer id and epoch and go to partitions added to it (checkTxnBatch).
// A transactional batch without a TransactionalID is INVALID_TXN_STATE.
// The engine then tracks the partition's open transaction until the
// coordinator's marker ends it.
//
// Version notes:
//   - v3: magic-2 batches only, TransactionalID.
//   - v5: LogStartOffset in the response.
//   - v7: zstd allowed (earlier versions: UNSUPPORTED_COMPRESSION_TYPE).
//   - v8: ErrorMessage (RecordErrors left empty: the engine does not name the record).
//   - v9: flexible.
//   - v10-11: KIP-951 leader hints, only for NOT_LEADER errors (never sent).
//   - v12: KIP-890 (transactions); no difference without transactions.
//
// Advertised as v0-12 (advertiseFrom), as Apache Kafka 4.0 does: librdkafka
// before 2.8 sends gzip, snappy and lz4 batches uncompressed to a broker
// whose advertised Produce range lacks v0 (docs/protocol.md#librdkafka-and-produce-v0). A v0-2
// request still closes the connection.
func init() {
	regKey(kmsg.Produce, 3, 12, (*Server).handleProduce)
	advertiseFrom(kmsg.Produce, 0)
}

func (s *Server) handleProduce(r *request) {
	req := r.kreq.(*kmsg.ProduceRequest)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)

	var (
		waits    []replica.AckWait
		acked    []*kmsg.ProduceResponseTopicPartition // of waits
		firstErr error
	)
	acksErr := error(nil)
	if req.Acks != -1 && req.Acks != 0 && req.Acks != 1 {
		acksErr = topicErrf(kerr.InvalidRequiredAcks, "acks must be -1, 0 or 1, got %d", req.Acks)
	}
	var txnDesc *txn.Description // the transaction of req.TransactionID
	if acksErr == nil && req.TransactionID != nil {
		d, err := s.txns.Describe(*req.TransactionID)
		if err != nil || d.State != txn.Ongoing {
			// No transaction of this id here (the transaction APIs are not
			// served yet): refused as before transactions existed.
			acksErr = topicErrf(kerr.TransactionalIDAuthorizationFailed, "transactional id %q has no ongoing transaction on this broker", *req.TransactionID)
		} else {
			txnDesc = &d
		}
	}
	now := s.clock.Now().UnixMilli()
	// WRITE on each topic, before anything else about it (authz_apis.go).
	allowed := r.authorizedNames(opWrite, resTopic, topicNames(req.Topics, func(t *kmsg.ProduceRequestTopic) string { return t.Topic }))
	fail := func(sp *kmsg.ProduceResponseTopicPartition, topic string, err error) {
		if firstErr == nil {
			firstErr = err
		}
		sp.ErrorCode = errCode(err)
		sp.BaseOffset, sp.LogAppendTime, sp.LogStartOffset = -1, -1, -1
		if req.Version >= 8 {
			sp.ErrorMessage = errMessage(err)
		}
		if sp.ErrorCode == kerr.UnknownServerError.Code || sp.ErrorCode == kerr.KafkaStorageError.Code {
			r.log().Error("append failed", "topic", topic, "partition", sp.Partition, "err", err)
		}
	}

	defer s.replicas.HoldCommits()() // one group commit for the request's partitions (replica.Manager.HoldCommits)
	resp.Topics = make([]kmsg.ProduceResponseTopic, len(req.Topics))
	for ti := range req.Topics {
		rt := &req.Topics[ti]
		st := &resp.Topics[ti]
		*st = kmsg.NewProduceResponseTopic()
		st.Topic = rt.Topic
		st.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(rt.Partitions))
		t := s.topic(rt.Topic)
		for pi := range rt.Partitions {
			rp := &rt.Partitions[pi]
			sp := &st.Partitions[pi]
			*sp = kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			if !allowed.ok(rt.Topic) {
				fail(sp, rt.Topic, topicErrf(kerr.TopicAuthorizationFailed, "not authorized to write to topic %s", rt.Topic))
				continue
			}
			p, res, err := s.produceTo(t, rt.Topic, rp, req, txnDesc, now, acksErr)
			if err != nil {
				fail(sp, rt.Topic, err)
				continue
			}
			sp.BaseOffset = int64(res.BaseOffset)
			sp.LogAppendTime = res.LogAppendTime
			sp.LogStartOffset = int64(res.LogStartOffset)
			if req.Acks == -1 {
				waits = append(waits, replica.AckWait{P: p.rep, Last: res.LastOffset, MinISR: int(t.settings.minInsync)})
				acked = append(acked, sp)
			}
		}
	}

	switch req.Acks {
	case 0:
		if firstErr != nil {
			r.fail(firstErr)
			return
		}
		r.noReply()
	case -1:
		// Answered once the high watermark passed every batch: fsynced or
		// replicated as configured (replica.Manager), off this goroutine,
		// so the client's next pipelined produce appends meanwhile and
		// shares the fsync. The connection's queue keeps the order.
		s.replicas.AwaitAcks(waits, time.Duration(req.TimeoutMillis)*time.Millisecond, func() {
			for i, w := range waits {
				if w.Err != nil {
					fail(acked[i], w.P.Log().TopicPartition().Topic, w.Err)
				}
			}
			r.reply(resp)
		})
	default:
		r.reply(resp)
	}
}

// produceTo validates one partition's batch and appends it as its leader.
func (s *Server) produceTo(t *topic, name string, rp *kmsg.ProduceRequestTopicPartition, req *kmsg.ProduceRequest, td *txn.Description, now int64, err error) (*partition, engine.AppendResult, error) {
	var res engine.AppendResult
	switch {
	case err != nil:
		return nil, res, err
	case t == nil || rp.Partition < 0 || int(rp.Partition) >= len(t.parts):
		return nil, res, topicErrf(kerr.UnknownTopicOrPartition, "unknown topic or partition %s-%d", name, rp.Partition)
	}
	if err := checkProduceBatch(req.Version, rp.Records, &t.settings, now); err != nil {
		return nil, res, err
	}
	if err := checkTxnBatch(rp.Records, td, name, rp.Partition); err != nil {
		return nil, res, err
	}
	p := t.parts[rp.Partition]
	if p.log == nil { // not hosted here
		return nil, res, s.missingPartition(name, rp.Partition)
	}
	res, err = s.replicas.Append(p.rep, rp.Records, req.Acks == -1, int(t.settings.minInsync))
	return p, res, err
}

// checkProduceBatch checks what the server owns of the produce validation
// rules (docs/protocol.md#produce-validation): exactly one magic-2 batch
// with base offset 0, zstd only from v7, no control batches, no
// transactional batches unless checkTxnBatch accepts them, CreateTime
// timestamps within the topic's bounds.
func checkProduceBatch(version int16, b []byte, ts *topicSettings, now int64) error {
	if len(b) == 0 {
		return topicErrf(kerr.InvalidRecord, "produce v%d without a record batch", version)
	}
	if len(b) < record.HeaderSize {
		return topicErrf(kerr.CorruptMessage, "record batch of %d bytes is shorter than its header", len(b))
	}
	if b[record.OffMagic] != record.Magic {
		return topicErrf(kerr.InvalidRecord, "record batch magic %d; only magic 2 is accepted", b[record.OffMagic])
	}
	// Kafka's UnifiedLog.analyzeAndValidateRecords: a client's magic-2
	// batch starts at offset 0 (the broker assigns the offsets).
	if base := int64(binary.BigEndian.Uint64(b)); base != 0 {
		return topicErrf(kerr.InvalidRecord, "the baseOffset of the record batch should be 0, but it is %d", base)
	}
	n := int64(int32(binary.BigEndian.Uint32(b[record.OffLength:]))) + record.LogOverhead
	switch {
	case n < record.HeaderSize || n > int64(len(b)):
		return topicErrf(kerr.CorruptMessage, "record batch length %d does not match the %d bytes sent", n, len(b))
	case n < int64(len(b)):
		return topicErrf(kerr.InvalidRecord, "more than one record batch for one partition")
	}
	attrs := int16(binary.BigEndian.Uint16(b[record.OffAttributes:]))
	if record.Codec(attrs&record.AttrCodecMask) == record.CodecZstd && version < 7 {
		return topicErrf(kerr.UnsupportedCompressionType, "zstd needs produce v7+, got v%d", version)
	}
	if attrs&record.AttrControl != 0 {
		return topicErrf(kerr.InvalidRecord, "control batches may not be produced by clients")
	}
	if !ts.logAppendTime && (ts.timestampBefore != math.MaxInt64 || ts.timestampAfter != math.MaxInt64) {
		for _, off := range []int{record.OffBaseTimestamp, record.OffMaxTimestamp} {
			t := int64(binary.BigEndian.Uint64(b[off:]))
			if t < 0 {
				continue // no timestamp
			}
			if ts.timestampBefore != math.MaxInt64 && t < now-ts.timestampBefore ||
				ts.timestampAfter != math.MaxInt64 && t > now+ts.timestampAfter {
				return topicErrf(kerr.InvalidTimestamp, "timestamp %d is outside [now-%d, now+%d] (message.timestamp.before/after.max.ms)", t, ts.timestampBefore, ts.timestampAfter)
			}
		}
	}
	return nil
}

// checkTxnBatch accepts a transactional batch only in a produce request
// naming its transactional id, whose ongoing transaction (td) is the
// batch's producer id and epoch and includes the partition (the
// coordinator's AddPartitionsToTxn came first, as the client must ensure):
// an older epoch is PRODUCER_FENCED, anything else INVALID_TXN_STATE.
// b passed checkProduceBatch.
func checkTxnBatch(b []byte, td *txn.Description, topic string, partition int32) error {
	bt := record.Batch(b)
	if !bt.IsTransactional() {
		return nil
	}
	if td == nil {
		return topicErrf(kerr.InvalidTxnState, "transactional batch for %s-%d without a transactional id", topic, partition)
	}
	if bt.ProducerID() != td.ProducerID || bt.ProducerEpoch() != td.ProducerEpoch {
		if bt.ProducerID() == td.ProducerID && bt.ProducerEpoch() < td.ProducerEpoch {
			return topicErrf(kerr.ProducerFenced, "%s-%d: producer %d epoch %d fenced by epoch %d", topic, partition, bt.ProducerID(), bt.ProducerEpoch(), td.ProducerEpoch)
		}
		return topicErrf(kerr.InvalidTxnState, "%s-%d: batch of producer %d epoch %d, transaction %q is producer %d epoch %d", topic, partition, bt.ProducerID(), bt.ProducerEpoch(), td.TransactionalID, td.ProducerID, td.ProducerEpoch)
	}
	for _, tp := range td.Partitions {
		if tp.Topic == topic && tp.Partition == partition {
			return nil
		}
	}
	return topicErrf(kerr.InvalidTxnState, "%s-%d was not added to transaction %q", topic, partition, td.TransactionalID)
}
