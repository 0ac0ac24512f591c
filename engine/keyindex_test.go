package engine

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/engine/vfs"
)

// forceCollisions makes every key digest one of n values for the test.
func forceCollisions(t *testing.T, n uint64) {
	t.Helper()
	old, oldID := keyDigest, keyDigestID
	keyDigest = func(b []byte) uint64 { return xxhash.Sum64(b) % n }
	keyDigestID = 99
	t.Cleanup(func() { keyDigest, keyDigestID = old, oldID })
}

func compactEnv(t *testing.T) *testEnv {
	e := newTestEnv(t)
	e.cfg.Compact = true
	e.cfg.Delete = false
	e.cfg.KeyIndex = true
	return e
}

func put(t *testing.T, l *Log, key, value string) Offset {
	t.Helper()
	var v []byte
	if value != "\x00" {
		v = []byte(value)
	}
	res, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{{key: []byte(key), value: v, ts: 1000}}), 0)
	if err != nil {
		t.Fatal(err)
	}
	return res.BaseOffset
}

func expectLookup(t *testing.T, l *Log, key, want string) {
	t.Helper()
	if want == "\x00" { // a tombstone
		want = ""
	}
	got, err := l.Lookup([]byte(key))
	if err != nil {
		t.Fatalf("lookup %q: %v", key, err)
	}
	switch {
	case want == "" && got.Found:
		t.Fatalf("lookup %q: found %q at %d, want not found", key, got.Value, got.Offset)
	case want != "" && !got.Found:
		t.Fatalf("lookup %q: not found, want %q", key, want)
	case want != "" && (string(got.Value) != want || string(got.Key) != key):
		t.Fatalf("lookup %q: got key %q value %q, want %q", key, got.Key, got.Value, want)
	}
}

func TestKeyIndexLookup(t *testing.T) {
	e := compactEnv(t)
	l := e.open(true, -1)
	defer l.Close()
	put(t, l, "a", "1")
	put(t, l, "b", "1")
	l.SetHighWatermark(l.LogEndOffset())
	expectLookup(t, l, "a", "1")
	put(t, l, "a", "2")
	put(t, l, "b", "\x00")
	// Not committed yet: the old values.
	expectLookup(t, l, "a", "1")
	expectLookup(t, l, "b", "1")
	l.SetHighWatermark(l.LogEndOffset())
	expectLookup(t, l, "a", "2")
	expectLookup(t, l, "b", "")
	expectLookup(t, l, "nope", "")
	// Headers and timestamps come back.
	var bl record.Builder
	bl.ProducerID, bl.ProducerEpoch, bl.BaseSequence = -1, -1, -1
	bl.BaseTimestamp, bl.LastOffsetDelta, bl.MaxTimestamp = 5000, -1, -1
	bl.Add(record.Record{Key: []byte("h"), Value: []byte("v"), Headers: []record.Header{{Key: []byte("x"), Value: []byte("y")}}})
	b, _ := bl.Build(nil)
	if _, err := l.Append(b, 0); err != nil {
		t.Fatal(err)
	}
	l.SetHighWatermark(l.LogEndOffset())
	got, err := l.Lookup([]byte("h"))
	if err != nil || !got.Found || got.Timestamp != 5000 || len(got.Headers) != 1 || string(got.Headers[0].Value) != "y" || got.Offset != 4 {
		t.Fatalf("lookup h: %+v, %v", got, err)
	}
	// A log without compaction has no index.
	e2 := newTestEnv(t)
	l2 := e2.open(true, -1)
	defer l2.Close()
	if _, err := l2.Lookup([]byte("a")); !errors.Is(err, ErrKeyIndexDisabled) {
		t.Fatalf("lookup on a delete-policy log: %v", err)
	}
}

// TestKeyIndexCollisions forces digest collisions: a lookup never returns
// another key's value, and still finds the right one.
func TestKeyIndexCollisions(t *testing.T) {
	forceCollisions(t, 1) // every key has the same digest
	e := compactEnv(t)
	l := e.open(true, -1)
	defer l.Close()
	put(t, l, "a", "A1")
	put(t, l, "b", "B1")
	l.SetHighWatermark(l.LogEndOffset())
	expectLookup(t, l, "a", "A1")
	expectLookup(t, l, "b", "B1")
	put(t, l, "b", "\x00")
	l.SetHighWatermark(l.LogEndOffset())
	expectLookup(t, l, "b", "")
	expectLookup(t, l, "a", "A1")
	expectLookup(t, l, "c", "")
	if s := l.KeyIndexStats(); s.SlowScans == 0 || s.Entries != 1 {
		t.Fatalf("stats %+v: want slow scans and one entry", s)
	}
}

