package client

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Record is one changelog record as handed to a WithApply callback. Key and
// Value alias the fetched bytes (not copied, never reused or modified by
// the library); Value is nil for a tombstone.
type Record struct {
	Key       []byte
	Value     []byte
	Partition int32
	Offset    int64
	Timestamp time.Time
}

// IsTombstone reports a null value: the key is deleted.
func (r *Record) IsTombstone() bool { return r.Value == nil }

// PartitionProgress is one partition's replay position.
type PartitionProgress struct {
	Partition int32
	Start     int64 // log start offset at Open
	Position  int64 // next offset to apply
	Target    int64 // high watermark at Open: replay is complete at or past it
}

// Progress reports replay progress.
type Progress struct {
	Records    int64 // records applied, tombstones included
	Tombstones int64
	Bytes      int64 // key + value bytes applied
	Elapsed    time.Duration
	Done       bool
	Partitions []PartitionProgress
}

// Remaining is the number of offsets still to replay (an upper bound on the
// records: compaction leaves gaps).
func (p Progress) Remaining() int64 {
	var n int64
	for _, pp := range p.Partitions {
		if pp.Position < pp.Target {
			n += pp.Target - pp.Position
		}
	}
	return n
}

// Total is the number of offsets between the log start and the target,
// summed over partitions (an upper bound on the records to replay).
func (p Progress) Total() int64 {
	var n int64
	for _, pp := range p.Partitions {
		if pp.Target > pp.Start {
			n += pp.Target - pp.Start
		}
	}
	return n
}

// Stats summarises a table's replay and what it has applied since.
type Stats struct {
	Progress
	ReplayDuration    time.Duration // time from Open to replay complete
	LiveKeys          int           // keys in the built-in state (0 with WithApply)
	StalledPartitions []int32       // partitions declared replayed by the stall timeout
}

// Table is a compacted topic replayed into memory and kept up to date.
type Table struct {
	topic   string
	brokers []string
	o       options
	nparts  int32
	w       *Writer
	cons    *kgo.Client
	adm     *kadm.Client

	start   time.Time
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{} // closed when the poll loop returns
	replay  chan struct{} // closed when the replay is complete
	closeMu sync.Once

	mu      sync.RWMutex
	st      *state // nil with WithApply
	starts  map[int32]int64
	targets map[int32]int64
	next    map[int32]int64
	changed chan struct{} // closed and replaced whenever next advances
	records int64
	tombs   int64
	// records applied by the replay engine (replay.go) rather than the
	// franz-go consumer
	engineRecords int64
	bytes         int64
	replayed      bool
	replayDur     time.Duration
	stalled       []int32
	err           error // why the loop stopped, if it stopped on its own
	fetchErr      error // last fetch error reported by franz-go
}

// Open opens topic, replays it from every partition's log start to the high
// watermark it has now, and returns once the state is built. Unless
// ReplayOnly is given it then keeps tailing the topic until Close.
//
// Errors: ErrTopicNotFound, ErrNotCompacted, ErrBrokerUnreachable,
// ErrInvalidOption, the context's error, or the apply callback's error.
func Open(ctx context.Context, brokers []string, topic string, opts ...Option) (*Table, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	adminCl, err := connect(ctx, brokers, &o)
	if err != nil {
		return nil, err
	}
	adm := kadm.NewClient(adminCl)
	fail := func(err error) (*Table, error) {
		adminCl.Close()
		return nil, err
	}
	n, err := ensureTopic(ctx, adminCl, brokers, topic, &o, true)
	if err != nil {
		return fail(err)
	}
	startOffs, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = startOffs.Error()
	}
	if err != nil {
		return fail(topicErr(topic, "list offsets", classify(brokers, err)))
	}
	endOffs, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = endOffs.Error()
	}
	if err != nil {
		return fail(topicErr(topic, "list offsets", classify(brokers, err)))
	}

	t := &Table{
		topic:   topic,
		brokers: brokers,
		o:       o,
		nparts:  n,
		w:       &Writer{topic: topic, brokers: brokers, cl: adminCl},
		adm:     adm,
		start:   time.Now(),
		done:    make(chan struct{}),
		replay:  make(chan struct{}),
		starts:  make(map[int32]int64, n),
		targets: make(map[int32]int64, n),
		next:    make(map[int32]int64, n),
		changed: make(chan struct{}),
	}
	var span int64 // offsets to replay: an upper bound on the records
	for p := int32(0); p < n; p++ {
		so, _ := startOffs.Lookup(topic, p)
		eo, _ := endOffs.Lookup(topic, p)
		t.starts[p] = so.Offset
		t.targets[p] = eo.Offset
		t.next[p] = so.Offset
		span += max(0, eo.Offset-so.Offset)
	}
	if o.apply == nil {
		t.st = newState(sizeHint(o, span))
	}
	// The consumer is created once the replay engine is done (see run):
	// check its options now, so that Open reports them.
	probe, err := kgo.NewClient(t.consumerOpts()...)
	if err != nil {
		return fail(fmt.Errorf("%w: %w", ErrInvalidOption, err))
	}
	probe.Close()
	t.ctx, t.cancel = context.WithCancel(context.Background())
	go t.run()

	select {
	case <-t.replay:
		return t, nil
	case <-t.done:
		select {
		case <-t.replay: // ReplayOnly: the loop ended because the replay did
			return t, nil
		default:
		}
		err := t.Err()
		t.Close()
		if err == nil {
			err = ErrClosed
		}
		return nil, err
	case <-ctx.Done():
		t.Close()
		return nil, topicErr(topic, "replay", ctx.Err())
	}
}

