package server

import (
	"fmt"
	"runtime/debug"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/replica"
	"github.com/kvlog/kvlog/server/fetchsession"
	"github.com/kvlog/kvlog/server/quota"

	"github.com/kvlog/kvlog/server/wire"
)

// Fetch: v4-12
//
// Each partition's data is an engine read (file ranges) spliced into the
// kmsg-encoded response (package wire): written with sendfile, never
// copied through user space, except for a reply carrying at most 16 KiB
// of record data, which is read into one buffer and written at once (one
// write instead of five syscalls).
//
// Behaviour:
//   - Sessions (KIP-227, fetch_sessions.go and package fetchsession): a
//     full fetch with epoch 0 opens one (up to 1,000 at once, Kafka's
//     max.incremental.fetch.session.cache.slots default), an incremental
//     fetch reads the partitions of its session whose answer may have
//     changed (package fetchsession passes over the others) and the
//     answer lists only those with records, an error or new offsets; an
//     unknown session is FETCH_SESSION_ID_NOT_FOUND, a wrong epoch
//     INVALID_FETCH_SESSION_EPOCH.
//   - read_uncommitted reads stop at the high watermark, read_committed
//     ones at the last stable offset (the first offset of the earliest
//     undecided transaction), with the aborted transactions overlapping
//     [fetch offset, last stable offset) so the consumer drops their
//     records; the data itself is the same zero-copy file range. Aborted
//     transactions are an empty (never null) list under read_uncommitted,
//     and LastStableOffset is reported only for a log whose producer state
//     is loaded (else the high watermark), so such fetches never load it.
//     Records never null. OFFSET_OUT_OF_RANGE outside [log start, log
//     end].
//   - Byte limits: the first batch of the first partition with data is
//     returned whole; after that a partition's data must fit both its own
//     limit and what is left of MaxBytes.
//   - MinBytes/MaxWaitMillis: a fetch short of MinBytes parks without a
//     goroutine in the partition manager (replica.Manager.Park: registered
//     on its partitions plus a timer). It is evaluated again when one of
//     them moves (its high watermark; a follower's, its log end), changes
//     role or is deleted, and answered once it has enough bytes, at the
//     deadline or at shutdown. Any partition error answers at once.
//
// Version notes:
//   - v4: isolation level, LastStableOffset, AbortedTransactions.
//   - v5: LogStartOffset.
//   - v7: sessions.
//   - v9: CurrentLeaderEpoch (KIP-320) checked against the leader epoch
//     (0 on a single node).
//   - v11: rack (ignored); PreferredReadReplica -1.
//   - v12: flexible; LastFetchedEpoch (divergence is never reported: epoch 0 only).
func init() { regKey(kmsg.Fetch, 4, 12, (*Server).handleFetch) }

func (s *Server) handleFetch(r *request) {
	req := r.kreq.(*kmsg.FetchRequest)
	sess, err := s.beginFetchSession(req)
	if err != nil {
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		resp.ErrorCode = errCode(err)
		resp.Topics = []kmsg.FetchResponseTopic{}
		r.reply(resp)
		return
	}
	s.fetchAccess(r, req)
	s.fetch(r, req, sess, false)
}

// fetchAccess authorizes req's topics and applies the consumer's byte
// quota to its limits.
func (s *Server) fetchAccess(r *request, req *kmsg.FetchRequest) {
	// Consumers need READ on each topic; followers CLUSTER_ACTION, else
	// every partition is TOPIC_AUTHORIZATION_FAILED (authz_apis.go).
	if req.ReplicaID >= 0 {
		if !r.authorizeCluster(opClusterAction) {
			r.topicsAllowed = authzSet{}
		}
	} else {
		r.topicsAllowed = r.authorizedNames(opRead, resTopic, topicNames(req.Topics, func(t *kmsg.FetchRequestTopic) string { return t.Topic }))
	}
	if req.ReplicaID < 0 {
		if capBytes, ok := s.quotas.maxFetchBytes(r); ok { // consumer_byte_rate (quotas.go)
			req.MaxBytes = min(req.MaxBytes, capBytes)
			for ti := range req.Topics {
				for pi := range req.Topics[ti].Partitions {
					p := &req.Topics[ti].Partitions[pi]
					p.PartitionMaxBytes = min(p.PartitionMaxBytes, capBytes)
				}
			}
		}
	}
}

