// Package server is the kvlog broker: listeners and connections, the Kafka
// protocol handlers, and the wiring of its parts. It owns no bytes on disk
// except through the engine and the metadata store.
//
// # Where code goes
//
// The server root holds what needs the *Server: one handler file per API
// key (NN_name.go) and the files that wire a part into the broker, named
// by that part. A piece of the broker that can work without the *Server
// is a subpackage of server/, handed what it needs through its API:
// package wire (frames, request memory, Fetch encoding and sendfile),
// config (key tables, parsing, validation, typed settings), metastore and
// zkstore (the metadata stores), cluster (the ZooKeeper-mode
// membership), controller, group and txn (coordinators), acl, quota and
// security. Top-level packages (engine, cleaner, replica, client) are the
// storage and replication core and the client library, usable without a
// broker.
//
// # Files
//
//   - configs.go: the broker's side of package config: the current config
//     layers (Server.layers, replaced whole on a change and read typed),
//     DescribeConfigs and AlterConfigs resources.
//   - server.go: Server (New, Start, Shutdown), topic snapshots, listeners.
//   - topics.go: topic create/delete/alter, shared by the handlers: the
//     checks, then the membership's part.
//   - membership.go: the one place the two modes differ (membership): a
//     single node (standalone: the embedded metadata store, a cluster of
//     one) or a ZooKeeper cluster (cluster.go over package cluster) loads
//     topics, creates, deletes and grows them, joins and leaves, and
//     writes ISR changes.
//     Request paths ask the membership, the metadata view or the partition
//     manager, never which mode runs; only the inter-broker handlers
//     04-06 (once the membership admitted the request: fromController)
//     and the transaction marker writer reach the cluster itself.
//   - conn.go: a connection as package wire's frame loop sees it (its
//     wire.Handler): parsing against the served versions, the SASL state,
//     quota muting and delayed answers, dispatch to the handlers with
//     their panics contained. Package wire reads the frames, holds the
//     request memory and writes the responses in order.
//   - errors.go: the one mapping from errors to Kafka error codes.
//   - security_listener.go, security_interbroker.go, sasl_conn.go: each
//     listener's protocol, TLS configuration (rebuilt when the
//     configuration changes: certificate reload) and SASL mechanisms, from
//     the ssl.* and sasl.* keys package config defines; a connection's TLS
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
//   - handlers.go: the registry; NN_name.go: one file per API key, each
//     registering the versions it serves (ApiVersions advertises exactly
//     those).
//   - metrics.go: Prometheus metrics, /metrics, /cleaner and /debug/pprof
//     on the HTTP listener; operator_metrics.go: per-topic traffic, errors
//     per API and code (counted as each request completes), fsync latency
//     (an engine hook), disk space, partition health, groups and lag (read
//     at scrape time); health.go: /healthz (liveness) and /readyz
//     (readiness). docs/operations.md lists them. http_security.go: the
//     HTTP listener's TLS, basic authentication against the SASL users,
//     cluster ACLs per path and the profiler's switch; console.go: the web
//     console (package console) mounted under /ui/, a Kafka client of one
//     of this broker's listeners (docs/console.md).
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
//   - cluster.go: cluster mode (zookeeper.connect set) wired into the
//     broker. Package cluster is the membership itself (ZooKeeper
//     credentials, registration, the controller candidate, the fencing
//     of the controller's requests, follower fetchers, the ISR writer and
//     shrink check, the config and ACL change watchers, the coordinators'
//     serial load queue, controlled shutdown, replication metrics);
//     cluster.go holds what needs the *Server: the controller-fed
//     metadata cache (clusterMeta), the topic snapshot following
//     ZooKeeper, local replicas created on LeaderAndIsr, config changes
//     applied, topic create/delete/grow mapped to Kafka errors. Handlers
//     04-07 are the inter-broker APIs (LeaderAndIsr, StopReplica,
//     UpdateMetadata, ControlledShutdown), admitted through
//     Server.fromController. Lock order: cluster.partMu → Server.topicMu.
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
//     (through cluster_groups.go's queue), markers forwarded to the other
//     partition leaders with WriteTxnMarkers.
//   - cluster_groups.go: group coordination in cluster mode: a broker
//     coordinates the __consumer_offsets partitions it leads (loaded and
//     unloaded in LeaderAndIsr order on the membership's serial queue),
//     FindCoordinator answers the partition's leader from the metadata
//     cache, and writes to __consumer_offsets are acks=all leader appends answered once the
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
// later on a short-lived goroutine, as is an acks=all Produce. The waits
// of a connection (quota muting, a pre-KIP-219 client's delayed answer)
// and of the accept loop end on a timer or on a stop channel, never by
// polling, so tests drive them on a testing/synctest bubble's clock. The
// failed-authentication delays (SASL and the HTTP listener's basic
// authentication), the retry of a failed group coordinator load, the
// group and transaction coordinators' deadlines, the partition manager's
// acks=all timeouts and parked fetches, the follower fetchers' and the
// cleaner's back-offs and every wait of package cluster's membership run
// on the broker's clock (Options.Clock, package clock's timers), so tests
// drive them with a manual clock. Topic and configuration state are immutable snapshots
// behind atomic pointers (Server.topics, Server.layers), replaced whole by
// writers, so request paths take no server-wide lock.
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
