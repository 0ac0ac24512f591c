package httpapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/kvlog/kvlog/console"
	"github.com/kvlog/kvlog/server/config"
	"github.com/kvlog/kvlog/server/security"
)

// ConsoleListener is one of the broker's listeners as the web console
// may reach it.
type ConsoleListener struct {
	Name       string
	Sec        *config.ListenerSecurity // nil: none yet
	Addr       net.Addr                 // where it is bound
	Advertised string                   // host:port advertised for it
	// OtherTLS is the TLS configuration other brokers are verified with
	// (the listener's trust store, as inter-broker connections use).
	OtherTLS func() (*tls.Config, error)
}

// ConsoleConnect returns the client options that reach the broker, over
// one of its listeners ls, as cred:
//
// Without HTTP authentication (cred empty), a PLAINTEXT listener (the
// console acts as User:ANONYMOUS there, as any client of it), else an SSL
// one that asks no client certificate. With kvlog.http.auth=basic, a SASL
// listener (SASL_PLAINTEXT first, then SASL_SSL) where the console
// authenticates as the user who logged in, with the mechanism that
// accepted the password if the listener enables it: the broker's ACLs then
// decide what the console may show and change. A TLS listener is reached
// on its own address and its certificate is pinned (it must be the one the
// listener serves), so no trust store is needed for the broker to reach
// itself. When no listener fits, the error says why (the console's pages
// show it).
func ConsoleConnect(ls []ConsoleListener, cred console.Credentials) ([]kgo.Opt, error) {
	want := []string{"PLAINTEXT", "SSL"}
	if cred.User != "" {
		want = []string{"SASL_PLAINTEXT", "SASL_SSL"}
	}
	for _, proto := range want {
		for _, l := range ls {
			if l.Sec == nil || l.Sec.Protocol != proto {
				continue
			}
			set := l.Sec.Settings()
			if set == nil {
				continue
			}
			if set.TLS != nil && set.TLS.ClientAuth == tls.RequireAndVerifyClientCert {
				continue // the console has no client certificate
			}
			local := dialAddr(l.Addr)
			adv := l.Advertised
			var selfTLS, otherTLS *tls.Config
			if set.TLS != nil {
				selfTLS = pinnedTLS(l.Sec)
				// Other brokers (cluster mode) are verified with the
				// listener's trust store, as inter-broker connections are.
				var err error
				if otherTLS, err = l.OtherTLS(); err != nil {
					return nil, fmt.Errorf("console: listener %s: %w", l.Name, err)
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
