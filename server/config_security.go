package server

import (
	"fmt"
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/security"
)

// Security configuration: the ssl.*, sasl.* and listener keys kvlog reads
// (Apache Kafka's names), the per-listener form listener.name.<l>.<key>
// (the listener name in lower case; for sasl.jaas.config and
// connections.max.reauth.ms also listener.name.<l>.<mechanism>.<key>),
// and the refusal at start-up of what kvlog does not implement yet.
// docs/security.md describes the model.

// securityConfigDefs are added to brokerConfigDefs. Keys marked dynamic
// can be changed with AlterConfigs (the listener's TLS configuration is
// rebuilt, which is how certificates are reloaded without a restart, as in
// Kafka).
var securityConfigDefs = []*configDef{
	{name: "ssl.keystore.type", typ: kmsg.ConfigTypeString, def: "PEM", check: oneOf("PEM", "JKS", "PKCS12"), dynamic: true, doc: "Key store format: PEM, PKCS12 or JKS (Kafka's default, JKS, differs: when this is not set, kvlog recognises a PKCS12 or JKS file by its content). PKCS12 and JKS stores need ssl.keystore.password and exactly one private key."},
	{name: "ssl.keystore.location", typ: kmsg.ConfigTypeString, noDefault: true, dynamic: true, doc: "The listener's private key and certificate chain: a PEM file, or a PKCS12 or JKS key store (ssl.keystore.type). Setting it again with AlterConfigs (same path) reloads the file."},
	{name: "ssl.keystore.password", typ: kmsg.ConfigTypePassword, noDefault: true, dynamic: true, sensitive: true, doc: "Password of a PKCS12 or JKS key store (required for them); for PEM, of an encrypted private key when ssl.key.password is not set."},
	{name: "ssl.key.password", typ: kmsg.ConfigTypePassword, noDefault: true, dynamic: true, sensitive: true, doc: "Password of the key store's encrypted PKCS#8 private key (PEM), or of the key entry of a JKS store (default: ssl.keystore.password)."},
	{name: "ssl.keystore.certificate.chain", typ: kmsg.ConfigTypePassword, noDefault: true, dynamic: true, sensitive: true, doc: "The certificate chain in PEM, inline (instead of ssl.keystore.location)."},
	{name: "ssl.keystore.key", typ: kmsg.ConfigTypePassword, noDefault: true, dynamic: true, sensitive: true, doc: "The private key in PEM (PKCS#8, encrypted with ssl.key.password or not), inline (instead of ssl.keystore.location)."},
	{name: "ssl.truststore.type", typ: kmsg.ConfigTypeString, def: "PEM", check: oneOf("PEM", "JKS", "PKCS12"), dynamic: true, doc: "Trust store format: PEM, PKCS12 or JKS (recognised by content when not set, see ssl.keystore.type)."},
	{name: "ssl.truststore.location", typ: kmsg.ConfigTypeString, noDefault: true, dynamic: true, doc: "The certificates (CAs) trusted to sign client certificates and, for inter-broker connections, other brokers' certificates: a PEM file, or a PKCS12 or JKS trust store."},
	{name: "ssl.truststore.password", typ: kmsg.ConfigTypePassword, noDefault: true, dynamic: true, sensitive: true, doc: "Password of a PKCS12 or JKS trust store (required for them: kvlog checks the store's integrity); unused for PEM."},
	{name: "ssl.truststore.certificates", typ: kmsg.ConfigTypePassword, noDefault: true, dynamic: true, sensitive: true, doc: "Trusted certificates in PEM, inline (instead of ssl.truststore.location)."},
	{name: "ssl.client.auth", typ: kmsg.ConfigTypeString, def: security.DefaultClientAuth, check: oneOf("none", "requested", "required"), dynamic: true, doc: "Client certificates (mutual TLS): none, requested (verified if sent) or required. A verified certificate's subject, mapped by ssl.principal.mapping.rules, is the principal of an SSL connection."},
	{name: "ssl.enabled.protocols", typ: kmsg.ConfigTypeList, def: security.DefaultEnabledProtocols, check: checkWith(func(v string) error { _, _, err := security.ProtocolRange(v); return err }), dynamic: true, doc: "TLS versions served (TLSv1.2, TLSv1.3; TLSv1 and TLSv1.1 are possible); a contiguous range."},
	{name: "ssl.protocol", typ: kmsg.ConfigTypeString, def: "TLSv1.3", doc: "Accepted for compatibility; ssl.enabled.protocols decides the versions."},
	{name: "ssl.cipher.suites", typ: kmsg.ConfigTypeList, def: "", check: checkWith(func(v string) error { _, err := security.CipherSuites(v); return err }), dynamic: true, doc: "TLS 1.2 cipher suites by IANA name (empty: Go's secure defaults). TLS 1.3 suites are always the three of the standard."},
	{name: "ssl.principal.mapping.rules", typ: kmsg.ConfigTypeString, def: security.DefaultPrincipalRules, check: checkWith(func(v string) error { _, err := security.ParsePrincipalRules(v); return err }), dynamic: true, doc: "RULE:pattern/replacement/[LU] and DEFAULT, mapping a client certificate's subject to the user name of its principal."},
	{name: "ssl.endpoint.identification.algorithm", typ: kmsg.ConfigTypeString, def: "https", check: oneOf("https", ""), doc: "https: a broker connecting to another checks the peer certificate's host name; empty skips that check (the chain is still verified)."},
	{name: "ssl.keymanager.algorithm", typ: kmsg.ConfigTypeString, def: "SunX509", doc: "Accepted for compatibility (a JVM setting)."},
	{name: "ssl.trustmanager.algorithm", typ: kmsg.ConfigTypeString, def: "PKIX", doc: "Accepted for compatibility (a JVM setting)."},
	{name: "ssl.secure.random.implementation", typ: kmsg.ConfigTypeString, noDefault: true, doc: "Accepted for compatibility (a JVM setting); kvlog uses the operating system's random source."},
	{name: "sasl.enabled.mechanisms", typ: kmsg.ConfigTypeList, def: "GSSAPI", dynamic: false, doc: "Mechanisms of SASL listeners: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512. Kafka's default, GSSAPI, is not implemented: a SASL listener must set this."},
	{name: "sasl.mechanism.inter.broker.protocol", typ: kmsg.ConfigTypeString, def: "GSSAPI", doc: "Mechanism brokers use on a SASL inter-broker listener (PLAIN or SCRAM-SHA-256/512; must be enabled there)."},
	{name: "sasl.jaas.config", typ: kmsg.ConfigTypePassword, noDefault: true, sensitive: true, check: checkWith(func(v string) error { _, err := security.ParseJAASEntry(v); return err }), doc: "JAAS login module text, normally per listener and mechanism (listener.name.<l>.plain.sasl.jaas.config): PlainLoginModule's user_<name>=\"<password>\" options are the PLAIN users; username and password are what this broker presents to others on the inter-broker listener."},
	{name: "sasl.server.max.receive.size", typ: kmsg.ConfigTypeInt, def: "524288", check: atLeast(1), doc: "Largest frame read from a SASL connection before it authenticated."},
	{name: "connections.max.reauth.ms", typ: kmsg.ConfigTypeLong, def: "0", check: atLeast(0), doc: "SASL session lifetime (KIP-368): clients must re-authenticate within it (SaslAuthenticate v1+ tells them) or the connection is closed at their next request. 0: sessions do not expire."},
	{name: "connection.failed.authentication.delay.ms", typ: kmsg.ConfigTypeInt, def: "100", check: atLeast(0), doc: "Delay before the failure answer of a failed authentication and the close of its connection; must be below connections.max.idle.ms."},
	{name: "security.inter.broker.protocol", typ: kmsg.ConfigTypeString, def: "PLAINTEXT", check: oneOf("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"), doc: "The inter-broker listener by protocol (the listener of that name); exclusive with inter.broker.listener.name."},
	{name: "zookeeper.set.acl", typ: kmsg.ConfigTypeBoolean, def: "false", doc: "Create every znode with Kafka's ACLs: all permissions for the brokers' ZooKeeper identity, read for everyone else (nothing under /config/users and /config/brokers). Needs ZooKeeper credentials: the Client section of kvlog.sasl.jaas.file."},
	{name: "zookeeper.sasl.client", typ: kmsg.ConfigTypeBoolean, def: "true", doc: "Present the credentials of the zookeeper.sasl.clientconfig section of kvlog.sasl.jaas.file to ZooKeeper (when the section exists); false presents none."},
	{name: "zookeeper.sasl.clientconfig", typ: kmsg.ConfigTypeString, def: "Client", doc: "The JAAS section with the ZooKeeper credentials: DigestLoginModule's username and password, presented with ZooKeeper's digest scheme."},
	{name: "kvlog.sasl.jaas.file", typ: kmsg.ConfigTypeString, noDefault: true, doc: "A JAAS file as a Kafka broker reads with -Djava.security.auth.login.config: its KafkaServer section (or <listener>.KafkaServer) supplies what listener.name.<l>.<mechanism>.sasl.jaas.config does not. Read again at each authentication whose file changed."},
}

