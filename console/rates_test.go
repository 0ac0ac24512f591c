package console

import (
	"strings"
	"testing"
	"time"
)

// TestRatesFromSuccessiveSamples: records/s in come from the high
// watermark's advance and bytes/s out from the fetch counter's, between
// successive samples; a counter going back gives 0, not a negative rate.
func TestRatesFromSuccessiveSamples(t *testing.T) {
	t0 := time.Unix(1000, 0)
	got := rates([]trafficSample{
		{at: t0, hw: 100, out: 0},
		{at: t0.Add(2 * time.Second), hw: 140, out: 4096},
		{at: t0.Add(4 * time.Second), hw: 10, out: 4096}, // topic made again
		{at: t0.Add(4 * time.Second), hw: 20, out: 5000}, // same instant: skipped
	})
	if len(got) != 2 {
		t.Fatalf("rates: %+v, want 2", got)
	}
	if got[0].in != 20 || got[0].out != 2048 {
		t.Errorf("first interval: %+v, want 20 records/s in, 2048 bytes/s out", got[0])
	}
	if got[1].in != 0 || got[1].out != 0 {
		t.Errorf("a counter going back: %+v, want 0", got[1])
	}
	if got := rates([]trafficSample{{at: t0, hw: 5}}); len(got) != 0 {
		t.Errorf("one sample gives rates %+v", got)
	}
}

// TestCountersForgetNamesNoLongerReported: a topic or group keeps its
// readings while reported and is dropped when it is not.
func TestCountersForgetNamesNoLongerReported(t *testing.T) {
	c := newCounters[lagSample](3)
	for i := range 5 {
		c.add(map[string]lagSample{"g": {lag: int64(i)}, "h": {lag: 1}})
	}
	if got := c.get("g"); len(got) != 3 || got[0].lag != 2 || got[2].lag != 4 {
		t.Fatalf("g: %+v, want the last 3 samples", got)
	}
	c.add(map[string]lagSample{"g": {lag: 5}})
	if got := c.get("h"); got != nil {
		t.Fatalf("h is no longer reported but kept: %+v", got)
	}
}

// TestSparkline: a path scaled to the largest value, a text alternative
// with the latest value, and no path before the first sample.
func TestSparkline(t *testing.T) {
	svg := string(sparkline([]float64{0, 5, 10}, "records per second into t", "records/s"))
	for _, want := range []string{`role="img"`, `aria-label="records per second into t: 3 samples, latest 10.0 records/s, peak 10.0"`, `<path d="M0.0 23.0 L60.0 12.0 L120.0 1.0"/>`} {
		if !strings.Contains(svg, want) {
			t.Errorf("sparkline lacks %s:\n%s", want, svg)
		}
	}
	if svg := string(sparkline([]float64{3}, "x", "u")); !strings.Contains(svg, `<path d="M0.0 1.0 L120 1.0"/>`) {
		t.Errorf("one sample: %s", svg)
	}
	if svg := string(sparkline(nil, "x", "u")); !strings.Contains(svg, "no samples yet") || strings.Contains(svg, "<path") {
		t.Errorf("no samples: %s", svg)
	}
}
