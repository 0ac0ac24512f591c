# kvlog — build, run, test. `make run` and `make test` are all a fresh machine needs.
GO        ?= go
BIN       := bin
PKGS      := ./...
FUZZTIME  ?= 15s
APT_PKGS  := kcat chromium zookeeper python3-kafka python3-snappy python3-lz4 python3-zstandard nftables

.PHONY: all build run tools tools-java tools-python tools-console tools-kafkajs deps tools-kafka kafka-golden test chaos partitions bench bench-quick bench-smoke bench-cluster-partitions bench-engine tools-bench fuzz lint fmt clean

all: build

# The version both binaries report (--version, the kvlog_build_info
# metric): `git describe` of the checkout, or "devel" outside git.
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS   := -X github.com/kvlog/kvlog/internal/buildinfo.Stamped=$(VERSION)

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

run:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/kvlogd ./cmd/kvlogd
	./$(BIN)/kvlogd

# Debian packages the integration suites drive (kcat, ZooKeeper, kafka-python
# with its snappy/lz4/zstd codec libraries, all for Debian's /usr/bin/python3,
# nftables, which cuts links in the network-partition tests, and chromium,
# which the console's browser test drives); installed only when missing.
tools:
	@missing=""; \
	command -v kcat >/dev/null 2>&1 || missing="$$missing kcat"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || missing="$$missing nftables"; \
	[ -x /usr/share/zookeeper/bin/zkServer.sh ] || missing="$$missing zookeeper"; \
	/usr/bin/python3 -c 'import kafka' >/dev/null 2>&1 || missing="$$missing python3-kafka"; \
	/usr/bin/python3 -c 'import snappy' >/dev/null 2>&1 || missing="$$missing python3-snappy"; \
	/usr/bin/python3 -c 'import lz4.frame' >/dev/null 2>&1 || missing="$$missing python3-lz4"; \
	/usr/bin/python3 -c 'import zstandard' >/dev/null 2>&1 || missing="$$missing python3-zstandard"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

# Apache Kafka's Java clients and Kafka Streams (compat/java): a JDK and
# Maven from Debian when missing, then the module's pinned dependencies
# into ~/.m2 (Maven's own cache; nothing is fetched once it is warm).
tools-java:
	@missing=""; \
	command -v java >/dev/null 2>&1 || missing="$$missing openjdk-17-jdk-headless"; \
	command -v mvn >/dev/null 2>&1 || missing="$$missing maven"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@cd compat/java && { mvn -o -q -B compile dependency:build-classpath >/dev/null 2>&1 || mvn -q -B compile dependency:build-classpath; } \
		&& { mvn -o -q -B -P clients3 dependency:build-classpath >/dev/null 2>&1 || mvn -q -B -P clients3 dependency:build-classpath; }

# Newer Python clients (compat/python): confluent-kafka and kafka-python
# 3.x at the versions compat/python/requirements.txt pins, in a venv of
# Debian's python3 (.venv-compat/, pip's own cache between runs), rebuilt
# when the requirements change.
VENV_COMPAT := .venv-compat
tools-python: $(VENV_COMPAT)/.installed

$(VENV_COMPAT)/.installed: compat/python/requirements.txt
	@/usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || { \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq python3-venv; }
	@[ -x $(VENV_COMPAT)/bin/python ] || /usr/bin/python3 -m venv $(VENV_COMPAT)
	$(VENV_COMPAT)/bin/python -m pip install -q --disable-pip-version-check -r compat/python/requirements.txt
	@cp compat/python/requirements.txt $@

# The console's browser test (console/browser_test.go): Debian's chromium
# and Node.js when missing, then playwright-core at the version
# console/e2e/package-lock.json pins, into console/e2e/node_modules
# (npm ci; again when the lock file changes). Playwright downloads no
# browser: the test drives /usr/bin/chromium.
E2E := console/e2e
tools-console: $(E2E)/node_modules/.installed

$(E2E)/node_modules/.installed: $(E2E)/package-lock.json
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v node >/dev/null 2>&1 || missing="$$missing nodejs"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	cd $(E2E) && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent
	@touch $@