// consumerOpts are the franz-go consumer's options, without the partitions
// to consume.
func (t *Table) consumerOpts() []kgo.Opt {
	kopts := []kgo.Opt{
		kgo.SeedBrokers(t.brokers...),
		kgo.DialTimeout(t.o.dialTimeout),
		kgo.FetchMaxBytes(t.o.fetchMaxBytes),
		kgo.FetchMaxPartitionBytes(t.o.partMaxBytes),
		kgo.FetchMaxWait(t.o.fetchMaxWait),
	}
	kopts = append(kopts, t.o.kgoOpts...)
	return append(kopts, kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
}

// startConsumer creates the franz-go consumer at the positions reached.
func (t *Table) startConsumer() error {
	t.mu.RLock()
	consume := make(map[int32]kgo.Offset, len(t.next))
	for p, o := range t.next {
		consume[p] = kgo.NewOffset().At(o)
	}
	t.mu.RUnlock()
	cons, err := kgo.NewClient(append(t.consumerOpts(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{t.topic: consume}))...)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidOption, err)
	}
	t.cons = cons
	return nil
}

// Topic returns the table's topic.
func (t *Table) Topic() string { return t.topic }

// Partitions returns the topic's partition count as of Open.
func (t *Table) Partitions() int32 { return t.nparts }

// Get returns the latest value of key and whether the key is live.
func (t *Table) Get(key []byte) ([]byte, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.st == nil {
		return nil, false
	}
	return t.st.get(key)
}

// Len returns the number of live keys.
func (t *Table) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.st == nil {
		return 0
	}
	return t.st.len()
}

// Snapshot returns a consistent view of the state as of now. It costs O(1);
// the next write to the table pays one copy of the map.
func (t *Table) Snapshot() *Snapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &Snapshot{offsets: maps.Clone(t.next)}
	if t.st == nil {
		s.st = newState(0)
	} else {
		s.st = t.st.snapshot()
	}
	return s
}

// Offsets returns, per partition, the next offset not yet applied.
func (t *Table) Offsets() map[int32]int64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return maps.Clone(t.next)
}

// Stats returns replay and apply counters.
func (t *Table) Stats() Stats {
	t.mu.RLock()
	defer t.mu.RUnlock()
	s := Stats{
		Progress:          t.progressLocked(),
		ReplayDuration:    t.replayDur,
		StalledPartitions: append([]int32(nil), t.stalled...),
	}
	if t.st != nil {
		s.LiveKeys = t.st.len()
	}
	return s
}

// Err returns why the table stopped applying records (an apply callback's
// error), or nil while it runs or after Close. It also reports the last
// non-retriable fetch error franz-go returned (e.g. the topic was deleted).
func (t *Table) Err() error {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.err != nil {
		return t.err
	}
	return t.fetchErr
}

