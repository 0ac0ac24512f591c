// Package goclients runs Kafka clients that kvlog's other compatibility
// suites do not cover against the real kvlogd, over its secured
// listeners: IBM's sarama and segmentio's kafka-go (pinned in this
// module's go.mod) and, from Node.js, kafkajs (pinned in
// kafkajs/package-lock.json, installed by `make tools-kafkajs` into
// kafkajs/node_modules; its test skips, saying so, when that is missing).
//
// It is a module of its own so that kvlog's go.mod does not carry the
// clients' dependencies; `make test` runs it after the main module.
//
// Every test starts one kvlogd (internal/testbroker, built with -race)
// with a PLAINTEXT listener for the harness, a SASL_SSL listener
// (SCRAM-SHA-512) and an SSL listener requiring client certificates
// (mTLS), the ACL authorizer on, and the SCRAM user and the client
// certificate's mapped principal as super users. Each client, configured
// with its own ordinary settings, then: creates and lists topics, produces
// a keyed batch with a tombstone at acks=all and reads it back in a
// consumer group that commits its offsets; and a wrong password, a SASL
// mechanism the listener does not enable and, for mTLS, a missing client
// certificate (for the Go clients also one from another CA) fail with the
// client's own errors, after which the broker still serves.
package goclients
