package server

import (
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/replica"
	"github.com/kvlog/kvlog/server/coordlog"
	"github.com/kvlog/kvlog/server/group"
	"github.com/kvlog/kvlog/server/txn"
)

// The transaction coordinator's wiring: its configuration from the broker
// keys, its store (the __transaction_state partitions, through package coordlog
// like the group coordinator's) and its marker writer. The coordinator
// itself is package txn.
//
// The handlers are 10 (FindCoordinator TRANSACTION), 22, 24-28, 61, 65
// and 66; 00_produce.go serves transactional batches of an ongoing
// transaction.
//
// Lock order: a transaction shard's lock is taken before Server.topicMu
// (the store creates __transaction_state on first write) and before
// engine locks; nothing holding topicMu calls into the coordinator.

// startTxns creates the coordinator and, on a single node, loads every
// partition of __transaction_state (nothing when the topic does not
// exist yet). In cluster mode nothing is loaded: a broker is to coordinate
// the partitions it leads.
func (s *Server) startTxns() error {
	partitions := int32(s.brokerInt("transaction.state.log.num.partitions"))
	if t := s.topic(txn.StateTopic); t != nil {
		partitions = int32(len(t.parts)) // the existing topic decides, as in Kafka
	}
	st := &txnStore{log: newCoordLog(s, txn.StateTopic, "request.timeout.ms", partitions, kerr.NotCoordinator, s.ensureTxnTopic)}
	co, err := txn.New(s.txnConfig(partitions), st, txn.Options{
		Clock:          s.clock,
		Logger:         s.logger.With("component", "txn-coordinator"),
		NextProducerID: s.meta.NextProducerID,
		OffsetsPartition: func(g string) txn.TopicPartition {
			return txn.TopicPartition{Topic: group.OffsetsTopic, Partition: s.groups.PartitionFor(g)}
		},
		Markers: txnMarkers{s: s},
	})
	if err != nil {
		return err
	}
	s.txns = co
	if s.mode.replicated() {
		return nil // partitions load as their leadership arrives
	}
	if err := co.LoadAll(); err != nil {
		co.Close()
		return err
	}
	return nil
}

// txnConfig reads the coordinator's keys (they are static).
func (s *Server) txnConfig(partitions int32) txn.Config {
	ms := func(name string) time.Duration { return time.Duration(s.brokerInt(name)) * time.Millisecond }
	cfg := txn.DefaultConfig()
	cfg.Partitions = partitions
	cfg.MaxTimeout = ms("transaction.max.timeout.ms")
	cfg.IDExpiration = ms("transactional.id.expiration.ms")
	cfg.AbortTimedOutInterval = ms("transaction.abort.timed.out.transaction.cleanup.interval.ms")
	cfg.RemoveExpiredInterval = ms("transaction.remove.expired.transaction.cleanup.interval.ms")
	return cfg
}

// ensureTxnTopic creates __transaction_state if it does not exist:
// compacted, with transaction.state.log.segment.bytes segments and, in
// cluster mode, transaction.state.log.replication.factor replicas and
// transaction.state.log.min.isr (creation fails while fewer brokers are
// alive, as for __consumer_offsets).
func (s *Server) ensureTxnTopic() (*topic, error) {
	if t := s.topic(txn.StateTopic); t != nil {
		return t, nil
	}
	l := s.layers.Load()
	rf, minISR := int16(1), "1"
	if s.mode.replicated() {
		rf = int16(l.Int("transaction.state.log.replication.factor"))
		minISR = l.Broker("transaction.state.log.min.isr").Value
	}
	t, err := s.createTopic(newTopicSpec{
		name:       txn.StateTopic,
		partitions: s.txns.Partitions(),
		rf:         rf,
		configs: map[string]string{
			"cleanup.policy":                 "compact",
			"segment.bytes":                  l.Broker("transaction.state.log.segment.bytes").Value,
			"compression.type":               "uncompressed",
			"min.insync.replicas":            minISR,
			"unclean.leader.election.enable": "false",
		},
	})
	if err != nil {
		if t := s.topic(txn.StateTopic); t != nil { // created concurrently
			return t, nil
		}
		return nil, err
	}
	return t, nil
}

// txnStore is txn.Store over the __transaction_state partitions
// (package coordlog; request.timeout.ms bounds a write, as Kafka's coordinator
// does). A partition this broker does not lead is NOT_COORDINATOR.
type txnStore struct{ log *coordlog.Log }

func (st *txnStore) Append(p int32, recs []txn.Record) error {
	kvs := make([]coordlog.KV, len(recs))
	for i, r := range recs {
		kvs[i] = coordlog.KV{Key: r.Key, Value: r.Value}
	}
	return txnStoreErr(st.log.Append(p, kvs))
}

func (st *txnStore) Sync(p int32) error { return txnStoreErr(st.log.Sync(p)) }

func (st *txnStore) Replay(p int32, fn func(txn.Record)) error {
	return st.log.Replay(p, func(k, v []byte) { fn(txn.Record{Key: k, Value: v}) })
}

