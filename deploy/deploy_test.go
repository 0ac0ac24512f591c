package deploy

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kvlog/kvlog/internal/testbroker"
)

func TestMain(m *testing.M) { os.Exit(testbroker.Main(m)) }

// rulesPath and dashboardPath are the deployed files.
const (
	rulesPath     = "prometheus/kvlog-alerts.yml"
	dashboardPath = "grafana/kvlog-dashboard.json"
)

// TestRulesParse parses the alert rules with Prometheus's own rule loader
// (model/rulefmt: YAML shape, PromQL of every expr, templates).
func TestRulesParse(t *testing.T) {
	groups, errs := parseRules(t)
	for _, err := range errs {
		t.Error(err)
	}
	if groups == nil || len(groups.Groups) == 0 || len(groups.Groups[0].Rules) < 8 {
		t.Fatalf("%s: no rules", rulesPath)
	}
}

func parseRules(t *testing.T) (*rulefmt.RuleGroups, []error) {
	t.Helper()
	return rulefmt.ParseFile(rulesPath, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// queries returns every PromQL expression of the rules and the dashboard.
func queries(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	groups, errs := parseRules(t)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			out["rule "+r.Alert] = r.Expr
		}
	}
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q has no query", p.Title)
		}
		for i, tg := range p.Targets {
			// Grafana's $__rate_interval is not PromQL.
			out["panel "+p.Title+" #"+string(rune('A'+i))] = strings.ReplaceAll(tg.Expr, "$__rate_interval", "5m")
		}
	}
	return out
}

// metricNames are the metric names an expression selects.
func metricNames(t *testing.T, what, expr string) []string {
	t.Helper()
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		t.Fatalf("%s: %q: %v", what, expr, err)
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			names = append(names, vs.Name)
		}
		return nil
	})
	if len(names) == 0 {
		t.Errorf("%s: %q selects no metric", what, expr)
	}
	return names
}

var seriesName = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)`)

// TestQueriedMetricsExist runs a kvlogd, gives it the traffic every metric
// needs (produce, a consumer group with commits, a refused request, a
// compacted topic), and checks that every metric the rules and the
// dashboard query is in its /metrics.
func TestQueriedMetricsExist(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{LogLevel: "warn", Props: []string{"log.cleaner.backoff.ms=100"}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	adm := b.Admin(t)
	if _, err := adm.CreateTopic(ctx, 2, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, "kv"); err != nil {
		t.Fatal(err)
	}
	if r, _ := adm.CreateTopic(ctx, 2, 1, nil, "kv"); r.Err == nil {
		t.Fatal("a duplicate topic was created") // the refused request counts an error
	}
	pr := b.Client(t)
	for i := 0; i < 20; i++ {
		if err := pr.ProduceSync(ctx, &kgo.Record{Topic: "kv", Key: []byte{byte('a' + i%5)}, Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cons := b.Client(t, kgo.ConsumeTopics("kv"), kgo.ConsumerGroup("dash"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	for n := 0; n < 20 && ctx.Err() == nil; {
		fs := cons.PollFetches(ctx)
		n += fs.NumRecords()
		if err := cons.CommitUncommittedOffsets(ctx); err != nil {
			t.Fatal(err)
		}
	}

	want := map[string][]string{} // metric → the queries using it
	for what, expr := range queries(t) {
		for _, n := range metricNames(t, what, expr) {
			want[n] = append(want[n], what)
		}
	}
	var missing []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		have := scrape(t, "http://"+b.HTTP+"/metrics")
		missing = missing[:0]
		for n := range want {
			if !have[n] {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond) // group lag and cleaner series appear with their state
	}
	sort.Strings(missing)
	for _, n := range missing {
		t.Errorf("%s is not in kvlogd's /metrics; used by %v", n, want[n])
	}
}

// scrape returns the names of the series in a Prometheus text exposition.
func scrape(t *testing.T, url string) map[string]bool {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if m := seriesName.FindString(line); m != "" {
			have[m] = true
		}
	}
	return have
}

// TestProductionConfigStarts starts kvlogd with the example production
// configuration (addresses and log dir overridden by the harness): every
// key is one kvlogd knows, with a valid value.
func TestProductionConfigStarts(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{Args: []string{"--config", "config/server.properties"}})
	b.Stop()
	if log := b.Log(); strings.Contains(log, "ignored") || strings.Contains(log, "level=WARN") || strings.Contains(log, "level=ERROR") {
		t.Errorf("kvlogd warned about the production config:\n%s", log)
	}
}
