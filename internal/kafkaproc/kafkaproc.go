// Package kafkaproc says how to run Apache Kafka's own broker from its Maven
// jars, with no distribution tarball: the server.properties of a node, the
// JVM flags kafka-server-start.sh gives the broker, and the command lines of
// kafka.tools.StorageTool (formatting a KRaft node's storage) and
// kafka.Kafka. compat/kafka's tests start a broker this way to have Kafka
// write a golden fixture; bench/kvbench starts Kafka as a peer of kvlogd.
// Both manage the process themselves (logs, kill -9, timing); this package
// only builds files and argument lists.
//
// Two modes:
//
//   - KRaft combined mode (Kafka 4.x, the only mode it has): one process is
//     both broker and controller of a single-voter quorum
//     (controller.quorum.voters names it); its storage must be formatted
//     with a cluster id before the first start (FormatArgs).
//   - ZooKeeper mode (Kafka 3.9, the last line that has it): the broker
//     registers under zookeeper.connect; no formatting.
//
// The classpath is what `mvn dependency:build-classpath` wrote for the
// project's pom.xml (compat/kafka for 4.x, bench/kafka39 for 3.9):
// ReadClasspath reads it.
package kafkaproc

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Node is one Kafka broker's layout and identity.
type Node struct {
	// Dir holds server.properties, data/ (log.dirs), metadata/ (KRaft's
	// metadata log) and the GC log.
	Dir string
	// Addr is the PLAINTEXT listener, host:port.
	Addr string
	// Controller is the KRaft CONTROLLER listener, host:port; empty in
	// ZooKeeper mode.
	Controller string
	// ZooKeeper is zookeeper.connect (with its chroot) in ZooKeeper mode.
	ZooKeeper string
	// ID is node.id (KRaft) or broker.id (ZooKeeper); 0 means 1.
	ID int
	// Props are more server.properties lines, written after the node's
	// own (a later line of the same key wins).
	Props []string
}

// DataDir is the node's log.dirs.
func (n Node) DataDir() string { return filepath.Join(n.Dir, "data") }

// ConfigPath is the node's server.properties.
func (n Node) ConfigPath() string { return filepath.Join(n.Dir, "server.properties") }

func (n Node) id() string {
	if n.ID == 0 {
		return "1"
	}
	return strconv.Itoa(n.ID)
}

// Properties are the node's server.properties lines: listeners, roles,
// directories, and single-node replication factors for Kafka's internal
// topics in KRaft mode; everything else is Kafka's default unless Props
// says otherwise. Topics are never created by a produce or a metadata
// request (auto.create.topics.enable=false).
func (n Node) Properties() []string {
	var p []string
	if n.ZooKeeper != "" {
		p = []string{
			"broker.id=" + n.id(),
			"zookeeper.connect=" + n.ZooKeeper,
			"listeners=PLAINTEXT://" + n.Addr,
			"advertised.listeners=PLAINTEXT://" + n.Addr,
		}
	} else {
		p = []string{
			"process.roles=broker,controller",
			"node.id=" + n.id(),
			"controller.quorum.voters=" + n.id() + "@" + n.Controller,
			"listeners=PLAINTEXT://" + n.Addr + ",CONTROLLER://" + n.Controller,
			"advertised.listeners=PLAINTEXT://" + n.Addr,
			"controller.listener.names=CONTROLLER",
			"inter.broker.listener.name=PLAINTEXT",
			"listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
			"metadata.log.dir=" + filepath.Join(n.Dir, "metadata"),
			"offsets.topic.replication.factor=1",
			"transaction.state.log.replication.factor=1",
			"transaction.state.log.min.isr=1",
			"share.coordinator.state.topic.replication.factor=1",
			"share.coordinator.state.topic.min.isr=1",
		}
	}
	p = append(p,
		"log.dirs="+n.DataDir(),
		"auto.create.topics.enable=false",
		"group.initial.rebalance.delay.ms=0",
	)
	return append(p, n.Props...)
}

// WriteConfig creates Dir and writes server.properties.
func (n Node) WriteConfig() error {
	if err := os.MkdirAll(n.Dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(n.ConfigPath(), []byte(strings.Join(n.Properties(), "\n")+"\n"), 0o644)
}

// StorageToolClass is the main class of kafka-storage.sh.
const StorageToolClass = "kafka.tools.StorageTool"

// FormatArgs are the arguments after `java <jvm flags>` that format a KRaft
// node's storage (kafka-storage.sh format) with clusterID, a Kafka Uuid
// (base64url of 16 bytes, e.g. "a3Zsb2cta2Fma2EtZ29sZA").
func (n Node) FormatArgs(classpath, clusterID string) []string {
	return []string{"-cp", classpath, StorageToolClass, "format", "--cluster-id", clusterID, "--config", n.ConfigPath(), "--ignore-formatted"}
}

// Heap is kafka-server-start.sh's KAFKA_HEAP_OPTS default.
const Heap = "1G"

// ServerJVMFlags are the JVM flags kafka-server-start.sh gives the broker
// (through kafka-run-class.sh): the heap (-Xmx and -Xms of heap, "1G" in
// the script), G1 with its pause target, the headless and local JMX
// settings, and the GC log (-loggc) in the node's directory.
func (n Node) ServerJVMFlags(heap string) []string {
	return []string{
		"-Xmx" + heap, "-Xms" + heap,
		"-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
		"-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true",
		"-Xlog:gc*:file=" + filepath.Join(n.Dir, "kafkaServer-gc.log") + ":time,tags:filecount=10,filesize=100M",
		"-Dcom.sun.management.jmxremote", "-Dcom.sun.management.jmxremote.authenticate=false", "-Dcom.sun.management.jmxremote.ssl=false",
	}
}

// ServerArgs are the arguments after `java <jvm flags>` that start the
// broker.
func (n Node) ServerArgs(classpath string) []string {
	return []string{"-cp", classpath, "kafka.Kafka", n.ConfigPath()}
}

// Log4j2Flag points Kafka 4.x (log4j2) at a configuration file.
func Log4j2Flag(file string) string { return "-Dlog4j2.configurationFile=" + file }

// Log4jFlag points Kafka 3.x (log4j 1.2 API, reload4j) at a configuration
// file.
func Log4jFlag(file string) string { return "-Dlog4j.configuration=file:" + file }

// ReadClasspath reads a classpath file written by `mvn
// dependency:build-classpath -Dmdep.outputFile=…`.
func ReadClasspath(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("Apache Kafka classpath: %w", err)
	}
	cp := strings.TrimSpace(string(b))
	if cp == "" {
		return "", fmt.Errorf("Apache Kafka classpath: %s is empty", file)
	}
	return cp, nil
}
