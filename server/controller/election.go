package controller

import (
	"context"
	"errors"
	"maps"
	"time"

	"github.com/kvlog/kvlog/server/zkstore"
)

// elect checks /controller and runs for it when it is free.
func (c *Controller) elect() error {
	id, ch, err := c.cfg.Store.ControllerID()
	if err != nil {
		go func() {
			time.Sleep(time.Second)
			c.post(event{kind: evController})
		}()
		return err
	}
	c.watch(ch, event{kind: evController})
	switch {
	case id == c.cfg.BrokerID && c.active:
		return nil
	case id == c.cfg.BrokerID && !c.active:
		// Our old session's znode (or a race): wait for it to go.
		return nil
	case id >= 0:
		if c.active {
			c.log.Warn("another broker became the controller", "controller", id)
			c.resign()
		}
		return nil
	}
	if c.active {
		// Our /controller is gone (the session expired): start over.
		c.log.Warn("controller znode gone while active; re-running the election")
		c.resign()
	}
	fence, err := c.cfg.Store.Elect(c.cfg.BrokerID)
	if errors.Is(err, zkstore.ErrNotElected) {
		c.post(event{kind: evController})
		return nil
	}
	if err != nil {
		return err
	}
	c.log.Info("elected controller", "epoch", fence.Epoch)
	c.active = true
	c.fence = fence
	c.setStatus(func(s *Status) { s.Active, s.Epoch = true, fence.Epoch; s.Elections++ })
	err = c.failover()
	if err != nil && !errors.Is(err, zkstore.ErrFenced) {
		// A controller left half initialised (a store error mid-way)
		// would act on a partial copy of the states: it steps down and
		// runs again.
		c.log.Error("controller fail-over failed; resigning to run the election again", "err", err)
		c.resign()
		go func() {
			time.Sleep(time.Second)
			c.post(event{kind: evController})
		}()
		return nil
	}
	return err
}

// resign stops acting as controller.
func (c *Controller) resign() {
	if !c.active {
		return
	}
	c.active = false
	for _, s := range c.senders {
		s.close()
	}
	c.senders = nil
	c.brokers, c.topics, c.shuttingDown, c.offlineDirs = nil, nil, nil, nil
	c.states, c.leaderless, c.hosted, c.unpublished, c.provisional = nil, nil, nil, nil, nil
	c.setStatus(func(s *Status) { s.Active = false })
	_ = c.cfg.Store.Resign()
}