// Put writes value under key (see Writer.Put). The returned position becomes
// visible to Get once WaitFor(ctx, pos) returns. With ReplayOnly the write is
// applied to the local state directly.
func (t *Table) Put(ctx context.Context, key, value []byte) (Position, error) {
	if value == nil {
		value = []byte{}
	}
	return t.write(ctx, key, value)
}

// Delete writes a tombstone for key (see Put for visibility).
func (t *Table) Delete(ctx context.Context, key []byte) (Position, error) {
	return t.write(ctx, key, nil)
}

func (t *Table) write(ctx context.Context, key, value []byte) (Position, error) {
	pos, err := t.w.produce(ctx, key, value)
	if err != nil || !t.o.noTail {
		return pos, err
	}
	t.mu.Lock()
	if t.st != nil {
		t.st.apply(key, value) // copies: the caller keeps its slices
	}
	if pos.Offset >= t.next[pos.Partition] {
		t.next[pos.Partition] = pos.Offset + 1
	}
	t.mu.Unlock()
	return pos, nil
}

// WaitFor blocks until every given position has been applied (read your
// writes after Put), the context ends, or the table stops.
func (t *Table) WaitFor(ctx context.Context, positions ...Position) error {
	for {
		t.mu.RLock()
		ok := true
		for _, p := range positions {
			if t.next[p.Partition] <= p.Offset {
				ok = false
				break
			}
		}
		ch := t.changed
		t.mu.RUnlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-t.done:
			if err := t.Err(); err != nil {
				return err
			}
			return ErrClosed
		}
	}
}

// Sync waits until the table has applied everything below the high
// watermarks the broker reports now.
func (t *Table) Sync(ctx context.Context) error {
	ends, err := t.adm.ListEndOffsets(ctx, t.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return topicErr(t.topic, "list offsets", classify(t.brokers, err))
	}
	var ps []Position
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			ps = append(ps, Position{Partition: o.Partition, Offset: o.Offset - 1})
		}
	})
	return t.WaitFor(ctx, ps...)
}

// Close stops tailing and releases the connections. The state stays
// readable. Close is idempotent.
func (t *Table) Close() {
	t.closeMu.Do(func() {
		t.cancel()
		<-t.done
		if t.cons != nil {
			t.cons.Close()
		}
		t.w.Close()
	})
}

func (t *Table) progressLocked() Progress {
	p := Progress{
		Records:    t.records,
		Tombstones: t.tombs,
		Bytes:      t.bytes,
		Elapsed:    time.Since(t.start),
		Done:       t.replayed,
		Partitions: make([]PartitionProgress, 0, len(t.targets)),
	}
	for part, target := range t.targets {
		p.Partitions = append(p.Partitions, PartitionProgress{Partition: part, Start: t.starts[part], Position: t.next[part], Target: target})
	}
	sort.Slice(p.Partitions, func(i, j int) bool { return p.Partitions[i].Partition < p.Partitions[j].Partition })
	return p
}

// caughtUpLocked reports whether every partition reached its target.
func (t *Table) caughtUpLocked() bool {
	for p, target := range t.targets {
		if t.next[p] < target && !t.isStalledLocked(p) {
			return false
		}
	}
	return true
}

func (t *Table) isStalledLocked(p int32) bool {
	for _, s := range t.stalled {
		if s == p {
			return true
		}
	}
	return false
}

