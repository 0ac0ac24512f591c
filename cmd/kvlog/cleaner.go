package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
)

// statusPaths are where kvlogd's HTTP listener may publish the cleaner's JSON
// status, tried in order (the first that answers 200 with JSON wins).
var statusPaths = []string{"/cleaner", "/status/cleaner", "/v1/cleaner", "/status"}

func (a *app) cleanerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cleaner",
		Short: "The log cleaner's status",
		Args:  exactArgs(),
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.cleanerStatusCmd())
	return cmd
}

// cleanerPartition is one compacted partition of the status, normalised from
// the broker's JSON (snake_case or camelCase names). kvlogd serves
// cleaner.Status at /cleaner: "partitions" with topic, partition, state,
// dirty_ratio, first_dirty_offset, last_clean_time, error (the cause of an
// uncleanable partition) and last_pass, whose bytes_read − bytes_written is
// what the last clean reclaimed.
type cleanerPartition struct {
	Topic            string   `json:"topic"`
	Partition        int64    `json:"partition"`
	DirtyRatio       *float64 `json:"dirty_ratio,omitempty"`
	FirstDirtyOffset *int64   `json:"first_dirty_offset,omitempty"`
	LastClean        string   `json:"last_clean,omitempty"`
	BytesReclaimed   *int64   `json:"bytes_reclaimed,omitempty"`
	State            string   `json:"state,omitempty"`
	Cause            string   `json:"cause,omitempty"`
}

func (a *app) cleanerStatusCmd() *cobra.Command {
	var (
		httpAddr string
		path     string
		out      output
	)
	def := os.Getenv("KVLOG_HTTP")
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Every compacted partition with dirty ratio, first dirty offset, last clean, bytes reclaimed and state",
		Long: `Read the cleaner's JSON status from the HTTP listener of the broker given by
--bootstrap and print every compacted partition with its dirty ratio, first
dirty offset, last clean, bytes reclaimed by that clean and state; an
uncleanable partition is shown with its cause. -o json prints the
normalised partitions.

The HTTP listener is --http (or $KVLOG_HTTP) when given; otherwise kvlog
asks the first bootstrap broker for its kvlog.http.listener setting
(DescribeConfigs), using the bootstrap address's host when the listener is
bound to a wildcard address (0.0.0.0, ::).`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			base := httpAddr
			if base == "" {
				base = a.profileHTTP
			}
			if base == "" {
				var err error
				if base, err = a.brokerHTTP(); err != nil {
					return err
				}
			}
			if !strings.Contains(base, "://") {
				base = "http://" + base
			}
			paths := statusPaths
			if path != "" {
				paths = []string{path}
			}
			ctx, cancel := a.reqCtx()
			defer cancel()
			doc, used, err := fetchStatus(ctx, base, paths)
			if err != nil {
				return err
			}
			parts, err := normaliseCleaner(doc)
			if err != nil {
				return fmt.Errorf("cleaner status at %s%s: %w", base, used, err)
			}
			if out.json() {
				return writeJSON(a.stdout, parts)
			}
			t := newTable(a.stdout, "TOPIC", "PARTITION", "DIRTY-RATIO", "FIRST-DIRTY", "LAST-CLEAN", "RECLAIMED", "STATE")
			for _, p := range parts {
				state := p.State
				if p.Cause != "" {
					state += " (" + p.Cause + ")"
				}
				t.row(p.Topic, p.Partition, fmtF(p.DirtyRatio), fmtI(p.FirstDirtyOffset), orDash(p.LastClean), fmtI(p.BytesReclaimed), orDash(state))
			}
			return t.flush()
		},
	}
	cmd.Flags().StringVar(&httpAddr, "http", def, "broker HTTP listener host:port (env KVLOG_HTTP; default: asked from the --bootstrap broker)")
	cmd.Flags().StringVar(&path, "path", "", "status path on the HTTP listener (default: try "+strings.Join(statusPaths, ", ")+")")
	out.register(cmd)
	return cmd
}

func fetchStatus(ctx context.Context, base string, paths []string) (any, string, error) {
	var errs []error
	for _, p := range paths {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+p, nil)
		if err != nil {
			return nil, "", usageErr("--http %q: %v", base, err)
		}
		req.Header.Set("Accept", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, "", fmt.Errorf("broker HTTP listener unreachable at %s: %w", base, err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		resp.Body.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			continue
		}
		if resp.StatusCode != http.StatusOK {
			errs = append(errs, fmt.Errorf("%s: %s", p, resp.Status))
			continue
		}
		var doc any
		if err := json.Unmarshal(body, &doc); err != nil {
			errs = append(errs, fmt.Errorf("%s: not JSON", p))
			continue
		}
		return doc, p, nil
	}
	return nil, "", fmt.Errorf("no cleaner status on %s: %w", base, errors.Join(errs...))
}

