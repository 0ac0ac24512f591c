package console

import (
	"context"
	"crypto/sha256"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kvlog/kvlog/cleaner/cleanerstatus"
)

// Prefix is where the console is mounted on the HTTP listener.
const Prefix = "/ui/"

// Credentials are the user the console acts as for one HTTP request: the
// basic-authentication user and password the HTTP listener verified, and
// the SASL mechanism that accepted them (PLAIN, SCRAM-SHA-256 or
// SCRAM-SHA-512). The zero value is no user (HTTP authentication off).
type Credentials struct {
	User, Password, Mechanism string
}

type credKey struct{}

// WithCredentials returns ctx carrying c, for the console handler.
func WithCredentials(ctx context.Context, c Credentials) context.Context {
	return context.WithValue(ctx, credKey{}, c)
}

func credentials(ctx context.Context) Credentials {
	c, _ := ctx.Value(credKey{}).(Credentials)
	return c
}

// Options connect the console to the broker that serves it.
type Options struct {
	// Connect returns the franz-go options that reach the broker as c
	// (seed broker, TLS, SASL); an error is shown on every page.
	Connect func(c Credentials) ([]kgo.Opt, error)
	// CleanerStatus is the cleaner's status, as /cleaner serves it.
	CleanerStatus func() cleanerstatus.Status
	// Segments is a hosted partition's segment count (false: not hosted
	// here); nil: not shown.
	Segments func(topic string, partition int32) (int, bool)
	// KeyLookup, when set, is the URL of a key's latest value given its
	// topic and key (already path-escaped), e.g. the broker's
	// /v1/topics/{t}/keys/{k}; the records page links each key to it.
	KeyLookup func(topic, key string) string
	// Broker describes the broker serving the console (the cluster page's
	// "This broker"); nil: not shown.
	Broker func() BrokerInfo
	// Traffic is every topic's traffic on this broker (see TopicTraffic),
	// sampled for the topics list's rates; nil: no rates shown.
	Traffic func() []TopicTraffic
	// GroupLags is the total lag of every group this broker coordinates
	// (high watermark minus committed offset, summed over the partitions
	// it leads), sampled for the group page's chart; nil: not shown.
	GroupLags func() map[string]int64
	// SampleInterval is how often Sample is expected to run (shown on the
	// compaction page).
	SampleInterval time.Duration
	// RefreshInterval is how often pages refresh their live parts
	// (default 3s).
	RefreshInterval time.Duration
	Logger          *slog.Logger
}

// BrokerInfo is what the serving broker says of itself, beyond the Kafka
// APIs.
type BrokerInfo struct {
	NodeID  int32
	Version string
	Started time.Time
	// Mode is "single node" or "cluster"; ZooKeeper, in cluster mode, the
	// connect string and whether the session is up.
	Mode             string
	ZooKeeper        string
	ZooKeeperSession bool
}

// Console serves the pages; it is an http.Handler for Prefix.
type Console struct {
	o       Options
	tmpl    map[string]*template.Template
	static  http.Handler
	mux     *http.ServeMux
	history *history
	traffic *counters[trafficSample]
	lags    *counters[lagSample]

	mu      sync.Mutex
	clients map[[32]byte]*cachedClient
}

type cachedClient struct {
	cl   *kgo.Client
	adm  *kadm.Client
	used time.Time
}

// clientIdle is how long an unused per-user client is kept.
const clientIdle = 5 * time.Minute

//go:embed templates/*.html static/*
var assets embed.FS

// New makes a console. Close releases its clients.
func New(o Options) (*Console, error) {
	if o.Connect == nil || o.CleanerStatus == nil {
		return nil, errors.New("console: Options.Connect and Options.CleanerStatus are required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.RefreshInterval <= 0 {
		o.RefreshInterval = 3 * time.Second
	}
	c := &Console{o: o, clients: map[[32]byte]*cachedClient{}, history: newHistory(historySamples),
		traffic: newCounters[trafficSample](historySamples), lags: newCounters[lagSample](historySamples)}
	if err := c.parseTemplates(); err != nil {
		return nil, err
	}
	sub, _ := fs.Sub(assets, "static")
	c.static = http.StripPrefix(Prefix+"static/", http.FileServerFS(sub))
	mux := http.NewServeMux()
	mux.Handle("GET "+Prefix+"static/", c.static)
	mux.HandleFunc("GET "+Prefix+"{$}", c.page(c.cluster))
	mux.HandleFunc("GET "+Prefix+"topics", c.page(c.topics))
	mux.HandleFunc("GET "+Prefix+"topics/{topic}", c.page(c.topic))
	mux.HandleFunc("POST "+Prefix+"topics/{topic}/configs", c.page(c.alterConfigs))
	mux.HandleFunc("GET "+Prefix+"topics/{topic}/records", c.page(c.records))
	mux.HandleFunc("GET "+Prefix+"compaction", c.page(c.compaction))
	mux.HandleFunc("GET "+Prefix+"groups", c.page(c.groups))
	mux.HandleFunc("GET "+Prefix+"groups/{group}", c.page(c.group))
	c.mux = mux
	return c, nil
}

// ServeHTTP serves the console; state-changing requests from another
// origin are refused (the browser sends basic credentials with any
// request, so a form posted from another site would act as the user).
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "same-origin")
	crossOrigin.Handler(c.mux).ServeHTTP(w, r)
}

var crossOrigin = http.NewCrossOriginProtection()

// Sample records every compacted partition's dirty ratio and size, every
// topic's high watermark and bytes fetched, and every group's total lag
// for the charts; the broker calls it every SampleInterval.
func (c *Console) Sample(now time.Time) {
	c.history.add(now, c.o.CleanerStatus())
	if c.o.Traffic != nil {
		tt := c.o.Traffic()
		m := make(map[string]trafficSample, len(tt))
		for _, t := range tt {
			m[t.Topic] = trafficSample{at: now, hw: t.HighWatermark, out: t.BytesOut}
		}
		c.traffic.add(m)
	}
	if c.o.GroupLags != nil {
		gl := c.o.GroupLags()
		m := make(map[string]lagSample, len(gl))
		for g, lag := range gl {
			m[g] = lagSample{at: now, lag: lag}
		}
		c.lags.add(m)
	}
}

// Close closes the console's Kafka clients.
func (c *Console) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, cc := range c.clients {
		cc.cl.Close()
		delete(c.clients, k)
	}
}

// admin returns the kadm client acting as the request's user, made on
// first use and kept while it is used.
func (c *Console) admin(r *http.Request) (*kadm.Client, *kgo.Client, error) {
	cred := credentials(r.Context())
	key := sha256.Sum256([]byte(cred.User + "\x00" + cred.Mechanism + "\x00" + cred.Password))
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, cc := range c.clients {
		if k != key && now.Sub(cc.used) > clientIdle {
			cc.cl.Close()
			delete(c.clients, k)
		}
	}
	if cc := c.clients[key]; cc != nil {
		cc.used = now
		return cc.adm, cc.cl, nil
	}
	opts, err := c.o.Connect(cred)
	if err != nil {
		return nil, nil, err
	}
	opts = append([]kgo.Opt{kgo.ClientID("kvlog-console"), kgo.RequestRetries(2), kgo.RetryTimeout(5 * time.Second), kgo.DialTimeout(5 * time.Second)}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("console client: %w", err)
	}
	cc := &cachedClient{cl: cl, adm: kadm.NewClient(cl), used: now}
	c.clients[key] = cc
	return cc.adm, cc.cl, nil
}
