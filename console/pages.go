package console

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/cleaner/cleanerstatus"
)

// view is what a page handler gives the layout.
type view struct {
	Name   string // template name, also the active navigation entry
	Title  string
	Status int // 0: 200
	Data   any
	// Refresh is the live refresh interval in ms (set by page).
	Refresh int64
	User    string
	// Self is the page's address for the live refresh (a GET); a form's
	// answer sets it to the page the form is on.
	Self string
}

// requestTimeout bounds the Kafka requests of one page.
const requestTimeout = 10 * time.Second

func (c *Console) page(fn func(ctx context.Context, r *http.Request) (*view, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
		defer cancel()
		v, err := fn(ctx, r)
		if err != nil {
			c.o.Logger.Warn("console page failed", "path", r.URL.Path, "err", err)
			v = &view{Name: "error", Title: "Error", Status: http.StatusBadGateway, Data: err.Error()}
			var pe pageError
			switch {
			case errors.As(err, &pe):
				v.Status = pe.status
			case errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.GroupAuthorizationFailed), errors.Is(err, kerr.ClusterAuthorizationFailed):
				v.Status = http.StatusForbidden
			}
		}
		if v.Name == "redirect" {
			http.Redirect(w, r, v.Data.(string), http.StatusSeeOther)
			return
		}
		v.Refresh = c.o.RefreshInterval.Milliseconds()
		if v.Self == "" {
			v.Self = r.URL.RequestURI()
		}
		v.User = credentials(r.Context()).User
		t := c.tmpl[v.Name]
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if v.Status != 0 {
			w.WriteHeader(v.Status)
		}
		if err := t.ExecuteTemplate(w, "layout", v); err != nil {
			c.o.Logger.Warn("console template failed", "page", v.Name, "err", err)
		}
	}
}

// pageError is an error page with its HTTP status.
type pageError struct {
	status int
	msg    string
}

func (e pageError) Error() string { return e.msg }

func notFound(msg string) error { return pageError{http.StatusNotFound, msg} }

var funcs = template.FuncMap{
	"bytes":   humanBytes,
	"ratio":   func(f float64) string { return strconv.FormatFloat(f, 'f', 3, 64) },
	"ago":     ago,
	"pathEsc": url.PathEscape,
	"join": func(xs []int32) string {
		s := make([]string, len(xs))
		for i, x := range xs {
			s[i] = strconv.Itoa(int(x))
		}
		return strings.Join(s, ", ")
	},
	"deref": func(s *string) string {
		if s == nil {
			return ""
		}
		return *s
	},
	"source":  sourceName,
	"ptrTime": func(t time.Time) *time.Time { return &t },
	"sum":     func(a, b int64) int64 { return a + b },
	"utc":     func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
}

func (c *Console) parseTemplates() error {
	c.tmpl = map[string]*template.Template{}
	for _, name := range []string{"cluster", "topics", "topic", "compaction", "groups", "group", "records", "error"} {
		t, err := template.New(name).Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return fmt.Errorf("console template %s: %w", name, err)
		}
		c.tmpl[name] = t
	}
	return nil
}

func humanBytes(n int64) string {
	if n < 0 {
		return "–"
	}
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func ago(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "never"
	}
	d := time.Since(*t).Round(time.Second)
	if d < 0 {
		return t.UTC().Format("2006-01-02 15:04:05") + " UTC (in " + (-d).String() + ")"
	}
	return t.UTC().Format("15:04:05") + " UTC (" + d.String() + " ago)"
}

func sourceName(s kmsg.ConfigSource) string {
	switch s {
	case kmsg.ConfigSourceDynamicTopicConfig:
		return "topic"
	case kmsg.ConfigSourceDynamicBrokerConfig:
		return "broker (dynamic)"
	case kmsg.ConfigSourceDynamicDefaultBrokerConfig:
		return "cluster default (dynamic)"
	case kmsg.ConfigSourceStaticBrokerConfig:
		return "broker (server.properties)"
	case kmsg.ConfigSourceDefaultConfig:
		return "default"
	}
	return strings.ToLower(s.String())
}

// --- cluster ---

type clusterData struct {
	Self       *BrokerInfo
	Uptime     string
	ClusterID  string
	Controller int32
	Brokers    []kadm.BrokerDetail
	LogDirs    []logDirRow
}

type logDirRow struct {
	Broker              int32
	Dir                 string
	Size, Total, Usable int64
	Partitions          int
	Err                 string
}

