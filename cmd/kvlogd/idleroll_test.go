package main

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/cleaner"
	"github.com/kvlog/kvlog/internal/testbroker"
)

// TestCleanerIdleRoll: a changelog topic at default topic configs
// (cleanup.policy=compact only: segment.bytes 1 GiB, segment.ms 7 days,
// min.cleanable.dirty.ratio 0.5), written and then left quiet, is all in
// its active segment, which Kafka never cleans; kvlogd rolls it once it
// has had no append for kvlog.cleaner.idle.roll.ms and cleans it, so a
// replay reads each key's latest record only. The key is described with
// its default (30000), is dynamic (lowered to 1 s here, which also wakes
// the cleaner, so the test takes seconds; the cleaner's backoff stays at
// its 15 s default: the thread wakes for the roll), and values outside
// [0, 7 days] are refused.
func TestCleanerIdleRoll(t *testing.T) {
	const (
		topic   = "quiet-changelog"
		key     = "kvlog.cleaner.idle.roll.ms"
		keys    = 50
		updates = 40
	)
	b := testbroker.Start(t, testbroker.Options{Race: true, Props: []string{"log.cleaner.dedupe.buffer.size=4194304"}})
	ctx := testbroker.Context(t, 2*time.Minute)
	adm := b.Admin(t)

	described := func() kadm.Config {
		t.Helper()
		rcs, err := adm.DescribeBrokerConfigs(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, rc := range rcs {
			for _, c := range rc.Configs {
				if c.Key == key {
					return c
				}
			}
		}
		t.Fatalf("%s not described", key)
		return kadm.Config{}
	}
	if c := described(); c.Value == nil || *c.Value != "30000" || c.Source != kmsg.ConfigSourceDefaultConfig {
		t.Fatalf("described %s: %+v, want the default 30000", key, c)
	}
	for _, v := range []string{"-1", "604800001"} {
		rs, err := adm.AlterBrokerConfigs(ctx, []kadm.AlterConfig{{Name: key, Value: kadm.StringPtr(v)}}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != 1 || !errors.Is(rs[0].Err, kerr.InvalidConfig) {
			t.Errorf("%s=%s: %+v, want INVALID_CONFIG", key, v, rs)
		}
	}

	resp, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, topic)
	if err != nil || resp.Err != nil {
		t.Fatalf("create: %v %v", err, resp.Err)
	}
	// keys × updates overwrites, one in ten a tombstone; the model keeps
	// each key's latest value (nil: deleted).
	cl := b.Client(t, kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()))
	model := map[string][]byte{}
	var rs []*kgo.Record
	for i := 0; i < keys*updates; i++ {
		k := fmt.Sprintf("entity-%03d", i%keys)
		var v []byte
		if i%10 != 3 {
			v = fmt.Appendf(nil, "state-%d", i)
		}
		rs = append(rs, &kgo.Record{Key: []byte(k), Value: v})
		model[k] = v
	}
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	leo := rs[len(rs)-1].Offset + 1

	rsp, err := adm.AlterBrokerConfigs(ctx, []kadm.AlterConfig{{Name: key, Value: kadm.StringPtr("1000")}}, 0)
	if err != nil || len(rsp) != 1 || rsp[0].Err != nil {
		t.Fatalf("%s=1000: %v %+v", key, err, rsp)
	}
	if c := described(); c.Value == nil || *c.Value != "1000" || c.Source != kmsg.ConfigSourceDynamicBrokerConfig {
		t.Fatalf("described %s after the change: %+v", key, c)
	}
	ps := waitCleaner(t, b, topic, 0, time.Minute, "the idle active segment rolled and cleaned to the log end",
		func(ps *cleaner.PartitionStatus) bool { return ps.Passes > 0 && ps.FirstDirtyOffset >= leo })
	if st := cleanerStatusOf(t, b); st.Config.IdleRollMs != 1000 {
		t.Errorf("status config idle_roll_ms %d, want 1000", st.Config.IdleRollMs)
	}
	if n, _ := cleanerMetric(t, b, "kvlog_cleaner_idle_rolls_total"); n < 1 {
		t.Errorf("kvlog_cleaner_idle_rolls_total %v, want at least 1", n)
	}

	// A replay from offset 0 reads one record per key: its latest.
	got := map[string][]byte{}
	n := 0
	rd := b.Client(t, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(0)}}))
	for done := false; !done; {
		fs := rd.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("replay: read %d records, the log ends at %d", n, leo)
		}
		fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s-%d: %v", tp, p, err) })
		for _, r := range fs.Records() {
			n++
			if _, dup := got[string(r.Key)]; dup {
				t.Errorf("key %s twice in the replay of a cleaned log (offset %d)", r.Key, r.Offset)
			}
			got[string(r.Key)] = r.Value
			done = done || r.Offset+1 >= leo
		}
	}
	t.Logf("%d records written, %d replayed after the idle roll (last pass: %+v)", len(rs), n, ps.LastPass)
	if n != len(model) {
		t.Errorf("replayed %d records, want %d (one per key)", n, len(model))
	}
	for k, v := range model {
		if g, ok := got[k]; !ok || string(g) != string(v) || (g == nil) != (v == nil) {
			t.Errorf("key %s: replayed %q (present %v), want %q", k, g, ok, v)
		}
	}
}
