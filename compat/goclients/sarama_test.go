package goclients

import (
	"context"
	"crypto/sha512"
	"crypto/tls"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"
)

// saramaSCRAM is sarama's SCRAMClient on xdg-go/scram, as sarama's own
// example wires it.
type saramaSCRAM struct {
	conv *scram.ClientConversation
}

func (c *saramaSCRAM) Begin(user, password, authzID string) error {
	cl, err := scram.HashGeneratorFcn(sha512.New).NewClient(user, password, authzID)
	if err != nil {
		return err
	}
	c.conv = cl.NewConversation()
	return nil
}

func (c *saramaSCRAM) Step(challenge string) (string, error) { return c.conv.Step(challenge) }
func (c *saramaSCRAM) Done() bool                            { return c.conv.Done() }

// saramaConfig is sarama's configuration for SASL_SSL with SCRAM-SHA-512
// (password non-empty) or SSL with tlsCfg's client certificate, speaking
// Kafka 3.6's protocol versions.
func saramaConfig(tlsCfg *tls.Config, password string) *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.ClientID = "kvlog-sarama"
	cfg.Net.TLS.Enable = true
	cfg.Net.TLS.Config = tlsCfg
	cfg.Net.DialTimeout = 5 * time.Second
	if password != "" {
		cfg.Net.SASL.Enable = true
		cfg.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
		cfg.Net.SASL.User = scramUser
		cfg.Net.SASL.Password = password
		cfg.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &saramaSCRAM{} }
	}
	cfg.Metadata.Retry.Max = 1
	cfg.Metadata.Retry.Backoff = 100 * time.Millisecond
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Partitioner = sarama.NewHashPartitioner
	cfg.Producer.Idempotent = true
	cfg.Net.MaxOpenRequests = 1
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Enable = false
	cfg.Consumer.Group.Rebalance.Timeout = 10 * time.Second
	cfg.Consumer.Group.Session.Timeout = 10 * time.Second
	cfg.Consumer.Group.Heartbeat.Interval = time.Second
	return cfg
}

// TestSaramaSecure: sarama over SASL_SSL (SCRAM-SHA-512) and over SSL with
// a client certificate creates and lists topics, produces a keyed batch
// with a tombstone (idempotent, acks=all), reads it back in a consumer
// group and commits, at Kafka 3.6's protocol versions and at sarama's
// default; a wrong password gives ErrSASLAuthenticationFailed, a mechanism
// the listener does not enable ErrUnsupportedSASLMechanism, no client
// certificate or one from another CA a TLS certificate error, and the
// broker keeps serving.
func TestSaramaSecure(t *testing.T) {
	sb := startSecureBroker(t)
	for _, run := range []struct {
		name, prefix, addr string
		cfg                func() *sarama.Config
	}{
		{"SASL_SSL SCRAM-SHA-512", "sarama-sasl", sb.saslSSL, func() *sarama.Config { return saramaConfig(sb.ca.TLS(t, nil), scramPassword) }},
		{"SSL mTLS", "sarama-ssl", sb.ssl, func() *sarama.Config { return saramaConfig(sb.ca.TLS(t, sb.clientCert), "") }},
		// What an application that sets no Version speaks (older
		// request versions throughout).
		{"SASL_SSL SCRAM-SHA-512 default version", "sarama-sasl-default", sb.saslSSL, func() *sarama.Config {
			cfg := saramaConfig(sb.ca.TLS(t, nil), scramPassword)
			cfg.Version = sarama.NewConfig().Version
			return cfg
		}},
	} {
		t.Run(run.name, func(t *testing.T) {
			topic, group := run.prefix+"-keyed", run.prefix+"-group"
			saramaAdmin(t, run.addr, run.cfg(), topic)
			want := keyedBatch(50)
			saramaProduce(t, run.addr, run.cfg(), topic, want)
			got := saramaConsumeGroup(t, run.addr, run.cfg(), group, topic, len(want))
			checkRecords(t, "sarama consumer group", got, want)
			checkTopic(t, sb, topic, want)
			checkCommitted(t, sb, group, topic)
		})
	}

	t.Run("wrong password", func(t *testing.T) {
		_, err := sarama.NewClient([]string{sb.saslSSL}, saramaConfig(sb.ca.TLS(t, nil), "wrong"))
		if !errors.Is(err, sarama.ErrSASLAuthenticationFailed) {
			t.Fatalf("got %v (%T), want sarama.ErrSASLAuthenticationFailed", err, err)
		}
		t.Logf("sarama: %v", err)
	})
	t.Run("mechanism not enabled", func(t *testing.T) {
		cfg := saramaConfig(sb.ca.TLS(t, nil), scramPassword)
		cfg.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA256
		// sarama's Client reports only ErrOutOfBrokers for it (it passes
		// on the cause for ErrSASLAuthenticationFailed alone); a Broker
		// shows the handshake's error code.
		_, err := sarama.NewClient([]string{sb.saslSSL}, cfg)
		if !errors.Is(err, sarama.ErrOutOfBrokers) {
			t.Fatalf("client: got %v (%T), want sarama.ErrOutOfBrokers", err, err)
		}
		br := sarama.NewBroker(sb.saslSSL)
		if err := br.Open(cfg); err != nil {
			t.Fatal(err)
		}
		defer br.Close()
		_, err = br.GetMetadata(&sarama.MetadataRequest{Version: 7})
		if !errors.Is(err, sarama.ErrUnsupportedSASLMechanism) {
			t.Fatalf("broker: got %v (%T), want sarama.ErrUnsupportedSASLMechanism", err, err)
		}
		t.Logf("sarama: %v", err)
	})
	t.Run("SSL without a client certificate", func(t *testing.T) {
		_, err := sarama.NewClient([]string{sb.ssl}, saramaConfig(sb.ca.TLS(t, nil), ""))
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("got %v (%T), want a TLS certificate error", err, err)
		}
		t.Logf("sarama: %v", err)
	})
	t.Run("SSL with a certificate from another CA", func(t *testing.T) {
		_, err := sarama.NewClient([]string{sb.ssl}, saramaConfig(sb.untrustedClientTLS(t), ""))
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("got %v (%T), want a TLS certificate error", err, err)
		}
		t.Logf("sarama: %v", err)
	})
	// Still serving: a good sarama client on each listener, and franz-go.
	for _, addr := range []string{sb.saslSSL, sb.ssl} {
		cfg := saramaConfig(sb.ca.TLS(t, nil), scramPassword)
		if addr == sb.ssl {
			cfg = saramaConfig(sb.ca.TLS(t, sb.clientCert), "")
		}
		cl, err := sarama.NewClient([]string{addr}, cfg)
		if err != nil {
			t.Fatalf("sarama on %s after the refused clients: %v", addr, err)
		}
		if _, err := cl.Topics(); err != nil {
			t.Fatalf("sarama on %s after the refused clients: %v", addr, err)
		}
		cl.Close()
	}
	checkHealthy(t, sb)
}

