package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/engine/vfs"
)

// countFS counts directory listings.
type countFS struct {
	vfs.FS
	readDirs atomic.Int64
}

func (c *countFS) ReadDir(name string) ([]os.DirEntry, error) {
	c.readDirs.Add(1)
	return c.FS.ReadDir(name)
}

// manifestEnv is a log dir of several partitions: multi-segment logs,
// producer snapshots, leader epochs, a compacted partition with a key-index
// checkpoint, an empty partition.
type manifestEnv struct {
	t   *testing.T
	e   *testEnv
	dir string
}

func (me *manifestEnv) opts(dir string, fsys vfs.FS) ManagerOptions {
	e := me.e
	return ManagerOptions{Dirs: []string{dir}, FS: fsys, Clock: e.clk, Logger: quietLogger, ConfigFor: func(tp TopicPartition) Config {
		if tp.Topic == "c" {
			return me.compactCfg()
		}
		return e.cfg
	}}
}

func (me *manifestEnv) compactCfg() Config {
	c := me.e.cfg
	c.Compact, c.KeyIndex = true, true
	return c
}

func (me *manifestEnv) open(dir string) *Manager {
	me.t.Helper()
	m, err := OpenManager(me.opts(dir, nil))
	if err != nil {
		me.t.Fatal(err)
	}
	return m
}

// newManifestEnv writes the partitions and closes the manager cleanly.
func newManifestEnv(t *testing.T) *manifestEnv {
	e := newTestEnv(t)
	e.cfg.SegmentBytes = 1024
	me := &manifestEnv{t: t, e: e, dir: t.TempDir()}
	m := me.open(me.dir)
	ts := e.clk.Now().UnixMilli()
	for p := range 4 {
		l, err := m.CreateLog(TopicPartition{Topic: "r", Partition: int32(p)}, e.cfg)
		if err != nil {
			t.Fatal(err)
		}
		for i := range p * 15 {
			// An idempotent producer: the close writes a snapshot.
			b := txnBatch(t, 7, int32(2*i), false, 2, ts)
			if _, err := l.Append(b, int32(i/10)); err != nil {
				t.Fatal(err)
			}
		}
	}
	l, err := m.CreateLog(TopicPartition{Topic: "c", Partition: 0}, me.compactCfg())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(i%7, ts)}), 0); err != nil {
			t.Fatal(err)
		}
	}
	l.SetHighWatermark(l.LogEndOffset())
	if _, err := l.Lookup([]byte("k3")); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(me.dir, ManifestFile)); err != nil {
		t.Fatalf("no manifest after a clean close: %v", err)
	}
	return me
}

// describe is everything a loaded log shows: its segments, offsets,
// leader epochs and snapshots as loaded, its records, its key lookups,
// and where the next append lands.
func describe(t *testing.T, l *Log) string {
	t.Helper()
	var b strings.Builder
	for _, s := range l.segments() {
		fmt.Fprintf(&b, "seg %d size %d next %d; ", s.base, s.size.Load(), s.next.Load())
	}
	fmt.Fprintf(&b, "leo %d start %d rp %d hw %d epochs %v snapshots %v; ", l.LogEndOffset(), l.LogStartOffset(), l.RecoveryPoint(), l.HighWatermark(), l.Epochs().Entries(), l.snapshots)
	l.SetHighWatermark(l.LogEndOffset())
	var dec record.Decoder
	err := l.ReadBatches(l.LogStartOffset(), l.LogEndOffset(), func(bt record.Batch) error {
		return dec.Records(bt, func(r *record.Record) error {
			fmt.Fprintf(&b, "%d %s=%s; ", bt.BaseOffset()+int64(r.OffsetDelta), r.Key, r.Value)
			return nil
		})
	})
	fmt.Fprintf(&b, "read error %v; ", err != nil)
	if l.Config().keyIndexed() {
		for i := range 8 {
			v, err := l.Lookup([]byte(fmt.Sprintf("k%d", i)))
			fmt.Fprintf(&b, "lookup k%d %v %d %s %v; ", i, v.Found, v.Offset, v.Value, err != nil)
		}
	}
	// The producer state: the next sequence of producer 7 (two records a
	// batch so far) is accepted, or refused alike.
	res, err := l.Append(txnBatch(t, 7, int32(l.LogEndOffset()), false, 2, 1), 0)
	fmt.Fprintf(&b, "append %+v %v", res, err != nil)
	return b.String()
}

// describeAll describes every log of m.
func describeAll(t *testing.T, m *Manager) map[TopicPartition]string {
	t.Helper()
	out := map[TopicPartition]string{}
	for _, l := range m.Logs() {
		out[l.tp] = describe(t, l)
	}
	return out
}

