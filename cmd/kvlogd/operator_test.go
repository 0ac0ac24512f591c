package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kvlog/kvlog/internal/testbroker"
)

// TestOperatorMetricsHealthAndLogs checks, on a real kvlogd, the metrics
// operators alert on (values, not only names), /healthz and /readyz, and
// --log-format json: every line one JSON object with no key twice, and no
// Go struct dump (a dynamic cleaner config change logs what changed).
func TestOperatorMetricsHealthAndLogs(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{Race: true, Args: []string{"--log-format", "json"}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	adm := b.Admin(t)
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "orders"); err != nil {
		t.Fatal(err)
	}
	cl := b.Client(t)
	for i := 0; i < 5; i++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "orders", Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// A group commits offset 2 of 5: lag 3.
	if _, err := adm.CommitOffsets(ctx, "billing", kadm.OffsetsFromRecords(kgo.Record{Topic: "orders", Partition: 0, Offset: 1})); err != nil {
		t.Fatal(err)
	}
	// A member joins and leaves: the coordinator logs the rebalance.
	member := b.Client(t, kgo.ConsumeTopics("orders"), kgo.ConsumerGroup("audit"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	for n := 0; n < 5 && ctx.Err() == nil; {
		n += member.PollFetches(ctx).NumRecords()
	}
	member.Close()
	// A refused request: one error counted under its API and code.
	if r, _ := adm.CreateTopic(ctx, 1, 1, nil, "orders"); r.Err == nil {
		t.Fatal("duplicate topic created")
	}
	// A dynamic cleaner change, logged as what changed.
	if _, err := adm.AlterBrokerConfigs(ctx, []kadm.AlterConfig{{Name: "log.cleaner.threads", Value: kadm.StringPtr("2")}}); err != nil {
		t.Fatal(err)
	}

	m := scrapeMetrics(t, "http://"+b.HTTP+"/metrics")
	for series, want := range map[string]float64{
		`kvlog_topic_records_in_total{topic="orders"}`:                                5,
		`kvlog_group_lag{group="billing",partition="0",topic="orders"}`:               3,
		`kvlog_request_errors_total{api="CreateTopics",error="TOPIC_ALREADY_EXISTS"}`: 1,
		`kvlog_offline_partitions`:                                                    0,
		`kvlog_under_replicated_partitions`:                                           0,
		`kvlog_under_min_isr_partitions`:                                              0,
		`kvlog_groups{state="Empty"}`:                                                 2,
	} {
		got, ok := m[series]
		if !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	if v := m[`kvlog_topic_bytes_in_total{topic="orders"}`]; v < 5*61 {
		t.Errorf("bytes in %v: less than five batch headers", v)
	}
	for k := range m {
		if strings.HasPrefix(k, "kvlog_request_errors_total{api=\"ApiVersions\"") {
			t.Errorf("a client's ApiVersions downgrade counted as an error: %s", k)
		}
		if strings.HasPrefix(k, "kvlog_partition_") && strings.Contains(k, `topic="__consumer_offsets"`) {
			t.Fatalf("per-partition series for an internal topic: %s", k)
		}
		if strings.HasPrefix(k, "kvlog_build_info{") && !strings.Contains(k, `version="`) {
			t.Errorf("build info without a version: %s", k)
		}
	}
	if m[`kvlog_topic_size_bytes{topic="__consumer_offsets"}`] <= 0 {
		t.Error("no aggregated size for __consumer_offsets")
	}
	free, total := -1.0, -1.0
	for k, v := range m {
		if strings.HasPrefix(k, "kvlog_log_dir_free_bytes{") {
			free = v
		}
		if strings.HasPrefix(k, "kvlog_log_dir_total_bytes{") {
			total = v
		}
	}
	if free <= 0 || total < free {
		t.Errorf("log dir free %v of %v", free, total)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + b.HTTP + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d %s", path, resp.StatusCode, body)
		}
		if path == "/readyz" && !strings.Contains(string(body), `"ready":true`) {
			t.Errorf("/readyz: %s", body)
		}
	}

	b.Stop()
	out := b.Log()
	if !strings.Contains(out, `"took":"`) {
		t.Errorf("durations are not strings in the JSON log:\n%s", out)
	}
	if !strings.Contains(out, `"msg":"cleaner config updated"`) {
		t.Errorf("no cleaner config update logged:\n%s", out)
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		keys, err := jsonKeys(line)
		if err != nil {
			t.Errorf("not a JSON log line (%v): %s", err, line)
			continue
		}
		seen := map[string]bool{}
		for _, k := range keys {
			if seen[k] {
				t.Errorf("attribute %q twice: %s", k, line)
			}
			seen[k] = true
		}
		if structDump.MatchString(line) {
			t.Errorf("a Go struct dump in the log: %s", line)
		}
	}
}

// structDump matches a Go struct printed with %v ({Enable:true …}) or
// marshalled whole ({"Enable":true …}).
var structDump = regexp.MustCompile(`\{"?[A-Z][A-Za-z]*"?:`)

// jsonKeys are the top-level keys of a JSON object, in order, duplicates
// kept.
func jsonKeys(line string) ([]string, error) {
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("no object: %v", err)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		keys = append(keys, tok.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// scrapeMetrics reads a Prometheus text exposition: series → value.
func scrapeMetrics(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}
