package goclients

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// requireKafkajs returns node's path, or skips the test saying what is
// missing: Node.js, or kafkajs in kafkajs/node_modules.
func requireKafkajs(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed (`make tools-kafkajs` installs Debian's nodejs): skipping the kafkajs suite")
	}
	if _, err := os.Stat("kafkajs/node_modules/kafkajs/package.json"); err != nil {
		t.Skip("kafkajs is not installed in compat/goclients/kafkajs (`make tools-kafkajs` runs npm ci there): skipping the kafkajs suite")
	}
	return node
}

// kafkajsResult is the line kafkajs.mjs prints.
type kafkajsResult struct {
	OK           bool   `json:"ok"`
	Step         string `json:"step"`
	Error        string `json:"error"`
	Type         string `json:"type"` // a KafkaJSProtocolError's error name
	Message      string `json:"message"`
	Created      bool   `json:"created"`
	CreatedAgain bool   `json:"createdAgain"`
	Listed       bool   `json:"listed"`
	Partitions   int    `json:"partitions"`
	Produced     []struct {
		Partition int32 `json:"partition"`
		ErrorCode int16 `json:"errorCode"`
	} `json:"produced"`
	Records []struct {
		Key       string `json:"key"`
		Value     string `json:"value"`
		Tombstone bool   `json:"tombstone"`
		Partition int32  `json:"partition"`
		Offset    int64  `json:"offset"`
	} `json:"records"`
}

// runKafkajs runs kafkajs.mjs with cfg and returns its result; what
// kafkajs logged (warnings and errors) is logged by the test.
func runKafkajs(t *testing.T, node string, cfg map[string]any) kafkajsResult {
	t.Helper()
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "kafkajs/kafkajs.mjs")
	cmd.Env = append(os.Environ(), "KVLOG_KAFKAJS="+string(js))
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if stderr.Len() > 0 {
		t.Logf("kafkajs logged:\n%s", stderr.String())
	}
	if ctx.Err() != nil || err != nil {
		t.Fatalf("node kafkajs/kafkajs.mjs: %v (context: %v); it printed %q", err, ctx.Err(), stdout.String())
	}
	var r kafkajsResult
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("kafkajs printed %q: %v", stdout.String(), err)
	}
	return r
}

// TestKafkajsSecure: kafkajs over SASL_SSL (SCRAM-SHA-512) and over SSL
// with a client certificate creates and lists topics (admin), produces a
// keyed batch with a tombstone (idempotent, acks -1), reads it back in a
// consumer group committing each offset; a wrong password gives
// KafkaJSSASLAuthenticationError, a mechanism the listener does not enable
// a KafkaJSProtocolError UNSUPPORTED_SASL_MECHANISM, no client certificate
// a connection error, and the broker keeps serving.
func TestKafkajsSecure(t *testing.T) {
	node := requireKafkajs(t)
	sb := startSecureBroker(t)
	ca := string(sb.ca.CertPEM)
	sasl := func(password string) map[string]any {
		return map[string]any{"mechanism": "scram-sha-512", "username": scramUser, "password": password}
	}
	for _, run := range []struct {
		name, addr string
		ssl        map[string]any
		sasl       map[string]any
	}{
		{"SASL_SSL SCRAM-SHA-512", sb.saslSSL, map[string]any{"ca": []string{ca}}, sasl(scramPassword)},
		{"SSL mTLS", sb.ssl, map[string]any{"ca": []string{ca}, "cert": string(sb.clientCert.CertPEM), "key": string(sb.clientCert.KeyPEM)}, nil},
	} {
		t.Run(run.name, func(t *testing.T) {
			prefix := "kafkajs-" + strings.ToLower(strings.Fields(run.name)[0])
			topic, group := prefix+"-keyed", prefix+"-group"
			want := keyedBatch(50)
			var recs []map[string]any
			for _, r := range want {
				recs = append(recs, map[string]any{"key": r.Key, "value": r.Value, "tombstone": r.Tombstone})
			}
			cfg := map[string]any{"brokers": []string{run.addr}, "ssl": run.ssl, "case": "roundtrip", "topic": topic, "group": group, "records": recs}
			if run.sasl != nil {
				cfg["sasl"] = run.sasl
			}
			r := runKafkajs(t, node, cfg)
			if !r.OK {
				t.Fatalf("kafkajs %s failed: %s: %s", r.Step, r.Error, r.Message)
			}
			if !r.Created || r.CreatedAgain || !r.Listed || r.Partitions != 3 {
				t.Fatalf("kafkajs admin: created %v, created again %v, listed %v, %d partitions", r.Created, r.CreatedAgain, r.Listed, r.Partitions)
			}
			for _, p := range r.Produced {
				if p.ErrorCode != 0 {
					t.Fatalf("kafkajs produce: partition %d error %d", p.Partition, p.ErrorCode)
				}
			}
			var got []record
			for _, g := range r.Records {
				got = append(got, record{Key: g.Key, Value: g.Value, Tombstone: g.Tombstone, Partition: g.Partition, Offset: g.Offset})
			}
			checkRecords(t, "kafkajs consumer group", got, want)
			checkTopic(t, sb, topic, want)
			checkCommitted(t, sb, group, topic)
		})
	}
	t.Run("wrong password", func(t *testing.T) {
		r := runKafkajs(t, node, map[string]any{"brokers": []string{sb.saslSSL}, "ssl": map[string]any{"ca": []string{ca}}, "sasl": sasl("wrong"), "case": "auth-refused"})
		if r.OK || r.Error != "KafkaJSSASLAuthenticationError" {
			t.Fatalf("got %+v, want KafkaJSSASLAuthenticationError", r)
		}
		t.Logf("kafkajs: %s: %s", r.Error, r.Message)
	})
	t.Run("mechanism not enabled", func(t *testing.T) {
		m := sasl(scramPassword)
		m["mechanism"] = "scram-sha-256"
		r := runKafkajs(t, node, map[string]any{"brokers": []string{sb.saslSSL}, "ssl": map[string]any{"ca": []string{ca}}, "sasl": m, "case": "auth-refused"})
		if r.OK || r.Error != "KafkaJSProtocolError" || r.Type != "UNSUPPORTED_SASL_MECHANISM" {
			t.Fatalf("got %+v, want KafkaJSProtocolError UNSUPPORTED_SASL_MECHANISM", r)
		}
		t.Logf("kafkajs: %s %s: %s", r.Error, r.Type, r.Message)
	})
	t.Run("SSL without a client certificate", func(t *testing.T) {
		r := runKafkajs(t, node, map[string]any{"brokers": []string{sb.ssl}, "ssl": map[string]any{"ca": []string{ca}}, "case": "auth-refused"})
		if r.OK || !strings.Contains(r.Message, "certificate") {
			t.Fatalf("got %+v, want a connection error naming the certificate", r)
		}
		t.Logf("kafkajs: %s: %s", r.Error, r.Message)
	})
	checkHealthy(t, sb)
}
