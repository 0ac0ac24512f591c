package config

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

// securityConfigDefs are added to brokerDefs. Keys marked dynamic
// can be changed with AlterConfigs (the listener's TLS configuration is
// rebuilt, which is how certificates are reloaded without a restart, as in
// Kafka).
var securityConfigDefs = []*Def{
	{Name: "ssl.keystore.type", Type: kmsg.ConfigTypeString, Default: "PEM", Check: oneOf("PEM", "JKS", "PKCS12"), Dynamic: true, Doc: "Key store format: PEM, PKCS12 or JKS (Kafka's default, JKS, differs: when this is not set, kvlog recognises a PKCS12 or JKS file by its content). PKCS12 and JKS stores need ssl.keystore.password and exactly one private key."},
	{Name: "ssl.keystore.location", Type: kmsg.ConfigTypeString, NoDefault: true, Dynamic: true, Doc: "The listener's private key and certificate chain: a PEM file, or a PKCS12 or JKS key store (ssl.keystore.type). Setting it again with AlterConfigs (same path) reloads the file."},
	{Name: "ssl.keystore.password", Type: kmsg.ConfigTypePassword, NoDefault: true, Dynamic: true, Sensitive: true, Doc: "Password of a PKCS12 or JKS key store (required for them); for PEM, of an encrypted private key when ssl.key.password is not set."},
	{Name: "ssl.key.password", Type: kmsg.ConfigTypePassword, NoDefault: true, Dynamic: true, Sensitive: true, Doc: "Password of the key store's encrypted PKCS#8 private key (PEM), or of the key entry of a JKS store (default: ssl.keystore.password)."},
	{Name: "ssl.keystore.certificate.chain", Type: kmsg.ConfigTypePassword, NoDefault: true, Dynamic: true, Sensitive: true, Doc: "The certificate chain in PEM, inline (instead of ssl.keystore.location)."},
	{Name: "ssl.keystore.key", Type: kmsg.ConfigTypePassword, NoDefault: true, Dynamic: true, Sensitive: true, Doc: "The private key in PEM (PKCS#8, encrypted with ssl.key.password or not), inline (instead of ssl.keystore.location)."},
	{Name: "ssl.truststore.type", Type: kmsg.ConfigTypeString, Default: "PEM", Check: oneOf("PEM", "JKS", "PKCS12"), Dynamic: true, Doc: "Trust store format: PEM, PKCS12 or JKS (recognised by content when not set, see ssl.keystore.type)."},
	{Name: "ssl.truststore.location", Type: kmsg.ConfigTypeString, NoDefault: true, Dynamic: true, Doc: "The certificates (CAs) trusted to sign client certificates and, for inter-broker connections, other brokers' certificates: a PEM file, or a PKCS12 or JKS trust store."},
	{Name: "ssl.truststore.password", Type: kmsg.ConfigTypePassword, NoDefault: true, Dynamic: true, Sensitive: true, Doc: "Password of a PKCS12 or JKS trust store (required for them: kvlog checks the store's integrity); unused for PEM."},
	{Name: "ssl.truststore.certificates", Type: kmsg.ConfigTypePassword, NoDefault: true, Dynamic: true, Sensitive: true, Doc: "Trusted certificates in PEM, inline (instead of ssl.truststore.location)."},
	{Name: "ssl.client.auth", Type: kmsg.ConfigTypeString, Default: security.DefaultClientAuth, Check: oneOf("none", "requested", "required"), Dynamic: true, Doc: "Client certificates (mutual TLS): none, requested (verified if sent) or required. A verified certificate's subject, mapped by ssl.principal.mapping.rules, is the principal of an SSL connection."},
	{Name: "ssl.enabled.protocols", Type: kmsg.ConfigTypeList, Default: security.DefaultEnabledProtocols, Check: checkWith(func(v string) error { _, _, err := security.ProtocolRange(v); return err }), Dynamic: true, Doc: "TLS versions served (TLSv1.2, TLSv1.3; TLSv1 and TLSv1.1 are possible); a contiguous range."},
	{Name: "ssl.protocol", Type: kmsg.ConfigTypeString, Default: "TLSv1.3", Doc: "Accepted for compatibility; ssl.enabled.protocols decides the versions."},
	{Name: "ssl.cipher.suites", Type: kmsg.ConfigTypeList, Default: "", Check: checkWith(func(v string) error { _, err := security.CipherSuites(v); return err }), Dynamic: true, Doc: "TLS 1.2 cipher suites by IANA name (empty: Go's secure defaults). TLS 1.3 suites are always the three of the standard."},
	{Name: "ssl.principal.mapping.rules", Type: kmsg.ConfigTypeString, Default: security.DefaultPrincipalRules, Check: checkWith(func(v string) error { _, err := security.ParsePrincipalRules(v); return err }), Dynamic: true, Doc: "RULE:pattern/replacement/[LU] and DEFAULT, mapping a client certificate's subject to the user name of its principal."},
	{Name: "ssl.endpoint.identification.algorithm", Type: kmsg.ConfigTypeString, Default: "https", Check: oneOf("https", ""), Doc: "https: a broker connecting to another checks the peer certificate's host name; empty skips that check (the chain is still verified)."},
	{Name: "ssl.keymanager.algorithm", Type: kmsg.ConfigTypeString, Default: "SunX509", Doc: "Accepted for compatibility (a JVM setting)."},
	{Name: "ssl.trustmanager.algorithm", Type: kmsg.ConfigTypeString, Default: "PKIX", Doc: "Accepted for compatibility (a JVM setting)."},
	{Name: "ssl.secure.random.implementation", Type: kmsg.ConfigTypeString, NoDefault: true, Doc: "Accepted for compatibility (a JVM setting); kvlog uses the operating system's random source."},
	{Name: "sasl.enabled.mechanisms", Type: kmsg.ConfigTypeList, Default: "GSSAPI", Dynamic: false, Doc: "Mechanisms of SASL listeners: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512. Kafka's default, GSSAPI, is not implemented: a SASL listener must set this."},
	{Name: "sasl.mechanism.inter.broker.protocol", Type: kmsg.ConfigTypeString, Default: "GSSAPI", Doc: "Mechanism brokers use on a SASL inter-broker listener (PLAIN or SCRAM-SHA-256/512; must be enabled there)."},
	{Name: "sasl.jaas.config", Type: kmsg.ConfigTypePassword, NoDefault: true, Sensitive: true, Check: checkWith(func(v string) error { _, err := security.ParseJAASEntry(v); return err }), Doc: "JAAS login module text, normally per listener and mechanism (listener.name.<l>.plain.sasl.jaas.config): PlainLoginModule's user_<name>=\"<password>\" options are the PLAIN users; username and password are what this broker presents to others on the inter-broker listener."},
	{Name: "sasl.server.max.receive.size", Type: kmsg.ConfigTypeInt, Default: "524288", Check: atLeast(1), Doc: "Largest frame read from a SASL connection before it authenticated."},
	{Name: "connections.max.reauth.ms", Type: kmsg.ConfigTypeLong, Default: "0", Check: atLeast(0), Doc: "SASL session lifetime (KIP-368): clients must re-authenticate within it (SaslAuthenticate v1+ tells them) or the connection is closed at their next request. 0: sessions do not expire."},
	{Name: "connection.failed.authentication.delay.ms", Type: kmsg.ConfigTypeInt, Default: "100", Check: atLeast(0), Doc: "Delay before the failure answer of a failed authentication and the close of its connection; must be below connections.max.idle.ms."},
	{Name: "security.inter.broker.protocol", Type: kmsg.ConfigTypeString, Default: "PLAINTEXT", Check: oneOf("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"), Doc: "The inter-broker listener by protocol (the listener of that name); exclusive with inter.broker.listener.name."},
	{Name: "zookeeper.set.acl", Type: kmsg.ConfigTypeBoolean, Default: "false", Doc: "Create every znode with Kafka's ACLs: all permissions for the brokers' ZooKeeper identity, read for everyone else (nothing under /config/users and /config/brokers). Needs ZooKeeper credentials: the Client section of kvlog.sasl.jaas.file."},
	{Name: "zookeeper.sasl.client", Type: kmsg.ConfigTypeBoolean, Default: "true", Doc: "Present the credentials of the zookeeper.sasl.clientconfig section of kvlog.sasl.jaas.file to ZooKeeper (when the section exists); false presents none."},
	{Name: "zookeeper.sasl.clientconfig", Type: kmsg.ConfigTypeString, Default: "Client", Doc: "The JAAS section with the ZooKeeper credentials: DigestLoginModule's username and password, presented with ZooKeeper's digest scheme."},
	{Name: "kvlog.sasl.jaas.file", Type: kmsg.ConfigTypeString, NoDefault: true, Doc: "A JAAS file as a Kafka broker reads with -Djava.security.auth.login.config: its KafkaServer section (or <listener>.KafkaServer) supplies what listener.name.<l>.<mechanism>.sasl.jaas.config does not. Read again at each authentication whose file changed."},
}

