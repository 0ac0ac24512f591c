package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kvlog/kvlog/client"
	"github.com/twmb/franz-go/pkg/kerr"
)

// brokerError is a Kafka error code with the broker's own message, printed
// once: "TOPIC_ALREADY_EXISTS: Topic 'users' already exists." rather than
// the code's generic description followed by the broker's message. It
// unwraps to the kerr error, so errors.Is(err, kerr.X) holds.
type brokerError struct {
	code *kerr.Error
	msg  string
}

func (e *brokerError) Error() string { return e.code.Message + ": " + e.msg }
func (e *brokerError) Unwrap() error { return e.code }

// kafkaErr combines a response's error code and message. Without a message
// (or with one that only repeats the code's description) it is err itself.
func kafkaErr(err error, msg string) error {
	if err == nil {
		return nil
	}
	var ke *kerr.Error
	msg = strings.TrimSpace(msg)
	if msg == "" || !errors.As(err, &ke) || msg == ke.Description || strings.Contains(err.Error(), msg) {
		return err
	}
	return &brokerError{code: ke, msg: msg}
}

// wrapf is fmt.Errorf("what: %w") that does not repeat a prefix err
// already starts with (e.g. "topic "x": topic "x": …").
func wrapf(err error, format string, args ...any) error {
	prefix := fmt.Sprintf(format, args...)
	if strings.HasPrefix(err.Error(), prefix+":") {
		return err
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

// notFound is an error with its own message that still matches a sentinel
// (client.ErrTopicNotFound) with errors.Is.
type notFound struct {
	msg      string
	sentinel error
}

func (e *notFound) Error() string { return e.msg }
func (e *notFound) Unwrap() error { return e.sentinel }

func topicNotFound(topic string) error {
	return &notFound{msg: fmt.Sprintf("topic %q not found", topic), sentinel: client.ErrTopicNotFound}
}

// concise is the message run prints: the client library's package prefix
// dropped, and a segment that repeats the one before it ("a: a: b") said
// once.
func concise(msg string) string {
	msg = strings.ReplaceAll(msg, "kvlog/client: ", "")
	parts := strings.Split(msg, ": ")
	out := parts[:0]
	for i, p := range parts {
		if i > 0 && p == parts[i-1] {
			continue
		}
		out = append(out, p)
	}
	return strings.Join(out, ": ")
}
