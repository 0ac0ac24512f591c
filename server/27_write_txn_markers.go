package server

import (
	"sync"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/server/txn"
)

// WriteTxnMarkers: v0-1
//
// From a transaction coordinator (another broker, CLUSTER_ACTION): each
// marker is written to its partitions as their leader (writeMarkers in
// txns.go, the same path the local coordinator uses), answered per
// partition once past the high watermark: UNKNOWN_TOPIC_OR_PARTITION for
// a partition that does not exist, NOT_LEADER_OR_FOLLOWER where this
// broker does not lead, INVALID_PRODUCER_EPOCH / TRANSACTION_COORDINATOR_
// FENCED for a marker older than what the partition has seen. A marker
// reaching __consumer_offsets completes the transactional offset commits
// of its producer there.
//
// Version notes:
//   - v1: flexible.
//   - v2 (TransactionVersion, KIP-890) is not served.
func init() { regKey(kmsg.WriteTxnMarkers, 0, 1, (*Server).handleWriteTxnMarkers) }

func (s *Server) handleWriteTxnMarkers(r *request) {
	req := r.kreq.(*kmsg.WriteTxnMarkersRequest)
	resp := req.ResponseKind().(*kmsg.WriteTxnMarkersResponse)
	resp.Markers = make([]kmsg.WriteTxnMarkersResponseMarker, len(req.Markers))
	var wg sync.WaitGroup
	for mi, m := range req.Markers {
		rm := &resp.Markers[mi]
		*rm = kmsg.NewWriteTxnMarkersResponseMarker()
		rm.ProducerID = m.ProducerID
		var tps []txn.TopicPartition
		for _, t := range m.Topics {
			rt := kmsg.NewWriteTxnMarkersResponseMarkerTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewWriteTxnMarkersResponseMarkerTopicPartition()
				rp.Partition = p
				rt.Partitions = append(rt.Partitions, rp)
				tps = append(tps, txn.TopicPartition{Topic: t.Topic, Partition: p})
			}
			rm.Topics = append(rm.Topics, rt)
		}
		mk := engine.Marker{ProducerID: m.ProducerID, ProducerEpoch: m.ProducerEpoch, CoordinatorEpoch: m.CoordinatorEpoch, Commit: m.Committed}
		wg.Add(1)
		s.writeMarkers(mk, tps, func(errs []error) {
			i := 0
			for ti := range rm.Topics {
				for pi := range rm.Topics[ti].Partitions {
					rm.Topics[ti].Partitions[pi].ErrorCode = errCode(errs[i])
					i++
				}
			}
			wg.Done()
		})
	}
	go func() {
		wg.Wait()
		r.reply(resp)
	}()
}
