package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/zkstore"
)

// fakeNet is the controller's Dialer in the tests: it records every
// request each broker receives (every attempt, in order) and answers as the
// test scripted (success by default).
type fakeNet struct {
	mu          sync.Mutex
	log         map[int32][]string // formatted requests by broker, since the last take
	scripts     map[int32][]reply
	unreachable map[int32]bool
	// meta is each broker's metadata cache: the partition states of the
	// last UpdateMetadata it applied.
	meta map[int32]map[zkstore.TopicPartition]zkstore.PartitionState
	// onRequest, when set, is called (with mu held) with each request a
	// broker receives.
	onRequest func(id int32, line string)

	// gated holds every answer until release lets it go: the harness
	// answers one request at a time, lowest broker first, each after the
	// controller settled from the previous one, so that the order in which
	// answers reach the controller (and its deliveries complete) is the
	// same in every run instead of the scheduler's choice.
	gated   bool
	arrival int64
	held    []heldAnswer
}

// heldAnswer is a request waiting to be answered (gated).
type heldAnswer struct {
	id      int32
	arrival int64
	answer  chan struct{}
}

// releaseOne lets the held answer of the lowest broker id (its earliest
// request first) go; false when none is held.
func (n *fakeNet) releaseOne() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.held) == 0 {
		return false
	}
	i := 0
	for j, h := range n.held {
		if h.id < n.held[i].id || (h.id == n.held[i].id && h.arrival < n.held[i].arrival) {
			i = j
		}
	}
	close(n.held[i].answer)
	n.held = slices.Delete(n.held, i, i+1)
	return true
}

// ungate answers every held request and stops holding (the harness closes).
func (n *fakeNet) ungate() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.gated = false
	for _, h := range n.held {
		close(h.answer)
	}
	n.held = nil
}

// reply is one scripted answer: to the next request of api (-1: any) to a
// broker.
type reply struct {
	api   int16
	what  string // "storage-error", "timeout", "conn-error", "error", "slow"
	tps   []zkstore.TopicPartition
	code  int16
	delay time.Duration // slow: the answer comes this long after the request
}

var errConnLost = errors.New("fakenet: connection lost")

func newFakeNet() *fakeNet {
	return &fakeNet{log: map[int32][]string{}, scripts: map[int32][]reply{}, unreachable: map[int32]bool{},
		meta: map[int32]map[zkstore.TopicPartition]zkstore.PartitionState{}}
}

// metadata is broker id's metadata cache (a copy): what its controller
// candidate is given as Config.Metadata.
func (n *fakeNet) metadata(id int32) map[zkstore.TopicPartition]zkstore.PartitionState {
	n.mu.Lock()
	defer n.mu.Unlock()
	return maps.Clone(n.meta[id])
}

// forget empties broker id's metadata cache (it restarted).
func (n *fakeNet) forget(id int32) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.meta, id)
}

func (n *fakeNet) script(id int32, r reply) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.scripts[id] = append(n.scripts[id], r)
}

func (n *fakeNet) setUnreachable(id int32, v bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.unreachable[id] = v
}

// take returns the recorded requests, by broker id ascending, and forgets
// them.
func (n *fakeNet) take() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	ids := keys(n.log)
	var out []string
	for _, id := range ids {
		for _, l := range n.log[id] {
			out = append(out, fmt.Sprintf("b%d <- %s", id, l))
		}
	}
	n.log = map[int32][]string{}
	return out
}

func (n *fakeNet) Dial(ctx context.Context, b zkstore.Broker) (Conn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.unreachable[b.ID] {
		n.log[b.ID] = append(n.log[b.ID], "(connection refused)")
		return nil, fmt.Errorf("fakenet: broker %d unreachable", b.ID)
	}
	return &fakeConn{n: n, id: b.ID}, nil
}

type fakeConn struct {
	n      *fakeNet
	id     int32
	closed bool
}

func (c *fakeConn) Closed() bool { return c.closed }
func (c *fakeConn) Close() error { c.closed = true; return nil }

