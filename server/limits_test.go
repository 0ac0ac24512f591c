package server

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/config"
	"github.com/kvlog/kvlog/server/metastore"
)

// TestConfigBoundsStatic: the rules across keys and the new bounds refuse
// a server.properties, naming the key.
func TestConfigBoundsStatic(t *testing.T) {
	for _, tc := range []struct{ in, key string }{
		{"log.cleaner.dedupe.buffer.size=9223372036854775807", "log.cleaner.dedupe.buffer.size"},
		{"log.cleaner.dedupe.buffer.size=2147483648", "log.cleaner.dedupe.buffer.size"},
		{"log.cleaner.threads=2000", "log.cleaner.threads"},
		{"log.retention.hours=0", "log.retention.ms"},
		{"replica.fetch.wait.max.ms=40000", "replica.socket.timeout.ms"},
		{"replica.lag.time.max.ms=100", "replica.lag.time.max.ms"},
		{"queued.max.request.bytes=1000", "queued.max.request.bytes"},
		{"max.connections.per.ip=0", "max.connections.per.ip"},
		{"ssl.client.auth=always", "ssl.client.auth"},
		{"sasl.kerberos.service.name=kafka", "sasl.kerberos.service.name"},
		{"authorizer.class.name=com.example.MyAuthorizer", "authorizer.class.name"},
		{"client.quota.callback.class=com.example.Quotas", "client.quota.callback.class"},
		{"security.inter.broker.protocol=SSL", "security.inter.broker.protocol"},
	} {
		props, err := config.ParseProperties(strings.NewReader(tc.in))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := config.Parse(props, nil); err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%q: error %v does not name %s", tc.in, err, tc.key)
		}
	}
	for _, ok := range []string{
		"log.cleaner.dedupe.buffer.size=2147483647",
		"log.cleaner.threads=2\nlog.cleaner.dedupe.buffer.size=4294967294",
		"log.retention.hours=-1",
		"queued.max.request.bytes=-1",
		"authorizer.class.name=",
		"authorizer.class.name=kafka.security.authorizer.AclAuthorizer\nsuper.users=User:admin;User:broker",
		"authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\nallow.everyone.if.no.acl.found=true",
		"listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL",
	} {
		props, _ := config.ParseProperties(strings.NewReader(ok))
		if _, err := config.Parse(props, nil); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

// TestStoredConfigsSanitized: dynamic broker configs and topic configs in
// the metadata store that no longer validate are left out at start-up
// (logged), and the broker starts with the static or default values.
func TestStoredConfigsSanitized(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	l := config.Sanitize(map[string]string{"log.cleaner.threads": "2"},
		map[string]string{
			"log.cleaner.dedupe.buffer.size": "9223372036854775807", // per-thread bound
			"log.cleaner.backoff.ms":         "1000",                // fine
			"num.partitions":                 "3",                   // not dynamic
			"no.such.key":                    "1",
		},
		map[string]string{"log.cleaner.min.cleanable.ratio": "7"}, logger)
	if b, d := l.DynamicBroker(), l.DynamicDefault(); len(b) != 1 || b["log.cleaner.backoff.ms"] != "1000" || len(d) != 0 {
		t.Fatalf("kept %v / %v", b, d)
	}
	for _, k := range []string{"log.cleaner.dedupe.buffer.size", "num.partitions", "no.such.key", "log.cleaner.min.cleanable.ratio"} {
		if !strings.Contains(logs.String(), "config="+k) {
			t.Errorf("dropping %s not logged:\n%s", k, logs.String())
		}
	}
	if err := l.ValidateBroker(); err != nil {
		t.Fatal(err)
	}

	// Through a broker start: the stored values never stop it.
	dir := t.TempDir()
	ms, err := metastore.OpenLocal(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := ms.SetBrokerConfigs("0", map[string]string{"log.cleaner.dedupe.buffer.size": "9223372036854775807"}); err != nil {
		t.Fatal(err)
	}
	if err := ms.CreateTopic(metastore.Topic{Name: "old", ID: metastore.NewTopicID(), Partitions: 1, ReplicationFactor: 1,
		Configs: map[string]string{"segment.bytes": "1", "retention.ms": "60000"}}); err != nil {
		t.Fatal(err)
	}
	ms.Close()
	b := startBrokerIn(t, dir)
	if got := b.s.cleaner.Config().DedupeBufferSize; got != 4194304 {
		t.Fatalf("dedupe buffer %d, want the static 4 MiB", got)
	}
	tp := b.s.topic("old")
	if tp == nil || tp.configs["segment.bytes"] != "" || tp.configs["retention.ms"] != "60000" {
		t.Fatalf("topic configs %v", tp.configs)
	}
}

// TestMaxConnections: connections beyond max.connections are closed at
// accept and counted.
func TestMaxConnections(t *testing.T) {
	b := startBroker(t, "max.connections=3")
	for i := 0; i < 3; i++ {
		c := b.dial(t)
		req := kmsg.NewPtrApiVersionsRequest()
		c.send(req, int32(i))
		c.recv(req, int32(i))
	}
	b.dial(t).expectClosed()
	if n := counterValue(t, b.s.metrics.ConnectionsRefused.WithLabelValues("max.connections")); n != 1 {
		t.Fatalf("refused %v", n)
	}
}

// TestRequestMemoryBudget: once queued.max.request.bytes is held by
// requests being read, a connection starting another large request waits
// (its buffer not grown), small requests still flow, and the waiter goes
// on when the memory is released.
func TestRequestMemoryBudget(t *testing.T) {
	b := startBroker(t, "socket.request.max.bytes=1048576", "queued.max.request.bytes=1048576")
	partial := func(size int) *rawConn {
		c := b.dial(t)
		c.write(binary.BigEndian.AppendUint32(nil, uint32(size)))
		c.write(make([]byte, 8<<10)) // past the first smallFrame bytes
		return c
	}
	a := partial(1 << 20)
	waitUntil(t, "the first request to hold its memory", func() bool { return b.s.reqMem.InUse() >= 1<<20 })
	partial(512 << 10)
	waitUntil(t, "the second request to wait", func() bool { return counterValue(t, b.s.metrics.RequestMemoryWaits) == 1 })
	if got := b.s.reqMem.InUse(); got != 1<<20 {
		t.Fatalf("in use %d while the second request waits", got)
	}
	// Small requests are not held back.
	c := b.dial(t)
	req := kmsg.NewPtrMetadataRequest()
	c.send(req, 1)
	c.recv(req, 1)
	// The first connection goes away: its memory frees, the second goes on.
	a.nc.Close()
	waitUntil(t, "the second request to get its memory", func() bool { return b.s.reqMem.InUse() == 512<<10 })
}

// waitUntil polls cond for up to 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// counterValue reads a counter.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
