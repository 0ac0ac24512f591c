package checkpoint

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/kvlog/kvlog/engine/vfs"
)

type epochOp struct {
	kind string // assign, end, start, clear
	ep   int32
	off  int64
}

func assign(ep int32, off int64) epochOp { return epochOp{"assign", ep, off} }
func truncEnd(off int64) epochOp         { return epochOp{kind: "end", off: off} }
func truncStart(off int64) epochOp       { return epochOp{kind: "start", off: off} }
func clearOp() epochOp                   { return epochOp{kind: "clear"} }

func (o epochOp) apply(c *EpochCache) error {
	switch o.kind {
	case "assign":
		return c.Assign(o.ep, o.off)
	case "end":
		return c.TruncateFromEnd(o.off)
	case "start":
		return c.TruncateFromStart(o.off)
	case "clear":
		return c.Clear()
	}
	panic(o.kind)
}

type endOffsetCase struct {
	req       int32
	leo       int64
	wantEpoch int32
	wantEnd   int64
}

type epochForCase struct {
	off  int64
	want int32
	ok   bool
}

func E(ep int32, off int64) EpochEntry { return EpochEntry{Epoch: ep, StartOffset: off} }

const U = UndefinedEpoch

func openCache(t *testing.T, fsys vfs.FS, path string) *EpochCache {
	t.Helper()
	c, err := OpenEpochCache(fsys, path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestEpochCacheKafkaCases mirrors Kafka's LeaderEpochFileCacheTest: each
// case applies operations, then checks the entries, EndOffsetFor and
// EpochForOffset, that the file holds exactly the entries, and that a
// reopened cache sees them.
func TestEpochCacheKafkaCases(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ops      []epochOp
		want     []EpochEntry
		end      []endOffsetCase
		epochFor []epochForCase
	}{
		{
			name: "shouldAddEpochAndMessageOffsetToCache",
			ops:  []epochOp{assign(2, 10)},
			want: []EpochEntry{E(2, 10)},
			end:  []endOffsetCase{{2, 11, 2, 11}},
		},
		{
			name: "shouldReturnLogEndOffsetIfLatestEpochRequested",
			ops:  []epochOp{assign(2, 11), assign(2, 12)},
			want: []EpochEntry{E(2, 11)},
			end:  []endOffsetCase{{2, 14, 2, 14}},
		},
		{
			name: "shouldReturnUndefinedOffsetIfUndefinedEpochRequested",
			ops:  []epochOp{assign(2, 11), assign(3, 12)},
			want: []EpochEntry{E(2, 11), E(3, 12)},
			end:  []endOffsetCase{{U, 0, U, -1}},
		},
		{
			name: "shouldNotOverwriteLogEndOffsetForALeaderEpochOnceItHasBeenAssigned",
			ops:  []epochOp{assign(2, 9), assign(2, 10)},
			want: []EpochEntry{E(2, 9)},
		},
		{
			name: "shouldEnforceMonotonicallyIncreasingStartOffsets",
			ops:  []epochOp{assign(2, 9), assign(3, 9)},
			want: []EpochEntry{E(3, 9)},
		},
		{
			name: "sameEpochEarlierOffsetMovesStartBack",
			ops:  []epochOp{assign(2, 9), assign(2, 5)},
			want: []EpochEntry{E(2, 5)},
		},
		{
			name: "shouldReturnUnsupportedIfNoEpochRecorded",
			end:  []endOffsetCase{{0, 0, U, -1}, {U, 73, U, -1}, {7, 0, U, -1}},
		},
		{
			name: "shouldReturnFirstEpochIfRequestedEpochLessThanFirstEpoch",
			ops:  []epochOp{assign(5, 11), assign(6, 12), assign(7, 13)},
			want: []EpochEntry{E(5, 11), E(6, 12), E(7, 13)},
			end:  []endOffsetCase{{4, 0, 4, 11}},
		},
		{
			name: "shouldTruncateIfMatchingEpochButEarlierStartingOffset",
			ops:  []epochOp{assign(5, 11), assign(6, 12), assign(7, 13), assign(7, 12)},
			want: []EpochEntry{E(5, 11), E(7, 12)},
			end:  []endOffsetCase{{5, 0, 5, 12}, {6, 0, 5, 12}},
		},
		{
			name: "shouldGetFirstOffsetOfSubsequentEpochWhenOffsetRequestedForPreviousEpoch",
			ops:  []epochOp{assign(1, 11), assign(1, 12), assign(2, 13), assign(2, 14), assign(3, 15), assign(3, 16)},
			want: []EpochEntry{E(1, 11), E(2, 13), E(3, 15)},
			end:  []endOffsetCase{{2, 17, 2, 15}},
		},
		{
			name: "shouldReturnNextAvailableEpochIfThereIsNoExactEpochForTheOneRequested",
			ops:  []epochOp{assign(0, 10), assign(2, 13), assign(4, 17)},
			want: []EpochEntry{E(0, 10), E(2, 13), E(4, 17)},
			end:  []endOffsetCase{{1, 0, 0, 13}, {2, 0, 2, 17}, {3, 0, 2, 17}},
		},
		{
			name: "shouldReturnInvalidOffsetIfEpochIsRequestedWhichIsNotCurrentlyTracked",
			ops:  []epochOp{assign(2, 100)},
			want: []EpochEntry{E(2, 100)},
			end:  []endOffsetCase{{3, 100, U, -1}},
		},
		{
			name: "shouldEnforceMonotonicallyIncreasingEpochs",
			ops:  []epochOp{assign(1, 5), assign(2, 6), assign(1, 7)},
			want: []EpochEntry{E(1, 7)},
			end:  []endOffsetCase{{1, 8, 1, 8}, {2, 8, U, -1}},
		},
		{
			name: "shouldEnforceOffsetsIncreaseMonotonically",
			ops:  []epochOp{assign(2, 6), assign(3, 5)},
			want: []EpochEntry{E(3, 5)},
		},
		{
			name: "lowerEpochTruncatesOnlyConflictingEntries",
			ops:  []epochOp{assign(1, 0), assign(3, 10), assign(5, 20), assign(4, 15)},
			want: []EpochEntry{E(1, 0), E(3, 10), E(4, 15)},
		},
		{
			name: "shouldIncreaseAndTrackEpochsAsLeadersChangeManyTimes",
			ops:  []epochOp{assign(0, 0), assign(1, 0), assign(2, 5)},
			want: []EpochEntry{E(1, 0), E(2, 5)},
			end:  []endOffsetCase{{2, 10, 2, 10}, {1, 10, 1, 5}, {0, 10, 0, 0}},
		},
		{
			name: "shouldIncreaseAndTrackEpochsAsFollowerReceivesManyMessages",
			ops:  []epochOp{assign(0, 0), assign(0, 1), assign(0, 2), assign(1, 3), assign(1, 4), assign(1, 5), assign(2, 6), assign(2, 7), assign(2, 8)},
			want: []EpochEntry{E(0, 0), E(1, 3), E(2, 6)},
			end:  []endOffsetCase{{2, 9, 2, 9}, {0, 9, 0, 3}, {1, 9, 1, 6}},
		},
		{
			name: "shouldDropEntriesOnEpochBoundaryWhenRemovingLatestEntries",
			ops:  []epochOp{assign(2, 6), assign(3, 8), assign(4, 11), truncEnd(8)},
			want: []EpochEntry{E(2, 6)},
		},
		{
			name: "shouldDropEntriesBetweenEpochBoundaryWhenRemovingNewest",
			ops:  []epochOp{assign(2, 6), assign(3, 8), assign(4, 11), truncEnd(9)},
			want: []EpochEntry{E(2, 6), E(3, 8)},
		},
		{
			name: "truncateFromEndPastEndKeepsAll",
			ops:  []epochOp{assign(2, 6), assign(3, 8), truncEnd(100)},
			want: []EpochEntry{E(2, 6), E(3, 8)},
		},
		{
			name: "truncateFromEndToZeroRemovesAll",
			ops:  []epochOp{assign(2, 6), assign(3, 8), truncEnd(0)},
			want: []EpochEntry{},
		},
		{
			name: "shouldNotResetEpochHistoryTailIfUndefinedPassed",
			ops:  []epochOp{assign(2, 6), assign(3, 8), assign(4, 11), truncEnd(-1)},
			want: []EpochEntry{E(2, 6), E(3, 8), E(4, 11)},
		},
		{
			name: "shouldPreserveResetOffsetOnClearEarliestIfOneExists",
			ops:  []epochOp{assign(2, 6), assign(3, 8), assign(4, 11), truncStart(8)},
			want: []EpochEntry{E(3, 8), E(4, 11)},
		},
		{
			name: "shouldNotClearAnythingIfOffsetTooEarly",
			ops:  []epochOp{assign(2, 6), assign(3, 8), assign(4, 11), truncStart(1)},
			want: []EpochEntry{E(2, 6), E(3, 8), E(4, 11)},
		},
		{
			name: "shouldNotClearAnythingIfOffsetIsFirstOffset",
			ops:  []epochOp{assign(2, 6), assign(3, 8), assign(4, 11), truncStart(6)},
			want: []EpochEntry{E(2, 6), E(3, 8), E(4, 11)},
		},
		{
			name: "shouldRetainLatestEpochOnClearAllEarliest",
			ops:  []epochOp{assign(2, 6), assign(3, 8), assign(4, 11), truncStart(11)},
			want: []EpochEntry{E(4, 11)},
		},
		{
			name: "shouldUpdateOffsetBetweenEpochBoundariesOnClearEarliest",
			ops:  []epochOp{assign(2, 6), assign(3, 8), assign(4, 11), truncStart(9)},
			want: []EpochEntry{E(3, 9), E(4, 11)},
		},
		{
			name: "shouldUpdateOffsetBetweenFirstTwoEpochBoundariesOnClearEarliest",
			ops:  []epochOp{assign(0, 0), assign(1, 7), assign(2, 10), truncStart(5)},
			want: []EpochEntry{E(0, 5), E(1, 7), E(2, 10)},
		},
		{
			name: "shouldRetainLatestEpochOnClearAllEarliestAndUpdateItsOffset",
			ops:  []epochOp{assign(2, 6), assign(3, 8), assign(4, 11), truncStart(15)},
			want: []EpochEntry{E(4, 15)},
			end:  []endOffsetCase{{4, 20, 4, 20}, {3, 20, 3, 15}},
		},
		{
			name: "shouldNotResetEpochHistoryHeadIfUndefinedPassed",
			ops:  []epochOp{assign(2, 6), assign(3, 8), assign(4, 11), truncStart(-1)},
			want: []EpochEntry{E(2, 6), E(3, 8), E(4, 11)},
		},
		{
			name: "shouldClearEarliestAndLatestOnEmptyCache",
			ops:  []epochOp{truncStart(7), truncEnd(7)},
			want: []EpochEntry{},
		},
		{
			name: "shouldWriteCheckpointOnTruncation",
			ops:  []epochOp{assign(2, 6), assign(3, 8), assign(4, 11), truncEnd(11), truncStart(8)},
			want: []EpochEntry{E(3, 8)},
		},
		{
			name: "shouldClearAllEntries",
			ops:  []epochOp{assign(2, 6), assign(3, 8), assign(4, 11), clearOp()},
			want: []EpochEntry{},
			end:  []endOffsetCase{{4, 20, U, -1}},
		},
		{
			name: "shouldFetchEpochForGivenOffset",
			ops:  []epochOp{assign(0, 10), assign(1, 20), assign(5, 30)},
			want: []EpochEntry{E(0, 10), E(1, 20), E(5, 30)},
			epochFor: []epochForCase{
				{25, 1, true}, {20, 1, true}, {30, 5, true}, {50, 5, true}, {5, U, false}, {10, 0, true}, {19, 0, true},
			},
		},
		{
			name:     "epochForOffsetOnEmptyCache",
			epochFor: []epochForCase{{0, U, false}, {100, U, false}},
		},
		{
			name: "endOffsetForEpochBelowMinusOne",
			ops:  []epochOp{assign(3, 10)},
			want: []EpochEntry{E(3, 10)},
			// Kafka only special-cases -1; other negatives take the
			// "below every known epoch" branch.
			end: []endOffsetCase{{-2, 50, -2, 10}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), LeaderEpochFile)
			c := openCache(t, vfs.Default, path)
			for _, op := range tc.ops {
				if err := op.apply(c); err != nil {
					t.Fatalf("%v: %v", op, err)
				}
			}
			if got := c.Entries(); !slices.Equal(got, tc.want) {
				t.Fatalf("entries %v, want %v", got, tc.want)
			}
			latest, ok := c.LatestEpoch()
			if ok != (len(tc.want) > 0) || ok && latest != tc.want[len(tc.want)-1].Epoch || !ok && latest != U {
				t.Fatalf("LatestEpoch %d %v with entries %v", latest, ok, tc.want)
			}
			for _, e := range tc.end {
				ep, off := c.EndOffsetFor(e.req, e.leo)
				if ep != e.wantEpoch || off != e.wantEnd {
					t.Errorf("EndOffsetFor(%d, %d) = (%d, %d), want (%d, %d)", e.req, e.leo, ep, off, e.wantEpoch, e.wantEnd)
				}
			}
			for _, e := range tc.epochFor {
				ep, ok := c.EpochForOffset(e.off)
				if ep != e.want || ok != e.ok {
					t.Errorf("EpochForOffset(%d) = (%d, %v), want (%d, %v)", e.off, ep, ok, e.want, e.ok)
				}
			}
			if fileExists(path) {
				if got, want := readBytes(t, path), string(formatEpochs(tc.want)); got != want {
					t.Fatalf("file %q, want %q", got, want)
				}
			} else if len(tc.want) > 0 {
				t.Fatal("entries never persisted")
			}
			if got := openCache(t, vfs.Default, path).Entries(); !slices.Equal(got, tc.want) {
				t.Fatalf("reopened entries %v, want %v", got, tc.want)
			}
		})
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func TestEpochCheckpointGolden(t *testing.T) {
	path := filepath.Join(t.TempDir(), LeaderEpochFile)
	c := openCache(t, vfs.Default, path)
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("opening created the file")
	}
	for _, e := range []EpochEntry{E(0, 0), E(2, 6), E(3, 8), E(2147483647, 9223372036854775807)} {
		if err := c.Assign(e.Epoch, e.StartOffset); err != nil {
			t.Fatal(err)
		}
	}
	const want = "0\n4\n0 0\n2 6\n3 8\n2147483647 9223372036854775807\n"
	if got := readBytes(t, path); got != want {
		t.Fatalf("file %q, want %q", got, want)
	}
	if err := c.Clear(); err != nil {
		t.Fatal(err)
	}
	if got := readBytes(t, path); got != "0\n0\n" {
		t.Fatalf("cleared file %q", got)
	}
	if c.Path() != path {
		t.Fatalf("Path %q", c.Path())
	}
}

