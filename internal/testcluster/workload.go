package testcluster

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Workload writes keyed records with an idempotent acks=all producer and
// remembers every acknowledgement (value → partition and offset).
// Values are "<key>/<seq>" with a per-workload sequence, so each is unique
// and the order within a key is the sequence order.
type Workload struct {
	topic string
	keys  int
	id    string // prefix of every key, so several workloads share a topic
	cl    *kgo.Client

	mu       sync.Mutex
	acked    map[string]ackInfo
	ackTimes map[int32][]time.Time // by partition
	failed   int
	sent     int

	cancel context.CancelFunc
	done   chan struct{}
}

type ackInfo struct {
	key       string
	seq       int
	partition int32
	offset    int64
	sent, at  time.Time // produced, acknowledged
}

// StartWorkload starts producing to topic over keys keys, at most inflight
// records outstanding.
func StartWorkload(c *Cluster, topic string, keys, inflight int) *Workload {
	return StartWorkloadAcks(c, topic, keys, inflight, true, 0)
}

// StartWorkloadAcks is StartWorkload with acks=all (idempotent) or, when
// acksAll is false, acks=1 (not idempotent: franz-go needs acks=all for
// it), producing at most rate records a second (0: as fast as acks come).
func StartWorkloadAcks(c *Cluster, topic string, keys, inflight int, acksAll bool, rate int) *Workload {
	opts := []kgo.Opt{kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(2 * time.Millisecond), kgo.RequestTimeoutOverhead(5 * time.Second),
		kgo.ProduceRequestTimeout(10 * time.Second)}
	if !acksAll {
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	}
	cl := c.Client(opts...)
	ctx, cancel := context.WithCancel(context.Background())
	workloadSeq.Add(1)
	w := &Workload{topic: topic, keys: keys, id: fmt.Sprintf("w%d-", workloadSeq.Load()), cl: cl, acked: map[string]ackInfo{}, ackTimes: map[int32][]time.Time{}, cancel: cancel, done: make(chan struct{})}
	sem := make(chan struct{}, inflight)
	go func() {
		defer close(w.done)
		var wg sync.WaitGroup
		began := time.Now()
		for seq := 0; ctx.Err() == nil; seq++ {
			if rate > 0 {
				if d := time.Until(began.Add(time.Duration(seq) * time.Second / time.Duration(rate))); d > 0 {
					select {
					case <-time.After(d):
					case <-ctx.Done():
						continue
					}
				}
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				continue
			}
			key := fmt.Sprintf("%sk%03d", w.id, seq%keys)
			val := fmt.Sprintf("%s/%d", key, seq)
			w.mu.Lock()
			w.sent++
			w.mu.Unlock()
			wg.Add(1)
			sent := time.Now()
			cl.Produce(context.Background(), &kgo.Record{Key: []byte(key), Value: []byte(val)}, func(r *kgo.Record, err error) {
				defer wg.Done()
				defer func() { <-sem }()
				w.mu.Lock()
				defer w.mu.Unlock()
				if err != nil {
					w.failed++
					return
				}
				now := time.Now()
				w.acked[val] = ackInfo{key: key, seq: seqOf(val), partition: r.Partition, offset: r.Offset, sent: sent, at: now}
				w.ackTimes[r.Partition] = append(w.ackTimes[r.Partition], now)
			})
		}
		cl.Flush(context.Background())
		wg.Wait()
	}()
	return w
}

var workloadSeq atomic.Int64

func seqOf(val string) int {
	_, s, _ := strings.Cut(val, "/")
	n, _ := strconv.Atoi(s)
	return n
}

// Stop stops producing and waits for every outstanding record's outcome.
func (w *Workload) Stop() {
	w.cancel()
	<-w.done
}

// Acked is how many records were acknowledged so far.
func (w *Workload) Acked() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

// Failed is how many records failed.
func (w *Workload) Failed() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failed
}

// AckGapAfter is, for one partition, the time from the last
// acknowledgement at or before t to the first one after t: how long writes
// to it stalled around an event at t (the fail-over time when t is a kill).
func (w *Workload) AckGapAfter(partition int32, t time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	ts := w.ackTimes[partition]
	i := sort.Search(len(ts), func(i int) bool { return ts[i].After(t) })
	if i == len(ts) {
		return -1
	}
	if i == 0 {
		return ts[0].Sub(t)
	}
	return ts[i].Sub(ts[i-1])
}

// Report counts Jepsen's Kafka anomalies over a final read of the topic.
type Report struct {
	Acked, Failed, Read int
	Lost                int // acknowledged, never read
	Duplicated          int // one value at two offsets
	ReorderedWithinKey  int // a key's values out of produce order
	InconsistentOffsets int // an acknowledged offset holding another value (or two reads disagreeing)
	UnackedButRead      int // sent, outcome failed/unknown, present (allowed)
	Examples            []string
	// First is the first anomaly found of each class ("lost",
	// "duplicated", "reordered-within-key", "inconsistent-offset").
	First map[string]Anomaly
}

// Anomaly is one instance of an anomaly class: the value concerned and the
// partition and offset it was acknowledged or read at.
type Anomaly struct {
	Class     string
	Value     string
	Partition int32
	Offset    int64
	What      string
	At        time.Time // when it was acknowledged, or read (zero: unknown)
}

func (r *Report) note(a Anomaly) {
	if r.First == nil {
		r.First = map[string]Anomaly{}
	}
	if _, ok := r.First[a.Class]; !ok {
		r.First[a.Class] = a
	}
}

