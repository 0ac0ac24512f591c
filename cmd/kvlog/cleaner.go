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
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kvlog/kvlog/cleaner/cleanerstatus"
)

func (a *app) cleanerCmd() *cobra.Command {
	cmd := groupCmd("cleaner", "The log cleaner's status")
	cmd.AddCommand(a.cleanerStatusCmd())
	return cmd
}

// cleanerPartition is one row of `kvlog cleaner status` (and, with -o json,
// its JSON output): a compacted partition of the broker's status document
// (package cleanerstatus) with what its last clean reclaimed.
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
		out      output
		topics   []string
		internal bool
		watch    time.Duration
		count    int
	)
	def := os.Getenv("KVLOG_HTTP")
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Every compacted partition with dirty ratio, first dirty offset, last clean, bytes reclaimed and state",
		Long: `Read the cleaner's JSON status (` + cleanerstatus.Path + `) from the HTTP listener of the
broker given by --bootstrap and print every compacted partition with its
dirty ratio, first dirty offset, last clean, bytes reclaimed by that clean
and state; an uncleanable partition is shown with its cause. -o json prints
these rows as JSON. --topic shows only those topics; internal topics
(__consumer_offsets) are left out unless --internal. --watch 2s prints the
status again every 2s until interrupted (or --count times).

The HTTP listener is --http (or $KVLOG_HTTP) when given; otherwise kvlog
asks the first bootstrap broker for its kvlog.http.listener setting
(DescribeConfigs), using the bootstrap address's host when the listener is
bound to a wildcard address (0.0.0.0, ::). An HTTPS listener is given as
https://host:port (the profile's TLS settings apply); one with
kvlog.http.auth=basic wants a broker user: $KVLOG_HTTP_USER and
$KVLOG_HTTP_PASSWORD.`,
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
			if watch < 0 || count < 0 {
				return usageErr("--watch and --count must be >= 0")
			}
			want := map[string]bool{}
			for _, t := range topics {
				want[t] = true
			}
			for n := 1; ; n++ {
				if watch > 0 && out.format != "json" {
					fmt.Fprintf(a.stdout, "%s\n", time.Now().UTC().Format(time.RFC3339))
				}
				if err := a.printCleaner(base, &out, want, internal); err != nil {
					return err
				}
				if watch == 0 || (count > 0 && n >= count) {
					return nil
				}
				select {
				case <-a.ctx.Done():
					return nil // interrupted: the normal end of --watch
				case <-time.After(watch):
				}
				fmt.Fprintln(a.stdout)
			}
		},
	}
	cmd.Flags().StringArrayVarP(&topics, "topic", "t", nil, "only this topic (repeatable)")
	cmd.Flags().BoolVar(&internal, "internal", false, "include internal topics (__consumer_offsets)")
	cmd.Flags().DurationVarP(&watch, "watch", "w", 0, "print the status again at this interval until interrupted")
	cmd.Flags().IntVar(&count, "count", 0, "with --watch, stop after this many prints (0: until interrupted)")
	cmd.Flags().StringVar(&httpAddr, "http", def, "broker HTTP listener host:port (env KVLOG_HTTP; default: asked from the --bootstrap broker)")
	out.register(cmd)
	return cmd
}

// printCleaner fetches and prints the status once.
func (a *app) printCleaner(base string, out *output, topics map[string]bool, internal bool) error {
	ctx, cancel := a.reqCtx()
	defer cancel()
	st, err := fetchCleanerStatusWith(ctx, a.httpClient(), base)
	if err != nil {
		return err
	}
	parts := []cleanerPartition{}
	for _, p := range cleanerRows(st) {
		if len(topics) > 0 && !topics[p.Topic] {
			continue
		}
		if len(topics) == 0 && !internal && strings.HasPrefix(p.Topic, "__") {
			continue
		}
		parts = append(parts, p)
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
}

// fetchCleanerStatus reads the status document at base + cleanerstatus.Path.
func fetchCleanerStatus(ctx context.Context, base string) (cleanerstatus.Status, error) {
	return fetchCleanerStatusWith(ctx, http.DefaultClient, base)
}

// httpClient is the client of the broker's HTTP listener: the profile's
// TLS settings for https, and basic authentication (a broker user, for
// kvlog.http.auth=basic) from $KVLOG_HTTP_USER and $KVLOG_HTTP_PASSWORD
// unless the --http URL carries user:password@.
func (a *app) httpClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if a.tls != nil {
		tr.TLSClientConfig = a.tls.Clone()
	}
	var rt http.RoundTripper = tr
	if u := os.Getenv("KVLOG_HTTP_USER"); u != "" {
		rt = basicAuth{user: u, pass: os.Getenv("KVLOG_HTTP_PASSWORD"), next: tr}
	}
	return &http.Client{Transport: rt}
}

type basicAuth struct {
	user, pass string
	next       http.RoundTripper
}

func (b basicAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	if _, _, ok := r.BasicAuth(); !ok {
		r = r.Clone(r.Context())
		r.SetBasicAuth(b.user, b.pass)
	}
	return b.next.RoundTrip(r)
}

// fetchCleanerStatusWith reads the status document with hc; a password in
// base never appears in errors.
func fetchCleanerStatusWith(ctx context.Context, hc *http.Client, base string) (cleanerstatus.Status, error) {
	var st cleanerstatus.Status
	url := base + cleanerstatus.Path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return st, usageErr("--http: %v", redactErr(err, base))
	}
	url = req.URL.Redacted()
	base = strings.TrimSuffix(url, cleanerstatus.Path)
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return st, fmt.Errorf("broker HTTP listener unreachable at %s: %w", base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return st, fmt.Errorf("cleaner status at %s: %w", url, err)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return st, fmt.Errorf("cleaner status at %s: %s: the HTTP listener wants a broker user (kvlog.http.auth=basic): set $KVLOG_HTTP_USER and $KVLOG_HTTP_PASSWORD", url, resp.Status)
	}
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("cleaner status at %s: %s", url, resp.Status)
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("cleaner status at %s: not a kvlog cleaner status document: %w", url, err)
	}
	return st, nil
}

// cleanerRows turns the status document's partitions into the command's
// rows, ordered by topic and partition.
func cleanerRows(st cleanerstatus.Status) []cleanerPartition {
	out := make([]cleanerPartition, 0, len(st.Partitions))
	for _, ps := range st.Partitions {
		p := cleanerPartition{
			Topic: ps.Topic, Partition: int64(ps.Partition),
			DirtyRatio: ptr(ps.DirtyRatio), FirstDirtyOffset: ptr(ps.FirstDirtyOffset),
			State: ps.State, Cause: ps.Error,
		}
		if ps.LastCleanTime != nil {
			p.LastClean = ps.LastCleanTime.Format(time.RFC3339Nano)
		}
		if ps.LastPass != nil {
			p.BytesReclaimed = ptr(ps.LastPass.Reclaimed())
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Partition < out[j].Partition
	})
	return out
}

func ptr[T any](v T) *T { return &v }

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

// redactErr is err with the password of base, if any, masked.
func redactErr(err error, base string) error {
	if i := strings.Index(base, "://"); i >= 0 {
		if at := strings.LastIndex(base, "@"); at > i {
			if c := strings.Index(base[i+3:at], ":"); c >= 0 {
				pw := base[i+3+c+1 : at]
				if pw != "" {
					return errors.New(strings.ReplaceAll(err.Error(), pw, "xxxxx"))
				}
			}
		}
	}
	return err
}
