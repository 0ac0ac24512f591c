package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/kvlog/kvlog/engine/record"
)

// TestReadHeaderCorruptionTable is the named corruption table of the read
// path: each case damages one batch's bytes that the batch CRC does not
// cover (base offset, length) in a segment that is not rescanned (clean
// restart), in an inactive segment (read through its mapping) and in the
// active one (read with pread). Reading every offset with small and large
// fetch sizes must either return batches byte-identical to what was
// written, the first holding the offset asked for, or fail with a
// *CorruptBatchError naming the segment and position (ErrCorruptRecord:
// CORRUPT_MESSAGE); reads of the damaged batch's offsets must fail.
func TestReadHeaderCorruptionTable(t *testing.T) {
	type batchAt struct {
		pos, size  int64
		base, last int64
	}
	setBase := func(f []byte, b batchAt, v int64) { binary.BigEndian.PutUint64(f[b.pos:], uint64(v)) }
	setLen := func(f []byte, b batchAt, v int32) { binary.BigEndian.PutUint32(f[b.pos+8:], uint32(v)) }
	cases := []struct {
		name string
		// poke damages batch k (of batches bs in file f, segment base seg).
		poke func(f []byte, bs []batchAt, k int, seg int64)
	}{
		{"base_offset_backwards", func(f []byte, bs []batchAt, k int, seg int64) { setBase(f, bs[k], bs[k-1].base) }},
		{"base_offset_back_one", func(f []byte, bs []batchAt, k int, seg int64) { setBase(f, bs[k], bs[k].base-1) }},
		{"base_offset_below_segment", func(f []byte, bs []batchAt, k int, seg int64) { setBase(f, bs[k], seg-5) }},
		{"base_offset_forward_jump", func(f []byte, bs []batchAt, k int, seg int64) { setBase(f, bs[k], bs[k].base+1000) }},
		{"base_offset_forward_one", func(f []byte, bs []batchAt, k int, seg int64) { setBase(f, bs[k], bs[k].base+1) }},
		{"base_offset_negative", func(f []byte, bs []batchAt, k int, seg int64) { setBase(f, bs[k], -1<<40) }},
		{"base_offset_huge", func(f []byte, bs []batchAt, k int, seg int64) { setBase(f, bs[k], 1<<62) }},
		{"last_batch_forward_jump", func(f []byte, bs []batchAt, k int, seg int64) {
			setBase(f, bs[len(bs)-1], bs[len(bs)-1].base+3)
		}},
		{"length_past_end", func(f []byte, bs []batchAt, k int, seg int64) { setLen(f, bs[k], 1<<30) }},
		{"length_negative", func(f []byte, bs []batchAt, k int, seg int64) { setLen(f, bs[k], -7) }},
		{"length_too_small", func(f []byte, bs []batchAt, k int, seg int64) { setLen(f, bs[k], 10) }},
		{"length_shorter", func(f []byte, bs []batchAt, k int, seg int64) { setLen(f, bs[k], int32(bs[k].size-12-20)) }},
		{"length_longer", func(f []byte, bs []batchAt, k int, seg int64) { setLen(f, bs[k], int32(bs[k].size-12+20)) }},
		{"magic", func(f []byte, bs []batchAt, k int, seg int64) { f[bs[k].pos+record.OffMagic] = 1 }},
	}
	for _, where := range []string{"inactive", "active"} {
		for _, tc := range cases {
			t.Run(where+"/"+tc.name, func(t *testing.T) {
				if where == "active" && tc.name == "last_batch_forward_jump" {
					// The active segment's last batch sets the log end
					// when the log is opened; opening, not reading,
					// must catch that one.
					t.Skip("the log end offset is taken from this batch at open")
				}
				e := newTestEnv(t)
				e.cfg.SegmentBytes = 1500
				e.cfg.IndexIntervalBytes = 100
				l := e.open(true, -1)
				fill(t, e, l, 30) // three-record batches
				segs := l.Segments()
				if len(segs) < 3 {
					t.Fatalf("want several segments, have %d", len(segs))
				}
				target := segs[1]
				if where == "active" {
					target = segs[len(segs)-1]
				}
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				orig, err := os.ReadFile(target.Path)
				if err != nil {
					t.Fatal(err)
				}
				var bs []batchAt
				for p := int64(0); p < int64(len(orig)); {
					b, _, err := record.ReadBatch(orig[p:])
					if err != nil {
						t.Fatal(err)
					}
					bs = append(bs, batchAt{p, int64(len(b)), b.BaseOffset(), b.LastOffset()})
					p += int64(len(b))
				}
				if len(bs) < 3 {
					t.Fatalf("segment %d holds %d batches, want 3 or more", target.BaseOffset, len(bs))
				}
				k := len(bs) / 2
				damaged := append([]byte(nil), orig...)
				tc.poke(damaged, bs, k, int64(target.BaseOffset))
				if err := os.WriteFile(target.Path, damaged, 0o644); err != nil {
					t.Fatal(err)
				}

				// Clean: nothing is rescanned. Every refused read logs an
				// error; keep them out of the test output.
				l, err = OpenLog(e.dir, TopicPartition{Topic: "topic", Partition: 0}, e.cfg, LogOptions{
					FS: e.fs, Clock: e.clk, Logger: slog.New(slog.DiscardHandler), CleanShutdown: true, RecoveryPoint: -1, LogStartOffset: -1,
				})
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				failedInDamage := false
				for o := Offset(0); o < l.LogEndOffset(); o++ {
					for _, maxBytes := range []int{1, 1 << 20} {
						r, err := l.Read(o, maxBytes, l.LogEndOffset())
						if err != nil {
							var cb *CorruptBatchError
							if !errors.As(err, &cb) || !errors.Is(err, ErrCorruptRecord) || cb.Segment != target.Path || !strings.Contains(err.Error(), "position") {
								t.Fatalf("read %d: %v, want a *CorruptBatchError naming %s", o, err, target.Path)
							}
							if o >= target.BaseOffset && o < target.NextOffset {
								failedInDamage = true
							}
							continue
						}
						if len(r.Ranges) == 0 {
							t.Fatalf("read %d: no ranges", o)
						}
						data, err := r.Bytes()
						r.Release()
						if err != nil {
							t.Fatal(err)
						}
						// What was served must be batches exactly as written
						// (a read may go on into the following segments: one
						// range each).
						at := int64(0)
						for _, fr := range r.Ranges {
							var src []byte
							if fr.File.Name() == target.Path {
								src = orig
							} else if src, err = os.ReadFile(fr.File.Name()); err != nil {
								t.Fatal(err)
							}
							if fr.Position+fr.Length > int64(len(src)) || !bytes.Equal(data[at:at+fr.Length], src[fr.Position:fr.Position+fr.Length]) {
								t.Fatalf("read %d (max %d): served bytes [%d,+%d) of %s that differ from what was written", o, maxBytes, fr.Position, fr.Length, fr.File.Name())
							}
							at += fr.Length
						}
						b, _, err := record.ReadBatch(data)
						if err != nil || Offset(b.BaseOffset()) > o || Offset(b.LastOffset()) < o {
							t.Fatalf("read %d: first batch served is [%d,%d] (%v)", o, b.BaseOffset(), b.LastOffset(), err)
						}
					}
				}
				if !failedInDamage {
					t.Fatalf("no read of segment %d reported the damage", target.BaseOffset)
				}
			})
		}
	}
}
