package engine

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/kvlog/kvlog/engine/record"
)

// model is the naive in-memory twin of a Log: every record in order, plus
// batch boundaries for truncation.
type model struct {
	recs     []readRecord
	batches  []Offset // base offset of each batch still present
	logStart Offset
	leo      Offset
}

func (m *model) append(base Offset, recs []testRecord) {
	m.batches = append(m.batches, base)
	for i, r := range recs {
		m.recs = append(m.recs, readRecord{offset: base + Offset(i), key: r.key, value: r.value, ts: r.ts})
	}
	m.leo = base + Offset(len(recs))
}

func (m *model) truncate(to Offset) {
	i := 0
	for i < len(m.recs) && m.recs[i].offset < to {
		i++
	}
	m.recs = m.recs[:i]
	j := 0
	for j < len(m.batches) && m.batches[j] < to {
		j++
	}
	m.batches = m.batches[:j]
	m.leo = to
}

func (m *model) from(o Offset) []readRecord {
	for i, r := range m.recs {
		if r.offset >= o {
			return m.recs[i:]
		}
	}
	return nil
}

func randomRecords(rng *rand.Rand, ts int64) []testRecord {
	n := 1 + rng.IntN(20)
	out := make([]testRecord, n)
	for i := range out {
		var key, value []byte
		if rng.IntN(10) != 0 {
			key = []byte(fmt.Sprintf("key-%d", rng.IntN(50)))
		}
		if rng.IntN(8) != 0 {
			value = bytes.Repeat([]byte{byte('a' + rng.IntN(26))}, rng.IntN(300))
		}
		out[i] = testRecord{key: key, value: value, ts: ts + int64(i)}
	}
	return out
}

// TestLogMatchesModel drives a Log and the model with the same random
// operations (appends in every codec, reads at random offsets and byte
// limits, rolls, truncations, retention, clean and unclean reopens) and
// compares every read with the model.
func TestLogMatchesModel(t *testing.T) {
	for seed := uint64(1); seed <= 6; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, seed*7))
			e := newTestEnv(t)
			e.cfg.SegmentBytes = int64(8192 + rng.IntN(16384))
			e.cfg.IndexIntervalBytes = 64 + rng.IntN(1024)
			l := e.open(true, -1)
			defer func() { l.Close() }()
			m := &model{}
			lastOp := -1
			for step := 0; step < 600; step++ {
				e.clk.Advance(1000)
				op := rng.IntN(100)
				lastOp = op
				switch {
				case op < 55:
					recs := randomRecords(rng, e.clk.Now().UnixMilli())
					res, err := l.Append(makeBatch(t, record.Codec(rng.IntN(5)), recs), 1)
					if err != nil {
						t.Fatalf("step %d append: %v", step, err)
					}
					if res.BaseOffset != m.leo {
						t.Fatalf("step %d: base offset %d, model %d", step, res.BaseOffset, m.leo)
					}
					m.append(res.BaseOffset, recs)
				case op < 80:
					if m.leo == m.logStart {
						continue
					}
					off := m.logStart + Offset(rng.Int64N(int64(m.leo-m.logStart)))
					checkRead(t, l, m, off, 1+rng.IntN(4096))
				case op < 84:
					t.Logf("step %d roll", step)
					if err := l.Roll(); err != nil {
						t.Fatal(err)
					}
				case op < 88:
					if len(m.batches) < 2 {
						continue
					}
					to := m.batches[len(m.batches)-1-rng.IntN(min(len(m.batches)-1, 4))]
					if to <= m.logStart {
						continue
					}
					t.Logf("step %d truncate to %d (leo %d)", step, to, m.leo)
					if err := l.TruncateTo(to); err != nil {
						t.Fatal(err)
					}
					m.truncate(to)
				case op < 91:
					cfg := l.Config()
					cfg.RetentionBytes = l.Size() / 2
					l.SetConfig(cfg)
					l.SetHighWatermark(l.LogEndOffset())
					l.EnforceRetention()
					cfg.RetentionBytes = -1
					l.SetConfig(cfg)
					m.logStart = l.LogStartOffset()
					for len(m.batches) > 0 && m.batches[0] < m.logStart {
						m.batches = m.batches[1:]
					}
				case op < 96:
					clean := rng.IntN(2) == 0
					if err := l.Close(); err != nil {
						t.Fatal(err)
					}
					rp := l.RecoveryPoint()
					if !clean {
						rp = Offset(rng.Int64N(int64(rp) + 1))
					}
					t.Logf("step %d reopen clean=%v rp=%d leo=%d", step, clean, rp, m.leo)
					l = openAt(t, e, clean, rp, m.logStart)
				default:
					checkRead(t, l, m, m.logStart, 1<<20)
				}
				if l.LogEndOffset() != m.leo || l.LogStartOffset() != m.logStart {
					t.Fatalf("op %d step %d: log [%d,%d) model [%d,%d)", lastOp, step, l.LogStartOffset(), l.LogEndOffset(), m.logStart, m.leo)
				}
			}
			// Final full scan.
			got := readAll(t, l, m.logStart)
			want := m.from(m.logStart)
			if len(got) != len(want) {
				t.Fatalf("final: %d records, model %d", len(got), len(want))
			}
		})
	}
}

