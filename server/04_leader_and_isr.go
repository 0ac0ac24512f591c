package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/replica"
	"github.com/kvlog/kvlog/server/group"
	"github.com/kvlog/kvlog/server/txn"
)

// LeaderAndIsr: v2-4 (inter-broker, from the controller; cluster mode only)
//
// For every partition state naming this broker as a replica: create the
// local log if needed, then become leader (new epoch assigned in the
// leader-epoch cache; see replica.Partition.MakeLeader) or follower (the
// fetcher truncates with OffsetsForLeaderEpoch, then fetches). Only the
// current controller's requests are applied (package cluster, Member.Admit:
// STALE_CONTROLLER_EPOCH / STALE_BROKER_EPOCH otherwise); a partition state
// older than the applied one gets STALE_CONTROLLER_EPOCH for that
// partition. A partition whose log cannot be created or opened (a file in
// place of its directory, EMFILE, EIO...) is answered KAFKA_STORAGE_ERROR
// and logged at ERROR: the controller then treats this replica as offline
// (elects another leader, drops it from the ISR; see package controller). A broker in controlled shutdown does not start
// following. Leading a __consumer_offsets partition makes this broker its
// group coordinator: the groups are loaded (and unloaded on becoming
// follower) in the background (cluster_groups.go).
//
// Version notes:
//   - v2: topic states nested by topic, BrokerEpoch.
//   - v3: adding/removing replicas (ignored: no reassignment).
//   - v4: flexible.
func init() { regKey(kmsg.LeaderAndISR, 2, 4, (*Server).handleLeaderAndIsr) }

func (s *Server) handleLeaderAndIsr(r *request) {
	req := r.kreq.(*kmsg.LeaderAndISRRequest)
	resp := req.ResponseKind().(*kmsg.LeaderAndISRResponse)
	c, refused := s.fromController(r, req.ControllerID, req.ControllerEpoch, req.BrokerEpoch)
	if refused != nil {
		resp.ErrorCode = refused.Code
		r.reply(resp)
		return
	}
	c.partMu.Lock()
	defer c.partMu.Unlock()
	me := s.cfg.NodeID
	// Every local log the request needs, in one batch (ensureLocals).
	locals := c.ensureLocals(replicaKeys(req, me))
	// The partition states, several at once (applyAll).
	var items []lairItem
	for _, ts := range req.TopicStates {
		for _, ps := range ts.PartitionStates {
			items = append(items, lairItem{topic: ts.Topic, ps: ps})
		}
	}
	errs := c.applyAll(items, me, locals)
	for i, it := range items {
		rp := kmsg.NewLeaderAndISRResponseTopicPartition()
		rp.Topic, rp.Partition = it.topic, it.ps.Partition
		if err := errs[i]; err != nil {
			rp.ErrorCode = errCode(err)
			lvl := slog.LevelInfo // stale or foreign partition states: routine
			if rp.ErrorCode == kerr.KafkaStorageError.Code || rp.ErrorCode == kerr.UnknownServerError.Code {
				lvl = slog.LevelError
			}
			r.log().Log(context.Background(), lvl, "partition state refused", "topic", it.topic, "partition", it.ps.Partition,
				"leader", it.ps.Leader, "leader_epoch", it.ps.LeaderEpoch, "code", kerr.ErrorForCode(rp.ErrorCode), "err", err)
		}
		resp.Partitions = append(resp.Partitions, rp)
	}
	r.reply(resp)
}