# kafkajs for compat/goclients (TestKafkajsSecure): Debian's Node.js when
# missing, then kafkajs at the version compat/goclients/kafkajs/package-lock.json
# pins, into compat/goclients/kafkajs/node_modules (npm ci; again when the
# lock file changes).
KAFKAJS := compat/goclients/kafkajs
tools-kafkajs: $(KAFKAJS)/node_modules/.installed

$(KAFKAJS)/node_modules/.installed: $(KAFKAJS)/package-lock.json
	@missing=""; \
	command -v node >/dev/null 2>&1 || missing="$$missing nodejs"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	cd $(KAFKAJS) && npm ci --no-audit --no-fund --silent
	@touch $@

deps:
	$(GO) mod download
	cd compat/goclients && $(GO) mod download

# Apache Kafka's own tools and broker (compat/kafka): a JDK (17+) and Maven from
# Debian when missing, then the Maven jars of kafka_2.13 and kafka-tools,
# whose classpath the tests of compat/kafka read from target/classpath.txt.
tools-kafka:
	@missing=""; \
	command -v javac >/dev/null 2>&1 || missing="$$missing default-jdk-headless"; \
	command -v mvn >/dev/null 2>&1 || missing="$$missing maven"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	cd compat/kafka && mvn -B -q dependency:build-classpath -Dmdep.outputFile=target/classpath.txt

# Regenerates engine/testdata/kafka-golden with a real Apache Kafka broker
# (KRaft, from the Maven jars): a compacted topic written with every codec.
kafka-golden: deps tools-kafka
	$(GO) test -run '^TestKafkaWrittenGolden$$' -count=1 -v -timeout 10m ./compat/kafka -update

test: deps tools tools-java tools-python tools-kafka tools-console tools-kafkajs lint
	$(GO) test -race -tags invariants -timeout 12m $(PKGS)
	cd deploy && $(GO) test -timeout 5m ./...
	cd compat/goclients && $(GO) test -race -tags invariants -timeout 5m ./...

# Long randomized fault run of a 3-broker ZooKeeper cluster (not in CI):
# kill -9, SIGSTOP, clean bounces and controller kills under an acks=all
# keyed load; prints lost/duplicated/reordered/inconsistent-offset counts.
# CHAOS_SECURITY=SASL_SSL runs it secured end to end: SASL_SSL (SCRAM-SHA-512)
# between brokers and for the load, ZooKeeper authentication and znode ACLs.
CHAOS_DURATION ?= 5m
CHAOS_SECURITY ?= PLAINTEXT
# CHAOS_PARTITIONS=3000 runs it with the checked topic spread over 3,000
# partitions (every one written, moved by the faults and checked).
CHAOS_PARTITIONS ?= 6
chaos: deps tools
	KVLOG_CHAOS_DURATION=$(CHAOS_DURATION) KVLOG_CHAOS_SECURITY=$(CHAOS_SECURITY) KVLOG_CHAOS_PARTITIONS=$(CHAOS_PARTITIONS) $(GO) test -run '^TestChaos$$' -count=1 -v -timeout 90m ./internal/testcluster

# Network partitions (not in CI; a 45-second version runs in `make test`):
# ZooKeeper and each broker in their own network namespace, a nemesis that
# cuts, one-way drops, flaps, loses and slows links and pauses or kills
# brokers, under acks=all and acks=1 keyed loads and a consumer group; prints
# the anomaly table (docs/partitions.md). Needs root. PARTITIONS_BROKERS=5
# for five brokers, KVLOG_PARTITIONS_SEED to replay a schedule.
PARTITIONS_DURATION ?= 10m
PARTITIONS_BROKERS  ?= 3
PARTITIONS_TIMEOUT  ?= 3h
partitions: deps tools
	KVLOG_PARTITIONS_DURATION=$(PARTITIONS_DURATION) KVLOG_PARTITIONS_BROKERS=$(PARTITIONS_BROKERS) \
		$(GO) test -run '^TestPartitions$$' -count=1 -v -timeout $(PARTITIONS_TIMEOUT) ./internal/testcluster