func (c *Console) cluster(ctx context.Context, r *http.Request) (*view, error) {
	adm, _, err := c.admin(r)
	if err != nil {
		return nil, err
	}
	md, err := adm.BrokerMetadata(ctx)
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	d := clusterData{ClusterID: md.Cluster, Controller: md.Controller, Brokers: md.Brokers}
	if c.o.Broker != nil {
		bi := c.o.Broker()
		d.Self = &bi
		d.Uptime = time.Since(bi.Started).Round(time.Second).String()
	}
	dirs, err := adm.DescribeAllLogDirs(ctx, nil)
	if err == nil {
		for broker, ds := range dirs {
			for _, dir := range ds {
				row := logDirRow{Broker: broker, Dir: dir.Dir, Total: dir.TotalBytes, Usable: dir.UsableBytes}
				if dir.Err != nil {
					row.Err = dir.Err.Error()
				}
				for _, ps := range dir.Topics {
					for _, p := range ps {
						row.Size += p.Size
						row.Partitions++
					}
				}
				d.LogDirs = append(d.LogDirs, row)
			}
		}
		sort.Slice(d.LogDirs, func(i, j int) bool {
			if d.LogDirs[i].Broker != d.LogDirs[j].Broker {
				return d.LogDirs[i].Broker < d.LogDirs[j].Broker
			}
			return d.LogDirs[i].Dir < d.LogDirs[j].Dir
		})
	}
	return &view{Name: "cluster", Title: "Cluster", Data: d}, nil
}

// --- topics ---

// partitionSizes is each partition's size: the largest of its replicas
// (a replica behind the leader holds less).
func partitionSizes(dirs kadm.DescribedAllLogDirs) map[string]map[int32]int64 {
	out := map[string]map[int32]int64{}
	for _, ds := range dirs {
		ds.EachPartition(func(p kadm.DescribedLogDirPartition) {
			if p.IsFuture {
				return
			}
			if out[p.Topic] == nil {
				out[p.Topic] = map[int32]int64{}
			}
			out[p.Topic][p.Partition] = max(out[p.Topic][p.Partition], p.Size)
		})
	}
	return out
}

type topicRow struct {
	Name              string
	Partitions        int
	ReplicationFactor int
	CleanupPolicy     string
	Size              int64
	Internal          bool
	Err               string
	// Rates: the latest records/s in and bytes/s out with their
	// sparklines (HasRates false when Options.Traffic is nil).
	HasRates    bool
	In, Out     string
	InSp, OutSp template.HTML
}

func (c *Console) topics(ctx context.Context, r *http.Request) (*view, error) {
	adm, _, err := c.admin(r)
	if err != nil {
		return nil, err
	}
	td, err := adm.ListTopicsWithInternal(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing topics: %w", err)
	}
	sizes := map[string]int64{}
	if dirs, err := adm.DescribeAllLogDirs(ctx, nil); err == nil {
		for t, ps := range partitionSizes(dirs) {
			for _, n := range ps {
				sizes[t] += n
			}
		}
	}
	policies := map[string]string{}
	if rcs, err := adm.DescribeTopicConfigs(ctx, td.Names()...); err == nil {
		for _, rc := range rcs {
			for _, cf := range rc.Configs {
				if cf.Key == "cleanup.policy" && cf.Value != nil {
					policies[rc.Name] = *cf.Value
				}
			}
		}
	}
	var rows []topicRow
	for _, t := range td.Sorted() {
		row := topicRow{Name: t.Topic, Partitions: len(t.Partitions), ReplicationFactor: t.Partitions.NumReplicas(),
			CleanupPolicy: policies[t.Topic], Size: sizes[t.Topic], Internal: t.IsInternal}
		if t.Err != nil {
			row.Err = t.Err.Error()
		}
		if c.o.Traffic != nil {
			c.topicRates(&row)
		}
		rows = append(rows, row)
	}
	return &view{Name: "topics", Title: "Topics", Data: topicsData{Rows: rows, Rates: c.o.Traffic != nil}}, nil
}

type topicsData struct {
	Rows  []topicRow
	Rates bool
}

// topicRates fills a row's rates from the sampled traffic.
func (c *Console) topicRates(row *topicRow) {
	rs := rates(c.traffic.get(row.Name))
	in, out := make([]float64, len(rs)), make([]float64, len(rs))
	for i, r := range rs {
		in[i], out[i] = r.in, r.out
	}
	row.HasRates = true
	row.In, row.Out = "–", "–"
	if n := len(rs); n > 0 {
		row.In, row.Out = formatRate(in[n-1]), humanBytes(int64(out[n-1]+0.5))+"/s"
	}
	row.InSp = sparkline(in, "records per second into "+row.Name, "records/s")
	row.OutSp = sparkline(out, "bytes per second fetched from "+row.Name, "bytes/s")
}

