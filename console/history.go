package console

import (
	"fmt"
	"html/template"
	"strings"
	"sync"
	"time"

	"github.com/kvlog/kvlog/cleaner/cleanerstatus"
)

// historySamples is how many samples a partition keeps (an hour at the
// default interval of 10 s).
const historySamples = 360

// sample is one reading of a compacted partition.
type sample struct {
	at    time.Time
	ratio float64
	bytes int64 // clean + cleanable bytes
}

// ring is a fixed-size circular buffer of samples.
type ring[T any] struct {
	buf  []T
	next int
	full bool
}

func (r *ring[T]) add(s T) {
	r.buf[r.next] = s
	r.next = (r.next + 1) % len(r.buf)
	if r.next == 0 {
		r.full = true
	}
}

// all returns the samples oldest first.
func (r *ring[T]) all() []T {
	if !r.full {
		return append([]T(nil), r.buf[:r.next]...)
	}
	return append(append([]T(nil), r.buf[r.next:]...), r.buf[:r.next]...)
}

type tp struct {
	topic     string
	partition int32
}

// history is the console's memory of every compacted partition: a ring
// per partition; partitions gone from the cleaner's status are dropped.
type history struct {
	size int
	mu   sync.Mutex
	by   map[tp]*ring[sample]
}

func newHistory(size int) *history { return &history{size: size, by: map[tp]*ring[sample]{}} }

func (h *history) add(now time.Time, st cleanerstatus.Status) {
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := make(map[tp]bool, len(st.Partitions))
	for _, p := range st.Partitions {
		k := tp{p.Topic, p.Partition}
		seen[k] = true
		r := h.by[k]
		if r == nil {
			r = &ring[sample]{buf: make([]sample, h.size)}
			h.by[k] = r
		}
		r.add(sample{at: now, ratio: p.DirtyRatio, bytes: p.CleanBytes + p.CleanableBytes})
	}
	for k := range h.by {
		if !seen[k] {
			delete(h.by, k)
		}
	}
}

func (h *history) get(topic string, partition int32) []sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r := h.by[tp{topic, partition}]; r != nil {
		return r.all()
	}
	return nil
}

// chart draws samples as an inline SVG: the dirty ratio (0 to 1) as a
// line, the threshold as a dashed line, with a text alternative.
func chart(samples []sample, threshold float64, label string) template.HTML {
	const w, h = 240.0, 48.0
	var b strings.Builder
	last := "no samples yet"
	if n := len(samples); n > 0 {
		last = fmt.Sprintf("%d samples, latest %.2f, threshold %.2f", n, samples[n-1].ratio, threshold)
	}
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img" aria-label="%s: %s">`,
		w, h, w, h, template.HTMLEscapeString(label), template.HTMLEscapeString(last))
	fmt.Fprintf(&b, `<line class="threshold" x1="0" x2="%.0f" y1="%.1f" y2="%.1f"/>`, w, h-threshold*h, h-threshold*h)
	if len(samples) > 0 {
		b.WriteString(`<polyline class="ratio" points="`)
		step := w
		if len(samples) > 1 {
			step = w / float64(len(samples)-1)
		}
		for i, s := range samples {
			r := min(max(s.ratio, 0), 1)
			fmt.Fprintf(&b, "%.1f,%.1f ", float64(i)*step, h-r*h)
		}
		b.WriteString(`"/>`)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