# Side-by-side benchmark suite (not part of `make test`): builds
# kvlogd and kfaked, runs every scenario against kvlogd, kfake (memory and
# DataDir), NATS JetStream, Apache Kafka (its default and flush.messages=1)
# and 3-broker clusters of kvlog and Kafka in alternating rounds, and
# writes bench/results/<date>/report.md with PNG charts (see bench/doc.go).
# BENCH_FLAGS passes extra flags, e.g. BENCH_FLAGS='-scenarios produce -reps 2'.
# The full run is sized for about 62 minutes on a quiet 2-core machine
# (per-scenario budget in bench/kvbench/config.go, fullConfig; a scenario
# running past 1.5x its share is cut, keeping what it measured) and needs
# about 38 GB (35 GiB) free under the temp dir (the recovery scenario holds three
# 10 GiB logs at once; kvbench warns at start when there is less). Run it
# with nothing else on the machine.
BENCH_FLAGS ?=
bench: deps tools-bench
	cd bench/kvbench && $(GO) build -o $(CURDIR)/$(BIN)/kvbench .
	./$(BIN)/kvbench -root $(CURDIR) $(BENCH_FLAGS)

# The reduced run (about 6-10 minutes): Apache Kafka in its produce, consume
# and latency cells only.
bench-quick: deps tools-bench
	cd bench/kvbench && $(GO) build -o $(CURDIR)/$(BIN)/kvbench .
	./$(BIN)/kvbench -root $(CURDIR) -quick $(BENCH_FLAGS)

# The smoke run before a full one (about 10 minutes on a quiet machine):
# every scenario with Apache Kafka, as in the full run, at the smallest
# sizes; its figures mean nothing, it checks that the full run's code paths
# work. Results go to a temp dir, not bench/results.
bench-smoke: deps tools-bench
	cd bench/kvbench && $(GO) build -o $(CURDIR)/$(BIN)/kvbench .
	./$(BIN)/kvbench -root $(CURDIR) -tiny -out $$(mktemp -d) $(BENCH_FLAGS)

# The controller and brokers at many partitions (not part of `make test`):
# three kvlogd and a ZooKeeper, CLUSTER_PARTITIONS RF-3 partitions each
# (comma-separated counts); prints the table of create time (until every
# partition accepts a produce), premature leads in Metadata, idle CPU with
# followers alone and with a consumer of every partition, and controller
# fail-over time (session expiry until every partition accepts a produce).
# For a same-machine before/after, run it again with KVLOG_TEST_KVLOGD set to
# another revision's kvlogd (go build -o /tmp/kvlogd-before ./cmd/kvlogd at
# that revision), alternating the two; KVLOG_BENCH_PROFILE=<dir> keeps the
# brokers' CPU profiles, goroutine dumps and logs of each phase.
CLUSTER_PARTITIONS ?= 3000,10000
bench-cluster-partitions: deps tools
	KVLOG_BENCH_PARTITIONS=$(CLUSTER_PARTITIONS) $(GO) test -run '^$$' -bench '^BenchmarkClusterPartitions$$' -benchtime 1x -timeout 90m ./internal/testcluster

# The engine's micro-benchmarks (append vs plain file, locate-read, recovery
# scan), what `make bench` ran before the suite.
bench-engine: deps
	$(GO) test -run '^$$' -bench . -benchmem -timeout 60m ./engine/...

# What the suite needs beyond Go: nats-server (NATS JetStream peer),
# ZooKeeper (replicated scenario), and Apache Kafka's Maven jars: 4.x from
# compat/kafka (tools-kafka, the single-node peer) and 3.9 in ZooKeeper mode
# from bench/kafka39 (the replicated peer), and compat/java's Kafka Streams
# application (tools-java, the restore scenario); installed only when missing.
tools-bench: tools-kafka tools-java
	cd bench/kafka39 && mvn -B -q dependency:build-classpath -Dmdep.outputFile=target/classpath.txt
	@missing=""; \
	command -v nats-server >/dev/null 2>&1 || missing="$$missing nats-server"; \
	[ -f /usr/share/java/zookeeper.jar ] || missing="$$missing zookeeper"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	cd compat/goclients && $(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN)
