package checkpoint

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kvlog/kvlog/engine/vfs"
)

func readBytes(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestTopicPartitionString(t *testing.T) {
	if got := (TopicPartition{Topic: "user-profiles", Partition: 3}).String(); got != "user-profiles-3" {
		t.Fatalf("got %q", got)
	}
}

func TestWriteOffsetsGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    map[TopicPartition]int64
		want string
	}{
		{"empty", map[TopicPartition]int64{}, "0\n0\n"},
		{"nil", nil, "0\n0\n"},
		{"sorted by topic then partition", map[TopicPartition]int64{
			{"user-profiles", 10}:     7,
			{"user-profiles", 2}:      1234567890123,
			{"__consumer_offsets", 0}: 0,
			{"a.b_c", 1}:              42,
		}, "0\n4\n__consumer_offsets 0 0\na.b_c 1 42\nuser-profiles 2 1234567890123\nuser-profiles 10 7\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), RecoveryPointFile)
			if err := WriteOffsets(vfs.Default, path, tc.m); err != nil {
				t.Fatal(err)
			}
			if got := readBytes(t, path); got != tc.want {
				t.Fatalf("file %q, want %q", got, tc.want)
			}
			back, err := ReadOffsets(vfs.Default, path)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(back, tc.m) {
				t.Fatalf("read back %v, want %v", back, tc.m)
			}
			if _, err := os.Stat(path + TmpSuffix); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf(".tmp left behind: %v", err)
			}
		})
	}
}

func TestWriteOffsetsOverwrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), CleanerOffsetFile)
	for i, m := range []map[TopicPartition]int64{
		{{"t", 0}: 5, {"t", 1}: 6},
		{{"t", 0}: 9},
		{},
	} {
		if err := WriteOffsets(vfs.Default, path, m); err != nil {
			t.Fatal(err)
		}
		got, err := ReadOffsets(vfs.Default, path)
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(got, m) {
			t.Fatalf("write %d: read %v, want %v", i, got, m)
		}
	}
}

func TestReadOffsetsMissingFile(t *testing.T) {
	m, err := ReadOffsets(vfs.Default, filepath.Join(t.TempDir(), LogStartOffsetFile))
	if err != nil || m == nil || len(m) != 0 {
		t.Fatalf("got %v, %v; want an empty map", m, err)
	}
}

