package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kvlog/kvlog/internal/testbroker"
)

// The tests here drive the real kvlogd, built with -race, as a process
// with franz-go, as a user would.

func TestMain(m *testing.M) { os.Exit(testbroker.Main(m)) }

// startKvlogd starts kvlogd (info-level log, HTTP listener on) with a
// fresh data directory and waits until it serves.
func startKvlogd(t *testing.T) *testbroker.Broker {
	t.Helper()
	return testbroker.Start(t, testbroker.Options{Race: true})
}

// consumeAll reads a topic from the start until want records arrived.
func consumeAll(t *testing.T, p *testbroker.Broker, topic string, want int) []*kgo.Record {
	t.Helper()
	ctx := testbroker.Context(t, 60*time.Second)
	cl := p.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var out []*kgo.Record
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records of %s", len(out), want, topic)
		}
		fs.EachError(func(tp string, part int32, err error) { t.Fatalf("fetch %s-%d: %v", tp, part, err) })
		out = append(out, fs.Records()...)
	}
	return out
}

func TestEndToEnd(t *testing.T) {
	p := startKvlogd(t)
	ctx := testbroker.Context(t, 120*time.Second)
	adm := p.Admin(t)

	// Create a compacted topic with configs.
	resp, err := adm.CreateTopic(ctx, 3, 1, map[string]*string{
		"cleanup.policy":            kadm.StringPtr("compact"),
		"min.cleanable.dirty.ratio": kadm.StringPtr("0.1"),
		"segment.bytes":             kadm.StringPtr("1048576"),
	}, "profiles")
	if err != nil || resp.Err != nil {
		t.Fatalf("create: %v %v", err, resp.Err)
	}

	// Idempotent acks=all produce with every codec.
	total := 0
	for _, codec := range []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()} {
		cl := p.Client(t, kgo.DefaultProduceTopic("profiles"), kgo.ProducerBatchCompression(codec), kgo.RequiredAcks(kgo.AllISRAcks()))
		var rs []*kgo.Record
		for i := 0; i < 200; i++ {
			rs = append(rs, &kgo.Record{Key: []byte(fmt.Sprintf("user-%d", i)), Value: bytes.Repeat([]byte("x"), 100)})
		}
		if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
		total += len(rs)
	}
	recs := consumeAll(t, p, "profiles", total)
	if len(recs) != total {
		t.Fatalf("consumed %d, want %d", len(recs), total)
	}

	// List offsets: end offsets sum to what was produced.
	ends, err := adm.ListEndOffsets(ctx, "profiles")
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	ends.Each(func(o kadm.ListedOffset) { sum += o.Offset })
	if sum != int64(total) {
		t.Fatalf("end offsets sum %d, want %d", sum, total)
	}
	starts, err := adm.ListStartOffsets(ctx, "profiles")
	if err != nil {
		t.Fatal(err)
	}
	starts.Each(func(o kadm.ListedOffset) {
		if o.Offset != 0 || o.Err != nil {
			t.Errorf("start offset %+v", o)
		}
	})

	// Describe, alter, describe configs.
	rcs, err := adm.DescribeTopicConfigs(ctx, "profiles")
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := rcs.On("profiles", nil)
	got := map[string]*kadm.Config{}
	for i := range rc.Configs {
		got[rc.Configs[i].Key] = &rc.Configs[i]
	}
	if c := got["cleanup.policy"]; c.MaybeValue() != "compact" || c.Source.String() != "DYNAMIC_TOPIC_CONFIG" {
		t.Fatalf("cleanup.policy %+v", c)
	}
	if c := got["retention.ms"]; c.MaybeValue() != "604800000" || c.Source.String() != "DEFAULT_CONFIG" {
		t.Fatalf("retention.ms %+v", c)
	}
	if _, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "min.cleanable.dirty.ratio", Value: kadm.StringPtr("0.25")}, {Name: "retention.ms", Value: kadm.StringPtr("3600000")}}, "profiles"); err != nil {
		t.Fatal(err)
	}
	rcs, err = adm.DescribeTopicConfigs(ctx, "profiles")
	if err != nil {
		t.Fatal(err)
	}
	rc, _ = rcs.On("profiles", nil)
	for i := range rc.Configs {
		got[rc.Configs[i].Key] = &rc.Configs[i]
	}
	if got["min.cleanable.dirty.ratio"].MaybeValue() != "0.25" || got["retention.ms"].MaybeValue() != "3600000" || got["cleanup.policy"].MaybeValue() != "compact" {
		t.Fatalf("after alter: %v %v %v", got["min.cleanable.dirty.ratio"], got["retention.ms"], got["cleanup.policy"])
	}
	// An invalid value is refused with INVALID_CONFIG.
	ar, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "segment.bytes", Value: kadm.StringPtr("tiny")}}, "profiles")
	if err == nil && (len(ar) != 1 || ar[0].Err == nil) {
		t.Fatal("invalid segment.bytes accepted")
	}

	// Metrics and health.
	for _, path := range []string{"/healthz", "/metrics"} {
		r, err := http.Get("http://" + p.HTTP + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if r.StatusCode != 200 {
			t.Fatalf("%s: %d", path, r.StatusCode)
		}
		if path == "/metrics" && (!strings.Contains(string(body), `kvlog_requests_total{api="Produce"}`) || !strings.Contains(string(body), `kvlog_partition_log_end_offset{partition="0",topic="profiles"}`)) {
			t.Fatalf("metrics missing series:\n%s", body)
		}
	}

	// Delete the topic.
	dr, err := adm.DeleteTopics(ctx, "profiles")
	if err != nil {
		t.Fatal(err)
	}
	if err := dr.Error(); err != nil {
		t.Fatal(err)
	}
	td, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if td.Has("profiles") {
		t.Fatal("topic still listed after delete")
	}
	p.Term()
}

