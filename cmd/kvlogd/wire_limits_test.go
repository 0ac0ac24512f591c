package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/internal/testbroker"
	"github.com/kvlog/kvlog/server/metastore"
)

// Hostile and unusual requests against the real kvlogd, byte for byte:
// every one is answered as Apache Kafka answers it, or refused, and the
// broker keeps serving.

// rawConn is a plain TCP connection speaking Kafka frames.
type rawConn struct {
	t  *testing.T
	nc net.Conn
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc}
}

// roundTrip writes a frame (size prefix added) and reads one response
// frame, returning it without its size prefix.
func (c *rawConn) roundTrip(frame []byte) []byte {
	c.t.Helper()
	c.nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.nc.Write(binary.BigEndian.AppendUint32(nil, uint32(len(frame)))); err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.nc.Write(frame); err != nil {
		c.t.Fatal(err)
	}
	var size [4]byte
	if _, err := io.ReadFull(c.nc, size[:]); err != nil {
		c.t.Fatalf("reading the response: %v", err)
	}
	resp := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(c.nc, resp); err != nil {
		c.t.Fatalf("reading the response: %v", err)
	}
	return resp
}

// TestApiVersionsNewerThanServed: an ApiVersions v4 (as librdkafka and the
// Java client send first) is answered as Kafka does: correlation id, a v0
// body with UNSUPPORTED_VERSION and ApiVersions' own range, the connection
// left open for the retry at v3; and it is not a bad request.
func TestApiVersionsNewerThanServed(t *testing.T) {
	p := startKvlogd(t)
	c := dialRaw(t, p.Addr)
	// Header v2: key 18, version 4, correlation 7, client id "probe", no
	// tags; body v4 (flexible): software name and version, no tags.
	v4 := []byte{0, 18, 0, 4, 0, 0, 0, 7, 0, 5, 'p', 'r', 'o', 'b', 'e', 0,
		4, 'k', 'c', 'a', 6, '1', '.', '0', '.', '0', 0}
	got := c.roundTrip(v4)
	want := []byte{0, 0, 0, 7, // correlation id; no header tags
		0, 35, // UNSUPPORTED_VERSION
		0, 0, 0, 1, // one ApiKeys entry (v0: int32 array length)
		0, 18, 0, 0, 0, 3, // ApiVersions 0-3; v0 has no throttle time
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("ApiVersions v4 answered\n% x\nwant\n% x", got, want)
	}
	// The client retries at v3 on the same connection.
	v3 := kmsg.NewPtrApiVersionsRequest()
	v3.Version = 3
	v3.ClientSoftwareName, v3.ClientSoftwareVersion = "probe", "1.0.0"
	frame := append([]byte{0, 18, 0, 3, 0, 0, 0, 8, 0, 5, 'p', 'r', 'o', 'b', 'e', 0}, v3.AppendTo(nil)...)
	body := c.roundTrip(frame)
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = 3
	if binary.BigEndian.Uint32(body) != 8 {
		t.Fatalf("correlation id %d", binary.BigEndian.Uint32(body))
	}
	if err := resp.ReadFrom(body[4:]); err != nil || resp.ErrorCode != 0 || len(resp.ApiKeys) < 10 {
		t.Fatalf("ApiVersions v3: %v, error %d, %d keys", err, resp.ErrorCode, len(resp.ApiKeys))
	}
	if n, _ := cleanerMetric(t, p, "kvlog_bad_requests_total"); n != 0 {
		t.Fatalf("kvlog_bad_requests_total = %v after a v4 probe, want 0", n)
	}
	if n, _ := cleanerMetric(t, p, "kvlog_api_versions_unsupported_total"); n != 1 {
		t.Fatalf("kvlog_api_versions_unsupported_total = %v, want 1", n)
	}
}

// TestProduceNonZeroBaseOffset: a client batch must start at offset 0
// (Kafka: INVALID_RECORD); the log is untouched.
func TestProduceNonZeroBaseOffset(t *testing.T) {
	p := startKvlogd(t)
	ctx := testbroker.Context(t, 60*time.Second)
	cl := p.Client(t)
	if _, err := p.Admin(t).CreateTopic(ctx, 1, 1, nil, "based"); err != nil {
		t.Fatal(err)
	}
	bl := record.Builder{MaxTimestamp: -1, LastOffsetDelta: -1, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1,
		BaseTimestamp: time.Now().UnixMilli()}
	bl.Add(record.Record{Key: []byte("k"), Value: []byte("v")})
	batch, err := bl.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	produce := func(base int64) int16 {
		b := bytes.Clone(batch)
		binary.BigEndian.PutUint64(b, uint64(base)) // outside the CRC
		req := kmsg.NewPtrProduceRequest()
		req.Acks, req.TimeoutMillis = -1, 10000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = "based"
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = b
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics[0].Partitions[0].ErrorCode
	}
	if code := produce(5); code != kerr.InvalidRecord.Code {
		t.Fatalf("base offset 5: error %d, want INVALID_RECORD", code)
	}
	if code := produce(0); code != 0 {
		t.Fatalf("base offset 0: error %d", code)
	}
	if recs := consumeAll(t, p, "based", 1); len(recs) != 1 || recs[0].Offset != 0 {
		t.Fatalf("consumed %v", recs)
	}
}

