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
		ks, err := loadJKS(data, storePassword)
		if err != nil {
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
		ks, err := loadJKS(data, password)
		if err != nil {
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

// JKS layout, as far as checkJKSBounds walks it (all integers big-endian):
// magic u32, version u32 (1 or 2), entry count u32, then per entry a tag
// u32 (1 private key, 2 trusted certificate), an alias (u16 length +
// bytes) and a creation time u64; a private key entry continues with the
// encrypted key (u32 length + bytes) and its chain (u32 count, then
// certificates), a trusted certificate entry with one certificate. A
// certificate is its type (version 2 only: u16 length + bytes) and its
// DER (u32 length + bytes). A 20-byte SHA-1 digest ends the file.
const (
	jksDigestLen    = 20
	jksPrivateKey   = 1
	jksTrustedCert  = 2
	jksMinCertBytes = 4 // a version-1 certificate of zero bytes: its length
)

// loadJKS decodes a JKS store after checkJKSBounds: the decoder allocates
// every length and count the file declares before reading it, so a
// damaged or hostile file could otherwise make it allocate gigabytes (a
// chain count of 2³²−1 is a fatal out-of-memory, not an error).
func loadJKS(data []byte, password string) (keystore.KeyStore, error) {
	ks := keystore.New(keystore.WithOrderedAliases(), keystore.WithCaseExactAliases())
	if err := checkJKSBounds(data); err != nil {
		return ks, err
	}
	if err := ks.Load(bytes.NewReader(data), []byte(password)); err != nil {
		return ks, err
	}
	return ks, nil
}

// checkJKSBounds walks a JKS file's structure and fails if any declared
// length or count runs past the end of the file. It checks nothing else:
// the decoder checks the rest, the digest included.
func checkJKSBounds(data []byte) error {
	r := jksWalk{data: data}
	if r.u32("magic") != jksMagic && r.err == nil {
		return errors.New("not a JKS file (bad magic)")
	}
	version := r.u32("version")
	if r.err == nil && version != 1 && version != 2 {
		return fmt.Errorf("JKS version %d is not 1 or 2", version)
	}
	entries := r.count("entry count", 4+2+8)
	for i := uint32(0); i < entries && r.err == nil; i++ {
		tag := r.u32("entry tag")
		r.skip("alias", int(r.u16("alias length")))
		r.skip("creation time", 8)
		switch {
		case r.err != nil:
		case tag == jksPrivateKey:
			r.skip("private key", int(r.u32("private key length")))
			n := r.count("certificate chain length", jksMinCertBytes)
			for j := uint32(0); j < n && r.err == nil; j++ {
				r.cert(version)
			}
		case tag == jksTrustedCert:
			r.cert(version)
		default:
			return fmt.Errorf("JKS entry %d: unknown tag %d", i, tag)
		}
	}
	r.skip("digest", jksDigestLen)
	return r.err
}

// jksWalk reads a JKS file's integers and skips its byte strings, failing
// (sticky) at the first field that runs past the end.
type jksWalk struct {
	data []byte
	off  int
	err  error
}

func (w *jksWalk) skip(field string, n int) {
	if w.err != nil {
		return
	}
	if n < 0 || n > len(w.data)-w.off {
		w.err = fmt.Errorf("JKS %s at byte %d: %d bytes declared, %d left in the file", field, w.off, n, len(w.data)-w.off)
		return
	}
	w.off += n
}

func (w *jksWalk) u16(field string) uint16 {
	at := w.off
	if w.skip(field, 2); w.err != nil {
		return 0
	}
	return binary.BigEndian.Uint16(w.data[at:])
}

func (w *jksWalk) u32(field string) uint32 {
	at := w.off
	if w.skip(field, 4); w.err != nil {
		return 0
	}
	return binary.BigEndian.Uint32(w.data[at:])
}

// count reads a count of items taking at least minBytes each and fails if
// that many cannot fit in the rest of the file.
func (w *jksWalk) count(field string, minBytes int) uint32 {
	n := w.u32(field)
	if w.err == nil && uint64(n)*uint64(minBytes) > uint64(len(w.data)-w.off) {
		w.err = fmt.Errorf("JKS %s %d at byte %d: more than the %d bytes left in the file hold", field, n, w.off-4, len(w.data)-w.off)
		return 0
	}
	return n
}

func (w *jksWalk) cert(version uint32) {
	if version == 2 {
		w.skip("certificate type", int(w.u16("certificate type length")))
	}
	w.skip("certificate", int(w.u32("certificate length")))
}