// fetch builds the response; unless final, a fetch short of MinBytes parks.
// sess is the fetch's session (nil: none).
func (s *Server) fetch(r *request, req *kmsg.FetchRequest, sess *fetchsession.Fetch, final bool) {
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	var (
		reads    []partRead
		total    int64
		anyError bool
		watched  []replica.Watched
	)
	releaseAll := func() {
		for _, pr := range reads {
			pr.read.Release()
		}
	}
	resp.Topics = make([]kmsg.FetchResponseTopic, len(req.Topics))
	i := 0 // the partition's place in the session's Partitions
	for ti := range req.Topics {
		rt := &req.Topics[ti]
		st := &resp.Topics[ti]
		*st = kmsg.NewFetchResponseTopic()
		st.Topic = rt.Topic
		st.TopicID = rt.TopicID
		st.Partitions = make([]kmsg.FetchResponseTopicPartition, len(rt.Partitions))
		for pi := range rt.Partitions {
			rp := &rt.Partitions[pi]
			sp := &st.Partitions[pi]
			*sp = kmsg.NewFetchResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.RecordBatches = []byte{}
			sp.AbortedTransactions = []kmsg.FetchResponseTopicPartitionAbortedTransaction{}
			sp.PreferredReadReplica = -1
			rd, clock := sess.Read(i), sess.Clock(i)
			i++
			if !r.topicsAllowed.ok(rt.Topic) {
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				anyError = true
				continue
			}

			read, err := s.fetchPartition(rt.Topic, req.ReplicaID, req.IsolationLevel == 1, rp, sp, int32(req.MaxBytes)-int32(total), total > 0, &watched, rd, clock)
			if err != nil {
				sp.ErrorCode = errCode(err)
				anyError = true
				if sp.ErrorCode == kerr.UnknownServerError.Code || sp.ErrorCode == kerr.KafkaStorageError.Code {
					r.log().Error("fetch read failed", "topic", rt.Topic, "partition", rp.Partition, "err", err)
				}
				continue
			}
			if read != nil {
				reads = append(reads, partRead{ti, pi, read})
				total += read.Size
			}
		}
	}

	if !final && !anyError && total < int64(req.MinBytes) && !s.closing.Load() {
		// MaxWait counts from the request's arrival, on the broker's
		// clock (the parked fetch's timer runs on it too).
		deadline := r.arrived.Add(time.Duration(req.MaxWaitMillis) * time.Millisecond)
		if wait := deadline.Sub(s.clock.Now()); wait > 0 && (len(watched) > 0 || sess.Skipped() > 0) {
			releaseAll()
			read := total > 0
			s.parkFetch(watched, sess, req.ReplicaID >= 0, wait, func(final bool) {
				if final && !read {
					// The wait ended with no partition moved (a move
					// wakes the fetch early, final false) and nothing
					// was read: the answer is the one just built, not
					// read again. An idle follower or consumer of many
					// partitions otherwise read every one twice per
					// wait.
					s.fetchAgainWith(r, req, sess, resp)
					return
				}
				s.fetchAgain(r, req, sess, final)
			})
			return
		}
	}
	s.answerFetch(r, req, sess, resp, reads)
}

// partRead is a partition read of a fetch: where its answer is in the
// response, and the data.
type partRead struct {
	ti, pi int
	read   *engine.ReadResult
}

// answerFetch sends resp, the answer to req, with the data of reads (the
// session, if any, keeps the partitions it lists).
func (s *Server) answerFetch(r *request, req *kmsg.FetchRequest, sess *fetchsession.Fetch, resp *kmsg.FetchResponse, reads []partRead) {
	total := int64(0)
	for _, pr := range reads {
		total += pr.read.Size
	}
	releaseAll := func() {
		for _, pr := range reads {
			pr.read.Release()
		}
	}

	if req.ReplicaID < 0 && total > 0 {
		// consumer_byte_rate (quotas.go): over the quota, the fetch is
		// answered empty with the throttle time, its bytes not counted.
		if d := s.quotas.record(quota.ConsumerByteRate, r, float64(total)); d > 0 {
			s.quotas.unrecord(quota.ConsumerByteRate, r, float64(total))
			releaseAll()
			reads = nil
			r.throttle(d)
			resp.Topics = []kmsg.FetchResponseTopic{}
			resp.ThrottleMillis = r.throttleMs.Load()
		}
	}
	if ms := r.throttleMs.Load(); ms > resp.ThrottleMillis {
		resp.ThrottleMillis = ms
	}
	if sess != nil {
		data := map[[2]int]bool{}
		for _, pr := range reads {
			data[[2]int{pr.ti, pr.pi}] = true
		}
		moved := sessionAnswer(sess, resp, func(ti, pi int) bool { return data[[2]int{ti, pi}] })
		for i := range reads {
			reads[i].ti, reads[i].pi = moved(reads[i].ti, reads[i].pi)
		}
	}
	recs := make([]wire.FetchRecords, len(reads))
	for i, pr := range reads {
		recs[i] = wire.FetchRecords{Part: &resp.Topics[pr.ti].Partitions[pr.pi], Read: pr.read}
	}
	reply, err := wire.EncodeFetch(r.hdr.corr, resp, recs)
	if err != nil {
		releaseAll()
		r.fail(err)
		return
	}
	r.finish(result{fetch: reply})
}

