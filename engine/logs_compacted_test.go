package engine

import (
	"testing"
)

// TestCompactedLogs: CompactedLogs lists the compacted logs only, in
// topic-partition order, following settings changes.
func TestCompactedLogs(t *testing.T) {
	m, err := OpenManager(ManagerOptions{Dirs: []string{t.TempDir()}, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	compact := DefaultConfig()
	compact.Compact = true
	for _, c := range []struct {
		tp  TopicPartition
		cfg Config
	}{
		{TopicPartition{Topic: "b", Partition: 1}, compact},
		{TopicPartition{Topic: "a", Partition: 0}, DefaultConfig()},
		{TopicPartition{Topic: "b", Partition: 0}, compact},
		{TopicPartition{Topic: "a", Partition: 1}, compact},
	} {
		if _, err := m.CreateLog(c.tp, c.cfg); err != nil {
			t.Fatal(err)
		}
	}
	names := func() (out []TopicPartition) {
		for _, l := range m.CompactedLogs() {
			out = append(out, l.TopicPartition())
		}
		return out
	}
	want := []TopicPartition{{Topic: "a", Partition: 1}, {Topic: "b", Partition: 0}, {Topic: "b", Partition: 1}}
	if got := names(); len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("compacted logs %v, want %v", got, want)
	}
	l, _ := m.Log(TopicPartition{Topic: "b", Partition: 0})
	l.SetConfig(DefaultConfig())
	if got := names(); len(got) != 2 || got[0] != want[0] || got[1] != want[2] {
		t.Fatalf("after b-0 stopped compacting: %v", got)
	}
}

// TestIdleCompactedLogsLooksAtNoLog: the cleaner's rounds of a broker
// where no log came or went and no settings changed look at no log (each
// round walked every log of the broker); a new, deleted or reconfigured
// log is seen at the next round.
func TestIdleCompactedLogsLooksAtNoLog(t *testing.T) {
	const n = 100
	m, err := OpenManager(ManagerOptions{Dirs: []string{t.TempDir()}, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	compact := DefaultConfig()
	compact.Compact = true
	for i := range n {
		cfg := DefaultConfig()
		if i%10 == 0 {
			cfg = compact
		}
		if _, err := m.CreateLog(TopicPartition{Topic: "t", Partition: int32(i)}, cfg); err != nil {
			t.Fatal(err)
		}
	}
	round := func(want int) int {
		t.Helper()
		before := m.compacted.looked
		if got := len(m.CompactedLogs()); got != want {
			t.Fatalf("%d compacted logs, want %d", got, want)
		}
		return m.compacted.looked - before
	}
	if got := round(n / 10); got != n {
		t.Fatalf("first round looked at %d logs, want %d", got, n)
	}
	for i := range 3 {
		if got := round(n / 10); got != 0 {
			t.Fatalf("idle round %d looked at %d logs, want 0", i, got)
		}
	}
	l, _ := m.Log(TopicPartition{Topic: "t", Partition: 5})
	l.SetConfig(compact)
	round(n/10 + 1)
	if err := m.DeleteLog(TopicPartition{Topic: "t", Partition: 0}); err != nil {
		t.Fatal(err)
	}
	round(n / 10)
	// A compacted log created after a deletion: as many logs as before
	// the deletion.
	if _, err := m.CreateLog(TopicPartition{Topic: "u", Partition: 0}, compact); err != nil {
		t.Fatal(err)
	}
	round(n/10 + 1)
	if err := m.DeleteLog(TopicPartition{Topic: "t", Partition: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.CreateLog(TopicPartition{Topic: "u", Partition: 1}, compact); err != nil {
		t.Fatal(err)
	}
	round(n/10 + 2)
	if got := round(n/10 + 2); got != 0 {
		t.Fatalf("idle round looked at %d logs, want 0", got)
	}
}
