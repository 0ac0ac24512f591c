package server

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// brokerConfigDefs are the server.properties keys kvlog reads, with Apache
// Kafka's names, types and defaults (kvlog.* keys are kvlog's own). Keys
// marked dynamic can be changed at runtime with AlterConfigs /
// IncrementalAlterConfigs on a BROKER resource.
var brokerConfigDefs = func() map[string]*configDef {
	defs := []*configDef{
		// Identity and listeners.
		{name: "broker.id", typ: kmsg.ConfigTypeInt, def: "0", check: atLeast(0), doc: "This broker's id (alias of node.id)."},
		{name: "node.id", typ: kmsg.ConfigTypeInt, def: "0", check: atLeast(0), doc: "This broker's id (alias of broker.id)."},
		{name: "listeners", typ: kmsg.ConfigTypeString, def: "PLAINTEXT://127.0.0.1:9092", check: nonEmpty, doc: "Comma-separated NAME://host:port addresses to listen on."},
		{name: "advertised.listeners", typ: kmsg.ConfigTypeString, noDefault: true, doc: "Addresses given to clients in Metadata, per listener name; default: listeners."},
		{name: "listener.security.protocol.map", typ: kmsg.ConfigTypeString, def: "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL", doc: "Listener name to security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL); docs/security.md."},
		{name: "log.dirs", typ: kmsg.ConfigTypeString, noDefault: true, doc: "Comma-separated data directories; default: log.dir."},
		{name: "log.dir", typ: kmsg.ConfigTypeString, def: "./data", doc: "Data directory used when log.dirs is not set."},
		{name: "zookeeper.connect", typ: kmsg.ConfigTypeString, noDefault: true, doc: "ZooKeeper connect string; empty runs the embedded local metadata store."},
		// Cluster mode (zookeeper.connect set): ZooKeeper, replication, controller.
		{name: "zookeeper.session.timeout.ms", typ: kmsg.ConfigTypeInt, def: "18000", check: atLeast(1), doc: "ZooKeeper session timeout."},
		{name: "zookeeper.connection.timeout.ms", typ: kmsg.ConfigTypeInt, noDefault: true, check: atLeast(1), doc: "How long to wait for a ZooKeeper session at start-up; default: the session timeout."},
		{name: "inter.broker.listener.name", typ: kmsg.ConfigTypeString, noDefault: true, doc: "Listener brokers use to reach each other (exclusive with security.inter.broker.protocol); default: the first listener."},
		{name: "replica.lag.time.max.ms", typ: kmsg.ConfigTypeLong, def: "30000", check: atLeast(1), doc: "A follower not caught up for this long leaves the ISR."},
		{name: "replica.fetch.wait.max.ms", typ: kmsg.ConfigTypeInt, def: "500", check: atLeast(0), doc: "Follower fetch long-poll time."},
		{name: "replica.fetch.min.bytes", typ: kmsg.ConfigTypeInt, def: "1", check: atLeast(1), doc: "Follower fetch minimum bytes."},
		{name: "replica.fetch.max.bytes", typ: kmsg.ConfigTypeInt, def: "1048576", check: atLeast(0), doc: "Follower fetch bytes per partition."},
		{name: "replica.fetch.response.max.bytes", typ: kmsg.ConfigTypeInt, def: "10485760", check: atLeast(0), doc: "Follower fetch bytes per response."},
		{name: "replica.fetch.backoff.ms", typ: kmsg.ConfigTypeInt, def: "1000", check: atLeast(0), doc: "Follower back-off after a fetch error."},
		{name: "replica.socket.timeout.ms", typ: kmsg.ConfigTypeInt, def: "30000", check: atLeast(1), doc: "Timeout of inter-broker requests (beyond the fetch wait)."},
		{name: "controlled.shutdown.enable", typ: kmsg.ConfigTypeBoolean, def: "true", doc: "Move leadership away before shutting down (SIGTERM)."},
		{name: "controlled.shutdown.max.retries", typ: kmsg.ConfigTypeInt, def: "3", check: atLeast(0), doc: "Controlled shutdown attempts."},
		{name: "controlled.shutdown.retry.backoff.ms", typ: kmsg.ConfigTypeLong, def: "5000", check: atLeast(0), doc: "Pause between controlled shutdown attempts."},
		{name: "auto.leader.rebalance.enable", typ: kmsg.ConfigTypeBoolean, def: "true", doc: "Move leadership back to preferred replicas periodically."},
		{name: "leader.imbalance.check.interval.seconds", typ: kmsg.ConfigTypeLong, def: "300", check: atLeast(1), doc: "How often the controller runs preferred leader election."},
		// Topics.
		{name: "num.partitions", typ: kmsg.ConfigTypeInt, def: "1", check: atLeast(1), doc: "Partitions of auto-created topics and of CreateTopics with -1."},
		{name: "default.replication.factor", typ: kmsg.ConfigTypeInt, def: "1", check: atLeast(1), doc: "Replication factor of auto-created topics and of CreateTopics with -1."},
		{name: "auto.create.topics.enable", typ: kmsg.ConfigTypeBoolean, def: "true", doc: "Create unknown topics named in Metadata requests that allow it."},
		{name: "delete.topic.enable", typ: kmsg.ConfigTypeBoolean, def: "true", doc: "Allow DeleteTopics."},
		// Network.
		{name: "socket.request.max.bytes", typ: kmsg.ConfigTypeInt, def: "104857600", check: atLeast(1), doc: "Largest request frame accepted; larger frames close the connection."},
		{name: "socket.send.buffer.bytes", typ: kmsg.ConfigTypeInt, def: "102400", doc: "SO_SNDBUF of client connections; -1 keeps the OS default."},
		{name: "socket.receive.buffer.bytes", typ: kmsg.ConfigTypeInt, def: "102400", doc: "SO_RCVBUF of client connections; -1 keeps the OS default."},
		{name: "connections.max.idle.ms", typ: kmsg.ConfigTypeLong, def: "600000", check: atLeast(1), doc: "Close connections idle this long."},
		{name: "max.connections", typ: kmsg.ConfigTypeInt, def: "10000", check: atLeast(0), doc: "Maximum concurrent client connections; further ones are closed at accept. Kafka's default is unlimited; kvlog's 10000 bounds the broker's memory for connections (about 30 KiB each when idle) and stays below common file descriptor limits."},
		{name: "max.connections.per.ip", typ: kmsg.ConfigTypeInt, def: "1000", check: atLeast(1), doc: "Maximum concurrent connections from one IP address; further ones are closed at accept. Kafka's default is unlimited; kvlog's 1000 keeps one host from taking more than a tenth of max.connections."},
		{name: "queued.max.requests", typ: kmsg.ConfigTypeInt, def: "500", check: atLeast(1), doc: "Pipelined requests read ahead per connection before reading pauses (bounded to 500)."},
		{name: "queued.max.request.bytes", typ: kmsg.ConfigTypeLong, def: "536870912", doc: "Memory of requests read and not yet answered, across connections; a connection waits before reading a larger request once it is used up (-1 or 0: unbounded). Kafka's default is unbounded; kvlog's 512 MiB (five socket.request.max.bytes) holds hundreds of producers' pipelined batches while a flood of large requests cannot exhaust memory. Must be at least socket.request.max.bytes."},
		// Topic defaults (synonyms of topic keys).
		{name: "log.cleanup.policy", typ: kmsg.ConfigTypeList, def: "delete", check: listOf("compact", "delete"), dynamic: true, doc: "Default cleanup.policy."},
		{name: "compression.type", typ: kmsg.ConfigTypeString, def: "producer", check: oneOf("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"), dynamic: true, doc: "Default compression.type."},
		{name: "log.segment.delete.delay.ms", typ: kmsg.ConfigTypeLong, def: "60000", check: atLeast(0), dynamic: true, doc: "Default file.delete.delay.ms."},
		{name: "log.flush.interval.messages", typ: kmsg.ConfigTypeLong, def: maxLong, check: atLeast(1), dynamic: true, doc: "Default flush.messages."},
		{name: "log.flush.interval.ms", typ: kmsg.ConfigTypeLong, noDefault: true, check: atLeast(0), dynamic: true, doc: "Default flush.ms."},
		{name: "log.index.interval.bytes", typ: kmsg.ConfigTypeInt, def: "4096", check: atLeast(0), dynamic: true, doc: "Default index.interval.bytes."},
		{name: "message.max.bytes", typ: kmsg.ConfigTypeInt, def: "1048588", check: atLeast(0), dynamic: true, doc: "Default max.message.bytes."},
		{name: "log.message.timestamp.type", typ: kmsg.ConfigTypeString, def: "CreateTime", check: oneOf("CreateTime", "LogAppendTime"), dynamic: true, doc: "Default message.timestamp.type."},
		{name: "log.message.timestamp.before.max.ms", typ: kmsg.ConfigTypeLong, def: maxLong, check: atLeast(0), dynamic: true, doc: "Default message.timestamp.before.max.ms."},
		{name: "log.message.timestamp.after.max.ms", typ: kmsg.ConfigTypeLong, def: maxLong, check: atLeast(0), dynamic: true, doc: "Default message.timestamp.after.max.ms."},
		{name: "min.insync.replicas", typ: kmsg.ConfigTypeInt, def: "1", check: atLeast(1), dynamic: true, doc: "Default min.insync.replicas."},
		{name: "log.preallocate", typ: kmsg.ConfigTypeBoolean, def: "false", dynamic: true, doc: "Default preallocate."},
		{name: "log.retention.bytes", typ: kmsg.ConfigTypeLong, def: "-1", dynamic: true, doc: "Default retention.bytes."},
		{name: "log.retention.ms", typ: kmsg.ConfigTypeLong, noDefault: true, check: atLeast(-1), dynamic: true, doc: "Default retention.ms (wins over minutes and hours)."},
		{name: "log.retention.minutes", typ: kmsg.ConfigTypeInt, noDefault: true, doc: "Default retention in minutes (wins over hours)."},
		{name: "log.retention.hours", typ: kmsg.ConfigTypeInt, def: "168", doc: "Default retention in hours."},
		{name: "log.segment.bytes", typ: kmsg.ConfigTypeInt, def: "1073741824", check: atLeast(14), dynamic: true, doc: "Default segment.bytes."},
		{name: "log.index.size.max.bytes", typ: kmsg.ConfigTypeInt, def: "10485760", check: atLeast(4), dynamic: true, doc: "Default segment.index.bytes."},
		{name: "log.roll.ms", typ: kmsg.ConfigTypeLong, noDefault: true, check: atLeast(1), dynamic: true, doc: "Default segment.ms (wins over log.roll.hours)."},
		{name: "log.roll.hours", typ: kmsg.ConfigTypeInt, def: "168", check: atLeast(1), doc: "Default segment roll time in hours."},
		{name: "log.roll.jitter.ms", typ: kmsg.ConfigTypeLong, noDefault: true, check: atLeast(0), dynamic: true, doc: "Default segment.jitter.ms."},
		{name: "log.roll.jitter.hours", typ: kmsg.ConfigTypeInt, def: "0", check: atLeast(0), doc: "Default segment jitter in hours."},
		{name: "unclean.leader.election.enable", typ: kmsg.ConfigTypeBoolean, def: "false", dynamic: true, doc: "Default unclean.leader.election.enable."},
		{name: "log.retention.check.interval.ms", typ: kmsg.ConfigTypeLong, def: "300000", check: atLeast(1), doc: "How often retention (time, size, log start offset) is enforced."},
		{name: "log.flush.offset.checkpoint.interval.ms", typ: kmsg.ConfigTypeInt, def: "60000", check: atLeast(1), doc: "How often recovery points and log start offsets are checkpointed."},
		{name: "num.recovery.threads.per.data.dir", typ: kmsg.ConfigTypeInt, def: "2", check: atLeast(1), doc: "Threads opening and recovering logs at start-up (kvlog: total, not per dir)."},
		// Log cleaner (package cleaner, wired in cleaner.go); dynamic keys apply live.
		{name: "log.cleaner.enable", typ: kmsg.ConfigTypeBoolean, def: "true", doc: "Run the log cleaner for compacted topics."},
		{name: "log.cleaner.threads", typ: kmsg.ConfigTypeInt, def: "1", check: between(0, maxCleanerThreads), dynamic: true, doc: "Cleaner threads (0: no cleaning; at most 1024). A dynamic change may at most halve or double it."},
		{name: "log.cleaner.dedupe.buffer.size", typ: kmsg.ConfigTypeLong, def: "134217728", check: atLeast(0), dynamic: true, doc: "Total offset-map memory across cleaner threads, allocated when the threads start: at most 2 GiB per thread and half the machine's memory."},
		{name: "log.cleaner.io.buffer.size", typ: kmsg.ConfigTypeInt, def: "524288", check: atLeast(0), dynamic: true, doc: "Cleaner I/O buffer memory across threads (accepted and reported; kvlog's cleaner reads segments through mappings)."},
		{name: "log.cleaner.io.buffer.load.factor", typ: kmsg.ConfigTypeDouble, def: "0.9", check: betweenFloat(0.01, 1), dynamic: true, doc: "Offset map load factor."},
		{name: "log.cleaner.io.max.bytes.per.second", typ: kmsg.ConfigTypeDouble, def: "1.7976931348623157E308", check: betweenFloat(0, math.MaxFloat64), dynamic: true, doc: "Cleaner I/O throttle (read + write)."},
		{name: "log.cleaner.backoff.ms", typ: kmsg.ConfigTypeLong, def: "15000", check: atLeast(0), dynamic: true, doc: "Cleaner sleep when there is nothing to clean."},
		{name: "log.cleaner.min.cleanable.ratio", typ: kmsg.ConfigTypeDouble, def: "0.5", check: betweenFloat(0, 1), dynamic: true, doc: "Default min.cleanable.dirty.ratio."},
		{name: "log.cleaner.delete.retention.ms", typ: kmsg.ConfigTypeLong, def: "86400000", check: atLeast(0), dynamic: true, doc: "Default delete.retention.ms."},
		{name: "log.cleaner.min.compaction.lag.ms", typ: kmsg.ConfigTypeLong, def: "0", check: atLeast(0), dynamic: true, doc: "Default min.compaction.lag.ms."},
		{name: "log.cleaner.max.compaction.lag.ms", typ: kmsg.ConfigTypeLong, def: maxLong, check: atLeast(1), dynamic: true, doc: "Default max.compaction.lag.ms."},
		// Group coordinator (stored now; used by the coordinator).
		{name: "offsets.topic.num.partitions", typ: kmsg.ConfigTypeInt, def: "50", check: atLeast(1), doc: "Partitions of __consumer_offsets."},
		{name: "offsets.topic.replication.factor", typ: kmsg.ConfigTypeShort, def: "3", check: atLeast(1), doc: "Replication factor of __consumer_offsets in cluster mode; its creation fails (COORDINATOR_NOT_AVAILABLE) until this many brokers are alive, as in Kafka since KIP-115. A single node always uses 1."},
		{name: "offsets.commit.timeout.ms", typ: kmsg.ConfigTypeInt, def: "5000", check: atLeast(1), doc: "Cluster mode: how long a write to __consumer_offsets (offset commit, group metadata) waits for every in-sync replica before failing."},
		{name: "offsets.topic.segment.bytes", typ: kmsg.ConfigTypeInt, def: "104857600", check: atLeast(1), doc: "segment.bytes of __consumer_offsets."},
		{name: "offsets.retention.minutes", typ: kmsg.ConfigTypeInt, def: "10080", check: atLeast(1), doc: "How long committed offsets of empty groups are kept."},
		{name: "group.initial.rebalance.delay.ms", typ: kmsg.ConfigTypeInt, def: "3000", check: atLeast(0), doc: "Delay of the first rebalance of a new group."},
		{name: "group.min.session.timeout.ms", typ: kmsg.ConfigTypeInt, def: "6000", check: atLeast(0), doc: "Smallest session timeout a member may ask for."},
		{name: "group.max.session.timeout.ms", typ: kmsg.ConfigTypeInt, def: "1800000", check: atLeast(0), doc: "Largest session timeout a member may ask for."},
		{name: "group.max.size", typ: kmsg.ConfigTypeInt, def: maxInt, check: atLeast(1), doc: "Maximum members of one group."},
		// Transaction coordinator (package txn, wired in txns.go).
		{name: "transaction.state.log.num.partitions", typ: kmsg.ConfigTypeInt, def: "50", check: atLeast(1), doc: "Partitions of __transaction_state."},
		{name: "transaction.state.log.replication.factor", typ: kmsg.ConfigTypeShort, def: "3", check: atLeast(1), doc: "Replication factor of __transaction_state in cluster mode; its creation fails until this many brokers are alive. A single node always uses 1."},
		{name: "transaction.state.log.min.isr", typ: kmsg.ConfigTypeInt, def: "2", check: atLeast(1), doc: "min.insync.replicas of __transaction_state in cluster mode (a single node uses 1)."},
		{name: "transaction.state.log.segment.bytes", typ: kmsg.ConfigTypeInt, def: "104857600", check: atLeast(1), doc: "segment.bytes of __transaction_state."},
		{name: "request.timeout.ms", typ: kmsg.ConfigTypeInt, def: "30000", check: atLeast(1), doc: "How long a write to __transaction_state waits for the high watermark (every in-sync replica; a single node's fsync) before the transaction coordinator fails it."},
		{name: "transaction.max.timeout.ms", typ: kmsg.ConfigTypeInt, def: "900000", check: atLeast(1), doc: "Largest transaction timeout a producer may ask for (INVALID_TRANSACTION_TIMEOUT above)."},
		{name: "transactional.id.expiration.ms", typ: kmsg.ConfigTypeInt, def: "604800000", check: atLeast(1), doc: "How long a transactional id without a transaction in progress is kept after its last use."},
		{name: "transaction.abort.timed.out.transaction.cleanup.interval.ms", typ: kmsg.ConfigTypeInt, def: "10000", check: atLeast(1), doc: "How often transactions past their timeout are aborted."},
		{name: "transaction.remove.expired.transaction.cleanup.interval.ms", typ: kmsg.ConfigTypeInt, def: "3600000", check: atLeast(1), doc: "How often expired transactional ids are removed."},
		// kvlog's own keys.
		{name: "kvlog.fsync.acks.all", typ: kmsg.ConfigTypeBoolean, def: "true", doc: "while no other replica holds the data, the high watermark passes only fsynced records (group commit after every append), so acks=all is acknowledged after the fsync."},
		{name: "kvlog.http.listener", typ: kmsg.ConfigTypeString, def: "127.0.0.1:9644", doc: "host:port of the HTTP listener (/metrics, /healthz, /cleaner, /debug/pprof); empty disables it."},
		{name: "kvlog.max.open.segments", typ: kmsg.ConfigTypeInt, def: "0", check: atLeast(0), doc: "Bound on inactive segments with open files and mappings; 0 is the engine default."},
		{name: "kvlog.max.open.files", typ: kmsg.ConfigTypeInt, def: "0", check: between(0, maxOpenFilesBound), doc: "Budget of file descriptors the storage engine holds open (segments, indexes, checkpoints); cold segments, active ones too, are closed to stay under it and reopened on demand. 0: the process's open file limit (RLIMIT_NOFILE) less max.connections plus 512 for sockets and the rest, at most half the limit. At most the open file limit."},
		{name: "kvlog.cleaner.bounded.tombstones", typ: kmsg.ConfigTypeBoolean, def: "true", dynamic: true, doc: "Also clean a compacted partition whose tombstones passed their delete horizon, or whose dirty records are older than delete.retention.ms, whatever its dirty ratio, so tombstones of quiet partitions do not live forever (false: Kafka's rules only)."},
		{name: "kvlog.key.index.enable", typ: kmsg.ConfigTypeBoolean, def: "true", dynamic: true, doc: "Default kvlog.key.index.enable: compacted partitions keep a key index (key digest → newest offset, 20 to 32 bytes of RAM per key, checkpointed to kvlog-key-index.checkpoint) serving lookups of a key's latest value over HTTP (/v1/topics/{topic}/keys/{key})."},
		{name: "kvlog.cluster.id", typ: kmsg.ConfigTypeString, noDefault: true, doc: "Cluster id reported in Metadata; default: generated once and kept in the metadata store."},
	}
	m := make(map[string]*configDef, len(defs))
	for _, d := range defs {
		m[d.name] = d
	}
	return m
}()

