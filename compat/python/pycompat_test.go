package pycompat

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kvlog/kvlog/internal/testbroker"
)

func TestMain(m *testing.M) { os.Exit(testbroker.Main(m)) }

func here() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// requirePython returns the interpreter of .venv-compat (or
// $KVLOG_COMPAT_PYTHON), or skips the test when it is missing.
func requirePython(t *testing.T) string {
	t.Helper()
	py := os.Getenv("KVLOG_COMPAT_PYTHON")
	if py == "" {
		py = filepath.Join(here(), "..", "..", ".venv-compat", "bin", "python")
	}
	if err := exec.Command(py, "-c", "import confluent_kafka, kafka").Run(); err != nil {
		t.Skipf("%s cannot import confluent_kafka and kafka (`make tools-python` creates .venv-compat): skipping the Python client suite", py)
	}
	return py
}

type result struct {
	Case   string          `json:"case"`
	Client string          `json:"client"`
	OK     bool            `json:"ok"`
	API    string          `json:"api"`
	Error  string          `json:"error"`
	Ms     int64           `json:"ms"`
	Data   json.RawMessage `json:"data"`
}

// runCases runs pycompat.py for one client and returns the results by case.
func runCases(t *testing.T, py, client, bootstrap, prefix string, cases ...string) map[string]result {
	t.Helper()
	return runCasesWith(t, nil, py, client, bootstrap, prefix, cases...)
}

// runCasesWith is runCases with the client's own configuration (librdkafka
// keys for confluent, keyword arguments for kafka-python) given to every
// client the cases make; nil for none.
func runCasesWith(t *testing.T, config map[string]any, py, client, bootstrap, prefix string, cases ...string) map[string]result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, append([]string{filepath.Join(here(), "pycompat.py"), client, bootstrap, prefix}, cases...)...)
	if config != nil {
		js, err := json.Marshal(config)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Env = append(os.Environ(), "KVLOG_CLIENT_CONFIG="+string(js))
	}
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	out := map[string]result{}
	i := 0
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "RESULT ")
		if !ok || i >= len(cases) {
			continue
		}
		var r result
		if json.Unmarshal([]byte(rest), &r) != nil {
			r = result{Error: "unparsable RESULT line: " + rest}
		}
		out[cases[i]] = r
		i++
	}
	if err != nil || i < len(cases) {
		t.Errorf("pycompat.py %s: %v (%d of %d results)\nstderr:\n%s", client, err, i, len(cases), stderr.String())
	}
	return out
}

// The records of produce-codecs: 600 over 40 keys, every 9th a tombstone.
func modelValue(tag string, i int) *string {
	if i%9 == 8 {
		return nil
	}
	s := fmt.Sprintf("%s-%d-%s", tag, i, strings.Repeat("x", i%50))
	return &s
}

// checkModel reads a produce-codecs topic back with franz-go: per key the
// values and seq headers in production order, and the tag header.
func checkModel(t *testing.T, b *testbroker.Broker, topic, tag string) {
	t.Helper()
	want := map[string][]string{}
	for i := 0; i < 600; i++ {
		v := "<tombstone>"
		if p := modelValue(tag, i); p != nil {
			v = *p
		}
		k := fmt.Sprintf("k%d", i%40)
		want[k] = append(want[k], fmt.Sprintf("%d:%s", i, v))
	}
	rs := b.ReadTopic(t, topic)
	sort.SliceStable(rs, func(i, j int) bool {
		if rs[i].Partition != rs[j].Partition {
			return rs[i].Partition < rs[j].Partition
		}
		return rs[i].Offset < rs[j].Offset
	})
	got := map[string][]string{}
	for _, r := range rs {
		h := map[string]string{}
		for _, x := range r.Headers {
			h[x.Key] = string(x.Value)
		}
		if h["tag"] != tag {
			t.Fatalf("%s-%d@%d: tag header %q, want %q", topic, r.Partition, r.Offset, h["tag"], tag)
		}
		v := "<tombstone>"
		if r.Value != nil {
			v = string(r.Value)
		}
		got[string(r.Key)] = append(got[string(r.Key)], h["seq"]+":"+v)
	}
	if len(rs) != 600 {
		t.Fatalf("%s: franz-go read %d records, 600 produced", topic, len(rs))
	}
	for k, vs := range want {
		if strings.Join(vs, "|") != strings.Join(got[k], "|") {
			t.Fatalf("%s: key %s read back as %q, produced %q", topic, k, got[k], vs)
		}
	}
}

var codecIDs = map[string]int8{"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}

// TestPythonClients: confluent-kafka and kafka-python 3.x produce (every
// codec, idempotent), consume in a group with commits and resume, and
// administer (topics with configs, configs, offsets, delete records,
// groups) and run transactions (consume-transform-produce with
// send_offsets_to_transaction, aborts, read_committed, fencing) against
// one kvlogd.
func TestPythonClients(t *testing.T) {
	py := requirePython(t)
	b := testbroker.Start(t, testbroker.Options{Race: true, Props: []string{
		// The checks read every record the cases wrote to compacted
		// topics, minutes later on a loaded machine: the idle roll would
		// have compacted them to one record per key by then.
		"kvlog.cleaner.idle.roll.ms=0",
	}})
	cases := []string{"produce-codecs=none", "produce-codecs=gzip", "produce-codecs=snappy", "produce-codecs=lz4", "produce-codecs=zstd", "group-resume", "admin", "transactions"}
	for _, client := range []string{"confluent", "kafka-python"} {
		t.Run(client, func(t *testing.T) {
			prefix := "py-" + client
			res := runCases(t, py, client, b.Addr, prefix, cases...)
			for _, c := range cases {
				t.Run(c, func(t *testing.T) {
					r, ok := res[c]
					if !ok {
						t.Fatalf("%s, case %s: no result", client, c)
					}
					if !r.OK {
						t.Fatalf("%s, case %s: %s failed: %s", r.Client, c, r.API, r.Error)
					}
					t.Logf("%s, case %s: ok in %d ms; %.400s", r.Client, c, r.Ms, r.Data)
					if name, codec, _ := strings.Cut(c, "="); name == "produce-codecs" {
						topic := prefix + "-codec-" + codec
						checkModel(t, b, topic, codec)
						for p := int32(0); p < 3; p++ {
							for _, id := range b.StoredCodecs(t, topic, p) {
								if id != codecIDs[codec] {
									t.Fatalf("%s: %s-%d stores a batch with codec %d, want %s (%d)", r.Client, topic, p, id, codec, codecIDs[codec])
								}
							}
						}
					}
				})
			}
		})
	}
}
