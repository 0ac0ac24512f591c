package main

import (
	"encoding/json"
	"math"
	"os"
	"slices"
	"sort"
	"sync"
)

// series is every repetition's value of one metric of one system in one
// cell of one scenario, in repetition order (so that the i-th values of two
// systems were measured in the same round and can be paired into ratios).
type series struct {
	Scenario string    `json:"scenario"`
	Cell     string    `json:"cell"`
	System   string    `json:"system"`
	Metric   string    `json:"metric"`
	Unit     string    `json:"unit"`
	Values   []float64 `json:"values"`
}

// store holds every measurement of a run.
type store struct {
	mu   sync.Mutex
	list []*series
	idx  map[string]*series
}

func newStore() *store { return &store{idx: map[string]*series{}} }

func skey(scen, cell, sys, metric string) string {
	return scen + "\x00" + cell + "\x00" + sys + "\x00" + metric
}

// add appends one repetition's value.
func (s *store) add(scen, cell, sys, metric, unit string, v float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := skey(scen, cell, sys, metric)
	se, ok := s.idx[k]
	if !ok {
		se = &series{Scenario: scen, Cell: cell, System: sys, Metric: metric, Unit: unit}
		s.idx[k] = se
		s.list = append(s.list, se)
	}
	se.Values = append(se.Values, v)
}

// get returns the values (nil when never measured).
func (s *store) get(scen, cell, sys, metric string) []float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if se, ok := s.idx[skey(scen, cell, sys, metric)]; ok {
		return slices.Clone(se.Values)
	}
	return nil
}

// cells lists a scenario's cells in the order they were first measured.
func (s *store) cells(scen string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	seen := map[string]bool{}
	for _, se := range s.list {
		if se.Scenario == scen && !seen[se.Cell] {
			seen[se.Cell] = true
			out = append(out, se.Cell)
		}
	}
	return out
}

// systems lists the systems measured in a scenario cell ("" = any cell).
func (s *store) systems(scen, cell string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	seen := map[string]bool{}
	for _, se := range s.list {
		if se.Scenario == scen && (cell == "" || se.Cell == cell) && !seen[se.System] {
			seen[se.System] = true
			out = append(out, se.System)
		}
	}
	return out
}

// writeJSON writes every series (NaN, "not measured", as null).
func (s *store) writeJSON(path string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	type out struct {
		series
		Values []*float64 `json:"values"`
	}
	var list []out
	for _, se := range s.list {
		o := out{series: *se}
		for _, v := range se.Values {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				o.Values = append(o.Values, nil)
			} else {
				o.Values = append(o.Values, &v)
			}
		}
		list = append(list, o)
	}
	b, err := json.MarshalIndent(list, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func median(xs []float64) float64 {
	xs = finite(xs)
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func minOf(xs []float64) float64 {
	xs = finite(xs)
	if len(xs) == 0 {
		return math.NaN()
	}
	return slices.Min(xs)
}

func maxOf(xs []float64) float64 {
	xs = finite(xs)
	if len(xs) == 0 {
		return math.NaN()
	}
	return slices.Max(xs)
}

func finite(xs []float64) []float64 {
	out := xs[:0:0]
	for _, x := range xs {
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			out = append(out, x)
		}
	}
	return out
}

// pairedRatio is the median over rounds of a[i]/b[i] (rounds measured side by
// side); NaN when either side is missing.
func pairedRatio(a, b []float64) float64 {
	n := min(len(a), len(b))
	var rs []float64
	for i := 0; i < n; i++ {
		if b[i] != 0 {
			rs = append(rs, a[i]/b[i])
		}
	}
	return median(rs)
}

// percentiles returns the q-quantiles (0..1) of xs by nearest rank; xs is
// sorted in place.
func percentiles(xs []float64, qs ...float64) []float64 {
	out := make([]float64, len(qs))
	if len(xs) == 0 {
		for i := range out {
			out[i] = math.NaN()
		}
		return out
	}
	sort.Float64s(xs)
	for i, q := range qs {
		r := int(math.Ceil(q*float64(len(xs)))) - 1
		r = max(0, min(len(xs)-1, r))
		out[i] = xs[r]
	}
	return out
}

// readJSON loads what writeJSON wrote (null back to NaN).
func (s *store) readJSON(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var list []struct {
		series
		Values []*float64 `json:"values"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return err
	}
	for _, o := range list {
		for _, v := range o.Values {
			x := math.NaN()
			if v != nil {
				x = *v
			}
			s.add(o.Scenario, o.Cell, o.System, o.Metric, o.Unit, x)
		}
	}
	return nil
}
