package server

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kvlog/kvlog/cleaner/cleanerstatus"
	"github.com/kvlog/kvlog/console"
	"github.com/kvlog/kvlog/internal/buildinfo"
	"github.com/kvlog/kvlog/internal/clock"
	"github.com/kvlog/kvlog/replica"
	"github.com/kvlog/kvlog/server/config"
	"github.com/kvlog/kvlog/server/httpapi"
	"github.com/kvlog/kvlog/server/security"
)

// The web console (package console) is a Kafka client of this broker:
// consoleHandler gives it the way to reach one of the broker's own
// listeners (httpapi.ConsoleConnect chooses which), the cleaner's status
// (what /cleaner serves) and each hosted partition's segment count, and
// samples the cleaner for its charts.

// consoleHandler returns the console for the HTTP listener, nil when
// kvlog.console.enable=false.
func (s *Server) consoleHandler() http.Handler {
	l := s.layers.Load()
	if !l.Bool("kvlog.console.enable") {
		return nil
	}
	interval := l.Duration("kvlog.console.sample.interval.ms")
	started := time.Now() // the console shows the uptime against the wall clock
	c, err := console.New(console.Options{
		Broker: func() console.BrokerInfo {
			bi := console.BrokerInfo{NodeID: s.cfg.NodeID, Version: buildinfo.Version(""), Started: started}
			s.mode.describe(&bi)
			return bi
		},
		Connect:       s.consoleConnect,
		CleanerStatus: func() cleanerstatus.Status { return s.cleaner.Status() },
		Segments:      s.segmentCount,
		Traffic:       (&consoleTraffic{s: s}).sample,
		GroupLags:     s.consoleGroupLags,
		// The records page links every key to its latest value, served by
		// the key lookup route of this listener (http_keys.go).
		KeyLookup: func(topic, key string) string {
			return "/v1/topics/" + url.PathEscape(topic) + "/keys/" + key + "?format=json"
		},
		SampleInterval: interval,
		// Pages refresh as often as the samples change, within 0.5 to 3 s.
		RefreshInterval: min(3*time.Second, max(500*time.Millisecond, interval)),
		Logger:          s.logger.With("component", "console"),
	})
	if err != nil {
		s.logger.Error("web console disabled", "err", err)
		return nil
	}
	go s.sampleConsole(c, interval)
	return c
}

// consoleSampler is what sampleConsole drives (console.Console).
type consoleSampler interface {
	Sample(now time.Time)
	Close()
}

// sampleConsole samples c at once and then every interval on the broker's
// clock until the broker starts closing, then closes c.
func (s *Server) sampleConsole(c consoleSampler, interval time.Duration) {
	defer c.Close()
	for {
		c.Sample(s.clock.Now())
		t := clock.NewTimer(s.clock, interval)
		select {
		case <-t.C:
		case <-s.closingCh:
			t.Stop()
			return
		}
	}
}

// segmentCount is a hosted partition's number of segments.
func (s *Server) segmentCount(topic string, partition int32) (int, bool) {
	p := s.partition(topic, partition)
	if p == nil || p.log == nil {
		return 0, false
	}
	return p.log.SegmentCount(), true
}

// leads says whether this broker serves p's writes (on a single node it
// leads every partition it hosts).
func leads(p *partition) bool { return p.role() == replica.RoleLeader }

// consoleTraffic samples, for the console's rates, every topic's high
// watermark summed over the partitions this broker leads, and the bytes
// consumers fetched from it (the kvlog_topic_bytes_out_total counter).
// The sums change only when a partition's high watermark or role does,
// which moves the partition manager's counter of moves
// (replica.Manager.Moves), or when the topics do (a new snapshot): a
// sample that finds both as the last one left them reuses its sums
// instead of walking every partition, so an idle broker's samples look
// at no partition.
type consoleTraffic struct {
	s      *Server
	mu     sync.Mutex
	topics *topicSnapshot // of the last walk (nil: none yet)
	moves  uint64         // Moves before the last walk
	hws    []console.TopicTraffic
	looked int // partitions walked (tests)
}

func (c *consoleTraffic) sample() []console.TopicTraffic {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Read before the partitions: a move after this read moves it.
	moves := c.s.replicas.Moves()
	snap := c.s.topics.Load()
	if c.topics != snap || c.moves != moves {
		c.topics, c.moves, c.hws = snap, moves, nil
		for _, t := range c.s.sortedTopics() {
			tr := console.TopicTraffic{Topic: t.name}
			for _, p := range t.parts {
				c.looked++
				if leads(p) {
					tr.HighWatermark += int64(p.log.HighWatermark())
				}
			}
			c.hws = append(c.hws, tr)
		}
	}
	out := map[string]int64{}
	if c.s.metrics != nil {
		out = c.s.metrics.TopicBytesOut()
	}
	tt := slices.Clone(c.hws)
	for i := range tt {
		tt[i].BytesOut = out[tt[i].Topic]
	}
	return tt
}

// consoleGroupLags is the total lag of every group this broker
// coordinates, as kvlog_group_lag counts it (committed offsets against
// the high watermarks of the partitions this broker leads).
func (s *Server) consoleGroupLags() map[string]int64 {
	g := metricsSource{s}.Groups()
	if g == nil {
		return nil
	}
	lags := make(map[string]int64, len(g.Lags))
	for name, pl := range g.Lags {
		var total int64
		for _, l := range pl {
			total += l.Lag
		}
		lags[name] = total
	}
	return lags
}

// consoleConnect returns the client options that reach this broker as
// cred, over one of its listeners (httpapi.ConsoleConnect says which).
func (s *Server) consoleConnect(cred console.Credentials) ([]kgo.Opt, error) {
	s.lnMu.Lock()
	ls := make([]httpapi.ConsoleListener, 0, len(s.listeners))
	for _, l := range s.listeners {
		name := l.name
		ls = append(ls, httpapi.ConsoleListener{
			Name:       name,
			Sec:        l.sec,
			Addr:       l.ln.Addr(),
			Advertised: net.JoinHostPort(l.advHost, strconv.Itoa(int(l.advPort))),
			OtherTLS: func() (*tls.Config, error) {
				return security.ClientTLS(config.ListenerLookup(s.layers.Load(), name))
			},
		})
	}
	s.lnMu.Unlock()
	return httpapi.ConsoleConnect(ls, cred)
}