// differential copies the log dir, opens the original (its manifest used)
// and the copy with every partition directory listed (no manifest), and
// checks they load the same logs. It returns how many logs the original
// loaded from its manifest.
func (me *manifestEnv) differential() int64 {
	t := me.t
	t.Helper()
	scan := t.TempDir()
	if err := os.CopyFS(scan, os.DirFS(me.dir)); err != nil {
		t.Fatal(err)
	}
	opts := me.opts(scan, nil)
	opts.noManifest = true
	ms, err := OpenManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close()
	m := me.open(me.dir)
	defer m.Close()
	got, want := describeAll(t, m), describeAll(t, ms)
	if len(got) != len(want) {
		t.Errorf("%d logs loaded with the manifest, %d listing every partition", len(got), len(want))
	}
	for tp, w := range want {
		if got[tp] != w {
			t.Errorf("%s loaded with the manifest:\n  %s\nlisting its directory:\n  %s", tp, got[tp], w)
		}
	}
	if _, err := os.Stat(filepath.Join(me.dir, ManifestFile)); !os.IsNotExist(err) {
		t.Errorf("manifest still there after the start-up: %v", err)
	}
	return m.manifestLoads.Load()
}

// TestManifestCleanRestart: after a clean close a start-up lists the log
// dir and no partition directory (the original listed each of them and
// read every leader-epoch checkpoint), and loads the same logs as a
// start-up listing every directory.
func TestManifestCleanRestart(t *testing.T) {
	me := newManifestEnv(t)
	fsys := &countFS{FS: vfs.Default}
	m, err := OpenManager(me.opts(me.dir, fsys))
	if err != nil {
		t.Fatal(err)
	}
	if n := fsys.readDirs.Load(); n != 1 {
		t.Errorf("%d directory listings at a clean start-up of 5 partitions, want 1 (the log dir)", n)
	}
	if n := m.manifestLoads.Load(); n != 5 {
		t.Errorf("%d logs loaded from the manifest, want 5", n)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if n := me.differential(); n != 5 {
		t.Errorf("%d logs loaded from the manifest, want 5", n)
	}
}

// TestManifestDirsChangedAfterIt: partitions added, removed or changed
// after the manifest was written, and one whose recovery point no longer
// matches, are listed; the others still load from it, and every log is
// what a full listing gives.
func TestManifestDirsChangedAfterIt(t *testing.T) {
	me := newManifestEnv(t)
	// Added: a copy of r-2 as r-9.
	if err := os.CopyFS(filepath.Join(me.dir, "r-9"), os.DirFS(filepath.Join(me.dir, "r-2"))); err != nil {
		t.Fatal(err)
	}
	// Removed: r-1.
	if err := os.RemoveAll(filepath.Join(me.dir, "r-1")); err != nil {
		t.Fatal(err)
	}
	// Changed: r-3 loses its first segment (the manifest still lists it).
	r3 := filepath.Join(me.dir, "r-3")
	segs := matching(t, r3, LogSuffix)
	if len(segs) < 2 {
		t.Fatalf("r-3 has %d segments, want several", len(segs))
	}
	first := strings.TrimSuffix(segs[0], LogSuffix)
	for _, suf := range []string{LogSuffix, IndexSuffix, TimeIndexSuffix} {
		if err := os.Remove(first + suf); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	if n := me.differential(); n != 3 { // r-0, r-2 and c-0
		t.Errorf("%d logs loaded from the manifest, want 3", n)
	}
}

// TestManifestRecoveryPointMismatch: a partition whose recovery-point
// checkpoint entry is not the end the manifest recorded is listed.
func TestManifestRecoveryPointMismatch(t *testing.T) {
	me := newManifestEnv(t)
	cp := filepath.Join(me.dir, RecoveryPointCheckpointFile)
	data, err := os.ReadFile(cp)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	for i, ln := range lines {
		if strings.HasPrefix(ln, "r 2 ") {
			lines[i] = "r 2 3"
		}
	}
	if err := os.WriteFile(cp, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	if n := me.differential(); n != 4 {
		t.Errorf("%d logs loaded from the manifest, want 4", n)
	}
}

// TestManifestTornOrCorrupt: a manifest that is torn, corrupt or not one
// at all is ignored whole: every partition is listed, with the same logs.
func TestManifestTornOrCorrupt(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(b []byte) []byte
	}{
		{"empty", func(b []byte) []byte { return nil }},
		{"header only", func(b []byte) []byte { return b[:10] }},
		{"last byte torn", func(b []byte) []byte { return b[:len(b)-1] }},
		{"half", func(b []byte) []byte { return b[:len(b)/2] }},
		{"flipped byte", func(b []byte) []byte { b[len(b)/2] ^= 0x40; return b }},
		{"zeroed tail", func(b []byte) []byte { clear(b[len(b)-20:]); return b }},
		{"bytes appended", func(b []byte) []byte { return append(b, 0, 0, 0, 0) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			me := newManifestEnv(t)
			path := filepath.Join(me.dir, ManifestFile)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, c.edit(b), 0o644); err != nil {
				t.Fatal(err)
			}
			if n := me.differential(); n != 0 {
				t.Errorf("%d logs loaded from a damaged manifest", n)
			}
		})
	}
}

// TestManifestFromAnOlderClose: the manifest of an earlier clean close put
// back after a later one describes the partitions changed since wrongly;
// they are listed, the unchanged ones load from it.
func TestManifestFromAnOlderClose(t *testing.T) {
	me := newManifestEnv(t)
	old, err := os.ReadFile(filepath.Join(me.dir, ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	m := me.open(me.dir)
	ts := me.e.clk.Now().UnixMilli()
	for _, p := range []int32{1, 3} {
		l, _ := m.Log(TopicPartition{Topic: "r", Partition: p})
		for range 20 { // r-3 rolls
			if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(1, ts)}), 2); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(me.dir, ManifestFile), old, 0o644); err != nil {
		t.Fatal(err)
	}
	if n := me.differential(); n != 3 { // r-0, r-2, c-0
		t.Errorf("%d logs loaded from the old manifest, want 3", n)
	}
}

// TestManifestIgnoredAfterUncleanStop: a start-up after a clean one
// removes the manifest; after a kill nothing uses one, even a manifest put
// back (no clean-shutdown marker), and everything appended is recovered.
func TestManifestIgnoredAfterUncleanStop(t *testing.T) {
	me := newManifestEnv(t)
	path := filepath.Join(me.dir, ManifestFile)
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := me.open(me.dir)
	if n := m.manifestLoads.Load(); n != 5 {
		t.Fatalf("%d logs loaded from the manifest, want 5", n)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("manifest still there after the start-up: %v", err)
	}
	ts := me.e.clk.Now().UnixMilli()
	ends := map[TopicPartition]Offset{}
	for _, l := range m.Logs() {
		for range 20 {
			if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(2, ts)}), 3); err != nil {
				t.Fatal(err)
			}
		}
		ends[l.tp] = l.LogEndOffset()
	}
	crashManager(m)
	if err := os.WriteFile(path, old, 0o644); err != nil {
		t.Fatal(err)
	}
	if n := me.differential(); n != 0 {
		t.Errorf("%d logs loaded from a manifest after an unclean stop", n)
	}
	m = me.open(me.dir)
	defer m.Close()
	for tp, end := range ends {
		if l, _ := m.Log(tp); l == nil || l.LogEndOffset() < end {
			t.Errorf("%s: recovered to %v, %d appended", tp, l, end)
		}
	}
}

