package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kvlog/kvlog/client/clienttest"
	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/internal/testbroker"
)

const goldenDir = "../../engine/testdata/golden"

// TestDumpGoldenFixture dumps the engine's golden log dir (every file kind)
// and compares with testdata/dump-golden.txt.
func TestDumpGoldenFixture(t *testing.T) {
	r := runCLI(t, "", "dump", "--deep", "--values", "--verify-index",
		filepath.Join(goldenDir, "golden-0"),
		filepath.Join(goldenDir, "recovery-point-offset-checkpoint"),
		filepath.Join(goldenDir, "log-start-offset-checkpoint"))
	r.expect(t, exitOK)
	if strings.Contains(r.stdout, "CORRUPTION") {
		t.Fatalf("golden fixture reported corrupt:\n%s", r.stdout)
	}
	checkGolden(t, "dump-golden.txt", strings.ReplaceAll(r.stdout, goldenDir, "GOLDEN"))

	// Headers only without --deep.
	r = runCLI(t, "", "dump", filepath.Join(goldenDir, "golden-0", "00000000000000000000.log"))
	r.expect(t, exitOK)
	if strings.Contains(r.stdout, "| offset:") || strings.Count(r.stdout, "baseOffset:") != 5 {
		t.Errorf("shallow dump:\n%s", r.stdout)
	}
	// --deep without --values prints records but not their bytes.
	r = runCLI(t, "", "dump", "--deep", filepath.Join(goldenDir, "golden-0", "00000000000000000000.log"))
	if strings.Count(r.stdout, "| offset:") != 10 || strings.Contains(r.stdout, "payload:") {
		t.Errorf("deep dump:\n%s", r.stdout)
	}
}

// copyGolden copies the golden partition dir to a temp dir.
func copyGolden(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "golden-0")
	if err := os.CopyFS(dst, os.DirFS(filepath.Join(goldenDir, "golden-0"))); err != nil {
		t.Fatal(err)
	}
	return dst
}

