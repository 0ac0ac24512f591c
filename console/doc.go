// Package console is kvlog's web console: server-rendered HTML pages under
// /ui/ on the broker's HTTP listener, showing the cluster (brokers,
// controller, log dirs), topics (records/s in and bytes/s out with
// sparklines of the last samples; partitions with leader, ISR, log start,
// high watermark, LSO, size and segments; configs with their sources,
// editable with IncrementalAlterConfigs), compaction (each compacted
// partition's dirty ratio against its min.cleanable.dirty.ratio, last
// clean, tombstone horizon, with a chart of the last samples), consumer
// groups (state, members, lag, and total lag over the last samples) and
// recent records of a partition.
//
// The console implements no broker rule of its own. It is a Kafka client
// of the broker that serves it (franz-go's kadm and kgo over one of the
// broker's listeners), so what it shows is what any Kafka client is told
// and what it changes goes through the same request handlers, validation
// and ACL checks: with kvlog.http.auth=basic it connects as the user who
// logged in (SASL with that user's password), and the broker's authorizer
// decides. Only the cleaner's status, which no Kafka API carries, is read
// in-process, from the same function that serves /cleaner, the segment
// count of a partition from the storage engine, and what the charts
// sample: each topic's high watermarks and fetched bytes, each group's
// total lag (as the broker's metrics compute them); all are given by the
// broker in Options.
//
// The assets (templates, one style sheet, one small script) are embedded;
// nothing is fetched from elsewhere. The script refreshes the parts of a
// page marked data-live by fetching the page again every few seconds and
// swapping them in; pages work without it. docs/console.md explains the
// choices.
package console
