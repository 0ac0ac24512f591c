package security

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Lookup returns the value of an ssl.* key as it applies to one listener
// (listener.name.<l>.<key> first, then <key>), and whether it is set.
type Lookup func(key string) (string, bool)

func (get Lookup) str(key, def string) string {
	if v, ok := get(key); ok && strings.TrimSpace(v) != "" {
		return strings.TrimSpace(v)
	}
	return def
}

// Defaults of the ssl.* keys kvlog reads (Apache Kafka's, except the key
// store types: PEM, where Kafka defaults to JKS).
const (
	DefaultEnabledProtocols = "TLSv1.2,TLSv1.3"
	DefaultClientAuth       = "none"
	DefaultPrincipalRules   = "DEFAULT"
)

// ClientAuth values of ssl.client.auth.
var clientAuthModes = map[string]tls.ClientAuthType{
	"none":      tls.NoClientCert,
	"requested": tls.VerifyClientCertIfGiven,
	"required":  tls.RequireAndVerifyClientCert,
}

// CheckClientAuth validates an ssl.client.auth value.
func CheckClientAuth(v string) error {
	if _, ok := clientAuthModes[strings.ToLower(strings.TrimSpace(v))]; !ok {
		return fmt.Errorf("ssl.client.auth must be none, requested or required, got %q", v)
	}
	return nil
}

var protocolVersions = map[string]uint16{
	"TLSv1":   tls.VersionTLS10,
	"TLSv1.1": tls.VersionTLS11,
	"TLSv1.2": tls.VersionTLS12,
	"TLSv1.3": tls.VersionTLS13,
}

// ProtocolRange turns ssl.enabled.protocols into Go's version range. The
// versions must be contiguous (Go cannot enable TLS 1.3 and 1.1 without
// 1.2).
func ProtocolRange(v string) (min, max uint16, err error) {
	var vs []uint16
	for _, p := range splitList(v) {
		ver, ok := protocolVersions[p]
		if !ok {
			return 0, 0, fmt.Errorf("ssl.enabled.protocols: unknown protocol %q (TLSv1, TLSv1.1, TLSv1.2, TLSv1.3)", p)
		}
		vs = append(vs, ver)
	}
	if len(vs) == 0 {
		return 0, 0, errors.New("ssl.enabled.protocols: no protocol enabled")
	}
	min, max = vs[0], vs[0]
	for _, x := range vs {
		min, max = minU16(min, x), maxU16(max, x)
	}
	for x := min; x <= max; x++ {
		found := false
		for _, y := range vs {
			found = found || x == y
		}
		if !found {
			return 0, 0, fmt.Errorf("ssl.enabled.protocols: %q is not a contiguous range of versions", v)
		}
	}
	return min, max, nil
}

func minU16(a, b uint16) uint16 {
	if a < b {
		return a
	}
	return b
}

func maxU16(a, b uint16) uint16 {
	if a > b {
		return a
	}
	return b
}

// CipherSuites turns ssl.cipher.suites (IANA names, as the JDK spells
// them) into Go's suite ids. TLS 1.3 suites are accepted and need no
// entry: Go enables all three and does not let them be chosen. An empty
// list is Go's defaults.
func CipherSuites(v string) ([]uint16, error) {
	names := splitList(v)
	if len(names) == 0 {
		return nil, nil
	}
	known := map[string]uint16{}
	tls13 := map[string]bool{}
	for _, cs := range tls.CipherSuites() {
		known[cs.Name] = cs.ID
		for _, ver := range cs.SupportedVersions {
			if ver == tls.VersionTLS13 {
				tls13[cs.Name] = true
			}
		}
	}
	var out []uint16
	for _, n := range names {
		id, ok := known[n]
		if !ok {
			return nil, fmt.Errorf("ssl.cipher.suites: %q is not a cipher suite kvlog can use (insecure suites are refused)", n)
		}
		if !tls13[n] {
			out = append(out, id)
		}
	}
	return out, nil
}

