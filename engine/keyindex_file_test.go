package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvlog/kvlog/engine/vfs"
)

// checkTableLayout fails unless every entry of t sits at or after its
// home slot with no empty slot between (what get relies on).
func checkTableLayout(t *testing.T, tab *digestTable) {
	t.Helper()
	c := len(tab.slots)
	n := 0
	for i, s := range tab.slots {
		if s.value == 0 {
			continue
		}
		n++
		for j := tab.home(s.digest); j != i; j = (j + 1) % c {
			if tab.slots[j].value == 0 {
				t.Fatalf("slot %d (digest %#x, home %d): slot %d before it is empty", i, s.digest, tab.home(s.digest), j)
			}
		}
	}
	if n != tab.len() {
		t.Fatalf("%d occupied slots, count %d", n, tab.len())
	}
}

// TestKeyIndexCheckpointLayout: tables shaped by random puts and deletes
// (digests near the top of the range make probe runs wrap around the
// end) are written as version 2 and loaded back slot for slot: the same
// size, the same entries, a valid layout, and the file re-encodes to the
// same bytes.
func TestKeyIndexCheckpointLayout(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 2))
	dir := t.TempDir()
	for round := 0; round < 30; round++ {
		var tab digestTable
		model := map[uint64]uint64{}
		ops := rng.IntN(3000)
		if round < 3 {
			ops = round // empty tables, one entry
		}
		for i := 0; i < ops; i++ {
			var d uint64
			switch rng.IntN(4) {
			case 0:
				d = math.MaxUint64 - rng.Uint64N(1<<58) // top slots: wrapping runs
			case 1:
				d = rng.Uint64N(1 << 58) // bottom slots
			default:
				d = rng.Uint64()
			}
			if len(model) > 0 && rng.IntN(4) == 0 {
				for k := range model {
					d = k
					break
				}
				tab.del(d)
				delete(model, d)
				continue
			}
			v := encodeEntry(Offset(rng.IntN(1_000_000)), rng.IntN(5) == 0)
			tab.put(d, v)
			model[d] = v
		}
		path := filepath.Join(dir, fmt.Sprintf("round-%d", round))
		slots := append([]digestSlot(nil), tab.slots...)
		if err := writeKeyIndexCheckpoint(vfs.Default, path, keyDigestID, 1_000_000, slots, tab.len()); err != nil {
			t.Fatal(err)
		}
		var got digestTable
		minOff := Offset(math.MaxInt64)
		covers, err := readKeyIndexCheckpoint(vfs.Default, path, keyDigestID, 1_000_000, &got, &minOff)
		if err != nil || covers != 1_000_000 {
			t.Fatalf("round %d (%d entries, %d slots): read: covers %d, %v", round, tab.len(), len(tab.slots), covers, err)
		}
		if len(got.slots) != len(tab.slots) || got.len() != len(model) {
			t.Fatalf("round %d: loaded %d entries in %d slots, want %d in %d", round, got.len(), len(got.slots), len(model), len(tab.slots))
		}
		checkTableLayout(t, &got)
		for d, v := range model {
			if g, ok := got.get(d); !ok || g != v {
				t.Fatalf("round %d: digest %#x: %#x %v, want %#x", round, d, g, ok, v)
			}
		}
		buf, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		c, err := ParseKeyIndexCheckpoint(buf)
		if err != nil || c.Version != keyIndexVersion || c.Slots != int64(len(tab.slots)) || len(c.Entries) != len(model) {
			t.Fatalf("round %d: parse: %d entries, %d slots, version %d, %v", round, len(c.Entries), c.Slots, c.Version, err)
		}
		if again := EncodeKeyIndexCheckpoint(c); !bytes.Equal(again, buf) {
			t.Fatalf("round %d: re-encoding differs", round)
		}
	}
}

// rawKeyIndexV2 builds a version-2 checkpoint with the entries (digest,
// value) in the given order, its CRC right.
func rawKeyIndexV2(covers Offset, slots int64, entries ...[2]uint64) []byte {
	buf := keyIndexHeader(keyDigestID, covers, int64(len(entries)), slots)
	for _, e := range entries {
		buf = binary.BigEndian.AppendUint64(buf, e[0])
		buf = binary.BigEndian.AppendUint64(buf, e[1])
	}
	return binary.BigEndian.AppendUint32(buf, crc32.Checksum(buf, castagnoliTable))
}