func TestKeyIndexTruncation(t *testing.T) {
	e := compactEnv(t)
	l := e.open(true, -1)
	defer l.Close()
	for i := 0; i < 10; i++ {
		put(t, l, fmt.Sprintf("k%d", i%3), fmt.Sprint(i))
	}
	l.SetHighWatermark(6)
	expectLookup(t, l, "k0", "3") // k0 at 0, 3, 6, 9
	// Cut the uncommitted tail: pending records go, the table stays.
	if err := l.TruncateTo(8); err != nil {
		t.Fatal(err)
	}
	l.SetHighWatermark(l.LogEndOffset())
	expectLookup(t, l, "k0", "6")
	expectLookup(t, l, "k1", "7")
	expectLookup(t, l, "k2", "5")
	// Cut below what the table applied: it is rebuilt.
	if err := l.TruncateTo(4); err != nil {
		t.Fatal(err)
	}
	expectLookup(t, l, "k0", "3")
	expectLookup(t, l, "k1", "1")
	put(t, l, "k1", "x")
	l.SetHighWatermark(l.LogEndOffset())
	expectLookup(t, l, "k1", "x")
	if err := l.TruncateFullyAndStartAt(20); err != nil {
		t.Fatal(err)
	}
	expectLookup(t, l, "k1", "")
}

func TestKeyIndexLogStart(t *testing.T) {
	e := compactEnv(t)
	l := e.open(true, -1)
	defer l.Close()
	for i := 0; i < 6; i++ {
		put(t, l, fmt.Sprintf("k%d", i%3), fmt.Sprint(i))
	}
	put(t, l, "k0", "6")
	l.SetHighWatermark(l.LogEndOffset())
	expectLookup(t, l, "k1", "4")
	if err := l.DeleteRecordsBefore(5); err != nil {
		t.Fatal(err)
	}
	expectLookup(t, l, "k1", "")
	expectLookup(t, l, "k2", "5")
	expectLookup(t, l, "k0", "6")
	if n := l.KeyIndexStats().Entries; n != 2 {
		t.Fatalf("%d entries after DeleteRecords, want 2", n)
	}
}

// TestKeyIndexRestart: a clean close checkpoints the index; the reopen
// reads only the records after it; a damaged checkpoint is rebuilt.
func TestKeyIndexRestart(t *testing.T) {
	e := compactEnv(t)
	l := e.open(true, -1)
	for i := 0; i < 50; i++ {
		put(t, l, fmt.Sprintf("k%d", i%7), fmt.Sprint(i))
	}
	l.SetHighWatermark(l.LogEndOffset())
	expectLookup(t, l, "k0", "49")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	buf, err := os.ReadFile(KeyIndexFileName(e.dir))
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseKeyIndexCheckpoint(buf)
	if err != nil || c.Covers != 50 || len(c.Entries) != 7 {
		t.Fatalf("checkpoint %+v, %v", c, err)
	}
	l = e.open(true, 50)
	put(t, l, "k0", "tail")
	l.SetHighWatermark(l.LogEndOffset())
	expectLookup(t, l, "k0", "tail")
	expectLookup(t, l, "k3", "45")
	// The index was loaded by the lookup after the append: it read from
	// the checkpoint on, i.e. one record.
	if s := l.KeyIndexStats(); s.Replayed != 1 {
		t.Fatalf("replayed %d records after a clean restart, want 1", s.Replayed)
	}
	crashClose(l)
	// Unclean: the checkpoint (covering 50) is still used; the tail is
	// recovered and replayed.
	l = e.open(false, 0)
	expectLookup(t, l, "k0", "tail")
	if s := l.KeyIndexStats(); s.Replayed != 1 {
		t.Fatalf("replayed %d records after an unclean restart, want 1", s.Replayed)
	}
	crashClose(l)
	// Damage: flip a byte of an entry; the index is rebuilt from the log.
	buf[keyIndexHeaderSize+3] ^= 0xff
	if err := os.WriteFile(KeyIndexFileName(e.dir), buf, 0o644); err != nil {
		t.Fatal(err)
	}
	l = e.open(false, 0)
	defer l.Close()
	expectLookup(t, l, "k0", "tail")
	expectLookup(t, l, "k6", "48")
	if s := l.KeyIndexStats(); s.Replayed != 51 {
		t.Fatalf("replayed %d records with a damaged checkpoint, want all 51", s.Replayed)
	}
}

