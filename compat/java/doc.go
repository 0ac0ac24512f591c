// Package javacompat runs Apache Kafka's own Java clients against the real
// kvlogd: kafka-clients 4.x and 3.x (producer, consumer groups with the
// classic protocol, AdminClient, the APIs kvlog does not serve yet) and a
// Kafka Streams application. The Java side is the Maven module beside this
// file (pom.xml, src/main/java/kvlog/compat); its cases print one RESULT
// line of JSON each, and the tests here start the broker through
// internal/testbroker, SIGKILL and restart it (or the Streams app) where a
// case needs it, and check what the Java client did against a model
// computed in Go, reading the topics back with franz-go.
//
// The Streams application has a restore mode (StreamsApp … restore N):
// from an empty state directory it restores its stores from changelogs
// written beforehand, prints one RESTORED line (records restored, restore
// time) and exits. bench/kvbench's restore scenario times it against kvlog
// and Apache Kafka; TestStreamsRestoreMode checks it restores exactly the
// committed records of a transactionally written changelog.
//
// The same cases run over SASL_SSL (SCRAM-SHA-512) and SSL (mTLS) in
// security_test.go: the client configuration file named by the JVM's
// kvlog.client.config system property (security.protocol, sasl.*, ssl.*,
// as an application gives Kafka) is added to every client a case makes.
//
// `make tools-java` fills ~/.m2 with the pinned versions; the tests build
// the module with Maven (offline when ~/.m2 has everything) and skip,
// saying so, only when java or mvn is missing.
package javacompat