// TestManifestWrittenAfterTheDirs: the manifest is newer than every
// partition directory's last change, so a change right after the close is
// seen whatever the timestamp granularity; its entries are what the
// directories hold.
func TestManifestWrittenAfterTheDirs(t *testing.T) {
	me := newManifestEnv(t)
	m := &Manager{opts: me.opts(me.dir, vfs.Default)}
	mf := m.readManifest(me.dir)
	if mf == nil || len(mf.entries) != 5 {
		t.Fatalf("manifest %+v", mf)
	}
	for tp, e := range mf.entries {
		dir := filepath.Join(me.dir, PartitionDirName(tp))
		ct, ok := changeTime(vfs.Default, dir)
		if !ok || ct != e.ctime || ct >= mf.mtime {
			t.Errorf("%s: change time %d (recorded %d), manifest written at %d", tp, ct, e.ctime, mf.mtime)
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		ls, err := scanListing(ents)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(ls.segs, ls.snapshots) != fmt.Sprint(e.ls.segs, e.ls.snapshots) {
			t.Errorf("%s: manifest lists %v %v, the directory %v %v", tp, e.ls.segs, e.ls.snapshots, ls.segs, ls.snapshots)
		}
		if ls.hasKeyIndex != (e.ls.covers >= 0) || tp.Topic == "c" && e.ls.covers <= 0 {
			t.Errorf("%s: key index covers %d recorded, file present %v", tp, e.ls.covers, ls.hasKeyIndex)
		}
		// A change right after: a file created in the directory.
		if err := os.WriteFile(filepath.Join(dir, "junk"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if mf.listing(vfs.Default, tp, dir, e.end) != nil {
			t.Errorf("%s: entry used after its directory changed", tp)
		}
	}
	// The encoding round-trips.
	var entries []*manifestEntry
	for _, e := range mf.entries {
		entries = append(entries, e)
	}
	back, err := decodeManifest(encodeManifest(entries))
	if err != nil || len(back) != len(mf.entries) {
		t.Fatalf("round trip: %d entries, %v", len(back), err)
	}
	for tp, e := range mf.entries {
		if fmt.Sprintf("%+v", *back[tp]) != fmt.Sprintf("%+v", *e) {
			t.Errorf("%s: %+v decoded as %+v", tp, *e, *back[tp])
		}
	}
}
