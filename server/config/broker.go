package config

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

// brokerDefs are the server.properties keys kvlog reads, with Apache
// Kafka's names, types and defaults (kvlog.* keys are kvlog's own). Keys
// marked dynamic can be changed at runtime with AlterConfigs /
// IncrementalAlterConfigs on a BROKER resource.
var brokerDefs = func() map[string]*Def {
	defs := []*Def{
		// Identity and listeners.
		{Name: "broker.id", Type: kmsg.ConfigTypeInt, Default: "0", Check: atLeast(0), Doc: "This broker's id (alias of node.id)."},
		{Name: "node.id", Type: kmsg.ConfigTypeInt, Default: "0", Check: atLeast(0), Doc: "This broker's id (alias of broker.id)."},
		{Name: "listeners", Type: kmsg.ConfigTypeString, Default: "PLAINTEXT://127.0.0.1:9092", Check: nonEmpty, Doc: "Comma-separated NAME://host:port addresses to listen on."},
		{Name: "advertised.listeners", Type: kmsg.ConfigTypeString, NoDefault: true, Doc: "Addresses given to clients in Metadata, per listener name; default: listeners."},
		{Name: "listener.security.protocol.map", Type: kmsg.ConfigTypeString, Default: "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL", Doc: "Listener name to security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL); docs/security.md."},
		{Name: "log.dirs", Type: kmsg.ConfigTypeString, NoDefault: true, Doc: "Comma-separated data directories; default: log.dir."},
		{Name: "log.dir", Type: kmsg.ConfigTypeString, Default: "./data", Doc: "Data directory used when log.dirs is not set."},
		{Name: "zookeeper.connect", Type: kmsg.ConfigTypeString, NoDefault: true, Doc: "ZooKeeper connect string; empty runs the embedded local metadata store."},
		// Cluster mode (zookeeper.connect set): ZooKeeper, replication, controller.
		{Name: "zookeeper.session.timeout.ms", Type: kmsg.ConfigTypeInt, Default: "18000", Check: atLeast(1), Doc: "ZooKeeper session timeout."},
		{Name: "zookeeper.connection.timeout.ms", Type: kmsg.ConfigTypeInt, NoDefault: true, Check: atLeast(1), Doc: "How long to wait for a ZooKeeper session at start-up; default: the session timeout."},
		{Name: "inter.broker.listener.name", Type: kmsg.ConfigTypeString, NoDefault: true, Doc: "Listener brokers use to reach each other (exclusive with security.inter.broker.protocol); default: the first listener."},
		{Name: "replica.lag.time.max.ms", Type: kmsg.ConfigTypeLong, Default: "30000", Check: atLeast(1), Doc: "A follower not caught up for this long leaves the ISR."},
		{Name: "replica.fetch.wait.max.ms", Type: kmsg.ConfigTypeInt, Default: "500", Check: atLeast(0), Doc: "Follower fetch long-poll time."},
		{Name: "replica.fetch.min.bytes", Type: kmsg.ConfigTypeInt, Default: "1", Check: atLeast(1), Doc: "Follower fetch minimum bytes."},
		{Name: "replica.fetch.max.bytes", Type: kmsg.ConfigTypeInt, Default: "1048576", Check: atLeast(0), Doc: "Follower fetch bytes per partition."},
		{Name: "replica.fetch.response.max.bytes", Type: kmsg.ConfigTypeInt, Default: "10485760", Check: atLeast(0), Doc: "Follower fetch bytes per response."},
		{Name: "replica.fetch.backoff.ms", Type: kmsg.ConfigTypeInt, Default: "1000", Check: atLeast(0), Doc: "Follower back-off after a fetch error."},
		{Name: "replica.socket.timeout.ms", Type: kmsg.ConfigTypeInt, Default: "30000", Check: atLeast(1), Doc: "Timeout of inter-broker requests (beyond the fetch wait)."},
		{Name: "controlled.shutdown.enable", Type: kmsg.ConfigTypeBoolean, Default: "true", Doc: "Move leadership away before shutting down (SIGTERM)."},
		{Name: "controlled.shutdown.max.retries", Type: kmsg.ConfigTypeInt, Default: "3", Check: atLeast(0), Doc: "Controlled shutdown attempts."},
		{Name: "controlled.shutdown.retry.backoff.ms", Type: kmsg.ConfigTypeLong, Default: "5000", Check: atLeast(0), Doc: "Pause between controlled shutdown attempts."},
		{Name: "auto.leader.rebalance.enable", Type: kmsg.ConfigTypeBoolean, Default: "true", Doc: "Move leadership back to preferred replicas periodically."},
		{Name: "leader.imbalance.check.interval.seconds", Type: kmsg.ConfigTypeLong, Default: "300", Check: atLeast(1), Doc: "How often the controller runs preferred leader election."},
		// Topics.
		{Name: "num.partitions", Type: kmsg.ConfigTypeInt, Default: "1", Check: atLeast(1), Doc: "Partitions of auto-created topics and of CreateTopics with -1."},
		{Name: "default.replication.factor", Type: kmsg.ConfigTypeInt, Default: "1", Check: atLeast(1), Doc: "Replication factor of auto-created topics and of CreateTopics with -1."},
		{Name: "auto.create.topics.enable", Type: kmsg.ConfigTypeBoolean, Default: "true", Doc: "Create unknown topics named in Metadata requests that allow it."},
		{Name: "delete.topic.enable", Type: kmsg.ConfigTypeBoolean, Default: "true", Doc: "Allow DeleteTopics."},
		// Network.
		{Name: "socket.request.max.bytes", Type: kmsg.ConfigTypeInt, Default: "104857600", Check: atLeast(1), Doc: "Largest request frame accepted; larger frames close the connection."},
		{Name: "socket.send.buffer.bytes", Type: kmsg.ConfigTypeInt, Default: "102400", Doc: "SO_SNDBUF of client connections; -1 keeps the OS default."},
		{Name: "socket.receive.buffer.bytes", Type: kmsg.ConfigTypeInt, Default: "102400", Doc: "SO_RCVBUF of client connections; -1 keeps the OS default."},
		{Name: "connections.max.idle.ms", Type: kmsg.ConfigTypeLong, Default: "600000", Check: atLeast(1), Doc: "Close connections idle this long."},
		{Name: "max.connections", Type: kmsg.ConfigTypeInt, Default: "10000", Check: atLeast(0), Doc: "Maximum concurrent client connections; further ones are closed at accept. Kafka's default is unlimited; kvlog's 10000 bounds the broker's memory for connections (about 30 KiB each when idle) and stays below common file descriptor limits."},
		{Name: "max.connections.per.ip", Type: kmsg.ConfigTypeInt, Default: "1000", Check: atLeast(1), Doc: "Maximum concurrent connections from one IP address; further ones are closed at accept. Kafka's default is unlimited; kvlog's 1000 keeps one host from taking more than a tenth of max.connections."},
		{Name: "queued.max.requests", Type: kmsg.ConfigTypeInt, Default: "500", Check: atLeast(1), Doc: "Pipelined requests read ahead per connection before reading pauses (bounded to 500)."},
		{Name: "queued.max.request.bytes", Type: kmsg.ConfigTypeLong, Default: "536870912", Doc: "Memory of requests read and not yet answered, across connections; a connection waits before reading a larger request once it is used up (-1 or 0: unbounded). Kafka's default is unbounded; kvlog's 512 MiB (five socket.request.max.bytes) holds hundreds of producers' pipelined batches while a flood of large requests cannot exhaust memory. Must be at least socket.request.max.bytes."},
		// Topic defaults (synonyms of topic keys).
		{Name: "log.cleanup.policy", Type: kmsg.ConfigTypeList, Default: "delete", Check: listOf("compact", "delete"), Dynamic: true, Doc: "Default cleanup.policy."},
		{Name: "compression.type", Type: kmsg.ConfigTypeString, Default: "producer", Check: oneOf("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"), Dynamic: true, Doc: "Default compression.type."},
		{Name: "log.segment.delete.delay.ms", Type: kmsg.ConfigTypeLong, Default: "60000", Check: atLeast(0), Dynamic: true, Doc: "Default file.delete.delay.ms."},
		{Name: "log.flush.interval.messages", Type: kmsg.ConfigTypeLong, Default: maxLong, Check: atLeast(1), Dynamic: true, Doc: "Default flush.messages."},
		{Name: "log.flush.interval.ms", Type: kmsg.ConfigTypeLong, NoDefault: true, Check: atLeast(0), Dynamic: true, Doc: "Default flush.ms."},
		{Name: "log.index.interval.bytes", Type: kmsg.ConfigTypeInt, Default: "4096", Check: atLeast(0), Dynamic: true, Doc: "Default index.interval.bytes."},
		{Name: "message.max.bytes", Type: kmsg.ConfigTypeInt, Default: "1048588", Check: atLeast(0), Dynamic: true, Doc: "Default max.message.bytes."},
		{Name: "log.message.timestamp.type", Type: kmsg.ConfigTypeString, Default: "CreateTime", Check: oneOf("CreateTime", "LogAppendTime"), Dynamic: true, Doc: "Default message.timestamp.type."},
		{Name: "log.message.timestamp.before.max.ms", Type: kmsg.ConfigTypeLong, Default: maxLong, Check: atLeast(0), Dynamic: true, Doc: "Default message.timestamp.before.max.ms."},
		{Name: "log.message.timestamp.after.max.ms", Type: kmsg.ConfigTypeLong, Default: maxLong, Check: atLeast(0), Dynamic: true, Doc: "Default message.timestamp.after.max.ms."},
		{Name: "min.insync.replicas", Type: kmsg.ConfigTypeInt, Default: "1", Check: atLeast(1), Dynamic: true, Doc: "Default min.insync.replicas."},
		{Name: "log.preallocate", Type: kmsg.ConfigTypeBoolean, Default: "false", Dynamic: true, Doc: "Default preallocate."},
		{Name: "log.retention.bytes", Type: kmsg.ConfigTypeLong, Default: "-1", Dynamic: true, Doc: "Default retention.bytes."},
		{Name: "log.retention.ms", Type: kmsg.ConfigTypeLong, NoDefault: true, Check: atLeast(-1), Dynamic: true, Doc: "Default retention.ms (wins over minutes and hours)."},
		{Name: "log.retention.minutes", Type: kmsg.ConfigTypeInt, NoDefault: true, Doc: "Default retention in minutes (wins over hours)."},
		{Name: "log.retention.hours", Type: kmsg.ConfigTypeInt, Default: "168", Doc: "Default retention in hours."},
		{Name: "log.segment.bytes", Type: kmsg.ConfigTypeInt, Default: "1073741824", Check: atLeast(14), Dynamic: true, Doc: "Default segment.bytes."},
		{Name: "log.index.size.max.bytes", Type: kmsg.ConfigTypeInt, Default: "10485760", Check: atLeast(4), Dynamic: true, Doc: "Default segment.index.bytes."},
		{Name: "log.roll.ms", Type: kmsg.ConfigTypeLong, NoDefault: true, Check: atLeast(1), Dynamic: true, Doc: "Default segment.ms (wins over log.roll.hours)."},
		{Name: "log.roll.hours", Type: kmsg.ConfigTypeInt, Default: "168", Check: atLeast(1), Doc: "Default segment roll time in hours."},
		{Name: "log.roll.jitter.ms", Type: kmsg.ConfigTypeLong, NoDefault: true, Check: atLeast(0), Dynamic: true, Doc: "Default segment.jitter.ms."},
		{Name: "log.roll.jitter.hours", Type: kmsg.ConfigTypeInt, Default: "0", Check: atLeast(0), Doc: "Default segment jitter in hours."},
		{Name: "unclean.leader.election.enable", Type: kmsg.ConfigTypeBoolean, Default: "false", Dynamic: true, Doc: "Default unclean.leader.election.enable."},
		{Name: "log.retention.check.interval.ms", Type: kmsg.ConfigTypeLong, Default: "300000", Check: atLeast(1), Doc: "How often retention (time, size, log start offset) is enforced."},
		{Name: "log.flush.offset.checkpoint.interval.ms", Type: kmsg.ConfigTypeInt, Default: "60000", Check: atLeast(1), Doc: "How often recovery points and log start offsets are checkpointed."},
		{Name: "num.recovery.threads.per.data.dir", Type: kmsg.ConfigTypeInt, Default: "2", Check: atLeast(1), Doc: "Threads opening and recovering logs at start-up (kvlog: total, not per dir)."},
		// Log cleaner (package cleaner, wired in cleaner.go); dynamic keys apply live.
		{Name: "log.cleaner.enable", Type: kmsg.ConfigTypeBoolean, Default: "true", Doc: "Run the log cleaner for compacted topics."},
		{Name: "log.cleaner.threads", Type: kmsg.ConfigTypeInt, Default: "1", Check: between(0, maxCleanerThreads), Dynamic: true, Doc: "Cleaner threads (0: no cleaning; at most 1024). A dynamic change may at most halve or double it."},
		{Name: "log.cleaner.dedupe.buffer.size", Type: kmsg.ConfigTypeLong, Default: "134217728", Check: atLeast(0), Dynamic: true, Doc: "Total offset-map memory across cleaner threads, allocated when the threads start: at most 2 GiB per thread and half the machine's memory."},
		{Name: "log.cleaner.io.buffer.size", Type: kmsg.ConfigTypeInt, Default: "524288", Check: atLeast(0), Dynamic: true, Doc: "Cleaner I/O buffer memory across threads (accepted and reported; kvlog's cleaner reads segments through mappings)."},
		{Name: "log.cleaner.io.buffer.load.factor", Type: kmsg.ConfigTypeDouble, Default: "0.9", Check: betweenFloat(0.01, 1), Dynamic: true, Doc: "Offset map load factor."},
		{Name: "log.cleaner.io.max.bytes.per.second", Type: kmsg.ConfigTypeDouble, Default: "1.7976931348623157E308", Check: betweenFloat(0, math.MaxFloat64), Dynamic: true, Doc: "Cleaner I/O throttle (read + write)."},
		{Name: "log.cleaner.backoff.ms", Type: kmsg.ConfigTypeLong, Default: "15000", Check: atLeast(0), Dynamic: true, Doc: "Cleaner sleep when there is nothing to clean."},
		{Name: "log.cleaner.min.cleanable.ratio", Type: kmsg.ConfigTypeDouble, Default: "0.5", Check: betweenFloat(0, 1), Dynamic: true, Doc: "Default min.cleanable.dirty.ratio."},
		{Name: "log.cleaner.delete.retention.ms", Type: kmsg.ConfigTypeLong, Default: "86400000", Check: atLeast(0), Dynamic: true, Doc: "Default delete.retention.ms."},
		{Name: "log.cleaner.min.compaction.lag.ms", Type: kmsg.ConfigTypeLong, Default: "0", Check: atLeast(0), Dynamic: true, Doc: "Default min.compaction.lag.ms."},
		{Name: "log.cleaner.max.compaction.lag.ms", Type: kmsg.ConfigTypeLong, Default: maxLong, Check: atLeast(1), Dynamic: true, Doc: "Default max.compaction.lag.ms."},
		// Group coordinator (stored now; used by the coordinator).
		{Name: "offsets.topic.num.partitions", Type: kmsg.ConfigTypeInt, Default: "50", Check: atLeast(1), Doc: "Partitions of __consumer_offsets."},
		{Name: "offsets.topic.replication.factor", Type: kmsg.ConfigTypeShort, Default: "3", Check: atLeast(1), Doc: "Replication factor of __consumer_offsets in cluster mode; its creation fails (COORDINATOR_NOT_AVAILABLE) until this many brokers are alive, as in Kafka since KIP-115. A single node always uses 1."},
		{Name: "offsets.commit.timeout.ms", Type: kmsg.ConfigTypeInt, Default: "5000", Check: atLeast(1), Doc: "Cluster mode: how long a write to __consumer_offsets (offset commit, group metadata) waits for every in-sync replica before failing."},
		{Name: "offsets.topic.segment.bytes", Type: kmsg.ConfigTypeInt, Default: "104857600", Check: atLeast(1), Doc: "segment.bytes of __consumer_offsets."},
		{Name: "offsets.retention.minutes", Type: kmsg.ConfigTypeInt, Default: "10080", Check: atLeast(1), Doc: "How long committed offsets of empty groups are kept."},
		{Name: "group.initial.rebalance.delay.ms", Type: kmsg.ConfigTypeInt, Default: "3000", Check: atLeast(0), Doc: "Delay of the first rebalance of a new group."},
		{Name: "group.min.session.timeout.ms", Type: kmsg.ConfigTypeInt, Default: "6000", Check: atLeast(0), Doc: "Smallest session timeout a member may ask for."},
		{Name: "group.max.session.timeout.ms", Type: kmsg.ConfigTypeInt, Default: "1800000", Check: atLeast(0), Doc: "Largest session timeout a member may ask for."},
		{Name: "group.max.size", Type: kmsg.ConfigTypeInt, Default: maxInt, Check: atLeast(1), Doc: "Maximum members of one group."},
		// Transaction coordinator (package txn, wired in txns.go).
		{Name: "transaction.state.log.num.partitions", Type: kmsg.ConfigTypeInt, Default: "50", Check: atLeast(1), Doc: "Partitions of __transaction_state."},
		{Name: "transaction.state.log.replication.factor", Type: kmsg.ConfigTypeShort, Default: "3", Check: atLeast(1), Doc: "Replication factor of __transaction_state in cluster mode; its creation fails until this many brokers are alive. A single node always uses 1."},
		{Name: "transaction.state.log.min.isr", Type: kmsg.ConfigTypeInt, Default: "2", Check: atLeast(1), Doc: "min.insync.replicas of __transaction_state in cluster mode (a single node uses 1)."},
		{Name: "transaction.state.log.segment.bytes", Type: kmsg.ConfigTypeInt, Default: "104857600", Check: atLeast(1), Doc: "segment.bytes of __transaction_state."},
		{Name: "request.timeout.ms", Type: kmsg.ConfigTypeInt, Default: "30000", Check: atLeast(1), Doc: "How long a write to __transaction_state waits for the high watermark (every in-sync replica; a single node's fsync) before the transaction coordinator fails it."},
		{Name: "producer.id.expiration.ms", Type: kmsg.ConfigTypeInt, Default: "86400000", Check: atLeast(1), Dynamic: true, Doc: "An idempotent producer that has not appended to a partition for this long, and has no transaction open there, is forgotten by that partition (checked with retention, every log.retention.check.interval.ms); its retries are then no longer recognised as duplicates."},
		{Name: "transaction.max.timeout.ms", Type: kmsg.ConfigTypeInt, Default: "900000", Check: atLeast(1), Doc: "Largest transaction timeout a producer may ask for (INVALID_TRANSACTION_TIMEOUT above)."},
		{Name: "transactional.id.expiration.ms", Type: kmsg.ConfigTypeInt, Default: "604800000", Check: atLeast(1), Doc: "How long a transactional id without a transaction in progress is kept after its last use."},
		{Name: "transaction.abort.timed.out.transaction.cleanup.interval.ms", Type: kmsg.ConfigTypeInt, Default: "10000", Check: atLeast(1), Doc: "How often transactions past their timeout are aborted."},
		{Name: "transaction.remove.expired.transaction.cleanup.interval.ms", Type: kmsg.ConfigTypeInt, Default: "3600000", Check: atLeast(1), Doc: "How often expired transactional ids are removed."},
		// kvlog's own keys.
		{Name: "kvlog.fsync.acks.all", Type: kmsg.ConfigTypeBoolean, Default: "true", Doc: "while no other replica holds the data, the high watermark passes only fsynced records (group commit after every append), so acks=all is acknowledged after the fsync."},
		{Name: "kvlog.journal.enable", Type: kmsg.ConfigTypeBoolean, Default: "true", Doc: "Each log dir keeps a group-commit journal (kvlog-journal): a group commit of many partitions appends their new batches to it and fsyncs that one file instead of each partition's segment, which is synced later (flush.ms, rolls, shutdown, the journal's trim); after an unclean stop the journal is replayed into the partitions before the broker serves."},
		{Name: "kvlog.journal.max.bytes", Type: kmsg.ConfigTypeLong, Default: "67108864", Check: between(1<<20, 1<<34), Doc: "Size of a log dir's journal at which it is trimmed: the partitions it covers are synced (one syncfs) and an empty journal starts. Bounds the replay after an unclean stop."},
		{Name: "kvlog.http.listener", Type: kmsg.ConfigTypeString, Default: "127.0.0.1:9644", Doc: "host:port of the HTTP listener (/metrics, /healthz, /readyz, /cleaner, the console /ui/, /debug/pprof); empty disables it."},
		{Name: "kvlog.max.open.segments", Type: kmsg.ConfigTypeInt, Default: "0", Check: atLeast(0), Doc: "Bound on inactive segments with open files and mappings; 0 is the engine default."},
		{Name: "kvlog.max.open.files", Type: kmsg.ConfigTypeInt, Default: "0", Check: between(0, maxOpenFilesBound), Doc: "Budget of file descriptors the storage engine holds open (segments, indexes, checkpoints); cold segments, active ones too, are closed to stay under it and reopened on demand. 0: the process's open file limit (RLIMIT_NOFILE) less max.connections plus 512 for sockets and the rest, at most a quarter of the limit. At most the open file limit."},
		{Name: "kvlog.cleaner.bounded.tombstones", Type: kmsg.ConfigTypeBoolean, Default: "true", Dynamic: true, Doc: "Also clean a compacted partition whose tombstones passed their delete horizon, or whose dirty records are older than delete.retention.ms, whatever its dirty ratio, so tombstones of quiet partitions do not live forever (false: Kafka's rules only)."},
		{Name: "kvlog.cleaner.idle.roll.ms", Type: kmsg.ConfigTypeLong, Default: "30000", Check: between(0, maxIdleRollMs), Dynamic: true, Doc: "Roll the active segment of a compacted partition that has had no append for this long when the partition would then be due for cleaning by its dirty ratio (min.cleanable.dirty.ratio, with min.compaction.lag.ms and open transactions respected), and clean it: a changelog written and then left quiet is compacted at default topic configs, where Kafka never cleans its active segment. 0 disables it; at most 604800000 (7 days)."},
		{Name: "kvlog.key.index.enable", Type: kmsg.ConfigTypeBoolean, Default: "true", Dynamic: true, Doc: "Default kvlog.key.index.enable: compacted partitions keep a key index (key digest → newest offset, 20 to 32 bytes of RAM per key, checkpointed to kvlog-key-index.checkpoint) serving lookups of a key's latest value over HTTP (/v1/topics/{topic}/keys/{key})."},
		{Name: "kvlog.cluster.id", Type: kmsg.ConfigTypeString, NoDefault: true, Doc: "Cluster id reported in Metadata; default: generated once and kept in the metadata store."},
	}
	m := make(map[string]*Def, len(defs))
	for _, d := range defs {
		m[d.Name] = d
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

// Broker is the broker's static configuration, parsed from a
// server.properties file (plus flag overrides) and validated once. The
// keys it does not hold as fields are read through Layers (Broker.Layers,
// then the dynamic layers the broker keeps), typed.
type Broker struct {
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
	JournalEnable            bool
	JournalMaxBytes          int64
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
	// ZooKeeperSessionTimeout and ZooKeeperConnectionTimeout (default: the
	// session timeout) are cluster mode's ZooKeeper session settings.
	ZooKeeperSessionTimeout    time.Duration
	ZooKeeperConnectionTimeout time.Duration
	// Replication (replica.*; ReplicaLagTimeMax also bounds a single
	// node's partition manager) and the controller (controlled.shutdown.*,
	// auto.leader.rebalance.enable, leader.imbalance.check.interval.seconds).
	ReplicaLagTimeMax              time.Duration
	ReplicaFetchWaitMax            time.Duration
	ReplicaFetchMinBytes           int32
	ReplicaFetchMaxBytes           int32 // per partition
	ReplicaFetchResponseMaxBytes   int32
	ReplicaFetchBackoff            time.Duration
	ReplicaSocketTimeout           time.Duration
	ControlledShutdownEnable       bool
	ControlledShutdownMaxRetries   int
	ControlledShutdownRetryBackoff time.Duration
	AutoLeaderRebalance            bool
	LeaderImbalanceCheckInterval   time.Duration

	// Static holds every known key set in the file (after validation): the
	// STATIC_BROKER_CONFIG layer of DescribeConfigs and topic defaults.
	Static map[string]string
}

// Default is the configuration of kvlogd with no file and no flags.
func Default() *Broker {
	c, err := Parse(nil, nil)
	if err != nil {
		panic(err) // the defaults are valid
	}
	return c
}

// Load reads a server.properties file and applies overrides (flags) on
// top of it. Unknown keys are logged as warnings.
func Load(path string, overrides map[string]string, logger *slog.Logger) (*Broker, error) {
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
	return Parse(props, logger)
}

// Parse validates properties into a Broker. A later property
// overrides an earlier one with the same key. Unknown keys warn through
// logger (nil: silent); an invalid value is an error naming the key.
func Parse(props []Property, logger *slog.Logger) (*Broker, error) {
	static := make(map[string]string)
	var security []string
	for _, p := range props {
		if why := refusedSecurity(p.Key, p.Value); why != "" {
			security = append(security, p.Key+" ("+why+")")
			continue
		}
		d := BrokerDef(p.Key)
		if d == nil {
			if _, isTopicKey := topicDefs[p.Key]; isTopicKey {
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
		if err := d.Validate(v); err != nil {
			return nil, fmt.Errorf("config %s: %w", p.Key, err)
		}
		static[p.Key] = v
	}
	l := NewLayers(static, nil, nil)
	get := l.String
	c := &Broker{Static: static}

	// node.id / broker.id
	bid, bok := static["broker.id"]
	nid, nok := static["node.id"]
	if bok && nok && intOf(bid) != intOf(nid) {
		return nil, fmt.Errorf("config node.id: %s differs from broker.id %s", nid, bid)
	}
	c.NodeID = int32(l.Int("broker.id"))
	if nok {
		c.NodeID = int32(l.Int("node.id"))
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
	c.LogDirs = SplitList(dirs)
	if len(c.LogDirs) == 0 {
		return nil, errors.New("config log.dirs: no directory given")
	}
	c.ZooKeeperConnect = get("zookeeper.connect")
	c.NumPartitions = int32(l.Int("num.partitions"))
	rf := l.Int("default.replication.factor")
	if rf > math.MaxInt16 {
		return nil, fmt.Errorf("config default.replication.factor: %d is too large", rf)
	}
	c.DefaultReplicationFactor = int16(rf)
	c.AutoCreateTopics = l.Bool("auto.create.topics.enable")
	c.DeleteTopicEnable = l.Bool("delete.topic.enable")
	c.SocketRequestMaxBytes = int32(l.Int("socket.request.max.bytes"))
	c.SocketSendBufferBytes = int(l.Int("socket.send.buffer.bytes"))
	c.SocketReceiveBufferBytes = int(l.Int("socket.receive.buffer.bytes"))
	c.ConnectionsMaxIdle = l.Duration("connections.max.idle.ms")
	c.MaxConnections = int(l.Int("max.connections"))
	c.MaxConnectionsPerIP = int(l.Int("max.connections.per.ip"))
	c.QueuedMaxRequestBytes = l.Int("queued.max.request.bytes")
	c.QueuedMaxRequests = min(int(l.Int("queued.max.requests")), 500)
	c.FsyncAcksAll = l.Bool("kvlog.fsync.acks.all")
	c.JournalEnable = l.Bool("kvlog.journal.enable")
	c.JournalMaxBytes = l.Int("kvlog.journal.max.bytes")
	c.HTTPListener = get("kvlog.http.listener")
	c.MaxOpenSegments = int(l.Int("kvlog.max.open.segments"))
	c.MaxOpenFiles = int(l.Int("kvlog.max.open.files"))
	c.RetentionCheckInterval = l.Duration("log.retention.check.interval.ms")
	c.CheckpointInterval = l.Duration("log.flush.offset.checkpoint.interval.ms")
	c.RecoveryThreads = int(l.Int("num.recovery.threads.per.data.dir"))
	c.ClusterID = get("kvlog.cluster.id")
	c.OffsetsTopicNumPartitions = int32(l.Int("offsets.topic.num.partitions"))
	c.ZooKeeperSessionTimeout = l.Duration("zookeeper.session.timeout.ms")
	c.ZooKeeperConnectionTimeout = c.ZooKeeperSessionTimeout
	if !l.Broker("zookeeper.connection.timeout.ms").Null {
		c.ZooKeeperConnectionTimeout = l.Duration("zookeeper.connection.timeout.ms")
	}
	c.ReplicaLagTimeMax = l.Duration("replica.lag.time.max.ms")
	c.ReplicaFetchWaitMax = l.Duration("replica.fetch.wait.max.ms")
	c.ReplicaFetchMinBytes = int32(l.Int("replica.fetch.min.bytes"))
	c.ReplicaFetchMaxBytes = int32(l.Int("replica.fetch.max.bytes"))
	c.ReplicaFetchResponseMaxBytes = int32(l.Int("replica.fetch.response.max.bytes"))
	c.ReplicaFetchBackoff = l.Duration("replica.fetch.backoff.ms")
	c.ReplicaSocketTimeout = l.Duration("replica.socket.timeout.ms")
	c.ControlledShutdownEnable = l.Bool("controlled.shutdown.enable")
	c.ControlledShutdownMaxRetries = int(l.Int("controlled.shutdown.max.retries"))
	c.ControlledShutdownRetryBackoff = l.Duration("controlled.shutdown.retry.backoff.ms")
	c.AutoLeaderRebalance = l.Bool("auto.leader.rebalance.enable")
	c.LeaderImbalanceCheckInterval = l.Duration("leader.imbalance.check.interval.seconds")
	if err := parseSecurity(c, l); err != nil {
		return nil, err
	}

	// The rules across keys, shared with dynamic broker configs.
	if err := l.ValidateBroker(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

// Layers is the static layer alone (no dynamic configs yet).
func (c *Broker) Layers() *Layers { return NewLayers(c.Static, nil, nil) }

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
	for _, item := range SplitList(v) {
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
	for _, item := range SplitList(v) {
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
