package server

import (
	"encoding/binary"
	"errors"
	"sync"
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
// Transactions: when this broker coordinates the request's
// TransactionalID, its transactional batches must belong to the id's
// ongoing transaction: that transaction's producer id and epoch, a
// partition added to it (checkTxnBatch; an older epoch is PRODUCER_FENCED,
// anything else INVALID_TXN_STATE, as Kafka 3.9's verification answers
// clients before Produce v11). When another broker coordinates it
// (cluster mode), the batches are taken unverified, as Kafka did before
// KIP-890: the partition's producer state still refuses older epochs. A
// transactional batch without a TransactionalID is INVALID_TXN_STATE. The
// engine then tracks the partition's open transaction until the
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
	var tc txnCheck // the transaction of req.TransactionID
	if acksErr == nil && req.TransactionID != nil {
		d, err := s.txns.Describe(*req.TransactionID)
		switch {
		case err == nil:
			tc.desc = &d
		case errors.Is(err, txn.ErrNotCoordinator):
			tc.unverified = true // another broker coordinates it
		case errors.Is(err, txn.ErrTransactionalIDNotFound):
			tc.unknownID = *req.TransactionID
		default:
			acksErr = err // loading, shutting down: retriable
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
			p, res, err := s.produceTo(t, rt.Topic, rp, req, tc, now, acksErr)
			if err != nil {
				fail(sp, rt.Topic, err)
				continue
			}
			sp.BaseOffset = int64(res.BaseOffset)
			sp.LogAppendTime = res.LogAppendTime
			sp.LogStartOffset = int64(res.LogStartOffset)
			if req.Acks == -1 {
				waits = append(waits, replica.AckWait{P: p.rep, Last: res.LastOffset, MinISR: int(t.settings.MinInsync)})
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
		r.releaseFrame()
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
func (s *Server) produceTo(t *topic, name string, rp *kmsg.ProduceRequestTopicPartition, req *kmsg.ProduceRequest, tc txnCheck, now int64, err error) (*partition, engine.AppendResult, error) {
	var res engine.AppendResult
	switch {
	case err != nil:
		return nil, res, err
	case t == nil || rp.Partition < 0 || int(rp.Partition) >= len(t.parts):
		return nil, res, topicErrf(kerr.UnknownTopicOrPartition, "unknown topic or partition %s-%d", name, rp.Partition)
	}
	if err := checkProduceBatch(req.Version, rp.Records); err != nil {
		return nil, res, err
	}
	if err := checkTxnBatch(rp.Records, tc, req.TransactionID != nil, name, rp.Partition); err != nil {
		return nil, res, err
	}
	p := t.parts[rp.Partition]
	if p.log == nil { // not hosted here
		return nil, res, s.missingPartition(name, rp.Partition)
	}
	b := rp.Records
	if t.settings.Recompress && record.Batch(b).Codec() != t.settings.Codec {
		if b, err = recompressBatch(b, t.settings.Codec, name, rp.Partition); err != nil {
			return nil, res, err
		}
	}
	res, err = s.replicas.Append(p.rep, b, req.Acks == -1, int(t.settings.MinInsync))
	return p, res, err
}

// checkProduceBatch checks what the server owns of the produce validation
// rules (docs/protocol.md#produce-validation): exactly one magic-2 batch
// with base offset 0, zstd only from v7, no control batches, no
// transactional batches unless checkTxnBatch accepts them. The engine
// checks the rest, record timestamps included.
func checkProduceBatch(version int16, b []byte) error {
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
	return nil
}

// txnCheck is what the local coordinator knows of a produce request's
// transactional id: its description (desc), that another broker
// coordinates it (unverified), or that it is unknown here (unknownID).
type txnCheck struct {
	desc       *txn.Description
	unverified bool
	unknownID  string
}

// checkTxnBatch accepts a transactional batch only in a produce request
// naming a transactional id (hasID), and, when this broker coordinates
// it, only for its ongoing transaction: the batch's producer id and epoch
// and a partition added to it (AddPartitionsToTxn came first, as the
// client must ensure). An older epoch is PRODUCER_FENCED, anything else
// INVALID_TXN_STATE. b passed checkProduceBatch.
func checkTxnBatch(b []byte, tc txnCheck, hasID bool, topic string, partition int32) error {
	bt := record.Batch(b)
	if !bt.IsTransactional() {
		return nil
	}
	if !hasID {
		return topicErrf(kerr.InvalidTxnState, "transactional batch for %s-%d without a transactional id", topic, partition)
	}
	if tc.unverified {
		return nil
	}
	td := tc.desc
	if td == nil {
		return topicErrf(kerr.InvalidTxnState, "%s-%d: transactional id %q is unknown to its coordinator", topic, partition, tc.unknownID)
	}
	if bt.ProducerID() != td.ProducerID || bt.ProducerEpoch() != td.ProducerEpoch {
		if bt.ProducerID() == td.ProducerID && bt.ProducerEpoch() < td.ProducerEpoch {
			return topicErrf(kerr.ProducerFenced, "%s-%d: producer %d epoch %d fenced by epoch %d", topic, partition, bt.ProducerID(), bt.ProducerEpoch(), td.ProducerEpoch)
		}
		return topicErrf(kerr.InvalidTxnState, "%s-%d: batch of producer %d epoch %d, transaction %q is producer %d epoch %d", topic, partition, bt.ProducerID(), bt.ProducerEpoch(), td.TransactionalID, td.ProducerID, td.ProducerEpoch)
	}
	if td.State != txn.Ongoing {
		return topicErrf(kerr.InvalidTxnState, "%s-%d: transaction %q is %s, not ongoing", topic, partition, td.TransactionalID, td.State)
	}
	for _, tp := range td.Partitions {
		if tp.Topic == topic && tp.Partition == partition {
			return nil
		}
	}
	return topicErrf(kerr.InvalidTxnState, "%s-%d was not added to transaction %q", topic, partition, td.TransactionalID)
}

// recoders are the decoders and builders recompressBatch reuses.
var recoders = sync.Pool{New: func() any { return new(recoder) }}

type recoder struct {
	d  record.Decoder
	bl record.Builder
}

// recompressBatch rewrites a produced batch in the topic's compression.type
// codec, as Kafka's leader does (docs/protocol.md#produce-validation). The
// result is a new slice: the request's buffer is left as it was.
func recompressBatch(b []byte, c record.Codec, topic string, partition int32) ([]byte, error) {
	rc := recoders.Get().(*recoder)
	defer recoders.Put(rc)
	out, err := record.Recompress(make([]byte, 0, len(b)), record.Batch(b), c, &rc.d, &rc.bl)
	switch {
	case errors.Is(err, record.ErrUnsupportedCodec):
		return nil, topicErrf(kerr.UnsupportedCompressionType, "%s-%d: %v", topic, partition, err)
	case errors.Is(err, record.ErrCorrupt):
		return nil, topicErrf(kerr.CorruptMessage, "%s-%d: recompressing to %v: %v", topic, partition, c, err)
	case err != nil:
		return nil, topicErrf(kerr.InvalidRecord, "%s-%d: recompressing to %v: %v", topic, partition, c, err)
	}
	return out, nil
}
