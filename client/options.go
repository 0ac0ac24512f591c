package client

import (
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Option configures Open and NewWriter.
type Option func(*options)

// TopicSpec describes a topic to create when it does not exist.
type TopicSpec struct {
	// Partitions; -1 or 0 uses the broker's num.partitions.
	Partitions int32
	// ReplicationFactor; -1 or 0 uses the broker's default.replication.factor.
	ReplicationFactor int16
	// Configs are topic configs (Kafka names). cleanup.policy defaults to
	// "compact"; a policy without compact is refused with ErrInvalidOption.
	Configs map[string]string
}

type options struct {
	create           *TopicSpec
	allowUncompacted bool
	progress         func(Progress)
	progressInterval time.Duration
	apply            func(Record) error
	noTail           bool
	kgoOpts          []kgo.Opt
	fetchMaxBytes    int32
	partMaxBytes     int32
	fetchMaxWait     time.Duration
	stallTimeout     time.Duration
	dialTimeout      time.Duration
	sizeHint         int
	err              error
}

func defaultOptions() options {
	return options{
		progressInterval: 200 * time.Millisecond,
		fetchMaxBytes:    64 << 20,
		partMaxBytes:     16 << 20,
		fetchMaxWait:     500 * time.Millisecond,
		stallTimeout:     5 * time.Second,
		dialTimeout:      10 * time.Second,
	}
}

func buildOptions(opts []Option) (options, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	return o, o.err
}

func (o *options) invalid(format string, args ...any) {
	if o.err == nil {
		o.err = fmt.Errorf("%w: %s", ErrInvalidOption, fmt.Sprintf(format, args...))
	}
}

// WithCreateTopic creates the topic as compacted when it does not exist.
func WithCreateTopic(spec TopicSpec) Option {
	return func(o *options) {
		s := spec
		cfg := make(map[string]string, len(spec.Configs)+1)
		for k, v := range spec.Configs {
			cfg[k] = v
		}
		if p, ok := cfg["cleanup.policy"]; !ok {
			cfg["cleanup.policy"] = "compact"
		} else if !policyCompacts(p) {
			o.invalid("cleanup.policy %q does not compact", p)
		}
		s.Configs = cfg
		o.create = &s
	}
}

// AllowUncompacted lets Open replay a topic whose cleanup.policy does not
// include compact (the state is the same; replay takes longer because the
// whole history is read). Without it Open returns ErrNotCompacted.
func AllowUncompacted() Option { return func(o *options) { o.allowUncompacted = true } }

// WithProgress calls fn with replay progress at most every interval (a
// non-positive interval keeps the default, 200ms) and once more when the
// replay is complete (Progress.Done). fn runs on the table's goroutine.
func WithProgress(interval time.Duration, fn func(Progress)) Option {
	return func(o *options) {
		o.progress = fn
		if interval > 0 {
			o.progressInterval = interval
		}
	}
}

// WithApply hands every record (replayed and tailed, tombstones included) to
// fn instead of the built-in map, for state that lives elsewhere. Get, Len
// and Snapshot then report an empty table. An error from fn stops the table:
// Open returns it during replay, Err afterwards.
func WithApply(fn func(Record) error) Option { return func(o *options) { o.apply = fn } }

// ReplayOnly stops consuming once the replay is complete: the table holds
// the state as of Open and does not tail. Put and Delete apply the
// acknowledged write to the local state themselves.
func ReplayOnly() Option { return func(o *options) { o.noTail = true } }

// WithFetchSizes sets the fetch request's total and per-partition byte
// limits (defaults 64 MiB and 16 MiB: replay reads in large fetches).
func WithFetchSizes(total, perPartition int32) Option {
	return func(o *options) {
		if total <= 0 || perPartition <= 0 {
			o.invalid("fetch sizes must be positive")
			return
		}
		o.fetchMaxBytes, o.partMaxBytes = total, perPartition
	}
}

// WithStallTimeout bounds how long the replay waits for a partition that
// stops making progress below its target (a compacted-away tail leaves an
// offset gap no record will ever fill). After it the partition counts as
// replayed and Stats reports it in StalledPartitions. Default 5s.
func WithStallTimeout(d time.Duration) Option {
	return func(o *options) {
		if d <= 0 {
			o.invalid("stall timeout must be positive")
			return
		}
		o.stallTimeout = d
	}
}

// WithDialTimeout bounds the initial connection check (default 10s); when no
// bootstrap broker answers within it, Open returns ErrBrokerUnreachable.
func WithDialTimeout(d time.Duration) Option {
	return func(o *options) {
		if d <= 0 {
			o.invalid("dial timeout must be positive")
			return
		}
		o.dialTimeout = d
	}
}

// WithKgoOptions passes extra options to the franz-go clients (TLS, SASL,
// logging, …). Options that decide what is consumed are overridden.
func WithKgoOptions(opts ...kgo.Opt) Option {
	return func(o *options) { o.kgoOpts = append(o.kgoOpts, opts...) }
}

// WithSizeHint preallocates the built-in state for n keys. By default the
// table presizes from the number of offsets it will replay.
func WithSizeHint(n int) Option {
	return func(o *options) {
		if n < 0 {
			o.invalid("size hint must not be negative")
			return
		}
		o.sizeHint = n
	}
}