// applyLeaderAndIsr applies one partition state. Caller holds partMu.
func (c *cluster) applyLeaderAndIsr(topic string, ps kmsg.LeaderAndISRRequestTopicPartition, me int32, locals *localLogs, many *lairCounts) error {
	isReplica := false
	for _, r := range ps.Replicas {
		isReplica = isReplica || r == me
	}
	if !isReplica {
		return kerr.UnknownTopicOrPartition
	}
	k := localKey{topic, ps.Partition}
	if err := locals.errs[k]; err != nil {
		return err
	}
	p := locals.parts[k]
	if p == nil {
		var err error
		if p, err = c.ensureLocal(topic, ps.Partition); err != nil {
			return err
		}
	}
	st := replica.State{Leader: ps.Leader, LeaderEpoch: ps.LeaderEpoch, ISR: ps.ISR, Replicas: ps.Replicas,
		ZkVersion: ps.ZKVersion, ControllerEpoch: ps.ControllerEpoch}
	if ps.Leader == me {
		changed, err := p.rep.MakeLeader(st, c.s.clock.Now())
		if err != nil {
			return err
		}
		if f := c.m.Fetchers(); f != nil {
			f.Unfollow(p.rep)
		}
		if changed {
			c.log.Log(context.Background(), many.level(), "became leader", "topic", topic, "partition", ps.Partition, "leader_epoch", ps.LeaderEpoch, "isr", ps.ISR)
			many.count(true)
			if topic == group.OffsetsTopic || topic == txn.StateTopic {
				c.queueCoordinator(coordEvent{topic: topic, p: ps.Partition, epoch: ps.LeaderEpoch, load: true})
			}
		}
		return nil
	}
	changed, err := p.rep.MakeFollower(st)
	if err != nil {
		return err
	}
	if changed {
		c.log.Log(context.Background(), many.level(), "became follower", "topic", topic, "partition", ps.Partition, "leader", ps.Leader, "leader_epoch", ps.LeaderEpoch)
		many.count(false)
		if topic == group.OffsetsTopic || topic == txn.StateTopic {
			c.queueCoordinator(coordEvent{topic: topic, p: ps.Partition})
		}
	}
	f := c.m.Fetchers()
	if f == nil {
		return nil
	}
	if ps.Leader < 0 || c.m.ShuttingDown() {
		f.Unfollow(p.rep)
		return nil
	}
	f.Follow(p.rep, ps.Leader)
	return nil
}

// Applying a LeaderAndIsr request of many partitions (a topic of thousands
// of partitions created, a controller fail-over telling a broker every
// partition it hosts) costs about the same per partition whatever their
// number: the local logs missing are created first, all together
// (ensureLocals), with one fsync of the log dir for every new partition
// directory and the logs opened in parallel; each topic missing from the
// topic snapshot is read once; and the snapshot is published once for the
// whole request, not once per partition (each publication copies the
// topic map and wakes the log cleaner, which looks at every log).

// localKey names a partition of a LeaderAndIsr request.
type localKey struct {
	topic string
	p     int32
}

// localLogs are the partitions of a LeaderAndIsr request with a local log,
// and the errors of those whose log could not be had.
type localLogs struct {
	parts map[localKey]*partition
	errs  map[localKey]error
}

// replicaKeys lists the partitions of req naming broker me as a replica.
func replicaKeys(req *kmsg.LeaderAndISRRequest, me int32) []localKey {
	var out []localKey
	for _, ts := range req.TopicStates {
		for _, ps := range ts.PartitionStates {
			if slices.Contains(ps.Replicas, me) {
				out = append(out, localKey{ts.Topic, ps.Partition})
			}
		}
	}
	return out
}

