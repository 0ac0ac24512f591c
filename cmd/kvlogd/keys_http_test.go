package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kvlog/kvlog/client"
	"github.com/kvlog/kvlog/internal/testbroker"
)

// httpKey does one GET lookup: status, body and headers.
func httpKey(t *testing.T, b *testbroker.Broker, topic, key, query string) (int, []byte, http.Header) {
	t.Helper()
	u := "http://" + b.HTTP + "/v1/topics/" + url.PathEscape(topic) + "/keys/" + url.PathEscape(key)
	if query != "" {
		u += "?" + query
	}
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body, resp.Header
}

// TestHTTPKeyLookups drives a real kvlogd: franz-go producers update keys
// of a compacted topic (3 partitions, tiny segments, an eager cleaner)
// while readers look keys up over HTTP. Every answer must be a value
// written for that key, never older than one the same reader saw before
// (per-key rounds only grow), and after the writes every key answers its
// last value; the cleaner must have run meanwhile. Then read-your-writes
// with min_offset, binary keys, batchGet, the JSON form and the errors.
func TestHTTPKeyLookups(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{Race: true, Props: []string{
		"log.cleaner.backoff.ms=100",
		"log.cleaner.min.cleanable.ratio=0.01",
		"log.cleaner.dedupe.buffer.size=4194304",
	}})
	ctx := testbroker.Context(t, 2*time.Minute)
	adm := b.Admin(t)
	const topic, keys, rounds = "users", 40, 60
	seg, ratio, retention := "4096", "0.01", "0"
	if _, err := adm.CreateTopic(ctx, 3, 1, map[string]*string{
		"cleanup.policy": ptr("compact"), "segment.bytes": &seg, "min.cleanable.dirty.ratio": &ratio, "delete.retention.ms": &retention,
	}, topic); err != nil {
		t.Fatal(err)
	}
	cl := b.Client(t, kgo.RecordPartitioner(client.Partitioner()), kgo.DefaultProduceTopic(topic))

	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			lastSeen := map[string]int{}
			for {
				select {
				case <-done:
					return
				default:
				}
				key := fmt.Sprintf("user-%d", rng.IntN(keys))
				st, body, _ := httpKey(t, b, topic, key, "")
				switch st {
				case http.StatusOK:
					var k string
					var round int
					if _, err := fmt.Sscanf(string(body), "%s round=%d", &k, &round); err != nil || k != key {
						errs <- fmt.Errorf("lookup %s: value %q is not one written for it", key, body)
						return
					}
					if round < lastSeen[key] {
						errs <- fmt.Errorf("lookup %s: round %d after round %d", key, round, lastSeen[key])
						return
					}
					lastSeen[key] = round
				case http.StatusNotFound:
					if lastSeen[key] > 0 {
						errs <- fmt.Errorf("lookup %s: not found after round %d was seen", key, lastSeen[key])
						return
					}
				default:
					errs <- fmt.Errorf("lookup %s: %d %s", key, st, body)
					return
				}
			}
		}(w)
	}
	for r := 1; r <= rounds; r++ {
		var recs []*kgo.Record
		for k := 0; k < keys; k++ {
			key := fmt.Sprintf("user-%d", k)
			recs = append(recs, &kgo.Record{Key: []byte(key), Value: []byte(fmt.Sprintf("%s round=%d %s", key, r, strings.Repeat("x", 40)))})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		n := 0
		for p := 0; p < 3; p++ {
			c, _, _, _ := cleanedLines(b.Log(), fmt.Sprintf("%s-%d", topic, p))
			n += c
		}
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the cleaner never cleaned the topic")
		}
		// Keep the partitions dirty so the cleaner has work.
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte("user-0"), Value: []byte(fmt.Sprintf("user-0 round=%d", rounds))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for k := 0; k < keys; k++ {
		key := fmt.Sprintf("user-%d", k)
		st, body, h := httpKey(t, b, topic, key, "")
		if st != http.StatusOK || !strings.HasPrefix(string(body), fmt.Sprintf("%s round=%d", key, rounds)) {
			t.Fatalf("final lookup %s: %d %q", key, st, body)
		}
		if p, _ := strconv.Atoi(h.Get("X-Kvlog-Partition")); int32(p) != client.PartitionFor([]byte(key), 3) {
			t.Fatalf("lookup %s answered from partition %s", key, h.Get("X-Kvlog-Partition"))
		}
	}

	// Read-your-writes: the produce's offset as min_offset.
	rec := &kgo.Record{Key: []byte("fresh"), Value: []byte("v1"), Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("hv")}}}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	st, body, h := httpKey(t, b, topic, "fresh", fmt.Sprintf("min_offset=%d&timeout_ms=10000", rec.Offset))
	if st != http.StatusOK || string(body) != "v1" || h.Get("X-Kvlog-Offset") != strconv.FormatInt(rec.Offset, 10) || h.Get("X-Kvlog-Header-Count") != "1" {
		t.Fatalf("read-your-writes: %d %q %v", st, body, h)
	}
	// Every metadata header of a value.
	if so, _ := strconv.ParseInt(h.Get("X-Kvlog-Stable-Offset"), 10, 64); so <= rec.Offset ||
		h.Get("X-Kvlog-Partition") != strconv.Itoa(int(rec.Partition)) ||
		h.Get("X-Kvlog-Timestamp") != strconv.FormatInt(rec.Timestamp.UnixMilli(), 10) ||
		h.Get("X-Kvlog-Leader-Epoch") != "0" ||
		h.Get("Content-Type") != "application/octet-stream" || h.Get("Content-Length") != "2" {
		t.Fatalf("read-your-writes: headers %v for %+v", h, rec)
	}
	// An offset never written: 409 after the timeout.
	st, body, _ = httpKey(t, b, topic, "fresh", fmt.Sprintf("min_offset=%d&timeout_ms=50", rec.Offset+1000))
	if st != http.StatusConflict || !strings.Contains(string(body), `"REQUEST_TIMED_OUT"`) {
		t.Fatalf("min_offset in the future: %d %s", st, body)
	}
	// The JSON form, headers included.
	st, body, _ = httpKey(t, b, topic, "fresh", "format=json")
	var jr struct {
		Found     bool   `json:"found"`
		Offset    int64  `json:"offset"`
		ValueB64  string `json:"value_b64"`
		Partition int32  `json:"partition"`
		Headers   []struct {
			Key      string `json:"key"`
			ValueB64 string `json:"value_b64"`
		} `json:"headers"`
	}
	if err := json.Unmarshal(body, &jr); err != nil || st != http.StatusOK || !jr.Found || jr.Offset != rec.Offset || jr.ValueB64 != base64.StdEncoding.EncodeToString([]byte("v1")) || len(jr.Headers) != 1 || jr.Headers[0].Key != "h" {
		t.Fatalf("json form: %d %s (%v)", st, body, err)
	}
	// Binary keys with key_b64; a tombstone is not found.
	bin := []byte{0, 0xff, '/', '?'}
	if err := cl.ProduceSync(ctx, &kgo.Record{Key: bin, Value: []byte("binary")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + b.HTTP + "/v1/topics/" + topic + "/keys?key_b64=" + url.QueryEscape(base64.StdEncoding.EncodeToString(bin)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "binary" {
		t.Fatalf("key_b64: %d %q", resp.StatusCode, body)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte("user-1"), Value: nil}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if st, body, _ := httpKey(t, b, topic, "user-1", ""); st != http.StatusNotFound || !strings.Contains(string(body), "KEY_NOT_FOUND") {
		t.Fatalf("deleted key: %d %s", st, body)
	}
	// batchGet.
	breq := `{"keys":[{"key":"user-2"},{"key":"user-1"},{"key_b64":"` + base64.StdEncoding.EncodeToString(bin) + `"},{"key":"fresh","partition":` + fmt.Sprint(client.PartitionFor([]byte("fresh"), 3)) + `}]}`
	resp, err = http.Post("http://"+b.HTTP+"/v1/topics/"+topic+"/keys:batchGet", "application/json", bytes.NewReader([]byte(breq)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	var br struct {
		Results []struct {
			Found    bool   `json:"found"`
			ValueB64 string `json:"value_b64"`
			Error    string `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal(body, &br); err != nil || resp.StatusCode != http.StatusOK || len(br.Results) != 4 {
		t.Fatalf("batchGet: %d %s", resp.StatusCode, body)
	}
	v0, _ := base64.StdEncoding.DecodeString(br.Results[0].ValueB64)
	v2, _ := base64.StdEncoding.DecodeString(br.Results[2].ValueB64)
	v3, _ := base64.StdEncoding.DecodeString(br.Results[3].ValueB64)
	if !br.Results[0].Found || !strings.HasPrefix(string(v0), "user-2 round=") || br.Results[1].Found || string(v2) != "binary" || string(v3) != "v1" {
		t.Fatalf("batchGet results: %s", body)
	}
	// Errors: unknown topic, a topic without compaction, a bad partition.
	if st, body, _ := httpKey(t, b, "nope", "k", ""); st != http.StatusNotFound || !strings.Contains(string(body), "UNKNOWN_TOPIC_OR_PARTITION") {
		t.Fatalf("unknown topic: %d %s", st, body)
	}
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "plain"); err != nil {
		t.Fatal(err)
	}
	if st, body, _ := httpKey(t, b, "plain", "k", ""); st != http.StatusBadRequest || !strings.Contains(string(body), "INVALID_REQUEST") {
		t.Fatalf("delete-policy topic: %d %s", st, body)
	}
	if st, body, _ := httpKey(t, b, topic, "k", "partition=7"); st != http.StatusNotFound || !strings.Contains(string(body), "UNKNOWN_TOPIC_OR_PARTITION") {
		t.Fatalf("partition 7: %d %s", st, body)
	}

	// A restart: lookups answer the same from the checkpoint and the tail.
	b.Restart()
	for k := 2; k < keys; k++ {
		key := fmt.Sprintf("user-%d", k)
		st, body, _ := httpKey(t, b, topic, key, "")
		if st != http.StatusOK || !strings.HasPrefix(string(body), fmt.Sprintf("%s round=%d", key, rounds)) {
			t.Fatalf("after restart, lookup %s: %d %q", key, st, body)
		}
	}
}

func ptr[T any](v T) *T { return &v }
