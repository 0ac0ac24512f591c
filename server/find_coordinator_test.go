package server

import (
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestFindCoordinatorTransactionUnsupported: a transaction coordinator
// lookup gets a non-retriable UNSUPPORTED_VERSION with a message, in the
// single-key (v1-3) and batched (v4) forms, so transactional producers
// fail at once rather than retry COORDINATOR_NOT_AVAILABLE until they time
// out (Java's initTransactions did, for max.block.ms).
func TestFindCoordinatorTransactionUnsupported(t *testing.T) {
	b := startBroker(t)
	c := b.dial(t)
	for corr, v := range []int16{1, 3, 4} {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.Version = v
		req.CoordinatorType = coordinatorTypeTransaction
		req.CoordinatorKey = "txn-1"
		req.CoordinatorKeys = []string{"txn-1", "txn-2"}
		c.send(req, int32(corr))
		resp := c.recv(req, int32(corr)).(*kmsg.FindCoordinatorResponse)
		type answer struct {
			code int16
			msg  *string
			node int32
		}
		var got []answer
		if v >= 4 {
			for _, co := range resp.Coordinators {
				got = append(got, answer{co.ErrorCode, co.ErrorMessage, co.NodeID})
			}
		} else {
			got = append(got, answer{resp.ErrorCode, resp.ErrorMessage, resp.NodeID})
		}
		if want := map[bool]int{true: 2, false: 1}[v >= 4]; len(got) != want {
			t.Fatalf("v%d: %d answers, want %d", v, len(got), want)
		}
		for _, a := range got {
			if a.code != kerr.UnsupportedVersion.Code || a.node != -1 || a.msg == nil || !strings.Contains(*a.msg, "transactions") {
				t.Fatalf("v%d: error %d node %d message %v, want UNSUPPORTED_VERSION (%d), node -1 and a message about transactions",
					v, a.code, a.node, a.msg, kerr.UnsupportedVersion.Code)
			}
		}
	}
}
