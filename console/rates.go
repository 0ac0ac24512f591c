package console

import (
	"fmt"
	"html/template"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// TopicTraffic is one reading of a topic's traffic on the serving broker,
// given by Options.Traffic: the sum of the high watermarks of the
// partitions it leads (records in, as the watermark advances) and the
// record-batch bytes it has returned to consumers' fetches since it
// started (out; followers' fetches are not counted).
type TopicTraffic struct {
	Topic         string
	HighWatermark int64
	BytesOut      int64
}

// trafficSample is one reading of a topic, as sampled.
type trafficSample struct {
	at      time.Time
	hw, out int64
}

// rate is a rate between two successive samples.
type rate struct {
	at      time.Time
	in, out float64 // records/s, bytes/s
}

// counters keeps a ring of readings per name (a topic or a group); names
// no longer reported are dropped.
type counters[T any] struct {
	size int
	mu   sync.Mutex
	by   map[string]*ring[T]
}

func newCounters[T any](size int) *counters[T] {
	return &counters[T]{size: size, by: map[string]*ring[T]{}}
}

// add records one reading per name in now; names absent from now are
// forgotten.
func (c *counters[T]) add(now map[string]T) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, v := range now {
		r := c.by[name]
		if r == nil {
			r = &ring[T]{buf: make([]T, c.size)}
			c.by[name] = r
		}
		r.add(v)
	}
	for name := range c.by {
		if _, ok := now[name]; !ok {
			delete(c.by, name)
		}
	}
}

func (c *counters[T]) get(name string) []T {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r := c.by[name]; r != nil {
		return r.all()
	}
	return nil
}

// rates turns successive readings of a topic into rates: records/s from
// the high watermark's advance and bytes/s from the fetch counter's. A
// counter that went back (the topic was deleted and made again, or
// leadership moved) gives 0 for that interval.
func rates(samples []trafficSample) []rate {
	var out []rate
	for i := 1; i < len(samples); i++ {
		a, b := samples[i-1], samples[i]
		dt := b.at.Sub(a.at).Seconds()
		if dt <= 0 {
			continue
		}
		out = append(out, rate{at: b.at, in: float64(max(b.hw-a.hw, 0)) / dt, out: float64(max(b.out-a.out, 0)) / dt})
	}
	return out
}

// lagSample is one reading of a group's total lag.
type lagSample struct {
	at  time.Time
	lag int64
}

// sparkline draws values (oldest first) as a small inline SVG path scaled
// to the largest value, with a text alternative naming the latest value.
func sparkline(values []float64, label, unit string) template.HTML {
	const w, h = 120.0, 24.0
	last := "no samples yet"
	if n := len(values); n > 0 {
		last = fmt.Sprintf("%d samples, latest %s %s, peak %s", n, formatRate(values[n-1]), unit, formatRate(slices.Max(values)))
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="spark" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img" aria-label="%s: %s">`,
		w, h, w, h, template.HTMLEscapeString(label), template.HTMLEscapeString(last))
	if len(values) > 0 {
		top := slices.Max(values)
		step := w
		if len(values) > 1 {
			step = w / float64(len(values)-1)
		}
		y := func(v float64) float64 {
			if top <= 0 {
				return h - 1
			}
			return h - 1 - v/top*(h-2)
		}
		b.WriteString(`<path d="`)
		for i, v := range values {
			cmd := " L"
			if i == 0 {
				cmd = "M"
			}
			fmt.Fprintf(&b, "%s%.1f %.1f", cmd, float64(i)*step, y(v))
		}
		if len(values) == 1 { // a flat line across
			fmt.Fprintf(&b, " L%.0f %.1f", w, y(values[0]))
		}
		b.WriteString(`"/>`)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// formatRate prints a rate with a precision that suits its size.
func formatRate(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v < 10:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case v < 1000:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}