// Listener is one listener address: NAME://host:port, with the security
// protocol listener.security.protocol.map gives its name.
type Listener struct {
	Name     string
	Host     string
	Port     int
	Protocol string // PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
}

func (l Listener) String() string {
	return l.Name + "://" + net.JoinHostPort(l.Host, strconv.Itoa(l.Port))
}

// Addr is host:port for net.Listen.
func (l Listener) Addr() string { return net.JoinHostPort(l.Host, strconv.Itoa(l.Port)) }

// Config is the broker's static configuration, parsed from a
// server.properties file (plus flag overrides) and validated.
type Config struct {
	NodeID                   int32
	Listeners                []Listener
	AdvertisedListeners      []Listener // same names as Listeners
	LogDirs                  []string
	ZooKeeperConnect         string
	NumPartitions            int32
	DefaultReplicationFactor int16
	AutoCreateTopics         bool
	DeleteTopicEnable        bool
	SocketRequestMaxBytes    int32
	SocketSendBufferBytes    int
	SocketReceiveBufferBytes int
	ConnectionsMaxIdle       time.Duration
	MaxConnections           int
	MaxConnectionsPerIP      int
	QueuedMaxRequests        int
	QueuedMaxRequestBytes    int64 // <= 0: unbounded
	FsyncAcksAll             bool
	HTTPListener             string
	MaxOpenSegments          int
	MaxOpenFiles             int
	RetentionCheckInterval   time.Duration
	CheckpointInterval       time.Duration
	RecoveryThreads          int
	ClusterID                string
	// OffsetsTopicNumPartitions and friends are kept for the group coordinator.
	OffsetsTopicNumPartitions int32
	// InterBrokerListener is the listener other brokers reach this one on
	// (inter.broker.listener.name, security.inter.broker.protocol, or the
	// first listener), with its protocol and, for SASL, the mechanism
	// (sasl.mechanism.inter.broker.protocol).
	InterBrokerListener  string
	InterBrokerProtocol  string
	InterBrokerMechanism string

	// Static holds every known key set in the file (after validation): the
	// STATIC_BROKER_CONFIG layer of DescribeConfigs and topic defaults.
	Static map[string]string
}