// checkWith adapts a validation function.
func checkWith(f func(string) error) func(string) error { return f }

func init() {
	for _, d := range securityConfigDefs {
		if brokerConfigDefs[d.name] != nil {
			panic("security config " + d.name + " defined twice")
		}
		brokerConfigDefs[d.name] = d
	}
}

// listenerScoped are the keys that may be set per listener.
func listenerScoped(key string) bool {
	switch key {
	case "sasl.enabled.mechanisms", "sasl.jaas.config", "connections.max.reauth.ms", "sasl.server.max.receive.size":
		return true
	}
	return strings.HasPrefix(key, "ssl.") && brokerConfigDefs[key] != nil
}

// brokerDef is the definition of a broker key, including the per-listener
// forms listener.name.<l>.<key> and listener.name.<l>.<mechanism>.<key>;
// nil if kvlog does not know the key.
func brokerDef(name string) *configDef {
	if d := brokerConfigDefs[name]; d != nil {
		return d
	}
	rest, ok := strings.CutPrefix(name, "listener.name.")
	if !ok {
		return nil
	}
	_, key, ok := strings.Cut(rest, ".")
	if !ok {
		return nil
	}
	if !listenerScoped(key) {
		// listener.name.<l>.<mechanism>.sasl.jaas.config and
		// .connections.max.reauth.ms
		mech, k2, ok := strings.Cut(key, ".")
		if !ok || (k2 != "sasl.jaas.config" && k2 != "connections.max.reauth.ms") || !security.KnownMechanism(strings.ToUpper(mech)) {
			return nil
		}
		key = k2
	}
	base := brokerConfigDefs[key]
	d := *base
	d.name = name
	return &d
}

