package server

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestFindCoordinatorTransaction: a transaction coordinator lookup
// answers the leader of the id's __transaction_state partition (this
// broker on a single node), creating the topic on first use, in the
// single-key (v1-3) and batched (v4-6, Kafka 4.x's newest) forms.
func TestFindCoordinatorTransaction(t *testing.T) {
	b := startBroker(t, "transaction.state.log.num.partitions=4")
	c := b.dial(t)
	for corr, v := range []int16{1, 3, 4, 5, 6} {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.Version = v
		req.CoordinatorType = coordinatorTypeTransaction
		req.CoordinatorKey = "txn-1"
		req.CoordinatorKeys = []string{"txn-1", "txn-2"}
		c.send(req, int32(corr))
		resp := c.recv(req, int32(corr)).(*kmsg.FindCoordinatorResponse)
		type answer struct {
			code int16
			node int32
			port int32
		}
		var got []answer
		if v >= 4 {
			for _, co := range resp.Coordinators {
				got = append(got, answer{co.ErrorCode, co.NodeID, co.Port})
			}
		} else {
			got = append(got, answer{resp.ErrorCode, resp.NodeID, resp.Port})
		}
		if want := map[bool]int{true: 2, false: 1}[v >= 4]; len(got) != want {
			t.Fatalf("v%d: %d answers, want %d", v, len(got), want)
		}
		for _, a := range got {
			if a.code != 0 || a.node != b.s.cfg.NodeID || a.port <= 0 {
				t.Fatalf("v%d: error %d node %d port %d, want this broker (%d)", v, a.code, a.node, a.port, b.s.cfg.NodeID)
			}
		}
	}
	if tp := b.s.topic("__transaction_state"); tp == nil || len(tp.parts) != 4 {
		t.Fatalf("__transaction_state not created with 4 partitions: %+v", tp)
	}
}

// TestFindCoordinatorShareKey: v6's share-group key type (2) gets
// INVALID_REQUEST per key (kvlog has no share groups), while the group
// key of the same version is answered.
func TestFindCoordinatorShareKey(t *testing.T) {
	b := startBroker(t)
	c := b.dial(t)
	for corr, typ := range []int8{2, coordinatorTypeGroup} {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.Version = 6
		req.CoordinatorType = typ
		req.CoordinatorKeys = []string{"g:AAAAAAAAAAAAAAAAAAAAAA:0"}
		c.send(req, int32(corr))
		resp := c.recv(req, int32(corr)).(*kmsg.FindCoordinatorResponse)
		if len(resp.Coordinators) != 1 {
			t.Fatalf("type %d: %d answers", typ, len(resp.Coordinators))
		}
		co := resp.Coordinators[0]
		want := int16(0)
		if typ == 2 {
			want = kerr.InvalidRequest.Code
		}
		if co.ErrorCode != want || (want == 0 && co.NodeID != b.s.cfg.NodeID) {
			t.Fatalf("type %d: error %d node %d, want error %d", typ, co.ErrorCode, co.NodeID, want)
		}
	}
}