// produceKeyed produces n records and returns them once acknowledged.
func produceKeyed(t *testing.T, p *testbroker.Broker, topic string, from, n int) {
	t.Helper()
	ctx := testbroker.Context(t, 60*time.Second)
	cl := p.Client(t, kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation())
	var rs []*kgo.Record
	for i := from; i < from+n; i++ {
		rs = append(rs, &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(fmt.Sprintf("v%d", i))})
	}
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func TestRestartRecovers(t *testing.T) {
	p := startKvlogd(t)
	produceKeyed(t, p, "durable", 0, 500)

	// SIGKILL: everything acknowledged comes back.
	p.Kill()
	if _, err := os.Stat(filepath.Join(p.DataDir, ".kafka_cleanshutdown")); err == nil {
		t.Fatal("clean-shutdown marker present after SIGKILL")
	}
	p.Restart()
	produceKeyed(t, p, "durable", 500, 100)
	recs := consumeAll(t, p, "durable", 600)
	seen := map[string]bool{}
	for _, r := range recs {
		seen[string(r.Value)] = true
	}
	for i := 0; i < 600; i++ {
		if !seen[fmt.Sprintf("v%d", i)] {
			t.Fatalf("acknowledged record v%d lost", i)
		}
	}

	// SIGTERM: a clean shutdown leaves the marker and the next start uses it.
	p.Term()
	if _, err := os.Stat(filepath.Join(p.DataDir, ".kafka_cleanshutdown")); err != nil {
		t.Fatalf("no clean-shutdown marker after SIGTERM: %v", err)
	}
	p.Restart()
	if !strings.Contains(p.Log(), "clean_shutdown=true") {
		t.Fatalf("restart did not see the clean shutdown:\n%s", p.Log())
	}
	if n := len(consumeAll(t, p, "durable", 600)); n != 600 {
		t.Fatalf("%d records after clean restart", n)
	}
	p.Term()
}

// sendExpectingClose writes payload on a new connection to addr and
// returns an error unless the broker closes the connection, without a
// response, within wait.
func sendExpectingClose(t *testing.T, addr string, payload []byte, wait time.Duration) error {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.Write(payload)
	nc.SetReadDeadline(time.Now().Add(wait))
	var b [1]byte
	if _, err := nc.Read(b[:]); err == nil {
		return errors.New("got a response: connection not closed")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return errors.New("connection not closed in time")
	}
	return nil
}

func TestMalformedFramesProcess(t *testing.T) {
	p := startKvlogd(t)
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	unknownKey := append(u32(10), 0x03, 0xe7, 0, 0, 0, 0, 0, 1, 0xff, 0xff)
	for name, payload := range map[string][]byte{
		"oversize":    u32(200 << 20),
		"garbage":     append(u32(8), []byte("GET / HT")...),
		"unknown-999": unknownKey,
	} {
		if err := sendExpectingClose(t, p.Addr, payload, 10*time.Second); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Still serving.
	produceKeyed(t, p, "after-garbage", 0, 10)
	if n := len(consumeAll(t, p, "after-garbage", 10)); n != 10 {
		t.Fatalf("%d records", n)
	}
	p.Term()
}