// TestOpenEpochCacheReplaysAssign loads files written by other versions or
// damaged by hand: the entries go through Assign's rules, as in Kafka.
func TestOpenEpochCacheReplaysAssign(t *testing.T) {
	for _, tc := range []struct {
		data string
		want []EpochEntry
	}{
		{"", nil},
		{"0\n0\n", nil},
		{"0\n2\n1 0\n4 100\n", []EpochEntry{E(1, 0), E(4, 100)}},
		{"0\n3\n2 6\n1 7\n3 5\n", []EpochEntry{E(3, 5)}},
		{"0\n3\n2 6\n2 9\n3 9\n", []EpochEntry{E(2, 6), E(3, 9)}},
		{"0\n2\n5 10\n5 3\n", []EpochEntry{E(5, 3)}},
		{"0\n2\n1\t 0\r\n2 5", []EpochEntry{E(1, 0), E(2, 5)}},
	} {
		path := filepath.Join(t.TempDir(), LeaderEpochFile)
		if err := os.WriteFile(path, []byte(tc.data), 0o644); err != nil {
			t.Fatal(err)
		}
		got := openCache(t, vfs.Default, path).Entries()
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q: entries %v, want %v", tc.data, got, tc.want)
		}
		if b := readBytes(t, path); b != tc.data {
			t.Errorf("%q: opening rewrote the file to %q", tc.data, b)
		}
	}
}

