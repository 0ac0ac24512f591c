package server

import (
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/config"
	"github.com/kvlog/kvlog/server/metastore"
	"github.com/kvlog/kvlog/server/security"
)

// listenerSecurity is a listener's protocol and its security settings as
// they apply now: the TLS configuration, the principal mapping rules and
// the SASL mechanisms, rebuilt from the configuration layers whenever
// these change (a dynamic broker config, here or through ZooKeeper), so a
// key store set again with AlterConfigs is read again: certificates are
// reloaded without a restart.
type listenerSecurity struct {
	s        *Server
	name     string
	protocol string
	useTLS   bool
	useSASL  bool

	mu   sync.Mutex
	from *config.Layers // the layers cur was built from
	cur  *listenerSettings
	// jaasMod is the JAAS file's modification time cur was built with.
	jaasMod time.Time
}

// listenerSettings is one build of a listener's settings (immutable).
type listenerSettings struct {
	tls        *tls.Config // SSL and SASL_SSL
	rules      *security.PrincipalRules
	mechanisms []string          // SASL listeners
	plainUsers map[string]string // PLAIN users (JAAS user_<name>)
	reauth     map[string]time.Duration
	maxReceive int32
	failDelay  time.Duration
}

func newListenerSecurity(s *Server, name, protocol string) *listenerSecurity {
	return &listenerSecurity{s: s, name: name, protocol: protocol,
		useTLS:  protocol == "SSL" || protocol == "SASL_SSL",
		useSASL: strings.HasPrefix(protocol, "SASL_")}
}

// listenerLookup reads a listener-scoped key from layers:
// listener.name.<l>.<key> first, then <key>; set only when some layer
// sets it (defaults are the security package's).
func listenerLookup(l *config.Layers, listener string) security.Lookup {
	prefix := "listener.name." + strings.ToLower(listener) + "."
	return func(key string) (string, bool) {
		for _, k := range []string{prefix + key, key} {
			if e := l.Broker(k); !e.Null && e.Source != kmsg.ConfigSourceDefaultConfig {
				return e.Value, true
			}
		}
		return "", false
	}
}

// listenerKey is the key a listener-scoped setting comes from:
// listener.name.<l>.<key> when some layer sets it, else <key>.
func listenerKey(l *config.Layers, listener, key string) string {
	k := "listener.name." + strings.ToLower(listener) + "." + key
	if e := l.Broker(k); !e.Null && e.Source != kmsg.ConfigSourceDefaultConfig {
		return k
	}
	return key
}

// listenerValue is a listener-scoped key's effective value (default included).
func listenerValue(l *config.Layers, listener, key string) string {
	if v, ok := listenerLookup(l, listener)(key); ok {
		return v
	}
	return l.Broker(key).Value
}

// jaasFor is the JAAS text for a listener and mechanism:
// listener.name.<l>.<mechanism>.sasl.jaas.config, else the
// <listener>.KafkaServer then KafkaServer section of kvlog.sasl.jaas.file.
func jaasFor(l *config.Layers, listener, mechanism string) ([]security.LoginModule, error) {
	key := "listener.name." + strings.ToLower(listener) + "." + strings.ToLower(mechanism) + ".sasl.jaas.config"
	if config.BrokerDef(key) == nil {
		return nil, fmt.Errorf("SASL mechanism %s is not implemented", mechanism)
	}
	if e := l.Broker(key); !e.Null && e.Source != kmsg.ConfigSourceDefaultConfig {
		return security.ParseJAASEntry(e.Value)
	}
	if e := l.Broker("sasl.jaas.config"); !e.Null && e.Source != kmsg.ConfigSourceDefaultConfig {
		return security.ParseJAASEntry(e.Value)
	}
	if f := l.String("kvlog.sasl.jaas.file"); f != "" {
		secs, err := security.ReadJAASFile(f)
		if err != nil {
			return nil, fmt.Errorf("kvlog.sasl.jaas.file: %w", err)
		}
		if mods := secs[strings.ToLower(listener)+".KafkaServer"]; len(mods) > 0 {
			return mods, nil
		}
		return secs["KafkaServer"], nil
	}
	return nil, nil
}

