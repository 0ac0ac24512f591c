package security

import (
	"encoding/pem"
	"testing"
)

// FuzzKeyStores feeds arbitrary bytes to every key and trust store reader
// (an operator's damaged or wrong file, which a dynamic listener update
// reads while the broker serves): PEM with encrypted PKCS#8 keys, PKCS12
// and JKS. None may panic; a wrong file is an error naming the store.
func FuzzKeyStores(f *testing.F) {
	keyPEM, certPEM := selfSigned(f)
	f.Add([]byte(keyPEM+certPEM), false)
	block, _ := pem.Decode([]byte(keyPEM))
	enc, err := EncryptPKCS8(block.Bytes, []byte("pw"), []byte("saltsalt"), make([]byte, 16), 1000)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(append(pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: enc}), certPEM...), false)
	f.Add(enc, true)
	f.Add([]byte{0xFE, 0xED, 0xFE, 0xED, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 1, 'a'}, false)
	f.Add([]byte{0x30, 0x82, 0x01, 0x00, 0x02, 0x01, 0x03}, false)
	f.Fuzz(func(t *testing.T, data []byte, raw bool) {
		if raw {
			_, _ = decryptPKCS8(data, []byte("pw"))
			return
		}
		_, _ = parseKeyStore(data, "pw")
		for _, typ := range []string{"PKCS12", "JKS"} {
			_, _ = javaKeyStore(typ, data, "pw", "pw")
			_, _ = javaTrustStore(typ, data, "pw")
		}
		_ = storeType("", false, data)
	})
}
