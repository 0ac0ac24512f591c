package testbroker

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Keytool runs Java's keytool in dir, or skips the test without it.
func Keytool(t testing.TB, dir string, args ...string) {
	t.Helper()
	path, err := exec.LookPath("keytool")
	if err != nil {
		t.Skip("keytool is not installed (`make tools-java` installs a JDK): skipping the Java key store tests")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// A short-lived JVM: C1 only and the serial collector start faster.
	cmd := exec.CommandContext(ctx, path, append([]string{"-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC"}, args...)...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("keytool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// KeytoolStores makes, with keytool, what a Kafka operator makes: a CA, a
// broker key signed by it with the CA in its chain, in a PKCS12 key store
// (password "store-pass") that also holds the CA as a trusted entry, and a
// PKCS12 trust store holding the CA (password "trust-pass"); then both
// converted to JKS, the key with its own password "key-pass". It returns
// the files by type ("PKCS12", "JKS"), and the CA as PEM (file "ca.crt"
// beside them). It skips the test when keytool is missing.
func KeytoolStores(t testing.TB) (keyStore, trustStore map[string]string) {
	t.Helper()
	dir := t.TempDir()
	kt := func(args ...string) { Keytool(t, dir, args...) }
	kt("-genkeypair", "-alias", "ca", "-keyalg", "EC", "-groupname", "secp256r1", "-dname", "CN=keytool CA",
		"-ext", "bc:c", "-validity", "2", "-storetype", "PKCS12", "-keystore", "ca.p12", "-storepass", "ca-pass")
	kt("-exportcert", "-rfc", "-alias", "ca", "-keystore", "ca.p12", "-storepass", "ca-pass", "-file", "ca.crt")
	keyStore = map[string]string{"PKCS12": filepath.Join(dir, "broker.p12"), "JKS": filepath.Join(dir, "broker.jks")}
	trustStore = map[string]string{"PKCS12": filepath.Join(dir, "trust.p12"), "JKS": filepath.Join(dir, "trust.jks")}
	ks := keyStore["PKCS12"]
	kt("-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048", "-dname", "CN=localhost,O=kvlog",
		"-validity", "2", "-storetype", "PKCS12", "-keystore", ks, "-storepass", "store-pass")
	kt("-certreq", "-alias", "broker", "-keystore", ks, "-storepass", "store-pass", "-file", "broker.csr")
	kt("-gencert", "-alias", "ca", "-keystore", "ca.p12", "-storepass", "ca-pass", "-infile", "broker.csr", "-outfile", "broker.crt",
		"-rfc", "-validity", "2", "-ext", "SAN=dns:localhost,ip:127.0.0.1")
	kt("-importcert", "-noprompt", "-alias", "ca", "-file", "ca.crt", "-keystore", ks, "-storepass", "store-pass")
	kt("-importcert", "-alias", "broker", "-file", "broker.crt", "-keystore", ks, "-storepass", "store-pass")
	kt("-importcert", "-noprompt", "-alias", "ca", "-file", "ca.crt", "-keystore", trustStore["PKCS12"], "-storetype", "PKCS12", "-storepass", "trust-pass")
	kt("-importkeystore", "-noprompt", "-srckeystore", ks, "-srcstoretype", "PKCS12", "-srcstorepass", "store-pass", "-srcalias", "broker",
		"-destkeystore", keyStore["JKS"], "-deststoretype", "JKS", "-deststorepass", "store-pass", "-destkeypass", "key-pass")
	kt("-importkeystore", "-noprompt", "-srckeystore", trustStore["PKCS12"], "-srcstoretype", "PKCS12", "-srcstorepass", "trust-pass",
		"-destkeystore", trustStore["JKS"], "-deststoretype", "JKS", "-deststorepass", "trust-pass")
	return keyStore, trustStore
}
