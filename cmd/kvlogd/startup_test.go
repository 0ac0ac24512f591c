package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kvlog/kvlog/internal/testbroker"
)

// The tests here run kvlogd as `make run` does (testbroker's MakeRun: no
// --config, no --log-dirs, data in the working directory's ./data), with
// only the listener addresses moved to free ports.

// treeHash maps every file and directory under root to its size and
// content hash.
func treeHash(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			out[rel+"/"] = "dir"
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		out[rel] = fmt.Sprintf("%d bytes %s", len(b), hex.EncodeToString(sum[:8]))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func treeDiff(a, b map[string]string) string {
	var d []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			d = append(d, k+": removed")
		} else if w != v {
			d = append(d, fmt.Sprintf("%s: %s -> %s", k, v, w))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			d = append(d, k+": added")
		}
	}
	sort.Strings(d)
	return strings.Join(d, "\n")
}

// TestSecondBrokerOnSameDataDir: a second `make run` while one runs fails
// fast (exit status 1) whether its ports are taken or free, and leaves the
// running broker's ./data byte for byte as it was: no clean-shutdown
// marker, no trimmed index. A later SIGKILL of the real broker is then
// recovered as the unclean stop it is.
func TestSecondBrokerOnSameDataDir(t *testing.T) {
	a := testbroker.Start(t, testbroker.Options{Race: true, MakeRun: true})
	ctx := testbroker.Context(t, 90*time.Second)
	cl := a.Client(t, kgo.DefaultProduceTopic("live"), kgo.AllowAutoTopicCreation(), kgo.ProducerBatchCompression(kgo.NoCompression()))
	// More than index.interval.bytes (4096), so the active segment has an
	// index entry and its index files (created with their first entry).
	for i := 0; i < 20; i++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(fmt.Sprint("k", i)), Value: bytes.Repeat([]byte("v"), 300)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	before := treeHash(t, a.DataDir)
	if _, ok := before["live-0/00000000000000000000.index"]; !ok {
		t.Fatalf("no active segment index in %s: %v", a.DataDir, before)
	}

	// Same ports, as a literal second `make run` would have.
	code, out := testbroker.RunToExit(t, testbroker.Options{Race: true, MakeRun: true, WorkDir: a.WorkDir, Addr: a.Addr, HTTP: a.HTTP}, 60*time.Second)
	if code != 1 || !strings.Contains(out, "address already in use") {
		t.Fatalf("second broker on the same ports: exit %d, want 1 naming the busy address; it printed:\n%s", code, out)
	}
	if d := treeDiff(before, treeHash(t, a.DataDir)); d != "" {
		t.Fatalf("the broker refused for its ports changed the running broker's data:\n%s", d)
	}
	// Free ports: only the data dir is shared; its lock refuses the start.
	code, out = testbroker.RunToExit(t, testbroker.Options{Race: true, MakeRun: true, WorkDir: a.WorkDir}, 60*time.Second)
	if code != 1 || !strings.Contains(out, filepath.Join(a.DataDir, ".lock")) || !strings.Contains(out, "locked") {
		t.Fatalf("second broker on the same data dir: exit %d, want 1 naming %s; it printed:\n%s", code, filepath.Join(a.DataDir, ".lock"), out)
	}
	if strings.Contains(out, "log dir loaded") {
		t.Fatalf("the refused broker loaded the dir:\n%s", out)
	}
	if d := treeDiff(before, treeHash(t, a.DataDir)); d != "" {
		t.Fatalf("the broker refused for the lock changed the running broker's data:\n%s", d)
	}
	// The first broker still serves.
	if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte("after"), Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	a.Kill()
	if _, err := os.Stat(filepath.Join(a.DataDir, ".kafka_cleanshutdown")); err == nil {
		t.Fatal("clean-shutdown marker after SIGKILL")
	}
	a.Restart()
	if !strings.Contains(a.Log(), "clean_shutdown=false") {
		t.Fatalf("restart after SIGKILL not recovered as unclean:\n%s", a.Log())
	}
	got := consumeAll(t, a, "live", 21)
	if len(got) != 21 {
		t.Fatalf("%d records after recovery, want 21", len(got))
	}
}

// TestDeleteRecordsSurvivesCleanRestart: with the default relative
// ./data, the log-dir checkpoints name every partition, so records
// deleted with DeleteRecords stay deleted after a clean restart.
func TestDeleteRecordsSurvivesCleanRestart(t *testing.T) {
	a := testbroker.Start(t, testbroker.Options{Race: true, MakeRun: true})
	ctx := testbroker.Context(t, 90*time.Second)
	adm := a.Admin(t)
	if resp, err := adm.CreateTopic(ctx, 1, 1, nil, "dr"); err != nil || resp.Err != nil {
		t.Fatalf("create: %v %v", err, resp.Err)
	}
	cl := a.Client(t, kgo.DefaultProduceTopic("dr"))
	for i := 0; i < 10; i++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(fmt.Sprint(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	var offs kadm.Offsets
	offs.Add(kadm.Offset{Topic: "dr", Partition: 0, At: 6})
	res, err := adm.DeleteRecords(ctx, offs)
	if err != nil || res.Error() != nil {
		t.Fatalf("delete records: %v %v", err, res.Error())
	}
	a.Term()
	for _, name := range []string{"recovery-point-offset-checkpoint", "log-start-offset-checkpoint"} {
		b, err := os.ReadFile(filepath.Join(a.DataDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "\ndr 0 ") {
			t.Fatalf("%s does not name dr-0:\n%s", name, b)
		}
	}
	a.Restart()
	starts, err := a.Admin(t).ListStartOffsets(ctx, "dr")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := starts.Lookup("dr", 0); o.Err != nil || o.Offset != 6 {
		t.Fatalf("log start after a clean restart: %+v, want 6", o)
	}
	got := consumeAll(t, a, "dr", 4)
	if len(got) != 4 || got[0].Offset != 6 {
		t.Fatalf("after restart: %d records from offset %d, want 4 from 6", len(got), got[0].Offset)
	}
}

// TestCommandLine: --help and -h print usage and exit 0, --version prints
// the version and exits 0, a positional argument or an unknown flag exits
// 2 without starting a broker (no ./data appears).
func TestCommandLine(t *testing.T) {
	wd := t.TempDir()
	opts := testbroker.Options{Race: true, WorkDir: wd}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--help"}, 0, "Usage: kvlogd [flags]"},
		{[]string{"-h"}, 0, "-log-dirs"},
		{[]string{"--version"}, 0, "kvlogd "},
		{[]string{"version"}, 2, `unexpected argument "version"`},
		{[]string{"--log-level", "warn", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"--no-such-flag"}, 2, "flag provided but not defined"},
	} {
		code, out := testbroker.RunArgs(t, opts, 60*time.Second, c.args...)
		if code != c.code || !strings.Contains(out, c.want) {
			t.Errorf("kvlogd %v: exit %d, want %d with %q; it printed:\n%s", c.args, code, c.code, c.want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(wd, "data")); err == nil {
		t.Fatal("a refused command line created ./data")
	}
}

// TestVersionString: -ldflags -X main.version wins; without it the build
// information gives a non-empty version.
func TestVersionString(t *testing.T) {
	old := version
	t.Cleanup(func() { version = old })
	version = ""
	if v := versionString(); v == "" || strings.HasPrefix(v, " ") {
		t.Fatalf("version %q", v)
	}
	version = "v9.8.7"
	if v := versionString(); !strings.HasPrefix(v, "v9.8.7 ") {
		t.Fatalf("version %q, want v9.8.7 first", v)
	}
}
