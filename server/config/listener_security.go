package config

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/security"
)

// ListenerSecurity is a listener's protocol and its security settings as
// they apply now: the TLS configuration, the principal mapping rules and
// the SASL mechanisms, rebuilt from the configuration layers whenever
// these change (a dynamic broker config, here or through ZooKeeper), so a
// key store set again with AlterConfigs is read again: certificates are
// reloaded without a restart.
type ListenerSecurity struct {
	Name     string
	Protocol string         // PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
	UseTLS   bool           // SSL and SASL_SSL
	UseSASL  bool           // SASL_PLAINTEXT and SASL_SSL
	layers   func() *Layers // the current layers
	logger   *slog.Logger

	mu   sync.Mutex
	from *Layers // the layers cur was built from
	cur  *ListenerSettings
	// jaasMod is the JAAS file's modification time cur was built with.
	jaasMod time.Time
}

// ListenerSettings is one build of a listener's settings (immutable).
type ListenerSettings struct {
	TLS        *tls.Config              // SSL and SASL_SSL
	Rules      *security.PrincipalRules // ssl.principal.mapping.rules
	Mechanisms []string                 // SASL listeners: sasl.enabled.mechanisms
	PlainUsers map[string]string        // PLAIN users (JAAS user_<name>)
	Reauth     map[string]time.Duration // connections.max.reauth.ms per mechanism
	MaxReceive int32                    // sasl.server.max.receive.size
	FailDelay  time.Duration            // connection.failed.authentication.delay.ms
}

// NewListenerSecurity builds the security settings of listener name
// speaking protocol from the current layers (layers() is read again at
// every Settings call), failing when they cannot be built (missing key
// store, wrong key password, no PLAIN users, ...).
func NewListenerSecurity(name, protocol string, layers func() *Layers, logger *slog.Logger) (*ListenerSecurity, error) {
	ls := &ListenerSecurity{Name: name, Protocol: protocol, layers: layers, logger: logger,
		UseTLS:  protocol == "SSL" || protocol == "SASL_SSL",
		UseSASL: strings.HasPrefix(protocol, "SASL_")}
	from := layers()
	set, err := ls.Build(from)
	if err != nil {
		return nil, err
	}
	ls.from, ls.cur = from, set
	if ls.UseSASL {
		ls.jaasMod = jaasFileMod(from)
	}
	return ls, nil
}

// ListenerLookup reads a listener-scoped key from layers:
// listener.name.<l>.<key> first, then <key>; set only when some layer
// sets it (defaults are the security package's).
func ListenerLookup(l *Layers, listener string) security.Lookup {
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
func listenerKey(l *Layers, listener, key string) string {
	k := "listener.name." + strings.ToLower(listener) + "." + key
	if e := l.Broker(k); !e.Null && e.Source != kmsg.ConfigSourceDefaultConfig {
		return k
	}
	return key
}

// listenerValue is a listener-scoped key's effective value (default included).
func listenerValue(l *Layers, listener, key string) string {
	if v, ok := ListenerLookup(l, listener)(key); ok {
		return v
	}
	return l.Broker(key).Value
}

// JAASFor is the JAAS text for a listener and mechanism:
// listener.name.<l>.<mechanism>.sasl.jaas.config, else the
// <listener>.KafkaServer then KafkaServer section of kvlog.sasl.jaas.file.
func JAASFor(l *Layers, listener, mechanism string) ([]security.LoginModule, error) {
	key := "listener.name." + strings.ToLower(listener) + "." + strings.ToLower(mechanism) + ".sasl.jaas.config"
	if BrokerDef(key) == nil {
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

// Build makes the listener's settings from layers.
func (ls *ListenerSecurity) Build(l *Layers) (*ListenerSettings, error) {
	get := ListenerLookup(l, ls.Name)
	out := &ListenerSettings{
		Reauth:     map[string]time.Duration{},
		MaxReceive: int32(l.Int(listenerKey(l, ls.Name, "sasl.server.max.receive.size"))),
		FailDelay:  l.Duration("connection.failed.authentication.delay.ms"),
	}
	rules, err := security.ParsePrincipalRules(listenerValue(l, ls.Name, "ssl.principal.mapping.rules"))
	if err != nil {
		return nil, err
	}
	out.Rules = rules
	if ls.UseTLS {
		cfg, err := security.ServerTLS(get)
		if err != nil {
			return nil, fmt.Errorf("listener %s: %w", ls.Name, err)
		}
		out.TLS = cfg
	}
	if ls.UseSASL {
		out.Mechanisms = SplitList(listenerValue(l, ls.Name, "sasl.enabled.mechanisms"))
		out.PlainUsers = map[string]string{}
		for _, m := range out.Mechanisms {
			if !security.KnownMechanism(m) {
				return nil, fmt.Errorf("listener %s: SASL mechanism %s is not implemented", ls.Name, m)
			}
			reauth := listenerKey(l, ls.Name, "connections.max.reauth.ms")
			if k := "listener.name." + strings.ToLower(ls.Name) + "." + strings.ToLower(m) + ".connections.max.reauth.ms"; l.Broker(k).Source != kmsg.ConfigSourceDefaultConfig {
				reauth = k
			}
			out.Reauth[m] = l.Duration(reauth)
			if m != security.Plain {
				continue
			}
			mods, err := JAASFor(l, ls.Name, m)
			if err != nil {
				return nil, fmt.Errorf("listener %s: PLAIN: %w", ls.Name, err)
			}
			out.PlainUsers = security.PlainUsers(mods)
			if len(out.PlainUsers) == 0 {
				return nil, fmt.Errorf("listener %s enables PLAIN but no user is configured: set listener.name.%s.plain.sasl.jaas.config with user_<name>=\"<password>\" options (or kvlog.sasl.jaas.file)",
					ls.Name, strings.ToLower(ls.Name))
			}
		}
	}
	return out, nil
}

// jaasFileMod is the modification time of kvlog.sasl.jaas.file (zero if
// unset or unreadable).
func jaasFileMod(l *Layers) time.Time {
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

// Settings returns the current settings, rebuilt if the configuration (or
// the JAAS file) changed since the last build. A rebuild that fails keeps
// the previous settings and logs why.
func (ls *ListenerSecurity) Settings() *ListenerSettings {
	cur := ls.layers()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	mod := time.Time{}
	if ls.UseSASL {
		mod = jaasFileMod(cur)
	}
	if cur == ls.from && mod.Equal(ls.jaasMod) && ls.cur != nil {
		return ls.cur
	}
	next, err := ls.Build(cur)
	ls.from, ls.jaasMod = cur, mod
	if err != nil {
		ls.logger.Error("listener security settings changed but cannot be applied; the previous ones stay", "listener", ls.Name, "err", err)
		return ls.cur
	}
	if ls.cur != nil && ls.UseTLS {
		ls.logger.Info("listener TLS configuration reloaded", "listener", ls.Name)
	}
	ls.cur = next
	return next
}

// TLSConfig is the listener's TLS configuration as served: each handshake
// takes the current one.
func (ls *ListenerSecurity) TLSConfig() *tls.Config {
	return &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return ls.Settings().TLS, nil
	}}
}
