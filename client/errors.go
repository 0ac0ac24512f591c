package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Sentinel errors. Every error returned by this package wraps one of them,
// a context error, or an error from the broker (a *kerr.Error).
var (
	// ErrTopicNotFound: the topic does not exist (and creation was not asked).
	ErrTopicNotFound = errors.New("kvlog/client: topic not found")
	// ErrNotCompacted: the topic's cleanup.policy does not include compact
	// (see AllowUncompacted).
	ErrNotCompacted = errors.New("kvlog/client: topic is not compacted")
	// ErrBrokerUnreachable: no broker of the bootstrap list answered.
	ErrBrokerUnreachable = errors.New("kvlog/client: broker unreachable")
	// ErrClosed: the table or writer was closed.
	ErrClosed = errors.New("kvlog/client: closed")
	// ErrNilKey: a nil key was given; changelog records need a key (an empty,
	// non-nil key is allowed).
	ErrNilKey = errors.New("kvlog/client: nil key")
	// ErrInvalidOption: an option has an invalid value.
	ErrInvalidOption = errors.New("kvlog/client: invalid option")
)

// TopicError names the topic an operation failed on and wraps the cause.
type TopicError struct {
	Topic string
	Op    string // "open", "create", "describe", "replay", "produce", …
	Err   error
}

func (e *TopicError) Error() string {
	return fmt.Sprintf("kvlog/client: %s topic %q: %v", e.Op, e.Topic, e.Err)
}

func (e *TopicError) Unwrap() error { return e.Err }

func topicErr(topic, op string, err error) error {
	if err == nil {
		return nil
	}
	return &TopicError{Topic: topic, Op: op, Err: err}
}

// unreachableError wraps a connection failure so that it matches both
// ErrBrokerUnreachable and the underlying network error.
type unreachableError struct {
	brokers []string
	err     error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("%v (bootstrap %v): %v", ErrBrokerUnreachable, e.brokers, e.err)
}

func (e *unreachableError) Unwrap() []error { return []error{ErrBrokerUnreachable, e.err} }

// classify turns a franz-go error into one of the package's errors where it
// can: connection failures become ErrBrokerUnreachable, unknown topics
// ErrTopicNotFound. Context errors are kept as they are.
func classify(brokers []string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// A deadline hit while every dial failed is still "unreachable":
		// callers asked for a bounded wait, and the cause is the network.
		if isDialError(err) {
			return &unreachableError{brokers: brokers, err: err}
		}
		return err
	}
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return fmt.Errorf("%w: %w", ErrTopicNotFound, err)
	}
	if isDialError(err) {
		return &unreachableError{brokers: brokers, err: err}
	}
	return err
}

func isDialError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}
