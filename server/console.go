package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/kvlog/kvlog/cleaner/cleanerstatus"
	"github.com/kvlog/kvlog/console"
	"github.com/kvlog/kvlog/internal/buildinfo"
	"github.com/kvlog/kvlog/replica"
	"github.com/kvlog/kvlog/server/config"
	"github.com/kvlog/kvlog/server/security"
)

// The web console (package console) is a Kafka client of this broker:
// consoleHandler gives it the way to reach one of the broker's own
// listeners, the cleaner's status (what /cleaner serves) and each hosted
// partition's segment count, and samples the cleaner for its charts.
//
// Which listener: without HTTP authentication, a PLAINTEXT listener (the
// console acts as User:ANONYMOUS there, as any client of it), else an SSL
// one that asks no client certificate. With kvlog.http.auth=basic, a SASL
// listener (SASL_PLAINTEXT first, then SASL_SSL) where the console
// authenticates as the user who logged in, with the mechanism that
// accepted the password if the listener enables it: the broker's ACLs then
// decide what the console may show and change. A TLS listener is reached
// on its own address and its certificate is pinned (it must be the one the
// listener serves), so no trust store is needed for the broker to reach
// itself. When no listener fits, the console's pages say why.

// consoleHandler returns the console for the HTTP listener, nil when
// kvlog.console.enable=false.
func (s *Server) consoleHandler() http.Handler {
	l := s.layers.Load()
	if !l.Bool("kvlog.console.enable") {
		return nil
	}
	interval := l.Duration("kvlog.console.sample.interval.ms")
	started := time.Now()
	c, err := console.New(console.Options{
		Broker: func() console.BrokerInfo {
			bi := console.BrokerInfo{NodeID: s.cfg.NodeID, Version: buildinfo.Version(""), Started: started}
			s.mode.describe(&bi)
			return bi
		},
		Connect:       s.consoleConnect,
		CleanerStatus: func() cleanerstatus.Status { return s.cleaner.Status() },
		Segments:      s.segmentCount,
		Traffic:       s.consoleTraffic,
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
	// The sampler runs until the broker closes; it looks every 100 ms
	// (the broker has no channel closed at Close, and a stopped broker's
	// goroutines must end promptly).
	go func() {
		defer c.Close()
		next := time.Now()
		for !s.closing.Load() {
			if now := time.Now(); !now.Before(next) {
				c.Sample(now)
				next = now.Add(interval)
			}
			time.Sleep(min(interval, 100*time.Millisecond))
		}
	}()
	return c
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

// consoleTraffic is every topic's high watermark summed over the
// partitions this broker leads, and the bytes consumers fetched from it
// (the kvlog_topic_bytes_out_total counter), for the console's rates.
func (s *Server) consoleTraffic() []console.TopicTraffic {
	out := map[string]int64{}
	if s.metrics != nil {
		out = s.metrics.TopicBytesOut()
	}
	var tt []console.TopicTraffic
	for _, t := range s.sortedTopics() {
		tr := console.TopicTraffic{Topic: t.name, BytesOut: out[t.name]}
		for _, p := range t.parts {
			if leads(p) {
				tr.HighWatermark += int64(p.log.HighWatermark())
			}
		}
		tt = append(tt, tr)
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
// cred (see the comment at the top).
func (s *Server) consoleConnect(cred console.Credentials) ([]kgo.Opt, error) {
	s.lnMu.Lock()
	ls := slices.Clone(s.listeners)
	s.lnMu.Unlock()
	want := []string{"PLAINTEXT", "SSL"}
	if cred.User != "" {
		want = []string{"SASL_PLAINTEXT", "SASL_SSL"}
	}
	for _, proto := range want {
		for _, l := range ls {
			if l.sec == nil || l.sec.Protocol != proto {
				continue
			}
			set := l.sec.Settings()
			if set == nil {
				continue
			}
			if set.TLS != nil && set.TLS.ClientAuth == tls.RequireAndVerifyClientCert {
				continue // the console has no client certificate
			}
			local := dialAddr(l.ln.Addr())
			adv := net.JoinHostPort(l.advHost, strconv.Itoa(int(l.advPort)))
			var selfTLS, otherTLS *tls.Config
			if set.TLS != nil {
				selfTLS = pinnedTLS(l.sec)
				// Other brokers (cluster mode) are verified with the
				// listener's trust store, as inter-broker connections are.
				var err error
				if otherTLS, err = security.ClientTLS(config.ListenerLookup(s.layers.Load(), l.name)); err != nil {
					return nil, fmt.Errorf("console: listener %s: %w", l.name, err)
				}
			}
			// This broker's advertised address (which Metadata returns) is
			// dialled on the listener's local address: the advertised name
			// may not resolve here, or lead through a proxy. Other brokers'
			// addresses are dialled as advertised.
			dial := func(ctx context.Context, network, host string) (net.Conn, error) {
				cfg := otherTLS
				if host == adv || host == local {
					host, cfg = local, selfTLS
				}
				nd := &net.Dialer{Timeout: 5 * time.Second}
				if cfg != nil {
					return (&tls.Dialer{NetDialer: nd, Config: cfg}).DialContext(ctx, network, host)
				}
				return nd.DialContext(ctx, network, host)
			}
			opts := []kgo.Opt{kgo.SeedBrokers(local), kgo.Dialer(dial)}
			if cred.User != "" {
				mech := cred.Mechanism
				if !slices.Contains(set.Mechanisms, mech) {
					continue
				}
				switch mech {
				case security.Plain:
					opts = append(opts, kgo.SASL(plain.Auth{User: cred.User, Pass: cred.Password}.AsMechanism()))
				case security.ScramSHA256:
					opts = append(opts, kgo.SASL(scram.Auth{User: cred.User, Pass: cred.Password}.AsSha256Mechanism()))
				case security.ScramSHA512:
					opts = append(opts, kgo.SASL(scram.Auth{User: cred.User, Pass: cred.Password}.AsSha512Mechanism()))
				default:
					continue
				}
			}
			return opts, nil
		}
	}
	if cred.User != "" {
		return nil, fmt.Errorf("the console cannot act as %s: no SASL listener (SASL_PLAINTEXT or SASL_SSL without required client certificates) enables %s", cred.User, cred.Mechanism)
	}
	return nil, errors.New("the console needs a PLAINTEXT listener (or an SSL one not requiring client certificates), or kvlog.http.auth=basic and a SASL listener")
}

// dialAddr is a listener's address as a client on this host dials it: a
// wildcard bind is reached on loopback.
func dialAddr(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	ip := ta.IP
	if ip == nil || ip.IsUnspecified() {
		if ip.To4() == nil && ip != nil {
			ip = net.IPv6loopback
		} else {
			ip = net.IPv4(127, 0, 0, 1)
		}
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(ta.Port))
}

// pinnedTLS accepts exactly the certificate the listener serves now.
func pinnedTLS(ls *config.ListenerSecurity) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by the pin below
		VerifyConnection: func(cs tls.ConnectionState) error {
			set := ls.Settings()
			if set == nil || set.TLS == nil || len(cs.PeerCertificates) == 0 {
				return errors.New("console: no certificate to pin")
			}
			for _, c := range set.TLS.Certificates {
				if len(c.Certificate) > 0 && bytes.Equal(c.Certificate[0], cs.PeerCertificates[0].Raw) {
					return nil
				}
			}
			return errors.New("console: the listener's certificate is not the one it is configured with")
		},
	}
}
