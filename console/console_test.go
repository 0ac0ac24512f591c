package console

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kvlog/kvlog/cleaner/cleanerstatus"
)

// TestRingKeepsTheLastSamples: the ring returns its samples oldest first,
// keeping only the last size of them.
func TestRingKeepsTheLastSamples(t *testing.T) {
	r := &ring[sample]{buf: make([]sample, 3)}
	if got := r.all(); len(got) != 0 {
		t.Fatalf("empty ring: %v", got)
	}
	for i := range 5 {
		r.add(sample{bytes: int64(i)})
		want := []int64{}
		for j := max(0, i-2); j <= i; j++ {
			want = append(want, int64(j))
		}
		got := r.all()
		if len(got) != len(want) {
			t.Fatalf("after %d adds: %d samples, want %d", i+1, len(got), len(want))
		}
		for k := range want {
			if got[k].bytes != want[k] {
				t.Fatalf("after %d adds: sample %d is %d, want %d", i+1, k, got[k].bytes, want[k])
			}
		}
	}
}

// TestHistoryFollowsTheCleanerStatus: partitions are sampled while they
// are in the status and forgotten when they leave it.
func TestHistoryFollowsTheCleanerStatus(t *testing.T) {
	h := newHistory(4)
	st := func(ratios ...float64) cleanerstatus.Status {
		var s cleanerstatus.Status
		for i, r := range ratios {
			s.Partitions = append(s.Partitions, cleanerstatus.PartitionStatus{Topic: "t", Partition: int32(i), DirtyRatio: r, CleanBytes: 10, CleanableBytes: 5})
		}
		return s
	}
	now := time.Unix(1000, 0)
	h.add(now, st(0.1, 0.2))
	h.add(now.Add(time.Second), st(0.3, 0.4))
	if got := h.get("t", 1); len(got) != 2 || got[0].ratio != 0.2 || got[1].ratio != 0.4 || got[1].bytes != 15 {
		t.Fatalf("t-1 history: %+v", got)
	}
	h.add(now.Add(2*time.Second), st(0.5))
	if got := h.get("t", 1); got != nil {
		t.Fatalf("t-1 left the status but is still kept: %+v", got)
	}
	if got := h.get("t", 0); len(got) != 3 {
		t.Fatalf("t-0 history: %+v", got)
	}
}

// TestChart: the chart has a text alternative with the latest value and
// draws the ratio clamped to 0..1.
func TestChart(t *testing.T) {
	svg := string(chart([]sample{{ratio: 0.5}, {ratio: 2}}, 0.25, "dirty ratio of t-0"))
	for _, want := range []string{`role="img"`, `aria-label="dirty ratio of t-0: 2 samples, latest 2.00, threshold 0.25"`, `points="0.0,24.0 240.0,0.0 "`, `y1="36.0"`} {
		if !strings.Contains(svg, want) {
			t.Errorf("chart lacks %s:\n%s", want, svg)
		}
	}
	if svg := string(chart(nil, 0.5, "x")); !strings.Contains(svg, "no samples yet") || strings.Contains(svg, "polyline") {
		t.Errorf("empty chart: %s", svg)
	}
}

// TestBrokerUnreachable: when the console cannot reach its broker every
// page says why (502), the assets are still served, and a form posted
// from another site is refused.
func TestBrokerUnreachable(t *testing.T) {
	c, err := New(Options{
		Connect:       func(Credentials) ([]kgo.Opt, error) { return nil, errors.New("no listener fits") },
		CleanerStatus: func() cleanerstatus.Status { return cleanerstatus.Status{} },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, p := range []string{"/ui/", "/ui/topics", "/ui/topics/x", "/ui/compaction", "/ui/groups", "/ui/groups/g", "/ui/topics/x/records"} {
		rec := httptest.NewRecorder()
		c.ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
		if rec.Code != http.StatusBadGateway || !strings.Contains(rec.Body.String(), "no listener fits") || !strings.Contains(rec.Body.String(), `<main id="main"`) {
			t.Errorf("%s: %d %s", p, rec.Code, rec.Body.String())
		}
	}
	for _, p := range []string{"/ui/static/console.css", "/ui/static/console.js"} {
		rec := httptest.NewRecorder()
		c.ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
		if rec.Code != http.StatusOK || rec.Body.Len() == 0 {
			t.Errorf("%s: %d", p, rec.Code)
		}
	}
	req := httptest.NewRequest("POST", "/ui/topics/x/configs", strings.NewReader("cfg.a=b"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	rec := httptest.NewRecorder()
	c.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Errorf("cross-site POST: %d, want 403", rec.Code)
	}
}
