package javacompat

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvlog/kvlog/internal/testbroker"
)

// The records of produce-codecs and produce-acks1 (ProducerCases.Model in
// Java): 600 records over 40 keys, every 9th a tombstone, a "seq" and a
// "tag" header on each.
const modelN = 600

func modelKey(i int) string { return fmt.Sprintf("k%d", i%40) }

func modelValue(tag string, i int) *string {
	if i%9 == 8 {
		return nil
	}
	s := fmt.Sprintf("%s-%d-%s", tag, i, strings.Repeat("x", i%50))
	return &s
}

// checkModel reads a produce-codecs/acks1 topic back with franz-go: per
// key the values and seq headers in production order, the tag header.
func checkModel(t *testing.T, b *testbroker.Broker, topic, tag string) {
	t.Helper()
	want := map[string][]string{}
	for i := 0; i < modelN; i++ {
		v := "<tombstone>"
		if p := modelValue(tag, i); p != nil {
			v = *p
		}
		want[modelKey(i)] = append(want[modelKey(i)], fmt.Sprintf("%d:%s", i, v))
	}
	rs := b.ReadTopic(t, topic)
	sort.SliceStable(rs, func(i, j int) bool {
		if rs[i].Partition != rs[j].Partition {
			return rs[i].Partition < rs[j].Partition
		}
		return rs[i].Offset < rs[j].Offset
	})
	got := map[string][]string{}
	for _, r := range rs {
		h := map[string]string{}
		for _, x := range r.Headers {
			h[x.Key] = string(x.Value)
		}
		if h["tag"] != tag {
			t.Fatalf("%s-%d@%d: tag header %q, want %q", topic, r.Partition, r.Offset, h["tag"], tag)
		}
		v := "<tombstone>"
		if r.Value != nil {
			v = string(r.Value)
		}
		got[string(r.Key)] = append(got[string(r.Key)], h["seq"]+":"+v)
	}
	if len(rs) != modelN {
		t.Fatalf("%s: franz-go read %d records, Java produced %d", topic, len(rs), modelN)
	}
	for k, vs := range want {
		if strings.Join(vs, "|") != strings.Join(got[k], "|") {
			t.Fatalf("%s: key %s read back as %q, produced %q", topic, k, got[k], vs)
		}
	}
}

