package security

import (
	"bytes"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/pavlo-v-chernykh/keystore-go/v4"
	"software.sslmate.com/src/go-pkcs12"
)

// Java key store formats (ssl.keystore.type, ssl.truststore.type), next to
// PEM: PKCS12 (keytool's default since Java 9) and JKS (Java's older
// proprietary format, Kafka's default type).

// jksMagic starts every JKS file.
const jksMagic = 0xFEEDFEED

// storeType is the format of a key or trust store: the configured type,
// or — when the type is not set — what the file is (Kafka's default is
// JKS while kvlog's is PEM, so a Kafka configuration naming a .jks or .p12
// file without a type still works): JKS by its magic number, PKCS12 by its
// DER sequence, PEM otherwise.
func storeType(configured string, set bool, data []byte) string {
	if set {
		return strings.ToUpper(configured)
	}
	switch {
	case len(data) >= 4 && binary.BigEndian.Uint32(data) == jksMagic:
		return "JKS"
	case len(data) >= 2 && data[0] == 0x30 && data[1] >= 0x80: // SEQUENCE, long-form length
		return "PKCS12"
	}
	return "PEM"
}

// javaKeyStore reads the private key and certificate chain of a PKCS12 or
// JKS key store into a PEM key store (which parseKeyStore then checks:
// the key must belong to the first certificate). storePassword opens the
// store (ssl.keystore.password, required as in Kafka); keyPassword
// (ssl.key.password, default storePassword) decrypts a JKS key entry. The
// store must hold exactly one private key.
func javaKeyStore(typ string, data []byte, storePassword, keyPassword string) ([]byte, error) {
	if storePassword == "" {
		return nil, fmt.Errorf("key store (%s): ssl.keystore.password is not set; a %s key store needs it", typ, typ)
	}
	if keyPassword == "" {
		keyPassword = storePassword
	}
	var (
		key   any
		chain [][]byte
	)
	switch typ {
	case "PKCS12":
		// keytool gives a PKCS12 key the store's password.
		k, leaf, cas, err := pkcs12.DecodeChain(data, storePassword)
		if err != nil && keyPassword != storePassword {
			k, leaf, cas, err = pkcs12.DecodeChain(data, keyPassword)
		}
		if err != nil {
			return nil, fmt.Errorf("key store (PKCS12): %w", err)
		}
		key = k
		chain = issuerChain(leaf, cas)
	case "JKS":
		ks := keystore.New(keystore.WithOrderedAliases(), keystore.WithCaseExactAliases())
		if err := ks.Load(bytes.NewReader(data), []byte(storePassword)); err != nil {
			return nil, fmt.Errorf("key store (JKS): %w", err)
		}
		var aliases []string
		for _, a := range ks.Aliases() {
			if ks.IsPrivateKeyEntry(a) {
				aliases = append(aliases, a)
			}
		}
		if len(aliases) != 1 {
			return nil, fmt.Errorf("key store (JKS): %d private keys (aliases %q); kvlog needs exactly one", len(aliases), aliases)
		}
		e, err := ks.GetPrivateKeyEntry(aliases[0], []byte(keyPassword))
		if err != nil {
			return nil, fmt.Errorf("key store (JKS): private key %q: %w", aliases[0], err)
		}
		k, err := x509.ParsePKCS8PrivateKey(e.PrivateKey)
		if err != nil {
			return nil, fmt.Errorf("key store (JKS): private key %q: %w", aliases[0], err)
		}
		key = k
		for _, c := range e.CertificateChain {
			chain = append(chain, c.Content)
		}
	default:
		return nil, fmt.Errorf("key store type %s is not supported (PEM, PKCS12 and JKS are)", typ)
	}
	return append(pemKey(key), pemCerts(chain)...), nil
}

// issuerChain is leaf followed by its issuers among others, in order (a
// PKCS12 store lists the other certificates in no particular order, and
// may hold trusted certificates besides the chain); it stops at a
// self-signed certificate or one whose issuer is not there.
func issuerChain(leaf *x509.Certificate, others []*x509.Certificate) [][]byte {
	chain := [][]byte{leaf.Raw}
	used := make([]bool, len(others))
	for cur := leaf; !bytes.Equal(cur.RawIssuer, cur.RawSubject); {
		next := -1
		for i, c := range others {
			if !used[i] && bytes.Equal(c.RawSubject, cur.RawIssuer) && cur.CheckSignatureFrom(c) == nil {
				next = i
				break
			}
		}
		if next < 0 {
			break
		}
		used[next] = true
		cur = others[next]
		chain = append(chain, cur.Raw)
	}
	return chain
}

// javaTrustStore reads the trusted certificates of a PKCS12 or JKS trust
// store. kvlog checks the store's integrity, so the password
// (ssl.truststore.password) is required (Java skips the check without
// one).
func javaTrustStore(typ string, data []byte, password string) ([]*x509.Certificate, error) {
	if password == "" {
		return nil, fmt.Errorf("trust store (%s): ssl.truststore.password is not set; kvlog needs it to check a %s trust store's integrity", typ, typ)
	}
	switch typ {
	case "PKCS12":
		certs, err := pkcs12.DecodeTrustStore(data, password)
		if err != nil {
			return nil, fmt.Errorf("trust store (PKCS12): %w", err)
		}
		return certs, nil
	case "JKS":
		ks := keystore.New(keystore.WithOrderedAliases(), keystore.WithCaseExactAliases())
		if err := ks.Load(bytes.NewReader(data), []byte(password)); err != nil {
			return nil, fmt.Errorf("trust store (JKS): %w", err)
		}
		var certs []*x509.Certificate
		for _, a := range ks.Aliases() {
			if !ks.IsTrustedCertificateEntry(a) {
				continue
			}
			e, err := ks.GetTrustedCertificateEntry(a)
			if err != nil {
				return nil, fmt.Errorf("trust store (JKS): %q: %w", a, err)
			}
			c, err := x509.ParseCertificate(e.Certificate.Content)
			if err != nil {
				return nil, fmt.Errorf("trust store (JKS): %q: %w", a, err)
			}
			certs = append(certs, c)
		}
		return certs, nil
	}
	return nil, fmt.Errorf("trust store type %s is not supported (PEM, PKCS12 and JKS are)", typ)
}

// errNotJava is returned for inline stores of a Java type.
var errNotJava = errors.New("inline key and trust stores (ssl.keystore.key, ssl.keystore.certificate.chain, ssl.truststore.certificates) are PEM only")
