package index

import (
	"bytes"
	"math"
	"testing"
)

// TestTimeGoldenBytes pins the on-disk layout against bytes written by hand
// from Kafka's format: 8-byte big-endian timestamp, 4-byte big-endian
// relative offset, preallocated with zeros until trimmed.
func TestTimeGoldenBytes(t *testing.T) {
	path := tmpFile(t, "00000000000000000100.timeindex")
	x := mustOpenTime(t, path, 100, 60+11, true) // rounded down to 60: 5 slots
	if got := fileSize(t, path); got != 60 {
		t.Fatalf("preallocated size %d, want 60", got)
	}
	must(t, x.MaybeAppend(1_700_000_000_000, 105, false))
	must(t, x.MaybeAppend(0x0102030405060708, 100+math.MaxInt32, false))
	want := []byte{
		0x00, 0x00, 0x01, 0x8B, 0xCF, 0xE5, 0x68, 0x00, 0x00, 0x00, 0x00, 0x05, // ts 1700000000000, rel 5
		0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x7F, 0xFF, 0xFF, 0xFF, // ts 0x0102..08, rel MaxInt32
	}
	must(t, x.Flush())
	pre := readFile(t, path)
	if len(pre) != 60 || !bytes.Equal(pre[:24], want) || !allZero(pre[24:]) {
		t.Fatalf("preallocated file:\n% x\nwant\n% x followed by zeros", pre, want)
	}
	must(t, x.Close())
	if got := readFile(t, path); !bytes.Equal(got, want) {
		t.Fatalf("trimmed file:\n% x\nwant\n% x", got, want)
	}
	r := mustOpenTime(t, path, 100, 0, false)
	if ts, off := r.Entry(1); r.Entries() != 2 || ts != 0x0102030405060708 || off != 100+math.MaxInt32 {
		t.Fatalf("entries %d entry 1 = (%d, %d)", r.Entries(), ts, off)
	}
	must(t, r.Verify())
}

func TestTimeMaybeAppend(t *testing.T) {
	path := tmpFile(t, "a.timeindex")
	x := mustOpenTime(t, path, 1000, 12*6, true) // 6 slots, IsFull at 5
	if ts, off := x.LastEntry(); ts != NoTimestamp || off != 1000 {
		t.Fatalf("empty last entry (%d, %d)", ts, off)
	}
	// Timestamps not above NoTimestamp are never appended to an empty index.
	must(t, x.MaybeAppend(-1, 1000, false))
	must(t, x.MaybeAppend(-50, 1001, false))
	if x.Entries() != 0 {
		t.Fatalf("entries %d", x.Entries())
	}
	wantErr(t, x.MaybeAppend(5, 999, false), ErrOffsetOverflow, path)
	must(t, x.MaybeAppend(0, 1000, false)) // (0, 0) is a valid first entry
	must(t, x.MaybeAppend(100, 1005, false))
	must(t, x.MaybeAppend(100, 1005, false)) // same entry again (roll/close): nothing
	must(t, x.MaybeAppend(100, 1010, false)) // same timestamp, later offset: nothing
	if x.Entries() != 2 {
		t.Fatalf("entries %d, want 2", x.Entries())
	}
	wantErr(t, x.MaybeAppend(200, 1004, false), ErrInvalidOffset, path)
	wantErr(t, x.MaybeAppend(99, 1006, false), ErrInvalidTimestamp, path)
	must(t, x.MaybeAppend(150, 1005, false)) // larger timestamp, same offset: appended
	wantErr(t, x.MaybeAppend(151, 1000+math.MaxInt32+1, false), ErrOffsetOverflow, path)
	must(t, x.MaybeAppend(160, 1020, false))
	must(t, x.MaybeAppend(170, 1030, false))
	if x.Entries() != 5 || !x.IsFull() || x.MaxEntries() != 6 {
		t.Fatalf("entries %d full %v", x.Entries(), x.IsFull())
	}
	wantErr(t, x.MaybeAppend(180, 1040, false), ErrIndexFull, path)
	// Full is checked first, even for an append that would be a no-op.
	wantErr(t, x.MaybeAppend(170, 1030, false), ErrIndexFull, path)
	must(t, x.MaybeAppend(180, 1040, true)) // the reserved slot
	wantErr(t, x.MaybeAppend(190, 1050, true), ErrIndexFull, path)
	if ts, off := x.LastEntry(); ts != 180 || off != 1040 || x.LastOffset() != 1040 {
		t.Fatalf("last entry (%d, %d)", ts, off)
	}
	must(t, x.Verify())
	for _, c := range []struct{ target, ts, off int64 }{
		{-1, -1, 1000}, {0, 0, 1000}, {99, 0, 1000}, {100, 100, 1005}, {149, 100, 1005},
		{150, 150, 1005}, {175, 170, 1030}, {math.MaxInt64, 180, 1040}, {math.MinInt64, -1, 1000},
	} {
		if ts, off := x.Lookup(c.target); ts != c.ts || off != c.off {
			t.Fatalf("Lookup(%d) = (%d, %d), want (%d, %d)", c.target, ts, off, c.ts, c.off)
		}
	}
}