// DefaultConfig is the configuration of kvlogd with no file and no flags.
func DefaultConfig() *Config {
	c, err := ParseConfig(nil, nil)
	if err != nil {
		panic(err) // the defaults are valid
	}
	return c
}

// LoadConfigFile reads a server.properties file and applies overrides
// (flags) on top of it. Unknown keys are logged as warnings.
func LoadConfigFile(path string, overrides map[string]string, logger *slog.Logger) (*Config, error) {
	var props []Property
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		props, err = ParseProperties(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	keys := make([]string, 0, len(overrides))
	for k := range overrides {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		props = append(props, Property{Key: k, Value: overrides[k]})
	}
	return ParseConfig(props, logger)
}

// ParseConfig validates properties into a Config. A later property
// overrides an earlier one with the same key. Unknown keys warn through
// logger (nil: silent); an invalid value is an error naming the key.
func ParseConfig(props []Property, logger *slog.Logger) (*Config, error) {
	static := make(map[string]string)
	var security []string
	for _, p := range props {
		if why := refusedSecurity(p.Key, p.Value); why != "" {
			security = append(security, p.Key+" ("+why+")")
			continue
		}
		d := brokerDef(p.Key)
		if d == nil {
			if _, isTopicKey := topicConfigDefs[p.Key]; isTopicKey {
				if logger != nil {
					logger.Warn("topic config key in server.properties is ignored; use the broker synonym", "key", p.Key, "line", p.Line)
				}
				continue
			}
			if logger != nil {
				logger.Warn("unknown config key ignored", "key", p.Key, "line", p.Line)
			}
			continue
		}
		v := strings.TrimSpace(p.Value)
		if err := d.validate(v); err != nil {
			return nil, fmt.Errorf("config %s: %w", p.Key, err)
		}
		static[p.Key] = v
	}
	l := &configLayers{static: static}
	get := func(name string) string { return l.brokerValue(name).value }
	c := &Config{Static: static}

	// node.id / broker.id
	bid, bok := static["broker.id"]
	nid, nok := static["node.id"]
	if bok && nok && mustInt(bid) != mustInt(nid) {
		return nil, fmt.Errorf("config node.id: %s differs from broker.id %s", nid, bid)
	}
	c.NodeID = int32(mustInt(get("broker.id")))
	if nok {
		c.NodeID = int32(mustInt(nid))
	}

	protoMap, err := parseProtocolMap(get("listener.security.protocol.map"))
	if err != nil {
		return nil, fmt.Errorf("config listener.security.protocol.map: %w", err)
	}
	if err := refuseSecurity(security); err != nil {
		return nil, err
	}
	c.Listeners, err = parseListeners(get("listeners"), protoMap)
	if err != nil {
		return nil, fmt.Errorf("config listeners: %w", err)
	}
	if adv, ok := static["advertised.listeners"]; ok {
		c.AdvertisedListeners, err = parseListeners(adv, protoMap)
		if err != nil {
			return nil, fmt.Errorf("config advertised.listeners: %w", err)
		}
		for _, a := range c.AdvertisedListeners {
			if !hasListener(c.Listeners, a.Name) {
				return nil, fmt.Errorf("config advertised.listeners: listener %s is not in listeners", a.Name)
			}
			if a.Host == "" || a.Host == "0.0.0.0" || a.Host == "::" {
				return nil, fmt.Errorf("config advertised.listeners: %s cannot use the nonroutable meta-address %q", a.Name, a.Host)
			}
		}
		for _, l := range c.Listeners {
			if !hasListener(c.AdvertisedListeners, l.Name) {
				c.AdvertisedListeners = append(c.AdvertisedListeners, l)
			}
		}
	} else {
		c.AdvertisedListeners = append([]Listener(nil), c.Listeners...)
	}
	for i, a := range c.AdvertisedListeners {
		if a.Host == "0.0.0.0" || a.Host == "::" {
			return nil, fmt.Errorf("config advertised.listeners: %s listens on the meta-address %q; set advertised.listeners to a routable host", a.Name, a.Host)
		}
		if a.Host == "" {
			h, err := os.Hostname()
			if err != nil {
				return nil, fmt.Errorf("config listeners: %s has no host and the hostname is unknown: %w", a.Name, err)
			}
			c.AdvertisedListeners[i].Host = h
		}
	}

	dirs := get("log.dir")
	if v, ok := static["log.dirs"]; ok {
		dirs = v
	}
	c.LogDirs = splitList(dirs)
	if len(c.LogDirs) == 0 {
		return nil, errors.New("config log.dirs: no directory given")
	}
	c.ZooKeeperConnect = get("zookeeper.connect")
	c.NumPartitions = int32(mustInt(get("num.partitions")))
	rf := mustInt(get("default.replication.factor"))
	if rf > math.MaxInt16 {
		return nil, fmt.Errorf("config default.replication.factor: %d is too large", rf)
	}
	c.DefaultReplicationFactor = int16(rf)
	c.AutoCreateTopics = mustBool(get("auto.create.topics.enable"))
	c.DeleteTopicEnable = mustBool(get("delete.topic.enable"))
	c.SocketRequestMaxBytes = int32(mustInt(get("socket.request.max.bytes")))
	c.SocketSendBufferBytes = int(mustInt(get("socket.send.buffer.bytes")))
	c.SocketReceiveBufferBytes = int(mustInt(get("socket.receive.buffer.bytes")))
	c.ConnectionsMaxIdle = msDuration(mustInt(get("connections.max.idle.ms")))
	c.MaxConnections = int(mustInt(get("max.connections")))
	c.MaxConnectionsPerIP = int(mustInt(get("max.connections.per.ip")))
	c.QueuedMaxRequestBytes = mustInt(get("queued.max.request.bytes"))
	c.QueuedMaxRequests = min(int(mustInt(get("queued.max.requests"))), 500)
	c.FsyncAcksAll = mustBool(get("kvlog.fsync.acks.all"))
	c.HTTPListener = get("kvlog.http.listener")
	c.MaxOpenSegments = int(mustInt(get("kvlog.max.open.segments")))
	c.MaxOpenFiles = int(mustInt(get("kvlog.max.open.files")))
	c.RetentionCheckInterval = msDuration(mustInt(get("log.retention.check.interval.ms")))
	c.CheckpointInterval = msDuration(mustInt(get("log.flush.offset.checkpoint.interval.ms")))
	c.RecoveryThreads = int(mustInt(get("num.recovery.threads.per.data.dir")))
	c.ClusterID = get("kvlog.cluster.id")
	c.OffsetsTopicNumPartitions = int32(mustInt(get("offsets.topic.num.partitions")))
	if err := parseSecurity(c, static, get); err != nil {
		return nil, err
	}

	// The rules across keys, shared with dynamic broker configs.
	if err := l.validateBroker(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

func (c *Config) layers() *configLayers { return &configLayers{static: c.Static} }

func hasListener(ls []Listener, name string) bool {
	for _, l := range ls {
		if l.Name == name {
			return true
		}
	}
	return false
}

func parseProtocolMap(v string) (map[string]string, error) {
	m := make(map[string]string)
	for _, item := range splitList(v) {
		name, proto, ok := strings.Cut(item, ":")
		if !ok || name == "" || proto == "" {
			return nil, fmt.Errorf("entry %q is not NAME:PROTOCOL", item)
		}
		m[strings.ToUpper(strings.TrimSpace(name))] = strings.ToUpper(strings.TrimSpace(proto))
	}
	return m, nil
}

// parseListeners parses "NAME://host:port,..." (host may be empty or a
// bracketed IPv6 address); each name needs an entry in protoMap.
func parseListeners(v string, protoMap map[string]string) ([]Listener, error) {
	var out []Listener
	seenPort := map[int]string{}
	for _, item := range splitList(v) {
		name, hostport, ok := strings.Cut(item, "://")
		if !ok {
			return nil, fmt.Errorf("%q is not NAME://host:port", item)
		}
		name = strings.ToUpper(name)
		host, portStr, err := net.SplitHostPort(hostport)
		if err != nil {
			return nil, fmt.Errorf("%q: %v", item, err)
		}
		port, err := strconv.Atoi(portStr)
		if err != nil || port < 0 || port > 65535 {
			return nil, fmt.Errorf("%q: bad port %q", item, portStr)
		}
		proto, ok := protoMap[name]
		if !ok {
			return nil, fmt.Errorf("listener %s has no entry in listener.security.protocol.map", name)
		}
		switch proto {
		case "PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL":
		default:
			return nil, fmt.Errorf("listener %s: unknown security protocol %s", name, proto)
		}
		if hasListener(out, name) {
			return nil, fmt.Errorf("listener name %s appears twice", name)
		}
		if other, dup := seenPort[port]; dup && port != 0 {
			return nil, fmt.Errorf("listeners %s and %s use the same port %d", other, name, port)
		}
		seenPort[port] = name
		out = append(out, Listener{Name: name, Host: host, Port: port, Protocol: proto})
	}
	if len(out) == 0 {
		return nil, errors.New("no listener given")
	}
	return out, nil
}
