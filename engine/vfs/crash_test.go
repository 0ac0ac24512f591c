package vfs

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

func mustOpen(t *testing.T, c *CrashFS, name string, flag int) File {
	t.Helper()
	f, err := c.OpenFile(name, flag, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func mustWrite(t *testing.T, f File, s string) {
	t.Helper()
	if _, err := f.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func content(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func exists(name string) bool {
	_, err := os.Lstat(name)
	return err == nil
}

// writeFileDurably creates name with data, synced and with its entry synced.
func writeFileDurably(t *testing.T, c *CrashFS, name, data string) {
	t.Helper()
	f := mustOpen(t, c, name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC)
	mustWrite(t, f, data)
	must(t, f.Sync())
	must(t, f.Close())
	must(t, c.SyncDir(filepath.Dir(name)))
}

func TestCrashKeepNoneKeepsExactlySyncedBytes(t *testing.T) {
	dir := t.TempDir()
	c := NewCrashFS(1)
	name := filepath.Join(dir, "seg.log")
	writeFileDurably(t, c, name, "synced|")
	f := mustOpen(t, c, name, os.O_WRONLY|os.O_APPEND)
	mustWrite(t, f, "lost1|")
	mustWrite(t, f, "lost2|")
	must(t, c.CrashWith(CrashOptions{KeepUnsynced: KeepNone}))
	if got := content(t, name); got != "synced|" {
		t.Fatalf("content %q, want only the synced bytes", got)
	}
}

func TestCrashKeepAllKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	c := NewCrashFS(1)
	name := filepath.Join(dir, "f")
	f := mustOpen(t, c, name, os.O_CREATE|os.O_RDWR)
	mustWrite(t, f, "abc")
	_, err := f.WriteAt([]byte("X"), 1)
	must(t, err)
	must(t, f.Truncate(5))
	must(t, c.Rename(name, name+"2"))
	must(t, c.CrashWith(CrashOptions{KeepUnsynced: KeepAll, TornTail: true}))
	if exists(name) {
		t.Fatal("old name came back")
	}
	if got := content(t, name+"2"); got != "aXc\x00\x00" {
		t.Fatalf("content %q", got)
	}
}

// TestCrashKeepFileChoosesPerFile: KeepFile overrides KeepUnsynced for the
// files it answers for, by the path they were tracked under.
func TestCrashKeepFileChoosesPerFile(t *testing.T) {
	dir := t.TempDir()
	c := NewCrashFS(1)
	old, next := filepath.Join(dir, "0.log"), filepath.Join(dir, "1.log")
	writeFileDurably(t, c, old, "synced|")
	f := mustOpen(t, c, old, os.O_WRONLY|os.O_APPEND)
	mustWrite(t, f, "tail|")
	writeFileDurably(t, c, next, "")
	g := mustOpen(t, c, next, os.O_WRONLY|os.O_APPEND)
	mustWrite(t, g, "first|")
	must(t, c.CrashWith(CrashOptions{KeepUnsynced: KeepAll, KeepFile: func(p string) (KeepMode, bool) {
		return KeepNone, p == old
	}}))
	if got := content(t, old); got != "synced|" {
		t.Fatalf("%s: %q, want its unsynced tail lost", old, got)
	}
	if got := content(t, next); got != "first|" {
		t.Fatalf("%s: %q, want its unsynced write kept", next, got)
	}
}

// TestCrashRandomKeepsSyncedPlusPrefix checks the content model over many
// seeds: the synced bytes always survive, and what follows is the state
// after some prefix of the unsynced operations; every prefix occurs.
func TestCrashRandomKeepsSyncedPlusPrefix(t *testing.T) {
	dir := t.TempDir()
	writes := []string{"aaaa", "bbbb", "cccc"}
	// States after 0..3 unsynced operations: two appends, then an
	// overwrite of the synced region.
	states := []string{"SYNCED", "SYNCEDaaaa", "SYNCEDaaaabbbb", "SYNxxDaaaabbbb"}
	seen := map[string]bool{}
	for seed := range int64(60) {
		c := NewCrashFS(seed)
		name := filepath.Join(dir, "f")
		os.Remove(name)
		writeFileDurably(t, c, name, "SYNCED")
		f := mustOpen(t, c, name, os.O_RDWR)
		_, err := f.Seek(0, 2)
		must(t, err)
		mustWrite(t, f, writes[0])
		mustWrite(t, f, writes[1])
		_, err = f.WriteAt([]byte("xx"), 3)
		must(t, err)
		must(t, c.Crash())
		got := content(t, name)
		if !slices.Contains(states, got) {
			t.Fatalf("seed %d: content %q is not the state after a prefix of the writes", seed, got)
		}
		seen[got] = true
		must(t, f.Close()) // no-op after crash
	}
	if len(seen) != len(states) {
		t.Fatalf("over 60 seeds only saw %v", seen)
	}
}

func TestCrashTornTail(t *testing.T) {
	dir := t.TempDir()
	kinds := map[string]bool{}
	for seed := range int64(60) {
		c := NewCrashFS(seed)
		name := filepath.Join(dir, "f")
		os.Remove(name)
		writeFileDurably(t, c, name, "HEAD")
		f := mustOpen(t, c, name, os.O_WRONLY|os.O_APPEND)
		mustWrite(t, f, "0123456789")
		must(t, c.CrashWith(CrashOptions{KeepUnsynced: KeepNone, TornTail: true}))
		got := content(t, name)
		if !strings.HasPrefix(got, "HEAD") || len(got) < 5 || len(got) > 14 {
			t.Fatalf("seed %d: torn content %q", seed, got)
		}
		tail := got[4:]
		switch {
		case strings.HasPrefix("0123456789", tail):
			kinds["real"] = true
		case strings.Trim(tail, "\x00") == "":
			kinds["zeros"] = true
		default:
			kinds["garbage"] = true
		}
	}
	if len(kinds) != 3 {
		t.Fatalf("torn tails seen: %v", kinds)
	}
}

func TestCrashUndoesTruncate(t *testing.T) {
	dir := t.TempDir()
	c := NewCrashFS(1)
	name := filepath.Join(dir, "f")
	writeFileDurably(t, c, name, "0123456789")
	f := mustOpen(t, c, name, os.O_RDWR)
	must(t, f.Truncate(3))
	must(t, f.Truncate(20))
	must(t, c.CrashWith(CrashOptions{KeepUnsynced: KeepNone}))
	if got := content(t, name); got != "0123456789" {
		t.Fatalf("content %q", got)
	}

	// O_TRUNC opens are undone as well.
	g := mustOpen(t, c, name, os.O_WRONLY|os.O_TRUNC)
	mustWrite(t, g, "new")
	must(t, c.CrashWith(CrashOptions{KeepUnsynced: KeepNone}))
	if got := content(t, name); got != "0123456789" {
		t.Fatalf("content after O_TRUNC crash %q", got)
	}
}

func TestCrashSyncThroughOtherHandle(t *testing.T) {
	dir := t.TempDir()
	c := NewCrashFS(1)
	name := filepath.Join(dir, "f")
	writeFileDurably(t, c, name, "")
	w := mustOpen(t, c, name, os.O_WRONLY|os.O_APPEND)
	mustWrite(t, w, "data")
	must(t, w.Close()) // closing does not sync
	r := mustOpen(t, c, name, os.O_RDONLY)
	must(t, r.Sync())
	must(t, c.CrashWith(CrashOptions{KeepUnsynced: KeepNone}))
	if got := content(t, name); got != "data" {
		t.Fatalf("content %q", got)
	}
}

func TestCrashDirOps(t *testing.T) {
	type env struct {
		t   *testing.T
		c   *CrashFS
		dir string
	}
	p := func(e env, n string) string { return filepath.Join(e.dir, n) }
	cases := []struct {
		name  string
		setup func(e env) // durable starting state
		ops   func(e env) // directory operations, dir not synced
		want  map[string]string
		// wantSynced is the state when e.dir is synced after ops; nil
		// means the state after ops.
		wantSynced map[string]string
	}{
		{
			name: "create",
			ops: func(e env) {
				f := mustOpen(e.t, e.c, p(e, "a"), os.O_CREATE|os.O_WRONLY)
				mustWrite(e.t, f, "A")
				must(e.t, f.Sync())
			},
			want:       map[string]string{},
			wantSynced: map[string]string{"a": "A"},
		},
		{
			name:  "remove",
			setup: func(e env) { writeFileDurably(e.t, e.c, p(e, "a"), "A") },
			ops:   func(e env) { must(e.t, e.c.Remove(p(e, "a"))) },
			want:  map[string]string{"a": "A"},
		},
		{
			name:  "rename",
			setup: func(e env) { writeFileDurably(e.t, e.c, p(e, "a"), "A") },
			ops:   func(e env) { must(e.t, e.c.Rename(p(e, "a"), p(e, "b"))) },
			want:  map[string]string{"a": "A"},
		},
		{
			name: "rename over",
			setup: func(e env) {
				writeFileDurably(e.t, e.c, p(e, "a"), "A")
				writeFileDurably(e.t, e.c, p(e, "b"), "B")
			},
			ops:  func(e env) { must(e.t, e.c.Rename(p(e, "a"), p(e, "b"))) },
			want: map[string]string{"a": "A", "b": "B"},
		},
		{
			name: "atomic replace",
			setup: func(e env) {
				writeFileDurably(e.t, e.c, p(e, "cp"), "old")
			},
			ops: func(e env) {
				f := mustOpen(e.t, e.c, p(e, "cp.tmp"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC)
				mustWrite(e.t, f, "new")
				must(e.t, f.Sync())
				must(e.t, f.Close())
				must(e.t, e.c.Rename(p(e, "cp.tmp"), p(e, "cp")))
			},
			want:       map[string]string{"cp": "old"},
			wantSynced: map[string]string{"cp": "new"},
		},
		{
			name: "remove unsynced-written file",
			setup: func(e env) {
				writeFileDurably(e.t, e.c, p(e, "a"), "A")
			},
			ops: func(e env) {
				f := mustOpen(e.t, e.c, p(e, "a"), os.O_WRONLY|os.O_APPEND)
				mustWrite(e.t, f, "lost")
				must(e.t, f.Close())
				must(e.t, e.c.Remove(p(e, "a")))
			},
			want:       map[string]string{"a": "A"},
			wantSynced: map[string]string{},
		},
		{
			name: "removeall",
			setup: func(e env) {
				must(e.t, e.c.MkdirAll(p(e, "t-0/sub"), 0o755))
				writeFileDurably(e.t, e.c, p(e, "t-0/x"), "X")
				writeFileDurably(e.t, e.c, p(e, "t-0/sub/y"), "Y")
				must(e.t, e.c.SyncDir(e.dir))
				must(e.t, e.c.SyncDir(p(e, "t-0")))
			},
			ops:  func(e env) { must(e.t, e.c.RemoveAll(p(e, "t-0"))) },
			want: map[string]string{"t-0/": "", "t-0/sub/": "", "t-0/x": "X", "t-0/sub/y": "Y"},
		},
		{
			name: "mkdirall",
			ops: func(e env) {
				must(e.t, e.c.MkdirAll(p(e, "d1/d2"), 0o755))
				writeFileDurably(e.t, e.c, p(e, "d1/d2/f"), "F") // syncs d2 only
			},
			want: map[string]string{},
			// Syncing e.dir makes d1 durable, but d2's entry lives in
			// d1, which was never synced.
			wantSynced: map[string]string{"d1/": ""},
		},
		{
			name: "remove dir",
			setup: func(e env) {
				must(e.t, e.c.MkdirAll(p(e, "d"), 0o755))
				must(e.t, e.c.SyncDir(e.dir))
			},
			ops:  func(e env) { must(e.t, e.c.Remove(p(e, "d"))) },
			want: map[string]string{"d/": ""},
		},
	}
	for _, tc := range cases {
		for _, synced := range []bool{false, true} {
			name := tc.name + map[bool]string{false: "/unsynced", true: "/synced"}[synced]
			t.Run(name, func(t *testing.T) {
				e := env{t: t, c: NewCrashFS(7), dir: t.TempDir()}
				if tc.setup != nil {
					tc.setup(e)
				}
				before := tree(t, e.dir)
				tc.ops(e)
				after := tree(t, e.dir)
				if synced {
					must(t, e.c.SyncDir(e.dir))
				}
				must(t, e.c.CrashWith(CrashOptions{KeepUnsynced: KeepNone}))
				got := tree(t, e.dir)
				want := tc.want
				if synced {
					want = tc.wantSynced
					if want == nil {
						want = after
					}
				}
				if !mapsEqual(got, want) {
					t.Fatalf("after crash %v, want %v (before ops %v, after ops %v)", got, want, before, after)
				}
			})
		}
	}
}

// tree maps every path under dir (directories with a trailing slash) to its
// content.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			m[rel+"/"] = ""
			return nil
		}
		b, err := os.ReadFile(p)
		m[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestCrashRandomDirOpsArePrefix checks that a random crash keeps a prefix
// of the unsynced directory operations, and that every prefix occurs.
func TestCrashRandomDirOpsArePrefix(t *testing.T) {
	states := map[string]bool{}
	var order []string
	for seed := range int64(60) {
		dir := t.TempDir()
		c := NewCrashFS(seed)
		p := func(n string) string { return filepath.Join(dir, n) }
		var want []string
		snap := func() { want = append(want, treeString(t, dir)) }
		snap()
		f := mustOpen(t, c, p("a"), os.O_CREATE|os.O_WRONLY)
		must(t, f.Sync())
		must(t, f.Close())
		snap()
		must(t, c.Rename(p("a"), p("b")))
		snap()
		must(t, c.MkdirAll(p("d"), 0o755))
		snap()
		must(t, c.Remove(p("b")))
		snap()
		must(t, c.Crash())
		got := treeString(t, dir)
		if !slices.Contains(want, got) {
			t.Fatalf("seed %d: %q is not a prefix state of %q", seed, got, want)
		}
		states[got] = true
		order = want
	}
	if len(states) != len(order) {
		t.Fatalf("saw %d of %d prefix states", len(states), len(order))
	}
}

func treeString(t *testing.T, dir string) string {
	m := tree(t, dir)
	keys := make([]string, 0, len(m))
	for k, v := range m {
		keys = append(keys, k+"="+v)
	}
	slices.Sort(keys)
	return strings.Join(keys, ",")
}

func TestCrashCrossDirRenameNeedsBothDirs(t *testing.T) {
	for _, syncBoth := range []bool{false, true} {
		root := t.TempDir()
		c := NewCrashFS(3)
		must(t, c.MkdirAll(filepath.Join(root, "x"), 0o755))
		must(t, c.MkdirAll(filepath.Join(root, "y"), 0o755))
		must(t, c.SyncDir(root))
		writeFileDurably(t, c, filepath.Join(root, "x", "f"), "F")
		must(t, c.Rename(filepath.Join(root, "x", "f"), filepath.Join(root, "y", "f")))
		must(t, c.SyncDir(filepath.Join(root, "y")))
		if syncBoth {
			must(t, c.SyncDir(filepath.Join(root, "x")))
		}
		must(t, c.CrashWith(CrashOptions{KeepUnsynced: KeepNone}))
		got := treeString(t, root)
		want := "x/=,x/f=F,y/="
		if syncBoth {
			want = "x/=,y/=,y/f=F"
		}
		if got != want {
			t.Fatalf("syncBoth=%v: %q, want %q", syncBoth, got, want)
		}
	}
}

func TestCrashInvalidatesHandles(t *testing.T) {
	dir := t.TempDir()
	c := NewCrashFS(1)
	name := filepath.Join(dir, "f")
	writeFileDurably(t, c, name, "abc")
	f := mustOpen(t, c, name, os.O_RDWR)
	must(t, c.Crash())
	if _, err := f.Write([]byte("x")); !errors.Is(err, ErrCrashed) {
		t.Fatalf("write after crash: %v", err)
	}
	if err := f.Sync(); !errors.Is(err, ErrCrashed) {
		t.Fatalf("sync after crash: %v", err)
	}
	if _, err := f.ReadAt(make([]byte, 1), 0); !errors.Is(err, ErrCrashed) {
		t.Fatalf("read after crash: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close after crash: %v", err)
	}
	// The FS works again after the crash.
	g := mustOpen(t, c, name, os.O_WRONLY|os.O_APPEND)
	mustWrite(t, g, "d")
	must(t, g.Sync())
	must(t, g.Close())
	must(t, c.CrashWith(CrashOptions{KeepUnsynced: KeepNone}))
	if got := content(t, name); got != "abcd" {
		t.Fatalf("content %q", got)
	}
}

func TestCrashDeterministic(t *testing.T) {
	run := func() string {
		dir := t.TempDir()
		c := NewCrashFS(42)
		for _, n := range []string{"a", "b", "c", "d"} {
			f := mustOpen(t, c, filepath.Join(dir, n), os.O_CREATE|os.O_WRONLY)
			for i := range 5 {
				mustWrite(t, f, strings.Repeat(n, i+1))
			}
		}
		must(t, c.CrashWith(CrashOptions{TornTail: true}))
		return treeString(t, dir)
	}
	if a, b := run(), run(); a != b {
		t.Fatalf("same seed, different outcomes:\n%q\n%q", a, b)
	}
}

func TestCrashReleasesDescriptors(t *testing.T) {
	dir := t.TempDir()
	c := NewCrashFS(1)
	for i := range 50 {
		writeFileDurably(t, c, filepath.Join(dir, strings.Repeat("x", i+1)), "data")
	}
	c.mu.Lock()
	n := len(c.nodes)
	c.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d nodes tracked after everything is durable and closed", n)
	}
}

func TestCrashTrace(t *testing.T) {
	dir := t.TempDir()
	c := NewCrashFS(1)
	c.StartTrace(dir)
	f := mustOpen(t, c, filepath.Join(dir, "cp.tmp"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC)
	mustWrite(t, f, "0\n0\n")
	must(t, f.Sync())
	must(t, f.Close())
	must(t, c.Rename(filepath.Join(dir, "cp.tmp"), filepath.Join(dir, "cp")))
	must(t, c.SyncDir(dir))
	got := c.StopTrace()
	want := []string{"create cp.tmp", "write cp.tmp 0 4", "sync cp.tmp", "rename cp.tmp cp", "syncdir ."}
	if !slices.Equal(got, want) {
		t.Fatalf("trace %q, want %q", got, want)
	}
}

func TestCrashFSConcurrentUse(t *testing.T) {
	dir := t.TempDir()
	c := NewCrashFS(9)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := filepath.Join(dir, string(rune('a'+g)))
			f, err := c.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o644)
			if err != nil {
				t.Error(err)
				return
			}
			for i := range 100 {
				if _, err := f.Write([]byte{byte(i)}); err != nil {
					t.Error(err)
					return
				}
				if i%10 == 0 {
					f.Sync()
				}
				f.ReadAt(make([]byte, 1), 0)
			}
			f.Close()
			c.SyncDir(dir)
		}()
	}
	wg.Wait()
	must(t, c.Crash())
	for g := range 4 {
		b, err := os.ReadFile(filepath.Join(dir, string(rune('a'+g))))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < 91 {
			t.Fatalf("file %d lost synced bytes: %d left", g, len(b))
		}
		for i, v := range b {
			if v != byte(i) {
				t.Fatalf("file %d byte %d = %d", g, i, v)
			}
		}
	}
}

func TestCrashFSGivesRealFiles(t *testing.T) {
	dir := t.TempDir()
	c := NewCrashFS(1)
	f := mustOpen(t, c, filepath.Join(dir, "f"), os.O_CREATE|os.O_RDWR)
	defer f.Close()
	if f.OSFile() == nil || f.Fd() != f.OSFile().Fd() {
		t.Fatal("no real os file")
	}
	mustWrite(t, f, "hello")
	b := make([]byte, 5)
	if _, err := f.OSFile().ReadAt(b, 0); err != nil || !bytes.Equal(b, []byte("hello")) {
		t.Fatalf("os file read %q %v", b, err)
	}
}
