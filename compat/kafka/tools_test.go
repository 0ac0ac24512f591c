package kafka

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kvlog/kvlog/internal/testbroker"
	"github.com/kvlog/kvlog/internal/testcluster"
)

// toolBroker starts the kvlogd the tool cases share: no initial rebalance
// delay (the console consumer's group joins at once) and a single
// __consumer_offsets partition (short listings).
func toolBroker(t *testing.T) *testbroker.Broker {
	t.Helper()
	classpath(t) // skip before building anything when Kafka's jars are missing
	return testbroker.Start(t, testbroker.Options{LogLevel: "warn", Props: []string{
		"group.initial.rebalance.delay.ms=0",
		"offsets.topic.num.partitions=1",
	}})
}

// TestKafkaTools drives Apache Kafka's command-line tools against one
// kvlogd, case by case; each case checks the tool's exit code and output.
func TestKafkaTools(t *testing.T) {
	b := toolBroker(t)
	bs := []string{"--bootstrap-server", b.Addr}
	args := func(more ...string) []string { return append(append([]string(nil), bs...), more...) }
	topics := func(api string, more ...string) string { return ok(t, kafkaTopics, api, "", args(more...)...) }

	t.Run("kafka-topics", func(t *testing.T) {
		t.Parallel()
		out := topics("CreateTopics", "--create", "--topic", "orders", "--partitions", "3", "--replication-factor", "1", "--config", "cleanup.policy=compact", "--config", "min.cleanable.dirty.ratio=0.1")
		expect(t, kafkaTopics, "CreateTopics", out, `^Created topic orders\.$`)

		r := runTool(t, kafkaTopics, "CreateTopics", "", args("--create", "--topic", "orders", "--partitions", "1")...)
		if r.code != 1 || !strings.Contains(r.stdout, "Error while executing topic command") || !strings.Contains(r.stderr, "TopicExistsException") {
			t.Errorf("kafka-topics --create of an existing topic (CreateTopics): exit %d, want 1 with TopicExistsException\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}
		topics("CreateTopics", "--create", "--if-not-exists", "--topic", "orders", "--partitions", "1")

		out = topics("Metadata, DescribeConfigs", "--describe", "--topic", "orders")
		expect(t, kafkaTopics, "Metadata, DescribeConfigs", out,
			`^Topic: orders\tTopicId: [A-Za-z0-9_-]{22}\tPartitionCount: 3\tReplicationFactor: 1\tConfigs: .*cleanup\.policy=compact`,
			`^Topic: orders\tTopicId: .*min\.cleanable\.dirty\.ratio=0\.1`,
			`^\tTopic: orders\tPartition: 0\tLeader: 0\tReplicas: 0\tIsr: 0`,
			`^\tTopic: orders\tPartition: 2\tLeader: 0\tReplicas: 0\tIsr: 0`)

		out = topics("Metadata", "--list")
		expect(t, kafkaTopics, "Metadata", out, `^orders$`)

		topics("CreatePartitions", "--alter", "--topic", "orders", "--partitions", "5")
		out = topics("Metadata", "--describe", "--topic", "orders")
		expect(t, kafkaTopics, "CreatePartitions", out, `PartitionCount: 5\t`, `^\tTopic: orders\tPartition: 4\tLeader: 0\tReplicas: 0\tIsr: 0`)
		r = runTool(t, kafkaTopics, "CreatePartitions", "", args("--alter", "--topic", "orders", "--partitions", "2")...)
		if r.code != 1 || !strings.Contains(r.stderr, "InvalidPartitionsException") {
			t.Errorf("kafka-topics --alter to fewer partitions (CreatePartitions): exit %d, want 1 with InvalidPartitionsException\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}

		// One node: nothing is under-replicated or unavailable.
		if out = topics("Metadata", "--describe", "--under-replicated-partitions"); strings.TrimSpace(out) != "" {
			t.Errorf("kafka-topics --describe --under-replicated-partitions (Metadata) on one node printed:\n%s", out)
		}
		if out = topics("Metadata", "--describe", "--unavailable-partitions"); strings.TrimSpace(out) != "" {
			t.Errorf("kafka-topics --describe --unavailable-partitions (Metadata) on one node printed:\n%s", out)
		}
		out = topics("DescribeConfigs", "--describe", "--topics-with-overrides")
		expect(t, kafkaTopics, "DescribeConfigs", out, `^Topic: orders\t.*Configs: .*cleanup\.policy=compact`)

		r = runTool(t, kafkaTopics, "Metadata", "", args("--describe", "--topic", "missing")...)
		if r.code != 1 || !strings.Contains(r.stdout, "Topic 'missing' does not exist") {
			t.Errorf("kafka-topics --describe of a missing topic (Metadata): exit %d, want 1 and \"does not exist\"\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}

		topics("DeleteTopics", "--delete", "--topic", "orders")
		waitTopicGone(t, b, "orders")
		if out = topics("Metadata", "--list"); strings.Contains(out, "orders") {
			t.Errorf("kafka-topics --list (Metadata) after --delete still lists orders:\n%s", out)
		}
	})

	t.Run("kafka-configs", func(t *testing.T) {
		t.Parallel()
		topics("CreateTopics", "--create", "--topic", "cfg", "--partitions", "1")
		cfgs := func(api string, more ...string) string {
			return ok(t, kafkaConfigs, api, "", args(more...)...)
		}
		out := cfgs("IncrementalAlterConfigs", "--entity-type", "topics", "--entity-name", "cfg", "--alter", "--add-config", "retention.ms=3600000,cleanup.policy=compact,max.message.bytes=2000000")
		expect(t, kafkaConfigs, "IncrementalAlterConfigs", out, `^Completed updating config for topic cfg\.$`)
		out = cfgs("DescribeConfigs", "--entity-type", "topics", "--entity-name", "cfg", "--describe")
		expect(t, kafkaConfigs, "DescribeConfigs", out,
			`^Dynamic configs for topic cfg are:$`,
			`^  cleanup\.policy=compact sensitive=false synonyms=\{DYNAMIC_TOPIC_CONFIG:cleanup\.policy=compact, DEFAULT_CONFIG:log\.cleanup\.policy=delete\}$`,
			`^  retention\.ms=3600000 sensitive=false synonyms=\{DYNAMIC_TOPIC_CONFIG:retention\.ms=3600000, DEFAULT_CONFIG:log\.retention\.ms=604800000\}$`,
			`^  max\.message\.bytes=2000000 sensitive=false`)

		cfgs("IncrementalAlterConfigs", "--entity-type", "topics", "--entity-name", "cfg", "--alter", "--delete-config", "retention.ms,max.message.bytes")
		out = cfgs("DescribeConfigs", "--entity-type", "topics", "--entity-name", "cfg", "--describe")
		expect(t, kafkaConfigs, "DescribeConfigs", out, `^  cleanup\.policy=compact `)
		refuse(t, kafkaConfigs, "DescribeConfigs", out, `retention\.ms=`, `max\.message\.bytes=`)

		out = cfgs("DescribeConfigs", "--entity-type", "topics", "--entity-name", "cfg", "--describe", "--all")
		expect(t, kafkaConfigs, "DescribeConfigs", out,
			`^All configs for topic cfg are:$`,
			`^  cleanup\.policy=compact sensitive=false synonyms=\{DYNAMIC_TOPIC_CONFIG:cleanup\.policy=compact`,
			`^  retention\.ms=604800000 sensitive=false synonyms=\{DEFAULT_CONFIG:log\.retention\.ms=604800000\}$`,
			`^  segment\.bytes=1073741824 sensitive=false synonyms=\{DEFAULT_CONFIG:log\.segment\.bytes=1073741824\}$`,
			`^  min\.cleanable\.dirty\.ratio=0\.5 sensitive=false`,
			`^  delete\.retention\.ms=86400000 sensitive=false`)

		r := runTool(t, kafkaConfigs, "IncrementalAlterConfigs", "", args("--entity-type", "topics", "--entity-name", "cfg", "--alter", "--add-config", "cleanup.policy=bogus")...)
		if r.code != 1 || !strings.Contains(r.stdout+r.stderr, "cleanup.policy") {
			t.Errorf("kafka-configs --add-config cleanup.policy=bogus (IncrementalAlterConfigs): exit %d, want 1 naming cleanup.policy\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}

		// Broker configs: per broker and cluster-wide defaults.
		out = cfgs("IncrementalAlterConfigs", "--entity-type", "brokers", "--entity-name", "0", "--alter", "--add-config", "log.cleaner.threads=2")
		expect(t, kafkaConfigs, "IncrementalAlterConfigs", out, `^Completed updating config for broker 0\.$`)
		out = cfgs("DescribeConfigs", "--entity-type", "brokers", "--entity-name", "0", "--describe")
		expect(t, kafkaConfigs, "DescribeConfigs", out,
			`^Dynamic configs for broker 0 are:$`,
			`^  log\.cleaner\.threads=2 sensitive=false synonyms=\{DYNAMIC_BROKER_CONFIG:log\.cleaner\.threads=2, DEFAULT_CONFIG:log\.cleaner\.threads=1\}$`)
		cfgs("IncrementalAlterConfigs", "--entity-type", "brokers", "--entity-name", "0", "--alter", "--delete-config", "log.cleaner.threads")
		out = cfgs("DescribeConfigs", "--entity-type", "brokers", "--entity-name", "0", "--describe")
		refuse(t, kafkaConfigs, "DescribeConfigs", out, `log\.cleaner\.threads=`)

		out = cfgs("IncrementalAlterConfigs", "--entity-type", "brokers", "--entity-default", "--alter", "--add-config", "log.cleaner.delete.retention.ms=3600000")
		expect(t, kafkaConfigs, "IncrementalAlterConfigs", out, `^Completed updating default config for brokers in the cluster\.$`)
		out = cfgs("DescribeConfigs", "--entity-type", "brokers", "--entity-default", "--describe")
		expect(t, kafkaConfigs, "DescribeConfigs", out,
			`^Default configs for brokers in the cluster are:$`,
			`^  log\.cleaner\.delete\.retention\.ms=3600000 sensitive=false synonyms=\{DYNAMIC_DEFAULT_BROKER_CONFIG:log\.cleaner\.delete\.retention\.ms=3600000, DEFAULT_CONFIG:log\.cleaner\.delete\.retention\.ms=86400000\}$`)
		// The cluster default shows through in the topic's synonyms.
		out = cfgs("DescribeConfigs", "--entity-type", "topics", "--entity-name", "cfg", "--describe", "--all")
		expect(t, kafkaConfigs, "DescribeConfigs", out, `^  delete\.retention\.ms=3600000 sensitive=false synonyms=\{DYNAMIC_DEFAULT_BROKER_CONFIG:log\.cleaner\.delete\.retention\.ms=3600000, DEFAULT_CONFIG:log\.cleaner\.delete\.retention\.ms=86400000\}$`)
		cfgs("IncrementalAlterConfigs", "--entity-type", "brokers", "--entity-default", "--alter", "--delete-config", "log.cleaner.delete.retention.ms")

		out = cfgs("DescribeConfigs", "--entity-type", "brokers", "--entity-name", "0", "--describe", "--all")
		expect(t, kafkaConfigs, "DescribeConfigs", out,
			`^All configs for broker 0 are:$`,
			`^  log\.retention\.hours=168 sensitive=false synonyms=\{DEFAULT_CONFIG:log\.retention\.hours=168\}$`,
			`^  log\.retention\.ms=null sensitive=false synonyms=\{\}$`,
			`^  log\.cleanup\.policy=delete sensitive=false`,
			`^  num\.partitions=1 sensitive=false`)
	})

	t.Run("console-producer-consumer", func(t *testing.T) {
		t.Parallel()
		topics("CreateTopics", "--create", "--topic", "console", "--partitions", "1")
		// Keys, a null.marker for keys and values, headers, lz4 batches.
		in := "h1:x,h2:y\tuser-1:{\"name\":\"Ada\"}\n" +
			"h3:z\tuser-2:NULL\n" +
			"h4:w\tNULL:keyless\n"
		ok(t, consoleProducer, "Produce", in, args("--topic", "console", "--compression-codec", "lz4",
			"--reader-property", "parse.key=true", "--reader-property", "key.separator=:",
			"--reader-property", "parse.headers=true", "--reader-property", "null.marker=NULL")...)
		out := ok(t, consoleConsumer, "Fetch", "", args("--topic", "console", "--partition", "0", "--offset", "earliest",
			"--max-messages", "3", "--timeout-ms", "30000",
			"--formatter-property", "print.key=true", "--formatter-property", "print.offset=true",
			"--formatter-property", "print.headers=true", "--formatter-property", "null.literal=<null>",
			"--formatter-property", "key.separator=|")...)
		// key.separator separates every printed field, as in Kafka's
		// DefaultMessageFormatter.
		want := []string{
			"Offset:0|h1:x,h2:y|user-1|{\"name\":\"Ada\"}",
			"Offset:1|h3:z|user-2|<null>",
			"Offset:2|h4:w|<null>|keyless",
		}
		if got := lines(out); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("kafka-console-consumer (Fetch) printed\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		// What kvlog stored: real nulls, not the marker text.
		recs := fetchAll(t, b, "console", 3)
		if recs[1].Value != nil || recs[2].Key != nil || string(recs[0].Key) != "user-1" || len(recs[0].Headers) != 2 {
			t.Errorf("kafka-console-producer (Produce) stored %s", describeRecords(recs))
		}
	})

	t.Run("kafka-consumer-groups", func(t *testing.T) {
		t.Parallel()
		topics("CreateTopics", "--create", "--topic", "events", "--partitions", "2")
		// Four records per partition with known timestamps: 2020, 2021, 2022, 2023.
		cl := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
		for p := int32(0); p < 2; p++ {
			for i := 0; i < 4; i++ {
				ts := time.Date(2020+i, 1, 1, 0, 0, 0, 0, time.UTC)
				r := &kgo.Record{Topic: "events", Partition: p, Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte("v"), Timestamp: ts}
				if err := cl.ProduceSync(testbroker.Context(t, 30*time.Second), r).FirstErr(); err != nil {
					t.Fatal(err)
				}
			}
		}
		// The console consumer commits what it read: 3 of the 8 records.
		ok(t, consoleConsumer, "JoinGroup, SyncGroup, OffsetCommit", "", args("--topic", "events", "--group", "g1", "--from-beginning",
			"--max-messages", "3", "--timeout-ms", "30000", "--consumer-property", "max.poll.records=1", "--consumer-property", "enable.auto.commit=true")...)

		groups := func(api string, more ...string) string { return ok(t, consumerGroups, api, "", args(more...)...) }
		out := groups("ListGroups", "--list")
		expect(t, consumerGroups, "ListGroups", out, `^g1$`)

		out = groups("DescribeGroups, OffsetFetch, ListOffsets", "--describe", "--group", "g1")
		expect(t, consumerGroups, "DescribeGroups, OffsetFetch, ListOffsets", out,
			`^GROUP\s+TOPIC\s+PARTITION\s+CURRENT-OFFSET\s+LOG-END-OFFSET\s+LAG\s+CONSUMER-ID\s+HOST\s+CLIENT-ID$`)
		lag := describeLag(t, out)
		if lag["events-0"][1] != 4 || lag["events-1"][1] != 4 || lag["events-0"][0]+lag["events-1"][0] != 3 ||
			lag["events-0"][2]+lag["events-1"][2] != 5 {
			t.Errorf("kafka-consumer-groups --describe (OffsetFetch, ListOffsets): offsets/ends/lags %v, want 3 consumed of 8 (lag 5)\n%s", lag, out)
		}

		out = groups("DescribeGroups", "--describe", "--group", "g1", "--state")
		expect(t, consumerGroups, "DescribeGroups", out, `^g1\s+\S+\s+\(0\)\s+.*Empty\s+0\s*$`)

		// With a live member: its id, host and client id, its partitions.
		member := b.Client(t, kgo.ConsumerGroup("g2"), kgo.ConsumeTopics("events"), kgo.ClientID("live-member"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		waitAssigned(t, member, 2)
		out = groups("DescribeGroups", "--describe", "--group", "g2", "--members")
		expect(t, consumerGroups, "DescribeGroups", out,
			`^GROUP\s+CONSUMER-ID\s+HOST\s+CLIENT-ID\s+#PARTITIONS\s*$`,
			`^g2\s+\S+\s+/127\.0\.0\.1\s+live-member\s+2\s*$`)
		member.Close()

		reset := func(api string, more ...string) map[string]int64 {
			t.Helper()
			out := groups(api, append([]string{"--group", "g1", "--topic", "events", "--reset-offsets"}, more...)...)
			return newOffsets(t, out)
		}
		if got := reset("ListOffsets, OffsetCommit", "--to-earliest", "--execute"); got["events-0"] != 0 || got["events-1"] != 0 {
			t.Errorf("kafka-consumer-groups --reset-offsets --to-earliest (ListOffsets, OffsetCommit): %v, want 0 and 0", got)
		}
		if got := reset("ListOffsets, OffsetCommit", "--shift-by", "3", "--execute"); got["events-0"] != 3 || got["events-1"] != 3 {
			t.Errorf("kafka-consumer-groups --reset-offsets --shift-by 3 (ListOffsets, OffsetCommit): %v, want 3 and 3", got)
		}
		if got := reset("ListOffsets, OffsetCommit", "--shift-by", "-10", "--execute"); got["events-0"] != 0 || got["events-1"] != 0 {
			t.Errorf("kafka-consumer-groups --reset-offsets --shift-by -10 (ListOffsets): %v, want 0 and 0 (clamped to the log start)", got)
		}
		// The first record at or after 2021-06-01 is the 2022 one, offset 2.
		if got := reset("ListOffsets by timestamp, OffsetCommit", "--to-datetime", "2021-06-01T00:00:00.000Z", "--execute"); got["events-0"] != 2 || got["events-1"] != 2 {
			t.Errorf("kafka-consumer-groups --reset-offsets --to-datetime (ListOffsets by timestamp): %v, want 2 and 2", got)
		}
		if got := reset("ListOffsets", "--to-latest", "--dry-run"); got["events-0"] != 4 || got["events-1"] != 4 {
			t.Errorf("kafka-consumer-groups --reset-offsets --to-latest --dry-run (ListOffsets): %v, want 4 and 4", got)
		}
		// --dry-run changed nothing.
		lag = describeLag(t, groups("OffsetFetch, ListOffsets", "--describe", "--group", "g1"))
		if lag["events-0"][0] != 2 || lag["events-1"][0] != 2 || lag["events-0"][2] != 2 {
			t.Errorf("kafka-consumer-groups --describe (OffsetFetch) after the resets: %v, want offsets 2 and lag 2", lag)
		}

		out = groups("DeleteGroups", "--delete", "--group", "g1")
		expect(t, consumerGroups, "DeleteGroups", out, `^Deletion of requested consumer groups \('g1'\) was successful\.$`)
		out = groups("ListGroups", "--list")
		refuse(t, consumerGroups, "ListGroups", out, `^g1$`)
		// kvlog answers DescribeGroups up to v5, so a deleted group is
		// state Dead: the tool says it does not exist and exits 0.
		out = groups("DescribeGroups", "--describe", "--group", "g1")
		expect(t, consumerGroups, "DescribeGroups", out, `^Error: Consumer group 'g1' does not exist\.$`)
	})

	t.Run("kafka-get-offsets", func(t *testing.T) {
		t.Parallel()
		topics("CreateTopics", "--create", "--topic", "offs", "--partitions", "2")
		cl := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
		for i := 0; i < 5; i++ {
			r := &kgo.Record{Topic: "offs", Partition: 0, Value: []byte("v"), Timestamp: time.UnixMilli(1_600_000_000_000 + int64(i)*1000)}
			if err := cl.ProduceSync(testbroker.Context(t, 30*time.Second), r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		get := func(api string, more ...string) []string {
			t.Helper()
			return lines(ok(t, getOffsets, api, "", args(more...)...))
		}
		for _, c := range []struct {
			time string
			want []string
		}{
			{"-1", []string{"offs:0:5", "offs:1:0"}}, // latest
			{"-2", []string{"offs:0:0", "offs:1:0"}}, // earliest
			{"-3", []string{"offs:0:4"}},             // max timestamp: empty partitions have none
			{"-4", []string{"offs:0:0", "offs:1:0"}}, // earliest local
			{"-5", []string{}},                       // latest tiered: offset -1 (no remote storage), which the tool does not print
			{"1600000002500", []string{"offs:0:3"}},  // the first at or after a timestamp
			{"1700000000000", []string{}},            // after the last record: none
		} {
			r := runTool(t, getOffsets, "ListOffsets", "", args("--topic", "offs", "--time", c.time)...)
			got := lines(r.stdout)
			if got == nil {
				got = []string{}
			}
			sort.Strings(got)
			if r.code != 0 || strings.Join(got, " ") != strings.Join(c.want, " ") || strings.Contains(r.stderr, "Skip getting offsets") {
				t.Errorf("kafka-get-offsets --time %s (ListOffsets): exit %d, printed %q, want %q\nstderr:\n%s", c.time, r.code, got, c.want, r.stderr)
			}
		}
		// --topic-partitions picks partitions; without a topic, all topics.
		if got := get("ListOffsets", "--topic-partitions", "offs:1", "--time", "-1"); strings.Join(got, " ") != "offs:1:0" {
			t.Errorf("kafka-get-offsets --topic-partitions offs:1 (ListOffsets): %q", got)
		}
		all := strings.Join(get("Metadata, ListOffsets"), "\n")
		expect(t, getOffsets, "Metadata, ListOffsets", all, `^offs:0:5$`, `^offs:1:0$`)
	})

	t.Run("kafka-delete-records", func(t *testing.T) {
		t.Parallel()
		topics("CreateTopics", "--create", "--topic", "trim", "--partitions", "1")
		cl := b.Client(t)
		for i := 0; i < 6; i++ {
			if err := cl.ProduceSync(testbroker.Context(t, 30*time.Second), &kgo.Record{Topic: "trim", Value: []byte{byte('a' + i)}}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		spec := func(offset int) string {
			p := filepath.Join(t.TempDir(), "delete.json")
			js := fmt.Sprintf(`{"partitions":[{"topic":"trim","partition":0,"offset":%d}],"version":1}`, offset)
			if err := os.WriteFile(p, []byte(js), 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}
		out := ok(t, deleteRecords, "DeleteRecords", "", args("--offset-json-file", spec(4))...)
		expect(t, deleteRecords, "DeleteRecords", out, `^Executing records delete operation$`, `^Records delete operation completed:$`, `^partition: trim-0\tlow_watermark: 4$`)
		if got := lines(ok(t, getOffsets, "ListOffsets", "", args("--topic", "trim", "--time", "-2")...)); strings.Join(got, " ") != "trim:0:4" {
			t.Errorf("kafka-get-offsets --time -2 (ListOffsets) after kafka-delete-records: %q, want trim:0:4", got)
		}
		// Beyond the high watermark: the partition's error, exit 0.
		out = ok(t, deleteRecords, "DeleteRecords", "", args("--offset-json-file", spec(99))...)
		expect(t, deleteRecords, "DeleteRecords", out, `^partition: trim-0\terror: org\.apache\.kafka\.common\.errors\.OffsetOutOfRangeException`)
		// -1 means the high watermark.
		out = ok(t, deleteRecords, "DeleteRecords", "", args("--offset-json-file", spec(-1))...)
		expect(t, deleteRecords, "DeleteRecords", out, `^partition: trim-0\tlow_watermark: 6$`)
	})

	t.Run("kafka-log-dirs", func(t *testing.T) {
		t.Parallel()
		topics("CreateTopics", "--create", "--topic", "sized", "--partitions", "2")
		cl := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
		for i := 0; i < 10; i++ {
			if err := cl.ProduceSync(testbroker.Context(t, 30*time.Second), &kgo.Record{Topic: "sized", Partition: 1, Value: make([]byte, 100)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		out := ok(t, logDirs, "DescribeLogDirs", "", args("--describe", "--topic-list", "sized")...)
		expect(t, logDirs, "DescribeLogDirs", out, `^Querying brokers for log directories information$`, `^Received log directory information from brokers 0$`)
		var doc struct {
			Version int `json:"version"`
			Brokers []struct {
				Broker  int `json:"broker"`
				LogDirs []struct {
					LogDir     string  `json:"logDir"`
					Error      *string `json:"error"`
					Partitions []struct {
						Partition string `json:"partition"`
						Size      int64  `json:"size"`
						OffsetLag int64  `json:"offsetLag"`
						IsFuture  bool   `json:"isFuture"`
					} `json:"partitions"`
				} `json:"logDirs"`
			} `json:"brokers"`
		}
		ls := lines(out)
		if err := json.Unmarshal([]byte(ls[len(ls)-1]), &doc); err != nil {
			t.Fatalf("kafka-log-dirs (DescribeLogDirs): last line is not its JSON: %v\n%s", err, out)
		}
		if len(doc.Brokers) != 1 || doc.Brokers[0].Broker != 0 || len(doc.Brokers[0].LogDirs) != 1 {
			t.Fatalf("kafka-log-dirs (DescribeLogDirs): %s", out)
		}
		d := doc.Brokers[0].LogDirs[0]
		if d.LogDir != b.DataDir || d.Error != nil || len(d.Partitions) != 2 {
			t.Fatalf("kafka-log-dirs (DescribeLogDirs): log dir %q (want %q), error %v, partitions %+v", d.LogDir, b.DataDir, d.Error, d.Partitions)
		}
		sizes := map[string]int64{}
		for _, p := range d.Partitions {
			sizes[p.Partition] = p.Size
			if p.OffsetLag != 0 || p.IsFuture {
				t.Errorf("kafka-log-dirs (DescribeLogDirs): %+v", p)
			}
		}
		logs, _ := filepath.Glob(filepath.Join(b.DataDir, "sized-1", "*.log"))
		var onDisk int64
		for _, l := range logs {
			if fi, err := os.Stat(l); err == nil {
				onDisk += fi.Size()
			}
		}
		if sizes["sized-0"] != 0 || sizes["sized-1"] != onDisk || onDisk == 0 {
			t.Errorf("kafka-log-dirs (DescribeLogDirs): sizes %v, want sized-0 empty and sized-1 %d bytes (its .log files)", sizes, onDisk)
		}
	})

	t.Run("kafka-broker-api-versions", func(t *testing.T) {
		t.Parallel()
		out := ok(t, brokerAPIVersions, "ApiVersions", "", bs...)
		expect(t, brokerAPIVersions, "ApiVersions", out,
			`^`+regexp.QuoteMeta(b.Addr)+` \(id: 0 rack: null isFenced: false\) -> \($`,
			`^\tProduce\(0\): \d+ to \d+ \[usable: \d+\],$`,
			`^\tFetch\(1\): \d+ to \d+ \[usable: \d+\],$`,
			`^\tListOffsets\(2\): 0 to 11 \[usable: 11\],$`,
			`^\tMetadata\(3\): \d+ to \d+ \[usable: \d+\],$`,
			`^\tApiVersions\(18\): 0 to \d+ \[usable: \d+\],$`,
			`^\tElectLeaders\(43\): UNSUPPORTED,$`)
		// Every API kvlog serves is usable by Kafka 4's clients, but for the
		// inter-broker ones Kafka 4 removed (ZooKeeper mode).
		for _, l := range lines(out) {
			if strings.Contains(l, "unusable") && !regexp.MustCompile(`^\t(LeaderAndIsr|StopReplica|UpdateMetadata|ControlledShutdown)\(`).MatchString(l) {
				t.Errorf("kafka-broker-api-versions (ApiVersions): %s", strings.TrimSpace(l))
			}
		}
	})

	t.Run("kafka-leader-election", func(t *testing.T) {
		t.Parallel()
		// kvlog does not implement ElectLeaders yet: the tool says so and
		// exits 1, the same for every election type.
		topics("CreateTopics", "--create", "--topic", "elect", "--partitions", "1")
		for _, typ := range []string{"preferred", "unclean"} {
			r := runTool(t, leaderElection, "ElectLeaders", "", args("--election-type", typ, "--topic", "elect", "--partition", "0")...)
			if r.code != 1 || !strings.Contains(r.stdout+r.stderr, "UnsupportedVersionException: The node does not support ELECT_LEADERS") {
				t.Errorf("kafka-leader-election --election-type %s (ElectLeaders): exit %d, want 1 with \"The node does not support ELECT_LEADERS\"\nstdout:\n%s\nstderr:\n%s", typ, r.code, r.stdout, r.stderr)
			}
		}
	})
}

// waitTopicGone polls Metadata until topic is gone (deletion completes
// asynchronously in Kafka; kvlog may answer at once).
func waitTopicGone(t *testing.T, b *testbroker.Broker, topic string) {
	t.Helper()
	adm := b.Admin(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		td, err := adm.ListTopics(testbroker.Context(t, 10*time.Second), topic)
		if err == nil && !td.Has(topic) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s still listed 30 s after kafka-topics --delete (err %v)", topic, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// fetchAll reads n records of topic's partition 0 from the start.
func fetchAll(t *testing.T, b *testbroker.Broker, topic string, n int) []*kgo.Record {
	t.Helper()
	cl := b.Client(t, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	ctx := testbroker.Context(t, 30*time.Second)
	var recs []*kgo.Record
	for len(recs) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("fetching %s: %d of %d records within 30 s", topic, len(recs), n)
		}
		fs.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
	}
	return recs
}

func describeRecords(recs []*kgo.Record) string {
	var sb strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&sb, "\n  offset %d key %q (nil %v) value %q (nil %v) headers %d", r.Offset, r.Key, r.Key == nil, r.Value, r.Value == nil, len(r.Headers))
	}
	return sb.String()
}

// describeLag parses kafka-consumer-groups --describe: partition →
// (current offset, log-end offset, lag); "-" reads as -1.
func describeLag(t *testing.T, out string) map[string][3]int64 {
	t.Helper()
	m := map[string][3]int64{}
	for _, l := range lines(out) {
		f := strings.Fields(l)
		if len(f) < 6 || f[0] == "GROUP" {
			continue
		}
		var v [3]int64
		for i := range v {
			if _, err := fmt.Sscan(f[3+i], &v[i]); err != nil {
				v[i] = -1
			}
		}
		m[f[1]+"-"+f[2]] = v
	}
	return m
}

// newOffsets parses kafka-consumer-groups --reset-offsets: partition → new
// offset.
func newOffsets(t *testing.T, out string) map[string]int64 {
	t.Helper()
	m := map[string]int64{}
	header := false
	for _, l := range lines(out) {
		f := strings.Fields(l)
		if len(f) == 4 && f[0] == "GROUP" && f[3] == "NEW-OFFSET" {
			header = true
			continue
		}
		if len(f) == 4 && header {
			var o int64
			if _, err := fmt.Sscan(f[3], &o); err == nil {
				m[f[1]+"-"+f[2]] = o
			}
		}
	}
	if !header {
		t.Errorf("kafka-consumer-groups --reset-offsets: no NEW-OFFSET table in:\n%s", out)
	}
	return m
}

// waitAssigned polls a group consumer until it owns n partitions.
func waitAssigned(t *testing.T, cl *kgo.Client, n int) {
	t.Helper()
	ctx := testbroker.Context(t, 30*time.Second)
	adm := kadm.NewClient(cl)
	for {
		poll := testbroker.Context(t, 200*time.Millisecond)
		cl.PollRecords(poll, 1)
		if ctx.Err() != nil {
			t.Fatalf("group consumer: not assigned %d partitions within 30 s", n)
		}
		dg, err := adm.DescribeGroups(ctx, "g2")
		if err == nil {
			total := 0
			for _, g := range dg {
				for _, m := range g.Members {
					if a, ok := m.Assigned.AsConsumer(); ok {
						for _, tp := range a.Topics {
							total += len(tp.Partitions)
						}
					}
				}
			}
			if total == n {
				return
			}
		}
	}
}

// TestKafkaToolsCluster: kafka-topics against a two-broker kvlog cluster
// (ZooKeeper mode): replicas and ISR as described, then, with one broker
// stopped, --under-replicated-partitions lists exactly the partitions that
// lost a replica, and --unavailable-partitions none (every partition still
// has a leader).
func TestKafkaToolsCluster(t *testing.T) {
	classpath(t)
	if why := testcluster.ZooKeeperAvailable(); why != "" {
		t.Skip("ZooKeeper unavailable: " + why)
	}
	bin, err := testbroker.Binary(false)
	if err != nil {
		t.Fatal(err)
	}
	c := testcluster.Start(t, testcluster.Options{Brokers: 2, Bin: bin, Props: []string{"replica.lag.time.max.ms=2000", "log.cleaner.dedupe.buffer.size=4194304"}})
	bs := []string{"--bootstrap-server", strings.Join(c.Seeds(), ",")}
	args := func(more ...string) []string { return append(append([]string(nil), bs...), more...) }
	topics := func(api string, more ...string) string { return ok(t, kafkaTopics, api, "", args(more...)...) }

	topics("CreateTopics", "--create", "--topic", "replicated", "--partitions", "2", "--replication-factor", "2")
	topics("CreateTopics", "--create", "--topic", "single", "--replica-assignment", "1")
	c.WaitFor(30*time.Second, "both replicas of replicated in sync", func() bool { return isrSizes(c, "replicated") == "2,2" })
	out := topics("Metadata", "--describe", "--topic", "replicated")
	expect(t, kafkaTopics, "Metadata", out,
		`^Topic: replicated\tTopicId: \S+\tPartitionCount: 2\tReplicationFactor: 2\t`,
		`^\tTopic: replicated\tPartition: 0\tLeader: [12]\tReplicas: (1,2|2,1)\tIsr: (1,2|2,1)`,
		`^\tTopic: replicated\tPartition: 1\tLeader: [12]\tReplicas: (1,2|2,1)\tIsr: (1,2|2,1)`)
	if out = topics("Metadata", "--describe", "--under-replicated-partitions"); strings.TrimSpace(out) != "" {
		t.Errorf("kafka-topics --describe --under-replicated-partitions (Metadata) with every replica in sync printed:\n%s", out)
	}

	if err := c.Stop(2, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	c.WaitFor(30*time.Second, "broker 2 out of the ISR of replicated", func() bool { return isrSizes(c, "replicated") == "1,1" })
	out = topics("Metadata", "--describe", "--under-replicated-partitions")
	want := []string{
		"\tTopic: replicated\tPartition: 0\tLeader: 1\tReplicas: (1,2|2,1)\tIsr: 1",
		"\tTopic: replicated\tPartition: 1\tLeader: 1\tReplicas: (1,2|2,1)\tIsr: 1",
	}
	got := lines(out)
	if len(got) != 2 {
		t.Errorf("kafka-topics --describe --under-replicated-partitions (Metadata) with broker 2 stopped printed %d lines, want the 2 partitions of replicated:\n%s", len(got), out)
	}
	expect(t, kafkaTopics, "Metadata", out, "^"+want[0], "^"+want[1])
	if out = topics("Metadata", "--describe", "--unavailable-partitions"); strings.TrimSpace(out) != "" {
		t.Errorf("kafka-topics --describe --unavailable-partitions (Metadata) printed:\n%s", out)
	}
}

// isrSizes is "n0,n1": the ISR sizes of topic's partitions 0 and 1 as
// broker metadata reports them ("" on an error).
func isrSizes(c *testcluster.Cluster, topic string) string {
	m, err := c.Metadata(topic)
	if err != nil || len(m.Topics) != 1 {
		return ""
	}
	sizes := make([]string, len(m.Topics[0].Partitions))
	for _, p := range m.Topics[0].Partitions {
		if int(p.Partition) < len(sizes) {
			sizes[p.Partition] = fmt.Sprint(len(p.ISR))
		}
	}
	return strings.Join(sizes, ",")
}