// failover is Kafka's onControllerFailover: read everything, initialise and
// elect where needed, and tell every broker the full state; the partitions
// that lost their leader first (see the comments below and readOthers).
func (c *Controller) failover() error {
	start := time.Now()
	c.brokers = map[int32]zkstore.Broker{}
	c.shuttingDown = map[int32]bool{}
	c.topics = map[string]*topicInfo{}
	c.senders = map[int32]*sender{}
	c.offlineDirs = map[int32]map[zkstore.TopicPartition]bool{}
	c.states = map[zkstore.TopicPartition]zkstore.PartitionState{}
	c.leaderless = map[zkstore.TopicPartition]bool{}
	c.hosted = map[int32]map[zkstore.TopicPartition]struct{}{}
	c.unpublished = map[zkstore.TopicPartition]uint64{}
	bs, ch, err := c.cfg.Store.Brokers()
	if err != nil {
		return err
	}
	c.watch(ch, event{kind: evBrokers})
	for _, b := range bs {
		c.brokers[b.ID] = b
		c.sender(b)
	}
	if _, err := c.loadTopics(); err != nil {
		return err
	}
	// The states: those of the partitions whose leader is gone first
	// (Config.Metadata), elected and told at once; then the others, read
	// while the new leaders apply that (readOthers). The notifications
	// pending after the reads are about changes already read, or are read
	// again.
	all := c.allPartitions()
	var (
		before    map[zkstore.TopicPartition]int32 // the leaders as read
		sent      []delivery                       // the new leaderships told
		changedU  []zkstore.TopicPartition         // the partitions they carry
		published bool                             // their metadata went out already
	)
	if hint, first, second := c.leaderGoneHint(all); len(first) > 0 && len(second) > 0 {
		if err := c.loadStates(first); err != nil {
			return err
		}
		before = c.leaders(first)
		changed, err := c.reconcile(c.leaderGone(first))
		if err != nil {
			return err
		}
		if len(changed) > 0 {
			changedU = changed
			sent = c.sendLeaderAndIsrFor(changed, nil)
			c.log.Info("fail-over: leaders elected first", "partitions", len(changed), "read", len(first), "after", time.Since(start).Round(time.Millisecond))
		}
		if published, err = c.readOthers(second, hint, sent, c.moved(before, changedU), start); err != nil {
			return err
		}
		maps.Copy(before, c.leaders(second))
	} else {
		if err := c.loadStates(all); err != nil {
			return err
		}
		before = c.leaders(all)
	}
	if _, err := c.onISRChangesNoSend(); err != nil {
		return err
	}
	read := time.Since(start)
	// Availability first: when dead brokers are to leave ISRs of
	// partitions led all along (with one broker of three gone, two thirds
	// of the writes), the partitions without a live leader get one first
	// and their replicas are told at once; the rest is written while the
	// brokers apply that. The metadata naming the new leaders goes out as
	// soon as they answered, and only then the full state every broker
	// gets from a new controller (a large request each, which the
	// metadata would otherwise queue behind). When no ISR is to shrink,
	// and nothing was told early, it is all one batch.
	urgent := c.leaderGone(all)
	var rest []zkstore.TopicPartition
	shrink := false
	for _, tp := range all {
		st, ok := c.cachedState(tp)
		if !ok || st.Leader == NoLeader || !c.live(st.Leader) || c.replicaOffline(st.Leader, tp) {
			continue
		}
		rest = append(rest, tp)
		for _, r := range st.ISR {
			shrink = shrink || !c.live(r) || c.replicaOffline(r, tp)
		}
	}
	if !shrink && len(sent) == 0 {
		urgent, rest = all, nil
	}
	changed, err := c.reconcile(urgent)
	if err != nil {
		return err
	}
	elected := time.Since(start)
	early := len(sent) > 0 || (len(changed) > 0 && len(rest) > 0)
	var late []delivery // the leaderships of changed, told now
	if early && len(changed) > 0 {
		changedU = append(changedU, changed...)
		late = c.sendLeaderAndIsrFor(changed, nil)
		sent = append(sent, late...)
	}
	elections := len(changed)
	if early {
		elections = len(changedU)
	}
	more, err := c.reconcile(rest)
	if err != nil {
		return err
	}
	c.log.Info("fail-over: states read and written", "partitions", len(all), "read", read.Round(time.Millisecond),
		"leaders_elected", elections, "elected", elected.Round(time.Millisecond),
		"others_changed", len(more), "written", time.Since(start).Round(time.Millisecond))
	switch {
	case published:
		// The new leaders' metadata went out during the reads; those
		// elected after them (the hint missed them) are published as
		// usual, and the full state follows.
		c.publishAfter(late, c.moved(before, changed), true)
	case early:
		c.publishAfter(sent, c.moved(before, changedU), true)
	default:
		c.publishAfter(c.sendFullState(), c.moved(before, append(changed, more...)), false)
	}
	return c.onDeletions()
}

// leaderGoneHint splits tps by Config.Metadata (returned as hint): first
// those whose leader it names is not live (or that it does not know), then
// the others. All are nil without a hint.
func (c *Controller) leaderGoneHint(tps []zkstore.TopicPartition) (hint map[zkstore.TopicPartition]zkstore.PartitionState, first, second []zkstore.TopicPartition) {
	if c.cfg.Metadata == nil {
		return nil, nil, nil
	}
	hint = c.cfg.Metadata()
	if len(hint) == 0 {
		return nil, nil, nil
	}
	for _, tp := range tps {
		if st, ok := hint[tp]; !ok || st.Leader == NoLeader || !c.live(st.Leader) {
			first = append(first, tp)
		} else {
			second = append(second, tp)
		}
	}
	return hint, first, second
}

