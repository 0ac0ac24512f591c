package metastore

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/kvlog/kvlog/engine/vfs"
)

func topicNames(s *Local) []string {
	var out []string
	for _, t := range s.Topics() {
		out = append(out, t.Name)
	}
	return out
}

func captureLogger() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewTextHandler(&buf, nil)), &buf
}

// A corrupt current file falls back to the previous generation, says so at
// WARN, keeps the corrupt file aside and rewrites the current one.
func TestLocalFallsBackToPreviousGeneration(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenLocal(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	cid := s.ClusterID()
	for _, n := range []string{"a", "b"} {
		if err := s.CreateTopic(Topic{Name: n, ID: NewTopicID(), Partitions: 1, ReplicationFactor: 1}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()

	cur := filepath.Join(dir, LocalFileName)
	b, err := os.ReadFile(cur)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte(`"b"`))
	if i < 0 {
		t.Fatalf("no topic b in %s", b)
	}
	b[i+1] = 'c' // still valid JSON: only the checksum can tell
	if err := os.WriteFile(cur, b, 0o644); err != nil {
		t.Fatal(err)
	}

	log, out := captureLogger()
	s, err = OpenLocalWith(dir, "", LocalOptions{Logger: log})
	if err != nil {
		t.Fatalf("open with a corrupt current generation: %v", err)
	}
	if got := topicNames(s); !slices.Equal(got, []string{"a"}) || s.ClusterID() != cid {
		t.Fatalf("topics %v cluster %q, want the previous generation [a] %q", got, s.ClusterID(), cid)
	}
	if !strings.Contains(out.String(), "level=WARN") || !strings.Contains(out.String(), LocalFileName+PrevSuffix) || !strings.Contains(out.String(), "checksum") {
		t.Fatalf("no WARN naming the generation used and why:\n%s", out)
	}
	if _, err := os.Stat(cur + corruptSuffix); err != nil {
		t.Fatalf("corrupt file not kept aside: %v", err)
	}
	if err := s.CreateTopic(Topic{Name: "d", ID: NewTopicID(), Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	log, out = captureLogger()
	s, err = OpenLocalWith(dir, "", LocalOptions{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := topicNames(s); !slices.Equal(got, []string{"a", "d"}) {
		t.Fatalf("topics %v after repair, want [a d]", got)
	}
	if strings.Contains(out.String(), "level=WARN") {
		t.Fatalf("warning after the store was repaired:\n%s", out)
	}
}

func TestLocalNoUsableGeneration(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenLocal(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTopic(Topic{Name: "a", ID: NewTopicID(), Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, f := range []string{LocalFileName, LocalFileName + PrevSuffix} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("{\"version\": 2, \"gener"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := OpenLocal(dir, ""); err == nil || !strings.Contains(err.Error(), LocalFileName+PrevSuffix) {
		t.Fatalf("open with both generations corrupt: %v", err)
	}
	// A version from a newer release is not corruption: no fallback.
	if err := os.WriteFile(filepath.Join(dir, LocalFileName), []byte(`{"version": 9}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLocal(dir, ""); !errors.Is(err, errUnsupportedVersion) {
		t.Fatalf("open with version 9: %v", err)
	}
}

// The bare version-1 document of earlier releases is read, and the first
// write keeps it as the previous generation.
func TestLocalReadsVersion1(t *testing.T) {
	dir := t.TempDir()
	v1 := `{"version": 1, "cluster_id": "abc", "topics": {"a": {"name": "a", "partitions": 2, "replication_factor": 1}}, "producer_id_block_end": 1000}`
	if err := os.WriteFile(filepath.Join(dir, LocalFileName), []byte(v1), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := OpenLocal(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if s.ClusterID() != "abc" || !slices.Equal(topicNames(s), []string{"a"}) {
		t.Fatalf("cluster %q topics %v", s.ClusterID(), topicNames(s))
	}
	if pid, err := s.NextProducerID(); err != nil || pid != 1000 {
		t.Fatalf("producer id %d %v", pid, err)
	}
	s.Close()
	prev, err := os.ReadFile(filepath.Join(dir, LocalFileName+PrevSuffix))
	if err != nil || string(prev) != v1 {
		t.Fatalf("previous generation %q %v, want the version-1 file", prev, err)
	}
	cur, _ := os.ReadFile(filepath.Join(dir, LocalFileName))
	if _, gen, err := decode("cur", cur); err != nil || gen != 1 {
		t.Fatalf("current file: generation %d %v", gen, err)
	}
}

// noSpaceFS fails every write with ENOSPC while full is set; creating an
// empty file still works, as on a full file system with free inodes.
type noSpaceFS struct {
	vfs.FS
	full bool
}

type noSpaceFile struct {
	vfs.File
	fs *noSpaceFS
}

func (f *noSpaceFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &noSpaceFile{file, f}, nil
}

func (f *noSpaceFile) Write(p []byte) (int, error) {
	if f.fs.full && len(p) > 0 {
		return 0, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	return f.File.Write(p)
}

// Deleting a topic works when the metadata cannot be rewritten for lack of
// space: the deletion is recorded in a marker file and survives a restart.
func TestLocalDeleteTopicOnFullDisk(t *testing.T) {
	dir := t.TempDir()
	fsys := &noSpaceFS{FS: vfs.Default}
	s, err := OpenLocalWith(dir, "", LocalOptions{FS: fsys})
	if err != nil {
		t.Fatal(err)
	}
	id := NewTopicID()
	for _, tp := range []Topic{{Name: "big", ID: id, Partitions: 3}, {Name: "keep", ID: NewTopicID(), Partitions: 1}} {
		if err := s.CreateTopic(tp); err != nil {
			t.Fatal(err)
		}
	}
	fsys.full = true
	if err := s.CreateTopic(Topic{Name: "new", ID: NewTopicID(), Partitions: 1}); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("create on a full disk: %v", err)
	}
	if err := s.DeleteTopic("big"); err != nil {
		t.Fatalf("delete on a full disk: %v", err)
	}
	if got := topicNames(s); !slices.Equal(got, []string{"keep"}) {
		t.Fatalf("topics %v", got)
	}
	marker := filepath.Join(dir, markerName(id))
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("no deletion marker: %v", err)
	}
	// Crash here (no more writes): the restart finishes the deletion.
	s.Close()
	s, err = OpenLocal(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := topicNames(s); !slices.Equal(got, []string{"keep"}) {
		t.Fatalf("topics after restart %v: deletion lost", got)
	}
	if p := s.PendingDeletions(); len(p) != 1 || p[0].Name != "big" || p[0].Partitions != 3 {
		t.Fatalf("pending deletions %+v", p)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("marker still there after a generation holding the deletion was written: %v", err)
	}
	// A re-created topic of the same name is not hit by an old marker.
	if err := s.DeletionDone("big"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTopic(Topic{Name: "big", ID: NewTopicID(), Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = OpenLocal(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := topicNames(s); !slices.Equal(got, []string{"big", "keep"}) {
		t.Fatalf("topics %v: a stale marker deleted the new incarnation", got)
	}
}

// A crash at every step of a write leaves a store that opens with the
// state before or after the change, never an error and never anything
// else, with and without torn writes.
func TestLocalCrashAtEveryStep(t *testing.T) {
	for _, torn := range []bool{false, true} {
		for step := 0; step < 12; step++ {
			t.Run(fmt.Sprintf("torn=%v/step=%d", torn, step), func(t *testing.T) {
				dir := t.TempDir()
				crash := vfs.NewCrashFS(int64(step))
				fail := vfs.NewFailFS(crash)
				s, err := OpenLocalWith(dir, "", LocalOptions{FS: fail})
				if err != nil {
					t.Fatal(err)
				}
				for _, n := range []string{"a", "b"} {
					if err := s.CreateTopic(Topic{Name: n, ID: NewTopicID(), Partitions: 1}); err != nil {
						t.Fatal(err)
					}
				}
				fail.SetBudget(step)
				err = s.CreateTopic(Topic{Name: "c", ID: NewTopicID(), Partitions: 1})
				s.Close()
				if cerr := crash.CrashWith(vfs.CrashOptions{TornTail: torn}); cerr != nil {
					t.Fatal(cerr)
				}
				s, oerr := OpenLocal(dir, "")
				if oerr != nil {
					t.Fatalf("open after a crash at step %d (write err %v): %v", step, err, oerr)
				}
				defer s.Close()
				got := topicNames(s)
				if !slices.Equal(got, []string{"a", "b"}) && !slices.Equal(got, []string{"a", "b", "c"}) {
					t.Fatalf("topics %v after a crash at step %d", got, step)
				}
				if err == nil && !fail.Exhausted() && !slices.Equal(got, []string{"a", "b", "c"}) {
					t.Fatalf("acknowledged change lost: %v", got)
				}
			})
		}
	}
}
