package main

import (
	"math"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Charts (gonum.org/v1/plot, PNG). Charts show medians; the tables beside
// them give min–max.

// barChart draws grouped bars: vals[series][group].
func (r *runner) barChart(scen, file, title, ylabel string, groups, series []string, vals [][]float64) {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	p.Y.Min = 0
	n := len(series)
	width := math.Max(6, 1.2*float64(len(groups)*n)*0.3+2)
	width = math.Min(width, 16)
	w := vg.Length((width - 1.5) * float64(vg.Inch) * 0.75 / float64(max(1, len(groups)*n)))
	w = min(w, vg.Points(28))
	for i, name := range series {
		vs := make(plotter.Values, len(groups))
		for g := range groups {
			if g < len(vals[i]) && !math.IsNaN(vals[i][g]) {
				vs[g] = vals[i][g]
			}
		}
		b, err := plotter.NewBarChart(vs, w)
		if err != nil {
			r.note(scen, "chart %s: %v", file, err)
			return
		}
		b.LineStyle.Width = 0
		b.Color = plotutil.Color(i)
		b.Offset = vg.Length(float64(i)-float64(n-1)/2) * w
		p.Add(b)
		p.Legend.Add(name, b)
	}
	top := 0.0
	for _, v := range vals {
		for _, x := range v {
			if !math.IsNaN(x) {
				top = math.Max(top, x)
			}
		}
	}
	p.Y.Max = top * (1.15 + 0.07*float64(n)) // headroom for the legend
	p.Legend.Top = true
	p.NominalX(groups...)
	if len(groups) > 3 {
		p.X.Tick.Label.Rotation = math.Pi / 8
		p.X.Tick.Label.XAlign = draw.XRight
		p.X.Tick.Label.YAlign = draw.YCenter
	}
	p.Add(plotter.NewGrid())
	r.savePlot(scen, file, p, vg.Length(width)*vg.Inch, 4.5*vg.Inch)
}

type curve struct {
	name   string
	xs, ys []float64
}

// lineChart draws one line with points per curve.
func (r *runner) lineChart(scen, file, title, xlabel, ylabel string, logX, logY bool, curves []curve) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xlabel
	p.Y.Label.Text = ylabel
	if logX {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	top := 0.0
	for _, c := range curves {
		for _, y := range c.ys {
			if !math.IsNaN(y) {
				top = math.Max(top, y)
			}
		}
	}
	if logY {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = ticks125{}
		p.Y.Max = top * math.Pow(1.6, float64(len(curves))/2+1) // headroom for the legend
	} else {
		p.Y.Min = 0
		p.Y.Max = top * (1.15 + 0.07*float64(len(curves)))
	}
	for i, c := range curves {
		var xy plotter.XYs
		for j := range c.xs {
			if j < len(c.ys) && !math.IsNaN(c.ys[j]) && (!logY || c.ys[j] > 0) {
				xy = append(xy, plotter.XY{X: c.xs[j], Y: c.ys[j]})
			}
		}
		if len(xy) == 0 {
			continue
		}
		l, s, err := plotter.NewLinePoints(xy)
		if err != nil {
			r.note(scen, "chart %s: %v", file, err)
			return
		}
		l.Color = plotutil.Color(i)
		l.Dashes = plotutil.Dashes(i / 7)
		s.Color = plotutil.Color(i)
		s.Shape = plotutil.Shape(i)
		p.Add(l, s)
		p.Legend.Add(c.name, l, s)
	}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	r.savePlot(scen, file, p, 7*vg.Inch, 4.5*vg.Inch)
}

func (r *runner) savePlot(scen, file string, p *plot.Plot, w, h vg.Length) {
	if err := p.Save(w, h, filepath.Join(r.out, file)); err != nil {
		r.note(scen, "chart %s: %v", file, err)
		return
	}
	r.charts[scen] = append(r.charts[scen], file)
}

// ticks125 marks 1, 2 and 5 times the powers of ten of a log axis.
type ticks125 struct{}

func (ticks125) Ticks(lo, hi float64) []plot.Tick {
	var ts []plot.Tick
	if lo <= 0 {
		lo = hi / 1e6
	}
	for e := math.Floor(math.Log10(lo)); math.Pow(10, e) <= hi; e++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, e)
			if v >= lo && v <= hi {
				ts = append(ts, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'g', -1, 64)})
			}
		}
	}
	return ts
}
