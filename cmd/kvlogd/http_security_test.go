package main

import (
	"crypto/tls"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/kvlog/kvlog/internal/testbroker"
)

// basicGet sends a request (with basic credentials when user is set) and
// returns the status and body.
func basicGet(t *testing.T, hc *http.Client, method, u, user, pass string, form url.Values) (int, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, string(b)
}

// TestHTTPListenerSecurity: with kvlog.http.ssl.keystore.location and
// kvlog.http.auth=basic the HTTP listener serves HTTPS only, answers 401
// without a broker user's password (SCRAM or PLAIN; a wrong password and
// an unknown user alike), keeps /healthz and /readyz open, checks cluster
// ACLs (DESCRIBE for /metrics and /cleaner, ALTER for /debug/pprof), and
// its console acts as the logged-in user: Metadata filtered by that
// user's ACLs, a config change refused by the broker's authorizer.
func TestHTTPListenerSecurity(t *testing.T) {
	sb := startSecureBrokerWith(t, func(sb *secureBroker) []string {
		return []string{
			"kvlog.http.ssl.keystore.location=" + sb.server.File,
			"kvlog.http.auth=basic",
			"authorizer.class.name=kafka.security.authorizer.AclAuthorizer",
			"super.users=User:ANONYMOUS",
		}
	})
	ctx := testbroker.Context(t, 60*time.Second)
	adm := sb.Admin(t)
	for _, topic := range []string{"open", "secret"} {
		if _, err := adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
			t.Fatalf("create %s: %v", topic, err)
		}
	}
	acls := kadm.NewACLs().Allow("User:" + sb.scramUser).Clusters().Operations(kadm.OpDescribe).
		ResourcePatternType(kadm.ACLPatternLiteral)
	topicACL := kadm.NewACLs().Allow("User:"+sb.plainUser).Topics("open").Operations(kadm.OpDescribe, kadm.OpDescribeConfigs).
		ResourcePatternType(kadm.ACLPatternLiteral)
	for _, a := range []*kadm.ACLBuilder{acls, topicACL} {
		res, err := adm.CreateACLs(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.Err != nil {
				t.Fatalf("create ACL: %v", r.Err)
			}
		}
	}

	base := "https://" + sb.HTTP
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: sb.ca.TLS(t, nil)},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	// Plain HTTP is not served.
	if code, _ := basicGet(t, &http.Client{Timeout: 5 * time.Second}, "GET", "http://"+sb.HTTP+"/healthz", "", "", nil); code == http.StatusOK {
		t.Errorf("plain HTTP /healthz answered 200 on an HTTPS listener")
	}
	// A client not trusting the CA fails the handshake.
	if _, err := (&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{}}}).Get(base + "/healthz"); err == nil {
		t.Errorf("a client without the CA reached the HTTPS listener")
	}

	for _, p := range []string{"/healthz", "/readyz"} {
		if code, body := basicGet(t, hc, "GET", base+p, "", "", nil); code != http.StatusOK {
			t.Errorf("%s without credentials: %d %s", p, code, body)
		}
	}
	for _, c := range []struct{ path, user, pass string }{
		{"/metrics", "", ""},
		{"/cleaner", "", ""},
		{"/ui/", "", ""},
		{"/metrics", sb.scramUser, "wrong"},
		{"/metrics", "nobody", sb.scramPassword},
		{"/metrics", sb.plainUser, sb.scramPassword},
	} {
		req, _ := http.NewRequest("GET", base+c.path, nil)
		if c.user != "" {
			req.SetBasicAuth(c.user, c.pass)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("%s as %q/%q: %d (WWW-Authenticate %q), want 401 with a Basic challenge", c.path, c.user, c.pass, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}

	// The SCRAM user has DESCRIBE on the cluster: metrics and the cleaner
	// status, not the profiler (ALTER).
	if code, body := basicGet(t, hc, "GET", base+"/metrics", sb.scramUser, sb.scramPassword, nil); code != http.StatusOK || !strings.Contains(body, "kvlog_") {
		t.Errorf("/metrics as %s: %d", sb.scramUser, code)
	}
	if code, _ := basicGet(t, hc, "GET", base+"/cleaner", sb.scramUser, sb.scramPassword, nil); code != http.StatusOK {
		t.Errorf("/cleaner as %s: %d", sb.scramUser, code)
	}
	if code, _ := basicGet(t, hc, "GET", base+"/debug/pprof/", sb.scramUser, sb.scramPassword, nil); code != http.StatusForbidden {
		t.Errorf("/debug/pprof/ as %s (no ALTER on the cluster): %d, want 403", sb.scramUser, code)
	}
	// The PLAIN user has no cluster ACL.
	if code, _ := basicGet(t, hc, "GET", base+"/metrics", sb.plainUser, sb.plainPassword, nil); code != http.StatusForbidden {
		t.Errorf("/metrics as %s (no DESCRIBE on the cluster): %d, want 403", sb.plainUser, code)
	}

	// The console acts as the user: alice may describe "open" only.
	code, body := basicGet(t, hc, "GET", base+"/ui/topics", sb.plainUser, sb.plainPassword, nil)
	if code != http.StatusOK || !strings.Contains(body, `href="/ui/topics/open"`) || strings.Contains(body, "secret") {
		t.Errorf("console topics as %s: %d, want open listed and secret hidden:\n%s", sb.plainUser, code, body)
	}
	if !strings.Contains(body, "Signed in as <strong>"+sb.plainUser) {
		t.Errorf("console does not name the user")
	}
	code, body = basicGet(t, hc, "GET", base+"/ui/topics/secret", sb.plainUser, sb.plainPassword, nil)
	if code != http.StatusForbidden || !strings.Contains(body, "TOPIC_AUTHORIZATION_FAILED") {
		t.Errorf("console topic secret as %s: %d, want 403 naming TOPIC_AUTHORIZATION_FAILED", sb.plainUser, code)
	}
	// The SCRAM user (no topic ACL) sees no topic at all.
	code, body = basicGet(t, hc, "GET", base+"/ui/topics", sb.scramUser, sb.scramPassword, nil)
	if code != http.StatusOK || strings.Contains(body, `href="/ui/topics/open"`) {
		t.Errorf("console topics as %s: %d, want no topic:\n%s", sb.scramUser, code, body)
	}
	// alice may not alter configs: the broker refuses, the form says so
	// and nothing changes.
	form := url.Values{"cfg.retention.ms": {"1234"}, "orig.retention.ms": {"604800000"}}
	code, body = basicGet(t, hc, "POST", base+"/ui/topics/open/configs", sb.plainUser, sb.plainPassword, form)
	if code != http.StatusBadRequest || !strings.Contains(body, "TOPIC_AUTHORIZATION_FAILED") {
		t.Errorf("config change as %s: %d, want 400 naming TOPIC_AUTHORIZATION_FAILED:\n%s", sb.plainUser, code, body)
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, "open")
	if err != nil {
		t.Fatal(err)
	}
	if rc, err := rcs.On("open", nil); err == nil {
		for _, c := range rc.Configs {
			if c.Key == "retention.ms" && c.Value != nil && *c.Value == "1234" {
				t.Errorf("retention.ms changed by a user without ALTER_CONFIGS")
			}
		}
	}
	// A form posted from another site is refused before reaching the
	// broker (the browser would send the credentials with it).
	req, _ := http.NewRequest("POST", base+"/ui/topics/open/configs", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	req.SetBasicAuth(sb.plainUser, sb.plainPassword)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST: %d, want 403", resp.StatusCode)
	}
}

// TestHTTPPprofSetting: /debug/pprof is served on a loopback HTTP listener
// by default (auto) and not when kvlog.http.pprof.enable=false; the
// console can be turned off.
func TestHTTPPprofSetting(t *testing.T) {
	on := testbroker.Start(t, testbroker.Options{Race: true})
	off := testbroker.Start(t, testbroker.Options{Race: true, Props: []string{"kvlog.http.pprof.enable=false", "kvlog.console.enable=false"}})
	hc := &http.Client{Timeout: 10 * time.Second}
	if code, _ := basicGet(t, hc, "GET", "http://"+on.HTTP+"/debug/pprof/", "", "", nil); code != http.StatusOK {
		t.Errorf("pprof on a loopback listener by default: %d, want 200", code)
	}
	if code, _ := basicGet(t, hc, "GET", "http://"+on.HTTP+"/ui/", "", "", nil); code != http.StatusOK {
		t.Errorf("console by default: %d, want 200", code)
	}
	if code, _ := basicGet(t, hc, "GET", "http://"+off.HTTP+"/debug/pprof/", "", "", nil); code != http.StatusNotFound {
		t.Errorf("pprof with kvlog.http.pprof.enable=false: %d, want 404", code)
	}
	if code, _ := basicGet(t, hc, "GET", "http://"+off.HTTP+"/ui/", "", "", nil); code != http.StatusNotFound {
		t.Errorf("console with kvlog.console.enable=false: %d, want 404", code)
	}
	if code, _ := basicGet(t, hc, "GET", "http://"+off.HTTP+"/metrics", "", "", nil); code != http.StatusOK {
		t.Errorf("/metrics: %d", code)
	}
}

// TestConsoleOverSASLSSL: with only a SASL_SSL listener to act as the
// user, the console reaches its own broker over TLS (the listener's
// certificate pinned, no trust store configured) with the SCRAM mechanism
// the user has credentials for.
func TestConsoleOverSASLSSL(t *testing.T) {
	ca := testbroker.NewCA(t, "kvlog console test CA")
	server := ca.Issue(t, pkix.Name{CommonName: "localhost"})
	addr, saslSSL := testbroker.FreeAddr(t), testbroker.FreeAddr(t)
	b := testbroker.Start(t, testbroker.Options{Race: true, Addr: addr,
		Listeners: fmt.Sprintf("PLAINTEXT://%s,SASL_SSL://%s", addr, saslSSL),
		Props: []string{
			"ssl.keystore.location=" + server.File,
			"listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-256",
			"kvlog.http.auth=basic",
		}})
	ctx := testbroker.Context(t, 60*time.Second)
	adm := b.Admin(t)
	if _, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: "carol", Mechanism: kadm.ScramSha256, Iterations: 4096, Password: "carol-secret"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, "orders"); err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 20 * time.Second}
	code, body := basicGet(t, hc, "GET", "http://"+b.HTTP+"/ui/topics/orders", "carol", "carol-secret", nil)
	if code != http.StatusOK || !strings.Contains(body, `data-partition="1"`) {
		t.Fatalf("console topic page over SASL_SSL: %d\n%s", code, body)
	}
	if !strings.Contains(body, "Signed in as <strong>carol") {
		t.Errorf("the console page does not name carol")
	}
	// A user whose password is right but who has no credentials for a
	// mechanism any SASL listener enables cannot be acted as: the page
	// says why instead of falling back to PLAINTEXT.
	if _, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: "dave", Mechanism: kadm.ScramSha512, Iterations: 4096, Password: "dave-secret"}}); err != nil {
		t.Fatal(err)
	}
	code, body = basicGet(t, hc, "GET", "http://"+b.HTTP+"/ui/topics", "dave", "dave-secret", nil)
	if code != http.StatusBadGateway || !strings.Contains(body, "no SASL listener") {
		t.Errorf("console as a SCRAM-SHA-512-only user with only SCRAM-SHA-256 enabled: %d\n%s", code, body)
	}
}

