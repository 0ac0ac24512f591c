// Package server is the kvlog broker: listeners and connections, the Kafka
// protocol handlers, and the wiring of its parts. It owns no bytes on disk
// except through the engine and the metadata store.
//
// # Where code goes
//
// One rule: code that can be written against a narrow view of the broker
// (an interface or a few functions it is handed) lives in the subpackage
// that owns its concern; the root holds only the Server (server.go), one
// handler file per API key (NN_name.go), and the wiring that adapts the
// *Server to each part, in a file named by that part. Subpackages:
// package wire (frames, connections' read and write loops, request
// memory, Fetch encoding and sendfile), config (key tables, parsing,
// validation, typed settings: broker, topic, a listener's security),
// metrics (the Prometheus metrics over a metrics.Source), httpapi (the
// HTTP listener: routes, TLS, basic authentication, path ACLs),
// metastore and zkstore (the metadata stores), cluster (the
// ZooKeeper-mode membership), controller, group and txn (coordinators),
// coordlog (the coordinators' internal topics over the partition
// manager), fetchsession, acl, quota (quota model and run-time sensors) and
// security (SASL mechanisms, TLS files). Top-level packages (engine,
// cleaner, replica, client) are the storage and replication core and the
// client library, usable without a broker. docs/architecture.md maps a
// Produce and a Fetch through them.
//
// # Files
//
// Besides the handlers (NN_name.go, registered in handlers.go, each
// registering the versions it serves: ApiVersions advertises exactly
// those), the root's files by concern:
//
//   - The Server: server.go (Options, New with its cleanup stack, Start,
//     Shutdown, Close, Readiness, the partition manager's configuration).
//   - Topics and partitions: topic_snapshot.go (the immutable topic
//     snapshot, partitions as replica.Partitions, leading alone on a
//     single node), topics.go (topic create/delete/alter shared by the
//     handlers: the checks, then the membership's part), logs.go
//     (partition logs on disk: strays set aside, adoption of a Kafka log
//     dir, deletion), partitions.go (request-path pieces over the
//     partition manager, the same in both modes: the error for a
//     partition not served here, the leader-epoch check, follower
//     fetches), cleaner.go (the log cleaner's wiring: logs, live
//     log.cleaner.* changes, pauses around deletion and truncation).
//   - Wire: listeners.go (binding, the accept loop with connection limits
//     and creation rates), conn.go (a connection as package wire's frame
//     loop sees it: parsing against the served versions, dispatch with
//     panics contained, quota muting and delayed answers), errors.go (the
//     one mapping from errors to Kafka error codes).
//   - Config: configs.go (the current config layers, Server.layers,
//     replaced whole on a change and read typed; DescribeConfigs and
//     AlterConfigs resources).
//   - Security: security.go (each listener's config.ListenerSecurity,
//     SCRAM credentials from the metadata store, the users' password check
//     of the HTTP listener, the inter-broker dialer), sasl_conn.go (a
//     connection's side of its security.Session: the mechanisms' servers
//     over the listener's PLAIN users and the stored SCRAM credentials,
//     the principal, the delayed failure; the TLS handshake and the
//     certificate's principal; handlers 17, 36, 50, 51), authz.go and authz_apis.go (package acl
//     wired in: authorizer.class.name, super.users, the ACLs loaded from
//     the metadata store and kept current by ZooKeeper's change
//     notifications, the audit log; apiAuthzTable declares every API's
//     checks, made by conn.dispatch before the handler; handlers 29-31),
//     quotas.go (package quota wired in: the request's user and client id,
//     KIP-219 throttling with the connection muted, old versions' answers
//     delayed, the controller mutation quota; handlers 48-49).
//     docs/security.md describes the model.
//   - HTTP listener and metrics: http.go (httpapi.Handler given the
//     broker's routes, users and authorizer), metrics.go (the broker as a
//     metrics.Source), console.go (the web console, package console, a
//     Kafka client of one of this broker's listeners, docs/console.md),
//     http_keys.go (key lookups, docs/http-keys.md). docs/operations.md
//     lists the routes and metrics.
//   - Membership (the one place the two modes differ): membership.go (a
//     single node, standalone: the embedded metadata store, a cluster of
//     one, or a ZooKeeper cluster: loading topics, creating, deleting and
//     growing them, joining and leaving, ISR changes). Request paths ask
//     the membership, the metadata view or the partition manager, never
//     which mode runs; only the inter-broker handlers 04-07 (once the
//     membership admitted the request: Server.fromController) reach the
//     cluster itself.
//   - Cluster mode (zookeeper.connect set), the wiring of package cluster
//     (registration, the controller candidate, fencing of the
//     controller's requests, follower fetchers, the ISR writer, change
//     watchers, controlled shutdown): cluster.go (what needs the *Server:
//     the controller-fed metadata cache clusterMeta, the topic snapshot
//     following ZooKeeper, local replicas created on LeaderAndIsr, config
//     changes applied, topic create/delete/grow mapped to Kafka errors;
//     lock order cluster.partMu → Server.topicMu), cluster_groups.go (a
//     broker coordinates the __consumer_offsets partitions it leads,
//     loaded and unloaded in LeaderAndIsr order on the membership's
//     serial queue), cluster_txns.go (the same for __transaction_state,
//     and markers forwarded to other leaders with WriteTxnMarkers).
//   - Coordinators: groups.go and txns.go (packages group and txn wired
//     in: config, their stores, FindCoordinator's answer, the transaction
//     marker writer; handlers 08-16, 42, 47 and 22, 24-28, 61, 65, 66,
//     docs/transactions.md), coordlog.go (package coordlog, their
//     internal compacted topics, over this broker's topics and partition
//     manager: acks=all leader appends, waits on the high watermark,
//     replay), fetch_sessions.go (package
//     fetchsession wired into Fetch).
//   - 03_metadata.go also holds the metadata view (metadataView) that
//     Metadata and FindCoordinator answer from: a single node's topics
//     (localView) or the cluster's controller-fed cache (clusterMeta).
//
// # Concurrency
//
// Each connection has a reader goroutine (reads, parses, runs handlers) and
// a writer goroutine (writes responses in request order). On TLS
// listeners the handshake runs first, on the connection's goroutine; SASL
// state is owned by the reader (the SASL handlers run there). Handlers run
// on the reader goroutine; a Fetch short of MinBytes parks in the partition
// manager (registered on its partitions, plus a timer) and is completed
// later on a short-lived goroutine, as is an acks=all Produce. Every wait
// the broker decides runs on its clock (Options.Clock, package clock's
// timers) and ends on a timer or a stop channel, never by polling, so
// tests drive it with a manual clock: a connection's quota muting and a
// pre-KIP-219 client's delayed answer (counted from the request's arrival
// on the clock, as a Fetch's MaxWait is), the accept loop's back-off and
// pauses, the wait for request memory, the key lookups' min_offset wait,
// the console's sampling, a SASL session's expiry, the
// failed-authentication delays (SASL and the HTTP listener's basic
// authentication), the retry of a failed group coordinator load, the
// group and transaction coordinators' deadlines, the partition manager's
// acks=all timeouts and parked fetches, the follower fetchers' and the
// cleaner's back-offs, the engine's maintenance and every wait of package
// cluster's membership. Socket deadlines stay on real time (the kernel's
// timers), as do measurements (latencies, handler time);
// docs/testing.md has the list. Topic and configuration state are
// immutable snapshots behind atomic pointers (Server.topics,
// Server.layers), replaced whole by writers, so request paths take no
// server-wide lock.
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
