// Package replaybench compares rebuilding the state of a key-value changelog
// in one run, on one machine: kvlog's client library (client.Open), a raw
// franz-go consume loop against the same kvlog broker, and NATS JetStream
// KV's watch-all of a bucket holding the same keys (Debian's nats-server).
//
// It is its own module so that the main module's tests never need NATS:
//
//	apt-get install -y nats-server
//	cd examples/replaybench && go test -run '^$' -bench . -benchtime 3x
//
// KVLOG_BENCH_KEYS sets the number of live keys (default 100,000).
package replaybench