// noteAt is note with the acknowledgement time of the value, when acked.
func (w *Workload) noteAt(r *Report, a Anomaly) {
	if ack, ok := w.acked[a.Value]; ok {
		a.At = ack.at
		a.What += fmt.Sprintf(" (sent %s, acknowledged %s at %d/%d)", ack.sent.Format("15:04:05.000"), ack.at.Format("15:04:05.000"), ack.partition, ack.offset)
	}
	r.note(a)
}

func (r Report) String() string {
	return fmt.Sprintf("acked=%d failed=%d read=%d lost=%d duplicated=%d reordered-within-key=%d inconsistent-offsets=%d unacked-but-read=%d",
		r.Acked, r.Failed, r.Read, r.Lost, r.Duplicated, r.ReorderedWithinKey, r.InconsistentOffsets, r.UnackedButRead)
}

// OK reports whether every anomaly count is zero.
func (r Report) OK() bool {
	return r.Lost == 0 && r.Duplicated == 0 && r.ReorderedWithinKey == 0 && r.InconsistentOffsets == 0
}

type readRec struct {
	partition int32
	offset    int64
	value     string
}

// ReadAll reads every partition of topic from the start to its high
// watermark (as listed now), in offset order.
func ReadAll(t testing.TB, c *Cluster, topic string) []readRec {
	t.Helper()
	adm := c.Admin()
	var ends kadm.ListedOffsets
	c.WaitFor(60*time.Second, "end offsets", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		ends, err = adm.ListEndOffsets(ctx, topic)
		return err == nil && ends.Error() == nil
	})
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { want[o.Partition] = o.Offset })
	offsets := map[string]map[int32]kgo.Offset{topic: {}}
	for p := range want {
		offsets[topic][p] = kgo.NewOffset().AtStart()
	}
	cl := c.Client(kgo.ConsumePartitions(offsets), kgo.FetchMaxWait(200*time.Millisecond))
	var out []readRec
	next := map[int32]int64{}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	done := func() bool {
		for p, end := range want {
			if next[p] < end {
				return false
			}
		}
		return true
	}
	for !done() {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s timed out at %v of %v", topic, next, want)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset >= want[r.Partition] {
				return
			}
			out = append(out, readRec{r.Partition, r.Offset, string(r.Value)})
			next[r.Partition] = r.Offset + 1
		})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].partition != out[j].partition {
			return out[i].partition < out[j].partition
		}
		return out[i].offset < out[j].offset
	})
	return out
}

// Check compares what was acknowledged with what was read.
func (w *Workload) Check(read []readRec) Report {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := Report{Acked: len(w.acked), Failed: w.failed}
	example := func(format string, args ...any) {
		if len(r.Examples) < 10 {
			r.Examples = append(r.Examples, fmt.Sprintf(format, args...))
		}
	}
	at := map[int32]map[int64]string{}
	count := map[string]int{}
	lastSeq := map[string]int{}
	for _, rr := range read {
		if !strings.HasPrefix(rr.value, w.id) {
			continue // another workload's record
		}
		r.Read++
		if at[rr.partition] == nil {
			at[rr.partition] = map[int64]string{}
		}
		if prev, ok := at[rr.partition][rr.offset]; ok && prev != rr.value {
			r.InconsistentOffsets++
			example("offset %d/%d read as %q and %q", rr.partition, rr.offset, prev, rr.value)
			w.noteAt(&r, Anomaly{"inconsistent-offset", rr.value, rr.partition, rr.offset, fmt.Sprintf("offset read as %q and %q", prev, rr.value), time.Time{}})
		}
		at[rr.partition][rr.offset] = rr.value
		count[rr.value]++
		if count[rr.value] == 2 {
			r.Duplicated++
			example("duplicate %q (again at %d/%d)", rr.value, rr.partition, rr.offset)
			w.noteAt(&r, Anomaly{"duplicated", rr.value, rr.partition, rr.offset, "read a second time", time.Time{}})
		}
		key, _, _ := strings.Cut(rr.value, "/")
		seq := seqOf(rr.value)
		if last, ok := lastSeq[key]; ok && seq < last {
			r.ReorderedWithinKey++
			example("key %s: %d after %d at %d/%d", key, seq, last, rr.partition, rr.offset)
			w.noteAt(&r, Anomaly{"reordered-within-key", rr.value, rr.partition, rr.offset, fmt.Sprintf("seq %d after seq %d", seq, last), time.Time{}})
		}
		lastSeq[key] = max(lastSeq[key], seq)
		if _, ok := w.acked[rr.value]; !ok {
			r.UnackedButRead++
		}
	}
	vals := make([]string, 0, len(w.acked))
	for val := range w.acked {
		vals = append(vals, val)
	}
	// In acknowledgement order, so that "first" is the earliest.
	sort.Slice(vals, func(i, j int) bool { return w.acked[vals[i]].at.Before(w.acked[vals[j]].at) })
	for _, val := range vals {
		a := w.acked[val]
		if count[val] == 0 {
			r.Lost++
			example("lost %q (acknowledged at %d/%d)", val, a.partition, a.offset)
			w.noteAt(&r, Anomaly{"lost", val, a.partition, a.offset, "acknowledged, absent from the final read", time.Time{}})
			continue
		}
		if got, ok := at[a.partition][a.offset]; !ok || got != val {
			r.InconsistentOffsets++
			example("acknowledged %q at %d/%d, read %q there", val, a.partition, a.offset, got)
			w.noteAt(&r, Anomaly{"inconsistent-offset", val, a.partition, a.offset, fmt.Sprintf("acknowledged at this offset, final read has %q there", got), time.Time{}})
		}
	}
	return r
}