func poke(t *testing.T, path string, fn func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, fn(b), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDumpCorruption is a named corruption table: each case pokes bytes of a
// copy of the golden fixture and checks that dump reports the problem with
// its position and reason, keeps printing what it can, and exits 4.
func TestDumpCorruption(t *testing.T) {
	const seg0 = "00000000000000000000"
	cases := []struct {
		name  string
		file  string // dumped file, relative to the copy
		poke  func(dir string)
		want  []string // substrings of stdout
		count int      // batches still printed
	}{
		{
			name: "bad_crc", file: seg0 + ".log",
			poke: func(dir string) {
				poke(t, filepath.Join(dir, seg0+".log"), func(b []byte) []byte { b[119+70] ^= 0xff; return b })
			},
			want:  []string{"isvalid: false", "CORRUPTION", "at position 119", "CRC mismatch"},
			count: 5,
		},
		{
			name: "torn_last_batch", file: seg0 + ".log",
			poke: func(dir string) {
				poke(t, filepath.Join(dir, seg0+".log"), func(b []byte) []byte { return b[:len(b)-30] })
			},
			want:  []string{"at position 476", "truncated", "89 byte(s) from here on not read"},
			count: 4,
		},
		{
			name: "zeroed_tail", file: seg0 + ".log",
			poke: func(dir string) {
				poke(t, filepath.Join(dir, seg0+".log"), func(b []byte) []byte { return append(b, make([]byte, 4096)...) })
			},
			want:  []string{"at position 595", "zeroed tail", "4096 byte(s)"},
			count: 5,
		},
		{
			name: "bad_length", file: seg0 + ".log",
			poke: func(dir string) {
				poke(t, filepath.Join(dir, seg0+".log"), func(b []byte) []byte {
					binary.BigEndian.PutUint32(b[119+8:], 10)
					return b
				})
			},
			want:  []string{"at position 119", "invalid"},
			count: 1,
		},
		{
			name: "bad_magic", file: seg0 + ".log",
			poke: func(dir string) {
				poke(t, filepath.Join(dir, seg0+".log"), func(b []byte) []byte { b[238+16] = 1; return b })
			},
			want:  []string{"at position 238", "magic"},
			count: 2,
		},
		{
			name: "offsets_out_of_order", file: seg0 + ".log",
			poke: func(dir string) {
				// BaseOffset is outside the CRC: the batch stays "valid".
				poke(t, filepath.Join(dir, seg0+".log"), func(b []byte) []byte {
					binary.BigEndian.PutUint64(b[238:], 1)
					return b
				})
			},
			want:  []string{"at position 238", "not above the previous batch's last offset 3"},
			count: 5,
		},
		{
			name: "index_entry_wrong_position", file: seg0 + ".index",
			poke: func(dir string) {
				poke(t, filepath.Join(dir, seg0+".index"), func(b []byte) []byte {
					binary.BigEndian.PutUint32(b[8+4:], 200)
					return b
				})
			},
			want: []string{"entry 1 (offset 5 → position 200): no batch starts at that position"},
		},
		{
			name: "index_entry_wrong_offset", file: seg0 + ".log",
			poke: func(dir string) {
				poke(t, filepath.Join(dir, seg0+".index"), func(b []byte) []byte {
					binary.BigEndian.PutUint32(b[16:], 6)
					return b
				})
			},
			want:  []string{"00000000000000000000.index", "entry 2 (offset 6 → position 357): the batch there ends at offset 7"},
			count: 5,
		},
		{
			name: "index_out_of_order", file: seg0 + ".index",
			poke: func(dir string) {
				poke(t, filepath.Join(dir, seg0+".index"), func(b []byte) []byte {
					binary.BigEndian.PutUint32(b[24:], 1)
					return b
				})
			},
			want: []string{"corrupt index"},
		},
		{
			name: "index_partial_entry", file: seg0 + ".index",
			poke: func(dir string) {
				poke(t, filepath.Join(dir, seg0+".index"), func(b []byte) []byte { return append(b, 1, 2, 3) })
			},
			want: []string{"CORRUPTION", "corrupt index"},
		},
		{
			name: "timeindex_wrong_timestamp", file: seg0 + ".timeindex",
			poke: func(dir string) {
				poke(t, filepath.Join(dir, seg0+".timeindex"), func(b []byte) []byte {
					binary.BigEndian.PutUint64(b[12:], 1700000001004)
					return b
				})
			},
			want: []string{"entry 1 (timestamp 1700000001004 → offset 3): the largest timestamp up to that batch is 1700000001005"},
		},
		{
			name: "snapshot_bad_crc", file: "00000000000000000010.snapshot",
			poke: func(dir string) {
				poke(t, filepath.Join(dir, "00000000000000000010.snapshot"), func(b []byte) []byte { b[20] ^= 1; return b })
			},
			want: []string{"at position 2", "CRC-32C mismatch"},
		},
		{
			name: "snapshot_short", file: "00000000000000000010.snapshot",
			poke: func(dir string) {
				poke(t, filepath.Join(dir, "00000000000000000010.snapshot"), func(b []byte) []byte { return b[:30] })
			},
			want: []string{"entry count 1 does not match the file size 30"},
		},
		{
			// A negative offset delta with a valid CRC: the engine refuses
			// such a snapshot, so dump (the same codec) reports it.
			name: "snapshot_negative_delta", file: "00000000000000000010.snapshot",
			poke: func(dir string) {
				poke(t, filepath.Join(dir, "00000000000000000010.snapshot"), func(b []byte) []byte {
					binary.BigEndian.PutUint32(b[10+22:], 0xffffffff)
					binary.BigEndian.PutUint32(b[2:], crc32.Checksum(b[6:], crc32.MakeTable(crc32.Castagnoli)))
					return b
				})
			},
			want: []string{"at position 32", "negative offset delta -1"},
		},
		{
			// A torn entry: the broker would rebuild the log's indexes.
			name: "txnindex_torn", file: seg0 + ".txnindex",
			poke: func(dir string) {
				buf := engine.EncodeTxnIndexEntry(nil, engine.AbortedTxn{ProducerID: 4, FirstOffset: 1, LastOffset: 3, LastStableOffset: 4})
				if err := os.WriteFile(filepath.Join(dir, seg0+".txnindex"), append(buf, 0, 0, 0), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"CORRUPTION", "not a whole number of 34-byte entries"},
		},
		{
			// A key-index checkpoint with a flipped entry byte: the broker
			// rebuilds the index from the log.
			name: "key_index_bad_crc", file: engine.KeyIndexFile,
			poke: func(dir string) {
				buf := engine.EncodeKeyIndexCheckpoint(engine.KeyIndexCheckpoint{DigestID: 1, Covers: 10, Entries: []engine.KeyIndexEntry{{Digest: 5, Offset: 3}}})
				buf[32+2] ^= 0x40 // a byte of the first entry
				if err := os.WriteFile(filepath.Join(dir, engine.KeyIndexFile), buf, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"CORRUPTION", "corrupt key index checkpoint: CRC", "rebuilds the index"},
		},
		{
			name: "key_index_entry_beyond_covers", file: engine.KeyIndexFile,
			poke: func(dir string) {
				buf := engine.EncodeKeyIndexCheckpoint(engine.KeyIndexCheckpoint{DigestID: 1, Covers: 3, Entries: []engine.KeyIndexEntry{{Digest: 5, Offset: 3}}})
				if err := os.WriteFile(filepath.Join(dir, engine.KeyIndexFile), buf, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"CORRUPTION", "entry 0: offset 3 not below the covered offset 3"},
		},
		{
			name: "epoch_checkpoint_malformed", file: "leader-epoch-checkpoint",
			poke: func(dir string) {
				poke(t, filepath.Join(dir, "leader-epoch-checkpoint"), func(b []byte) []byte { return []byte("0\n2\n0 0\nx 8\n") })
			},
			want: []string{"CORRUPTION", "line 4"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := copyGolden(t)
			c.poke(dir)
			r := runCLI(t, "", "dump", "--deep", "--verify-index", filepath.Join(dir, c.file))
			r.expect(t, exitCorruption)
			for _, w := range c.want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("output lacks %q:\n%s", w, r.stdout)
				}
			}
			if c.count > 0 {
				if n := strings.Count(r.stdout, "baseOffset:"); n != c.count {
					t.Errorf("%d batches printed, want %d:\n%s", n, c.count, r.stdout)
				}
			}
			if !strings.Contains(r.stderr, "problem(s) found") {
				t.Errorf("stderr: %q", r.stderr)
			}
		})
	}
}

// TestDumpKeyIndex dumps a valid key-index checkpoint, found in its
// partition directory.
func TestDumpKeyIndex(t *testing.T) {
	dir := copyGolden(t)
	buf := engine.EncodeKeyIndexCheckpoint(engine.KeyIndexCheckpoint{DigestID: 1, Covers: 10, Entries: []engine.KeyIndexEntry{{Digest: 0xabc, Offset: 7, Tombstone: true}, {Digest: 5, Offset: 3}}})
	if err := os.WriteFile(filepath.Join(dir, engine.KeyIndexFile), buf, 0o644); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, "", "dump", dir)
	r.expect(t, exitOK)
	for _, w := range []string{"Dumping " + filepath.Join(dir, engine.KeyIndexFile), "version: 2 digest: 1 covers: 10 entries: 2\noffset: 3 digest: 0000000000000005 tombstone: false\noffset: 7 digest: 0000000000000abc tombstone: true\n"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("output lacks %q:\n%s", w, r.stdout)
		}
	}
}

func TestDumpUnknownFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(p, []byte("hi"), 0o644)
	runCLI(t, "", "dump", p).expect(t, exitUsage)
	runCLI(t, "", "dump", filepath.Join(t.TempDir(), "missing.log")).expect(t, exitFailure)
}

// TestDumpVerifyLogDirAfterKill runs `kvlog dump --verify-index` on the log
// directory of a real kvlogd killed with SIGKILL (the indexes of active
// segments that have any preallocated and untrimmed): healthy data must verify with no
// CORRUPTION and exit 0, every partition directory must be looked into,
// files pending deletion or swap are listed as skipped, and damage in one
// partition makes the log-dir dump exit 4.
func TestDumpVerifyLogDirAfterKill(t *testing.T) {
	b := clienttest.Start(t)
	ctx := testbroker.Context(t, 60*time.Second)
	cl := b.Client(t, kgo.ProducerLinger(0), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, 3, 1, map[string]*string{"segment.bytes": kadm.StringPtr("4096")}, "dumped"); err != nil {
		t.Fatal(err)
	}
	// An empty partition too: no segment file until its first record.
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "empty"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 120; i++ {
		r := &kgo.Record{Topic: "dumped", Partition: int32(i % 2), Key: []byte(fmt.Sprintf("k%d", i)), Value: bytes.Repeat([]byte("v"), 80)}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	b.Kill()

	for _, part := range []string{"dumped-0", "dumped-2", "empty-0"} {
		r := runCLI(t, "", "dump", "--verify-index", filepath.Join(b.DataDir, part))
		if r.code != exitOK || strings.Contains(r.stdout, "CORRUPTION") {
			t.Errorf("healthy partition %s after kill -9: exit %d:\n%s", part, r.code, r.stdout)
		}
	}
	r := runCLI(t, "", "dump", "--verify-index", b.DataDir)
	if r.code != exitOK || strings.Contains(r.stdout, "CORRUPTION") {
		t.Fatalf("healthy log dir after kill -9: exit %d, stderr %q:\n%s", r.code, r.stderr, r.stdout)
	}
	for _, part := range []string{"dumped-0", "dumped-1"} {
		if !strings.Contains(r.stdout, "Dumping "+filepath.Join(b.DataDir, part, "00000000000000000000.log")) {
			t.Errorf("partition directory %s not looked into:\n%s", part, r.stdout)
		}
	}
	// Partitions never written have no segment file yet.
	for _, part := range []string{"dumped-2", "empty-0"} {
		if !strings.Contains(r.stdout, "Skipping "+filepath.Join(b.DataDir, part)+": an empty partition") {
			t.Errorf("empty partition directory %s not reported:\n%s", part, r.stdout)
		}
	}
	// Every index file verifies (a segment's index files exist once it
	// has an index entry, and after a roll): at least the rolled
	// segments' of the two partitions written past one segment.
	indexes := 0
	filepath.WalkDir(b.DataDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && (strings.HasSuffix(p, ".index") || strings.HasSuffix(p, ".timeindex")) {
			indexes++
		}
		return nil
	})
	if n := strings.Count(r.stdout, "entries OK"); n != indexes || n < 4 {
		t.Errorf("%d indexes verified, %d index files in the dir:\n%s", n, indexes, r.stdout)
	}

	// Files of a segment pending deletion and of a swap in progress (here
	// garbage that would not verify) are skipped and said so.
	p0 := filepath.Join(b.DataDir, "dumped-0")
	for _, name := range []string{"00000000000000000000.log.deleted", "00000000000000000000.index.deleted", "00000000000000000000.timeindex.swap"} {
		if err := os.WriteFile(filepath.Join(p0, name), bytes.Repeat([]byte{7}, 100), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r = runCLI(t, "", "dump", "--verify-index", b.DataDir)
	if r.code != exitOK || strings.Contains(r.stdout, "CORRUPTION") {
		t.Fatalf("log dir with pending deletes: exit %d:\n%s", r.code, r.stdout)
	}
	for _, w := range []string{"00000000000000000000.log.deleted: pending deletion", "00000000000000000000.timeindex.swap: log-cleaner output being installed"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("output lacks %q:\n%s", w, r.stdout)
		}
	}

	// Real damage in one partition: the log-dir dump exits 4.
	seg := filepath.Join(b.DataDir, "dumped-1", "00000000000000000000.log")
	poke(t, seg, func(b []byte) []byte { b[100] ^= 0xff; return b })
	r = runCLI(t, "", "dump", "--verify-index", b.DataDir)
	r.expect(t, exitCorruption)
	if !strings.Contains(r.stdout, "CORRUPTION "+seg) {
		t.Errorf("damage in %s not reported:\n%s", seg, r.stdout)
	}

	// A directory with nothing to dump is a usage error, not a silent success.
	runCLI(t, "", "dump", t.TempDir()).expect(t, exitUsage)
}
