package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/internal/clock"
	"github.com/kvlog/kvlog/server/txn"
)

// Transaction coordination in cluster mode, as Kafka does it with
// ZooKeeper:
//
//   - A broker coordinates the transactional ids of the
//     __transaction_state partitions it leads: LeaderAndIsr queues a load
//     at the leader epoch it won (the coordinator epoch its markers carry,
//     so a partition refuses the markers of a deposed coordinator), a
//     change to follower or StopReplica an unload (cluster_groups.go's
//     loader applies both, in order). A load resumes the transactions
//     found between Prepare* and Complete*: their markers are sent again.
//   - The markers of a transaction go to each partition's leader: this
//     broker's own partitions directly (writeMarkers in txns.go), the
//     others in one WriteTxnMarkers request per leader over the
//     inter-broker listener. A leader that does not answer, or answers
//     NOT_LEADER_OR_FOLLOWER or NOT_ENOUGH_REPLICAS, has its markers sent
//     again after the coordinator's backoff; a partition whose topic is
//     gone from the metadata is dropped from the transaction; a marker
//     refused for an older producer or coordinator epoch stops this
//     coordinator (a newer one drives the transaction).

// txnMarkerTimeout bounds one WriteTxnMarkers round trip to a leader.
const txnMarkerTimeout = 30 * time.Second

// writeMarkers splits the partitions by leader and calls done once with
// one error per partition.
func (c *cluster) writeMarkers(mk engine.Marker, tps []txn.TopicPartition, done func([]error)) {
	me := c.s.cfg.NodeID
	view := c.s.view()
	errs := make([]error, len(tps))
	var (
		local    []txn.TopicPartition
		localIdx []int
		byLeader = map[int32][]int{}
	)
	for i, tp := range tps {
		parts, ok := view.partitions(tp.Topic)
		if !ok || tp.Partition < 0 || int(tp.Partition) >= len(parts) || parts[tp.Partition].leader == me || parts[tp.Partition].leader < 0 {
			// Here, or nowhere known: writeMarkers says which (gone, not
			// hosted, not leader).
			local = append(local, tp)
			localIdx = append(localIdx, i)
			continue
		}
		l := parts[tp.Partition].leader
		byLeader[l] = append(byLeader[l], i)
	}
	var wg sync.WaitGroup
	wg.Add(1 + len(byLeader))
	c.s.writeMarkers(mk, local, func(es []error) {
		for j, e := range es {
			errs[localIdx[j]] = e
		}
		wg.Done()
	})
	for leader, idx := range byLeader {
		go func() {
			defer wg.Done()
			sub := make([]txn.TopicPartition, len(idx))
			for j, i := range idx {
				sub[j] = tps[i]
			}
			for j, e := range c.forwardMarkers(leader, mk, sub) {
				errs[idx[j]] = e
			}
		}()
	}
	go func() {
		wg.Wait()
		done(errs)
	}()
}

// forwardMarkers sends mk for tps to broker leader (WriteTxnMarkers v1)
// and returns one error per partition.
func (c *cluster) forwardMarkers(leader int32, mk engine.Marker, tps []txn.TopicPartition) []error {
	errs := make([]error, len(tps))
	fail := func(err error) []error {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	addr, ok := c.resolve(leader)
	if !ok {
		return fail(fmt.Errorf("no address for broker %d, the leader of the marker's partitions", leader))
	}
	ctx, cancel := context.WithTimeout(c.ctx, txnMarkerTimeout)
	defer cancel()
	conn, err := c.dialer.Dial(ctx, addr, fmt.Sprintf("kvlog-txn-markers-%d", c.s.cfg.NodeID))
	if err != nil {
		return fail(fmt.Errorf("dialing broker %d for transaction markers: %w", leader, err))
	}
	defer conn.Close()
	req := kmsg.NewPtrWriteTxnMarkersRequest()
	req.Version = 1
	m := kmsg.NewWriteTxnMarkersRequestMarker()
	m.ProducerID, m.ProducerEpoch, m.Committed, m.CoordinatorEpoch = mk.ProducerID, mk.ProducerEpoch, mk.Commit, mk.CoordinatorEpoch
	index := map[string]int{}
	for _, tp := range tps {
		i, ok := index[tp.Topic]
		if !ok {
			i = len(m.Topics)
			index[tp.Topic] = i
			mt := kmsg.NewWriteTxnMarkersRequestMarkerTopic()
			mt.Topic = tp.Topic
			m.Topics = append(m.Topics, mt)
		}
		m.Topics[i].Partitions = append(m.Topics[i].Partitions, tp.Partition)
	}
	req.Markers = append(req.Markers, m)
	kresp, err := conn.Request(ctx, req)
	if err != nil {
		return fail(fmt.Errorf("WriteTxnMarkers to broker %d: %w", leader, err))
	}
	codes := map[txn.TopicPartition]int16{}
	for _, rm := range kresp.(*kmsg.WriteTxnMarkersResponse).Markers {
		for _, rt := range rm.Topics {
			for _, rp := range rt.Partitions {
				codes[txn.TopicPartition{Topic: rt.Topic, Partition: rp.Partition}] = rp.ErrorCode
			}
		}
	}
	for i, tp := range tps {
		code, ok := codes[tp]
		switch {
		case !ok:
			errs[i] = fmt.Errorf("broker %d did not answer for %s-%d", leader, tp.Topic, tp.Partition)
		case code == 0:
		case code == kerr.InvalidProducerEpoch.Code || code == kerr.TransactionCoordinatorFenced.Code:
			errs[i] = fmt.Errorf("%w: %s-%d on broker %d: %w", txn.ErrMarkerFenced, tp.Topic, tp.Partition, leader, kerr.ErrorForCode(code))
		case code == kerr.UnknownTopicOrPartition.Code && c.s.topic(tp.Topic) == nil:
			errs[i] = fmt.Errorf("%w: %s-%d", txn.ErrMarkerPartitionGone, tp.Topic, tp.Partition)
		default:
			errs[i] = fmt.Errorf("%s-%d on broker %d: %w", tp.Topic, tp.Partition, leader, kerr.ErrorForCode(code))
		}
	}
	return errs
}

// applyTxnCoordinatorEvent loads or unloads a __transaction_state
// partition's transactional ids (the loader goroutine of
// cluster_groups.go).
func (c *cluster) applyTxnCoordinatorEvent(ev coordEvent) {
	co := c.s.txns
	if ev.p >= co.Partitions() {
		c.log.Warn("no coordinator shard for partition", "topic", txn.StateTopic, "partition", ev.p, "coordinator_partitions", co.Partitions())
		return
	}
	if !ev.load {
		co.Unload(ev.p)
		c.log.Info("stopped coordinating transactions", "partition", ev.p)
		return
	}
	if !c.leadsAt(txn.StateTopic, ev.p, ev.epoch) {
		return // superseded: a later event follows
	}
	start := time.Now()
	if err := co.Load(ev.p, ev.epoch); err != nil {
		c.log.Error("loading transactional ids failed; retrying", "partition", ev.p, "leader_epoch", ev.epoch, "err", err)
		clock.AfterFunc(c.s.clock, coordLoadRetry, func() {
			if c.ctx.Err() == nil && c.leadsAt(txn.StateTopic, ev.p, ev.epoch) {
				c.partMu.Lock()
				c.queueCoordinator(ev)
				c.partMu.Unlock()
			}
		})
		return
	}
	c.log.Info("coordinating transactions", "partition", ev.p, "coordinator_epoch", ev.epoch, "took", time.Since(start).Round(time.Millisecond))
}
