package replica

import (
	"errors"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine"
)

// A producer's batch is validated (CRC, every record, a compressed batch's
// decompression) before the partition's lock is taken: producers of one
// partition validate in parallel and serialise only on the write. Its
// errors still come after the role check, as Kafka's leader answers.
func TestAppendValidatesOutsideThePartitionLock(t *testing.T) {
	s := newSim(t, 1, 2)
	s.elect(1, 1)
	p := s.nodes[1].p
	validated := make(chan struct{})
	appendValidated = func() { close(validated) }
	defer func() { appendValidated = nil }()

	b := batch(t, "a", 3)
	p.mu.Lock() // another holder of the partition's lock
	done := make(chan error, 1)
	go func() {
		_, _, err := p.AppendAsLeader(b, false, 1)
		done <- err
	}()
	select {
	case <-validated:
	case <-time.After(10 * time.Second):
		p.mu.Unlock()
		<-done
		t.Fatal("the batch was not validated while another goroutine held the partition's lock")
	}
	p.mu.Unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	appendValidated = nil

	// A corrupt batch: the leader refuses it as corrupt, a follower as
	// not the leader.
	bad := batch(t, "b", 2)
	bad[len(bad)-1] ^= 0xff
	if _, _, err := p.AppendAsLeader(bad, false, 1); !errors.Is(err, engine.ErrCorruptRecord) {
		t.Fatalf("corrupt batch to the leader: %v", err)
	}
	s.tell(2) // a follower
	bad = batch(t, "c", 2)
	bad[len(bad)-1] ^= 0xff
	if _, _, err := s.nodes[2].p.AppendAsLeader(bad, false, 1); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("corrupt batch to a follower: %v", err)
	}
}
