package groupclients

import (
	"bytes"
	"encoding/json"
	"sort"
	"testing"
	"time"

	"github.com/kvlog/kvlog/internal/testbroker"
)

// kafka-python and kcat consumer groups; a test skips, saying so, only
// when its tool is missing.

// kafkaPythonGroup consumes with a kafka-python group member until it has
// n records, commits synchronously, leaves, and prints one JSON line per
// record. kafka-python uses the fixed versions of the broker release it
// infers from ApiVersions (for a modern broker, per the protocol
// reference: JoinGroup v2, SyncGroup v1, Heartbeat v1, LeaveGroup v1,
// OffsetCommit v2, OffsetFetch v1, FindCoordinator v0).
const kafkaPythonGroup = `
import json, sys, time
from kafka import KafkaConsumer

addr, topic, group, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
consumer = KafkaConsumer(topic, bootstrap_servers=[addr], group_id=group, enable_auto_commit=False,
    auto_offset_reset="earliest", session_timeout_ms=10000, heartbeat_interval_ms=1000, request_timeout_ms=30000)
got = []
deadline = time.time() + 60
while len(got) < n and time.time() < deadline:
    for tp, records in consumer.poll(timeout_ms=500).items():
        for r in records:
            got.append({"partition": r.partition, "offset": r.offset, "value": r.value.decode()})
if len(got) < n:
    sys.exit("only %d of %d records" % (len(got), n))
# Nothing more must be pending: a short extra poll would show duplicates.
for tp, records in consumer.poll(timeout_ms=1000).items():
    for r in records:
        got.append({"partition": r.partition, "offset": r.offset, "value": r.value.decode()})
consumer.commit()
consumer.close()
for g in got:
    print(json.dumps(g))
`

// values extracts the "value" (kafka-python) or "payload" (kcat) field of
// JSON lines, sorted.
func values(t *testing.T, out []byte, field string) []string {
	t.Helper()
	var vs []string
	for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("output line %q: %v", line, err)
		}
		v, ok := m[field].(string)
		if !ok {
			t.Fatalf("output line %q has no %s", line, field)
		}
		vs = append(vs, v)
	}
	sort.Strings(vs)
	return vs
}

// wantValues checks got is exactly v<from>..v<from+n-1>, once each.
func wantValues(t *testing.T, who string, got []string, from, n int) {
	t.Helper()
	seen := map[int]bool{}
	for _, v := range got {
		i := valueIndex(t, v)
		if i < from || i >= from+n || seen[i] {
			t.Fatalf("%s read %s (want v%d..v%d once each); all: %v", who, v, from, from+n-1, got)
		}
		seen[i] = true
	}
	if len(seen) != n {
		t.Fatalf("%s read %d records, want %d", who, len(seen), n)
	}
}

func TestKafkaPythonGroupCommitResume(t *testing.T) {
	script := testbroker.RequireKafkaPython(t, "the kafka-python group test", kafkaPythonGroup)
	p := startKvlogd(t)
	const topic, group = "py-group", "py-consumers"
	createTopic(t, p, topic, 3)
	produce(t, p, topic, 0, 60)

	out := testbroker.RunTool(t, 120*time.Second, nil, testbroker.PythonWithKafka, script, p.Addr, topic, group, "60")
	wantValues(t, "kafka-python", values(t, out, "value"), 0, 60)
	requireCaughtUp(t, p, group, topic)

	// Resume after new records: only those are read.
	produce(t, p, topic, 60, 20)
	out = testbroker.RunTool(t, 120*time.Second, nil, testbroker.PythonWithKafka, script, p.Addr, topic, group, "20")
	wantValues(t, "kafka-python (resumed)", values(t, out, "value"), 60, 20)
	requireCaughtUp(t, p, group, topic)

	// And after a broker restart, from __consumer_offsets.
	p.Term()
	p.Restart()
	produce(t, p, topic, 80, 10)
	out = testbroker.RunTool(t, 120*time.Second, nil, testbroker.PythonWithKafka, script, p.Addr, topic, group, "10")
	wantValues(t, "kafka-python (after restart)", values(t, out, "value"), 80, 10)
	requireCaughtUp(t, p, group, topic)
	p.Term()
}

// kcatGroup runs a kcat balanced consumer (-G) that exits once every
// assigned partition is at its end; librdkafka commits on close.
func kcatGroup(t *testing.T, kcat string, p *testbroker.Broker, group, topic string) []string {
	t.Helper()
	out := testbroker.RunTool(t, 120*time.Second, nil, kcat, "-b", p.Addr, "-G", group, "-e", "-J", "-q",
		"-X", "auto.offset.reset=earliest", "-X", "session.timeout.ms=10000",
		"-X", "enable.auto.commit=true", "-X", "auto.commit.interval.ms=200", topic)
	return values(t, out, "payload")
}

func TestKcatGroupConsume(t *testing.T) {
	kcat := testbroker.RequireKcat(t, "the kcat group test")
	p := startKvlogd(t)
	const topic, group = "kcat-group", "kcat-consumers"
	createTopic(t, p, topic, 3)
	produce(t, p, topic, 0, 60)

	wantValues(t, "kcat -G", kcatGroup(t, kcat, p, group, topic), 0, 60)
	requireCaughtUp(t, p, group, topic)

	produce(t, p, topic, 60, 20)
	wantValues(t, "kcat -G (resumed)", kcatGroup(t, kcat, p, group, topic), 60, 20)
	requireCaughtUp(t, p, group, topic)

	p.Kill() // SIGKILL: the commits come back from the log
	p.Restart()
	produce(t, p, topic, 80, 10)
	wantValues(t, "kcat -G (after SIGKILL restart)", kcatGroup(t, kcat, p, group, topic), 80, 10)
	requireCaughtUp(t, p, group, topic)
	p.Term()
}
