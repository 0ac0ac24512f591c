package server

import (
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/replica"
	"github.com/kvlog/kvlog/server/group"
	"github.com/kvlog/kvlog/server/txn"
)

// The transaction coordinator's wiring: its configuration from the broker
// keys, its store (the __transaction_state partitions, through coordLog
// like the group coordinator's) and its marker writer. The coordinator
// itself is package txn.
//
// Not reachable by clients yet: FindCoordinator TRANSACTION answers
// UNSUPPORTED_VERSION, InitProducerId with a transactional id
// TRANSACTIONAL_ID_AUTHORIZATION_FAILED and the transaction APIs are not
// registered, until the broker serves transactional produce, the
// transaction APIs and read_committed fetches end to end. Partitions do
// take markers (txnMarkers), so transactions the coordinator resumes from
// its log complete.
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
// (coordlog.go; request.timeout.ms bounds a write, as Kafka's coordinator
// does). A partition this broker does not lead is NOT_COORDINATOR.
type txnStore struct{ log *coordLog }

func (st *txnStore) Append(p int32, recs []txn.Record) error {
	kvs := make([]kv, len(recs))
	for i, r := range recs {
		kvs[i] = kv{r.Key, r.Value}
	}
	return txnStoreErr(st.log.append(p, kvs))
}

func (st *txnStore) Sync(p int32) error { return txnStoreErr(st.log.sync(p)) }

func (st *txnStore) Replay(p int32, fn func(txn.Record)) error {
	return st.log.replay(p, func(k, v []byte) { fn(txn.Record{Key: k, Value: v}) })
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

// txnMarkers is the coordinator's marker writer: it appends each marker
// to the partition as its leader (replica.Manager.AppendMarker, with the
// acks=all rules of the partition's min.insync.replicas) and reports once
// every marker is past the high watermark (request.timeout.ms at most). A
// partition whose topic is gone is ErrMarkerPartitionGone; a marker the
// partition refuses for an older producer or coordinator epoch is
// ErrMarkerFenced (Kafka drops such a marker too); anything else (not
// leader, not enough replicas, a storage error, a timeout) is retried by
// the coordinator. Markers for partitions led by other brokers are not
// forwarded yet (cluster mode loads no transaction shard).
type txnMarkers struct{ s *Server }

func (w txnMarkers) WriteMarkers(req *txn.MarkerRequest, done func([]error)) {
	errs := make([]error, len(req.Partitions))
	var waits []replica.AckWait
	var idx []int
	mk := engine.Marker{ProducerID: req.ProducerID, ProducerEpoch: req.ProducerEpoch, CoordinatorEpoch: req.CoordinatorEpoch, Commit: req.Commit}
	for i, tp := range req.Partitions {
		t := w.s.topic(tp.Topic)
		if t == nil || tp.Partition < 0 || int(tp.Partition) >= len(t.parts) {
			errs[i] = fmt.Errorf("%w: %s-%d", txn.ErrMarkerPartitionGone, tp.Topic, tp.Partition)
			continue
		}
		part := t.parts[tp.Partition]
		if part.rep == nil {
			errs[i] = fmt.Errorf("%w: %s-%d is not hosted by this broker", replica.ErrNotLeader, tp.Topic, tp.Partition)
			continue
		}
		res, err := w.s.replicas.AppendMarker(part.rep, mk, int(t.settings.minInsync))
		if err != nil {
			errs[i] = markerErr(err, tp)
			continue
		}
		waits = append(waits, replica.AckWait{P: part.rep, Last: res.LastOffset, MinISR: int(t.settings.minInsync)})
		idx = append(idx, i)
	}
	w.s.replicas.AwaitAcks(waits, msConfig(w.s, "request.timeout.ms"), func() {
		for j, wt := range waits {
			if wt.Err != nil {
				errs[idx[j]] = fmt.Errorf("%s-%d: marker not replicated: %w", req.Partitions[idx[j]].Topic, req.Partitions[idx[j]].Partition, wt.Err)
			}
		}
		done(errs)
	})
}

// markerErr classifies a partition's refusal of a marker.
func markerErr(err error, tp txn.TopicPartition) error {
	if errors.Is(err, engine.ErrInvalidProducerEpoch) || errors.Is(err, engine.ErrCoordinatorFenced) {
		return fmt.Errorf("%w: %s-%d: %v", txn.ErrMarkerFenced, tp.Topic, tp.Partition, err)
	}
	return fmt.Errorf("%s-%d: writing the marker: %w", tp.Topic, tp.Partition, err)
}