type partitionRow struct {
	Partition   int32
	Leader      int32
	Replicas    []int32
	ISR         []int32
	LogStart    int64
	HighWater   int64
	LSO         int64
	ShowLSO     bool
	Size        int64
	Segments    int
	HasSegments bool
	Err         string
}

type configRow struct {
	Key       string
	Value     string
	Null      bool
	Sensitive bool
	Source    kmsg.ConfigSource
	Error     string // inline validation error
	Attempted string // the value that failed
}

type topicData struct {
	Topic      string
	Internal   bool
	Partitions []partitionRow
	Configs    []configRow
	Saved      string
	FormError  string
}

func (c *Console) topic(ctx context.Context, r *http.Request) (*view, error) {
	return c.topicView(ctx, r, r.PathValue("topic"), nil, "")
}

// topicView renders a topic's page; failed holds inline errors by config
// key (with the attempted value), formErr one for the whole form.
func (c *Console) topicView(ctx context.Context, r *http.Request, name string, failed map[string][2]string, formErr string) (*view, error) {
	adm, _, err := c.admin(r)
	if err != nil {
		return nil, err
	}
	td, err := adm.ListTopicsWithInternal(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", name, err)
	}
	t, ok := td[name]
	if !ok || errors.Is(t.Err, kerr.UnknownTopicOrPartition) {
		return nil, notFound(fmt.Sprintf("topic %s does not exist (or you may not describe it)", name))
	}
	if t.Err != nil {
		return nil, fmt.Errorf("topic %s: %w", name, t.Err)
	}
	d := topicData{Topic: name, Internal: t.IsInternal, Saved: r.URL.Query().Get("saved"), FormError: formErr}
	starts, _ := adm.ListStartOffsets(ctx, name)
	ends, _ := adm.ListEndOffsets(ctx, name)
	lsos, _ := adm.ListCommittedOffsets(ctx, name)
	want := kadm.TopicsSet{}
	for p := range t.Partitions {
		want.Add(name, p)
	}
	var sizes map[int32]int64
	if dirs, err := adm.DescribeAllLogDirs(ctx, want); err == nil {
		sizes = partitionSizes(dirs)[name]
	}
	for _, p := range t.Partitions.Sorted() {
		row := partitionRow{Partition: p.Partition, Leader: p.Leader, Replicas: p.Replicas, ISR: p.ISR, LogStart: -1, HighWater: -1, LSO: -1, Size: sizes[p.Partition]}
		if p.Err != nil {
			row.Err = p.Err.Error()
		}
		if o, ok := starts.Lookup(name, p.Partition); ok && o.Err == nil {
			row.LogStart = o.Offset
		}
		if o, ok := ends.Lookup(name, p.Partition); ok && o.Err == nil {
			row.HighWater = o.Offset
		}
		if o, ok := lsos.Lookup(name, p.Partition); ok && o.Err == nil {
			row.LSO = o.Offset
			row.ShowLSO = o.Offset != row.HighWater
		}
		if c.o.Segments != nil {
			row.Segments, row.HasSegments = c.o.Segments(name, p.Partition)
		}
		d.Partitions = append(d.Partitions, row)
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("configs of %s: %w", name, err)
	}
	if rc, err := rcs.On(name, nil); err == nil {
		if rc.Err != nil {
			d.FormError = "configs: " + rc.Err.Error()
		}
		for _, cf := range rc.Configs {
			row := configRow{Key: cf.Key, Null: cf.Value == nil, Sensitive: cf.Sensitive, Source: cf.Source}
			if cf.Value != nil {
				row.Value = *cf.Value
			}
			if f, ok := failed[cf.Key]; ok {
				row.Attempted, row.Error = f[0], f[1]
			}
			d.Configs = append(d.Configs, row)
		}
		sort.Slice(d.Configs, func(i, j int) bool { return d.Configs[i].Key < d.Configs[j].Key })
	}
	v := &view{Name: "topic", Title: "Topic " + name, Data: d, Self: Prefix + "topics/" + url.PathEscape(name)}
	if len(failed) > 0 || formErr != "" {
		v.Status = http.StatusBadRequest
	}
	return v, nil
}