func TestTimeTruncateResetTrimReopen(t *testing.T) {
	path := tmpFile(t, "a.timeindex")
	x := mustOpenTime(t, path, 0, 1200, true)
	// Offsets repeat: 0,0,10,10,20,20,...
	for i := range 20 {
		must(t, x.MaybeAppend(int64(i+1)*100, int64(i/2)*10, false))
	}
	x.TruncateTo(1000)
	if x.Entries() != 20 {
		t.Fatalf("entries %d", x.Entries())
	}
	x.TruncateTo(50) // drops both entries with offset 50 and all later ones
	if x.Entries() != 10 || x.LastOffset() != 40 {
		t.Fatalf("entries %d last %d", x.Entries(), x.LastOffset())
	}
	x.TruncateTo(35)
	if x.Entries() != 8 {
		t.Fatalf("entries %d", x.Entries())
	}
	if ts, off := x.LastEntry(); ts != 800 || off != 30 {
		t.Fatalf("last entry (%d, %d)", ts, off)
	}
	must(t, x.MaybeAppend(900, 36, false))
	must(t, x.TrimToValidSize())
	if fileSize(t, path) != 9*12 || !x.IsFull() {
		t.Fatalf("size %d", fileSize(t, path))
	}
	wantErr(t, x.MaybeAppend(1000, 40, true), ErrIndexFull, path)
	must(t, x.Resize(1200))
	must(t, x.MaybeAppend(1000, 40, false))
	x.crash(t)

	y := mustOpenTime(t, path, 0, 1200, true)
	if y.Entries() != 10 || y.MaxEntries() != 100 {
		t.Fatalf("reopen: entries %d max %d", y.Entries(), y.MaxEntries())
	}
	must(t, y.Verify())
	y.Reset()
	if y.Entries() != 0 || !allZero(y.mapping()) {
		t.Fatal("reset")
	}
	must(t, y.Close())
	if fileSize(t, path) != 0 {
		t.Fatalf("closed empty index has size %d", fileSize(t, path))
	}
}

func TestTimeCorruptFiles(t *testing.T) {
	ent := func(ts int64, rel uint32) []byte {
		b := make([]byte, 12)
		for i := range 8 {
			b[i] = byte(uint64(ts) >> (56 - 8*i))
		}
		b[8], b[9], b[10], b[11] = byte(rel>>24), byte(rel>>16), byte(rel>>8), byte(rel)
		return b
	}
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	cases := []struct {
		name    string
		content []byte
		entries int
		corrupt bool
	}{
		{"empty", nil, 0, false},
		{"short", []byte{1, 2, 3, 4, 5, 6, 7, 8}, 0, true},
		{"size 13", cat(ent(5, 1), []byte{7}), 1, true},
		{"size 16 after offset-index confusion", make([]byte, 16), 1, true},
		{"last timestamp below first", cat(ent(50, 1), ent(40, 2)), 2, true},
		{"negative relative offset", cat(ent(50, 1), ent(60, 0x80000000)), 2, true},
		{"valid", cat(ent(50, 1), ent(60, 2)), 2, false},
		{"unclean tail", cat(ent(50, 1), ent(60, 2), make([]byte, 120)), 2, false},
	}
	for _, c := range cases {
		for _, writable := range []bool{false, true} {
			t.Run(c.name, func(t *testing.T) {
				path := tmpFile(t, "c.timeindex")
				writeFile(t, path, c.content)
				x := mustOpenTime(t, path, 10, 120, writable)
				if x.Entries() != c.entries {
					t.Fatalf("entries %d, want %d", x.Entries(), c.entries)
				}
				err := x.SanityCheck()
				if c.corrupt {
					wantErr(t, err, ErrCorruptIndex, path)
				} else if err != nil {
					t.Fatalf("SanityCheck: %v", err)
				}
				for _, target := range []int64{math.MinInt64, -1, 0, 50, 55, 60, math.MaxInt64} {
					x.Lookup(target)
				}
				for i := -1; i <= x.Entries(); i++ {
					x.Entry(i)
				}
				x.LastEntry()
				_ = x.Verify()
				x.TruncateTo(11)
				if writable {
					x.Reset()
					must(t, x.SanityCheck())
					must(t, x.MaybeAppend(7, 12, false))
					must(t, x.Close())
					if got := readFile(t, path); !bytes.Equal(got, ent(7, 2)) {
						t.Fatalf("rebuilt file % x", got)
					}
				}
			})
		}
	}
}