func TestOpenEpochCacheMalformed(t *testing.T) {
	for _, tc := range []struct {
		name string
		data string
		line int
	}{
		{"bad_version", "1\n0\n", 1},
		{"missing_count", "0\n", 2},
		{"count_mismatch", "0\n2\n0 0\n", 2},
		{"non_numeric_epoch", "0\n1\nx 0\n", 3},
		{"non_numeric_offset", "0\n1\n0 x\n", 3},
		{"negative_epoch", "0\n1\n-1 0\n", 3},
		{"negative_offset", "0\n1\n0 -1\n", 3},
		{"epoch_overflow", "0\n1\n2147483648 0\n", 3},
		{"extra_fields", "0\n1\n0 0 0\n", 3},
		{"missing_field", "0\n1\n0\n", 3},
		{"offset_checkpoint_line", "0\n1\nt 0 5\n", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), LeaderEpochFile)
			if err := os.WriteFile(path, []byte(tc.data), 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := OpenEpochCache(vfs.Default, path)
			var me *MalformedError
			if !errors.Is(err, ErrMalformed) || !errors.As(err, &me) || me.Line != tc.line || me.Path != path {
				t.Fatalf("got %v, %v; want ErrMalformed at line %d", c, err, tc.line)
			}
		})
	}
}

