package replica

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A fetcher fetches through an incremental fetch session (KIP-227; the
// leader's side is the server's fetch session cache): its first fetch
// names every partition and opens a session; each later one names only
// the partitions whose fetch position (offset, log start, leader epoch)
// changed, those added, and as forgotten those it no longer fetches, and
// the leader answers only the partitions with something new. An idle
// follower of thousands of partitions then exchanges a few bytes per fetch
// instead of every partition every time. Any error (the leader lost the
// session, a wrong epoch, the connection) starts over with a full fetch.

// fetchSession is the client side of a fetcher's session. Owned by the
// fetcher's goroutine.
type fetchSession struct {
	id    int32 // 0: none (the next fetch is full and opens one)
	epoch int32
	// sent is what the leader holds for each partition of the session.
	sent map[tpKey]sentPartition
}

// sentPartition is a partition's fetch position as last sent.
type sentPartition struct {
	offset, logStart int64
	leaderEpoch      int32
}

func (s *fetchSession) reset() { *s = fetchSession{} }

// build fills req's session fields, topics and forgotten topics from the
// partitions to fetch now (fs, keyed by partition), and returns what the
// session will hold once the leader accepts it.
// same says fs are the requests of the last fetch (whose answer, if the
// session went on, made them the session's): the session is unchanged
// without comparing them.
func (s *fetchSession) build(req *kmsg.FetchRequest, fs []pendingReq, partitionMaxBytes int32, same bool) (next map[tpKey]sentPartition) {
	full := s.id == 0
	if full {
		req.SessionID, req.SessionEpoch = 0, 0 // open one
	} else {
		req.SessionID, req.SessionEpoch = s.id, s.epoch
		if same && len(fs) == len(s.sent) || s.unchanged(fs) {
			// Nothing to name, nothing forgotten: the session stays as
			// it is (an idle follower's every fetch; no new map).
			return s.sent
		}
	}
	next = make(map[tpKey]sentPartition, len(fs))
	topics := map[string]int{}
	for _, q := range fs {
		k := keyOf(q.p)
		sp := sentPartition{offset: int64(q.req.FetchOffset), logStart: int64(q.req.LogStart), leaderEpoch: q.req.CurrentLeaderEpoch}
		next[k] = sp
		if old, ok := s.sent[k]; !full && ok && old == sp {
			continue // the leader has it
		}
		i, ok := topics[k.topic]
		if !ok {
			t := kmsg.NewFetchRequestTopic()
			t.Topic = k.topic
			req.Topics = append(req.Topics, t)
			i = len(req.Topics) - 1
			topics[k.topic] = i
		}
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = k.partition
		rp.CurrentLeaderEpoch = sp.leaderEpoch
		rp.FetchOffset = sp.offset
		rp.LastFetchedEpoch = -1
		rp.LogStartOffset = sp.logStart
		rp.PartitionMaxBytes = partitionMaxBytes
		req.Topics[i].Partitions = append(req.Topics[i].Partitions, rp)
	}
	if !full {
		forgotten := map[string]int{}
		for k := range s.sent {
			if _, ok := next[k]; ok {
				continue
			}
			i, ok := forgotten[k.topic]
			if !ok {
				ft := kmsg.NewFetchRequestForgottenTopic()
				ft.Topic = k.topic
				req.ForgottenTopics = append(req.ForgottenTopics, ft)
				i = len(req.ForgottenTopics) - 1
				forgotten[k.topic] = i
			}
			req.ForgottenTopics[i].Partitions = append(req.ForgottenTopics[i].Partitions, k.partition)
		}
	}
	return next
}

// unchanged reports whether fs are exactly the session's partitions at the
// positions last sent.
func (s *fetchSession) unchanged(fs []pendingReq) bool {
	if len(fs) != len(s.sent) {
		return false
	}
	for _, q := range fs {
		old, ok := s.sent[keyOf(q.p)]
		if !ok || old != (sentPartition{offset: int64(q.req.FetchOffset), logStart: int64(q.req.LogStart), leaderEpoch: q.req.CurrentLeaderEpoch}) {
			return false
		}
	}
	return true
}

// answered records the leader's answer to a fetch built with next: the
// session it opened or went on with, or a session error (reset).
func (s *fetchSession) answered(resp *kmsg.FetchResponse, next map[tpKey]sentPartition) {
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		s.reset()
		return
	}
	if resp.SessionID == 0 {
		s.reset() // no room on the leader: full fetches
		return
	}
	if s.id != resp.SessionID {
		s.id, s.epoch = resp.SessionID, 0
	}
	s.epoch++
	if s.epoch <= 0 {
		s.epoch = 1
	}
	s.sent = next
}

// sessionError reports whether err is one of the session errors a full
// fetch recovers from at once.
func sessionError(err error) bool {
	return errors.Is(err, kerr.FetchSessionIDNotFound) || errors.Is(err, kerr.InvalidFetchSessionEpoch)
}