// txnStoreErr classifies store errors as Kafka's coordinator does: lost
// leadership is NOT_COORDINATOR, a record the topic refuses for its size
// an unknown server error, anything else (left to the coordinator)
// COORDINATOR_NOT_AVAILABLE.
func txnStoreErr(err error) error {
	var ke *kerr.Error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, replica.ErrNotLeader), errors.Is(err, replica.ErrNotReplica), errors.Is(err, engine.ErrClosed),
		errors.As(err, &ke) && ke == kerr.NotCoordinator:
		return fmt.Errorf("%w: %v", txn.ErrNotCoordinator, err)
	case errors.Is(err, engine.ErrMessageTooLarge), errors.Is(err, engine.ErrRecordListTooLarge):
		return fmt.Errorf("%w: %v", txn.ErrUnknownServerError, err)
	}
	return err
}

var _ txn.Store = (*txnStore)(nil)

// txnMarkers is the coordinator's marker writer: it writes each marker
// as the partition's leader (writeMarkers) and reports once every marker
// is past the high watermark (request.timeout.ms at most). A partition
// whose topic is gone is ErrMarkerPartitionGone; a marker the partition
// refuses for an older producer or coordinator epoch is ErrMarkerFenced
// (Kafka drops such a marker too); anything else (not leader, not enough
// replicas, a storage error, a timeout) is retried by the coordinator.
// The membership sends them (membership.writeMarkers): in cluster mode the
// markers of partitions led by other brokers go to their leaders in
// WriteTxnMarkers requests (cluster_txns.go).
type txnMarkers struct{ s *Server }

func (w txnMarkers) WriteMarkers(req *txn.MarkerRequest, done func([]error)) {
	mk := engine.Marker{ProducerID: req.ProducerID, ProducerEpoch: req.ProducerEpoch, CoordinatorEpoch: req.CoordinatorEpoch, Commit: req.Commit}
	w.s.mode.writeMarkers(mk, req.Partitions, done)
}

// writeMarkers appends mk to each partition as its leader
// (replica.Manager.AppendMarker, with the acks=all rules of the
// partition's min.insync.replicas) and calls done with one error per
// partition once every marker is past the high watermark or failed. A
// marker that reached a __consumer_offsets partition completes the
// producer's transactional offset commits there (applied at a commit,
// dropped at an abort) before done, as Kafka's handler does after the
// append.
func (s *Server) writeMarkers(mk engine.Marker, tps []txn.TopicPartition, done func([]error)) {
	errs := make([]error, len(tps))
	var waits []replica.AckWait
	var idx []int
	for i, tp := range tps {
		t := s.topic(tp.Topic)
		if t == nil || tp.Partition < 0 || int(tp.Partition) >= len(t.parts) {
			errs[i] = fmt.Errorf("%w: %s-%d", txn.ErrMarkerPartitionGone, tp.Topic, tp.Partition)
			continue
		}
		part := t.parts[tp.Partition]
		if part.rep == nil {
			errs[i] = fmt.Errorf("%w: %s-%d is not hosted by this broker", replica.ErrNotLeader, tp.Topic, tp.Partition)
			continue
		}
		res, err := s.replicas.AppendMarker(part.rep, mk, int(t.settings.MinInsync))
		if err != nil {
			errs[i] = markerErr(err, tp)
			continue
		}
		waits = append(waits, replica.AckWait{P: part.rep, Last: res.LastOffset, MinISR: int(t.settings.MinInsync)})
		idx = append(idx, i)
	}
	s.replicas.AwaitAcks(waits, msConfig(s, "request.timeout.ms"), func() {
		// The acks may complete on a goroutine that holds a coordinator's
		// lock (its own append moved the high watermark): the group
		// coordinator is called on a goroutine of its own.
		go func() {
			for j, wt := range waits {
				tp := tps[idx[j]]
				if wt.Err != nil {
					errs[idx[j]] = fmt.Errorf("%s-%d: marker not replicated: %w", tp.Topic, tp.Partition, wt.Err)
					continue
				}
				if tp.Topic == group.OffsetsTopic {
					s.groups.CompleteTxn(tp.Partition, mk.ProducerID, mk.Commit)
				}
			}
			done(errs)
		}()
	})
}

// markerErr classifies a partition's refusal of a marker.
func markerErr(err error, tp txn.TopicPartition) error {
	if errors.Is(err, engine.ErrInvalidProducerEpoch) || errors.Is(err, engine.ErrCoordinatorFenced) {
		return fmt.Errorf("%w: %s-%d: %w", txn.ErrMarkerFenced, tp.Topic, tp.Partition, err)
	}
	return fmt.Errorf("%s-%d: writing the marker: %w", tp.Topic, tp.Partition, err)
}

// txnCoordinator is the broker coordinating a transactional id: the
// leader of its __transaction_state partition, at the endpoint of the
// listener the request came in on; the topic is created on the first
// lookup, as Kafka does.
func (s *Server) txnCoordinator(r *request, id string) (nodeID int32, host string, port int32, err error) {
	t, err := s.ensureTxnTopic()
	if err != nil {
		r.log().Warn("creating the transaction state topic failed", "err", err)
		return -1, "", -1, topicErrf(kerr.CoordinatorNotAvailable, "creating %s: %v", txn.StateTopic, err)
	}
	if int32(len(t.parts)) != s.txns.Partitions() {
		return -1, "", -1, topicErrf(kerr.CoordinatorNotAvailable, "%s has %d partitions but this broker's coordinator maps transactional ids over %d (restart it)",
			txn.StateTopic, len(t.parts), s.txns.Partitions())
	}
	return s.coordinatorEndpoint(r, txn.StateTopic, s.txns.PartitionFor(id))
}