func TestAssignRejectsNegative(t *testing.T) {
	c := openCache(t, vfs.Default, filepath.Join(t.TempDir(), LeaderEpochFile))
	for _, e := range []EpochEntry{E(-1, 0), E(0, -1)} {
		if err := c.Assign(e.Epoch, e.StartOffset); !errors.Is(err, ErrInvalidEntry) {
			t.Fatalf("Assign(%v): %v", e, err)
		}
	}
	if len(c.Entries()) != 0 {
		t.Fatal("invalid entry stored")
	}
}

// failRenameFS fails every Rename.
type failRenameFS struct{ vfs.FS }

func (failRenameFS) Rename(string, string) error { return errors.New("injected rename failure") }

func TestEpochCacheUnchangedWhenPersistFails(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, LeaderEpochFile)
	c := openCache(t, vfs.Default, path)
	if err := c.Assign(1, 0); err != nil {
		t.Fatal(err)
	}
	bad := openCache(t, failRenameFS{vfs.Default}, path)
	for _, op := range []epochOp{assign(2, 5), truncEnd(0), truncStart(3), clearOp()} {
		if err := op.apply(bad); err == nil {
			t.Fatalf("%v: no error", op)
		}
		if got := bad.Entries(); !slices.Equal(got, []EpochEntry{E(1, 0)}) {
			t.Fatalf("%v: entries %v after failed persist", op, got)
		}
	}
	if got := readBytes(t, path); got != "0\n1\n1 0\n" {
		t.Fatalf("file %q", got)
	}
	if fileExists(path + TmpSuffix) {
		t.Fatal(".tmp left behind")
	}
}

