package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kvlog/kvlog/internal/testbroker"
)

func TestZZLookupPerf(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{LogLevel: "warn"})
	ctx := testbroker.Context(t, 5*time.Minute)
	adm := b.Admin(t)
	if _, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"cleanup.policy": ptr("compact")}, "p1"); err != nil {
		t.Fatal(err)
	}
	cl := b.Client(t, kgo.DefaultProduceTopic("p1"))
	const n = 200000
	for i := 0; i < n; i += 1000 {
		var recs []*kgo.Record
		for j := i; j < i+1000; j++ {
			recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprintf("user-%08d", j)), Value: make([]byte, 100)})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	hc := &http.Client{}
	get := func(k int) time.Duration {
		s := time.Now()
		resp, err := hc.Get(fmt.Sprintf("http://%s/v1/topics/p1/keys/user-%08d", b.HTTP, k))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatal(resp.Status)
		}
		return time.Since(s)
	}
	get(0)
	go func() {
		resp, err := http.Get("http://" + b.HTTP + "/debug/pprof/profile?seconds=4")
		if err == nil {
			f, _ := os.Create("/tmp/lookup.prof")
			io.Copy(f, resp.Body)
			f.Close()
			resp.Body.Close()
		}
	}()
	var ds []time.Duration
	start := time.Now()
	for i := 0; time.Since(start) < 5*time.Second; i++ {
		ds = append(ds, get((i*7919)%n))
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	t.Logf("%d lookups, p50 %v p99 %v", len(ds), ds[len(ds)/2], ds[len(ds)*99/100])
	resp, _ := http.Get("http://" + b.HTTP + "/v1/topics/p1/keys:stats")
	body, _ := io.ReadAll(resp.Body)
	t.Logf("stats %s", body)
	time.Sleep(time.Second)
}
