package javacompat

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kvlog/kvlog/internal/testbroker"
)

// streamsModel is what the Streams application (StreamsApp.java) must
// output, computed from what the test produced: each region's users, each
// user's maximum points.
type streamsModel struct {
	rnd      *rand.Rand
	profiles map[string]string // user -> region
	points   map[string]int64
}

func newStreamsModel() *streamsModel {
	return &streamsModel{rnd: rand.New(rand.NewSource(7)), profiles: map[string]string{}, points: map[string]int64{}}
}

// produce sends n profile updates (every tenth a tombstone) and n events.
func (m *streamsModel) produce(t *testing.T, cl *kgo.Client, n int) {
	t.Helper()
	var rs []*kgo.Record
	for i := 0; i < n; i++ {
		user := fmt.Sprintf("u%03d", m.rnd.Intn(200))
		r := &kgo.Record{Topic: "user-profiles", Key: []byte(user)}
		if m.rnd.Intn(10) == 0 {
			delete(m.profiles, user)
		} else {
			region := fmt.Sprintf("r%d", m.rnd.Intn(8))
			m.profiles[user] = region
			r.Value = []byte(fmt.Sprintf("region=%s;score=%d", region, m.rnd.Intn(1000)))
		}
		rs = append(rs, r)
		user = fmt.Sprintf("u%03d", m.rnd.Intn(200))
		pts := m.rnd.Int63n(100000)
		m.points[user] = max(m.points[user], pts)
		rs = append(rs, &kgo.Record{Topic: "user-events", Key: []byte(user), Value: []byte(strconv.FormatInt(pts, 10))})
	}
	if err := cl.ProduceSync(testbroker.Context(t, 2*time.Minute), rs...).FirstErr(); err != nil {
		t.Fatalf("franz-go producing the Streams input: %v", err)
	}
}

// tables are the model's outputs: "regions-out" and "points-out".
func (m *streamsModel) tables() map[string]map[string]string {
	regions := map[string][]string{}
	for u, r := range m.profiles {
		regions[r] = append(regions[r], u)
	}
	out := map[string]map[string]string{"regions-out": {}, "points-out": {}}
	for r, us := range regions {
		sort.Strings(us)
		out["regions-out"][r] = strings.Join(us, ",")
	}
	for u, p := range m.points {
		out["points-out"][u] = strconv.FormatInt(p, 10)
	}
	return out
}

// outputWatcher keeps the latest value of every key of the output topics
// ("" values, an emptied region, are dropped).
type outputWatcher struct {
	mu     sync.Mutex
	tables map[string]map[string]string
}

