package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// closedAddr returns a 127.0.0.1 address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestClassify(t *testing.T) {
	brokers := []string{"127.0.0.1:1"}
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	cases := []struct {
		name string
		in   error
		want []error
	}{
		{"dial", fmt.Errorf("unable to dial: %w", dial), []error{ErrBrokerUnreachable, syscall.ECONNREFUSED}},
		{"refused", syscall.ECONNREFUSED, []error{ErrBrokerUnreachable}},
		{"unknown topic", kerr.UnknownTopicOrPartition, []error{ErrTopicNotFound, kerr.UnknownTopicOrPartition}},
		{"canceled", context.Canceled, []error{context.Canceled}},
		{"deadline after dial failures", fmt.Errorf("%w: %w", context.DeadlineExceeded, dial), []error{ErrBrokerUnreachable, context.DeadlineExceeded}},
		{"other broker error", kerr.InvalidRequest, []error{kerr.InvalidRequest}},
	}
	for _, c := range cases {
		got := classify(brokers, c.in)
		for _, w := range c.want {
			if !errors.Is(got, w) {
				t.Errorf("%s: classify(%v) = %v, does not match %v", c.name, c.in, got, w)
			}
		}
	}
	if classify(brokers, nil) != nil {
		t.Error("classify(nil) != nil")
	}
	if errors.Is(classify(brokers, kerr.InvalidRequest), ErrBrokerUnreachable) {
		t.Error("a broker error classified as unreachable")
	}
}

func TestTopicError(t *testing.T) {
	err := topicErr("users", "open", fmt.Errorf("%w (cleanup.policy=delete)", ErrNotCompacted))
	var te *TopicError
	if !errors.As(err, &te) || te.Topic != "users" || te.Op != "open" {
		t.Fatalf("errors.As: %v", err)
	}
	if !errors.Is(err, ErrNotCompacted) {
		t.Error("TopicError does not unwrap to its cause")
	}
	if want := `kvlog/client: open topic "users": kvlog/client: topic is not compacted (cleanup.policy=delete)`; err.Error() != want {
		t.Errorf("message %q, want %q", err.Error(), want)
	}
	if topicErr("t", "x", nil) != nil {
		t.Error("topicErr(nil) != nil")
	}
}

func TestOpenUnreachable(t *testing.T) {
	addr := closedAddr(t)
	// ctx is a hang guard: Open gives up on its own, after its dial
	// timeout, long before ctx ends.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := Open(ctx, []string{addr}, "t", WithDialTimeout(2*time.Second))
	if !errors.Is(err, ErrBrokerUnreachable) {
		t.Fatalf("Open against %s: %v, want ErrBrokerUnreachable", addr, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("Open gave up only when its context ended: %v", err)
	}
	_, err = NewWriter(ctx, []string{addr}, "t", WithDialTimeout(2*time.Second))
	if !errors.Is(err, ErrBrokerUnreachable) {
		t.Fatalf("NewWriter against %s: %v, want ErrBrokerUnreachable", addr, err)
	}
}

// TestOpenCanceled: a cancelled context wins over the dial and reports the
// context's error, not unreachable.
func TestOpenCanceled(t *testing.T) {
	// A listener that accepts and never answers, so the dial succeeds and
	// the request hangs until the context ends.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			select {
			case accepted <- struct{}{}:
			default:
			}
		}
	}()
	// Cancelled once the client is connected and waiting for an answer.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-accepted:
			cancel()
		case <-ctx.Done():
		}
	}()
	_, err = Open(ctx, []string{ln.Addr().String()}, "t", WithDialTimeout(30*time.Second))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Open with a cancelled context: %v, want context.Canceled", err)
	}
}

func TestOptionsValidation(t *testing.T) {
	ctx := context.Background()
	cases := map[string][]Option{
		"no compact policy": {WithCreateTopic(TopicSpec{Configs: map[string]string{"cleanup.policy": "delete"}})},
		"fetch sizes":       {WithFetchSizes(0, 1)},
		"stall":             {WithStallTimeout(-1)},
		"dial":              {WithDialTimeout(0)},
	}
	for name, opts := range cases {
		if _, err := Open(ctx, []string{"127.0.0.1:1"}, "t", opts...); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("%s: %v, want ErrInvalidOption", name, err)
		}
	}
	if _, err := Open(ctx, nil, "t"); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("no brokers: %v, want ErrInvalidOption", err)
	}
	o, err := buildOptions([]Option{WithCreateTopic(TopicSpec{Configs: map[string]string{"cleanup.policy": "compact,delete"}})})
	if err != nil || o.create.Configs["cleanup.policy"] != "compact,delete" {
		t.Errorf("compact,delete refused: %v", err)
	}
	o, _ = buildOptions([]Option{WithCreateTopic(TopicSpec{Partitions: 3})})
	if o.create.Configs["cleanup.policy"] != "compact" {
		t.Errorf("default policy %q", o.create.Configs["cleanup.policy"])
	}
}

func TestProgressTotals(t *testing.T) {
	p := Progress{Partitions: []PartitionProgress{
		{Partition: 0, Start: 0, Position: 5, Target: 10},
		{Partition: 1, Start: 3, Position: 9, Target: 8}, // past the target (tailing)
		{Partition: 2, Start: 4, Position: 4, Target: 4}, // empty
	}}
	if p.Total() != 15 || p.Remaining() != 5 {
		t.Errorf("Total %d Remaining %d, want 15 5", p.Total(), p.Remaining())
	}
}