// TestEpochCacheSurvivesCrash checks that every mutation that returned is
// durable: after a crash in any mode the file holds exactly the last state.
func TestEpochCacheSurvivesCrash(t *testing.T) {
	for seed := range int64(30) {
		dir := t.TempDir()
		fsys := vfs.NewCrashFS(seed)
		path := filepath.Join(dir, LeaderEpochFile)
		c := openCache(t, fsys, path)
		r := rand.New(rand.NewPCG(uint64(seed), 1))
		ops := randomOps(r, 1+r.IntN(12))
		for _, op := range ops {
			if err := op.apply(c); err != nil {
				t.Fatal(err)
			}
		}
		want := c.Entries()
		opts := vfs.CrashOptions{KeepUnsynced: vfs.KeepMode(seed % 3), TornTail: seed%2 == 0}
		if err := fsys.CrashWith(opts); err != nil {
			t.Fatal(err)
		}
		got := openCache(t, vfs.Default, path).Entries()
		if !slices.Equal(got, want) {
			t.Fatalf("seed %d ops %v: after crash %v, want %v", seed, ops, got, want)
		}
	}
}

func randomOps(r *rand.Rand, n int) []epochOp {
	ops := make([]epochOp, n)
	for i := range ops {
		switch k := r.IntN(10); {
		case k < 6:
			ops[i] = assign(int32(r.IntN(8)), int64(r.IntN(50)))
		case k < 8:
			ops[i] = truncEnd(int64(r.IntN(60)) - 5)
		case k < 9:
			ops[i] = truncStart(int64(r.IntN(60)) - 5)
		default:
			ops[i] = clearOp()
		}
	}
	return ops
}