// build makes the listener's settings from layers.
func (ls *listenerSecurity) build(l *config.Layers) (*listenerSettings, error) {
	get := listenerLookup(l, ls.name)
	out := &listenerSettings{
		reauth:     map[string]time.Duration{},
		maxReceive: int32(l.Int(listenerKey(l, ls.name, "sasl.server.max.receive.size"))),
		failDelay:  l.Duration("connection.failed.authentication.delay.ms"),
	}
	rules, err := security.ParsePrincipalRules(listenerValue(l, ls.name, "ssl.principal.mapping.rules"))
	if err != nil {
		return nil, err
	}
	out.rules = rules
	if ls.useTLS {
		cfg, err := security.ServerTLS(get)
		if err != nil {
			return nil, fmt.Errorf("listener %s: %w", ls.name, err)
		}
		out.tls = cfg
	}
	if ls.useSASL {
		out.mechanisms = config.SplitList(listenerValue(l, ls.name, "sasl.enabled.mechanisms"))
		out.plainUsers = map[string]string{}
		for _, m := range out.mechanisms {
			if !security.KnownMechanism(m) {
				return nil, fmt.Errorf("listener %s: SASL mechanism %s is not implemented", ls.name, m)
			}
			reauth := listenerKey(l, ls.name, "connections.max.reauth.ms")
			if k := "listener.name." + strings.ToLower(ls.name) + "." + strings.ToLower(m) + ".connections.max.reauth.ms"; l.Broker(k).Source != kmsg.ConfigSourceDefaultConfig {
				reauth = k
			}
			out.reauth[m] = l.Duration(reauth)
			if m != security.Plain {
				continue
			}
			mods, err := jaasFor(l, ls.name, m)
			if err != nil {
				return nil, fmt.Errorf("listener %s: PLAIN: %w", ls.name, err)
			}
			out.plainUsers = security.PlainUsers(mods)
			if len(out.plainUsers) == 0 {
				return nil, fmt.Errorf("listener %s enables PLAIN but no user is configured: set listener.name.%s.plain.sasl.jaas.config with user_<name>=\"<password>\" options (or kvlog.sasl.jaas.file)",
					ls.name, strings.ToLower(ls.name))
			}
		}
	}
	return out, nil
}

// jaasFileMod is the modification time of kvlog.sasl.jaas.file (zero if
// unset or unreadable).
func jaasFileMod(l *config.Layers) time.Time {
	f := l.String("kvlog.sasl.jaas.file")
	if f == "" {
		return time.Time{}
	}
	fi, err := os.Stat(f)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

// settings returns the current settings, rebuilt if the configuration (or
// the JAAS file) changed since the last build. A rebuild that fails keeps
// the previous settings and logs why.
func (ls *listenerSecurity) settings() *listenerSettings {
	cur := ls.s.layers.Load()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	mod := time.Time{}
	if ls.useSASL {
		mod = jaasFileMod(cur)
	}
	if cur == ls.from && mod.Equal(ls.jaasMod) && ls.cur != nil {
		return ls.cur
	}
	next, err := ls.build(cur)
	ls.from, ls.jaasMod = cur, mod
	if err != nil {
		ls.s.logger.Error("listener security settings changed but cannot be applied; the previous ones stay", "listener", ls.name, "err", err)
		return ls.cur
	}
	if ls.cur != nil && ls.useTLS {
		ls.s.logger.Info("listener TLS configuration reloaded", "listener", ls.name)
	}
	ls.cur = next
	return next
}

// tlsConfig is the listener's TLS configuration as served: each handshake
// takes the current one.
func (ls *listenerSecurity) tlsConfig() *tls.Config {
	return &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return ls.settings().tls, nil
	}}
}

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
		ls := newListenerSecurity(s, l.name, proto)
		set, err := ls.build(s.layers.Load())
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		ls.from, ls.cur = s.layers.Load(), set
		if ls.useSASL {
			ls.jaasMod = jaasFileMod(ls.from)
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
	ls := make([]*listenerSecurity, 0, len(s.listeners))
	for _, l := range s.listeners {
		if l.sec != nil {
			ls = append(ls, l.sec)
		}
	}
	s.lnMu.Unlock()
	for _, l := range ls {
		if _, err := l.build(next); err != nil {
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