// refusedSecurity names why kvlog cannot honour key=value ("" if it can).
// Empty values configure nothing.
func refusedSecurity(key, value string) string {
	v := strings.TrimSpace(value)
	if v == "" {
		return ""
	}
	k := strings.ToLower(key)
	switch k {
	case "authorizer.class.name":
		if !authorizerClassNames[v] {
			return "kvlog implements Kafka's ACL authorizer only (kafka.security.authorizer.AclAuthorizer, org.apache.kafka.metadata.authorizer.StandardAuthorizer)"
		}
	case "client.quota.callback.class":
		return "custom quota callbacks are Java classes"
	case "principal.builder.class":
		return "custom principal builders are Java classes"
	case "zookeeper.ssl.client.enable":
		if strings.EqualFold(v, "false") {
			return ""
		}
		return "TLS to ZooKeeper is not implemented"
	case "zookeeper.sasl.client", "zookeeper.sasl.clientconfig":
		return ""
	}
	if strings.HasPrefix(k, "delegation.token.") {
		return "delegation tokens are not implemented"
	}
	if strings.HasPrefix(k, "zookeeper.ssl.") || strings.HasPrefix(k, "zookeeper.sasl.") {
		return "TLS to ZooKeeper and ZooKeeper SASL settings other than zookeeper.sasl.client and zookeeper.sasl.clientconfig are not implemented"
	}
	base := k
	if rest, ok := strings.CutPrefix(k, "listener.name."); ok {
		if _, r, ok := strings.Cut(rest, "."); ok {
			base = r
			if m, r2, ok := strings.Cut(r, "."); ok && !listenerScoped(r) && (strings.HasPrefix(r2, "sasl.") || r2 == "connections.max.reauth.ms") {
				if !security.KnownMechanism(strings.ToUpper(m)) {
					return "SASL mechanism " + strings.ToUpper(m) + " is not implemented (PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 are)"
				}
				base = r2
			}
		}
	}
	if strings.HasPrefix(base, "ssl.") || strings.HasPrefix(base, "sasl.") || base == "connections.max.reauth.ms" {
		if brokerDef(key) == nil {
			return "not implemented (Kerberos, OAUTHBEARER, callback handlers and custom SSL engines are Java-only or not implemented)"
		}
	}
	return ""
}

