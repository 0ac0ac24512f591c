package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kvlog/kvlog/internal/testbroker"
)

// Client compatibility suites: other Kafka clients, driven as processes
// against the real kvlogd. kcat (librdkafka) and kafka-python (Debian
// python3-kafka) are installed by `make tools`; a suite skips, saying so,
// only when its tool is missing. Consumer groups are covered with the
// group coordinator, not here.

// codecIDs are the record-batch attribute values of each codec.
var codecIDs = map[string]int8{"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}

// keyed is one record as the tools print it; Value nil is a tombstone.
type keyed struct {
	Partition int32
	Offset    int64
	Key       string
	Value     *string
}

func strp(s string) *string { return &s }

// createCompacted creates a compacted topic with kadm.
func createCompacted(t *testing.T, p *testbroker.Broker, name string, partitions int32) {
	t.Helper()
	adm := p.Admin(t)
	resp, err := adm.CreateTopic(testbroker.Context(t, 30*time.Second), partitions, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, name)
	if err != nil || resp.Err != nil {
		t.Fatalf("create %s: %v %v", name, err, resp.Err)
	}
}

// checkCodecs checks that every batch stored in a topic's partitions is
// compressed with codec. (librdkafka 2.0.2 silently sends gzip, snappy and
// lz4 uncompressed unless the broker advertises Produce v0: see
// server/00_produce.go.)
func checkCodecs(t *testing.T, p *testbroker.Broker, topic string, partitions int32, codec string) {
	t.Helper()
	want := codecIDs[codec]
	n := 0
	for part := int32(0); part < partitions; part++ {
		ids := p.StoredCodecs(t, topic, part)
		for _, id := range ids {
			if id != want {
				t.Fatalf("%s-%d stores batches with codecs %v, want %s (%d)", topic, part, ids, codec, want)
			}
		}
		n += len(ids)
	}
	if n == 0 {
		t.Fatalf("%s: no batches stored", topic)
	}
}

// checkKeyed compares consumed records with what was produced: the same
// multiset of (key, value), each partition's offsets dense from 0, and
// the values of each key in production order.
func checkKeyed(t *testing.T, who string, got []keyed, produced []keyed) {
	t.Helper()
	if len(got) != len(produced) {
		t.Fatalf("%s: %d records, produced %d", who, len(got), len(produced))
	}
	sort.SliceStable(got, func(i, j int) bool {
		if got[i].Partition != got[j].Partition {
			return got[i].Partition < got[j].Partition
		}
		return got[i].Offset < got[j].Offset
	})
	next := map[int32]int64{}
	perKey := map[string][]string{}
	keyPart := map[string]int32{}
	for _, r := range got {
		if r.Offset != next[r.Partition] {
			t.Fatalf("%s: partition %d offset %d, want %d", who, r.Partition, r.Offset, next[r.Partition])
		}
		next[r.Partition]++
		if kp, ok := keyPart[r.Key]; ok && kp != r.Partition {
			t.Fatalf("%s: key %q in partitions %d and %d", who, r.Key, kp, r.Partition)
		}
		keyPart[r.Key] = r.Partition
		v := "<null>"
		if r.Value != nil {
			v = *r.Value
		}
		perKey[r.Key] = append(perKey[r.Key], v)
	}
	want := map[string][]string{}
	for _, r := range produced {
		v := "<null>"
		if r.Value != nil {
			v = *r.Value
		}
		want[r.Key] = append(want[r.Key], v)
	}
	for k, vs := range want {
		if strings.Join(vs, "\x00") != strings.Join(perKey[k], "\x00") {
			t.Fatalf("%s: key %q values %q, produced %q", who, k, perKey[k], vs)
		}
	}
}

// consumeKeyed reads a whole topic with franz-go (the reference client).
func consumeKeyed(t *testing.T, p *testbroker.Broker, topic string, n int) []keyed {
	t.Helper()
	var out []keyed
	for _, r := range consumeAll(t, p, topic, n) {
		k := keyed{Partition: r.Partition, Offset: r.Offset, Key: string(r.Key)}
		if r.Value != nil {
			k.Value = strp(string(r.Value))
		}
		out = append(out, k)
	}
	return out
}

func TestCompatKcat(t *testing.T) {
	kcat := testbroker.RequireKcat(t, "the librdkafka suite")
	p := startKvlogd(t)
	codecs := []string{"snappy", "gzip", "lz4", "zstd"}
	for _, c := range codecs {
		createCompacted(t, p, "kcat-"+c, 3)
	}

	t.Run("metadata", func(t *testing.T) {
		out := testbroker.RunTool(t, 30*time.Second, nil, kcat, "-b", p.Addr, "-L", "-J")
		var md struct {
			Brokers []struct {
				ID   int32  `json:"id"`
				Name string `json:"name"`
			} `json:"brokers"`
			Topics []struct {
				Topic      string `json:"topic"`
				Partitions []struct {
					Partition int32 `json:"partition"`
					Leader    int32 `json:"leader"`
					Replicas  []struct {
						ID int32 `json:"id"`
					} `json:"replicas"`
					ISRs []struct {
						ID int32 `json:"id"`
					} `json:"isrs"`
				} `json:"partitions"`
			} `json:"topics"`
		}
		if err := json.Unmarshal(out, &md); err != nil {
			t.Fatalf("kcat -L -J: %v\n%s", err, out)
		}
		if len(md.Brokers) != 1 || md.Brokers[0].ID != 0 || md.Brokers[0].Name != p.Addr {
			t.Fatalf("brokers %+v, want node 0 at %s", md.Brokers, p.Addr)
		}
		seen := map[string]bool{}
		for _, tp := range md.Topics {
			seen[tp.Topic] = true
			if !strings.HasPrefix(tp.Topic, "kcat-") {
				continue
			}
			if len(tp.Partitions) != 3 {
				t.Fatalf("topic %s: %d partitions", tp.Topic, len(tp.Partitions))
			}
			for _, pp := range tp.Partitions {
				if pp.Leader != 0 || len(pp.Replicas) != 1 || len(pp.ISRs) != 1 {
					t.Fatalf("topic %s partition %+v", tp.Topic, pp)
				}
			}
		}
		for _, c := range codecs {
			if !seen["kcat-"+c] {
				t.Fatalf("kcat-%s not listed: %s", c, out)
			}
		}
	})

	for _, c := range codecs {
		t.Run("produce-consume-"+c, func(t *testing.T) {
			topic := "kcat-" + c
			var in bytes.Buffer
			var produced []keyed
			for i := 0; i < 300; i++ {
				k, v := fmt.Sprintf("user-%d", i%40), fmt.Sprintf(`{"n":%d,"codec":"%s","pad":"%s"}`, i, c, strings.Repeat("x", i%50))
				fmt.Fprintf(&in, "%s\t%s\n", k, v)
				produced = append(produced, keyed{Key: k, Value: strp(v)})
			}
			// Idempotent, acks=all (librdkafka's default), keyed, compressed;
			// keys partitioned as Java and franz-go do.
			testbroker.RunTool(t, 60*time.Second, in.Bytes(), kcat, "-b", p.Addr, "-P", "-t", topic, "-K", "\t", "-z", c,
				"-X", "enable.idempotence=true", "-X", "linger.ms=20", "-X", "partitioner=murmur2_random")

			got := kcatConsume(t, kcat, p, topic)
			checkKeyed(t, "kcat", got, produced)
			checkKeyed(t, "franz-go", consumeKeyed(t, p, topic, len(produced)), produced)
			checkCodecs(t, p, topic, 3, c)
		})
	}

	t.Run("tombstones-and-franz-go-batches", func(t *testing.T) {
		// librdkafka reads idempotent zstd batches written by franz-go
		// and null values (tombstones) written by kcat -Z.
		createCompacted(t, p, "kcat-mixed", 2)
		cl := p.Client(t, kgo.DefaultProduceTopic("kcat-mixed"), kgo.ProducerBatchCompression(kgo.ZstdCompression()))
		var produced []keyed
		var rs []*kgo.Record
		for i := 0; i < 100; i++ {
			k, v := fmt.Sprintf("k%d", i%10), fmt.Sprintf("franz-%d", i)
			rs = append(rs, &kgo.Record{Key: []byte(k), Value: []byte(v)})
			produced = append(produced, keyed{Key: k, Value: strp(v)})
		}
		if err := cl.ProduceSync(testbroker.Context(t, 30*time.Second), rs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		testbroker.RunTool(t, 60*time.Second, []byte("k3\t\nk7\t\n"), kcat, "-b", p.Addr, "-P", "-t", "kcat-mixed", "-K", "\t", "-Z",
			"-X", "partitioner=murmur2_random") // Java's (and franz-go's) key partitioning
		produced = append(produced, keyed{Key: "k3"}, keyed{Key: "k7"})
		checkKeyed(t, "kcat", kcatConsume(t, kcat, p, "kcat-mixed"), produced)
	})
}

// kcatConsume reads a topic from the beginning to its end with kcat -e.
func kcatConsume(t *testing.T, kcat string, p *testbroker.Broker, topic string) []keyed {
	t.Helper()
	out := testbroker.RunTool(t, 60*time.Second, nil, kcat, "-b", p.Addr, "-C", "-t", topic, "-o", "beginning", "-e", "-J", "-q")
	var got []keyed
	for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var m struct {
			Partition int32   `json:"partition"`
			Offset    int64   `json:"offset"`
			Key       *string `json:"key"`
			Payload   *string `json:"payload"`
		}
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("kcat -J line %q: %v", line, err)
		}
		if m.Key == nil {
			t.Fatalf("kcat record without key: %s", line)
		}
		got = append(got, keyed{Partition: m.Partition, Offset: m.Offset, Key: *m.Key, Value: m.Payload})
	}
	return got
}