// TestReadOffsetsAccepts lists inputs Kafka's reader accepts.
func TestReadOffsetsAccepts(t *testing.T) {
	for _, tc := range []struct {
		name string
		data string
		want map[TopicPartition]int64
	}{
		{"empty file (Kafka creates checkpoints empty)", "", map[TopicPartition]int64{}},
		{"no entries", "0\n0\n", map[TopicPartition]int64{}},
		{"no final newline", "0\n1\nt 0 5", map[TopicPartition]int64{{"t", 0}: 5}},
		{"several spaces and tabs", "0\n1\nt  \t0   5\n", map[TopicPartition]int64{{"t", 0}: 5}},
		{"trailing white space", "0\n1\nt 0 5 \t\n", map[TopicPartition]int64{{"t", 0}: 5}},
		{"CRLF line endings", "0\r\n1\r\nt 0 5\r\n", map[TopicPartition]int64{{"t", 0}: 5}},
		{"plus signs", "+0\n+1\nt +3 +5\n", map[TopicPartition]int64{{"t", 3}: 5}},
		{"duplicate partition, last wins", "0\n2\nt 0 5\nt 0 9\n", map[TopicPartition]int64{{"t", 0}: 9}},
		{"max values", "0\n1\nt 2147483647 9223372036854775807\n", map[TopicPartition]int64{{"t", 2147483647}: 9223372036854775807}},
		{"unsorted", "0\n2\nz 1 1\na 0 0\n", map[TopicPartition]int64{{"z", 1}: 1, {"a", 0}: 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseOffsets("f", []byte(tc.data))
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestReadOffsetsMalformed is the named table of rejected files: each must
// return a *MalformedError matching ErrMalformed at the given line.
func TestReadOffsetsMalformed(t *testing.T) {
	for _, tc := range []struct {
		name string
		data string
		line int
	}{
		{"bad_version_text", "zero\n0\n", 1},
		{"unsupported_version", "1\n0\n", 1},
		{"negative_version", "-1\n0\n", 1},
		{"blank_version", "\n", 1},
		{"version_with_space", " 0\n0\n", 1},
		{"missing_count", "0\n", 2},
		{"count_not_number", "0\nthree\n", 2},
		{"negative_count", "0\n-1\n", 2},
		{"count_overflow", "0\n4294967296\n", 2},
		{"count_above_entries", "0\n2\nt 0 5\n", 2},
		{"count_below_entries", "0\n1\nt 0 5\nt 1 6\n", 2},
		{"count_missing_entries_torn", "0\n3\nt 0 5\nt 1 ", 2},
		{"non_numeric_partition", "0\n1\nt x 5\n", 3},
		{"non_numeric_offset", "0\n1\nt 0 5x\n", 3},
		{"hex_offset", "0\n1\nt 0 0x10\n", 3},
		{"negative_partition", "0\n1\nt -1 5\n", 3},
		{"negative_offset", "0\n1\nt 0 -5\n", 3},
		{"partition_overflow", "0\n1\nt 2147483648 5\n", 3},
		{"offset_overflow", "0\n1\nt 0 9223372036854775808\n", 3},
		{"extra_fields", "0\n1\nt 0 5 6\n", 3},
		{"missing_field", "0\n1\nt 0\n", 3},
		{"leading_space", "0\n1\n t 0 5\n", 3},
		{"blank_entry_line", "0\n2\nt 0 5\n\n", 4},
		{"illegal_topic_char", "0\n1\nt/x 0 5\n", 3},
		{"topic_dot", "0\n1\n. 0 5\n", 3},
		{"topic_too_long", "0\n1\n" + strings.Repeat("t", 250) + " 0 5\n", 3},
		{"nul_byte", "0\n1\nt\x000 5\n", 3},
		{"second_entry_bad", "0\n2\nt 0 5\nt 1 five\n", 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), RecoveryPointFile)
			if err := os.WriteFile(path, []byte(tc.data), 0o644); err != nil {
				t.Fatal(err)
			}
			m, err := ReadOffsets(vfs.Default, path)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v, %v; want ErrMalformed", m, err)
			}
			var me *MalformedError
			if !errors.As(err, &me) || me.Path != path || me.Line != tc.line {
				t.Fatalf("error %v: want path %s line %d", err, path, tc.line)
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name the file", err)
			}
		})
	}
}

func TestWriteOffsetsRejectsInvalidEntries(t *testing.T) {
	for _, m := range []map[TopicPartition]int64{
		{{"", 0}: 1},
		{{"has space", 0}: 1},
		{{"t\n", 0}: 1},
		{{"t", -1}: 1},
		{{"t", 0}: -1},
		{{"..", 0}: 1},
	} {
		path := filepath.Join(t.TempDir(), RecoveryPointFile)
		if err := WriteOffsets(vfs.Default, path, m); !errors.Is(err, ErrInvalidEntry) {
			t.Fatalf("%v: got %v, want ErrInvalidEntry", m, err)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%v: file written", m)
		}
	}
}

