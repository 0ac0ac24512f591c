package goclients

import (
	"context"
	"crypto/tls"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// kafkaGoMechanism is kafka-go's SCRAM-SHA-512 mechanism, nil without a
// password (SSL with a client certificate).
func kafkaGoMechanism(t *testing.T, password string) sasl.Mechanism {
	t.Helper()
	if password == "" {
		return nil
	}
	m, err := scram.Mechanism(scram.SHA512, scramUser, password)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func kafkaGoTransport(t *testing.T, tlsCfg *tls.Config, password string) *kafka.Transport {
	t.Helper()
	tr := &kafka.Transport{TLS: tlsCfg, SASL: kafkaGoMechanism(t, password), DialTimeout: 5 * time.Second, ClientID: "kvlog-kafka-go"}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// TestKafkaGoSecure: kafka-go over SASL_SSL (SCRAM-SHA-512) and over SSL
// with a client certificate creates and lists topics (Client), produces a
// keyed batch with a tombstone (Writer, Hash balancer, RequireAll), reads
// it back with a group Reader and commits; a wrong password gives
// kafka.SASLAuthenticationFailed, a mechanism the listener does not enable
// kafka.UnsupportedSASLMechanism, no client certificate or one from
// another CA a TLS certificate error, and the broker keeps serving.
func TestKafkaGoSecure(t *testing.T) {
	sb := startSecureBroker(t)
	type conf struct {
		tls      *tls.Config
		password string
	}
	for _, run := range []struct {
		name, prefix, addr string
		conf               conf
	}{
		{"SASL_SSL SCRAM-SHA-512", "kafka-go-sasl", sb.saslSSL, conf{sb.ca.TLS(t, nil), scramPassword}},
		{"SSL mTLS", "kafka-go-ssl", sb.ssl, conf{sb.ca.TLS(t, sb.clientCert), ""}},
	} {
		t.Run(run.name, func(t *testing.T) {
			topic, group := run.prefix+"-keyed", run.prefix+"-group"
			tr := kafkaGoTransport(t, run.conf.tls, run.conf.password)
			kafkaGoAdmin(t, run.addr, tr, topic)
			want := keyedBatch(50)
			kafkaGoProduce(t, run.addr, tr, topic, want)
			dialer := &kafka.Dialer{Timeout: 5 * time.Second, TLS: run.conf.tls, SASLMechanism: kafkaGoMechanism(t, run.conf.password), ClientID: "kvlog-kafka-go"}
			got := kafkaGoConsumeGroup(t, run.addr, dialer, group, topic, len(want))
			checkRecords(t, "kafka-go group reader", got, want)
			checkTopic(t, sb, topic, want)
			checkCommitted(t, sb, group, topic)
		})
	}

	metadata := func(addr string, tr *kafka.Transport) error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cl := &kafka.Client{Addr: kafka.TCP(addr), Transport: tr, Timeout: 10 * time.Second}
		_, err := cl.Metadata(ctx, &kafka.MetadataRequest{})
		return err
	}
	t.Run("wrong password", func(t *testing.T) {
		err := metadata(sb.saslSSL, kafkaGoTransport(t, sb.ca.TLS(t, nil), "wrong"))
		if !errors.Is(err, kafka.SASLAuthenticationFailed) {
			t.Fatalf("got %v (%T), want kafka.SASLAuthenticationFailed", err, err)
		}
		t.Logf("kafka-go: %v", err)
	})
	t.Run("mechanism not enabled", func(t *testing.T) {
		m, err := scram.Mechanism(scram.SHA256, scramUser, scramPassword)
		if err != nil {
			t.Fatal(err)
		}
		tr := kafkaGoTransport(t, sb.ca.TLS(t, nil), "")
		tr.SASL = m
		err = metadata(sb.saslSSL, tr)
		if !errors.Is(err, kafka.UnsupportedSASLMechanism) {
			t.Fatalf("got %v (%T), want kafka.UnsupportedSASLMechanism", err, err)
		}
		t.Logf("kafka-go: %v", err)
	})
	t.Run("SSL without a client certificate", func(t *testing.T) {
		err := metadata(sb.ssl, kafkaGoTransport(t, sb.ca.TLS(t, nil), ""))
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("got %v (%T), want a TLS certificate error", err, err)
		}
		t.Logf("kafka-go: %v", err)
	})
	t.Run("SSL with a certificate from another CA", func(t *testing.T) {
		err := metadata(sb.ssl, kafkaGoTransport(t, sb.untrustedClientTLS(t), ""))
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("got %v (%T), want a TLS certificate error", err, err)
		}
		t.Logf("kafka-go: %v", err)
	})
	// Still serving: a good kafka-go client on each listener, and franz-go.
	if err := metadata(sb.saslSSL, kafkaGoTransport(t, sb.ca.TLS(t, nil), scramPassword)); err != nil {
		t.Fatalf("kafka-go on SASL_SSL after the refused clients: %v", err)
	}
	if err := metadata(sb.ssl, kafkaGoTransport(t, sb.ca.TLS(t, sb.clientCert), "")); err != nil {
		t.Fatalf("kafka-go on SSL after the refused clients: %v", err)
	}
	checkHealthy(t, sb)
}