// TestKeyIndexCheckpointLayoutCorrupt: version-2 files whose CRC is right
// but whose layout is not what a table writes are rejected by the parser
// and by the load, each with its reason (FORMAT.md §8's table).
func TestKeyIndexCheckpointLayoutCorrupt(t *testing.T) {
	const c = 64
	at := func(slot uint64) uint64 { return slot << 58 } // home slot of a 64-slot table
	v := func(o Offset) uint64 { return encodeEntry(o, false) }
	cases := []struct {
		name string
		buf  []byte
		want string
	}{
		{"valid", rawKeyIndexV2(10, c, [2]uint64{at(3), v(1)}, [2]uint64{at(3) + 1, v(2)}, [2]uint64{at(5), v(3)}), ""},
		{"digest twice", rawKeyIndexV2(10, c, [2]uint64{at(3), v(1)}, [2]uint64{at(3), v(2)}), "digest 0xc00000000000000 twice"},
		{"home order", rawKeyIndexV2(10, c, [2]uint64{at(3), v(1)}, [2]uint64{at(5), v(2)}, [2]uint64{at(4), v(3)}), "not in table order"},
		{"digest order", rawKeyIndexV2(10, c, [2]uint64{at(3) + 1, v(1)}, [2]uint64{at(3), v(2)}), "not in table order"},
		{"run before the first", rawKeyIndexV2(10, c, [2]uint64{at(40), v(1)}, [2]uint64{at(2) + 7, v(2)}), "starts a run before the first entry's slot"},
		{"wrapping run", rawKeyIndexV2(10, 4, [2]uint64{math.MaxUint64, v(1)}, [2]uint64{0, v(2)}), ""},
		{"wrapping run not first", rawKeyIndexV2(10, 4, [2]uint64{0, v(1)}, [2]uint64{math.MaxUint64, v(2)}), "does not fit in the table of 4 slots"},
		{"full run", rawKeyIndexV2(10, 3, [2]uint64{0, v(1)}, [2]uint64{1, v(2)}), ""},
		{"no empty slot", rawKeyIndexV2(10, 2, [2]uint64{0, v(1)}, [2]uint64{1, v(2)}), "a table of 2 slots for 2 entries"},
		{"table too large", rawKeyIndexV2(10, 1000, [2]uint64{0, v(1)}), "a table of 1000 slots for 1 entries"},
		{"offset beyond covers", rawKeyIndexV2(2, c, [2]uint64{at(3), v(2)}), "entry 0: offset 2 not below the covered offset 2"},
	}
	dir := t.TempDir()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, perr := ParseKeyIndexCheckpoint(tc.buf)
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			if err := os.WriteFile(path, tc.buf, 0o644); err != nil {
				t.Fatal(err)
			}
			var tab digestTable
			minOff := Offset(math.MaxInt64)
			_, lerr := readKeyIndexCheckpoint(vfs.Default, path, keyDigestID, 100, &tab, &minOff)
			for _, err := range []error{perr, lerr} {
				switch {
				case tc.want == "" && err != nil:
					t.Fatalf("valid file rejected: %v", err)
				case tc.want != "" && (!errors.Is(err, ErrKeyIndexCorrupt) || !strings.Contains(err.Error(), tc.want)):
					t.Fatalf("got %v, want ErrKeyIndexCorrupt: %s", err, tc.want)
				}
			}
			if tc.want == "" {
				checkTableLayout(t, &tab)
			}
		})
	}
}

// TestKeyIndexCheckpointV1StillRead: a version-1 checkpoint (written by
// an older kvlog) is loaded, not rebuilt, and the next checkpoint is
// written as version 2; a version-1 file naming a digest twice is still
// rebuilt from the log.
func TestKeyIndexCheckpointV1StillRead(t *testing.T) {
	e := compactEnv(t)
	l := e.open(true, -1)
	for i := 0; i < 30; i++ {
		put(t, l, fmt.Sprintf("k%d", i%11), fmt.Sprint(i))
	}
	l.SetHighWatermark(l.LogEndOffset())
	expectLookup(t, l, "k3", "25")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	path := KeyIndexFileName(e.dir)
	buf, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseKeyIndexCheckpoint(buf)
	if err != nil || c.Version != keyIndexVersion || len(c.Entries) != 11 {
		t.Fatalf("checkpoint version %d, %d entries, %v", c.Version, len(c.Entries), err)
	}
	c.Version = keyIndexV1
	// Reversed: version 1 has no order.
	for i, j := 0, len(c.Entries)-1; i < j; i, j = i+1, j-1 {
		c.Entries[i], c.Entries[j] = c.Entries[j], c.Entries[i]
	}
	v1 := EncodeKeyIndexCheckpoint(c)
	if again, err := ParseKeyIndexCheckpoint(v1); err != nil || again.Version != keyIndexV1 || len(again.Entries) != 11 {
		t.Fatalf("version 1: %+v, %v", again, err)
	}
	if err := os.WriteFile(path, v1, 0o644); err != nil {
		t.Fatal(err)
	}
	l = e.open(true, 30)
	put(t, l, "k3", "tail")
	l.SetHighWatermark(l.LogEndOffset())
	expectLookup(t, l, "k3", "tail")
	expectLookup(t, l, "k4", "26")
	if s := l.KeyIndexStats(); s.Replayed != 1 || s.Entries != 11 {
		t.Fatalf("after a version-1 checkpoint: %+v, want 1 record replayed", s)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if buf, err = os.ReadFile(path); err != nil {
		t.Fatal(err)
	}
	if c, err := ParseKeyIndexCheckpoint(buf); err != nil || c.Version != keyIndexVersion || c.Covers != 31 {
		t.Fatalf("checkpoint after the restart: version %d covers %d, %v", c.Version, c.Covers, err)
	}
}

// TestKeyIndexCheckpointFormatExample: the example of FORMAT.md §8.
func TestKeyIndexCheckpointFormatExample(t *testing.T) {
	buf := EncodeKeyIndexCheckpoint(KeyIndexCheckpoint{DigestID: 1, Covers: 10, Entries: []KeyIndexEntry{{Digest: 5, Offset: 3}}})
	const want = "4b564b49" + "0002" + "0001" + "000000000000000a" + "0000000000000001" + "0000000000000040" + "0000000000000005" + "0000000000000004"
	if got := fmt.Sprintf("%x", buf[:len(buf)-keyIndexTrailer]); got != want {
		t.Fatalf("encoded %s, FORMAT.md says %s", got, want)
	}
}