// TestKeyIndexCheckpointCatchesUp: a partition written much and read
// rarely. The periodic checkpoint catches its index up (in the
// background) before covering it, so the first lookup after a kill -9
// replays nothing instead of everything written since the last lookup.
func TestKeyIndexCheckpointCatchesUp(t *testing.T) {
	e := compactEnv(t)
	l := e.open(true, -1)
	defer func() { l.Close() }()
	put(t, l, "first", "1")
	l.SetHighWatermark(l.LogEndOffset())
	if err := l.LoadKeyIndex(); err != nil {
		t.Fatal(err)
	}
	recs := make([]testRecord, 1000)
	for n := 0; n < keyIndexCheckpointEvery+1000; n += len(recs) {
		for i := range recs {
			recs[i] = testRecord{key: []byte(fmt.Sprintf("k%d", n+i)), value: []byte("v"), ts: 1000}
		}
		if _, err := l.Append(makeBatch(t, record.CodecNone, recs), 0); err != nil {
			t.Fatal(err)
		}
		l.SetHighWatermark(l.LogEndOffset())
	}
	leo := l.LogEndOffset()
	if err := l.CheckpointKeyIndex(keyIndexCheckpointEvery); err != nil {
		t.Fatal(err)
	}
	l.waitKeyIndexPurge() // the catch-up runs on its own goroutine
	if st := l.KeyIndexStats(); st.Applied != leo {
		t.Fatalf("index applied %d after the periodic checkpoint, want the log end %d", st.Applied, leo)
	}
	buf, err := os.ReadFile(KeyIndexFileName(e.dir))
	if err != nil {
		t.Fatal(err)
	}
	if c, err := ParseKeyIndexCheckpoint(buf); err != nil || c.Covers != leo {
		t.Fatalf("checkpoint covers %d, want %d (%v)", c.Covers, leo, err)
	}
	crashClose(l)
	l = e.open(false, leo)
	l.SetHighWatermark(l.LogEndOffset())
	expectLookup(t, l, fmt.Sprintf("k%d", keyIndexCheckpointEvery), "v")
	expectLookup(t, l, "first", "1")
	if st := l.KeyIndexStats(); st.Replayed != 0 {
		t.Fatalf("the first lookup after a kill -9 replayed %d records, want 0", st.Replayed)
	}
}

// TestKeyIndexCheckpointBeyondTruncation: a checkpoint covering offsets a
// truncation removed is deleted, so a restart after the log grew again
// does not trust it.
func TestKeyIndexCheckpointBeyondTruncation(t *testing.T) {
	e := compactEnv(t)
	l := e.open(true, -1)
	for i := 0; i < 10; i++ {
		put(t, l, "k", fmt.Sprint(i))
	}
	l.SetHighWatermark(l.LogEndOffset())
	expectLookup(t, l, "k", "9")
	if err := l.CheckpointKeyIndex(0); err != nil {
		t.Fatal(err)
	}
	if err := l.TruncateTo(5); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		put(t, l, "j", fmt.Sprint(i))
	}
	crashClose(l)
	l = e.open(false, 0)
	defer l.Close()
	expectLookup(t, l, "k", "4")
	expectLookup(t, l, "j", "9")
}

func TestDigestTable(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var tab digestTable
	model := map[uint64]uint64{}
	for i := 0; i < 20000; i++ {
		d := rng.Uint64N(3000)
		if rng.IntN(3) == 0 {
			if tab.del(d) != (model[d] != 0) {
				t.Fatalf("del %d", d)
			}
			delete(model, d)
		} else {
			v := rng.Uint64N(1<<40) + 1
			tab.put(d, v)
			model[d] = v
		}
		if i%997 == 0 {
			cut := rng.Uint64N(1 << 40)
			tab.deleteIf(func(_, v uint64) bool { return v < cut })
			for k, v := range model {
				if v < cut {
					delete(model, k)
				}
			}
		}
	}
	if tab.len() != len(model) {
		t.Fatalf("len %d, model %d", tab.len(), len(model))
	}
	for d, v := range model {
		if got, ok := tab.get(d); !ok || got != v {
			t.Fatalf("get %d = %d %v, want %d", d, got, ok, v)
		}
	}
	if per := float64(tab.bytes()) / float64(tab.len()); per > 32 {
		t.Fatalf("%.1f bytes per entry", per)
	}
}

func FuzzParseKeyIndexCheckpoint(f *testing.F) {
	f.Add(EncodeKeyIndexCheckpoint(KeyIndexCheckpoint{DigestID: 1, Covers: 10, Entries: []KeyIndexEntry{{Digest: 7, Offset: 3}, {Digest: 9, Offset: 9, Tombstone: true}}}))
	f.Add(EncodeKeyIndexCheckpoint(KeyIndexCheckpoint{DigestID: 1}))
	f.Add(EncodeKeyIndexCheckpoint(KeyIndexCheckpoint{Version: keyIndexV1, DigestID: 1, Covers: 10, Entries: []KeyIndexEntry{{Digest: 7, Offset: 3}, {Digest: 9, Offset: 9, Tombstone: true}}}))
	f.Add(EncodeKeyIndexCheckpoint(KeyIndexCheckpoint{DigestID: 1, Covers: 10, Slots: 4, Entries: []KeyIndexEntry{{Digest: 1<<64 - 1, Offset: 3}, {Digest: 0, Offset: 9}, {Digest: 1 << 62, Offset: 1}}}))
	f.Add([]byte("KVKI"))
	f.Fuzz(func(t *testing.T, buf []byte) {
		c, err := ParseKeyIndexCheckpoint(buf)
		if err != nil {
			if !errors.Is(err, ErrKeyIndexCorrupt) {
				t.Fatalf("error %v does not wrap ErrKeyIndexCorrupt", err)
			}
			return
		}
		if again := EncodeKeyIndexCheckpoint(c); !bytes.Equal(again, buf) {
			t.Fatalf("re-encoding differs")
		}
	})
}