// saramaAdmin creates topic (3 partitions) with sarama's ClusterAdmin and
// finds it in ListTopics and DescribeTopics.
func saramaAdmin(t *testing.T, addr string, cfg *sarama.Config, topic string) {
	t.Helper()
	adm, err := sarama.NewClusterAdmin([]string{addr}, cfg)
	if err != nil {
		t.Fatalf("sarama admin: %v", err)
	}
	defer adm.Close()
	if err := adm.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1}, false); err != nil {
		t.Fatalf("sarama CreateTopic %s: %v", topic, err)
	}
	err = adm.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1}, false)
	if !errors.Is(err, sarama.ErrTopicAlreadyExists) {
		t.Fatalf("sarama CreateTopic %s again: %v, want ErrTopicAlreadyExists", topic, err)
	}
	topics, err := adm.ListTopics()
	if err != nil {
		t.Fatalf("sarama ListTopics: %v", err)
	}
	if d, ok := topics[topic]; !ok || d.NumPartitions != 3 {
		t.Fatalf("sarama ListTopics: %s is %+v (present %v)", topic, d, ok)
	}
	md, err := adm.DescribeTopics([]string{topic})
	if err != nil || len(md) != 1 || md[0].Err != sarama.ErrNoError || len(md[0].Partitions) != 3 {
		t.Fatalf("sarama DescribeTopics %s: %v %+v", topic, err, md)
	}
}

func saramaProduce(t *testing.T, addr string, cfg *sarama.Config, topic string, recs []record) {
	t.Helper()
	p, err := sarama.NewSyncProducer([]string{addr}, cfg)
	if err != nil {
		t.Fatalf("sarama producer: %v", err)
	}
	defer p.Close()
	var msgs []*sarama.ProducerMessage
	for _, r := range recs {
		m := &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(r.Key)}
		if !r.Tombstone {
			m.Value = sarama.StringEncoder(r.Value)
		}
		msgs = append(msgs, m)
	}
	if err := p.SendMessages(msgs); err != nil {
		t.Fatalf("sarama SendMessages to %s: %v", topic, err)
	}
	for i, m := range msgs {
		if m.Offset < 0 {
			t.Fatalf("sarama message %d: offset %d", i, m.Offset)
		}
	}
}

// saramaGroup collects the records of a consumer group session and marks
// them; done closes once n have been seen.
type saramaGroup struct {
	n    int
	mu   sync.Mutex
	got  []record
	done chan struct{}
}

func (h *saramaGroup) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *saramaGroup) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *saramaGroup) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for {
		select {
		case m, ok := <-c.Messages():
			if !ok {
				return nil
			}
			h.mu.Lock()
			h.got = append(h.got, record{Key: string(m.Key), Value: string(m.Value), Tombstone: m.Value == nil, Partition: m.Partition, Offset: m.Offset})
			full := len(h.got) == h.n
			h.mu.Unlock()
			s.MarkMessage(m, "")
			if full {
				s.Commit()
				close(h.done)
			}
		case <-s.Context().Done():
			return nil
		}
	}
}

func saramaConsumeGroup(t *testing.T, addr string, cfg *sarama.Config, group, topic string, n int) []record {
	t.Helper()
	g, err := sarama.NewConsumerGroup([]string{addr}, group, cfg)
	if err != nil {
		t.Fatalf("sarama consumer group: %v", err)
	}
	defer g.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h := &saramaGroup{n: n, done: make(chan struct{})}
	errc := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{topic}, h); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	select {
	case <-h.done:
	case err := <-errc:
		t.Fatalf("sarama group %s: %v", group, err)
	case <-ctx.Done():
		h.mu.Lock()
		defer h.mu.Unlock()
		t.Fatalf("sarama group %s: %d of %d records in time", group, len(h.got), n)
	}
	cancel()
	if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("sarama group %s: %v", group, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	got := slices.Clone(h.got)
	slices.SortStableFunc(got, func(a, b record) int {
		if a.Partition != b.Partition {
			return int(a.Partition - b.Partition)
		}
		return int(a.Offset - b.Offset)
	})
	return got
}
