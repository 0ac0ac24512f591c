package controller

import (
	"slices"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/zkstore"
)

// sender returns (starting if needed) the request sender for b.
func (c *Controller) sender(b zkstore.Broker) *sender {
	if s := c.senders[b.ID]; s != nil {
		return s
	}
	s := newSender(c, b)
	c.senders[b.ID] = s
	return s
}

// statesFor reads the current states of tps (nil: every partition hosted
// by broker id), each partition once, in partition order.
func (c *Controller) statesFor(id int32, tps []zkstore.TopicPartition) map[string][]kmsg.LeaderAndISRRequestTopicPartition {
	out := map[string][]kmsg.LeaderAndISRRequestTopicPartition{}
	seen := map[zkstore.TopicPartition]bool{}
	add := func(n string, p int32, replicas []int32) {
		tp := zkstore.TopicPartition{Topic: n, Partition: p}
		if seen[tp] {
			return
		}
		seen[tp] = true
		st, ok := c.cachedState(tp)
		if !ok {
			return
		}
		ps := kmsg.NewLeaderAndISRRequestTopicPartition()
		ps.Topic = n
		ps.Partition = p
		ps.ControllerEpoch = st.ControllerEpoch
		ps.Leader = st.Leader
		ps.LeaderEpoch = st.LeaderEpoch
		ps.ISR = st.ISR
		ps.ZKVersion = st.ZkVersion
		ps.Replicas = replicas
		out[n] = append(out[n], ps)
	}
	if tps == nil {
		tps = slices.DeleteFunc(c.hostedBy(id), func(tp zkstore.TopicPartition) bool {
			_, ok := c.replicasOf(tp)
			return !ok
		})
	}
	for _, tp := range tps {
		ti := c.topics[tp.Topic]
		if ti == nil || int(tp.Partition) >= len(ti.assign.Replicas) {
			continue
		}
		add(tp.Topic, tp.Partition, ti.assign.Replicas[tp.Partition])
	}
	for _, ps := range out {
		slices.SortFunc(ps, func(a, b kmsg.LeaderAndISRRequestTopicPartition) int { return int(a.Partition - b.Partition) })
	}
	return out
}

// sendLeaderAndIsr sends broker id the states of tps (nil: all it hosts).
func (c *Controller) sendLeaderAndIsr(id int32, tps []zkstore.TopicPartition) []delivery {
	b, ok := c.brokers[id]
	if !ok {
		return nil
	}
	states := c.statesFor(id, tps)
	if len(states) == 0 && tps != nil {
		return nil
	}
	req := kmsg.NewPtrLeaderAndISRRequest()
	req.Version = 4
	req.ControllerID = c.cfg.BrokerID
	req.ControllerEpoch = c.fence.Epoch
	req.BrokerEpoch = b.Epoch
	leaders := map[int32]bool{}
	names := make([]string, 0, len(states))
	for n := range states {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		ts := kmsg.NewLeaderAndISRRequestTopicState()
		ts.Topic = n
		ts.PartitionStates = states[n]
		for _, ps := range states[n] {
			leaders[ps.Leader] = true
		}
		req.TopicStates = append(req.TopicStates, ts)
	}
	for _, l := range keys(leaders) {
		if lb, ok := c.brokers[l]; ok {
			ep, _ := lb.Endpoint("")
			ll := kmsg.NewLeaderAndISRRequestLiveLeader()
			ll.BrokerID, ll.Host, ll.Port = l, ep.Host, ep.Port
			req.LiveLeaders = append(req.LiveLeaders, ll)
		}
	}
	d := c.senders[id].send(req)
	d.leads = leaders[id]
	return []delivery{d}
}

// publishWait is how long a fail-over's full state waits for the new
// leaders' answers before it goes anyway (publishAfter).
const publishWait = 5 * time.Second

// publishAfter sends every live broker the full metadata once the new
// leaders of the partitions changed have answered the LeaderAndIsr
// requests sent (or went away): a broker's metadata then never names a
// leader that does not know it leads yet (a client would be refused).
// Until then, metadata sent for another reason lists those partitions
// without a leader (see sendUpdateMetadataAll). The wait has no time
// bound: a leader that has not applied its LeaderAndIsr does not accept
// writes either, however long it takes (a broker creating thousands of
// logs at once took 6-8 s, and metadata published after a fixed 5 s named
// leaders that refused produce).
//
// full (a fail-over): every broker then gets the full state
// (sendFullState), after that metadata; or after publishWait if a leader
// is slower, with the metadata known by then, so that one broker's delay
// does not hold back what the others need.
func (c *Controller) publishAfter(sent []delivery, changed []zkstore.TopicPartition, full bool) {
	wait := c.leaderDeliveries(sent, changed)
	if len(wait) == 0 {
		c.sendUpdateMetadataAll()
		if full {
			c.sendFullState()
		}
		return
	}
	c.publishSeq++
	ev := event{kind: evPublish, epoch: c.fence.Epoch, seq: c.publishSeq, full: full, since: time.Now()}
	for _, tp := range changed {
		if st, ok := c.cachedState(tp); ok && st.Leader != NoLeader {
			c.unpublished[tp] = ev.seq
			ev.tps = append(ev.tps, tp)
		}
	}
	go func() {
		var slow <-chan time.Time
		if full {
			t := time.NewTimer(publishWait)
			defer t.Stop()
			slow = t.C
		}
		for _, d := range wait {
			for answered := false; !answered; {
				select {
				case <-d.done:
					answered = true
				case <-d.s.ctx.Done():
					answered = true
				case <-slow:
					slow = nil
					ev.full = false
					c.post(event{kind: evFullState, epoch: ev.epoch})
				case <-c.ctx.Done():
					return
				}
			}
		}
		c.post(ev)
	}()
}