// TestKeyIndexTransactions: lookups answer at the last stable offset and
// never return a record of an aborted transaction.
func TestKeyIndexTransactions(t *testing.T) {
	for _, collide := range []bool{false, true} {
		t.Run(fmt.Sprint("collide=", collide), func(t *testing.T) {
			if collide {
				forceCollisions(t, 1)
			}
			e := compactEnv(t)
			l := e.open(true, -1)
			defer func() { l.Close() }()
			seq := int32(0)
			txn := func(pairs ...string) {
				t.Helper()
				var bl record.Builder
				bl.Attributes = record.AttrTransactional
				bl.ProducerID, bl.ProducerEpoch, bl.BaseSequence = 7, 0, seq
				bl.BaseTimestamp, bl.LastOffsetDelta, bl.MaxTimestamp = 1000, -1, -1
				for i := 0; i < len(pairs); i += 2 {
					bl.Add(record.Record{OffsetDelta: int32(i / 2), Key: []byte(pairs[i]), Value: []byte(pairs[i+1])})
				}
				seq += int32(len(pairs) / 2)
				b, err := bl.Build(nil)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := l.Append(b, 0); err != nil {
					t.Fatal(err)
				}
				l.SetHighWatermark(l.LogEndOffset())
			}
			end := func(commit bool) {
				t.Helper()
				if _, err := l.AppendMarker(Marker{ProducerID: 7, Commit: commit}, 0); err != nil {
					t.Fatal(err)
				}
				l.SetHighWatermark(l.LogEndOffset())
			}
			put(t, l, "a", "1")
			l.SetHighWatermark(l.LogEndOffset())
			expectLookup(t, l, "a", "1")
			txn("a", "2", "b", "x")
			expectLookup(t, l, "a", "1") // ongoing: below the LSO only
			expectLookup(t, l, "b", "")
			end(false)
			expectLookup(t, l, "a", "1")
			expectLookup(t, l, "b", "")
			txn("a", "3")
			put(t, l, "c", "1")
			l.SetHighWatermark(l.LogEndOffset())
			expectLookup(t, l, "c", "") // above the LSO
			end(true)
			expectLookup(t, l, "a", "3")
			expectLookup(t, l, "c", "1")
			// A restart rebuilds the same state from the log.
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			os.Remove(KeyIndexFileName(e.dir))
			l = e.open(true, l.LogEndOffset())
			expectLookup(t, l, "a", "3")
			expectLookup(t, l, "b", "")
		})
	}
}

// TestKeyIndexCheckpointCrash stops the checkpoint write after each of its
// file-system steps, then loses power (unsynced bytes and directory
// operations lost at random, torn writes): the reopened log's index, from
// the old checkpoint, the new one or rebuilt, answers every key right.
func TestKeyIndexCheckpointCrash(t *testing.T) {
	for budget := 0; ; budget++ {
		cfs := vfs.NewCrashFS(int64(budget) + 1)
		ffs := vfs.NewFailFS(cfs)
		e := compactEnv(t)
		e.fs = ffs
		l := e.open(true, -1)
		want := map[string]string{}
		for i := 0; i < 40; i++ {
			k, v := fmt.Sprintf("k%d", i%9), fmt.Sprint(i)
			put(t, l, k, v)
			want[k] = v
		}
		l.SetHighWatermark(l.LogEndOffset())
		expectLookup(t, l, "k0", want["k0"])
		if err := l.CheckpointKeyIndex(0); err != nil {
			t.Fatal(err)
		}
		for i := 40; i < 70; i++ {
			k, v := fmt.Sprintf("k%d", i%13), fmt.Sprint(i)
			if i%5 == 0 {
				v = "\x00"
			}
			put(t, l, k, v)
			want[k] = v
		}
		if err := l.Sync(); err != nil {
			t.Fatal(err)
		}
		l.SetHighWatermark(l.LogEndOffset())
		expectLookup(t, l, "k0", want["k0"])
		ffs.SetBudget(budget)
		err := l.CheckpointKeyIndex(0)
		done := !ffs.Exhausted()
		if done && err != nil {
			t.Fatal(err)
		}
		crashClose(l)
		if err := cfs.CrashWith(vfs.CrashOptions{KeepUnsynced: vfs.KeepRandom, TornTail: true}); err != nil {
			t.Fatal(err)
		}
		ffs.SetBudget(-1)
		l = e.open(false, 0)
		if l.LogEndOffset() != 70 {
			t.Fatalf("budget %d: log end %d after the crash, want 70 (synced)", budget, l.LogEndOffset())
		}
		for k, v := range want {
			if v == "\x00" {
				v = ""
			}
			expectLookup(t, l, k, v)
		}
		l.Close()
		if done {
			if budget < 3 {
				t.Fatalf("the checkpoint took only %d file-system steps", budget)
			}
			return
		}
	}
}

