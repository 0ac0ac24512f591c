// Package pycompat runs newer Python Kafka clients against the real
// kvlogd: confluent-kafka (with the librdkafka it bundles) and kafka-python
// 3.x, pinned in requirements.txt and installed by `make tools-python`
// into the repository's .venv-compat/, beside the Debian python3-kafka the
// older suite in cmd/kvlogd uses. pycompat.py runs named cases and prints
// one RESULT line of JSON per case; the tests here check what it produced
// against the same keyed model the Java suite uses, reading it back with
// franz-go. security_test.go runs them over SASL_SSL (SCRAM-SHA-512) and
// SSL (mTLS), each client configured with its own settings, passed as JSON
// in $KVLOG_CLIENT_CONFIG.
package pycompat