// TestWriteFileAtomicSequence pins the exact file-system protocol.
func TestWriteFileAtomicSequence(t *testing.T) {
	dir := t.TempDir()
	c := vfs.NewCrashFS(1)
	path := filepath.Join(dir, RecoveryPointFile)
	c.StartTrace(dir)
	if err := WriteOffsets(c, path, map[TopicPartition]int64{{"t", 0}: 5}); err != nil {
		t.Fatal(err)
	}
	if err := WriteOffsets(c, path, map[TopicPartition]int64{{"t", 0}: 6}); err != nil {
		t.Fatal(err)
	}
	got := c.StopTrace()
	want := []string{
		"create recovery-point-offset-checkpoint.tmp",
		"write recovery-point-offset-checkpoint.tmp 0 10",
		"sync recovery-point-offset-checkpoint.tmp",
		"rename recovery-point-offset-checkpoint.tmp recovery-point-offset-checkpoint",
		"syncdir .",
		"create recovery-point-offset-checkpoint.tmp",
		"write recovery-point-offset-checkpoint.tmp 0 10",
		"sync recovery-point-offset-checkpoint.tmp",
		"rename recovery-point-offset-checkpoint.tmp recovery-point-offset-checkpoint",
		"syncdir .",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("trace\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// stopFS passes the first `left` operations through and then fails every
// operation, like a machine that lost power: what happens after the stop
// point (including error-path cleanup) never reaches the disk.
type stopFS struct {
	vfs.FS
	left int
}

var errStopped = errors.New("stopped")

func (s *stopFS) step() error {
	if s.left <= 0 {
		return errStopped
	}
	s.left--
	return nil
}

func (s *stopFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	if err := s.step(); err != nil {
		return nil, err
	}
	f, err := s.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &stopFile{File: f, s: s}, nil
}

func (s *stopFS) Rename(a, b string) error {
	if err := s.step(); err != nil {
		return err
	}
	return s.FS.Rename(a, b)
}

func (s *stopFS) Remove(name string) error {
	if err := s.step(); err != nil {
		return err
	}
	return s.FS.Remove(name)
}

func (s *stopFS) SyncDir(name string) error {
	if err := s.step(); err != nil {
		return err
	}
	return s.FS.SyncDir(name)
}

type stopFile struct {
	vfs.File
	s *stopFS
}

func (f *stopFile) Write(p []byte) (int, error) {
	if err := f.s.step(); err != nil {
		return 0, err
	}
	return f.File.Write(p)
}

func (f *stopFile) Sync() error {
	if err := f.s.step(); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *stopFile) Close() error {
	if err := f.s.step(); err != nil {
		return err // the crash will invalidate the handle
	}
	return f.File.Close()
}

// TestWriteOffsetsCrashAtEveryStep stops the atomic write after every
// possible number of file-system operations, crashes in every mode, and
// checks the checkpoint then reads as exactly the old or the new content
// (the new one whenever the write had returned nil).
func TestWriteOffsetsCrashAtEveryStep(t *testing.T) {
	oldM := map[TopicPartition]int64{{"t", 0}: 5, {"t", 1}: 7}
	newM := map[TopicPartition]int64{{"t", 0}: 10, {"t", 1}: 12, {"u", 0}: 1}
	modes := []vfs.CrashOptions{
		{KeepUnsynced: vfs.KeepNone},
		{KeepUnsynced: vfs.KeepNone, TornTail: true},
		{KeepUnsynced: vfs.KeepAll},
		{KeepUnsynced: vfs.KeepRandom},
		{KeepUnsynced: vfs.KeepRandom, TornTail: true},
	}
	const steps = 7 // open, write, sync, close, rename, syncdir, +1 to complete
	outcomes := map[string]bool{}
	for stop := 0; stop <= steps; stop++ {
		for mi, mode := range modes {
			seeds := int64(1) // only random keeps and torn tails draw random numbers
			if mode.KeepUnsynced == vfs.KeepRandom || mode.TornTail {
				seeds = 8
			}
			for seed := range seeds {
				dir := t.TempDir()
				c := vfs.NewCrashFS(seed)
				path := filepath.Join(dir, RecoveryPointFile)
				if err := WriteOffsets(c, path, oldM); err != nil {
					t.Fatal(err)
				}
				err := WriteOffsets(&stopFS{FS: c, left: stop}, path, newM)
				if err := c.CrashWith(mode); err != nil {
					t.Fatal(err)
				}
				got, rerr := ReadOffsets(vfs.Default, path)
				if rerr != nil {
					t.Fatalf("stop %d mode %d seed %d: %v", stop, mi, seed, rerr)
				}
				switch {
				case err == nil && !maps.Equal(got, newM):
					t.Fatalf("stop %d mode %d seed %d: write succeeded but read %v", stop, mi, seed, got)
				case !maps.Equal(got, newM) && !maps.Equal(got, oldM):
					t.Fatalf("stop %d mode %d seed %d: read %v, neither old nor new", stop, mi, seed, got)
				}
				outcomes[map[bool]string{true: "new", false: "old"}[maps.Equal(got, newM)]] = true
				if stop == steps && err != nil {
					t.Fatalf("write did not complete in %d steps: %v", steps, err)
				}
			}
		}
	}
	if len(outcomes) != 2 {
		t.Fatalf("only saw outcomes %v", outcomes)
	}
}