// TestSyncGroupTooLarge: a leader's assignment too large for
// __consumer_offsets (message.max.bytes) is answered as Kafka does,
// UNKNOWN_SERVER_ERROR, not the retriable COORDINATOR_NOT_AVAILABLE that
// makes clients loop.
func TestSyncGroupTooLarge(t *testing.T) {
	p := startKvlogd(t)
	ctx := testbroker.Context(t, 60*time.Second)
	cl := p.Client(t)
	join := func(member string) *kmsg.JoinGroupResponse {
		req := kmsg.NewPtrJoinGroupRequest()
		req.Group, req.MemberID, req.ProtocolType = "big", member, "consumer"
		req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = 10000, 10000
		pr := kmsg.NewJoinGroupRequestProtocol()
		pr.Name, pr.Metadata = "range", []byte{0, 1}
		req.Protocols = append(req.Protocols, pr)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	jr := join("")
	if jr.ErrorCode == kerr.MemberIDRequired.Code {
		jr = join(jr.MemberID)
	}
	if jr.ErrorCode != 0 {
		t.Fatalf("JoinGroup: %v", kerr.ErrorForCode(jr.ErrorCode))
	}
	sync := func(assignment []byte) int16 {
		req := kmsg.NewPtrSyncGroupRequest()
		req.Group, req.MemberID, req.Generation = "big", jr.MemberID, jr.Generation
		a := kmsg.NewSyncGroupRequestGroupAssignment()
		a.MemberID, a.MemberAssignment = jr.MemberID, assignment
		req.GroupAssignment = append(req.GroupAssignment, a)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp.ErrorCode
	}
	if code := sync(make([]byte, 2<<20)); code != kerr.UnknownServerError.Code {
		t.Fatalf("SyncGroup with a 2 MiB assignment: %v, want UNKNOWN_SERVER_ERROR", kerr.ErrorForCode(code))
	}
}

// runKvlogd runs kvlogd with a config file until it exits (bounded) and
// returns its exit error and output.
func runKvlogd(t *testing.T, props ...string) (error, string) {
	t.Helper()
	bin, err := testbroker.Binary(false)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "server.properties")
	props = append([]string{"listeners=PLAINTEXT://" + testbroker.FreeAddr(t), "log.dirs=" + filepath.Join(dir, "data"), "kvlog.http.listener="}, props...)
	if err := os.WriteFile(cfg, []byte(strings.Join(props, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--config", cfg).CombinedOutput()
	return err, string(out)
}

// TestSecurityConfigRefused: a server.properties asking for security kvlog
// does not implement (a custom authorizer class, Kerberos, a BCFKS key store, ZooKeeper
// TLS, delegation tokens) does not start a broker less protected than
// configured; the error names the setting and why.
func TestSecurityConfigRefused(t *testing.T) {
	for name, c := range map[string]struct {
		props []string
		names []string
	}{
		"authorizer": {[]string{"authorizer.class.name=com.example.CustomAuthorizer", "super.users=User:admin"},
			[]string{"authorizer.class.name", "kvlog implements Kafka's ACL authorizer only"}},
		"kerberos":       {[]string{"sasl.kerberos.service.name=kafka"}, []string{"sasl.kerberos.service.name", "not implemented"}},
		"gssapi":         {[]string{"listeners=SASL_PLAINTEXT://127.0.0.1:0"}, []string{"SASL_PLAINTEXT", "GSSAPI", "sasl.enabled.mechanisms"}},
		"oauth jaas":     {[]string{"listener.name.sasl_ssl.oauthbearer.sasl.jaas.config=x required;"}, []string{"OAUTHBEARER is not implemented"}},
		"keystore type":  {[]string{"listeners=CLIENT://127.0.0.1:0", "listener.security.protocol.map=CLIENT:SSL", "ssl.keystore.type=BCFKS", "ssl.keystore.location=/etc/kafka/ks.bcfks"}, []string{"ssl.keystore.type", "BCFKS"}},
		"no keystore":    {[]string{"listeners=CLIENT://127.0.0.1:0", "listener.security.protocol.map=CLIENT:SSL"}, []string{"CLIENT", "no key store"}},
		"zk tls":         {[]string{"zookeeper.ssl.client.enable=true"}, []string{"zookeeper.ssl.client.enable", "ZooKeeper"}},
		"tokens":         {[]string{"delegation.token.secret.key=x"}, []string{"delegation.token.secret.key"}},
		"no plain users": {[]string{"listeners=SASL_PLAINTEXT://127.0.0.1:0", "sasl.enabled.mechanisms=PLAIN"}, []string{"PLAIN", "no user is configured"}},
	} {
		t.Run(name, func(t *testing.T) {
			err, out := runKvlogd(t, c.props...)
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("kvlogd did not fail: %v\n%s", err, out)
			}
			for _, n := range c.names {
				if !strings.Contains(out, n) {
					t.Errorf("the error does not name %q:\n%s", n, out)
				}
			}
		})
	}
	// Kafka's stock map (naming SSL and SASL protocols no listener uses)
	// and empty security keys still start.
	err, out := runKvlogd(t, "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
		"authorizer.class.name=", "log.dirs=/dev/null/not-a-dir")
	if strings.Contains(out, "not implemented") {
		t.Fatalf("refused a configuration without security: %v\n%s", err, out)
	}
}

// TestDedupeBufferBounds: log.cleaner.dedupe.buffer.size is bounded (2 GiB
// per cleaner thread) for dynamic changes as for the file; 1 GiB is
// accepted and the broker keeps serving; and a bad value already in the
// metadata store (written by an older broker) does not stop start-up.
func TestDedupeBufferBounds(t *testing.T) {
	p := testbroker.Start(t, testbroker.Options{Race: true, Props: []string{"log.cleaner.dedupe.buffer.size=4194304"}})
	ctx := testbroker.Context(t, 120*time.Second)
	cl := p.Client(t)
	alter := func(value string) int16 {
		req := kmsg.NewPtrIncrementalAlterConfigsRequest()
		r := kmsg.NewIncrementalAlterConfigsRequestResource()
		r.ResourceType, r.ResourceName = kmsg.ConfigResourceTypeBroker, "0"
		c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		c.Name, c.Value = "log.cleaner.dedupe.buffer.size", kmsg.StringPtr(value)
		r.Configs = append(r.Configs, c)
		req.Resources = append(req.Resources, r)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Resources[0].ErrorCode
	}
	for _, v := range []string{"9223372036854775807", "2147483648", "-1"} {
		if code := alter(v); code != kerr.InvalidConfig.Code {
			t.Fatalf("dedupe buffer %s: %v, want INVALID_CONFIG", v, kerr.ErrorForCode(code))
		}
	}
	if code := alter("1073741824"); code != 0 {
		t.Fatalf("1 GiB: %v", kerr.ErrorForCode(code))
	}
	waitFor(t, 30*time.Second, "the cleaner thread to run with a 1 GiB map", func() bool {
		st := cleanerStatusOf(t, p)
		return st.Config.DedupeBufferSize == 1<<30 && st.Threads == 1 && len(st.ThreadErrors) == 0
	})
	if code := alter("4194304"); code != 0 {
		t.Fatalf("back to 4 MiB: %v", kerr.ErrorForCode(code))
	}
	produceKeyed(t, p, "alive", 0, 5)

	// A value no broker accepts any more, in the store.
	p.Stop()
	ms, err := metastore.OpenLocal(p.DataDir, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := ms.SetBrokerConfigs("0", map[string]string{"log.cleaner.dedupe.buffer.size": "9223372036854775807", "log.cleaner.backoff.ms": "1000"}); err != nil {
		t.Fatal(err)
	}
	ms.Close()
	p.Restart()
	if !strings.Contains(p.Log(), "ignoring an invalid dynamic broker config") {
		t.Fatalf("no log of the ignored config:\n%s", p.Log())
	}
	st := cleanerStatusOf(t, p)
	if st.Config.DedupeBufferSize != 4194304 || st.Config.BackoffMs != 1000 {
		t.Fatalf("after restart the cleaner runs with %+v; want the static dedupe buffer and the stored backoff", st.Config)
	}
	produceKeyed(t, p, "alive", 5, 5)
	if n := len(consumeAll(t, p, "alive", 10)); n != 10 {
		t.Fatalf("%d records", n)
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var _ = kgo.SeedBrokers