// alterConfigs applies the topic form: each changed value is set, each
// "reset" box deletes the topic override (IncrementalAlterConfigs). The
// broker validates; its error for a key is shown next to that key. The
// changes are first validated together (validate_only), so either all
// apply or none.
func (c *Console) alterConfigs(ctx context.Context, r *http.Request) (*view, error) {
	name := r.PathValue("topic")
	if err := r.ParseForm(); err != nil {
		return c.topicView(ctx, r, name, nil, "bad form: "+err.Error())
	}
	adm, _, err := c.admin(r)
	if err != nil {
		return nil, err
	}
	var alters []kadm.AlterConfig
	var keys []string
	for k, vs := range r.PostForm {
		key, ok := strings.CutPrefix(k, "cfg.")
		if !ok || len(vs) == 0 {
			continue
		}
		orig := r.PostForm.Get("orig." + key)
		if r.PostForm.Get("reset."+key) == "on" {
			alters = append(alters, kadm.AlterConfig{Op: kadm.DeleteConfig, Name: key})
			keys = append(keys, key)
			continue
		}
		if vs[0] == orig {
			continue
		}
		v := vs[0]
		alters = append(alters, kadm.AlterConfig{Op: kadm.SetConfig, Name: key, Value: &v})
		keys = append(keys, key)
	}
	if len(alters) == 0 {
		return &view{Name: "redirect", Data: Prefix + "topics/" + url.PathEscape(name)}, nil
	}
	sort.Strings(keys)
	failed := map[string][2]string{}
	// One key at a time in validate_only mode names the key at fault (the
	// broker answers one error per resource).
	for _, a := range alters {
		resp, err := adm.ValidateAlterTopicConfigs(ctx, []kadm.AlterConfig{a}, name)
		if err != nil {
			return c.topicView(ctx, r, name, nil, "validating: "+err.Error())
		}
		if ar, err := resp.On(name, nil); err == nil && ar.Err != nil {
			val := ""
			if a.Value != nil {
				val = *a.Value
			}
			failed[a.Name] = [2]string{val, describeErr(ar.Err, ar.ErrMessage)}
		}
	}
	if len(failed) > 0 {
		return c.topicView(ctx, r, name, failed, "nothing was changed: correct the values marked below")
	}
	resp, err := adm.AlterTopicConfigs(ctx, alters, name)
	if err != nil {
		return c.topicView(ctx, r, name, nil, "altering configs: "+err.Error())
	}
	if ar, err := resp.On(name, nil); err == nil && ar.Err != nil {
		return c.topicView(ctx, r, name, nil, describeErr(ar.Err, ar.ErrMessage))
	}
	c.o.Logger.Info("console altered topic configs", "topic", name, "keys", strings.Join(keys, ","), "user", credentials(r.Context()).User)
	return &view{Name: "redirect", Data: Prefix + "topics/" + url.PathEscape(name) + "?saved=" + url.QueryEscape(strings.Join(keys, ", "))}, nil
}

func describeErr(err error, msg string) string {
	if msg != "" && !strings.Contains(err.Error(), msg) {
		return err.Error() + ": " + msg
	}
	return err.Error()
}

// --- compaction ---

type compactionRow struct {
	cleanerstatus.PartitionStatus
	MinRatio  float64
	Due       bool
	Chart     template.HTML
	Reclaimed int64
	HasPass   bool
}

type compactionData struct {
	Status   cleanerstatus.Status
	Rows     []compactionRow
	Interval time.Duration
}

func (c *Console) compaction(ctx context.Context, r *http.Request) (*view, error) {
	adm, _, err := c.admin(r)
	if err != nil {
		return nil, err
	}
	st := c.o.CleanerStatus()
	// Only topics the user may describe (Metadata filters them).
	td, err := adm.ListTopicsWithInternal(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing topics: %w", err)
	}
	var names []string
	for _, p := range st.Partitions {
		if _, ok := td[p.Topic]; ok && (len(names) == 0 || names[len(names)-1] != p.Topic) {
			names = append(names, p.Topic)
		}
	}
	minRatio := map[string]float64{}
	if len(names) > 0 {
		if rcs, err := adm.DescribeTopicConfigs(ctx, names...); err == nil {
			for _, rc := range rcs {
				for _, cf := range rc.Configs {
					if cf.Key == "min.cleanable.dirty.ratio" && cf.Value != nil {
						minRatio[rc.Name], _ = strconv.ParseFloat(*cf.Value, 64)
					}
				}
			}
		}
	}
	d := compactionData{Status: st, Interval: c.o.SampleInterval}
	for _, p := range st.Partitions {
		if _, ok := td[p.Topic]; !ok {
			continue
		}
		mr, ok := minRatio[p.Topic]
		if !ok {
			mr = st.Config.MinCleanableRatio
		}
		row := compactionRow{PartitionStatus: p, MinRatio: mr, Due: p.Due != ""}
		row.Chart = chart(c.history.get(p.Topic, p.Partition), mr, fmt.Sprintf("dirty ratio of %s-%d", p.Topic, p.Partition))
		if p.LastPass != nil {
			row.HasPass = true
			row.Reclaimed = p.LastPass.Reclaimed()
		}
		d.Rows = append(d.Rows, row)
	}
	d.Status.Partitions = nil
	return &view{Name: "compaction", Title: "Compaction", Data: d}, nil
}

