// Package security is the broker's transport security and authentication
// logic with no dependency on the rest of the broker: TLS configurations
// built from Apache Kafka's ssl.* settings (PEM, PKCS12 and JKS key stores
// and trust stores, encrypted PKCS#8 keys, client authentication, protocol
// versions and cipher suites), the mapping of certificate subjects to principals
// (ssl.principal.mapping.rules), JAAS configuration text as Kafka reads it
// (sasl.jaas.config and JAAS files), and the server side of the SASL
// mechanisms PLAIN (RFC 4616) and SCRAM-SHA-256/512 (RFC 5802, RFC 7677)
// with Kafka's credential format, and a connection's SASL session
// (Session, session.go: handshake, tokens raw or in SaslAuthenticate,
// re-authentication and session expiry, which requests are served before
// authentication), as Kafka's SaslServerAuthenticator.
//
// The package server wires these into listeners and connections;
// docs/security.md describes the whole model and the Kafka behaviour it
// follows.
//
// Nothing here reveals why an authentication failed: every failure of a
// mechanism is ErrAuthFailed to the caller, which answers the client with
// one fixed message; the reason is only for the broker's own log
// (AuthError.Reason).
package security
