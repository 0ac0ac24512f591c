package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kvlog/kvlog/cleaner"
	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/checkpoint"
	"github.com/kvlog/kvlog/engine/vfs"
	"github.com/kvlog/kvlog/server/config"
)

func parseTestConfig(t *testing.T, lines ...string) *config.Broker {
	t.Helper()
	pp, err := config.ParseProperties(strings.NewReader(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse(pp, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestTopicSettingsCarryCleaner: a topic's settings carry the cleaner's
// topic-level configuration (config.Layers.CleanerTopic).
func TestTopicSettingsCarryCleaner(t *testing.T) {
	l := parseTestConfig(t).Layers()
	if s := l.TopicSettings(map[string]string{"delete.retention.ms": "5"}); s.Cleaner.DeleteRetention != 5*time.Millisecond {
		t.Errorf("topicSettings carry the cleaner's settings: %+v", s.Cleaner)
	}
}

// TestCleanerInBroker: the broker runs the cleaner over its compacted
// logs, serves its status at /cleaner and its metrics at /metrics, hands
// it topic and dynamic broker config changes, and makes it forget a
// deleted topic's partitions.
func TestCleanerInBroker(t *testing.T) {
	b := startBroker(t, "log.cleaner.backoff.ms=50", "log.cleaner.dedupe.buffer.size=1048576")
	createTopic(t, b, "kv", 1, map[string]*string{
		"cleanup.policy":            kadm.StringPtr("compact"),
		"segment.bytes":             kadm.StringPtr("4096"),
		"min.cleanable.dirty.ratio": kadm.StringPtr("0.01"),
	})
	ctx := ctxT(t)
	cl := b.client(t, kgo.DefaultProduceTopic("kv"), kgo.ProducerBatchCompression(kgo.NoCompression()))
	for round := 0; round < 10; round++ {
		var rs []*kgo.Record
		for k := 0; k < 10; k++ {
			rs = append(rs, &kgo.Record{Key: []byte(fmt.Sprintf("k%d", k)), Value: bytes.Repeat([]byte{byte('a' + round)}, 300)})
		}
		if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	tp := engine.TopicPartition{Topic: "kv", Partition: 0}
	find := func(st cleaner.Status) *cleaner.PartitionStatus {
		for i := range st.Partitions {
			if st.Partitions[i].Topic == tp.Topic && st.Partitions[i].Partition == tp.Partition {
				return &st.Partitions[i]
			}
		}
		return nil
	}
	waitFor(t, 20*time.Second, "a clean pass of kv-0", func() bool {
		ps := find(b.s.cleaner.Status())
		return ps != nil && ps.Passes > 0
	})

	h := b.s.HTTPHandler()
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec
	}
	rec := get("/cleaner")
	var st cleaner.Status
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("/cleaner: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if ps := find(st); ps == nil || ps.Passes == 0 || ps.LastCleanTime == nil || !st.Enabled {
		t.Fatalf("/cleaner: %s", rec.Body)
	}
	metrics := get("/metrics").Body.String()
	for _, series := range []string{`kvlog_cleaner_passes_total{result="ok"}`, `kvlog_cleaner_dirty_ratio{partition="0",topic="kv"}`, "kvlog_cleaner_threads 1", "kvlog_cleaner_bytes_read_total"} {
		if !strings.Contains(metrics, series) {
			t.Errorf("/metrics lacks %s", series)
		}
	}

	// A topic config change reaches the cleaner's next planning round.
	adm := b.admin(t)
	if _, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "delete.retention.ms", Value: kadm.StringPtr("1234")}}, "kv"); err != nil {
		t.Fatal(err)
	}
	if tc := b.s.cleanerTopicConfig(tp, engine.Config{}); tc.DeleteRetention != 1234*time.Millisecond || tc.MinCleanableRatio != 0.01 {
		t.Errorf("topic config seen by the cleaner: %+v", tc)
	}
	// Dynamic broker configs reach the running cleaner; Kafka's thread
	// rule refuses more than doubling.
	if _, err := adm.AlterBrokerConfigs(ctx, []kadm.AlterConfig{{Name: "log.cleaner.io.max.bytes.per.second", Value: kadm.StringPtr("5000000")}}, 0); err != nil {
		t.Fatal(err)
	}
	if c := b.s.cleaner.Config(); c.IOMaxBytesPerSecond != 5e6 {
		t.Errorf("cleaner config after the dynamic change: %+v", c)
	}
	rs, err := adm.AlterBrokerConfigs(ctx, []kadm.AlterConfig{{Name: "log.cleaner.threads", Value: kadm.StringPtr("3")}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || !errors.Is(rs[0].Err, kerr.InvalidConfig) {
		t.Errorf("log.cleaner.threads 1 → 3: %+v", rs)
	}

	// Deleting the topic: the cleaner forgets the partition, state and
	// checkpoint entry, and the name can be used again.
	if _, err := adm.DeleteTopics(ctx, "kv"); err != nil {
		t.Fatal(err)
	}
	if ps := find(b.s.cleaner.Status()); ps != nil {
		t.Errorf("deleted partition still in the cleaner's status: %+v", ps)
	}
	ck, err := checkpoint.ReadOffsets(vfs.Default, filepath.Join(b.dir, engine.CleanerCheckpointFile))
	if err != nil {
		t.Fatal(err)
	}
	if off, ok := ck[tp]; ok {
		t.Errorf("deleted partition still in cleaner-offset-checkpoint at %d", off)
	}
	createTopic(t, b, "kv", 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")})
	produceN(t, b, "kv", 5)
	waitFor(t, 10*time.Second, "the new kv-0 assessed", func() bool {
		ps := find(b.s.cleaner.Status())
		return ps != nil && ps.Passes == 0 && ps.State == "idle"
	})
}
