package server

import (
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/kvlog/kvlog/internal/kconn"
	"github.com/kvlog/kvlog/server/config"
	"github.com/kvlog/kvlog/server/metastore"
	"github.com/kvlog/kvlog/server/security"
)

// initSecurity gives every listener its security settings, failing the
// start when one cannot be built (missing key store, wrong key password,
// no PLAIN users, …). New calls it once the dynamic configs are loaded.
func (s *Server) initSecurity() error {
	secret := make([]byte, 32)
	rand.Read(secret)
	s.scramSecret = secret
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	protos := map[string]string{}
	for _, l := range s.cfg.Listeners {
		protos[l.Name] = l.Protocol
	}
	for _, l := range s.listeners {
		proto := protos[l.name]
		if proto == "" {
			proto = "PLAINTEXT"
		}
		ls, err := config.NewListenerSecurity(l.name, proto, s.layers.Load, s.logger)
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		l.sec = ls
	}
	return nil
}

// checkListenerSecurity builds every listener's settings from next (a
// dynamic config change being validated), so a key store that cannot be
// read or a key password that does not fit is refused before it is stored.
func (s *Server) checkListenerSecurity(next *config.Layers) error {
	s.lnMu.Lock()
	ls := make([]*config.ListenerSecurity, 0, len(s.listeners))
	for _, l := range s.listeners {
		if l.sec != nil {
			ls = append(ls, l.sec)
		}
	}
	s.lnMu.Unlock()
	for _, l := range ls {
		if _, err := l.Build(next); err != nil {
			return err
		}
	}
	return nil
}

// scramCredential looks up a user's stored SCRAM credential.
func (s *Server) scramCredential(user, mechanism string) (*security.ScramCredential, bool, error) {
	st, ok := s.meta.(metastore.ScramStore)
	if !ok {
		return nil, false, errors.New("the metadata store keeps no SCRAM credentials")
	}
	v, found, err := st.ScramCredential(user, mechanism)
	if err != nil || !found {
		return nil, false, err
	}
	c, err := security.ParseScramCredential(v)
	if err != nil {
		return nil, false, fmt.Errorf("stored credential of %s (%s): %w", user, mechanism, err)
	}
	return c, true, nil
}

// interBrokerDialer is how this broker connects to the others (replica
// fetchers, the controller's requests, controlled shutdown): in the
// inter-broker listener's protocol. TLS uses that listener's trust store
// to verify the peer (and ssl.endpoint.identification.algorithm for its
// host name) and its key store as the client certificate; SASL uses
// sasl.mechanism.inter.broker.protocol with the username and password of
// the listener's JAAS configuration for that mechanism, as Kafka does.
// Built at cluster start: a key store reloaded later serves new
// connections to this broker at once, while this broker's own outgoing
// connections pick it up at the next restart.
func (s *Server) interBrokerDialer() (*kconn.Dialer, error) {
	proto := s.cfg.InterBrokerProtocol
	if proto == "" || proto == "PLAINTEXT" {
		return nil, nil
	}
	l := s.layers.Load()
	name := s.cfg.InterBrokerListener
	d := &kconn.Dialer{}
	if proto == "SSL" || proto == "SASL_SSL" {
		cfg, err := security.ClientTLS(config.ListenerLookup(l, name))
		if err != nil {
			return nil, fmt.Errorf("inter-broker listener %s: %w", name, err)
		}
		d.TLS = cfg
	}
	if strings.HasPrefix(proto, "SASL_") {
		mech := s.cfg.InterBrokerMechanism
		mods, err := config.JAASFor(l, name, mech)
		if err != nil {
			return nil, fmt.Errorf("inter-broker listener %s: %w", name, err)
		}
		user, pass, ok := security.ClientCredentials(mods, mech)
		if !ok {
			return nil, fmt.Errorf("inter-broker listener %s uses %s with %s but its JAAS configuration (listener.name.%s.%s.sasl.jaas.config) has no username and password for this broker",
				name, proto, mech, strings.ToLower(name), strings.ToLower(mech))
		}
		var m sasl.Mechanism
		switch mech {
		case security.Plain:
			m = plain.Auth{User: user, Pass: pass}.AsMechanism()
		case security.ScramSHA256:
			m = scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()
		case security.ScramSHA512:
			m = scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()
		default:
			return nil, fmt.Errorf("inter-broker SASL mechanism %s is not implemented", mech)
		}
		d.SASL = m
	}
	return d, nil
}

// listenerProtocols maps each listener to its security protocol (the
// broker registration's listener_security_protocol_map).
func (s *Server) listenerProtocols() map[string]string {
	out := map[string]string{}
	for _, l := range s.cfg.Listeners {
		out[l.Name] = l.Protocol
	}
	return out
}

// CheckPassword checks a user's password against the broker's SASL users:
// the PLAIN users of every SASL listener, then the user's SCRAM
// credentials (SHA-512 first). It returns the mechanism that accepted
// it.
func (s *Server) CheckPassword(user, password string) (string, bool) {
	if user == "" {
		return "", false
	}
	s.lnMu.Lock()
	ls := append([]*listener(nil), s.listeners...)
	s.lnMu.Unlock()
	for _, l := range ls {
		if l.sec == nil || !l.sec.UseSASL {
			continue
		}
		set := l.sec.Settings()
		if set == nil {
			continue
		}
		if want, ok := set.PlainUsers[user]; ok && subtle.ConstantTimeCompare([]byte(want), []byte(password)) == 1 {
			return security.Plain, true
		}
	}
	checked := false
	for _, mech := range []string{security.ScramSHA512, security.ScramSHA256} {
		c, found, err := s.scramCredential(user, mech)
		if err != nil || !found {
			continue
		}
		checked = true
		if security.CheckScramPassword(mech, c, password) {
			return mech, true
		}
	}
	if !checked {
		// An unknown user costs what a wrong password costs, so the time
		// of a refusal does not tell which users exist (as SCRAM's fake
		// credential does).
		security.CheckScramPassword(security.ScramSHA512, httpFakeCredential(), password)
	}
	return "", false
}

// httpFakeCredential is salted and checked for users without credentials.
var httpFakeCredential = sync.OnceValue(func() *security.ScramCredential {
	c, err := security.NewScramCredentialFromPassword(security.ScramSHA512, "", 4096)
	if err != nil {
		panic(err)
	}
	return c
})
