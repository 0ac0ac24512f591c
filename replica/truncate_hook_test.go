package replica

import (
	"fmt"
	"testing"

	"github.com/kvlog/kvlog/engine/vfs"
)

// TestAroundTruncateBracketsTruncation: a follower's truncation (here the
// KIP-101 divergence of scenario 2) runs inside Options.AroundTruncate, the
// hook the broker uses to keep its log cleaner away from the log.
func TestAroundTruncateBracketsTruncation(t *testing.T) {
	s := newSim(t, 1, 2) // A=1, B=2
	s.elect(1, 1, 2)
	s.mustProduce(1, "m1", 1)
	s.step(2, stepOpts{})
	s.mustProduce(1, "m2", 1) // B never fetches it
	s.restart(1, vfs.KeepAll)
	s.restart(2, vfs.KeepAll)
	a := s.nodes[1]
	var calls []string
	a.p.opts.AroundTruncate = func(truncate func() error) error {
		before := a.log.LogEndOffset()
		err := truncate()
		calls = append(calls, fmt.Sprintf("%d→%d", before, a.log.LogEndOffset()))
		return err
	}
	a.down = true
	s.elect(2, 2)
	s.mustProduce(2, "m3", 1)
	a.down = false
	s.tell(1)
	s.settle(1)
	s.assertIdentical(1, 2)
	if len(calls) != 1 || calls[0] != "2→1" {
		t.Fatalf("truncations through AroundTruncate: %v, want [2→1]", calls)
	}
}