var codecIDs = map[string]int8{"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}

// metric reads one unlabelled counter from the broker's /metrics.
func metric(t *testing.T, b *testbroker.Broker, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + b.HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("metric %s not served", name)
	return 0
}

// casesBoth run with kafka-clients 4.x and 3.x; cases4 with 4.x only.
var (
	casesBoth = []string{
		"produce-codecs=none", "produce-codecs=gzip", "produce-codecs=snappy", "produce-codecs=lz4", "produce-codecs=zstd",
		"produce-acks1", "group-assignors=range", "state-rebuild", "admin-topics", "admin-offsets", "admin-groups",
		"transactions",
	}
	cases4 = []string{
		"produce-large", "group-assignors=cooperative-sticky", "state-rebuild=read_committed", "offsets-for-times",
		"admin-configs", "admin-cluster", "unsupported-consumer-protocol", "admin-scram",
		"unsupported-reassignment", "unsupported-elect-leaders",
	}
)

// TestJavaClients runs Apache Kafka's Java clients against one kvlogd:
// every case in one JVM per client version, then the cases that SIGKILL
// and restart the broker.
func TestJavaClients(t *testing.T) {
	cp4, cp3 := requireJava(t)
	b := testbroker.Start(t, testbroker.Options{Race: true, Props: []string{
		// The checks read every record the cases wrote to compacted
		// topics, minutes later on a loaded machine: the idle roll would
		// have compacted them to one record per key by then.
		"kvlog.cleaner.idle.roll.ms=0",
	}})
	for _, v := range []struct {
		name, cp, prefix string
		cases            []string
	}{
		{"kafka-clients-4", cp4, "j4", append(append([]string(nil), casesBoth...), cases4...)},
		{"kafka-clients-3", cp3, "j3", casesBoth},
	} {
		t.Run(v.name, func(t *testing.T) {
			res := runCases(t, v.cp, b.Addr, v.prefix, 8*time.Minute, v.cases...)
			for _, c := range v.cases {
				t.Run(c, func(t *testing.T) {
					data := check(t, res, c)
					name, arg, _ := strings.Cut(c, "=")
					switch name {
					case "produce-codecs":
						checkModel(t, b, v.prefix+"-codec-"+arg, arg)
						for p := int32(0); p < 3; p++ {
							for _, id := range b.StoredCodecs(t, v.prefix+"-codec-"+arg, p) {
								if id != codecIDs[arg] {
									t.Fatalf("%s-codec-%s-%d stores a batch with codec %d, want %d", v.prefix, arg, p, id, codecIDs[arg])
								}
							}
						}
					case "produce-acks1":
						checkModel(t, b, v.prefix+"-acks1", "acks1")
					case "admin-offsets":
						// What the Java client saw, confirmed with franz-go.
						var d struct {
							Offsets map[string]string `json:"offsets"`
						}
						if err := json.Unmarshal(data, &d); err != nil {
							t.Fatal(err)
						}
						lo, err := b.Admin(t).ListMaxTimestampOffsets(testbroker.Context(t, 30*time.Second), v.prefix+"-admin-offsets")
						if err != nil {
							t.Fatal(err)
						}
						if o, _ := lo.Lookup(v.prefix+"-admin-offsets", 0); o.Offset != 70 || d.Offsets["max"] != fmt.Sprintf("70@%d", o.Timestamp) {
							t.Fatalf("max timestamp: franz-go %+v, Java %q", o, d.Offsets["max"])
						}
					}
				})
			}
		})
	}

	// Kafka 4 clients open with ApiVersions v4; kvlog answers it as Kafka
	// does for a version it does not serve (v0 body, UNSUPPORTED_VERSION,
	// ApiVersions' own range) and the client retries at v3. That answer is
	// negotiation, not a bad request.
	t.Run("apiversions-v4-probe-not-a-bad-request", func(t *testing.T) {
		if n := metric(t, b, "kvlog_bad_requests_total"); n != 0 {
			t.Fatalf("Java client: kvlog_bad_requests_total = %v after the Java clients; the ApiVersions v4 probe must not count as a bad request", n)
		}
		if n := metric(t, b, "kvlog_api_versions_unsupported_total"); n == 0 {
			t.Fatalf("Java client: kvlog_api_versions_unsupported_total = 0; the v4 probe was expected to be answered with UNSUPPORTED_VERSION")
		}
	})

	t.Run("sigkill-broker-resume-group", func(t *testing.T) {
		res := runCases(t, cp4, b.Addr, "j4", 3*time.Minute, "commit-before-restart")
		check(t, res, "commit-before-restart")
		b.Kill()
		b.Restart()
		res = runCases(t, cp4, b.Addr, "j4", 3*time.Minute, "resume-after-restart")
		check(t, res, "resume-after-restart")
	})

	t.Run("sigkill-broker-idempotent-produce", func(t *testing.T) {
		testProduceKill(t, b, cp4)
	})
}

// TestJavaSecurityAdmin: the AdminClient's ACL and client-quota APIs
// (createAcls, describeAcls with ANY, MATCH and PREFIXED filters,
// deleteAcls, an invalid cluster ACL; alterClientQuotas on a client id, a
// user and the default user, describeClientQuotas with containsOnly and
// default filters, an unknown key, removal; a controller_mutation_rate
// quota refusing a createTopics with ThrottlingQuotaExceededException)
// with kafka-clients 4.x and 3.x, against a broker running the ACL
// authorizer whose PLAINTEXT principal, User:ANONYMOUS, is a super user.
func TestJavaSecurityAdmin(t *testing.T) {
	cp4, cp3 := requireJava(t)
	b := testbroker.Start(t, testbroker.Options{Race: true, Props: []string{
		"authorizer.class.name=kafka.security.authorizer.AclAuthorizer", "super.users=User:ANONYMOUS"}})
	cases := []string{"admin-acls", "admin-quotas", "admin-mutation-quota"}
	for _, v := range []struct{ name, cp, prefix string }{{"kafka-clients-4", cp4, "j4"}, {"kafka-clients-3", cp3, "j3"}} {
		t.Run(v.name, func(t *testing.T) {
			res := runCases(t, v.cp, b.Addr, v.prefix, 3*time.Minute, cases...)
			for _, c := range cases {
				t.Run(c, func(t *testing.T) { check(t, res, c) })
			}
		})
	}
}

// testProduceKill: an idempotent producer with five requests in flight
// keeps sending while the broker is SIGKILLed and restarted; every
// acknowledged record is in the log exactly once, in order per key.
func testProduceKill(t *testing.T, b *testbroker.Broker, cp string) {
	r := startJava(t, cp, "kvlog.compat.Main", b.Addr, "j4", "produce-kill")
	if _, ok := r.waitLine(2*time.Minute, func(l string) bool { return l == "PROGRESS acked 3000" }); !ok {
		res := r.wait(time.Minute)
		t.Fatalf("produce-kill never acknowledged 3000 records: %+v", res)
	}
	b.Kill()
	b.Restart()
	if _, err := fmt.Fprintln(r.stdin, "restarted"); err != nil {
		t.Fatal(err)
	}
	r.stdin.Close()
	if l, ok := r.waitLine(time.Minute, func(l string) bool { return strings.HasPrefix(l, "PROGRESS restart seen") }); ok {
		t.Log(l) // records were still unacknowledged when the broker died
	}
	res := r.wait(3 * time.Minute)
	if len(res) != 1 {
		t.Fatalf("produce-kill: results %+v", res)
	}
	data := check(t, map[string]result{"produce-kill": res[0]}, "produce-kill")
	var d struct {
		Topic  string             `json:"topic"`
		Sent   int64              `json:"sent"`
		Acked  map[string][]int64 `json:"acked"`
		Failed int64              `json:"failed"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	got := map[string][]int64{}
	for _, rec := range b.ReadTopic(t, d.Topic) {
		k, s, ok := strings.Cut(string(rec.Value), ":")
		seq, err := strconv.ParseInt(s, 10, 64)
		if !ok || err != nil || k != string(rec.Key) {
			t.Fatalf("%s-%d@%d: record %q=%q", d.Topic, rec.Partition, rec.Offset, rec.Key, rec.Value)
		}
		got[k] = append(got[k], seq) // a key is in one partition: offset order
	}
	acked := 0
	for k, seqs := range d.Acked {
		acked += len(seqs)
		in := map[int64]bool{}
		for i, s := range got[k] {
			if i > 0 && s <= got[k][i-1] {
				t.Fatalf("key %s: seq %d after %d in the log (duplicate or reordered)", k, s, got[k][i-1])
			}
			in[s] = true
		}
		for _, s := range seqs {
			if !in[s] {
				t.Fatalf("key %s: acknowledged seq %d is not in the log", k, s)
			}
		}
		if d.Failed == 0 && len(got[k]) != len(seqs) {
			t.Fatalf("key %s: %d records in the log, %d acknowledged and none failed", k, len(got[k]), len(seqs))
		}
	}
	t.Logf("produce-kill: %d sent, %d acknowledged, %d failed, all acknowledged records read back once and in order", d.Sent, acked, d.Failed)
}
