package server

import (
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/replica"
	"github.com/kvlog/kvlog/server/fetchsession"
)

// Incremental fetch sessions (KIP-227; package fetchsession has the
// protocol and the cache's bounds): a fetch naming a session reads every
// partition of the session and answers only those with something new.

// beginFetchSession resolves req's session fields (v7+). For a fetch with a
// session, req.Topics is replaced by the session's partitions (the order
// the answer is built in); a fetch without one is left as it is. err is the
// fetch's top-level error.
func (s *Server) beginFetchSession(req *kmsg.FetchRequest) (*fetchsession.Fetch, error) {
	if req.Version < 7 || (req.SessionID == 0 && req.SessionEpoch < 0) {
		return nil, nil // no session, none to close (clients without sessions send epoch -1)
	}
	var parts []fetchsession.Partition
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			parts = append(parts, fetchsession.Partition{Key: fetchsession.Key{Topic: t.Topic, Partition: p.Partition},
				FetchOffset: p.FetchOffset, LogStartOffset: p.LogStartOffset, MaxBytes: p.PartitionMaxBytes,
				CurrentLeaderEpoch: p.CurrentLeaderEpoch, LastFetchedEpoch: p.LastFetchedEpoch})
		}
	}
	var forgotten []fetchsession.Key
	for _, t := range req.ForgottenTopics {
		for _, p := range t.Partitions {
			forgotten = append(forgotten, fetchsession.Key{Topic: t.Topic, Partition: p})
		}
	}
	f, err := s.fetchSessions.Begin(req.SessionID, req.SessionEpoch, req.ReplicaID >= 0, parts, forgotten)
	switch {
	case errors.Is(err, fetchsession.ErrSessionNotFound):
		return nil, kerr.FetchSessionIDNotFound
	case errors.Is(err, fetchsession.ErrInvalidEpoch):
		return nil, kerr.InvalidFetchSessionEpoch
	case err != nil:
		return nil, err
	}
	if f.SessionID() == 0 {
		return nil, nil // without a session: the request as it is
	}
	sessionRequest(req, f)
	return f, nil
}

// sessionRequest replaces req.Topics by the partitions session fetch f
// reads (its Partitions, in their order).
func sessionRequest(req *kmsg.FetchRequest, f *fetchsession.Fetch) {
	req.Topics = req.Topics[:0:0]
	for _, p := range f.Partitions() {
		if n := len(req.Topics); n == 0 || req.Topics[n-1].Topic != p.Topic {
			t := kmsg.NewFetchRequestTopic()
			t.Topic = p.Topic
			req.Topics = append(req.Topics, t)
		}
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = p.Partition
		rp.FetchOffset = p.FetchOffset
		rp.LogStartOffset = p.LogStartOffset
		rp.PartitionMaxBytes = p.MaxBytes
		rp.CurrentLeaderEpoch = p.CurrentLeaderEpoch
		rp.LastFetchedEpoch = p.LastFetchedEpoch
		t := &req.Topics[len(req.Topics)-1]
		t.Partitions = append(t.Partitions, rp)
	}
}

// parkFetch parks a fetch short of its minimum bytes on the partitions it
// read (watched) and, when its session passed over some, on those too.
func (s *Server) parkFetch(watched []replica.Watched, sess *fetchsession.Fetch, follower bool, wait time.Duration, done func(final bool)) {
	if sess.Skipped() == 0 {
		s.replicas.Park(watched, wait, done)
		return
	}
	s.replicas.ParkWide(watched, replica.Wide{
		Follower: follower,
		Covers: func(p *replica.Partition) bool {
			tp := p.Log().TopicPartition()
			return sess.Covers(fetchsession.Key{Topic: tp.Topic, Partition: tp.Partition})
		},
		Moved: sess.Moved,
	}, wait, done)
}

// sessionAnswer keeps, in a session's answer, the partitions the session
// says to list (all of them in a full answer; in an incremental one those
// with records, an error or new offsets), and sets the session id. hasData
// reports whether partition (ti, pi) carries records; it returns where each
// kept partition went (ti, pi → new ti, pi; -1: dropped).
func sessionAnswer(f *fetchsession.Fetch, resp *kmsg.FetchResponse, hasData func(ti, pi int) bool) (moved func(ti, pi int) (int, int)) {
	resp.SessionID = f.SessionID()
	i := 0
	where := make([][][2]int, len(resp.Topics))
	var kept []kmsg.FetchResponseTopic
	for ti := range resp.Topics {
		t := &resp.Topics[ti]
		where[ti] = make([][2]int, len(t.Partitions))
		var nt *kmsg.FetchResponseTopic
		for pi := range t.Partitions {
			p := &t.Partitions[pi]
			where[ti][pi] = [2]int{-1, -1}
			keep := f.Answer(i, p.HighWatermark, p.LastStableOffset, p.LogStartOffset, hasData(ti, pi), p.ErrorCode)
			i++
			if !keep {
				continue
			}
			if nt == nil {
				kept = append(kept, kmsg.FetchResponseTopic{Topic: t.Topic, TopicID: t.TopicID})
				nt = &kept[len(kept)-1]
			}
			where[ti][pi] = [2]int{len(kept) - 1, len(nt.Partitions)}
			nt.Partitions = append(nt.Partitions, *p)
		}
	}
	if kept == nil {
		kept = []kmsg.FetchResponseTopic{}
	}
	resp.Topics = kept
	return func(ti, pi int) (int, int) { return where[ti][pi][0], where[ti][pi][1] }
}
