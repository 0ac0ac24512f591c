package server

import (
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/kvlog/kvlog/internal/kconn"
	"github.com/kvlog/kvlog/server/security"
)

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
		cfg, err := security.ClientTLS(listenerLookup(l, name))
		if err != nil {
			return nil, fmt.Errorf("inter-broker listener %s: %w", name, err)
		}
		d.TLS = cfg
	}
	if strings.HasPrefix(proto, "SASL_") {
		mech := s.cfg.InterBrokerMechanism
		mods, err := jaasFor(l, name, mech)
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