// normaliseCleaner finds the partition list in the status document: a
// top-level array, or an array under "partitions", "logs" or
// "cleaner"."partitions".
func normaliseCleaner(doc any) ([]cleanerPartition, error) {
	list, ok := findPartitions(doc, 0)
	if !ok {
		return nil, errors.New("no partition list in the status document")
	}
	out := []cleanerPartition{}
	for _, item := range list {
		m, ok := item.(map[string]any)
		if !ok {
			continue
		}
		p := cleanerPartition{
			Topic:            str(m, "topic"),
			DirtyRatio:       num(m, "dirty_ratio", "dirtyRatio", "ratio"),
			FirstDirtyOffset: intp(num(m, "first_dirty_offset", "firstDirtyOffset", "first_dirty")),
			LastClean:        anyStr(m, "last_clean", "lastClean", "last_clean_time", "lastCleanTime", "last_cleaned"),
			BytesReclaimed:   intp(num(m, "bytes_reclaimed", "bytesReclaimed", "reclaimed_bytes")),
			State:            anyStr(m, "state", "status"),
			Cause:            anyStr(m, "cause", "error", "reason", "uncleanable_cause"),
		}
		if v := num(m, "partition"); v != nil {
			p.Partition = int64(*v)
		}
		if p.BytesReclaimed == nil {
			// kvlogd reports each partition's last pass: what it read less
			// what it wrote back is what that clean reclaimed.
			if lp, ok := m["last_pass"].(map[string]any); ok {
				r, w := num(lp, "bytes_read"), num(lp, "bytes_written")
				if r != nil && w != nil {
					p.BytesReclaimed = intp(ptr(*r - *w))
				}
			}
		}
		if p.Topic == "" {
			if tp := str(m, "topic_partition", "tp", "name"); tp != "" {
				if i := strings.LastIndexByte(tp, '-'); i > 0 {
					p.Topic = tp[:i]
					fmt.Sscan(tp[i+1:], &p.Partition)
				}
			}
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Partition < out[j].Partition
	})
	return out, nil
}

func findPartitions(doc any, depth int) ([]any, bool) {
	switch v := doc.(type) {
	case []any:
		return v, true
	case map[string]any:
		if depth > 2 {
			return nil, false
		}
		for _, k := range []string{"partitions", "logs", "cleaner"} {
			if sub, ok := v[k]; ok {
				if l, ok := findPartitions(sub, depth+1); ok {
					return l, true
				}
			}
		}
	}
	return nil, false
}

func str(m map[string]any, keys ...string) string {
	for _, k := range keys {
		if s, ok := m[k].(string); ok {
			return s
		}
	}
	return ""
}

func anyStr(m map[string]any, keys ...string) string {
	for _, k := range keys {
		switch v := m[k].(type) {
		case string:
			return v
		case float64:
			return fmt.Sprint(int64(v))
		case bool:
			return fmt.Sprint(v)
		}
	}
	return ""
}

func num(m map[string]any, keys ...string) *float64 {
	for _, k := range keys {
		if f, ok := m[k].(float64); ok {
			return &f
		}
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

func intp(f *float64) *int64 {
	if f == nil {
		return nil
	}
	i := int64(*f)
	return &i
}

func fmtF(f *float64) string {
	if f == nil {
		return "-"
	}
	return fmt.Sprintf("%.3f", *f)
}

func fmtI(i *int64) string {
	if i == nil {
		return "-"
	}
	return fmt.Sprint(*i)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// brokerHTTP finds the HTTP listener of the first bootstrap broker: its
// kvlog.http.listener config (DescribeConfigs on the broker resource of the
// broker advertising that address, or of the only broker), with a wildcard
// or empty host replaced by the bootstrap address's host.
func (a *app) brokerHTTP() (string, error) {
	boot := a.brokers()
	if len(boot) == 0 {
		return "", usageErr("no broker given (--bootstrap)")
	}
	cl, adm, err := a.connect(kgo.SeedBrokers(boot[0]))
	if err != nil {
		return "", err
	}
	defer cl.Close()
	ctx, cancel := a.reqCtx()
	defer cancel()
	md, err := adm.BrokerMetadata(ctx)
	if err != nil {
		return "", fmt.Errorf("broker metadata from %s: %w", boot[0], err)
	}
	bootHost, bootPort, err := net.SplitHostPort(boot[0])
	if err != nil {
		return "", usageErr("--bootstrap %q: %v", boot[0], err)
	}
	id, found := int32(-1), false
	for _, b := range md.Brokers {
		if strconv.Itoa(int(b.Port)) == bootPort && (b.Host == bootHost || sameHost(b.Host, bootHost)) {
			id, found = b.NodeID, true
		}
	}
	if !found && len(md.Brokers) == 1 {
		id, found = md.Brokers[0].NodeID, true
	}
	if !found {
		return "", fmt.Errorf("no broker in the cluster's metadata advertises %s; give its HTTP listener with --http", boot[0])
	}
	rcs, err := adm.DescribeBrokerConfigs(ctx, id)
	if err == nil && len(rcs) == 1 {
		err = rcs[0].Err
	}
	if err != nil {
		return "", fmt.Errorf("describe the configs of broker %d: %w", id, err)
	}
	for _, c := range rcs[0].Configs {
		if c.Key != "kvlog.http.listener" {
			continue
		}
		if c.Value == nil || *c.Value == "" {
			return "", fmt.Errorf("broker %d (%s) runs without an HTTP listener (kvlog.http.listener is empty)", id, boot[0])
		}
		host, port, err := net.SplitHostPort(*c.Value)
		if err != nil {
			return "", fmt.Errorf("broker %d: kvlog.http.listener %q: %w", id, *c.Value, err)
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			host = bootHost
		}
		return net.JoinHostPort(host, port), nil
	}
	return "", fmt.Errorf("broker %d (%s) has no kvlog.http.listener config (not a kvlog broker?); give its HTTP listener with --http", id, boot[0])
}

// sameHost reports whether two host names resolve to a common address.
func sameHost(a, b string) bool {
	as, err := net.LookupHost(a)
	if err != nil {
		return false
	}
	bs, err := net.LookupHost(b)
	if err != nil {
		return false
	}
	for _, x := range as {
		for _, y := range bs {
			if x == y {
				return true
			}
		}
	}
	return false
}