// kafkaPythonScript drives kafka-python: metadata, produce, consume. It
// prints one JSON document (metadata, produce) or one JSON line per record
// (consume) and exits non-zero on any error.
const kafkaPythonScript = `
import json, sys
from kafka import KafkaProducer, KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient
import kafka.codec as codec

mode, addr = sys.argv[1], sys.argv[2]
if mode == "codecs":
    print(json.dumps({"gzip": codec.has_gzip(), "snappy": codec.has_snappy(), "lz4": codec.has_lz4(), "zstd": codec.has_zstd()}))
elif mode == "metadata":
    topic = sys.argv[3]
    admin = KafkaAdminClient(bootstrap_servers=[addr], request_timeout_ms=20000)
    topics = admin.list_topics()
    described = admin.describe_topics([topic])
    cluster = admin.describe_cluster()
    admin.close()
    consumer = KafkaConsumer(bootstrap_servers=[addr], request_timeout_ms=20000)
    parts = sorted(consumer.partitions_for_topic(topic) or [])
    all_topics = sorted(consumer.topics())
    consumer.close()
    print(json.dumps({"admin_topics": sorted(topics), "described": [{"topic": d["topic"], "error": d["error_code"],
        "partitions": sorted(p["partition"] for p in d["partitions"]), "leaders": sorted(set(p["leader"] for p in d["partitions"]))} for d in described],
        "brokers": [{"id": b["node_id"], "host": b["host"], "port": b["port"]} for b in cluster["brokers"]],
        "controller": cluster["controller_id"], "cluster_id": cluster["cluster_id"],
        "consumer_partitions": parts, "consumer_topics": all_topics}))
elif mode == "produce":
    topic, comp, n = sys.argv[3], sys.argv[4], int(sys.argv[5])
    producer = KafkaProducer(bootstrap_servers=[addr], acks="all", compression_type=None if comp == "none" else comp,
        linger_ms=20, request_timeout_ms=20000, retries=3)
    futures = []
    for i in range(n):
        key = ("user-%d" % (i % 40)).encode()
        value = json.dumps({"n": i, "codec": comp, "pad": "y" * (i % 50)}).encode()
        futures.append(producer.send(topic, key=key, value=value))
    offsets = [f.get(timeout=30) for f in futures]
    producer.close()
    print(json.dumps({"acked": len(offsets)}))
elif mode == "consume":
    topic = sys.argv[3]
    consumer = KafkaConsumer(bootstrap_servers=[addr], group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", request_timeout_ms=20000)
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    end = consumer.end_offsets(tps)
    while any(consumer.position(tp) < end[tp] for tp in tps):
        for tp, records in consumer.poll(timeout_ms=1000).items():
            for r in records:
                print(json.dumps({"partition": r.partition, "offset": r.offset, "key": r.key.decode() if r.key is not None else None,
                    "value": r.value.decode() if r.value is not None else None}))
    consumer.close()
else:
    sys.exit("unknown mode " + mode)
`

