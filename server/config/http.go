package config

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/security"
)

// The keys of the HTTP listener's security and of the console (the
// package httpapi and the broker's console.go); the listener's address is
// kvlog.http.listener in brokerDefs.

// httpConfigDefs are added to brokerDefs.
var httpConfigDefs = []*Def{
	{Name: "kvlog.http.ssl.keystore.location", Type: kmsg.ConfigTypeString, NoDefault: true, Doc: "PEM file with the HTTP listener's private key and certificate chain: the listener serves HTTPS. Unset: plain HTTP."},
	{Name: "kvlog.http.ssl.keystore.key", Type: kmsg.ConfigTypePassword, NoDefault: true, Sensitive: true, Doc: "The HTTP listener's private key in PEM, inline (instead of kvlog.http.ssl.keystore.location)."},
	{Name: "kvlog.http.ssl.keystore.certificate.chain", Type: kmsg.ConfigTypePassword, NoDefault: true, Sensitive: true, Doc: "The HTTP listener's certificate chain in PEM, inline."},
	{Name: "kvlog.http.ssl.key.password", Type: kmsg.ConfigTypePassword, NoDefault: true, Sensitive: true, Doc: "Password of the HTTP key store's encrypted PKCS#8 private key."},
	{Name: "kvlog.http.ssl.keystore.password", Type: kmsg.ConfigTypePassword, NoDefault: true, Sensitive: true, Doc: "Password of an encrypted private key when kvlog.http.ssl.key.password is not set."},
	{Name: "kvlog.http.ssl.truststore.location", Type: kmsg.ConfigTypeString, NoDefault: true, Doc: "PEM file of the CAs trusted to sign HTTP client certificates (with kvlog.http.ssl.client.auth)."},
	{Name: "kvlog.http.ssl.client.auth", Type: kmsg.ConfigTypeString, Default: security.DefaultClientAuth, Check: oneOf("none", "requested", "required"), Doc: "HTTP client certificates: none, requested (verified if sent) or required."},
	{Name: "kvlog.http.ssl.enabled.protocols", Type: kmsg.ConfigTypeList, Default: security.DefaultEnabledProtocols, Check: checkWith(func(v string) error { _, _, err := security.ProtocolRange(v); return err }), Doc: "TLS versions the HTTP listener serves."},
	{Name: "kvlog.http.ssl.cipher.suites", Type: kmsg.ConfigTypeList, Default: "", Check: checkWith(func(v string) error { _, err := security.CipherSuites(v); return err }), Doc: "TLS 1.2 cipher suites of the HTTP listener (empty: Go's secure defaults)."},
	{Name: "kvlog.http.auth", Type: kmsg.ConfigTypeString, Default: "none", Check: oneOf("none", "basic"), Doc: "none, or basic: HTTP basic authentication with the broker's SASL users (PLAIN users of the SASL listeners, SCRAM credentials); /healthz and /readyz stay open."},
	{Name: "kvlog.http.pprof.enable", Type: kmsg.ConfigTypeString, Default: "auto", Check: oneOf("auto", "true", "false"), Doc: "Serve Go's profiler under /debug/pprof: auto serves it only when kvlog.http.listener is a loopback address."},
	{Name: "kvlog.console.enable", Type: kmsg.ConfigTypeBoolean, Default: "true", Doc: "Serve the web console under /ui/ on the HTTP listener."},
	{Name: "kvlog.console.sample.interval.ms", Type: kmsg.ConfigTypeLong, Default: "10000", Check: atLeast(50), Doc: "How often the console samples every compacted partition's dirty ratio and size for its charts (the last 360 samples are kept in memory)."},
}

func init() {
	for _, d := range httpConfigDefs {
		if brokerDefs[d.Name] != nil {
			panic("HTTP config " + d.Name + " defined twice")
		}
		brokerDefs[d.Name] = d
	}
}
