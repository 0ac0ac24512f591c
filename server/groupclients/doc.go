// Package groupclients holds the consumer-group integration tests: a
// real kvlogd process (built with -race) driven by real clients — franz-go
// groups rebalancing while members come and go, kafka-python and kcat
// (librdkafka) consumer groups committing and resuming — with broker
// restarts (SIGTERM and SIGKILL) in between, so that committed offsets and
// group metadata are shown to come back from __consumer_offsets. The
// package has no code outside its tests.
package groupclients
