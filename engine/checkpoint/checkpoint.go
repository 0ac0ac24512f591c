// Package checkpoint owns the text checkpoint files of a log dir and of a
// partition: the offset checkpoints of a log dir
// (recovery-point-offset-checkpoint, log-start-offset-checkpoint,
// cleaner-offset-checkpoint) and a partition's leader-epoch-checkpoint.
// Formats are Apache Kafka's, byte for byte (see FORMAT.md), plus kvlog's
// synced-tail checkpoint of a log dir in the same layout; every file
// is replaced atomically: written to <name>.tmp, synced, renamed over
// <name>, directory synced.
package checkpoint

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kvlog/kvlog/engine/vfs"
)

// File names, Kafka's.
const (
	RecoveryPointFile  = "recovery-point-offset-checkpoint" // log dir
	LogStartOffsetFile = "log-start-offset-checkpoint"      // log dir
	CleanerOffsetFile  = "cleaner-offset-checkpoint"        // log dir
	LeaderEpochFile    = "leader-epoch-checkpoint"          // partition dir
	// TmpSuffix is appended to a checkpoint's name while it is rewritten. A
	// leftover .tmp file (a crash mid-write) is never read and is
	// overwritten by the next write.
	TmpSuffix = ".tmp"
)

// Version is the only checkpoint format version (line 1 of every file).
const Version = 0

var (
	// ErrMalformed is matched (errors.Is) by every error reporting a
	// checkpoint file that does not parse; the concrete error is a
	// *MalformedError naming the file and line.
	ErrMalformed = errors.New("checkpoint: malformed file")
	// ErrInvalidEntry reports an entry that cannot be written: a bad topic
	// name, a negative partition, offset or epoch.
	ErrInvalidEntry = errors.New("checkpoint: invalid entry")
)

// MalformedError describes where a checkpoint file fails to parse.
type MalformedError struct {
	Path   string
	Line   int    // 1-based line number
	Text   string // the offending line, cut to 80 bytes
	Reason string
}

func (e *MalformedError) Error() string {
	return fmt.Sprintf("checkpoint: malformed file %s line %d: %s: %q", e.Path, e.Line, e.Reason, e.Text)
}

// Unwrap makes errors.Is(err, ErrMalformed) true.
func (e *MalformedError) Unwrap() error { return ErrMalformed }

func malformed(path string, line int, text, reason string) error {
	if len(text) > 80 {
		text = text[:80]
	}
	return &MalformedError{Path: path, Line: line, Text: text, Reason: reason}
}

// WriteFileAtomic replaces path with data so that after a crash at any
// point path holds either its old or its new content: it writes
// path+".tmp" (created or truncated), fsyncs it, renames it over path and
// fsyncs path's directory (Kafka's CheckpointFile protocol). On failure
// the .tmp file is removed on a best-effort basis.
func WriteFileAtomic(fsys vfs.FS, path string, data []byte) error {
	tmp := path + TmpSuffix
	f, err := fsys.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("checkpoint: write %s: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsys.Rename(tmp, path)
	}
	if err != nil {
		fsys.Remove(tmp)
		return fmt.Errorf("checkpoint: write %s: %w", path, err)
	}
	if err := fsys.SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("checkpoint: write %s: %w", path, err)
	}
	return nil
}

// WriteFileStaged writes data to path's temporary file (path + TmpSuffix)
// without syncing it; InstallStaged then renames it over path. A batch of
// files is replaced atomically, as WriteFileAtomic replaces one, at the
// cost of two file-system syncs for the whole batch: stage every file,
// sync the file system (the new contents are durable), install every
// file, sync the file system again (the renames are durable). A crash
// before the installs leaves the old files and temporary files that
// start-up removes.
func WriteFileStaged(fsys vfs.FS, path string, data []byte) error {
	tmp := path + TmpSuffix
	f, err := fsys.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("checkpoint: stage %s: %w", path, err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fsys.Remove(tmp)
		return fmt.Errorf("checkpoint: stage %s: %w", path, err)
	}
	return nil
}

// InstallStaged renames the file WriteFileStaged wrote over path.
func InstallStaged(fsys vfs.FS, path string) error {
	if err := fsys.Rename(path+TmpSuffix, path); err != nil {
		return fmt.Errorf("checkpoint: install %s: %w", path, err)
	}
	return nil
}

// readFile returns the content of path; a missing file reads as nil.
func readFile(fsys vfs.FS, path string) ([]byte, error) {
	f, err := fsys.OpenFile(path, os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: read %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: read %s: %w", path, err)
	}
	return data, nil
}

// parseFile splits a checkpoint into its entry lines after checking the
// version and the count, calling entry with each line's fields (split on
// ASCII white space) and 1-based line number. Parsing follows Kafka's
// CheckpointFile reader: an empty file has no entries; the last line may
// lack its '\n'; a "\r\n" ending is accepted; fields may be separated by
// several white-space characters and followed by trailing white space, but
// a line may not start with white space. Unlike Kafka, a file holding only
// the version line is malformed (Kafka reads it as empty).
func parseFile(path string, data []byte, entry func(line int, text string, fields []string) error) error {
	if len(data) == 0 {
		return nil
	}
	lines := strings.Split(string(data), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	for i, l := range lines {
		lines[i] = strings.TrimSuffix(l, "\r")
	}
	v, err := strconv.ParseInt(lines[0], 10, 32)
	if err != nil {
		return malformed(path, 1, lines[0], "version is not a number")
	}
	if v != Version {
		return malformed(path, 1, lines[0], fmt.Sprintf("unsupported version %d (want %d)", v, Version))
	}
	if len(lines) < 2 {
		return malformed(path, 2, "", "missing entry count")
	}
	count, err := strconv.ParseInt(lines[1], 10, 32)
	if err != nil || count < 0 {
		return malformed(path, 2, lines[1], "entry count is not a non-negative number")
	}
	if got := int64(len(lines) - 2); got != count {
		return malformed(path, 2, lines[1], fmt.Sprintf("count says %d entries, file has %d", count, got))
	}
	for i, l := range lines[2:] {
		if l == "" || isSpace(l[0]) {
			return malformed(path, i+3, l, "empty line or leading white space")
		}
		if err := entry(i+3, l, strings.FieldsFunc(l, func(r rune) bool { return r < 0x80 && isSpace(byte(r)) })); err != nil {
			return err
		}
	}
	return nil
}

// isSpace is Java's \s: ASCII white space.
func isSpace(b byte) bool {
	switch b {
	case ' ', '\t', '\n', '\v', '\f', '\r':
		return true
	}
	return false
}

// formatFile renders the header and the given entry lines.
func formatFile(lines []string) []byte {
	var b strings.Builder
	b.WriteString(strconv.Itoa(Version))
	b.WriteByte('\n')
	b.WriteString(strconv.Itoa(len(lines)))
	b.WriteByte('\n')
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return []byte(b.String())
}