// KeyPair loads the broker's certificate chain and private key: from
// ssl.keystore.location (one PEM file with the key and the chain, as
// Kafka's PEM key store; or a PKCS12 or JKS key store, see
// ssl.keystore.type), or inline from ssl.keystore.key and
// ssl.keystore.certificate.chain. For PEM, ssl.key.password (or, failing
// it, ssl.keystore.password) decrypts an encrypted PKCS#8 key. It returns
// nil when no key store is configured.
func KeyPair(get Lookup) (*tls.Certificate, error) {
	typCfg, typSet := get("ssl.keystore.type")
	typSet = typSet && strings.TrimSpace(typCfg) != ""
	typ := strings.ToUpper(strings.TrimSpace(typCfg))
	loc := get.str("ssl.keystore.location", "")
	inlineKey := get.str("ssl.keystore.key", "")
	inlineChain := get.str("ssl.keystore.certificate.chain", "")
	if loc == "" && inlineKey == "" && inlineChain == "" {
		return nil, nil
	}
	if typSet && typ != "PEM" && typ != "PKCS12" && typ != "JKS" {
		return nil, fmt.Errorf("ssl.keystore.type %s is not supported (PEM, PKCS12 and JKS are)", typ)
	}
	var data []byte
	switch {
	case loc != "" && (inlineKey != "" || inlineChain != ""):
		return nil, errors.New("ssl.keystore.location and ssl.keystore.key/ssl.keystore.certificate.chain are exclusive")
	case loc != "":
		b, err := os.ReadFile(loc)
		if err != nil {
			return nil, fmt.Errorf("ssl.keystore.location: %w", err)
		}
		data = b
	default:
		if inlineKey == "" || inlineChain == "" {
			return nil, errors.New("ssl.keystore.key and ssl.keystore.certificate.chain must be set together")
		}
		if typSet && typ != "PEM" {
			return nil, fmt.Errorf("ssl.keystore.type %s: %w", typ, errNotJava)
		}
		data = []byte(inlineKey + "\n" + inlineChain + "\n")
	}
	if typ = storeType(typ, typSet, data); typ != "PEM" {
		pemData, err := javaKeyStore(typ, data, get.str("ssl.keystore.password", ""), get.str("ssl.key.password", ""))
		if err != nil {
			return nil, fmt.Errorf("ssl.keystore.location %s: %w", loc, err)
		}
		return parseKeyStore(pemData, "")
	}
	password := get.str("ssl.key.password", "")
	if password == "" {
		password = get.str("ssl.keystore.password", "")
	}
	return parseKeyStore(data, password)
}

// parseKeyStore reads the private key and certificates of a PEM key store.
func parseKeyStore(data []byte, password string) (*tls.Certificate, error) {
	var (
		cert tls.Certificate
		key  any
	)
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		switch b.Type {
		case "CERTIFICATE":
			cert.Certificate = append(cert.Certificate, b.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			if password == "" {
				return nil, errors.New("key store: the private key is encrypted and ssl.key.password is not set")
			}
			der, err := decryptPKCS8(b.Bytes, []byte(password))
			if err != nil {
				return nil, fmt.Errorf("key store: %w", err)
			}
			k, err := x509.ParsePKCS8PrivateKey(der)
			if err != nil {
				return nil, fmt.Errorf("key store: decrypted private key: %w", err)
			}
			key = k
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("key store: private key: %w", err)
			}
			key = k
		case "RSA PRIVATE KEY", "EC PRIVATE KEY":
			if b.Headers["Proc-Type"] != "" {
				return nil, errors.New("key store: legacy OpenSSL-encrypted keys are not supported; use an encrypted PKCS#8 key (openssl pkcs8 -topk8 -v2 aes-256-cbc)")
			}
			var k any
			var err error
			if b.Type == "RSA PRIVATE KEY" {
				k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
			} else {
				k, err = x509.ParseECPrivateKey(b.Bytes)
			}
			if err != nil {
				return nil, fmt.Errorf("key store: private key: %w", err)
			}
			key = k
		}
	}
	if key == nil {
		return nil, errors.New("key store: no private key found")
	}
	if len(cert.Certificate) == 0 {
		return nil, errors.New("key store: no certificate found")
	}
	cert.PrivateKey = key
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("key store: certificate: %w", err)
	}
	cert.Leaf = leaf
	// The key must belong to the first certificate.
	if _, err := tls.X509KeyPair(pemCerts(cert.Certificate[:1]), pemKey(key)); err != nil {
		return nil, fmt.Errorf("key store: %w", err)
	}
	return &cert, nil
}

func pemCerts(ders [][]byte) []byte {
	var out []byte
	for _, d := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	return out
}