// checkWith adapts a validation function.
func checkWith(f func(string) error) func(string) error { return f }

func init() {
	for _, d := range securityConfigDefs {
		if brokerDefs[d.Name] != nil {
			panic("security config " + d.Name + " defined twice")
		}
		brokerDefs[d.Name] = d
	}
}

// listenerScoped are the keys that may be set per listener.
func listenerScoped(key string) bool {
	switch key {
	case "sasl.enabled.mechanisms", "sasl.jaas.config", "connections.max.reauth.ms", "sasl.server.max.receive.size":
		return true
	}
	return strings.HasPrefix(key, "ssl.") && brokerDefs[key] != nil
}

// BrokerDef is the definition of a broker key, including the per-listener
// forms listener.name.<l>.<key> and listener.name.<l>.<mechanism>.<key>;
// nil if kvlog does not know the key.
func BrokerDef(name string) *Def {
	if d := brokerDefs[name]; d != nil {
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
	base := brokerDefs[key]
	d := *base
	d.Name = name
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
		if !AuthorizerClassNames[v] {
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
		if BrokerDef(key) == nil {
			return "not implemented (Kerberos, OAUTHBEARER, callback handlers and custom SSL engines are Java-only or not implemented)"
		}
	}
	return ""
}

// parseSecurity resolves and checks the security settings across keys:
// the inter-broker listener, the SASL mechanisms of SASL listeners and the
// inter-broker credentials, from the static layer l.
func parseSecurity(c *Broker, l *Layers) error {
	static, get := l.Static(), l.String
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
		mechs := SplitList(lookup(l.Name, "sasl.enabled.mechanisms"))
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
		for _, m := range SplitList(lookup(l.Name, "sasl.enabled.mechanisms")) {
			enabled = enabled || m == mech
		}
		if !enabled {
			return fmt.Errorf("config sasl.mechanism.inter.broker.protocol: %s is not enabled on the inter-broker listener %s", mech, l.Name)
		}
	}
	if d, idle := l.Int("connection.failed.authentication.delay.ms"), l.Int("connections.max.idle.ms"); d >= idle {
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
