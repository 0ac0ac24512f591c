package server

import (
	"fmt"
	"sort"
	"strings"
)

// kvlog implements neither TLS, SASL nor authorization yet. A Kafka
// server.properties that configures any of them expects an encrypted,
// authenticated or access-controlled broker; starting anyway would serve an
// open PLAINTEXT broker under that belief. So kvlogd refuses to start and
// names the settings instead (ParseConfig).

// securityKey reports whether key=value configures security: TLS (ssl.*,
// listener.name.NAME.ssl.*, zookeeper.ssl.*), SASL (sasl.*, including
// per-listener and per-mechanism sasl.jaas.config), authorization
// (authorizer.class.name, super.users, allow.everyone.if.no.acl.found),
// principal mapping, delegation tokens, ZooKeeper ACLs, or a non-PLAINTEXT
// inter-broker protocol. Empty values configure nothing.
func securityKey(key, value string) bool {
	v := strings.TrimSpace(value)
	if v == "" {
		return false
	}
	k := strings.ToLower(key)
	switch k {
	case "authorizer.class.name", "super.users", "allow.everyone.if.no.acl.found",
		"principal.builder.class", "delegation.token.master.key", "delegation.token.secret.key":
		return true
	case "security.inter.broker.protocol":
		return !strings.EqualFold(v, "PLAINTEXT")
	case "zookeeper.set.acl", "zookeeper.ssl.client.enable":
		return !strings.EqualFold(v, "false")
	}
	if strings.HasPrefix(k, "ssl.") || strings.HasPrefix(k, "sasl.") {
		return true
	}
	if strings.HasPrefix(k, "zookeeper.ssl.") || strings.HasPrefix(k, "zookeeper.sasl.") {
		return true
	}
	if rest, ok := strings.CutPrefix(k, "listener.name."); ok {
		// listener.name.NAME.ssl.*, listener.name.NAME.sasl.*,
		// listener.name.NAME.MECHANISM.sasl.jaas.config, …
		return strings.Contains(rest, ".ssl.") || strings.Contains(rest, ".sasl.") ||
			strings.HasSuffix(rest, ".connections.max.reauth.ms")
	}
	return false
}

// secureListeners names the listeners whose security protocol is not
// PLAINTEXT (listener.security.protocol.map, or the listener name itself
// when the map lacks it), and a non-PLAINTEXT inter-broker listener.
func secureListeners(static map[string]string, listeners string, protoMap map[string]string) []string {
	var out []string
	for _, item := range splitList(listeners) {
		name, _, ok := strings.Cut(item, "://")
		if !ok {
			continue // parseListeners reports it
		}
		name = strings.ToUpper(strings.TrimSpace(name))
		proto, ok := protoMap[name]
		if !ok {
			proto = name
		}
		if proto != "PLAINTEXT" && isSecurityProtocol(proto) {
			out = append(out, fmt.Sprintf("listeners (%s uses %s)", name, proto))
		}
	}
	if ib, ok := static["inter.broker.listener.name"]; ok {
		name := strings.ToUpper(strings.TrimSpace(ib))
		if proto := protoMap[name]; proto != "" && proto != "PLAINTEXT" && isSecurityProtocol(proto) {
			out = append(out, fmt.Sprintf("inter.broker.listener.name (%s uses %s)", name, proto))
		}
	}
	return out
}

func isSecurityProtocol(p string) bool {
	switch p {
	case "SSL", "SASL_PLAINTEXT", "SASL_SSL":
		return true
	}
	return false
}

// refuseSecurity is the start-up error for configured security, nil when
// none is.
func refuseSecurity(settings []string) error {
	if len(settings) == 0 {
		return nil
	}
	sort.Strings(settings)
	return fmt.Errorf("config: security is configured (%s), but kvlog implements neither TLS, SASL nor authorization yet, "+
		"and would serve an open, unencrypted broker; remove these settings to run a PLAINTEXT broker without authentication",
		strings.Join(settings, ", "))
}