func (c *fakeConn) Request(ctx context.Context, req kmsg.Request) (kmsg.Response, error) {
	n := c.n
	n.mu.Lock()
	r := reply{what: "ok"}
	if i := slices.IndexFunc(n.scripts[c.id], func(r reply) bool { return r.api < 0 || r.api == req.Key() }); i >= 0 {
		r = n.scripts[c.id][i]
		n.scripts[c.id] = slices.Delete(n.scripts[c.id], i, i+1)
	}
	line := formatRequest(req)
	switch r.what {
	case "timeout", "conn-error":
		line += " (" + r.what + ")"
	case "storage-error":
		line += " (storage error " + formatTPs(r.tps) + ")"
	case "error":
		line += " (" + kerr.ErrorForCode(r.code).Error() + ")"
	case "slow":
		line += fmt.Sprintf(" (answered after %v)", r.delay)
	}
	n.log[c.id] = append(n.log[c.id], line)
	if n.onRequest != nil {
		n.onRequest(c.id, line)
	}
	var hold chan struct{}
	if n.gated {
		n.arrival++
		hold = make(chan struct{})
		n.held = append(n.held, heldAnswer{id: c.id, arrival: n.arrival, answer: hold})
	}
	n.mu.Unlock()
	if hold != nil {
		<-hold
	}

	switch r.what {
	case "timeout":
		<-ctx.Done()
		c.closed = true
		return nil, ctx.Err()
	case "conn-error":
		c.closed = true
		return nil, errConnLost
	case "slow":
		t := time.NewTimer(r.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			c.closed = true
			return nil, ctx.Err()
		}
	}
	resp := req.ResponseKind()
	switch req := req.(type) {
	case *kmsg.LeaderAndISRRequest:
		resp := resp.(*kmsg.LeaderAndISRResponse)
		resp.ErrorCode = r.code
		if r.code != 0 {
			break
		}
		for _, t := range req.TopicStates {
			for _, ps := range t.PartitionStates {
				p := kmsg.NewLeaderAndISRResponseTopicPartition()
				p.Topic, p.Partition = t.Topic, ps.Partition
				if r.what == "storage-error" && slices.Contains(r.tps, zkstore.TopicPartition{Topic: t.Topic, Partition: ps.Partition}) {
					p.ErrorCode = kerr.KafkaStorageError.Code
				}
				resp.Partitions = append(resp.Partitions, p)
			}
		}
	case *kmsg.UpdateMetadataRequest:
		resp.(*kmsg.UpdateMetadataResponse).ErrorCode = r.code
		if r.code == 0 {
			m := map[zkstore.TopicPartition]zkstore.PartitionState{}
			for _, t := range req.TopicStates {
				for _, p := range t.PartitionStates {
					m[zkstore.TopicPartition{Topic: t.Topic, Partition: p.Partition}] = zkstore.PartitionState{Leader: p.Leader,
						LeaderEpoch: p.LeaderEpoch, ISR: p.ISR, ControllerEpoch: p.ControllerEpoch, ZkVersion: p.ZKVersion}
				}
			}
			n.mu.Lock()
			n.meta[c.id] = m
			n.mu.Unlock()
		}
	case *kmsg.StopReplicaRequest:
		resp.(*kmsg.StopReplicaResponse).ErrorCode = r.code
	}
	return resp, nil
}

func formatInts(v []int32) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return "[" + strings.Join(s, " ") + "]"
}

func formatTPs(tps []zkstore.TopicPartition) string {
	s := make([]string, len(tps))
	for i, tp := range tps {
		s[i] = fmt.Sprintf("%s-%d", tp.Topic, tp.Partition)
	}
	return strings.Join(s, ",")
}

// formatRequest prints a controller request with every field the brokers
// act on.
func formatRequest(req kmsg.Request) string {
	var b strings.Builder
	switch r := req.(type) {
	case *kmsg.LeaderAndISRRequest:
		fmt.Fprintf(&b, "LeaderAndIsr v%d c%d ce%d be%d", r.Version, r.ControllerID, r.ControllerEpoch, r.BrokerEpoch)
		for _, t := range r.TopicStates {
			for _, p := range t.PartitionStates {
				fmt.Fprintf(&b, " [%s-%d L%d le%d isr%s r%s ce%d zkv%d]", t.Topic, p.Partition, p.Leader, p.LeaderEpoch,
					formatInts(p.ISR), formatInts(p.Replicas), p.ControllerEpoch, p.ZKVersion)
			}
		}
		var live []int32
		for _, l := range r.LiveLeaders {
			live = append(live, l.BrokerID)
		}
		fmt.Fprintf(&b, " leaders%s", formatInts(live))
	case *kmsg.UpdateMetadataRequest:
		fmt.Fprintf(&b, "UpdateMetadata v%d c%d ce%d be%d", r.Version, r.ControllerID, r.ControllerEpoch, r.BrokerEpoch)
		for _, t := range r.TopicStates {
			for _, p := range t.PartitionStates {
				fmt.Fprintf(&b, " [%s-%d L%d le%d isr%s", t.Topic, p.Partition, p.Leader, p.LeaderEpoch, formatInts(p.ISR))
				if len(p.OfflineReplicas) > 0 {
					fmt.Fprintf(&b, " offline%s", formatInts(p.OfflineReplicas))
				}
				b.WriteString("]")
			}
		}
		var live []int32
		for _, l := range r.LiveBrokers {
			live = append(live, l.ID)
		}
		fmt.Fprintf(&b, " live%s", formatInts(live))
	case *kmsg.StopReplicaRequest:
		fmt.Fprintf(&b, "StopReplica v%d c%d ce%d be%d", r.Version, r.ControllerID, r.ControllerEpoch, r.BrokerEpoch)
		for _, t := range r.Topics {
			var ps []int32
			del := false
			for _, p := range t.PartitionStates {
				ps = append(ps, p.Partition)
				del = del || p.Delete
			}
			fmt.Fprintf(&b, " %s%s", t.Topic, formatInts(ps))
			if del {
				b.WriteString(" delete")
			}
		}
	default:
		fmt.Fprintf(&b, "%s", kmsg.NameForKey(req.Key()))
	}
	return b.String()
}