// TestKeyIndexFollower: a follower's index follows AppendReplicated and
// answers at its high watermark; truncating its uncommitted tail (a new
// leader's shorter log) drops those records.
func TestKeyIndexFollower(t *testing.T) {
	le := compactEnv(t)
	leader := le.open(true, -1)
	defer leader.Close()
	fe := compactEnv(t)
	follower := fe.open(true, -1)
	defer follower.Close()
	expectLookup(t, follower, "a", "") // loads the (empty) index
	copyFrom := func(from Offset) {
		t.Helper()
		r, err := leader.Read(from, 1<<20, leader.LogEndOffset())
		if err != nil {
			t.Fatal(err)
		}
		buf, err := r.Bytes()
		r.Release()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := follower.AppendReplicated(buf); err != nil {
			t.Fatal(err)
		}
	}
	put(t, leader, "a", "1")
	put(t, leader, "b", "1")
	copyFrom(0)
	follower.SetHighWatermark(1)
	expectLookup(t, follower, "a", "1")
	expectLookup(t, follower, "b", "")
	put(t, leader, "a", "2")
	copyFrom(2)
	follower.SetHighWatermark(2)
	expectLookup(t, follower, "a", "1")
	expectLookup(t, follower, "b", "1")
	if err := follower.TruncateTo(2); err != nil { // the uncommitted a=2 is cut
		t.Fatal(err)
	}
	put(t, follower, "a", "3")
	follower.SetHighWatermark(follower.LogEndOffset())
	expectLookup(t, follower, "a", "3")
	if s := follower.KeyIndexStats(); s.Loads != 1 {
		t.Fatalf("the follower's index was loaded %d times: the truncation cut only what it had not applied", s.Loads)
	}
}