// TestHTTPCertificateReload: a key store file replaced in place is served
// from the next handshake on, without a restart; a broken replacement
// keeps the previous certificate.
func TestHTTPCertificateReload(t *testing.T) {
	ca := testbroker.NewCA(t, "kvlog http reload CA")
	first := ca.Issue(t, pkix.Name{CommonName: "localhost", SerialNumber: "first"})
	second := ca.Issue(t, pkix.Name{CommonName: "localhost", SerialNumber: "second"})
	store := filepath.Join(t.TempDir(), "http.pem")
	replace := func(from string) {
		t.Helper()
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		tmp := store + ".tmp"
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, store); err != nil {
			t.Fatal(err)
		}
	}
	replace(first.File)
	b := testbroker.Start(t, testbroker.Options{Race: true, Props: []string{"kvlog.http.ssl.keystore.location=" + store}})
	served := func() string {
		t.Helper()
		conn, err := tls.Dial("tcp", b.HTTP, ca.TLS(t, nil))
		if err != nil {
			t.Fatalf("TLS to the HTTP listener: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.SerialNumber
	}
	if got := served(); got != "first" {
		t.Fatalf("served %q, want the first certificate", got)
	}
	replace(second.File)
	deadline := time.Now().Add(20 * time.Second)
	for served() != "second" {
		if time.Now().After(deadline) {
			t.Fatal("the replaced certificate is not served within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A broken file: the second certificate stays.
	if err := os.WriteFile(store, []byte("not a PEM file"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := served(); got != "second" {
		t.Fatalf("after a broken key store: served %q, want the previous (second) certificate", got)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(b.Log(), "cannot be used"); {
		if time.Now().After(deadline) {
			t.Fatal("the broken key store is not logged")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHTTPBadKeyStore: a key store the HTTP listener cannot load stops
// kvlogd at start-up, naming the setting, rather than serving plain HTTP.
func TestHTTPBadKeyStore(t *testing.T) {
	code, out := testbroker.RunToExit(t, testbroker.Options{Race: true, Props: []string{
		"kvlog.http.ssl.keystore.location=" + filepath.Join(t.TempDir(), "missing.pem"),
	}}, 60*time.Second)
	if code != 1 || !strings.Contains(out, "kvlog.http.ssl") {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
}