// run is the poll loop: it applies fetched records, tracks positions,
// reports progress and signals the end of the replay.
func (t *Table) run() {
	defer close(t.done)
	lastProgress := time.Time{}
	lastAdvance := time.Now()

	t.mu.Lock()
	finished := t.caughtUpLocked() && t.finishReplayLocked()
	t.mu.Unlock()
	t.report(true, &lastProgress)
	if finished {
		close(t.replay) // after the final progress report: Open returns now
		if t.o.noTail {
			return
		}
	}

	// The replay engine first (replay.go); the consumer takes over where
	// it stopped: at the targets, or wherever it gave up.
	if !finished {
		if err := t.fastReplay(&lastProgress); err != nil {
			t.mu.Lock()
			t.err = err
			t.mu.Unlock()
			return
		}
	}
	if t.ctx.Err() != nil || (t.replayedNow() && t.o.noTail) {
		return
	}
	if err := t.startConsumer(); err != nil {
		t.mu.Lock()
		t.err = err
		t.mu.Unlock()
		return
	}
	lastAdvance = time.Now()

	for {
		pollCtx, cancel := t.ctx, context.CancelFunc(func() {})
		replaying := !t.replayedNow()
		if replaying {
			pollCtx, cancel = context.WithTimeout(t.ctx, t.o.progressInterval)
		}
		fetches := t.cons.PollRecords(pollCtx, 0)
		cancel()
		if t.ctx.Err() != nil || fetches.IsClientClosed() {
			return
		}
		var fetchErr error
		fetches.EachError(func(_ string, p int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return
			}
			fetchErr = fmt.Errorf("partition %d: %w", p, classify(t.brokers, err))
		})
		if fetchErr != nil {
			t.mu.Lock()
			t.fetchErr = topicErr(t.topic, "fetch", fetchErr)
			t.mu.Unlock()
		}

		advanced, err := t.applyFetches(fetches)
		if err != nil {
			t.mu.Lock()
			t.err = err
			t.mu.Unlock()
			return
		}
		now := time.Now()
		if advanced {
			lastAdvance = now
		}
		if replaying {
			t.mu.Lock()
			if !advanced && now.Sub(lastAdvance) >= t.o.stallTimeout {
				for p, target := range t.targets {
					if t.next[p] < target && !t.isStalledLocked(p) {
						t.stalled = append(t.stalled, p)
					}
				}
			}
			finished := t.caughtUpLocked() && t.finishReplayLocked()
			t.mu.Unlock()
			t.report(finished, &lastProgress)
			if finished {
				close(t.replay)
				if t.o.noTail {
					return
				}
			}
		}
	}
}

func (t *Table) replayedNow() bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.replayed
}

// finishReplayLocked marks the replay complete and reports whether it just
// became so; the caller closes t.replay once the final progress is reported.
func (t *Table) finishReplayLocked() bool {
	if t.replayed {
		return false
	}
	t.replayed = true
	t.replayDur = time.Since(t.start)
	return true
}

func (t *Table) report(force bool, last *time.Time) {
	if t.o.progress == nil {
		return
	}
	now := time.Now()
	if !force && now.Sub(*last) < t.o.progressInterval {
		return
	}
	*last = now
	t.mu.RLock()
	p := t.progressLocked()
	t.mu.RUnlock()
	t.o.progress(p)
}

// applyFetches applies the records of one poll and advances positions.
func (t *Table) applyFetches(fetches kgo.Fetches) (bool, error) {
	advanced := false
	if t.o.apply != nil {
		var rec Record
		for it := fetches.RecordIter(); !it.Done(); {
			r := it.Next()
			rec = Record{Key: r.Key, Value: r.Value, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp}
			if err := t.o.apply(rec); err != nil {
				return false, topicErr(t.topic, "apply", err)
			}
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if len(fp.Records) == 0 {
			return
		}
		for _, r := range fp.Records {
			if t.st != nil {
				t.st.apply(r.Key, r.Value) // copied: the state keeps no franz-go buffer
			}
			if r.Value == nil {
				t.tombs++
			}
			t.bytes += int64(len(r.Key) + len(r.Value))
		}
		t.records += int64(len(fp.Records))
		if next := fp.Records[len(fp.Records)-1].Offset + 1; next > t.next[fp.Partition] {
			t.next[fp.Partition] = next
			advanced = true
		}
	})
	if advanced {
		close(t.changed)
		t.changed = make(chan struct{})
	}
	return advanced, nil
}

// maxSizeHint bounds the map preallocated from the replay span.
const maxSizeHint = 4 << 20

// sizeHint is how many keys to preallocate the state for: WithSizeHint, or
// the number of offsets to replay when the topic is known to be compacted
// (a compacted log holds about one record per live key), a quarter of it
// otherwise, at most maxSizeHint. Presizing saves the map's growth steps,
// which cost about as much as the inserts themselves.
func sizeHint(o options, span int64) int {
	if o.sizeHint > 0 {
		return o.sizeHint
	}
	if o.allowUncompacted {
		span /= 4
	}
	return int(min(span, maxSizeHint))
}
