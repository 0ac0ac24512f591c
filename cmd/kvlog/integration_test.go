package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kvlog/kvlog/client"
	"github.com/kvlog/kvlog/client/clienttest"
)

// TestCLIAgainstBroker runs the built kvlog binary against a real kvlogd:
// topics, put/get/delete, produce/consume, replay, with outputs checked
// (golden files where they are stable) and exit codes for bad input.
func TestCLIAgainstBroker(t *testing.T) {
	b := clienttest.Start(t)
	bs := b.Addr
	kv := func(stdin string, args ...string) result { t.Helper(); return runBin(t, bs, stdin, args...) }

	r := kv("", "topics", "create", "users", "--partitions", "3", "--compact")
	r.expect(t, exitOK)
	if r.stdout != "created topic users (3 partitions, replication factor 1)\n" {
		t.Errorf("create: %q", r.stdout)
	}
	kv("", "topics", "create", "events", "-p", "1", "-c", "retention.ms=3600000").expect(t, exitOK)
	r = kv("", "topics", "create", "users", "--partitions", "3")
	r.expect(t, exitFailure)
	if !strings.Contains(r.stderr, "TOPIC_ALREADY_EXISTS") {
		t.Errorf("duplicate create: %q", r.stderr)
	}

	r = kv("", "topics", "list")
	r.expect(t, exitOK)
	checkGolden(t, "topics-list.txt", r.stdout)
	r = kv("", "topics", "list", "-o", "json")
	var listed []struct {
		Topic      string `json:"topic"`
		Partitions int    `json:"partitions"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &listed); err != nil || len(listed) != 2 || listed[1].Topic != "users" || listed[1].Partitions != 3 {
		t.Errorf("list -o json: %v %s", err, r.stdout)
	}

	// put lands where Kafka's partitioner says.
	r = kv("", "put", "users", "alice", `{"age":30}`)
	r.expect(t, exitOK)
	if want := fmt.Sprintf("users/%d@0\n", client.PartitionFor([]byte("alice"), 3)); r.stdout != want {
		t.Errorf("put: %q, want %q", r.stdout, want)
	}
	kv(`{"age":29}`, "put", "users", "carol", "--stdin").expect(t, exitOK)
	in := "bob\t{\"age\":41}\ndave\t{\"age\":52}\nerin\t{\"age\":23}\ndave\tNULL\nfrank\t\n"
	r = kv(in, "produce", "users", "--key-separator", `\t`, "--null-value", "NULL", "--compression", "zstd")
	r.expect(t, exitOK)
	if !strings.Contains(r.stderr, "produced 5 record(s)") {
		t.Errorf("produce: %q", r.stderr)
	}
	kv("novalue\n", "produce", "users", "--key-separator", ":").expect(t, exitFailure)
	kv("a:b\n", "produce", "users", "-K", ":", "--acks", "1", "-z", "gzip").expect(t, exitOK)
	kv("", "delete", "users", "bob").expect(t, exitOK)

	r = kv("", "get", "users", "alice")
	r.expect(t, exitOK)
	if r.stdout != "{\"age\":30}\n" {
		t.Errorf("get alice: %q", r.stdout)
	}
	// get asks the broker's key index (a dead --http fails it), --replay
	// replays, --at-offset waits for the put's offset.
	for _, args := range [][]string{{"--replay"}, {"--at-offset", "0", "--wait", "2s"}} {
		r = kv("", append([]string{"get", "users", "alice"}, args...)...)
		r.expect(t, exitOK, args...)
		if r.stdout != "{\"age\":30}\n" {
			t.Errorf("get alice %v: %q", args, r.stdout)
		}
	}
	kv("", "get", "users", "alice", "--http", "127.0.0.1:1").expect(t, exitFailure)
	r = kv("", "get", "users", "alice", "--at-offset", "99", "--wait", "100ms")
	r.expect(t, exitFailure)
	if !strings.Contains(r.stderr, "REQUEST_TIMED_OUT") {
		t.Errorf("get --at-offset 99: %q", r.stderr)
	}
	r = kv("", "get", "users", "frank")
	r.expect(t, exitOK)
	if r.stdout != "\n" {
		t.Errorf("get frank (empty value): %q", r.stdout)
	}
	for _, k := range []string{"bob", "dave", "nobody"} {
		r = kv("", "get", "users", k)
		r.expect(t, exitNotFound, k)
		if !strings.Contains(r.stderr, "not found") {
			t.Errorf("get %s: %q", k, r.stderr)
		}
	}
	r = kv("", "get", "no-such-topic", "k")
	r.expect(t, exitFailure)
	if !strings.Contains(r.stderr, "topic not found") {
		t.Errorf("get on a missing topic: %q", r.stderr)
	}
	kv("", "put", "no-such-topic", "k", "v").expect(t, exitFailure)
	kv("", "consume", "no-such-topic", "--exit").expect(t, exitFailure)
	kv("", "topics", "describe", "no-such-topic").expect(t, exitFailure)

	// consume: everything as of now, in a stable order per partition.
	r = kv("", "consume", "users", "--from-beginning", "--exit", "--format", `%p %o %k=%v %S\n`)
	r.expect(t, exitOK)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	sort.Strings(lines)
	checkGolden(t, "consume-users.txt", strings.Join(lines, "\n")+"\n")
	r = kv("", "consume", "users", "--from-beginning", "--max", "2", "-o", "json")
	r.expect(t, exitOK)
	if n := strings.Count(r.stdout, "\n"); n != 2 {
		t.Errorf("--max 2 printed %d lines:\n%s", n, r.stdout)
	}
	var rec consumedJSON
	if err := json.Unmarshal([]byte(strings.SplitN(r.stdout, "\n", 2)[0]), &rec); err != nil || rec.Topic != "users" {
		t.Errorf("consume -o json: %v %q", err, r.stdout)
	}
	r = kv("", "consume", "users", "--exit") // from the end: nothing
	r.expect(t, exitOK)
	if r.stdout != "" {
		t.Errorf("consume from the end printed %q", r.stdout)
	}

	// replay: summary and snapshot.
	snap := filepath.Join(t.TempDir(), "users.jsonl")
	r = kv("", "replay", "users", "--snapshot", snap, "--progress", "plain", "-o", "json")
	r.expect(t, exitOK)
	var sum replaySummary
	if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil {
		t.Fatalf("replay -o json: %v %q", err, r.stdout)
	}
	// alice carol bob dave erin dave frank a bob(delete): 9 records, 2 tombstones, 5 live.
	if sum.LiveKeys != 5 || sum.Records != 9 || sum.TombstonesSeen != 2 || sum.Partitions != 3 {
		t.Errorf("replay summary %+v", sum)
	}
	if !strings.Contains(r.stderr, "replay users: 100.0%") {
		t.Errorf("plain progress: %q", r.stderr)
	}
	got, _ := os.ReadFile(snap)
	checkGolden(t, "replay-users.jsonl", string(got))
	r = kv("", "replay", "users")
	r.expect(t, exitOK)
	for _, w := range []string{"live keys:", "tombstones seen:", "records read:", "bytes read:", "duration:", "records/s:"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("replay summary lacks %q:\n%s", w, r.stdout)
		}
	}

	// describe and alter-config.
	kv("", "topics", "alter-config", "users", "--set", "min.cleanable.dirty.ratio=0.1", "--set", "segment.ms=600000").expect(t, exitOK)
	r = kv("", "topics", "describe", "users", "-o", "json")
	r.expect(t, exitOK)
	var desc topicDesc
	if err := json.Unmarshal([]byte(r.stdout), &desc); err != nil {
		t.Fatalf("describe -o json: %v\n%s", err, r.stdout)
	}
	var hw int64
	for _, p := range desc.Partitions {
		hw += p.HighWatermark
		if p.Leader < 0 || len(p.Replicas) != 1 || len(p.ISR) != 1 {
			t.Errorf("partition %+v", p)
		}
	}
	if len(desc.Partitions) != 3 || hw != 9 {
		t.Errorf("describe: %d partitions, high watermarks sum %d (want 3, 9)", len(desc.Partitions), hw)
	}
	cfg := map[string]configDesc{}
	for _, c := range desc.Configs {
		cfg[c.Name] = c
	}
	for name, want := range map[string]string{"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": "600000"} {
		c, ok := cfg[name]
		if !ok || derefOr(c.Value, "") != want || c.Source != "DYNAMIC_TOPIC_CONFIG" {
			t.Errorf("config %s: %+v, want %s from DYNAMIC_TOPIC_CONFIG", name, c, want)
		}
	}
	if desc.SizeBytes == nil {
		t.Logf("describe: sizes unavailable (%s)", desc.SizeError)
	}
	r = kv("", "topics", "describe", "users")
	r.expect(t, exitOK)
	for _, w := range []string{"Topic: users", "PARTITION", "HIGH-WATERMARK", "cleanup.policy", "DYNAMIC_TOPIC_CONFIG"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("describe lacks %q:\n%s", w, r.stdout)
		}
	}
	kv("", "topics", "alter-config", "users", "--delete", "segment.ms").expect(t, exitOK)

	kv("", "topics", "delete", "events").expect(t, exitOK)
	r = kv("", "topics", "list")
	if strings.Contains(r.stdout, "events") {
		t.Errorf("deleted topic still listed:\n%s", r.stdout)
	}
	kv("", "topics", "delete", "events").expect(t, exitFailure)
}

// TestCLIGroups drives groups commands; it is skipped while the broker has no
// group coordinator.
func TestCLIGroups(t *testing.T) {
	b := clienttest.Start(t)
	bs := b.Addr
	kv := func(stdin string, args ...string) result { t.Helper(); return runBin(t, bs, stdin, args...) }
	kv("", "topics", "create", "orders", "-p", "2").expect(t, exitOK)
	kv("a:1\nb:2\nc:3\nd:4\n", "produce", "orders", "-K", ":").expect(t, exitOK)

	r := kv("", "groups", "list")
	if r.code != exitOK {
		if strings.Contains(r.stderr, "does not serve consumer groups") || strings.Contains(r.stderr, "not support") {
			t.Skipf("broker has no group coordinator yet: %s", strings.TrimSpace(r.stderr))
		}
		r.expect(t, exitOK)
	}
	r = kv("", "consume", "orders", "--group", "audit", "--from-beginning", "--exit")
	if r.code != exitOK && (strings.Contains(r.stderr, "COORDINATOR") || strings.Contains(r.stderr, "not support")) {
		t.Skipf("broker has no group coordinator yet: %s", strings.TrimSpace(r.stderr))
	}
	r.expect(t, exitOK)
	r = kv("", "groups", "list", "-o", "json")
	r.expect(t, exitOK)
	if !strings.Contains(r.stdout, `"audit"`) {
		t.Errorf("groups list: %s", r.stdout)
	}
	r = kv("", "groups", "describe", "audit", "-o", "json")
	r.expect(t, exitOK)
	var gd groupDesc
	if err := json.Unmarshal([]byte(r.stdout), &gd); err != nil {
		t.Fatal(err)
	}
	if gd.TotalLag != 0 || len(gd.Offsets) != 2 || gd.State != "Empty" {
		t.Errorf("describe audit: %+v (want an Empty group, lag 0 over 2 partitions)", gd)
	}
	r = kv("", "groups", "describe", "audit")
	r.expect(t, exitOK)
	for _, w := range []string{"Group: audit", "Members:", "Offsets:", "COMMITTED", "orders"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("groups describe lacks %q:\n%s", w, r.stdout)
		}
	}
	r = kv("", "groups", "reset-offsets", "audit", "--topic", "orders", "--to-earliest")
	r.expect(t, exitOK)
	if !strings.Contains(r.stdout, "dry run") {
		t.Errorf("reset without --execute: %s", r.stdout)
	}
	kv("", "groups", "reset-offsets", "audit", "--topic", "orders", "--to-earliest", "--execute").expect(t, exitOK)
	r = kv("", "groups", "describe", "audit", "-o", "json")
	json.Unmarshal([]byte(r.stdout), &gd)
	if gd.TotalLag != 4 {
		t.Errorf("after reset to earliest: lag %d, want 4", gd.TotalLag)
	}

	// An unknown group is said to be one, with a failure exit.
	r = kv("", "groups", "describe", "nope")
	r.expect(t, exitFailure)
	if r.stderr != "kvlog: group \"nope\" does not exist\n" {
		t.Errorf("describe of an unknown group: %q", r.stderr)
	}
	// --shift-by from the current commit, --all-topics; --to-datetime.
	kv("", "groups", "reset-offsets", "audit", "--all-topics", "--to-latest", "--execute").expect(t, exitOK)
	r = kv("", "groups", "reset-offsets", "audit", "--all-topics", "--shift-by", "-1", "--execute")
	r.expect(t, exitOK)
	checkGolden(t, "groups-shift-by.txt", r.stdout)
	r = kv("", "groups", "reset-offsets", "audit", "--topic", "orders", "--to-datetime", "-1h")
	r.expect(t, exitOK)
	checkGolden(t, "groups-to-datetime.txt", r.stdout)
	r = kv("", "groups", "reset-offsets", "audit", "--topic", "orders", "--to-datetime", "now", "-o", "json")
	r.expect(t, exitOK)
	if !strings.Contains(r.stdout, `"new_offset": 3`) && !strings.Contains(r.stdout, `"new_offset": 1`) {
		t.Errorf("--to-datetime now: %s", r.stdout)
	}
	// delete-offsets of one partition: it is listed without a commit,
	// lagging by the whole partition.
	r = kv("", "groups", "delete-offsets", "audit", "--topic", "orders", "-p", "0")
	r.expect(t, exitOK)
	if r.stdout != "audit: deleted the committed offset of orders/0\n" {
		t.Errorf("delete-offsets: %q", r.stdout)
	}
	r = kv("", "groups", "describe", "audit", "-o", "json")
	r.expect(t, exitOK)
	gd = groupDesc{}
	json.Unmarshal([]byte(r.stdout), &gd)
	if len(gd.Offsets) != 2 || gd.Offsets[0].Committed != -1 || gd.Offsets[0].Lag != gd.Offsets[0].End || gd.Offsets[1].Lag != 1 {
		t.Errorf("after delete-offsets of orders/0: %+v", gd.Offsets)
	}
	r = kv("", "groups", "delete", "audit")
	r.expect(t, exitOK)
	if r.stdout != "deleted group audit\n" {
		t.Errorf("groups delete: %q", r.stdout)
	}
	kv("", "groups", "describe", "audit").expect(t, exitFailure)

	// The cleaner's status hides the internal __consumer_offsets unless
	// asked; --watch prints it again.
	r = kv("", "cleaner", "status", "--http", b.HTTP)
	r.expect(t, exitOK)
	if strings.Contains(r.stdout, "__consumer_offsets") {
		t.Errorf("cleaner status shows an internal topic:\n%s", r.stdout)
	}
	r = kv("", "cleaner", "status", "--http", b.HTTP, "--internal", "-o", "json")
	r.expect(t, exitOK)
	if strings.Count(r.stdout, `"__consumer_offsets"`) != 50 {
		t.Errorf("cleaner status --internal: %d partitions of __consumer_offsets", strings.Count(r.stdout, `"__consumer_offsets"`))
	}
	r = kv("", "cleaner", "status", "--http", b.HTTP, "--topic", "__consumer_offsets", "--watch", "10ms", "--count", "2")
	r.expect(t, exitOK)
	if strings.Count(r.stdout, "TOPIC") != 2 || strings.Count(r.stdout, "__consumer_offsets ") != 100 {
		t.Errorf("cleaner status --watch --count 2:\n%s", r.stdout)
	}
	r = kv("", "groups", "delete", "audit")
	r.expect(t, exitFailure)
	if !strings.Contains(r.stderr, "does not exist") {
		t.Errorf("delete of a deleted group: %q", r.stderr)
	}
}

// TestCLICleanerStatus reads the broker's cleaner status (/cleaner on its
// HTTP listener) after the cleaner compacted a topic: every compacted
// partition is listed, a cleaned one with its last clean and the bytes that
// clean reclaimed.
func TestCLICleanerStatus(t *testing.T) {
	b := clienttest.Start(t, "log.cleaner.backoff.ms=100", "log.cleaner.dedupe.buffer.size=4194304")
	kv := func(stdin string, args ...string) result { t.Helper(); return runBin(t, b.Addr, stdin, args...) }
	kv("", "topics", "create", "profiles", "-p", "2", "--compact",
		"-c", "segment.bytes=4096", "-c", "min.cleanable.dirty.ratio=0.01").expect(t, exitOK)
	// Eight rounds of the same 20 keys, a produce (a batch per partition)
	// each: the partitions roll segments full of superseded values.
	for round := 0; round < 8; round++ {
		var in strings.Builder
		for k := 0; k < 20; k++ {
			fmt.Fprintf(&in, "user-%02d:%s-%d\n", k, strings.Repeat("v", 100), round)
		}
		kv(in.String(), "produce", "profiles", "-K", ":").expect(t, exitOK)
	}

	var ps []cleanerPartition
	var r result
	deadline := time.Now().Add(60 * time.Second)
	for {
		r = kv("", "cleaner", "status", "--http", b.HTTP, "-o", "json")
		r.expect(t, exitOK)
		ps = nil
		if err := json.Unmarshal([]byte(r.stdout), &ps); err != nil {
			t.Fatalf("%v: %s", err, r.stdout)
		}
		listed, cleaned := 0, 0
		for _, p := range ps {
			if p.Topic != "profiles" {
				continue
			}
			listed++
			if p.LastClean != "" && p.BytesReclaimed != nil && *p.BytesReclaimed > 0 {
				cleaned++
			}
		}
		if listed == 2 && cleaned > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cleaner status after 60s lists %d partitions of profiles (want 2), %d cleaned (want > 0): %s", listed, cleaned, r.stdout)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, p := range ps {
		if p.Topic == "profiles" && (p.DirtyRatio == nil || p.FirstDirtyOffset == nil || p.State == "" || p.State == "uncleanable") {
			t.Errorf("partition %d: %+v", p.Partition, p)
		}
	}
	r = kv("", "cleaner", "status", "--http", b.HTTP)
	r.expect(t, exitOK)
	if !strings.HasPrefix(r.stdout, "TOPIC") || strings.Count(r.stdout, "profiles ") != 2 {
		t.Errorf("cleaner status table:\n%s", r.stdout)
	}
	t.Logf("kvlog cleaner status:\n%s", r.stdout)
}