// Naive models, written straight from Kafka's TreeMap code, for
// differential testing.

func naiveEndOffsetFor(es []EpochEntry, req int32, leo int64) (int32, int64) {
	if req == U {
		return U, -1
	}
	if len(es) > 0 && es[len(es)-1].Epoch == req {
		return req, leo
	}
	var higher, floor *EpochEntry
	for i := range es {
		if es[i].Epoch > req && higher == nil {
			higher = &es[i]
		}
		if es[i].Epoch <= req {
			floor = &es[i]
		}
	}
	if higher == nil {
		return U, -1
	}
	if floor == nil {
		return req, higher.StartOffset
	}
	return floor.Epoch, higher.StartOffset
}

func naiveEpochForOffset(es []EpochEntry, off int64) (int32, bool) {
	prev, ok := U, false
	for _, e := range es {
		if e.StartOffset == off {
			return e.Epoch, true
		}
		if e.StartOffset > off {
			return prev, ok
		}
		prev, ok = e.Epoch, true
	}
	return prev, ok
}

// applyPure applies op to es with the cache's pure helpers (no file).
func applyPure(es []EpochEntry, op epochOp) []EpochEntry {
	switch op.kind {
	case "assign":
		es, _ = assignEntry(es, EpochEntry{Epoch: op.ep, StartOffset: op.off})
	case "end":
		es, _ = truncateFromEnd(es, op.off)
	case "start":
		es, _ = truncateFromStart(es, op.off)
	case "clear":
		es = nil
	}
	return es
}

func TestEpochCacheDifferential(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for iter := range 2000 {
		var es []EpochEntry
		for _, op := range randomOps(r, 1+r.IntN(15)) {
			es = applyPure(es, op)
			for i := 1; i < len(es); i++ {
				if es[i].Epoch <= es[i-1].Epoch || es[i].StartOffset <= es[i-1].StartOffset {
					t.Fatalf("iter %d after %v: entries not strictly increasing: %v", iter, op, es)
				}
			}
			c := &EpochCache{entries: es}
			for req := int32(-2); req < 10; req++ {
				ge, go_ := c.EndOffsetFor(req, 1000)
				we, wo := naiveEndOffsetFor(es, req, 1000)
				if ge != we || go_ != wo {
					t.Fatalf("iter %d entries %v: EndOffsetFor(%d) = (%d,%d), naive (%d,%d)", iter, es, req, ge, go_, we, wo)
				}
			}
			for off := int64(-1); off < 60; off++ {
				ge, gok := c.EpochForOffset(off)
				we, wok := naiveEpochForOffset(es, off)
				if ge != we || gok != wok {
					t.Fatalf("iter %d entries %v: EpochForOffset(%d) = (%d,%v), naive (%d,%v)", iter, es, off, ge, gok, we, wok)
				}
			}
		}
	}
}

func TestEpochCacheConcurrent(t *testing.T) {
	c := openCache(t, vfs.Default, filepath.Join(t.TempDir(), LeaderEpochFile))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 50 {
			if err := c.Assign(int32(i), int64(i*10)); err != nil {
				t.Error(err)
				return
			}
			if i%10 == 9 {
				if err := c.TruncateFromStart(int64(i * 5)); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				c.LatestEpoch()
				c.EndOffsetFor(3, 100)
				c.EpochForOffset(25)
				es := c.Entries()
				for i := 1; i < len(es); i++ {
					if es[i].Epoch <= es[i-1].Epoch {
						t.Error("torn read", es)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if ep, _ := c.LatestEpoch(); ep != 49 {
		t.Fatalf("latest %d", ep)
	}
}

func (o epochOp) String() string { return fmt.Sprintf("%s(%d,%d)", o.kind, o.ep, o.off) }
