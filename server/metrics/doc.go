// Package metrics is the broker's Prometheus metrics: requests and their
// latency per API, network bytes, connections and their refusals, request
// memory, SASL and TLS outcomes, handler panics (counted by the broker's
// connections as they happen); per-topic traffic and error codes per API
// (Observe, once per completed request); and, read at scrape time from
// the broker through Source, partition sizes and offsets, disk space,
// partition health, consumer groups and their lag, the storage engine's
// open-file budget and the build. docs/operations.md lists them.
//
// The package owns the metric names and the accounting; it knows the
// broker only through Source, so it has no *Server.
package metrics