// TestKeyIndexCheckpointBeyondRecovery: a checkpoint covering records a
// power loss took away is removed when the log opens, so records appended
// at those offsets afterwards are not hidden behind it. (Its entry for k
// names offset 10; after the crash offset 10 holds k again, but k's newest
// record is at 15, below what the stale checkpoint claims to cover.)
func TestKeyIndexCheckpointBeyondRecovery(t *testing.T) {
	cfs := vfs.NewCrashFS(7)
	e := compactEnv(t)
	e.fs = cfs
	l := e.open(true, -1)
	for i := 0; i < 10; i++ {
		put(t, l, "k", fmt.Sprint(i))
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	put(t, l, "k", "lost") // 10, never synced
	for i := 11; i < 20; i++ {
		put(t, l, "other", fmt.Sprint(i))
	}
	l.SetHighWatermark(l.LogEndOffset())
	expectLookup(t, l, "k", "lost")
	if err := l.CheckpointKeyIndex(0); err != nil { // covers 20, synced
		t.Fatal(err)
	}
	crashClose(l)
	if err := cfs.CrashWith(vfs.CrashOptions{KeepUnsynced: vfs.KeepNone}); err != nil {
		t.Fatal(err)
	}
	l = e.open(false, 0)
	defer func() { l.Close() }()
	if l.LogEndOffset() != 10 {
		t.Fatalf("log end %d after the crash, want 10", l.LogEndOffset())
	}
	put(t, l, "k", "again") // 10
	for i := 11; i < 25; i++ {
		v := fmt.Sprint(i)
		key := "j"
		if i == 15 {
			key, v = "k", "newest"
		}
		put(t, l, key, v)
	}
	l.SetHighWatermark(l.LogEndOffset())
	expectLookup(t, l, "k", "newest")
	expectLookup(t, l, "j", "24")
}

// TestKeyIndexPurgesRemovedTombstones: once the cleaner removed expired
// tombstones, their entries leave the index (the next key-index
// checkpoint purges them), a lookup of such a key answers not-found from
// the table alone (no scan of the log), and the checkpoint written then
// holds the purged table. With every key sharing one digest, the entry
// of a removed tombstone falls back to the live value it covered.
func TestKeyIndexPurgesRemovedTombstones(t *testing.T) {
	for _, collide := range []bool{false, true} {
		t.Run(fmt.Sprintf("collisions=%v", collide), func(t *testing.T) {
			if collide {
				forceCollisions(t, 1)
			}
			e := compactEnv(t)
			e.cfg.SegmentBytes = 300
			e.cfg.FileDeleteDelay = 0
			l := e.open(true, -1)
			defer func() { l.Close() }()
			put(t, l, "live", "1")
			for i := 0; len(l.CleanerSegments()) < 3; i++ {
				put(t, l, fmt.Sprintf("fill%d", i%3), fmt.Sprint(i))
			}
			for i := 0; i < 4; i++ {
				put(t, l, fmt.Sprintf("dead%d", i), "1")
			}
			for i := 0; i < 4; i++ {
				put(t, l, fmt.Sprintf("dead%d", i), "\x00")
			}
			// The tombstones are the newest records (with one digest, the
			// one entry names the last) and in inactive segments.
			if err := l.Roll(); err != nil {
				t.Fatal(err)
			}
			l.SetHighWatermark(l.LogEndOffset())
			if err := l.LoadKeyIndex(); err != nil {
				t.Fatal(err)
			}
			before := l.KeyIndexStats()
			wantEntries := before.Entries - 4 // the four tombstones' entries go
			if collide {
				wantEntries = 1 // one digest: its entry now names a live value
			}

			// The cleaner: every record but each key's latest goes, and the
			// tombstones (their delete horizon passed) too.
			latest := latestByKey(readAll(t, l, 0))
			for i := 0; i < 4; i++ {
				latest[fmt.Sprintf("dead%d", i)] = -1
			}
			segs := l.CleanerSegments()
			if err := testCompact(t, l, segs[:len(segs)-1], segs[len(segs)-1], latest); err != nil {
				t.Fatal(err)
			}
			if err := l.CheckpointKeyIndex(keyIndexCheckpointEvery); err != nil {
				t.Fatal(err)
			}
			l.waitKeyIndexPurge() // the purge runs on its own goroutine
			st := l.KeyIndexStats()
			if st.Entries != wantEntries {
				t.Fatalf("index holds %d entries after the cleaner removed 4 tombstones, want %d (before: %d)", st.Entries, wantEntries, before.Entries)
			}
			expectLookup(t, l, "live", "1")
			if !collide {
				for i := 0; i < 4; i++ {
					expectLookup(t, l, fmt.Sprintf("dead%d", i), "")
				}
				if s := l.KeyIndexStats().SlowScans; s != 0 {
					t.Fatalf("%d lookups scanned the log, want none (the removed tombstones' entries are gone)", s)
				}
			}
			// The checkpoint is the purged table.
			buf, err := os.ReadFile(KeyIndexFileName(e.dir))
			if err != nil {
				t.Fatal(err)
			}
			c, err := ParseKeyIndexCheckpoint(buf)
			if err != nil || len(c.Entries) != wantEntries {
				t.Fatalf("checkpoint after the purge: %d entries (want %d), %v", len(c.Entries), wantEntries, err)
			}
			for _, en := range c.Entries {
				if en.Tombstone {
					t.Fatalf("checkpoint after the purge still names the tombstone at offset %d", en.Offset)
				}
			}
			// And a restart from it answers the same.
			leo := l.LogEndOffset()
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = e.open(true, leo)
			expectLookup(t, l, "live", "1")
			expectLookup(t, l, "dead0", "")
			if st := l.KeyIndexStats(); st.Entries != wantEntries || st.Replayed != 0 {
				t.Fatalf("after a restart: %d entries (want %d), %d records replayed (want 0)", st.Entries, wantEntries, st.Replayed)
			}
		})
	}
}

// TestKeyIndexPurgeDoesNotBlockCheckpoints: the purge of removed
// tombstones' entries runs on its own goroutine. While partition a's purge
// is held (gated), the manager's checkpoint pass returns and writes
// partition b's key-index checkpoint; once released, a's purge applies and
// writes a's checkpoint with the purged table.
func TestKeyIndexPurgeDoesNotBlockCheckpoints(t *testing.T) {
	e := compactEnv(t)
	e.cfg.FileDeleteDelay = 0
	small := e.cfg
	small.SegmentBytes = 300
	tpA, tpB := TopicPartition{Topic: "a", Partition: 0}, TopicPartition{Topic: "b", Partition: 0}
	cfgFor := func(tp TopicPartition) Config {
		if tp == tpA {
			return small
		}
		return e.cfg
	}
	m, err := OpenManager(ManagerOptions{Dirs: []string{t.TempDir()}, Clock: e.clk, Logger: quietLogger, ConfigFor: cfgFor})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	a, err := m.CreateLog(tpA, small)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.CreateLog(tpB, e.cfg)
	if err != nil {
		t.Fatal(err)
	}

	// a: four tombstones in inactive segments, then removed by the cleaner.
	put(t, a, "live", "1")
	for i := 0; len(a.CleanerSegments()) < 3; i++ {
		put(t, a, fmt.Sprintf("fill%d", i%3), fmt.Sprint(i))
	}
	for i := 0; i < 4; i++ {
		put(t, a, fmt.Sprintf("dead%d", i), "1")
		put(t, a, fmt.Sprintf("dead%d", i), "\x00")
	}
	if err := a.Roll(); err != nil {
		t.Fatal(err)
	}
	a.SetHighWatermark(a.LogEndOffset())
	if err := a.LoadKeyIndex(); err != nil {
		t.Fatal(err)
	}
	before := a.KeyIndexStats().Entries
	latest := latestByKey(readAll(t, a, 0))
	for i := 0; i < 4; i++ {
		latest[fmt.Sprintf("dead%d", i)] = -1
	}
	segs := a.CleanerSegments()
	if err := testCompact(t, a, segs[:len(segs)-1], segs[len(segs)-1], latest); err != nil {
		t.Fatal(err)
	}

	// b: enough new offsets for the periodic checkpoint to write it.
	recs := make([]testRecord, 1000)
	for n := 0; n < keyIndexCheckpointEvery; n += len(recs) {
		for i := range recs {
			recs[i] = testRecord{key: []byte(fmt.Sprintf("k%d", n+i)), value: []byte("v"), ts: 1000}
		}
		if _, err := b.Append(makeBatch(t, record.CodecNone, recs), 0); err != nil {
			t.Fatal(err)
		}
	}
	b.SetHighWatermark(b.LogEndOffset())
	if err := b.LoadKeyIndex(); err != nil {
		t.Fatal(err)
	}

	started, gate := make(chan struct{}), make(chan struct{})
	keyIndexPurgeHook = func(l *Log) {
		if l == a {
			close(started)
			<-gate
		}
	}
	released := false
	release := func() {
		if !released {
			released = true
			close(gate)
			a.waitKeyIndexPurge()
		}
	}
	t.Cleanup(func() { keyIndexPurgeHook = nil })
	defer release() // before m.Close: a purge held would hold up its checkpoints

	done := make(chan error, 1)
	go func() { done <- m.WriteCheckpoints() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the manager's checkpoint pass waits for partition a-0's purge of removed tombstones")
	}
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("no purge started for partition a-0")
	}
	buf, err := os.ReadFile(KeyIndexFileName(b.dir))
	if err != nil {
		t.Fatalf("partition b-0 has no key-index checkpoint while a-0's purge runs: %v", err)
	}
	if c, err := ParseKeyIndexCheckpoint(buf); err != nil || c.Covers != b.LogEndOffset() {
		t.Fatalf("b-0's checkpoint: covers %d (want %d), %v", c.Covers, b.LogEndOffset(), err)
	}
	if n := a.KeyIndexStats().Entries; n != before {
		t.Fatalf("a-0's index changed (%d entries, %d before) while its purge was held", n, before)
	}

	release()
	if n := a.KeyIndexStats().Entries; n != before-4 {
		t.Fatalf("a-0's index holds %d entries after its purge, want %d", n, before-4)
	}
	buf, err = os.ReadFile(KeyIndexFileName(a.dir))
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseKeyIndexCheckpoint(buf)
	if err != nil || len(c.Entries) != before-4 {
		t.Fatalf("a-0's checkpoint after the purge: %d entries (want %d), %v", len(c.Entries), before-4, err)
	}
}

