package server

import (
	"encoding/binary"
	"math"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/record"
)

// Produce: v3-12
//
// Each partition's records must be exactly one magic-2 batch. The server
// checks the framing, attributes and timestamps it owns (docs/protocol.md#produce-validation), the
// engine validates the batch (CRC, counts, keys on compacted topics,
// idempotent sequences) and appends it in place. Single node: after the
// append the high watermark moves to the end of the batch; for acks=all
// the log is fsynced first (group commit) unless kvlog.fsync.acks.all is
// false. acks=0 gets no response; an error then closes the connection, as
// Kafka does, so the client notices.
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

	type appended struct {
		p      *partition
		sp     *kmsg.ProduceResponseTopicPartition
		res    engine.AppendResult
		size   int
		minISR int
	}
	var (
		done     []appended
		firstErr error
	)
	acksErr := error(nil)
	if req.Acks != -1 && req.Acks != 0 && req.Acks != 1 {
		acksErr = topicErrf(kerr.InvalidRequiredAcks, "acks must be -1, 0 or 1, got %d", req.Acks)
	} else if req.TransactionID != nil {
		acksErr = topicErrf(kerr.TransactionalIDAuthorizationFailed, "transactions are not supported")
	}
	now := s.clock.Now().UnixMilli()

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
			sp.BaseOffset = -1
			sp.LogAppendTime = -1
			sp.LogStartOffset = -1
			err := acksErr
			var p *partition
			if err == nil {
				if t == nil || rp.Partition < 0 || int(rp.Partition) >= len(t.parts) {
					err = topicErrf(kerr.UnknownTopicOrPartition, "unknown topic or partition %s-%d", rt.Topic, rp.Partition)
				} else {
					p = t.parts[rp.Partition]
					err = checkProduceBatch(req.Version, rp.Records, &t.settings, now)
					if err == nil && p.log == nil {
						err = s.missingPartition(rt.Topic, rp.Partition) // cluster mode: hosted elsewhere
					}
					if err == nil && p.rep == nil && req.Acks == -1 && t.settings.minInsync > 1 {
						err = topicErrf(kerr.NotEnoughReplicas, "min.insync.replicas is %d but only 1 replica exists", t.settings.minInsync)
					}
				}
			}
			if err == nil {
				var res engine.AppendResult
				if p.rep != nil {
					// Cluster mode: leader checks, min.insync.replicas, the
					// leader epoch and the sole-ISR fsync are the replica's.
					res, err = p.rep.AppendAsLeader(rp.Records, req.Acks == -1, int(t.settings.minInsync), s.cfg.FsyncAcksAll)
				} else {
					res, err = p.log.Append(rp.Records, leaderEpoch)
				}
				if err == nil {
					done = append(done, appended{p, sp, res, len(rp.Records), int(t.settings.minInsync)})
				}
			}
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				sp.ErrorCode = errCode(err)
				if req.Version >= 8 {
					sp.ErrorMessage = errMessage(err)
				}
				if sp.ErrorCode == kerr.UnknownServerError.Code || sp.ErrorCode == kerr.KafkaStorageError.Code {
					r.log().Error("append failed", "topic", rt.Topic, "partition", rp.Partition, "err", err)
				}
			}
		}
	}

	// finish completes the request once the appends are durable as acks asks.
	finish := func() {
		for _, a := range done {
			if a.sp.ErrorCode != noError {
				continue
			}
			if a.p.rep == nil {
				a.p.raiseHighWatermark(a.res.LastOffset + 1) // cluster mode: the replica moves the HW
			}
			if !a.res.Duplicate {
				a.p.appended(a.size)
			}
			a.sp.BaseOffset = int64(a.res.BaseOffset)
			a.sp.LogAppendTime = a.res.LogAppendTime
			a.sp.LogStartOffset = int64(a.res.LogStartOffset)
		}

		if req.Acks == 0 {
			if firstErr != nil {
				r.fail(firstErr)
				return
			}
			r.noReply()
			return
		}
		if req.Acks == -1 && s.cluster != nil {
			var waits []ackWait
			for _, a := range done {
				if a.sp.ErrorCode == noError && a.p.rep != nil {
					waits = append(waits, ackWait{p: a.p, sp: a.sp, last: a.res.LastOffset, minISR: a.minISR})
				}
			}
			s.awaitAcks(r, resp, waits, time.Duration(req.TimeoutMillis)*time.Millisecond)
			return
		}
		r.reply(resp)
	}

	// Durability for acks=all: one fsync per partition (group commit in the
	// engine), partitions in parallel, off the connection's reader goroutine
	// so the client's next pipelined produce is appended while this one
	// syncs — and then shares its fsync. The response order is kept by the
	// connection's queue.
	var toSync []*partition
	if req.Acks == -1 && s.cfg.FsyncAcksAll {
		seen := map[*partition]bool{}
		for _, a := range done {
			if a.p.rep == nil && !seen[a.p] { // a replica fsyncs itself when it is the only ISR member
				seen[a.p] = true
				toSync = append(toSync, a.p)
			}
		}
	}
	if len(toSync) == 0 {
		finish()
		return
	}
	go func() {
		errs := make([]error, len(toSync))
		var wg sync.WaitGroup
		for i, p := range toSync {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = p.log.Sync()
			}()
		}
		wg.Wait()
		failed := map[*partition]error{}
		for i, err := range errs {
			if err != nil {
				failed[toSync[i]] = err
				r.log().Error("fsync failed", "topic", toSync[i].tp.Topic, "partition", toSync[i].tp.Partition, "err", err)
				if firstErr == nil {
					firstErr = err
				}
			}
		}
		for _, a := range done {
			if failed[a.p] != nil {
				a.sp.ErrorCode = kerr.KafkaStorageError.Code
			}
		}
		finish()
	}()
}

// checkProduceBatch checks what the server owns of the produce validation
// rules (docs/protocol.md#produce-validation): exactly one magic-2 batch
// with base offset 0, zstd only from v7, no control batches, no
// transactional batches, CreateTime timestamps within the topic's bounds.
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
	if attrs&record.AttrTransactional != 0 {
		return topicErrf(kerr.InvalidTxnState, "transactional batches are not supported")
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

// raiseHighWatermark moves the high watermark up to hw (never down).
func (p *partition) raiseHighWatermark(hw engine.Offset) {
	p.hwMu.Lock()
	if hw > p.log.HighWatermark() {
		p.log.SetHighWatermark(hw)
	}
	p.hwMu.Unlock()
}