func openAt(t *testing.T, e *testEnv, clean bool, rp, logStart Offset) *Log {
	t.Helper()
	l, err := OpenLog(e.dir, TopicPartition{Topic: "topic", Partition: 0}, e.cfg, LogOptions{
		FS: e.fs, Clock: e.clk, Logger: quietLogger, CleanShutdown: clean, RecoveryPoint: rp, LogStartOffset: logStart,
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// checkRead reads at off with maxBytes and compares with the model: whole
// batches, starting at the batch holding off, within maxBytes unless a single
// batch, and records equal to the model's from off on.
func checkRead(t *testing.T, l *Log, m *model, off Offset, maxBytes int) {
	t.Helper()
	r, err := l.Read(off, maxBytes, l.LogEndOffset())
	if err != nil {
		t.Fatalf("read %d: %v", off, err)
	}
	data, err := r.Bytes()
	r.Release()
	if err != nil {
		t.Fatal(err)
	}
	if len(data) == 0 {
		t.Fatalf("read %d (log end %d): nothing", off, l.LogEndOffset())
	}
	want := m.from(off)
	var dec record.Decoder
	nb, i := 0, 0
	for buf := data; len(buf) > 0; nb++ {
		b, rest, err := record.ReadBatch(buf)
		if err != nil {
			t.Fatalf("read %d: batch %d: %v", off, nb, err)
		}
		if err := b.VerifyCRC(); err != nil {
			t.Fatalf("read %d: %v", off, err)
		}
		if nb == 0 && (Offset(b.BaseOffset()) > off || Offset(b.LastOffset()) < off) {
			t.Fatalf("read %d: first batch [%d,%d] does not hold it", off, b.BaseOffset(), b.LastOffset())
		}
		err = dec.Records(b, func(r *record.Record) error {
			o := Offset(b.BaseOffset() + int64(r.OffsetDelta))
			if o < off {
				return nil
			}
			if i >= len(want) {
				return fmt.Errorf("offset %d beyond model", o)
			}
			w := want[i]
			i++
			if w.offset != o || !bytes.Equal(w.key, r.Key) || (w.key == nil) != (r.Key == nil) ||
				!bytes.Equal(w.value, r.Value) || (w.value == nil) != (r.Value == nil) || w.ts != b.BaseTimestamp()+r.TimestampDelta {
				return fmt.Errorf("offset %d differs from model %+v", o, w)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("read %d: %v", off, err)
		}
		buf = rest
	}
	if nb > 1 && len(data) > maxBytes {
		t.Fatalf("read %d: %d bytes in %d batches exceeds max %d", off, len(data), nb, maxBytes)
	}
}
