package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/kvlog/kvlog/client/clienttest"
	"github.com/kvlog/kvlog/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kadm"
	"go.uber.org/goleak"
)

// writeModel writes n random puts and deletes over keys keys and returns the
// model: the latest value per live key.
func writeModel(t *testing.T, ctx context.Context, w *Writer, rng *rand.Rand, n, keys int, model map[string]string) {
	t.Helper()
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("key-%04d", rng.IntN(keys))
		if rng.IntN(5) == 0 {
			if _, err := w.Delete(ctx, []byte(k)); err != nil {
				t.Fatal(err)
			}
			delete(model, k)
			continue
		}
		v := fmt.Sprintf("value-%d-%d", i, rng.Int())
		if _, err := w.Put(ctx, []byte(k), []byte(v)); err != nil {
			t.Fatal(err)
		}
		model[k] = v
	}
}

func checkModel(t *testing.T, tbl *Table, model map[string]string) {
	t.Helper()
	if tbl.Len() != len(model) {
		t.Errorf("table has %d keys, model %d", tbl.Len(), len(model))
	}
	for k, v := range model {
		got, ok := tbl.Get([]byte(k))
		if !ok || string(got) != v {
			t.Errorf("Get(%s) = %q %v, model %q", k, got, ok, v)
		}
	}
	for k, v := range tbl.Snapshot().All() {
		if model[string(k)] != string(v) {
			t.Errorf("snapshot has %s=%s, model %q", k, v, model[string(k)])
		}
	}
}

func TestTableReplayMatchesModel(t *testing.T) {
	b := clienttest.Start(t)
	ctx := testbroker.Context(t, 90*time.Second)
	w, err := NewWriter(ctx, b.Brokers(), "users", WithCreateTopic(TopicSpec{Partitions: 3}))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	model := map[string]string{}
	writeModel(t, ctx, w, rand.New(rand.NewPCG(1, 1)), 600, 150, model)

	var last Progress
	var calls int
	tbl, err := Open(ctx, b.Brokers(), "users", ReplayOnly(), WithProgress(time.Millisecond, func(p Progress) { last = p; calls++ }))
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Close()
	checkModel(t, tbl, model)
	if !last.Done || calls == 0 {
		t.Errorf("last progress %+v after %d calls, want Done", last, calls)
	}
	if last.Records != 600 || last.Remaining() != 0 || len(last.Partitions) != 3 {
		t.Errorf("progress %+v, want 600 records over 3 partitions", last)
	}
	st := tbl.Stats()
	if st.LiveKeys != len(model) || st.Records != 600 || len(st.StalledPartitions) != 0 {
		t.Errorf("stats %+v", st)
	}
	// Records landed where Kafka's default partitioner puts them.
	for p, next := range tbl.Offsets() {
		if next == 0 {
			t.Errorf("partition %d got nothing: keys not spread", p)
		}
	}
}

func TestTablePartitionPlacement(t *testing.T) {
	b := clienttest.Start(t)
	ctx := testbroker.Context(t, 60*time.Second)
	w, err := NewWriter(ctx, b.Brokers(), "placed", WithCreateTopic(TopicSpec{Partitions: 12}))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, c := range javaMurmur2 {
		pos, err := w.Put(ctx, []byte(c.key), []byte("v"))
		if err != nil {
			t.Fatal(err)
		}
		if pos.Partition != c.parts[3] {
			t.Errorf("key %q landed in partition %d, Java's partitioner says %d", c.key, pos.Partition, c.parts[3])
		}
	}
}