// TestKeyIndexReadPaths: lookups read the record's batch through the
// segment's mapping and, without one, with positioned reads (the header
// first, then exactly the batch: small batches in one read, batches larger
// than the first read in two), in the active segment and in inactive
// ones, with batches of one record and of many, compressed or not.
func TestKeyIndexReadPaths(t *testing.T) {
	for _, mmap := range []bool{true, false} {
		t.Run(fmt.Sprintf("mmap=%v", mmap), func(t *testing.T) {
			old := lookupMmap
			lookupMmap = mmap
			t.Cleanup(func() { lookupMmap = old })
			e := compactEnv(t)
			e.cfg.SegmentBytes = 64 << 10
			e.cfg.IndexIntervalBytes = 4096
			l := e.open(true, -1)
			defer l.Close()
			want := map[string]string{}
			rng := rand.New(rand.NewPCG(7, 18))
			for i := 0; l.LogEndOffset() < 3000; i++ {
				n := 1
				if i%3 == 0 {
					n = 1 + rng.IntN(200) // up to ~25 KiB: beyond the first read
				}
				recs := make([]testRecord, n)
				for j := range recs {
					k := fmt.Sprintf("key-%d", rng.IntN(1500))
					v := fmt.Sprintf("%s-%d-%s", k, i, bytes.Repeat([]byte{'v'}, rng.IntN(120)))
					recs[j] = testRecord{key: []byte(k), value: []byte(v), ts: 1000}
					want[k] = v
				}
				if _, err := l.Append(makeBatch(t, record.Codec(i%3), recs), 0); err != nil {
					t.Fatal(err)
				}
			}
			if len(l.CleanerSegments()) < 3 {
				t.Fatalf("%d segments, want several", len(l.CleanerSegments()))
			}
			l.SetHighWatermark(l.LogEndOffset())
			for k, v := range want {
				expectLookup(t, l, k, v)
			}
			if s := l.KeyIndexStats().SlowScans; s != 0 {
				t.Fatalf("%d slow scans", s)
			}
		})
	}
}

// TestKeyIndexCheckpointDuplicateDigest: a version-1 checkpoint naming a
// digest twice (CRC and sizes right) is not used (version 2:
// TestKeyIndexCheckpointLayoutCorrupt): the index is rebuilt from the
// log and answers right.
func TestKeyIndexCheckpointDuplicateDigest(t *testing.T) {
	e := compactEnv(t)
	l := e.open(true, -1)
	put(t, l, "a", "1")
	put(t, l, "b", "2")
	l.SetHighWatermark(l.LogEndOffset())
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	d := keyDigest([]byte("a"))
	bad := EncodeKeyIndexCheckpoint(KeyIndexCheckpoint{Version: keyIndexV1, DigestID: keyDigestID, Covers: 2, Entries: []KeyIndexEntry{{Digest: d, Offset: 1}, {Digest: d, Offset: 0}}})
	if err := os.WriteFile(KeyIndexFileName(e.dir), bad, 0o644); err != nil {
		t.Fatal(err)
	}
	l = e.open(true, 2)
	defer l.Close()
	expectLookup(t, l, "a", "1")
	expectLookup(t, l, "b", "2")
	if s := l.KeyIndexStats(); s.Replayed != 2 || s.Entries != 2 {
		t.Fatalf("index after a checkpoint with a digest twice: %+v, want rebuilt from the log", s)
	}
}