// --- groups ---

type groupRow struct {
	Group, State, Protocol string
	Members                int
	Lag                    int64
	Err                    string
}

func (c *Console) groups(ctx context.Context, r *http.Request) (*view, error) {
	adm, _, err := c.admin(r)
	if err != nil {
		return nil, err
	}
	lg, err := adm.ListGroups(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing groups: %w", err)
	}
	var rows []groupRow
	if len(lg) > 0 {
		lags, err := adm.Lag(ctx, lg.Groups()...)
		if err != nil {
			return nil, fmt.Errorf("group lag: %w", err)
		}
		for _, g := range lags.Sorted() {
			row := groupRow{Group: g.Group, State: g.State, Protocol: g.Protocol, Members: len(g.Members), Lag: g.Lag.Total()}
			if err := g.Error(); err != nil {
				row.Err = err.Error()
			}
			rows = append(rows, row)
		}
	}
	return &view{Name: "groups", Title: "Consumer groups", Data: rows}, nil
}

type groupData struct {
	Group   kadm.DescribedGroupLag
	Lags    []kadm.GroupMemberLag
	Total   int64
	Members []memberRow
	Err     string
	// LagChart is the total lag over the last samples (empty when
	// Options.GroupLags is nil).
	LagChart template.HTML
}

type memberRow struct {
	MemberID, ClientID, ClientHost, Instance string
	Assigned                                 []string
}

func (c *Console) group(ctx context.Context, r *http.Request) (*view, error) {
	adm, _, err := c.admin(r)
	if err != nil {
		return nil, err
	}
	name := r.PathValue("group")
	lags, err := adm.Lag(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("group %s: %w", name, err)
	}
	g, ok := lags[name]
	if !ok || g.State == "Dead" {
		return nil, notFound(fmt.Sprintf("group %s does not exist (or you may not describe it)", name))
	}
	d := groupData{Group: g, Lags: g.Lag.Sorted(), Total: g.Lag.Total()}
	if c.o.GroupLags != nil {
		var vs []float64
		for _, s := range c.lags.get(name) {
			vs = append(vs, float64(s.lag))
		}
		d.LagChart = sparkline(vs, "total lag of "+name, "records")
	}
	if err := g.Error(); err != nil {
		d.Err = err.Error()
	}
	for _, m := range g.Members {
		mr := memberRow{MemberID: m.MemberID, ClientID: m.ClientID, ClientHost: m.ClientHost}
		if m.InstanceID != nil {
			mr.Instance = *m.InstanceID
		}
		if ca, ok := m.Assigned.AsConsumer(); ok {
			for _, t := range ca.Topics {
				for _, p := range t.Partitions {
					mr.Assigned = append(mr.Assigned, fmt.Sprintf("%s-%d", t.Topic, p))
				}
			}
		}
		d.Members = append(d.Members, mr)
	}
	return &view{Name: "group", Title: "Group " + name, Data: d}, nil
}

// --- records ---

// maxRecords is the most records one records page shows.
const maxRecords = 50

type recordRow struct {
	Offset    int64
	Timestamp string
	Key       string
	KeyURL    string
	Value     string
	Tombstone bool
	Headers   []string
	Truncated bool
}

type recordsData struct {
	Topic      string
	Partition  int32
	Partitions []int32
	From       int64
	LogStart   int64
	HighWater  int64
	Records    []recordRow
	Next       int64
	KeyLookup  bool
	Err        string
}