// kafkaGoAdmin creates topic (3 partitions) with kafka-go's Client and
// finds it in a Metadata answer listing every topic.
func kafkaGoAdmin(t *testing.T, addr string, tr *kafka.Transport, topic string) {
	t.Helper()
	ctx := context.Background()
	cl := &kafka.Client{Addr: kafka.TCP(addr), Transport: tr, Timeout: 20 * time.Second}
	resp, err := cl.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 3, ReplicationFactor: 1}}})
	if err != nil || resp.Errors[topic] != nil {
		t.Fatalf("kafka-go CreateTopics %s: %v %v", topic, err, resp)
	}
	resp, err = cl.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 3, ReplicationFactor: 1}}})
	if err != nil || !errors.Is(resp.Errors[topic], kafka.TopicAlreadyExists) {
		t.Fatalf("kafka-go CreateTopics %s again: %v %v, want TopicAlreadyExists", topic, err, resp)
	}
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		t.Fatalf("kafka-go Metadata: %v", err)
	}
	i := slices.IndexFunc(md.Topics, func(tp kafka.Topic) bool { return tp.Name == topic })
	if i < 0 || md.Topics[i].Error != nil || len(md.Topics[i].Partitions) != 3 {
		t.Fatalf("kafka-go Metadata: %s missing or wrong in %+v", topic, md.Topics)
	}
}

func kafkaGoProduce(t *testing.T, addr string, tr *kafka.Transport, topic string, recs []record) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: topic, Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll,
		Transport: tr, BatchSize: len(recs), BatchTimeout: 10 * time.Millisecond, WriteTimeout: 20 * time.Second}
	defer w.Close()
	var msgs []kafka.Message
	for _, r := range recs {
		m := kafka.Message{Key: []byte(r.Key)}
		if !r.Tombstone {
			m.Value = []byte(r.Value)
		}
		msgs = append(msgs, m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("kafka-go WriteMessages to %s: %v", topic, err)
	}
}

func kafkaGoConsumeGroup(t *testing.T, addr string, dialer *kafka.Dialer, group, topic string, n int) []record {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: []string{addr}, GroupID: group, Topic: topic, Dialer: dialer,
		StartOffset: kafka.FirstOffset, MaxWait: 200 * time.Millisecond,
		SessionTimeout: 10 * time.Second, RebalanceTimeout: 10 * time.Second, HeartbeatInterval: time.Second,
	})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var got []record
	for len(got) < n {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("kafka-go group %s: %d of %d records: %v", group, len(got), n, err)
		}
		got = append(got, record{Key: string(m.Key), Value: string(m.Value), Tombstone: m.Value == nil, Partition: int32(m.Partition), Offset: m.Offset})
		if err := r.CommitMessages(ctx, m); err != nil {
			t.Fatalf("kafka-go group %s: commit %s-%d@%d: %v", group, topic, m.Partition, m.Offset, err)
		}
	}
	slices.SortStableFunc(got, func(a, b record) int {
		if a.Partition != b.Partition {
			return int(a.Partition - b.Partition)
		}
		return int(a.Offset - b.Offset)
	})
	return got
}
