// Package kafka holds no code of its own: its tests run Apache Kafka's own
// tools and broker, from their Maven jars, against kvlog.
//
// pom.xml here pulls org.apache.kafka:kafka_2.13 and kafka-tools (the
// version is in the pom) plus a log4j2 binding for slf4j; `make tools-kafka`
// installs a JDK and Maven when missing and writes the jars' classpath to
// target/classpath.txt, which the tests read (they skip, saying so, when it
// is missing). Each tool runs as `java -cp <classpath> <main class>`, the
// way Kafka's bin/ scripts start it, with no distribution tarball.
//
// What the tests prove:
//
//   - tools_test.go: kafka-topics, kafka-configs, the console producer and
//     consumer, kafka-consumer-groups, kafka-get-offsets,
//     kafka-delete-records, kafka-log-dirs, kafka-broker-api-versions and
//     kafka-leader-election against a kvlogd started by internal/testbroker
//     (and kafka-topics --under-replicated-partitions against a ZooKeeper
//     cluster from internal/testcluster). Every case checks the tool's exit
//     code and output; a failure names the tool, the Kafka API it drove and
//     what the tool printed.
//   - security_test.go: kafka-topics and kafka-acls with --command-config
//     files (SASL_SSL, SCRAM-SHA-512, a PEM trust store) against a kvlogd
//     running the ACL authorizer: a super user creates topics and ACLs, a
//     user without ACLs gets the exceptions Kafka's KafkaApis gives him
//     (TopicAuthorizationException "Authorization failed." for
//     CreateTopics, "Topic authorization failed." for DescribeConfigs,
//     ClusterAuthorizationException for the ACL APIs), and topics he may
//     not describe are reported missing.
//   - dumplog_test.go: Kafka's DumpLogSegments reads every file kvlogd
//     writes (segments plain and with every codec, compacted segments with
//     tombstone horizons, segments after truncation and after retention,
//     their offset and time indexes, producer snapshots) with no error, and
//     decodes exactly the records that were produced. Kafka's own checkpoint
//     readers (a small Java source file, checkpoints.java, run by the java
//     source launcher) read the leader-epoch and log-dir checkpoints, which
//     DumpLogSegments does not handle.
//   - kafkabroker_test.go: the reverse direction. A real Apache Kafka broker
//     (KRaft combined mode, its storage formatted by kafka.tools.StorageTool)
//     writes a compacted topic with every codec; kvlog's engine opens those
//     partition directories and reads exactly those records. With -update it
//     rewrites the golden fixture engine/testdata/kafka-golden, which
//     engine's TestKafkaGolden pins without Java.
//
// The broker is started with the JVM flags of kafka-server-start.sh except
// the heap: -Xmx512m instead of -Xmx1G, as the tests share a two-core
// machine with the rest of the suite. Short-lived tools run with the serial
// collector and the C1 compiler only, which halves their start-up CPU.
package kafka