func TestTableTailReadYourWrites(t *testing.T) {
	b := clienttest.Start(t)
	ctx := testbroker.Context(t, 60*time.Second)
	tbl, err := Open(ctx, b.Brokers(), "tail", WithCreateTopic(TopicSpec{Partitions: 2}))
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Close()
	if tbl.Len() != 0 {
		t.Fatalf("new topic has %d keys", tbl.Len())
	}
	pos, err := tbl.Put(ctx, []byte("alice"), []byte(`{"age":30}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := tbl.WaitFor(ctx, pos); err != nil {
		t.Fatal(err)
	}
	if v, ok := tbl.Get([]byte("alice")); !ok || string(v) != `{"age":30}` {
		t.Fatalf("after WaitFor: %q %v", v, ok)
	}
	snap := tbl.Snapshot()

	// Another writer's records arrive by tailing.
	w, err := NewWriter(ctx, b.Brokers(), "tail")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := 0; i < 50; i++ {
		if _, err := w.Put(ctx, []byte(fmt.Sprintf("k%d", i)), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	pos, err = w.Delete(ctx, []byte("alice"))
	if err != nil {
		t.Fatal(err)
	}
	if err := tbl.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := tbl.Get([]byte("alice")); ok || tbl.Len() != 50 {
		t.Fatalf("after Sync: alice present=%v, %d keys", ok, tbl.Len())
	}
	if snap.Len() != 1 {
		t.Errorf("snapshot taken before the writes changed: %d keys", snap.Len())
	}
	if tbl.Offsets()[pos.Partition] <= pos.Offset {
		t.Errorf("offsets %v do not cover %+v", tbl.Offsets(), pos)
	}
}

func TestTableApplyCallback(t *testing.T) {
	b := clienttest.Start(t)
	ctx := testbroker.Context(t, 60*time.Second)
	w, err := NewWriter(ctx, b.Brokers(), "cb", WithCreateTopic(TopicSpec{Partitions: 1}))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := 0; i < 10; i++ {
		w.Put(ctx, []byte(fmt.Sprint(i)), []byte("v"))
	}
	w.Delete(ctx, []byte("3"))

	var mu sync.Mutex
	var got []Record
	tbl, err := Open(ctx, b.Brokers(), "cb", ReplayOnly(), WithApply(func(r Record) error {
		mu.Lock()
		got = append(got, r)
		mu.Unlock()
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Close()
	if len(got) != 11 || !got[10].IsTombstone() || string(got[10].Key) != "3" || got[10].Offset != 10 {
		t.Fatalf("callback saw %d records, last %+v", len(got), got[len(got)-1])
	}
	if tbl.Len() != 0 {
		t.Error("built-in state kept with WithApply")
	}

	boom := errors.New("boom")
	_, err = Open(ctx, b.Brokers(), "cb", WithApply(func(r Record) error {
		if r.Offset == 5 {
			return boom
		}
		return nil
	}))
	if !errors.Is(err, boom) {
		t.Fatalf("Open with a failing callback: %v", err)
	}
}

func TestTableErrors(t *testing.T) {
	b := clienttest.Start(t)
	ctx := testbroker.Context(t, 60*time.Second)
	if _, err := Open(ctx, b.Brokers(), "missing"); !errors.Is(err, ErrTopicNotFound) {
		t.Errorf("missing topic: %v, want ErrTopicNotFound", err)
	}
	if _, err := NewWriter(ctx, b.Brokers(), "missing"); !errors.Is(err, ErrTopicNotFound) {
		t.Errorf("writer on missing topic: %v, want ErrTopicNotFound", err)
	}
	adm := b.Admin(t)
	if _, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("delete")}, "events"); err != nil {
		t.Fatal(err)
	}
	var te *TopicError
	_, err := Open(ctx, b.Brokers(), "events")
	if !errors.Is(err, ErrNotCompacted) || !errors.As(err, &te) || te.Topic != "events" {
		t.Errorf("delete-policy topic: %v, want ErrNotCompacted", err)
	}
	tbl, err := Open(ctx, b.Brokers(), "events", AllowUncompacted(), ReplayOnly())
	if err != nil {
		t.Fatalf("AllowUncompacted: %v", err)
	}
	tbl.Close()
	if _, err := tbl.Put(ctx, []byte("k"), []byte("v")); !errors.Is(err, ErrClosed) {
		t.Errorf("Put after Close: %v, want ErrClosed", err)
	}
	if _, err := tbl.Put(ctx, nil, []byte("v")); !errors.Is(err, ErrNilKey) {
		t.Errorf("nil key: %v, want ErrNilKey", err)
	}
	tbl.Close() // idempotent
}

func TestTableCancelDuringReplay(t *testing.T) {
	b := clienttest.Start(t)
	ctx := testbroker.Context(t, 60*time.Second)
	w, err := NewWriter(ctx, b.Brokers(), "slow", WithCreateTopic(TopicSpec{Partitions: 1}))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Put(ctx, []byte("a"), []byte("1"))

	// A callback that blocks until the open is cancelled: the replay
	// cannot finish, so only the cancellation ends Open. The open is
	// cancelled once the replay is inside the callback. Were the
	// cancellation ignored, Open would end with ctx's deadline instead
	// (DeadlineExceeded: ctx is the hang guard).
	octx, cancel := context.WithCancel(ctx)
	applying := make(chan struct{})
	var once sync.Once
	go func() {
		select {
		case <-applying:
			cancel()
		case <-octx.Done():
		}
	}()
	_, err = Open(octx, b.Brokers(), "slow", WithApply(func(Record) error {
		once.Do(func() { close(applying) })
		<-octx.Done()
		return nil
	}))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Open: %v, want context.Canceled", err)
	}
}

func TestTableTailAcrossBrokerRestart(t *testing.T) {
	b := clienttest.Start(t)
	ctx := testbroker.Context(t, 120*time.Second)
	tbl, err := Open(ctx, b.Brokers(), "restart", WithCreateTopic(TopicSpec{Partitions: 2}))
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Close()
	w, err := NewWriter(ctx, b.Brokers(), "restart")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	model := map[string]string{}
	rng := rand.New(rand.NewPCG(3, 3))
	writeModel(t, ctx, w, rng, 100, 40, model)
	if err := tbl.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	b.Restart()
	writeModel(t, ctx, w, rng, 100, 40, model)
	if err := tbl.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	checkModel(t, tbl, model)
}

// TestTableCloseStopsGoroutines: Close leaves no goroutine of the table or
// of its franz-go clients behind.
func TestTableCloseStopsGoroutines(t *testing.T) {
	b := clienttest.Start(t)
	ctx := testbroker.Context(t, 60*time.Second)
	before := goleak.IgnoreCurrent()
	tbl, err := Open(ctx, b.Brokers(), "leak", WithCreateTopic(TopicSpec{Partitions: 2}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tbl.Put(ctx, []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := tbl.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	tbl.Close()
	if err := goleak.Find(before); err != nil {
		t.Error(err)
	}
}