func TestCompatKafkaPython(t *testing.T) {
	script := testbroker.RequireKafkaPython(t, "the kafka-python suite", kafkaPythonScript)
	py := func(t *testing.T, args ...string) []byte {
		t.Helper()
		return testbroker.RunTool(t, 90*time.Second, nil, testbroker.PythonWithKafka, append([]string{script}, args...)...)
	}
	var have map[string]bool
	if err := json.Unmarshal(py(t, "codecs", "-"), &have); err != nil {
		t.Fatal(err)
	}

	p := startKvlogd(t)
	codecs := []string{"none", "gzip", "snappy", "lz4", "zstd"}
	for _, c := range codecs {
		createCompacted(t, p, "py-"+c, 3)
	}

	t.Run("metadata", func(t *testing.T) {
		var md struct {
			AdminTopics []string `json:"admin_topics"`
			Described   []struct {
				Topic      string  `json:"topic"`
				Error      int16   `json:"error"`
				Partitions []int32 `json:"partitions"`
				Leaders    []int32 `json:"leaders"`
			} `json:"described"`
			Brokers []struct {
				ID   int32  `json:"id"`
				Host string `json:"host"`
				Port int    `json:"port"`
			} `json:"brokers"`
			Controller         int32    `json:"controller"`
			ClusterID          string   `json:"cluster_id"`
			ConsumerPartitions []int32  `json:"consumer_partitions"`
			ConsumerTopics     []string `json:"consumer_topics"`
		}
		out := py(t, "metadata", p.Addr, "py-gzip")
		if err := json.Unmarshal(out, &md); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if len(md.Brokers) != 1 || md.Brokers[0].ID != 0 || fmt.Sprintf("%s:%d", md.Brokers[0].Host, md.Brokers[0].Port) != p.Addr || md.Controller != 0 || md.ClusterID == "" {
			t.Fatalf("cluster: %s", out)
		}
		if len(md.Described) != 1 || md.Described[0].Error != 0 || fmt.Sprint(md.Described[0].Partitions) != "[0 1 2]" || fmt.Sprint(md.Described[0].Leaders) != "[0]" {
			t.Fatalf("describe_topics: %s", out)
		}
		if fmt.Sprint(md.ConsumerPartitions) != "[0 1 2]" {
			t.Fatalf("partitions_for_topic: %s", out)
		}
		for _, list := range [][]string{md.AdminTopics, md.ConsumerTopics} {
			if strings.Join(list, ",") != "py-gzip,py-lz4,py-none,py-snappy,py-zstd" {
				t.Fatalf("topic listing %v: %s", list, out)
			}
		}
	})

	for _, c := range codecs {
		t.Run("produce-consume-"+c, func(t *testing.T) {
			if c != "none" && !have[c] {
				t.Skipf("kafka-python has no %s codec library here (Debian python3-snappy / python3-lz4 / python3-zstandard; `make tools` installs them)", c)
			}
			topic := "py-" + c
			const n = 300
			var ack struct {
				Acked int `json:"acked"`
			}
			if err := json.Unmarshal(py(t, "produce", p.Addr, topic, c, fmt.Sprint(n)), &ack); err != nil || ack.Acked != n {
				t.Fatalf("produce: %v %+v", err, ack)
			}
			var produced []keyed
			for i := 0; i < n; i++ {
				produced = append(produced, keyed{Key: fmt.Sprintf("user-%d", i%40), Value: strp(fmt.Sprintf(`{"n": %d, "codec": "%s", "pad": "%s"}`, i, c, strings.Repeat("y", i%50)))})
			}
			var got []keyed
			for _, line := range bytes.Split(bytes.TrimSpace(py(t, "consume", p.Addr, topic)), []byte("\n")) {
				var m struct {
					Partition int32   `json:"partition"`
					Offset    int64   `json:"offset"`
					Key       *string `json:"key"`
					Value     *string `json:"value"`
				}
				if err := json.Unmarshal(line, &m); err != nil || m.Key == nil {
					t.Fatalf("consume line %q: %v", line, err)
				}
				got = append(got, keyed{Partition: m.Partition, Offset: m.Offset, Key: *m.Key, Value: m.Value})
			}
			checkKeyed(t, "kafka-python", got, produced)
			checkKeyed(t, "franz-go", consumeKeyed(t, p, topic, n), produced)
			checkCodecs(t, p, topic, 3, c)
		})
	}
}
