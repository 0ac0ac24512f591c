// Package cluster is a broker's ZooKeeper-mode membership: how a kvlog
// broker belongs to a cluster coordinated through ZooKeeper (Kafka's
// ZooKeeper mode). It owns
//
//   - the ZooKeeper connection's credentials (zookeeper.set.acl and the
//     DIGEST-MD5 login of kvlog.sasl.jaas.file: Open, ZooKeeperAuth);
//   - the broker registration (/brokers/ids/<id>, registered again on every
//     new ZooKeeper session) and its epoch, and the unregistration on stop;
//   - the controller candidate (package controller) and the controller
//     view: /controller and /controller_epoch as last read, kept current by
//     a watcher;
//   - the fencing of the controller's requests (Member.Admit): LeaderAndIsr,
//     StopReplica and UpdateMetadata are applied only when they carry this
//     broker's registration epoch and the controller ZooKeeper names;
//   - the follower fetchers (replica.Fetchers), the ISR writer (a leader's
//     ISR changes written to ZooKeeper conditionally, one at a time) and
//     the ticker that asks the partition manager for out-of-sync
//     followers;
//   - the watchers of ZooKeeper's change notifications: configuration
//     (/config/changes, handed to the broker) and ACLs (applied to the
//     authorizer);
//   - the serial queue on which coordinator loads and unloads run, off the
//     controller's requests, in the order the role changes arrived;
//   - controlled shutdown (asking the controller to move leadership away
//     before the broker stops) and the replication metrics;
//   - the ZooKeeper side of topic changes (create, delete, add partitions,
//     read a topic's assignment and configs).
//
// It does not own the broker's topic snapshot, its logs or the metadata
// cache the Metadata API answers from: the broker (package server) wires a
// Member in, applies LeaderAndIsr and StopReplica to its partitions, and
// gives the Member what it needs through Config (callbacks for the
// configuration changes and the live brokers' endpoints). Nothing here
// imports package server.
//
// Every wait (a watcher's retry after a failed ZooKeeper read, the
// controlled-shutdown backoff, the ISR shrink check) is on Config.Clock, so
// tests move time instead of sleeping.
//
// Kafka's own brokers admit the controller's requests on their claimed
// epochs alone; the checks kvlog adds are described at Member.Admit.
package cluster