// published is the evPublish of publishAfter: the partitions it waited for
// are published (and with full, the full state follows).
func (c *Controller) published(ev event) {
	if ev.epoch != c.fence.Epoch {
		return // an earlier term's
	}
	for _, tp := range ev.tps {
		if c.unpublished[tp] == ev.seq {
			delete(c.unpublished, tp)
		}
	}
	if len(ev.tps) > logEachUpTo {
		c.log.Info("new leaders published", "partitions", len(ev.tps), "after", time.Since(ev.since).Round(time.Millisecond))
	}
	c.sendUpdateMetadataAll()
	if ev.full {
		c.sendFullState()
	}
}

// fullStateDue is the evFullState of publishAfter: a new leader is slow to
// answer; the full state goes now, with the metadata known so far.
func (c *Controller) fullStateDue(ev event) {
	if ev.epoch != c.fence.Epoch {
		return
	}
	c.log.Warn("new leaders slow to apply their LeaderAndIsr; sending the full state before publishing them", "waited", publishWait)
	c.sendFullState()
	c.sendUpdateMetadataAll()
}

// sendUpdateMetadataAll sends every live broker the full metadata.
func (c *Controller) sendUpdateMetadataAll() []delivery {
	req := kmsg.NewPtrUpdateMetadataRequest()
	req.Version = 6
	req.ControllerID = c.cfg.BrokerID
	req.ControllerEpoch = c.fence.Epoch
	names := make([]string, 0, len(c.topics))
	for n := range c.topics {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		ti := c.topics[n]
		if ti.deleting {
			continue
		}
		ts := kmsg.NewUpdateMetadataRequestTopicState()
		ts.Topic = n
		for p, rs := range ti.assign.Replicas {
			ps := kmsg.NewUpdateMetadataRequestTopicPartition()
			ps.Topic = n
			ps.Partition = int32(p)
			ps.Replicas = rs
			ps.Leader = NoLeader
			ps.ISR = []int32{}
			ps.OfflineReplicas = []int32{}
			tp := zkstore.TopicPartition{Topic: n, Partition: int32(p)}
			st, ok := c.cachedState(tp)
			if !ok {
				st, ok = c.provisional[tp]
			}
			if ok {
				ps.ControllerEpoch = st.ControllerEpoch
				ps.Leader = st.Leader
				if _, wait := c.unpublished[tp]; wait {
					ps.Leader = NoLeader // its leader does not know yet
				}
				ps.LeaderEpoch = st.LeaderEpoch
				ps.ISR = st.ISR
				ps.ZKVersion = st.ZkVersion
			}
			for _, r := range rs {
				if !c.live(r) || c.replicaOffline(r, zkstore.TopicPartition{Topic: n, Partition: int32(p)}) {
					ps.OfflineReplicas = append(ps.OfflineReplicas, r)
				}
			}
			ts.PartitionStates = append(ts.PartitionStates, ps)
		}
		req.TopicStates = append(req.TopicStates, ts)
	}
	ids := keys(c.brokers)
	for _, id := range ids {
		b := c.brokers[id]
		lb := kmsg.NewUpdateMetadataRequestLiveBroker()
		lb.ID = id
		lb.Rack = b.Rack
		for _, e := range b.Endpoints {
			ep := kmsg.NewUpdateMetadataRequestLiveBrokerEndpoint()
			ep.Host, ep.Port, ep.ListenerName, ep.SecurityProtocol = e.Host, e.Port, e.Name, 0
			lb.Endpoints = append(lb.Endpoints, ep)
		}
		req.LiveBrokers = append(req.LiveBrokers, lb)
	}
	sent := make([]delivery, 0, len(ids))
	for _, id := range ids {
		r := *req
		r.BrokerEpoch = c.brokers[id].Epoch
		sent = append(sent, c.senders[id].send(&r))
	}
	return sent
}

func (c *Controller) sendStopReplica(id int32, topic string, partitions []int32, del bool) {
	b, ok := c.brokers[id]
	if !ok {
		return
	}
	req := kmsg.NewPtrStopReplicaRequest()
	req.Version = 3
	req.ControllerID = c.cfg.BrokerID
	req.ControllerEpoch = c.fence.Epoch
	req.BrokerEpoch = b.Epoch
	ts := kmsg.NewStopReplicaRequestTopic()
	ts.Topic = topic
	for _, p := range partitions {
		ps := kmsg.NewStopReplicaRequestTopicPartitionState()
		ps.Partition = p
		ps.LeaderEpoch = -2 // Kafka's EpochDuringDelete: delete whatever the epoch
		ps.Delete = del
		ts.PartitionStates = append(ts.PartitionStates, ps)
	}
	req.Topics = []kmsg.StopReplicaRequestTopic{ts}
	c.senders[id].send(req)
}