func pemKey(k any) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// TrustPool loads the trusted certificates: ssl.truststore.location (a PEM
// file of certificates, or a PKCS12 or JKS trust store, see
// ssl.truststore.type) or inline ssl.truststore.certificates. It returns
// nil when neither is set (the system's roots then apply to a client).
func TrustPool(get Lookup) (*x509.CertPool, error) {
	typCfg, typSet := get("ssl.truststore.type")
	typSet = typSet && strings.TrimSpace(typCfg) != ""
	typ := strings.ToUpper(strings.TrimSpace(typCfg))
	loc := get.str("ssl.truststore.location", "")
	inline := get.str("ssl.truststore.certificates", "")
	if loc == "" && inline == "" {
		return nil, nil
	}
	if typSet && typ != "PEM" && typ != "PKCS12" && typ != "JKS" {
		return nil, fmt.Errorf("ssl.truststore.type %s is not supported (PEM, PKCS12 and JKS are)", typ)
	}
	data := []byte(inline)
	if loc != "" {
		if inline != "" {
			return nil, errors.New("ssl.truststore.location and ssl.truststore.certificates are exclusive")
		}
		b, err := os.ReadFile(loc)
		if err != nil {
			return nil, fmt.Errorf("ssl.truststore.location: %w", err)
		}
		data = b
	} else if typSet && typ != "PEM" {
		return nil, fmt.Errorf("ssl.truststore.type %s: %w", typ, errNotJava)
	}
	pool := x509.NewCertPool()
	if typ = storeType(typ, typSet, data); typ != "PEM" {
		certs, err := javaTrustStore(typ, data, get.str("ssl.truststore.password", ""))
		if err != nil {
			return nil, fmt.Errorf("ssl.truststore.location %s: %w", loc, err)
		}
		if len(certs) == 0 {
			return nil, fmt.Errorf("ssl.truststore.location %s: trust store (%s): no trusted certificate entry", loc, typ)
		}
		for _, c := range certs {
			pool.AddCert(c)
		}
		return pool, nil
	}
	n := 0
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("trust store: %w", err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, errors.New("trust store: no certificate found")
	}
	return pool, nil
}

// ServerTLS builds a listener's TLS configuration from its ssl.* keys. A
// key store is required; a trust store is required when clients are asked
// for certificates (ssl.client.auth requested or required).
func ServerTLS(get Lookup) (*tls.Config, error) {
	cert, err := KeyPair(get)
	if err != nil {
		return nil, err
	}
	if cert == nil {
		return nil, errors.New("no key store: set ssl.keystore.location (PEM) or ssl.keystore.key and ssl.keystore.certificate.chain")
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{*cert}}
	if err := applyCommon(cfg, get); err != nil {
		return nil, err
	}
	mode := strings.ToLower(get.str("ssl.client.auth", DefaultClientAuth))
	if err := CheckClientAuth(mode); err != nil {
		return nil, err
	}
	cfg.ClientAuth = clientAuthModes[mode]
	pool, err := TrustPool(get)
	if err != nil {
		return nil, err
	}
	if cfg.ClientAuth != tls.NoClientCert && pool == nil {
		return nil, fmt.Errorf("ssl.client.auth=%s needs a trust store (ssl.truststore.location) to verify client certificates", mode)
	}
	cfg.ClientCAs = pool
	if _, err := ParsePrincipalRules(get.str("ssl.principal.mapping.rules", DefaultPrincipalRules)); err != nil {
		return nil, err
	}
	return cfg, nil
}

func applyCommon(cfg *tls.Config, get Lookup) error {
	min, max, err := ProtocolRange(get.str("ssl.enabled.protocols", DefaultEnabledProtocols))
	if err != nil {
		return err
	}
	cfg.MinVersion, cfg.MaxVersion = min, max
	suites, err := CipherSuites(get.str("ssl.cipher.suites", ""))
	if err != nil {
		return err
	}
	cfg.CipherSuites = suites
	return nil
}

// ClientTLS builds the TLS configuration a broker uses to reach another
// broker's listener: the listener's trust store verifies the peer, its key
// store (if any) is the client certificate, and
// ssl.endpoint.identification.algorithm=https (the default) checks the
// peer's host name; an empty value skips only that check, as in Kafka.
func ClientTLS(get Lookup) (*tls.Config, error) {
	cfg := &tls.Config{}
	if err := applyCommon(cfg, get); err != nil {
		return nil, err
	}
	cert, err := KeyPair(get)
	if err != nil {
		return nil, err
	}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	pool, err := TrustPool(get)
	if err != nil {
		return nil, err
	}
	cfg.RootCAs = pool
	switch alg := strings.ToLower(get.str("ssl.endpoint.identification.algorithm", "https")); alg {
	case "https":
	case "":
	default:
		return nil, fmt.Errorf("ssl.endpoint.identification.algorithm must be https or empty, got %q", alg)
	}
	if v, ok := get("ssl.endpoint.identification.algorithm"); ok && strings.TrimSpace(v) == "" {
		cfg.InsecureSkipVerify = true // the chain is still verified below
		cfg.VerifyPeerCertificate = verifyChainOnly(pool)
	}
	return cfg, nil
}

// verifyChainOnly verifies the peer's chain against roots without a host
// name.
func verifyChainOnly(roots *x509.CertPool) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("tls: the peer sent no certificate")
		}
		certs := make([]*x509.Certificate, len(raw))
		for i, r := range raw {
			c, err := x509.ParseCertificate(r)
			if err != nil {
				return err
			}
			certs[i] = c
		}
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
		return err
	}
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