// ensureLocals is ensureLocal for many partitions at once (see above).
// Caller holds partMu.
func (c *cluster) ensureLocals(keys []localKey) *localLogs {
	s := c.s
	out := &localLogs{parts: map[localKey]*partition{}, errs: map[localKey]error{}}
	if len(keys) == 0 {
		return out
	}
	s.topicMu.Lock()
	defer s.topicMu.Unlock()
	layers := s.layers.Load()
	topics := map[string]*topic{}  // the request's topics as they become
	topicErr := map[string]error{} // a topic that could not be read
	copied := map[string]bool{}    // topics[name] is this call's own copy
	var create []localKey
	var tps []engine.TopicPartition
	var cfgs []engine.Config
	ecfgs := map[string]engine.Config{} // each topic's, resolved once
	seen := map[localKey]bool{}
	for _, k := range keys {
		if seen[k] {
			continue
		}
		seen[k] = true
		t, ok := topics[k.topic]
		if !ok && topicErr[k.topic] == nil {
			t = s.topic(k.topic)
			if t == nil || int(k.p) >= len(t.parts) {
				mt, err := c.readTopic(k.topic)
				if err != nil {
					topicErr[k.topic] = err
				} else {
					t = c.buildTopic(mt, layers, t)
					copied[k.topic] = true
				}
			}
			if topicErr[k.topic] == nil {
				topics[k.topic] = t
			}
		}
		if err := topicErr[k.topic]; err != nil {
			out.errs[k] = err
			continue
		}
		if k.p < 0 || int(k.p) >= len(t.parts) {
			out.errs[k] = kerr.UnknownTopicOrPartition
			continue
		}
		if part := t.parts[k.p]; part.log != nil {
			out.parts[k] = part
			continue
		}
		ecfg, ok := ecfgs[k.topic]
		if !ok {
			ecfg = layers.EngineConfig(t.configs)
			ecfgs[k.topic] = ecfg
		}
		create = append(create, k)
		tps = append(tps, t.parts[k.p].tp)
		cfgs = append(cfgs, ecfg)
	}
	start := time.Now()
	logs, errs := s.mgr.CreateLogs(tps, cfgs)
	if len(tps) > logEachUpTo {
		c.log.Info("partition logs created", "partitions", len(tps), "took", time.Since(start).Round(time.Millisecond))
	}
	for i, k := range create {
		if err := errs[i]; err != nil {
			if !errors.Is(err, engine.ErrClosed) && !errors.Is(err, engine.ErrStorage) {
				// Whatever stopped the log from being created or opened
				// is a storage failure of this replica.
				err = fmt.Errorf("%w: %w", engine.ErrStorage, err)
			}
			out.errs[k] = fmt.Errorf("create log of %s: %w", tps[i], err)
			continue
		}
		t := topics[k.topic]
		if !copied[k.topic] {
			nt := *t
			nt.parts = slices.Clone(t.parts)
			t = &nt
			topics[k.topic] = t
			copied[k.topic] = true
		}
		np := &partition{tp: tps[i]}
		c.attach(np, logs[i])
		t.parts[k.p] = np
		out.parts[k] = np
	}
	if len(copied) > 0 {
		s.publishTopics(func(m map[string]*topic) {
			for n := range copied {
				m[n] = topics[n]
			}
		})
	}
	return out
}

// applyThreads bounds the partition states applyAll applies at once.
const applyThreads = 16

// logEachUpTo is the largest request whose partitions' new roles are
// logged one by one at INFO; a larger one (a topic created, a fail-over)
// logs them at DEBUG and their counts at INFO: a line per partition, tens
// of thousands at once, cost the broker more than applying them.
const logEachUpTo = 20

// lairCounts counts the roles a large request changed; nil for a small one.
type lairCounts struct {
	leaders, followers atomic.Int64
}

func (n *lairCounts) level() slog.Level {
	if n == nil {
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

// count counts a partition that became leader (or follower).
func (n *lairCounts) count(leader bool) {
	switch {
	case n == nil:
	case leader:
		n.leaders.Add(1)
	default:
		n.followers.Add(1)
	}
}

// lairItem is one partition state of a LeaderAndIsr request.
type lairItem struct {
	topic string
	ps    kmsg.LeaderAndISRRequestTopicPartition
}

// applyAll applies the partition states of a request, up to applyThreads
// at once, and returns each one's error. Becoming leader of a log that
// holds records makes its leader-epoch checkpoint durable (a file written
// and fsynced): applied one after the other, a fail-over moving thousands
// of leaders to a broker waited for thousands of fsyncs in a row, while
// concurrent ones share the file system's journal commits. Each partition
// is applied by one goroutine under its own lock; a request naming a
// partition twice is applied in order. Caller holds partMu.
func (c *cluster) applyAll(items []lairItem, me int32, locals *localLogs) []error {
	errs := make([]error, len(items))
	seen := make(map[localKey]bool, len(items))
	dup := false
	for _, it := range items {
		k := localKey{it.topic, it.ps.Partition}
		dup = dup || seen[k]
		seen[k] = true
	}
	var many *lairCounts
	if len(items) > logEachUpTo {
		many = &lairCounts{}
		start := time.Now()
		defer func() {
			c.log.Info("partition states applied", "partitions", len(items), "became_leader", many.leaders.Load(), "became_follower", many.followers.Load(),
				"took", time.Since(start).Round(time.Millisecond))
		}()
	}
	if dup || len(items) < 2 {
		for i, it := range items {
			errs[i] = c.applyLeaderAndIsr(it.topic, it.ps, me, locals, many)
		}
		return errs
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(applyThreads, len(items)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				errs[i] = c.applyLeaderAndIsr(items[i].topic, items[i].ps, me, locals, many)
			}
		}()
	}
	for i := range items {
		next <- i
	}
	close(next)
	wg.Wait()
	return errs
}