func watchOutputs(t *testing.T, b *testbroker.Broker, opts ...kgo.Opt) *outputWatcher {
	w := &outputWatcher{tables: map[string]map[string]string{"regions-out": {}, "points-out": {}}}
	cl := b.Client(t, append([]kgo.Opt{kgo.ConsumeTopics("regions-out", "points-out"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			w.mu.Lock()
			fs.EachRecord(func(r *kgo.Record) {
				if len(r.Value) == 0 {
					delete(w.tables[r.Topic], string(r.Key))
				} else {
					w.tables[r.Topic][string(r.Key)] = string(r.Value)
				}
			})
			w.mu.Unlock()
		}
	}()
	return w
}

// waitEqual waits until the outputs equal the model, failing after d with
// the differences.
func (w *outputWatcher) waitEqual(t *testing.T, m *streamsModel, d time.Duration, what string) {
	t.Helper()
	want := m.tables()
	deadline := time.Now().Add(d)
	for {
		w.mu.Lock()
		var diffs []string
		for topic, wt := range want {
			got := w.tables[topic]
			for k, v := range wt {
				if got[k] != v {
					diffs = append(diffs, fmt.Sprintf("%s[%s] = %q, model %q", topic, k, got[k], v))
				}
			}
			for k, v := range got {
				if _, ok := wt[k]; !ok {
					diffs = append(diffs, fmt.Sprintf("%s[%s] = %q, not in the model", topic, k, v))
				}
			}
		}
		w.mu.Unlock()
		if len(diffs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			sort.Strings(diffs)
			t.Fatalf("Kafka Streams 4.4.0, %s: the output tables differ from the model after %v in %d keys, e.g.\n%s",
				what, d, len(diffs), strings.Join(diffs[:min(10, len(diffs))], "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// streamsApp is one running instance of StreamsApp.
type streamsApp struct {
	*javaRun
	name, stateDir string
}

func startStreamsApp(t *testing.T, cp string, b *testbroker.Broker, appID, name, stateDir, guarantee string) *streamsApp {
	t.Helper()
	r := startJava(t, cp, "kvlog.compat.StreamsApp", b.Addr, appID, stateDir, guarantee)
	return &streamsApp{javaRun: r, name: name, stateDir: stateDir}
}

// progress returns the app's PROGRESS lines with prefix, JSON decoded.
func (a *streamsApp) progress(prefix string) []map[string]any {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []map[string]any
	for _, l := range a.other {
		if rest, ok := strings.CutPrefix(l, "PROGRESS "+prefix+" "); ok {
			var m map[string]any
			if json.Unmarshal([]byte(rest), &m) == nil {
				out = append(out, m)
			}
		}
	}
	return out
}

// waitTasks waits until the app is RUNNING with at least n active tasks
// (by its latest "tasks" line).
func (a *streamsApp) waitTasks(t *testing.T, n int, d time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if ts := a.progress("tasks"); len(ts) > 0 {
			last := ts[len(ts)-1]
			if active := int(last["active"].(float64)); last["state"] == "RUNNING" && active >= n {
				return active
			}
		}
		select {
		case <-a.done:
			t.Fatalf("Streams app %s exited; stdout:\n%s\nstderr:\n%s", a.name, strings.Join(a.other, "\n"), tail(a.stderrString(), 16<<10))
		default:
		}
		if time.Now().After(deadline) {
			a.mu.Lock()
			lines := strings.Join(a.other, "\n")
			a.mu.Unlock()
			t.Fatalf("Streams app %s not RUNNING with %d active tasks within %v; stdout:\n%s", a.name, n, d, tail(lines, 8<<10))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cleanedPartitions counts the partitions of topic the log cleaner has
// compacted at least once (from /cleaner).
func cleanedPartitions(t *testing.T, b *testbroker.Broker, topic string) int {
	resp, err := http.Get("http://" + b.HTTP + "/cleaner")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Partitions []struct {
			Topic      string `json:"topic"`
			FirstDirty int64  `json:"first_dirty_offset"`
		} `json:"partitions"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range st.Partitions {
		if p.Topic == topic && p.FirstDirty > 0 {
			n++
		}
	}
	return n
}

// TestStreams runs a Kafka Streams 4.4.0 application (at_least_once,
// classic rebalance protocol, RocksDB stores with compacted changelogs, a
// repartition topic) against kvlogd: its output equals a model; it is
// SIGKILLed with its state directory deleted and restores from kvlog's
// compacted changelogs; kvlogd is SIGKILLed under it; a second instance
// shares the work and the first stops. Then an exactly_once_v2 instance of
// another application id recomputes the outputs through transactions,
// read back under read_committed, through its own SIGKILL with its state
// deleted and a broker SIGKILL.
func TestStreams(t *testing.T) {
	cp4, _ := requireJava(t)
	parent := t // what an app started in a subtest and used after it runs under
	b := testbroker.Start(t, testbroker.Options{Race: true, Props: []string{"log.cleaner.backoff.ms=500"}})
	adm := b.Admin(t)
	ctx := testbroker.Context(t, 5*time.Minute)
	compact := map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}
	for topic, cfg := range map[string]map[string]*string{"user-profiles": compact, "user-events": nil, "regions-out": compact, "points-out": compact} {
		if r, err := adm.CreateTopic(ctx, 3, -1, cfg, topic); err != nil || r.Err != nil {
			t.Fatalf("create %s: %v %v", topic, err, r.Err)
		}
	}
	const appID = "profiles-app"
	prod := b.Client(t)
	out := watchOutputs(t, b)
	m := newStreamsModel()
	dirA, dirB := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")

	a := startStreamsApp(t, cp4, b, appID, "A", dirA, "at_least_once")
	a.waitTasks(t, 9, 2*time.Minute) // 3 sub-topologies x 3 partitions
	m.produce(t, prod, 3000)
	out.waitEqual(t, m, 90*time.Second, "first run")

	t.Run("internal-topic-configs", func(t *testing.T) {
		want := map[string]map[string]string{
			appID + "-profiles-changelog":       {"cleanup.policy": "compact", "message.timestamp.type": "CreateTime", "segment.bytes": "65536"},
			appID + "-region-members-changelog": {"cleanup.policy": "compact", "message.timestamp.type": "CreateTime", "segment.bytes": "65536"},
			appID + "-max-points-changelog":     {"cleanup.policy": "compact", "message.timestamp.type": "CreateTime", "segment.bytes": "65536"},
			appID + "-by-region-repartition": {"cleanup.policy": "delete", "message.timestamp.type": "CreateTime",
				"segment.bytes": "52428800", "retention.ms": "-1"},
		}
		var names []string
		for n := range want {
			names = append(names, n)
		}
		rcs, err := adm.DescribeTopicConfigs(ctx, names...)
		if err != nil {
			t.Fatal(err)
		}
		for _, rc := range rcs {
			if rc.Err != nil {
				t.Fatalf("describe %s: %v", rc.Name, rc.Err)
			}
			for _, c := range rc.Configs {
				if v, ok := want[rc.Name][c.Key]; ok {
					if c.Value == nil || *c.Value != v || c.Source != 1 { // DYNAMIC_TOPIC_CONFIG
						t.Errorf("%s: %s = %v (source %v), Streams asked for %s", rc.Name, c.Key, c.MaybeValue(), c.Source, v)
					}
					delete(want[rc.Name], c.Key)
				}
			}
			if len(want[rc.Name]) != 0 {
				t.Errorf("%s: configs %v not described", rc.Name, want[rc.Name])
			}
		}
	})

	t.Run("repartition-purge", func(t *testing.T) {
		// Streams deletes consumed repartition records (DeleteRecords)
		// every repartition.purge.interval.ms.
		deadline := time.Now().Add(60 * time.Second)
		for {
			starts, err := adm.ListStartOffsets(ctx, appID+"-by-region-repartition")
			if err != nil {
				t.Fatal(err)
			}
			purged := int64(0)
			starts.Each(func(o kadm.ListedOffset) { purged += o.Offset })
			if purged > 0 {
				t.Logf("repartition topic: %d records purged by DeleteRecords", purged)
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("the repartition topic's start offsets stayed 0: no DeleteRecords purge within 60s")
			}
			time.Sleep(250 * time.Millisecond)
		}
	})

	t.Run("sigkill-app-state-deleted-restore", func(t *testing.T) {
		// More updates, so the changelogs roll and are compacted.
		m.produce(t, prod, 3000)
		out.waitEqual(t, m, 90*time.Second, "before the app SIGKILL")
		deadline := time.Now().Add(30 * time.Second)
		for cleanedPartitions(t, b, appID+"-profiles-changelog") == 0 && time.Now().Before(deadline) {
			time.Sleep(250 * time.Millisecond)
		}
		a.kill()
		if err := os.RemoveAll(dirA); err != nil {
			t.Fatal(err)
		}
		m.produce(t, prod, 1000)
		start := time.Now()
		a = startStreamsApp(parent, cp4, b, appID, "A", dirA, "at_least_once")
		a.waitTasks(t, 9, 2*time.Minute)
		running := time.Since(start)
		var restored, changelog int64
		var slowest float64
		for _, e := range a.progress("restore-end") {
			restored += int64(e["restored"].(float64))
			slowest = max(slowest, e["us"].(float64))
		}
		for _, s := range a.progress("restore-start") {
			changelog += int64(s["end_offset"].(float64)) // offsets are dense: records ever written
		}
		if restored == 0 || changelog == 0 {
			t.Fatalf("no restoration reported: %v / %v", a.progress("restore-start"), a.progress("restore-end"))
		}
		t.Logf("restore after SIGKILL with the state directory deleted: %d records restored from changelogs holding %d records before compaction (%.0f%%); "+
			"slowest store partition %.1f ms; JVM start to RUNNING %v", restored, changelog, 100*float64(restored)/float64(changelog), slowest/1000, running.Round(time.Millisecond))
		out.waitEqual(t, m, 90*time.Second, "after the restore")
	})

	t.Run("sigkill-broker-under-app", func(t *testing.T) {
		m.produce(t, prod, 500)
		b.Kill()
		b.Restart()
		m.produce(t, prod, 1000)
		out.waitEqual(t, m, 2*time.Minute, "after the broker SIGKILL")
		if u := a.progress("uncaught"); len(u) > 0 {
			t.Logf("stream threads replaced after the broker restart: %v", u)
		}
	})

	t.Run("two-instances-then-one", func(t *testing.T) {
		bApp := startStreamsApp(t, cp4, b, appID, "B", dirB, "at_least_once")
		nb := bApp.waitTasks(t, 1, 2*time.Minute)
		// A gave some of its nine tasks to B.
		deadline := time.Now().Add(time.Minute)
		for {
			ts := a.progress("tasks")
			last := ts[len(ts)-1]
			if na := int(last["active"].(float64)); last["state"] == "RUNNING" && na >= 1 && na+nb == 9 {
				t.Logf("tasks shared: A %d (%v), B %d", na, last["ids"], nb)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("A and B do not share the 9 tasks: A %v, B %v", last, bApp.progress("tasks"))
			}
			time.Sleep(100 * time.Millisecond)
			nb = int(bApp.progress("tasks")[len(bApp.progress("tasks"))-1]["active"].(float64))
		}
		m.produce(t, prod, 1000)
		out.waitEqual(t, m, 90*time.Second, "with two instances")
		// A stops cleanly (SIGTERM: KafkaStreams.close leaves the group).
		a.cmd.Process.Signal(os.Interrupt)
		a.wait(time.Minute)
		bApp.waitTasks(t, 9, 2*time.Minute)
		m.produce(t, prod, 1000)
		out.waitEqual(t, m, 90*time.Second, "after A stopped")
		bApp.kill()
	})

	t.Run("exactly-once-v2", func(t *testing.T) {
		eosOut := watchOutputs(t, b, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
		dirE := filepath.Join(t.TempDir(), "eos")
		e := startStreamsApp(t, cp4, b, "profiles-eos", "EOS", dirE, "exactly_once_v2")
		e.waitTasks(t, 9, 2*time.Minute)
		m.produce(t, prod, 1000)
		eosOut.waitEqual(t, m, 2*time.Minute, "exactly_once_v2")
		e.kill()
		if err := os.RemoveAll(dirE); err != nil {
			t.Fatal(err)
		}
		m.produce(t, prod, 1000)
		e = startStreamsApp(t, cp4, b, "profiles-eos", "EOS", dirE, "exactly_once_v2")
		e.waitTasks(t, 9, 2*time.Minute)
		eosOut.waitEqual(t, m, 2*time.Minute, "exactly_once_v2 after its SIGKILL with the state deleted")
		m.produce(t, prod, 500)
		b.Kill()
		b.Restart()
		m.produce(t, prod, 500)
		eosOut.waitEqual(t, m, 2*time.Minute, "exactly_once_v2 after a broker SIGKILL")
		if u := e.progress("uncaught"); len(u) > 0 {
			t.Logf("exactly_once_v2: stream threads replaced: %v", u)
		}
		e.kill()
	})
}

// TestStreamsRestoreMode runs StreamsApp's restore mode (what kvbench's
// restore scenario times) against kvlogd under exactly_once_v2: from an
// empty state directory it restores the "profiles" store from a changelog
// written beforehand by a transactional producer, one of whose
// transactions was aborted, and reports exactly the committed records
// (tombstones included) of both partitions, then exits. The broker's idle
// roll is off (kvlog.cleaner.idle.roll.ms=0): it would compact the quiet
// changelog half a minute after its last write, and a slow JVM start could
// then restore fewer records than were committed.
func TestStreamsRestoreMode(t *testing.T) {
	cp4, _ := requireJava(t)
	b := testbroker.Start(t, testbroker.Options{Race: true, Props: []string{"kvlog.cleaner.idle.roll.ms=0"}})
	adm := b.Admin(t)
	ctx := testbroker.Context(t, 3*time.Minute)
	const appID = "restore-mode"
	changelog := appID + "-profiles-changelog"
	compact := map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}
	for topic, cfg := range map[string]map[string]*string{"user-profiles": compact, "user-events": nil, changelog: compact} {
		if r, err := adm.CreateTopic(ctx, 2, -1, cfg, topic); err != nil || r.Err != nil {
			t.Fatalf("create %s: %v %v", topic, err, r.Err)
		}
	}
	cl := b.Client(t, kgo.DefaultProduceTopic(changelog), kgo.TransactionalID("restore-mode-writer"))
	committed := 0
	for txn, n := range []int{120, 50, 40} {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		var rs []*kgo.Record
		for i := 0; i < n; i++ {
			r := &kgo.Record{Key: []byte(fmt.Sprintf("u%03d", (txn*7+i)%60))}
			if i%10 != 3 {
				r.Value = []byte(fmt.Sprintf("region=r%d;score=%d", i%8, i))
			}
			rs = append(rs, r)
		}
		if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatalf("transaction %d: %v", txn, err)
		}
		commit := txn != 1
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatalf("ending transaction %d: %v", txn, err)
		}
		if commit {
			committed += n
		}
	}
	app := startJava(t, cp4, "kvlog.compat.StreamsApp", b.Addr, appID, filepath.Join(t.TempDir(), "state"), "exactly_once_v2", "restore", "2")
	line, ok := app.waitLine(2*time.Minute, func(l string) bool { return strings.HasPrefix(l, "RESTORED ") })
	if !ok {
		app.mu.Lock()
		defer app.mu.Unlock()
		t.Fatalf("no RESTORED line from the Streams app in restore mode; stdout:\n%s", tail(strings.Join(app.other, "\n"), 8<<10))
	}
	var got struct {
		Records    int64   `json:"records"`
		Partitions int     `json:"partitions"`
		RestoreMs  float64 `json:"restore_ms"`
	}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "RESTORED ")), &got); err != nil {
		t.Fatalf("RESTORED line %q: %v", line, err)
	}
	if got.Records != int64(committed) || got.Partitions != 2 || got.RestoreMs < 0 {
		t.Fatalf("Kafka Streams 4.4.0 restore mode under exactly_once_v2: %s; want %d records (the committed ones) of 2 partitions", line, committed)
	}
	app.wait(time.Minute)
}
