package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Position is where a record landed: its partition and offset.
type Position struct {
	Partition int32
	Offset    int64
}

// Writer writes keyed records and tombstones to a topic without replaying
// it. Keys are placed with PartitionFor. Writes wait for acks=all.
type Writer struct {
	topic   string
	brokers []string
	cl      *kgo.Client

	mu     sync.RWMutex
	closed bool
}

// NewWriter connects to brokers and checks that topic exists (creating it
// with WithCreateTopic). Options that concern replay are ignored.
func NewWriter(ctx context.Context, brokers []string, topic string, opts ...Option) (*Writer, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	cl, err := connect(ctx, brokers, &o)
	if err != nil {
		return nil, err
	}
	if _, err := ensureTopic(ctx, cl, brokers, topic, &o, false); err != nil {
		cl.Close()
		return nil, err
	}
	return &Writer{topic: topic, brokers: brokers, cl: cl}, nil
}

// Topic returns the topic written to.
func (w *Writer) Topic() string { return w.topic }

// Put writes value under key and returns where it landed once every in-sync
// replica has it. A nil value is written as an empty value, never as a
// tombstone (use Delete).
func (w *Writer) Put(ctx context.Context, key, value []byte) (Position, error) {
	if value == nil {
		value = []byte{}
	}
	return w.produce(ctx, key, value)
}

// Delete writes a tombstone (null value) for key.
func (w *Writer) Delete(ctx context.Context, key []byte) (Position, error) {
	return w.produce(ctx, key, nil)
}

func (w *Writer) produce(ctx context.Context, key, value []byte) (Position, error) {
	if key == nil {
		return Position{}, ErrNilKey
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return Position{}, ErrClosed
	}
	r := &kgo.Record{Topic: w.topic, Key: key, Value: value}
	if err := w.cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		return Position{}, topicErr(w.topic, "produce", classify(w.brokers, err))
	}
	return Position{Partition: r.Partition, Offset: r.Offset}, nil
}

// Close releases the connections. Further writes return ErrClosed.
func (w *Writer) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.closed = true
		w.cl.Close()
	}
}

// connect creates the admin/producer client and checks that a broker answers.
func connect(ctx context.Context, brokers []string, o *options) (*kgo.Client, error) {
	if len(brokers) == 0 {
		return nil, fmt.Errorf("%w: no bootstrap brokers", ErrInvalidOption)
	}
	kopts := []kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.RecordPartitioner(Partitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.DialTimeout(o.dialTimeout),
		kgo.ProducerLinger(0),
	}
	kopts = append(kopts, o.kgoOpts...)
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOption, err)
	}
	// franz-go does not interrupt a connection's handshake when the
	// context ends, so wait for the ping and the context side by side.
	pctx, cancel := context.WithTimeout(ctx, o.dialTimeout)
	defer cancel()
	pinged := make(chan error, 1)
	go func() { pinged <- cl.Ping(pctx) }()

	select {
	case err = <-pinged:
	case <-pctx.Done():
		err = pctx.Err()
	}
	if err != nil {
		cl.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &unreachableError{brokers: brokers, err: err}
	}
	return cl, nil
}

// ensureTopic checks that topic exists (creating it when o.create is set)
// and, when checkCompacted, that it is compacted. It returns the number of
// partitions.
func ensureTopic(ctx context.Context, cl *kgo.Client, brokers []string, topic string, o *options, checkCompacted bool) (int32, error) {
	if topic == "" {
		return 0, fmt.Errorf("%w: empty topic name", ErrInvalidOption)
	}
	adm := kadm.NewClient(cl)
	n, err := describePartitions(ctx, cl, brokers, topic)
	if errors.Is(err, ErrTopicNotFound) && o.create != nil {
		cfg := make(map[string]*string, len(o.create.Configs))
		for k, v := range o.create.Configs {
			cfg[k] = kadm.StringPtr(v)
		}
		parts, rf := o.create.Partitions, o.create.ReplicationFactor
		if parts == 0 {
			parts = -1
		}
		if rf == 0 {
			rf = -1
		}
		resp, cerr := adm.CreateTopic(ctx, parts, rf, cfg, topic)
		if cerr == nil {
			cerr = resp.Err
		}
		if cerr != nil && !errors.Is(cerr, kerr.TopicAlreadyExists) {
			return 0, topicErr(topic, "create", classify(brokers, cerr))
		}
		// Metadata may lag the creation briefly.
		for i := 0; ; i++ {
			n, err = describePartitions(ctx, cl, brokers, topic)
			if err == nil || !errors.Is(err, ErrTopicNotFound) || i == 50 {
				break
			}
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	if err != nil {
		return 0, topicErr(topic, "open", err)
	}
	if checkCompacted && !o.allowUncompacted {
		policy, err := topicConfig(ctx, adm, brokers, topic, "cleanup.policy")
		if err != nil {
			return 0, topicErr(topic, "describe", err)
		}
		if !policyCompacts(policy) {
			return 0, topicErr(topic, "open", fmt.Errorf("%w (cleanup.policy=%s)", ErrNotCompacted, policy))
		}
	}
	return n, nil
}

// describePartitions asks a broker for the topic's metadata directly: kadm's
// ListTopics goes through franz-go's metadata cache, which remembers that a
// topic is unknown for several seconds after it is created.
func describePartitions(ctx context.Context, cl *kgo.Client, brokers []string, topic string) (int32, error) {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return 0, classify(brokers, err)
	}
	for _, t := range resp.Topics {
		if t.Topic == nil || *t.Topic != topic {
			continue
		}
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			return 0, classify(brokers, err)
		}
		if len(t.Partitions) == 0 {
			return 0, ErrTopicNotFound
		}
		return int32(len(t.Partitions)), nil
	}
	return 0, ErrTopicNotFound
}

func topicConfig(ctx context.Context, adm *kadm.Client, brokers []string, topic, name string) (string, error) {
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return "", classify(brokers, err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil {
		return "", classify(brokers, err)
	}
	if rc.Err != nil {
		return "", classify(brokers, rc.Err)
	}
	for _, c := range rc.Configs {
		if c.Key == name {
			return c.MaybeValue(), nil
		}
	}
	return "", fmt.Errorf("config %s not reported by the broker", name)
}

func policyCompacts(p string) bool {
	for _, s := range strings.Split(p, ",") {
		if strings.TrimSpace(s) == "compact" {
			return true
		}
	}
	return false
}

// Connect returns a franz-go client for brokers, configured as the library's
// own (Kafka's default partitioner, acks=all, the dial timeout) plus
// WithKgoOptions, once a broker has answered. It returns ErrBrokerUnreachable
// when none answers within the dial timeout. The caller closes the client.
func Connect(ctx context.Context, brokers []string, opts ...Option) (*kgo.Client, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	return connect(ctx, brokers, &o)
}