// TestDigestTablePutBatch: a catch-up's sorted batches leave the table
// exactly as writes one by one would (the last write of a digest wins),
// within the table's load bounds, from an empty table and onto a full
// one, with batches mostly of new digests and mostly of rewrites.
func TestDigestTablePutBatch(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 18))
	var want, got digestTable
	var p putBatch
	for round, distinct := range []uint64{80_000, 1000, 50_000} {
		n := putSortMin*3 + rng.IntN(putSortMin)
		if round == 0 {
			n = 100_000
		}
		for i := 0; i < n; i++ {
			d := (rng.Uint64() % distinct) * 0x9E3779B97F4A7C15
			v := encodeEntry(Offset(round*10_000_000+i), rng.IntN(7) == 0)
			want.put(d, v)
			p.add(&got, d, v)
		}
		p.flush(&got)
		if got.len() != want.len() {
			t.Fatalf("round %d: %d entries, want %d", round, got.len(), want.len())
		}
		want.each(func(d, v uint64) {
			if g, ok := got.get(d); !ok || g != v {
				t.Fatalf("round %d: digest %#x: %#x, want %#x", round, d, g, v)
			}
		})
		if per := float64(got.bytes()) / float64(got.len()); per > 32 {
			t.Fatalf("round %d: %.1f bytes per entry, more than 32", round, per)
		}
	}
}

// TestKeyIndexSkipsAfterTruncation: a lookup in a batch of many records
// notes where its records start; a truncation below the batch and other
// records appended at the same file position (other sizes, other keys)
// are looked up right, not through the old batch's notes.
func TestKeyIndexSkipsAfterTruncation(t *testing.T) {
	for _, mmap := range []bool{true, false} {
		t.Run(fmt.Sprintf("mmap=%v", mmap), func(t *testing.T) {
			old := lookupMmap
			lookupMmap = mmap
			t.Cleanup(func() { lookupMmap = old })
			e := compactEnv(t)
			l := e.open(true, -1)
			defer l.Close()
			batch := func(prefix string, n, size int) {
				recs := make([]testRecord, n)
				for i := range recs {
					recs[i] = testRecord{key: []byte(fmt.Sprintf("%s%d", prefix, i)), value: bytes.Repeat([]byte(prefix), size), ts: 1000}
				}
				if _, err := l.Append(makeBatch(t, record.CodecNone, recs), 0); err != nil {
					t.Fatal(err)
				}
				l.SetHighWatermark(l.LogEndOffset())
			}
			put(t, l, "first", "1")
			batch("a", 100, 10)
			for i := 0; i < 100; i += 7 {
				expectLookup(t, l, fmt.Sprintf("a%d", i), strings.Repeat("a", 10))
			}
			if err := l.TruncateTo(1); err != nil {
				t.Fatal(err)
			}
			batch("bb", 100, 3)
			for i := 0; i < 100; i++ {
				expectLookup(t, l, fmt.Sprintf("bb%d", i), strings.Repeat("bb", 3))
				expectLookup(t, l, fmt.Sprintf("a%d", i), "")
			}
			if s := l.KeyIndexStats().SlowScans; s != 0 {
				t.Fatalf("%d slow scans", s)
			}
		})
	}
}

// TestNoteSkips: up to skipPoints records, evenly spaced, each with its
// offset delta and position; none for a section that does not parse.
func TestNoteSkips(t *testing.T) {
	for _, count := range []int{30, 200} {
		recs := make([]testRecord, count)
		for i := range recs {
			recs[i] = testRecord{key: []byte(fmt.Sprint("k", i)), value: bytes.Repeat([]byte{'v'}, i%50), ts: 1000}
		}
		b := record.Batch(makeBatch(t, record.CodecNone, recs))
		var dec record.Decoder
		section, err := dec.Section(b)
		if err != nil {
			t.Fatal(err)
		}
		note := noteSkips(section, b.NumRecords())
		gap := max(skipMinGap, (count+skipPoints-1)/skipPoints)
		if note == nil || int(note.gap) != gap || int(note.n) != (count+gap-1)/gap {
			t.Fatalf("%d records: note %+v, want gap %d", count, note, gap)
		}
		for i, p := range note.pts[:note.n] {
			var r record.Record
			found, err := dec.RecordAt(section[p.pos:], 1, p.delta, &r)
			if err != nil || !found || int(p.delta) != i*gap || string(r.Key) != fmt.Sprint("k", i*gap) {
				t.Fatalf("%d records: point %d: %+v: found %v key %q, %v", count, i, p, found, r.Key, err)
			}
		}
		if noteSkips(section[:len(section)-1], b.NumRecords()) != nil {
			t.Fatal("points for a truncated section")
		}
		if noteSkips(section, b.NumRecords()+1) != nil {
			t.Fatal("points for a section with a record missing")
		}
	}
}

func TestSkipTableFor(t *testing.T) {
	for _, c := range []struct {
		size int64
		want int
	}{{0, 256}, {2 << 20, 256}, {8 << 20, 1024}, {8<<20 + 1, 2048}, {1 << 40, skipSlots}} {
		if got := skipTableFor(c.size); got != c.want {
			t.Errorf("skipTableFor(%d) = %d, want %d", c.size, got, c.want)
		}
	}
}