// parseSecurity resolves and checks the security settings across keys:
// the inter-broker listener, the SASL mechanisms of SASL listeners and the
// inter-broker credentials. get is the effective static value of a key.
func parseSecurity(c *Config, static map[string]string, get func(string) string) error {
	ibName, ibSet := static["inter.broker.listener.name"]
	ibProto, protoSet := static["security.inter.broker.protocol"]
	switch {
	case ibSet && protoSet:
		return fmt.Errorf("config: only one of inter.broker.listener.name and security.inter.broker.protocol may be set")
	case ibSet:
		c.InterBrokerListener = strings.ToUpper(strings.TrimSpace(ibName))
		if !hasListener(c.Listeners, c.InterBrokerListener) {
			return fmt.Errorf("config inter.broker.listener.name: %s is not in listeners", c.InterBrokerListener)
		}
	case protoSet:
		c.InterBrokerListener = strings.ToUpper(strings.TrimSpace(ibProto))
		if !hasListener(c.Listeners, c.InterBrokerListener) {
			return fmt.Errorf("config security.inter.broker.protocol: no listener named %s", c.InterBrokerListener)
		}
	default:
		c.InterBrokerListener = c.Listeners[0].Name
	}
	lookup := func(l, key string) string {
		if v, ok := static["listener.name."+strings.ToLower(l)+"."+key]; ok {
			return v
		}
		return get(key)
	}
	for _, l := range c.Listeners {
		if !strings.HasPrefix(l.Protocol, "SASL_") {
			continue
		}
		mechs := splitList(lookup(l.Name, "sasl.enabled.mechanisms"))
		if len(mechs) == 0 {
			return fmt.Errorf("config: listener %s uses %s but sasl.enabled.mechanisms is empty", l.Name, l.Protocol)
		}
		for _, m := range mechs {
			if !security.KnownMechanism(m) {
				return fmt.Errorf("config: listener %s enables SASL mechanism %s, which kvlog does not implement (PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 are); set sasl.enabled.mechanisms", l.Name, m)
			}
		}
	}
	for _, l := range c.Listeners {
		if l.Name != c.InterBrokerListener {
			continue
		}
		c.InterBrokerProtocol = l.Protocol
		if !strings.HasPrefix(l.Protocol, "SASL_") {
			break
		}
		mech := strings.TrimSpace(get("sasl.mechanism.inter.broker.protocol"))
		c.InterBrokerMechanism = mech
		if c.ZooKeeperConnect == "" {
			break // a single node never connects to itself
		}
		enabled := false
		for _, m := range splitList(lookup(l.Name, "sasl.enabled.mechanisms")) {
			enabled = enabled || m == mech
		}
		if !enabled {
			return fmt.Errorf("config sasl.mechanism.inter.broker.protocol: %s is not enabled on the inter-broker listener %s", mech, l.Name)
		}
	}
	if d, idle := mustInt(get("connection.failed.authentication.delay.ms")), mustInt(get("connections.max.idle.ms")); d >= idle {
		return fmt.Errorf("config connection.failed.authentication.delay.ms: %d must be less than connections.max.idle.ms (%d)", d, idle)
	}
	return nil
}

// refuseSecurity is the start-up error for settings kvlog cannot honour,
// nil when there are none.
func refuseSecurity(settings []string) error {
	if len(settings) == 0 {
		return nil
	}
	sort.Strings(settings)
	return fmt.Errorf("config: %s; kvlog serves TLS (SSL, SASL_SSL), SASL PLAIN and SCRAM (SASL_PLAINTEXT, SASL_SSL) but not these yet, "+
		"and starting without them would serve a broker less protected than the configuration asks for: remove them",
		strings.Join(settings, "; "))
}