// readAheadFrom is the fewest partitions readOthers reads off the loop
// (fewer take milliseconds: they are read in line).
const readAheadFrom = 1000

// readOthers reads the states of tps (a fail-over's second batch, the
// partitions whose leader its broker's metadata names live). Many are
// read off the loop, which meanwhile waits for the new leaders of moved
// (told in sent) to answer, and publishes them as soon as they do: the
// metadata then lists the partitions not read yet as hint has them (the
// previous controller's metadata, which the brokers hold already). At
// 30,000 partitions the reads take seconds (one ZooKeeper request each),
// longer than the new leaders need. published reports whether the new
// leaders' metadata went out.
func (c *Controller) readOthers(tps []zkstore.TopicPartition, hint map[zkstore.TopicPartition]zkstore.PartitionState, sent []delivery, moved []zkstore.TopicPartition, start time.Time) (published bool, err error) {
	wait := c.leaderDeliveries(sent, moved)
	if len(tps) < readAheadFrom || len(wait) == 0 {
		return false, c.loadStates(tps)
	}
	type result struct {
		states []zkstore.PartitionState
		ok     []bool
		err    error
	}
	read := make(chan result, 1)
	go func() {
		var r result
		r.states, r.ok, r.err = c.cfg.Store.PartitionStates(tps)
		read <- r
	}()
	answered := make(chan struct{})
	go func() {
		if waitDeliveries(c.ctx, wait) {
			close(answered)
		}
	}()
	for {
		select {
		case r := <-read:
			c.provisional = nil
			if r.err != nil {
				return published, r.err
			}
			for i, tp := range tps {
				c.setCached(tp, r.states[i], r.ok[i])
			}
			return published, nil
		case <-answered:
			answered = nil
			published = true
			c.provisional = make(map[zkstore.TopicPartition]zkstore.PartitionState, len(tps))
			for _, tp := range tps {
				if st, ok := hint[tp]; ok {
					c.provisional[tp] = st
				}
			}
			c.log.Info("new leaders published", "partitions", len(moved), "after", time.Since(start).Round(time.Millisecond), "still_reading", len(tps))
			c.sendUpdateMetadataAll()
		case <-c.ctx.Done():
			return published, c.ctx.Err()
		}
	}
}

// leaderDeliveries are the requests of sent that told a new leader of one
// of changed that it leads: those publishAfter waits for.
func (c *Controller) leaderDeliveries(sent []delivery, changed []zkstore.TopicPartition) []delivery {
	leaders := map[int32]bool{}
	for _, tp := range changed {
		if st, ok := c.cachedState(tp); ok && st.Leader != NoLeader {
			leaders[st.Leader] = true
		}
	}
	var wait []delivery
	for _, d := range sent {
		if d.leads && leaders[d.s.id] {
			wait = append(wait, d)
		}
	}
	return wait
}

// waitDeliveries waits until every request of wait was answered (or its
// broker went away); false if ctx ended first.
func waitDeliveries(ctx context.Context, wait []delivery) bool {
	for _, d := range wait {
		select {
		case <-d.done:
		case <-d.s.ctx.Done():
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// leaderGone lists the partitions of tps whose cached state has no live
// leader (none, dead, offline, or no state at all).
func (c *Controller) leaderGone(tps []zkstore.TopicPartition) []zkstore.TopicPartition {
	var out []zkstore.TopicPartition
	for _, tp := range tps {
		st, ok := c.cachedState(tp)
		if !ok || st.Leader == NoLeader || !c.live(st.Leader) || c.replicaOffline(st.Leader, tp) {
			out = append(out, tp)
		}
	}
	return out
}

// sendFullState sends every live broker the state of every partition it
// hosts (a new controller's first word to the brokers: a state the
// previous one wrote but did not send reaches them).
func (c *Controller) sendFullState() []delivery {
	var sent []delivery
	for _, id := range keys(c.brokers) {
		sent = append(sent, c.sendLeaderAndIsr(id, nil)...)
	}
	return sent
}