// records fetches up to maxRecords records of a partition from an offset
// (default: the last maxRecords below the high watermark) through the
// broker's own fetch path, as any consumer reads them.
func (c *Console) records(ctx context.Context, r *http.Request) (*view, error) {
	name := r.PathValue("topic")
	adm, _, err := c.admin(r)
	if err != nil {
		return nil, err
	}
	td, err := adm.ListTopicsWithInternal(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", name, err)
	}
	t, ok := td[name]
	if !ok || t.Err != nil {
		return nil, notFound(fmt.Sprintf("topic %s does not exist (or you may not describe it)", name))
	}
	d := recordsData{Topic: name, KeyLookup: c.o.KeyLookup != nil}
	for _, p := range t.Partitions.Sorted() {
		d.Partitions = append(d.Partitions, p.Partition)
	}
	q := r.URL.Query()
	if v := q.Get("partition"); v != "" {
		p, err := strconv.ParseInt(v, 10, 32)
		if err != nil || p < 0 || int(p) >= len(t.Partitions) {
			return nil, notFound(fmt.Sprintf("topic %s has no partition %q", name, v))
		}
		d.Partition = int32(p)
	}
	starts, err := adm.ListStartOffsets(ctx, name)
	if err != nil {
		return nil, err
	}
	ends, err := adm.ListEndOffsets(ctx, name)
	if err != nil {
		return nil, err
	}
	so, _ := starts.Lookup(name, d.Partition)
	eo, _ := ends.Lookup(name, d.Partition)
	d.LogStart, d.HighWater = so.Offset, eo.Offset
	d.From = max(d.HighWater-maxRecords, d.LogStart)
	if v := q.Get("offset"); v != "" {
		o, err := strconv.ParseInt(v, 10, 64)
		if err != nil || o < 0 {
			d.Err = fmt.Sprintf("offset %q is not a number ≥ 0", v)
			return &view{Name: "records", Title: "Records of " + name, Data: d, Status: http.StatusBadRequest}, nil
		}
		d.From = min(max(o, d.LogStart), d.HighWater)
	}
	d.Next = d.From
	if d.From < d.HighWater {
		if err := c.fetch(ctx, r, &d); err != nil {
			d.Err = err.Error()
		}
	}
	return &view{Name: "records", Title: "Records of " + name, Data: d}, nil
}

// maxShown is how much of a key or value a records page prints.
const maxShown = 512

func (c *Console) fetch(ctx context.Context, r *http.Request, d *recordsData) error {
	opts, err := c.o.Connect(credentials(r.Context()))
	if err != nil {
		return err
	}
	opts = append(opts, kgo.ClientID("kvlog-console"), kgo.DialTimeout(5*time.Second),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{d.Topic: {d.Partition: kgo.NewOffset().At(d.From)}}),
		kgo.FetchMaxWait(200*time.Millisecond))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	// Each poll waits at most a second: a partition whose last offsets
	// hold only control records (transaction markers, which no consumer
	// is given) never reaches the high watermark.
	for polls := 0; polls < 20 && len(d.Records) < maxRecords && d.Next < d.HighWater; polls++ {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollRecords(pctx, maxRecords-len(d.Records))
		cancel()
		if fs.NumRecords() == 0 && pctx.Err() != nil {
			break
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				ferr = err
			}
		})
		if ferr != nil {
			return fmt.Errorf("fetching %s-%d from %d: %w", d.Topic, d.Partition, d.Next, ferr)
		}
		fs.EachRecord(func(rec *kgo.Record) {
			if len(d.Records) >= maxRecords || rec.Offset >= d.HighWater {
				return
			}
			row := recordRow{Offset: rec.Offset, Timestamp: rec.Timestamp.UTC().Format(time.RFC3339Nano), Tombstone: rec.Value == nil}
			row.Key, row.Truncated = shown(rec.Key)
			if !row.Tombstone {
				var tr bool
				row.Value, tr = shown(rec.Value)
				row.Truncated = row.Truncated || tr
			}
			if c.o.KeyLookup != nil && rec.Key != nil {
				row.KeyURL = c.o.KeyLookup(d.Topic, url.PathEscape(string(rec.Key)))
			}
			for _, h := range rec.Headers {
				v, _ := shown(h.Value)
				row.Headers = append(row.Headers, h.Key+"="+v)
			}
			d.Records = append(d.Records, row)
			d.Next = rec.Offset + 1
		})
	}
	return nil
}

func shown(b []byte) (string, bool) {
	if len(b) > maxShown {
		return strings.ToValidUTF8(string(b[:maxShown]), "\uFFFD"), true
	}
	return strings.ToValidUTF8(string(b), "\uFFFD"), false
}
