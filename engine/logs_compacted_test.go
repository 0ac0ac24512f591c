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
