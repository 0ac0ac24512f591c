// Package server is the kvlog broker: listeners and connections, the Kafka
// protocol handlers, broker and topic configuration, and the metadata store
// seam (package metastore). It owns no bytes on disk except through the
// engine and the metadata store.
//
// # Files
//
//   - properties.go, config.go: server.properties parsing and the broker
//     key table (Apache Kafka's names and defaults).
//   - configdefs.go, topic_config.go: config definitions, the topic config
//     table with broker synonyms, value resolution (topic override, dynamic
//     broker, dynamic default, static, default) and engine.Config conversion.
//   - server.go: Server (New, Start, Shutdown), topic snapshots, listeners.
//   - topics.go: topic create/delete/alter, shared by the handlers.
//   - conn.go, frame.go: per-connection reader/writer, hand-parsed request
//     headers, ordered pipelined responses.
//   - fetch_encode.go, sendfile.go: Fetch responses as encoded buffers plus
//     engine file ranges sent with sendfile(2), or on TLS gathered into a
//     pooled buffer and encrypted.
//   - errors.go: the one mapping from errors to Kafka error codes.
//   - config_validate.go: the rules across broker keys shared by the
//     static file, dynamic changes and stored configs.
//   - config_security.go, security_listener.go, security_interbroker.go,
//     sasl_conn.go: the ssl.* and sasl.* keys (also per listener) and the
//     refusal of security kvlog does not implement; each listener's
//     protocol, TLS configuration (rebuilt when the configuration changes:
//     certificate reload) and SASL mechanisms; a connection's TLS
//     handshake, SASL state machine and principal; the inter-broker
//     dialer. Handlers 17, 36, 50, 51 are SaslHandshake, SaslAuthenticate
//     and the SCRAM credential APIs; the mechanisms themselves are package
//     security. docs/security.md describes the model.
//   - authz.go, authz_apis.go: authorization (package acl has the
//     authorizer): authorizer.class.name, super.users and
//     allow.everyone.if.no.acl.found, the ACLs loaded from the metadata
//     store and kept current by ZooKeeper's ACL change notifications, the
//     audit log; apiAuthzTable declares every API's checks — the dispatcher
//     (conn.dispatch) makes the whole-request ones (an operation on the
//     cluster, the group or the transactional id) before the handler,
//     handlers carrying many topics or groups filter them through
//     request.authorizedNames. Handlers 29-31 are DescribeAcls, CreateAcls
//     and DeleteAcls. docs/security.md has the table of checks.
//   - quotas.go: client quotas (package quota has the model): byte rates
//     and request percentages recorded around the handler (Produce) and in
//     Fetch, KIP-219 throttling (throttle_time_ms, the connection muted;
//     old versions' responses delayed), connection creation rates at
//     accept. Handlers 48-49 are DescribeClientQuotas and
//     AlterClientQuotas.
//   - framepool.go, reqmem.go: frame buffers sized to what arrived, and the
//     request memory budget (queued.max.request.bytes). Limits and their
//     Kafka counterparts: docs/limits-and-hostile-clients.md.
//   - handlers.go: the registry; NN_name.go: one file per API key, each
//     registering the versions it serves (ApiVersions advertises exactly
//     those).
//   - metrics.go: Prometheus metrics, /metrics, /cleaner and /debug/pprof
//     on the HTTP listener; operator_metrics.go: per-topic traffic, errors
//     per API and code (counted as each request completes), fsync latency
//     (an engine hook), disk space, partition health, groups and lag (read
//     at scrape time); health.go: /healthz (liveness) and /readyz
//     (readiness). docs/operations.md lists them.
//   - cleaner.go: the log cleaner's wiring (package cleaner): created with
//     the engine's logs, started and stopped with the broker, log.cleaner.*
//     applied live on dynamic broker config changes, topic-level settings
//     read from the topic snapshot at every planning round, cleaning paused
//     around log deletion and follower truncation.
//   - partitions.go: request-path pieces over the partition manager
//     (replica.Manager, Server.replicas), the same in both modes: the
//     error for a partition not served here (from the metadata view), the
//     leader and leader-epoch check, follower fetches.
//   - 03_metadata.go: the metadata view (metadataView) Metadata and
//     FindCoordinator answer from: a single node's topics (localView) or
//     the cluster's controller-fed cache (clusterMeta).
//   - cluster.go, cluster_metrics.go: cluster mode (zookeeper.connect set;
//     packages zkstore, controller and replica): the controller-fed
//     metadata cache, local replicas created on LeaderAndIsr, follower
//     fetchers, the ISR writer (the partition manager's OnISRChange) and
//     shrink ticker, controlled shutdown. Handlers 04-07 are the inter-broker
//     APIs (LeaderAndIsr, StopReplica, UpdateMetadata, ControlledShutdown);
//     cluster_fence.go admits the controller's requests only when they carry
//     this broker's registration epoch and the controller id and epoch
//     ZooKeeper names (a watcher keeps that view current).
//     Lock order: cluster.partMu → Server.topicMu.
//   - groups.go: the group coordinator's wiring (package group): config,
//     its store over __consumer_offsets, FindCoordinator's answer; handlers
//     08-16, 42, 47. A JoinGroup or SyncGroup parks in the coordinator and
//     is completed from there (its timers or another member's request).
//   - coordlog.go: a coordinator's internal compacted topic
//     (__consumer_offsets, __transaction_state): acks=all leader appends
//     through the partition manager, waits on the high watermark, replay.
//   - txns.go: the transaction coordinator's wiring (package txn): config,
//     its store over __transaction_state, FindCoordinator's answer, the
//     marker writer (a marker on __consumer_offsets completes the group
//     coordinator's transactional offset commits); handlers 22, 24-28,
//     61, 65, 66 (docs/transactions.md).
//   - cluster_txns.go: transaction coordination in cluster mode: loaded
//     and unloaded with the leadership of __transaction_state partitions
//     (through cluster_groups.go's loader), markers forwarded to the other
//     partition leaders with WriteTxnMarkers.
//   - cluster_groups.go: group coordination in cluster mode: a broker
//     coordinates the __consumer_offsets partitions it leads (loaded and
//     unloaded in LeaderAndIsr order by one goroutine), FindCoordinator
//     answers the partition's leader from the metadata cache, and writes
//     to __consumer_offsets are acks=all leader appends answered once the
//     high watermark passed them (offsets.commit.timeout.ms).
//
// # Concurrency
//
// Each connection has a reader goroutine (reads, parses, runs handlers) and
// a writer goroutine (writes responses in request order). On TLS
// listeners the handshake runs first, on the connection's goroutine; SASL
// state is owned by the reader (the SASL handlers run there). Handlers run
// on the reader goroutine; a Fetch short of MinBytes parks in the partition
// manager (registered on its partitions, plus a timer) and is completed
// later on a short-lived goroutine, as is an acks=all Produce. Topic and
// configuration state are immutable
// snapshots behind atomic pointers (Server.topics, Server.layers), replaced
// whole by writers, so request paths take no server-wide lock.
//
// Lock order: Server.alterMu → Server.topicMu → Server.lnMu; topicMu →
// the cleaner's lock (config changes and deletions under topicMu call into
// it; it calls back only into lock-free snapshot reads); a group
// coordinator shard lock (package group, and package txn's) comes before
// topicMu (its store creates the topic on first write);
// the partition manager's locks (package replica) are below all of these
// and engine locks below those.
//
// # Non-obvious invariants
//
//   - A request completes exactly once (request.finish); the writer cancels
//     requests it will not answer, releasing their file ranges.
//   - Every hosted partition is a replica.Partition in one
//     replica.Manager (Server.replicas): a single node is a cluster of one
//     whose partitions lead with ISR = {this broker} at leader epoch 0.
//     Appends, the high watermark (it only rises, and only past data as
//     durable as configured), acks=all and parked fetches go through it
//     in both modes.
//   - A topic's (or new partitions') logs are created before the metadata
//     store takes it, and removed again if that fails: the store never
//     names a topic whose logs were not all created. Partition directories
//     the store does not name are strays: never adopted, removed when empty,
//     otherwise set aside as -stray at start-up (a store created by this
//     start adopts every log found instead: a Kafka log dir, lost metadata). A named partition whose log
//     cannot be opened is offline; the broker still starts.
//   - A deletion is durable (as pending, or on a full disk as a marker
//     file) before the topic disappears; its logs go, then the groups'
//     offsets of it, then it is recorded done; start-up finishes pending
//     deletions in the same order. Internal topics cannot be deleted.
//     docs/topics.md has the Kafka behaviour these follow.
//
// # kmsg is patched
//
// kmsg (v1.15.0) looped over a flexible message's tag count even after the
// input was exhausted, so a tiny malformed flexible request with a tag
// count near 2^32 cost ~45 s of CPU before it was rejected. No check before
// ReadFrom can bound that without knowing where each structure's tag
// section lies (a per-message schema), so the module uses a copy of kmsg
// whose tag loops stop once the reader has failed (third_party/kmsg,
// PATCHES.md, wired in by go.mod's replace directive). frame_tags_test.go
// fails fast if the build or a kmsg upgrade loses the patch.
package server
