// Package client is kvlog's Go library for changelog tables: compacted topics
// used as key-value stores. It is built on franz-go (kgo, kadm) and speaks
// only the Kafka protocol, so it never imports broker packages and works
// against kvlog or any Kafka-compatible broker.
//
// A [Table] opens a topic (optionally creating it as compacted), replays
// every partition from its log start to the high watermark it had when Open
// was called, building the latest value per key (a null value, a tombstone,
// removes the key), reports replay progress through a callback, and then
// keeps tailing new records. Writes go through [Table.Put] and
// [Table.Delete]; [Table.WaitFor] gives read-your-writes. A [Writer] writes
// without replaying.
//
// The replay sends its own Fetch requests (through the franz-go client, so
// TLS and SASL options apply) and decodes the record batches in place: the
// table's keys and values are the fetched bytes, indexed by a pointer-free
// hash table, with no allocation per record. Tailing uses franz-go's
// consumer, which also takes over the replay wherever it meets what it
// does not handle (a fetch error, a leader change, read_committed set
// through [WithKgoOptions]); the result is the same.
//
// [Lookup] and [LookupMany] read keys without replaying: a kvlog broker
// keeps a key index on each partition of a compacted topic and serves a
// key's latest committed value on its HTTP listener. A [RemoteTable]
// ([OpenRemote]) is a table in that remote-read mode, for services that do
// not want the whole state in memory (kvlog brokers only).
//
// Keys are placed with Kafka's default partitioner ([PartitionFor]:
// murmur2 of the key bytes, sign bit masked, modulo the partition count), so
// Java, librdkafka (murmur2_random) and Go producers agree on placement.
//
// # Ownership
//
// Values handed to a [WithApply] callback, returned by [Table.Get] or by a
// [Snapshot] alias bytes the table holds: the replayed fetch responses
// themselves (the replay copies no record), or the table's copy of records
// applied one at a time. The library never modifies them; callers must not
// modify them either.
//
// # Concurrency
//
// Every method of Table, Writer and Snapshot is safe for concurrent use. A
// Table runs one goroutine that polls the broker and applies records; the
// progress and apply callbacks are called from it, one at a time, and must
// not call Table methods that wait on the table (WaitFor, Sync, Close).
//
// # Errors
//
// Errors wrap one of the sentinels in errors.go ([ErrTopicNotFound],
// [ErrNotCompacted], [ErrBrokerUnreachable], [ErrClosed], …) or the
// context's error (context.Canceled, context.DeadlineExceeded); test them
// with errors.Is. The library does not panic on broker answers.
package client