// fetchPartition fills sp's offsets and error and reads the partition's
// data. budget is what MaxBytes has left; haveData says an earlier
// partition returned data (so the first-batch-whole rule no longer
// applies). A partition that can wait for data is added to watched.
func (s *Server) fetchPartition(topic string, replicaID int32, committed bool, rp *kmsg.FetchRequestTopicPartition, sp *kmsg.FetchResponseTopicPartition,
	budget int32, haveData bool, watched *[]replica.Watched, rd *fetchsession.Read, sessionClock *fetchsession.Clock) (*engine.ReadResult, error) {
	s.partitionReads.Add(1)
	p := s.partition(topic, rp.Partition)
	if p == nil {
		return nil, s.missingPartition(topic, rp.Partition)
	}
	if rd != nil { // (first: see FetchState)
		rd.Counter = p.rep.FetchCounter()
		rd.Moves = rd.Counter.Load()
	}
	hw := p.log.HighWatermark()
	readTo := hw // consumers read below the HW; followers up to the LEO
	if replicaID >= 0 {
		var err error
		if hw, readTo, err = s.followerFetch(p, replicaID, rp, sp, sessionClock); err != nil {
			return nil, err
		}
	} else if err := s.checkPartitionEpoch(p, rp.CurrentLeaderEpoch); err != nil {
		return nil, err
	}
	lso := p.log.LogStartOffset()
	leo := p.log.LogEndOffset()
	sp.HighWatermark = int64(hw)
	sp.LastStableOffset = int64(hw)
	sp.LogStartOffset = int64(lso)
	off := engine.Offset(rp.FetchOffset)
	if off < lso || off > leo {
		return nil, kerr.OffsetOutOfRange
	}
	if replicaID < 0 {
		if committed {
			stable := min(p.log.LastStableOffset(), hw)
			sp.LastStableOffset = int64(stable)
			readTo = stable
			if off < readTo {
				aborted, err := p.log.AbortedTxns(off, readTo)
				if err != nil {
					return nil, err
				}
				for _, a := range aborted {
					sp.AbortedTransactions = append(sp.AbortedTransactions, kmsg.FetchResponseTopicPartitionAbortedTransaction{ProducerID: a.ProducerID, FirstOffset: int64(a.FirstOffset)})
				}
			}
		} else {
			sp.LastStableOffset = int64(min(p.log.LoadedLastStableOffset(), hw))
		}
	}
	// A parked fetch wakes when the end it watches moves past what it saw:
	// the high watermark for a consumer (a read_committed one included,
	// whose last stable offset moves only with it), the log end for a
	// follower. (Seen as the last stable offset, below the high watermark
	// while a transaction is open, looked like a move at once: the fetch
	// was read again and parked again without pause until its deadline.)
	seen := hw
	if replicaID >= 0 {
		seen = readTo
	}
	*watched = append(*watched, replica.Watched{P: p.rep, Follower: replicaID >= 0, Seen: seen})
	if off >= readTo {
		if rd != nil {
			rd.CaughtUp = true
		}
		return nil, nil
	}
	limit := rp.PartitionMaxBytes
	if haveData {
		limit = min(limit, budget)
		if limit <= 0 {
			return nil, nil
		}
	}
	read, err := p.log.Read(off, int(max(limit, 1)), readTo)
	if err != nil {
		return nil, err
	}
	if read.Size == 0 || (haveData && read.Size > int64(limit)) {
		read.Release()
		return nil, nil
	}
	return read, nil
}

// fetchAgain answers a parked fetch (final: at its deadline or shutdown),
// or parks it again while it is still short of MinBytes.
func (s *Server) fetchAgain(r *request, req *kmsg.FetchRequest, sess *fetchsession.Fetch, final bool) {
	defer func() {
		if v := recover(); v != nil {
			r.log().Error("fetch completion panicked; closing connection", "panic", v, "stack", string(debug.Stack()))
			s.metrics.Panics.Inc()
			r.fail(fmt.Errorf("fetch panic: %v", v))
		}
	}()
	if sess.Refresh() {
		sessionRequest(req, sess) // a partition passed over moved
		s.fetchAccess(r, req)
	}
	s.fetch(r, req, sess, final)
}

// fetchAgainWith answers a parked fetch with resp, built before it parked.
func (s *Server) fetchAgainWith(r *request, req *kmsg.FetchRequest, sess *fetchsession.Fetch, resp *kmsg.FetchResponse) {
	defer func() {
		if v := recover(); v != nil {
			r.log().Error("fetch completion panicked; closing connection", "panic", v, "stack", string(debug.Stack()))
			s.metrics.Panics.Inc()
			r.fail(fmt.Errorf("fetch panic: %v", v))
		}
	}()
	s.answerFetch(r, req, sess, resp, nil)
}
