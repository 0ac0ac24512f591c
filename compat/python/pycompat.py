"""Python Kafka clients against kvlog: confluent-kafka (its bundled
librdkafka) and kafka-python 3.x, driven by pycompat_test.go.

    python pycompat.py CLIENT BOOTSTRAP PREFIX CASE[=ARG]...

CLIENT is "confluent" or "kafka-python". Each case prints one line
"RESULT {json}": the case, the client and its version, ok, and on failure
the client API it was in and the error; "data" holds what the Go side
checks. The keyed records follow the model javacompat_test.go and
pycompat_test.go compute too.
"""
import json
import os
import sys
import time
import traceback

N = 600


def model_key(i):
    return "k%d" % (i % 40)


def model_value(tag, i):
    if i % 9 == 8:
        return None
    return "%s-%d-%s" % (tag, i, "x" * (i % 50))


class Failed(Exception):
    pass


class Ctx:
    def __init__(self, bootstrap, prefix, arg):
        self.bootstrap, self.prefix, self.arg = bootstrap, prefix, arg
        # The client's own security settings (librdkafka keys for
        # confluent-kafka, keyword arguments for kafka-python), a JSON
        # object in $KVLOG_CLIENT_CONFIG, given to every client the case
        # makes.
        self.extra = json.loads(os.environ.get("KVLOG_CLIENT_CONFIG") or "{}")
        self.api = ""
        self.data = {}

    def step(self, api):
        self.api = api

    def check(self, ok, fmt, *args):
        if not ok:
            raise Failed(fmt % args)

    def topic(self, name):
        return "%s-%s" % (self.prefix, name)


def deadline_loop(ctx, seconds, what):
    end = time.time() + seconds
    while True:
        yield
        ctx.check(time.time() < end, "not within %ds: %s", seconds, what)


# ---------------------------------------------------------------- confluent

class Confluent:
    name = "confluent-kafka"

    def __init__(self):
        import confluent_kafka
        self.ck = confluent_kafka
        v = confluent_kafka.version()
        self.version = "%s (librdkafka %s)" % (v[0] if isinstance(v, tuple) else v, confluent_kafka.libversion()[0])

    def admin(self, ctx):
        from confluent_kafka.admin import AdminClient
        return AdminClient({**ctx.extra, "bootstrap.servers": ctx.bootstrap})

    def create_topic(self, ctx, name, partitions, configs):
        from confluent_kafka.admin import NewTopic
        a = self.admin(ctx)
        ctx.step("AdminClient.create_topics")
        fs = a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=-1, config=configs)], request_timeout=30)
        try:
            fs[name].result(30)
        except self.ck.KafkaException as e:
            if e.args[0].code() != self.ck.KafkaError.TOPIC_ALREADY_EXISTS:
                raise

    def produce_codecs(self, ctx):
        codec = ctx.arg
        topic = ctx.topic("codec-" + codec)
        self.create_topic(ctx, topic, 3, {"cleanup.policy": "compact"})
        p = self.ck.Producer({**ctx.extra, "bootstrap.servers": ctx.bootstrap, "enable.idempotence": True, "compression.type": codec,
                              "linger.ms": 20, "partitioner": "murmur2_random"})
        errs = []

        def cb(err, msg):
            if err is not None:
                errs.append(str(err))
        ctx.step("Producer.produce")
        for i in range(N):
            v = model_value(codec, i)
            p.produce(topic, key=model_key(i), value=None if v is None else v.encode(),
                      headers=[("seq", str(i).encode()), ("tag", codec.encode())], on_delivery=cb)
            p.poll(0)
        ctx.step("Producer.flush")
        left = p.flush(60)
        ctx.check(left == 0 and not errs, "%d records undelivered, errors %s", left, errs[:3])
        ctx.data["topic"] = topic

    def group_resume(self, ctx):
        topic, group = ctx.topic("resume"), ctx.topic("g-resume")
        self.create_topic(ctx, topic, 3, {})
        p = self.ck.Producer({**ctx.extra, "bootstrap.servers": ctx.bootstrap, "partitioner": "murmur2_random"})
        ctx.step("Producer.produce")
        for i in range(900):
            p.produce(topic, key="k%d" % (i % 97), value=str(i))
        p.flush(60)
        conf = {**ctx.extra, "bootstrap.servers": ctx.bootstrap, "group.id": group, "enable.auto.commit": False,
                "auto.offset.reset": "earliest", "session.timeout.ms": 6000}
        c = self.ck.Consumer(conf)
        c.subscribe([topic])
        ctx.step("Consumer.poll")
        n, last = 0, {}
        for _ in deadline_loop(ctx, 60, "consume 450 records"):
            if n >= 450:
                break
            m = c.poll(0.5)
            if m is None:
                continue
            ctx.check(m.error() is None, "poll: %s", m.error())
            n += 1
            last[m.partition()] = m.offset()
        commit = [self.ck.TopicPartition(topic, part, off + 1) for part, off in last.items()]
        ctx.step("Consumer.commit(asynchronous=False)")
        c.commit(offsets=commit, asynchronous=False)
        ctx.step("Consumer.committed")
        got = {tp.partition: tp.offset for tp in c.committed([self.ck.TopicPartition(topic, p_) for p_ in last], timeout=30)}
        want = {tp.partition: tp.offset for tp in commit}
        ctx.check(got == want, "committed %s, want %s", got, want)
        ctx.step("Consumer.close")
        c.close()
        # A new member resumes at the committed offsets.
        c = self.ck.Consumer(conf)
        c.subscribe([topic])
        ctx.step("Consumer.poll (resume)")
        first, total = {}, 0
        remaining = 900 - sum(want.get(p_, 0) for p_ in range(3))
        for _ in deadline_loop(ctx, 60, "consume the %d records after the committed offsets" % remaining):
            if total >= remaining:
                break
            m = c.poll(0.5)
            if m is None:
                continue
            ctx.check(m.error() is None, "poll: %s", m.error())
            first.setdefault(m.partition(), m.offset())
            total += 1
        for part, off in first.items():
            ctx.check(off == want.get(part, 0), "partition %d resumed at %d, committed %s", part, off, want.get(part))
        ctx.step("Consumer.commit(asynchronous=True)")
        c.commit(asynchronous=True)
        c.close()
        ctx.data.update(committed=want, first=first)

    def transactions(self, ctx):
        """Consume-transform-produce with send_offsets_to_transaction, every
        third transaction aborted; then the output under read_committed
        (each input once, nothing aborted), the group's offsets, and a
        zombie fenced by a second instance of the transactional id."""
        tin, tout, group = ctx.topic("txn-in"), ctx.topic("txn-out"), ctx.topic("g-txn")
        n = 300
        self.create_topic(ctx, tin, 3, {})
        self.create_topic(ctx, tout, 3, {"cleanup.policy": "compact"})
        p = self.ck.Producer({"bootstrap.servers": ctx.bootstrap, "partitioner": "murmur2_random"})
        ctx.step("Producer.produce")
        for i in range(n):
            p.produce(tin, key="k%d" % (i % 97), value=str(i))
        p.flush(60)
        pconf = {"bootstrap.servers": ctx.bootstrap, "transactional.id": ctx.topic("txn"), "transaction.timeout.ms": 30000}
        prod = self.ck.Producer(pconf)
        ctx.step("Producer.init_transactions")
        prod.init_transactions(30)
        c = self.ck.Consumer({"bootstrap.servers": ctx.bootstrap, "group.id": group, "enable.auto.commit": False,
                              "auto.offset.reset": "earliest", "isolation.level": "read_committed", "session.timeout.ms": 6000})
        c.subscribe([tin])
        done, rounds, commits, aborts = set(), 0, 0, 0
        for _ in deadline_loop(ctx, 90, "transform %d records" % n):
            if len(done) >= n:
                break
            ctx.step("Consumer.consume")
            msgs = c.consume(40, 0.5)
            if not msgs:
                continue
            for m in msgs:
                ctx.check(m.error() is None, "consume: %s", m.error())
            rounds += 1
            abort = rounds % 3 == 2
            ctx.step("Producer.begin_transaction")
            prod.begin_transaction()
            for m in msgs:
                prod.produce(tout, key=m.key(), value=(b"aborted-" if abort else b"") + m.value())
            ctx.step("Producer.send_offsets_to_transaction")
            prod.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 30)
            if abort:
                ctx.step("Producer.abort_transaction")
                prod.abort_transaction(30)
                aborts += 1
                ctx.step("Consumer.committed/seek")
                for tp in c.committed(c.assignment(), timeout=30):
                    c.seek(self.ck.TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else self.ck.OFFSET_BEGINNING))
                continue
            ctx.step("Producer.commit_transaction")
            prod.commit_transaction(30)
            commits += 1
            done.update(m.value() for m in msgs)
        ctx.step("Consumer.committed")
        committed = c.committed([self.ck.TopicPartition(tin, p_) for p_ in range(3)], timeout=30)
        total = sum(max(tp.offset, 0) for tp in committed)
        ctx.check(total == n, "the group's committed offsets sum to %d, want %d", total, n)
        c.close()
        # The output under read_committed.
        r = self.ck.Consumer({"bootstrap.servers": ctx.bootstrap, "group.id": ctx.topic("g-txn-read"), "enable.auto.commit": False,
                              "auto.offset.reset": "earliest", "isolation.level": "read_committed", "enable.partition.eof": True})
        r.subscribe([tout])
        seen, eof = {}, set()
        ctx.step("Consumer.consume(read_committed)")
        for _ in deadline_loop(ctx, 60, "read the output"):
            if len(eof) == 3:
                break
            m = r.poll(0.5)
            if m is None:
                continue
            if m.error() is not None:
                if m.error().code() == self.ck.KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                    continue
                ctx.check(False, "read: %s", m.error())
            v = m.value()
            ctx.check(not v.startswith(b"aborted-"), "read_committed returned aborted %r", v)
            seen[v] = seen.get(v, 0) + 1
        r.close()
        ctx.check(len(seen) == n, "read_committed returned %d distinct inputs, want %d", len(seen), n)
        dup = [v for v, k in seen.items() if k != 1]
        ctx.check(not dup, "inputs read more than once: %s", dup[:5])
        # Fencing: a second instance of the transactional id.
        prod.begin_transaction()
        prod.produce(tout, key="zombie", value="zombie")
        prod.flush(30)
        fresh = self.ck.Producer(pconf)
        ctx.step("Producer.init_transactions(new instance)")
        fresh.init_transactions(30)
        fenced = None
        try:
            ctx.step("Producer.commit_transaction(zombie)")
            prod.produce(tout, key="zombie", value="zombie-2")
            prod.commit_transaction(30)
        except self.ck.KafkaException as e:
            fenced = e.args[0]
        ctx.check(fenced is not None and (fenced.fatal() or "fenced" in str(fenced).lower()), "the zombie was not fenced: %s", fenced)
        fresh.begin_transaction()
        fresh.produce(tout, key="fresh", value="fresh")
        fresh.commit_transaction(30)
        ctx.data.update(commits=commits, aborts=aborts, fenced=str(fenced))

    def admin_case(self, ctx):
        from confluent_kafka.admin import ConfigResource, ResourceType, OffsetSpec
        from confluent_kafka import TopicPartition, ConsumerGroupTopicPartitions
        a = self.admin(ctx)
        topic = ctx.topic("admin")
        self.create_topic(ctx, topic, 2, {"cleanup.policy": "compact,delete", "min.cleanable.dirty.ratio": "0.1"})  # delete_records needs "delete"
        ctx.step("AdminClient.describe_configs")
        res = ConfigResource(ResourceType.TOPIC, topic)
        cfg = a.describe_configs([res])[res].result(30)
        cp = cfg["cleanup.policy"]
        ctx.check(cp.value == "compact,delete" and cp.source == 1, "cleanup.policy %s source %s", cp.value, cp.source)
        rt = cfg["retention.ms"]
        ctx.check(rt.value == "604800000" and rt.source == 5, "retention.ms %s source %s", rt.value, rt.source)
        p = self.ck.Producer({**ctx.extra, "bootstrap.servers": ctx.bootstrap})
        base = 1700000000000
        for i in range(100):
            ts = base + 1000000 if i == 70 else base + i * 1000  # the maximum in the middle
            p.produce(topic, key="k%d" % i, value="v", partition=0, timestamp=ts)
        p.flush(60)
        tp = TopicPartition(topic, 0)
        got = {}
        for name, spec in (("earliest", OffsetSpec.earliest()), ("latest", OffsetSpec.latest()),
                           ("ts", OffsetSpec.for_timestamp(base + 30500)), ("max", OffsetSpec.max_timestamp())):
            ctx.step("AdminClient.list_offsets " + name)
            r = a.list_offsets({tp: spec})[tp].result(30)
            got[name] = r.offset
        ctx.check(got == {"earliest": 0, "latest": 100, "ts": 31, "max": 70}, "list_offsets %s", got)
        ctx.step("AdminClient.delete_records")
        r = a.delete_records([TopicPartition(topic, 0, 40)])
        low = list(r.values())[0].result(30)
        ctx.check(low.low_watermark == 40, "delete_records low watermark %s", low.low_watermark)
        ctx.step("AdminClient.list_offsets earliest")
        r = a.list_offsets({tp: OffsetSpec.earliest()})[tp].result(30)
        ctx.check(r.offset == 40, "earliest after delete_records %d", r.offset)
        # A group with committed offsets, then listed and described.
        group = ctx.topic("g-admin")
        c = self.ck.Consumer({**ctx.extra, "bootstrap.servers": ctx.bootstrap, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.subscribe([topic])
        ctx.step("Consumer.poll")
        for _ in deadline_loop(ctx, 60, "a record"):
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                break
        c.commit(asynchronous=False)
        ctx.step("AdminClient.describe_consumer_groups (active)")
        d = a.describe_consumer_groups([group])[group].result(30)
        ctx.check(len(d.members) == 1 and str(d.state).endswith("STABLE"), "describe %s: state %s members %d", group, d.state, len(d.members))
        c.close()
        ctx.step("AdminClient.list_consumer_groups")
        lst = a.list_consumer_groups().result(30)
        ids = [g.group_id for g in lst.valid]
        ctx.check(group in ids, "list_consumer_groups %s lacks %s", ids, group)
        ctx.step("AdminClient.describe_consumer_groups")
        d = a.describe_consumer_groups([group])[group].result(30)
        ctx.check(str(d.state).endswith("EMPTY") and not d.members, "describe %s after close: state %s", group, d.state)
        ctx.step("AdminClient.list_consumer_group_offsets")
        o = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(30)
        ctx.check(any(x.offset > 0 for x in o.topic_partitions), "committed offsets %s", o.topic_partitions)
        ctx.data.update(offsets=got, state=str(d.state))

    def auth_refused(self, ctx):
        """The client configuration is refused: librdkafka reports it
        through error_cb, as against Apache Kafka: _AUTHENTICATION for a
        failed SASL exchange; for a missing client certificate the TLS 1.3
        alert "certificate required" (a transport error: under TLS 1.3 the
        server's verdict arrives after the client finished its handshake)."""
        from confluent_kafka.admin import AdminClient
        seen = []
        a = AdminClient({**ctx.extra, "bootstrap.servers": ctx.bootstrap, "error_cb": seen.append})
        ctx.step("AdminClient.list_topics")
        try:
            a.list_topics(timeout=3)
            ctx.check(False, "list_topics succeeded with refused credentials")
        except self.ck.KafkaException as e:
            seen.append(e.args[0])
        a.poll(1)  # serves error_cb
        if ctx.arg == "sasl":
            hits = [e for e in seen if e.code() == self.ck.KafkaError._AUTHENTICATION]
        else:
            hits = [e for e in seen if "certificate required" in e.str()]
        ctx.check(hits, "errors %s, want %s", sorted(set(str(e) for e in seen))[:5],
                  "_AUTHENTICATION" if ctx.arg == "sasl" else "the TLS alert certificate required")
        ctx.data["error"] = str(hits[0])

# ------------------------------------------------------------- kafka-python

class KafkaPython:
    name = "kafka-python"

    def __init__(self):
        import kafka
        self.k = kafka
        self.version = kafka.__version__

    def admin(self, ctx):
        return self.k.KafkaAdminClient(bootstrap_servers=ctx.bootstrap, **ctx.extra, request_timeout_ms=30000)

    def create_topic(self, ctx, name, partitions, configs):
        from kafka.errors import TopicAlreadyExistsError
        a = self.admin(ctx)
        ctx.step("KafkaAdminClient.create_topics")
        try:
            a.create_topics({name: {"num_partitions": partitions, "replication_factor": -1, "configs": configs}})
        except TopicAlreadyExistsError:
            pass
        finally:
            a.close()

    def produce_codecs(self, ctx):
        codec = ctx.arg
        topic = ctx.topic("codec-" + codec)
        self.create_topic(ctx, topic, 3, {"cleanup.policy": "compact"})
        p = self.k.KafkaProducer(bootstrap_servers=ctx.bootstrap, **ctx.extra, enable_idempotence=True, acks="all",
                                 compression_type=None if codec == "none" else codec, linger_ms=20)
        ctx.step("KafkaProducer.send")
        fs = []
        for i in range(N):
            v = model_value(codec, i)
            fs.append(p.send(topic, key=model_key(i).encode(), value=None if v is None else v.encode(),
                             headers=[("seq", str(i).encode()), ("tag", codec.encode())]))
        ctx.step("KafkaProducer.flush")
        p.flush(60)
        ctx.step("KafkaProducer.send (acknowledgement)")
        for f in fs:
            f.get(30)
        p.close()
        ctx.data["topic"] = topic

    def group_resume(self, ctx):
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata
        topic, group = ctx.topic("resume"), ctx.topic("g-resume")
        self.create_topic(ctx, topic, 3, {})
        p = self.k.KafkaProducer(bootstrap_servers=ctx.bootstrap, **ctx.extra)
        ctx.step("KafkaProducer.send")
        for i in range(900):
            p.send(topic, key=("k%d" % (i % 97)).encode(), value=str(i).encode())
        p.flush(60)
        p.close()
        kw = dict(bootstrap_servers=ctx.bootstrap, **ctx.extra, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest",
                  session_timeout_ms=6000, heartbeat_interval_ms=1000)
        c = self.k.KafkaConsumer(topic, **kw)
        ctx.step("KafkaConsumer.poll")
        n, last = 0, {}
        for _ in deadline_loop(ctx, 60, "consume 450 records"):
            if n >= 450:
                break
            for tp, recs in c.poll(timeout_ms=500, max_records=50).items():
                for r in recs:
                    n += 1
                    last[tp.partition] = r.offset
        want = {part: off + 1 for part, off in last.items()}
        ctx.step("KafkaConsumer.commit")
        c.commit({TopicPartition(topic, part): OffsetAndMetadata(off, "", -1) for part, off in want.items()})
        ctx.step("KafkaConsumer.committed")
        for part, off in want.items():
            got = c.committed(TopicPartition(topic, part))
            ctx.check(got == off, "partition %d committed %s, want %d", part, got, off)
        c.close()
        c = self.k.KafkaConsumer(topic, **kw)
        ctx.step("KafkaConsumer.poll (resume)")
        first, total = {}, 0
        remaining = 900 - sum(want.get(p_, 0) for p_ in range(3))
        for _ in deadline_loop(ctx, 60, "consume the %d records after the committed offsets" % remaining):
            if total >= remaining:
                break
            for tp, recs in c.poll(timeout_ms=500).items():
                for r in recs:
                    first.setdefault(tp.partition, r.offset)
                    total += 1
        for part, off in first.items():
            ctx.check(off == want.get(part, 0), "partition %d resumed at %d, committed %s", part, off, want.get(part))
        ctx.step("KafkaConsumer.commit_async")
        c.commit_async()
        c.close()
        ctx.data.update(committed=want, first=first)

    def transactions(self, ctx):
        """kafka-python's transactional producer: consume-transform-produce
        with send_offsets_to_transaction, every third transaction aborted;
        then the output under read_committed (each input once, nothing
        aborted), the group's offsets, and a zombie fenced by a second
        instance of the transactional id."""
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata
        from kafka.errors import KafkaError
        tin, tout, group = ctx.topic("txn-in"), ctx.topic("txn-out"), ctx.topic("g-txn")
        n = 300
        self.create_topic(ctx, tin, 3, {})
        self.create_topic(ctx, tout, 3, {"cleanup.policy": "compact"})
        p = self.k.KafkaProducer(bootstrap_servers=ctx.bootstrap, **ctx.extra)
        ctx.step("KafkaProducer.send")
        for i in range(n):
            p.send(tin, key=("k%d" % (i % 97)).encode(), value=str(i).encode())
        p.flush(60)
        p.close()
        pconf = dict(bootstrap_servers=ctx.bootstrap, **ctx.extra, transactional_id=ctx.topic("txn"), transaction_timeout_ms=30000)
        prod = self.k.KafkaProducer(**pconf)
        ctx.step("KafkaProducer.init_transactions")
        prod.init_transactions()
        c = self.k.KafkaConsumer(tin, bootstrap_servers=ctx.bootstrap, **ctx.extra, group_id=group, enable_auto_commit=False,
                                 auto_offset_reset="earliest", isolation_level="read_committed",
                                 session_timeout_ms=6000, heartbeat_interval_ms=1000)
        done, rounds, commits, aborts = set(), 0, 0, 0
        for _ in deadline_loop(ctx, 90, "transform %d records" % n):
            if len(done) >= n:
                break
            ctx.step("KafkaConsumer.poll")
            msgs = [m for recs in c.poll(timeout_ms=500, max_records=40).values() for m in recs]
            if not msgs:
                continue
            rounds += 1
            abort = rounds % 3 == 2
            ctx.step("KafkaProducer.begin_transaction")
            prod.begin_transaction()
            for m in msgs:
                prod.send(tout, key=m.key, value=(b"aborted-" if abort else b"") + m.value)
            ctx.step("KafkaProducer.send_offsets_to_transaction")
            offsets = {tp: OffsetAndMetadata(c.position(tp), "", -1) for tp in c.assignment()}
            prod.send_offsets_to_transaction(offsets, c.group_metadata())
            if abort:
                ctx.step("KafkaProducer.abort_transaction")
                prod.abort_transaction()
                aborts += 1
                ctx.step("KafkaConsumer.committed/seek")
                for tp in c.assignment():
                    off = c.committed(tp)
                    if off is None:
                        c.seek_to_beginning(tp)
                    else:
                        c.seek(tp, off)
                continue
            ctx.step("KafkaProducer.commit_transaction")
            prod.commit_transaction()
            commits += 1
            done.update(m.value for m in msgs)
        ctx.step("KafkaConsumer.committed")
        total = sum(c.committed(TopicPartition(tin, p_)) or 0 for p_ in range(3))
        ctx.check(total == n, "the group's committed offsets sum to %d, want %d", total, n)
        c.close()
        # The output under read_committed, to the last stable offsets.
        r = self.k.KafkaConsumer(bootstrap_servers=ctx.bootstrap, **ctx.extra, enable_auto_commit=False,
                                 auto_offset_reset="earliest", isolation_level="read_committed")
        tps = [TopicPartition(tout, p_) for p_ in range(3)]
        r.assign(tps)
        r.seek_to_beginning(*tps)
        ctx.step("KafkaConsumer.end_offsets(read_committed)")
        ends = r.end_offsets(tps)
        seen = {}
        ctx.step("KafkaConsumer.poll(read_committed)")
        for _ in deadline_loop(ctx, 60, "read the output"):
            if all(r.position(tp) >= ends[tp] for tp in tps):
                break
            for recs in r.poll(timeout_ms=500).values():
                for m in recs:
                    ctx.check(not m.value.startswith(b"aborted-"), "read_committed returned aborted %r", m.value)
                    seen[m.value] = seen.get(m.value, 0) + 1
        r.close()
        ctx.check(len(seen) == n, "read_committed returned %d distinct inputs, want %d", len(seen), n)
        dup = [v for v, k in seen.items() if k != 1]
        ctx.check(not dup, "inputs read more than once: %s", dup[:5])
        # Fencing: a second instance of the transactional id.
        prod.begin_transaction()
        prod.send(tout, key=b"zombie", value=b"zombie")
        prod.flush(30)
        fresh = self.k.KafkaProducer(**pconf)
        ctx.step("KafkaProducer.init_transactions(new instance)")
        fresh.init_transactions()
        fenced = None
        try:
            ctx.step("KafkaProducer.commit_transaction(zombie)")
            prod.send(tout, key=b"zombie", value=b"zombie-2")
            prod.commit_transaction()
        except KafkaError as e:
            fenced = e
        ctx.check(fenced is not None and ("fenced" in type(fenced).__name__.lower() or "epoch" in type(fenced).__name__.lower()),
                  "the zombie was not fenced: %r", fenced)
        prod.close(5)
        fresh.begin_transaction()
        fresh.send(tout, key=b"fresh", value=b"fresh")
        fresh.commit_transaction()
        fresh.close()
        ctx.data.update(commits=commits, aborts=aborts, fenced=repr(fenced))

    def admin_case(self, ctx):
        from kafka import TopicPartition
        from kafka.admin import ConfigResource, ConfigResourceType
        from kafka.admin import OffsetSpec
        topic = ctx.topic("admin")
        self.create_topic(ctx, topic, 2, {"cleanup.policy": "compact,delete", "min.cleanable.dirty.ratio": "0.1"})  # delete_records needs "delete"
        a = self.admin(ctx)
        ctx.step("KafkaAdminClient.describe_configs")
        res = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
        ctx.data["describe_configs"] = repr(res)[:800]
        text = repr(res)
        ctx.check("cleanup.policy" in text and "compact" in text, "describe_configs: %s", text[:400])
        p = self.k.KafkaProducer(bootstrap_servers=ctx.bootstrap, **ctx.extra, linger_ms=20)
        base = 1700000000000
        for i in range(100):
            ts = base + 1000000 if i == 70 else base + i * 1000  # the maximum in the middle
            p.send(topic, key=b"k%d" % i, value=b"v", partition=0, timestamp_ms=ts)
        p.flush(60)
        p.close()
        tp = TopicPartition(topic, 0)
        got = {}
        for name, spec in (("earliest", OffsetSpec.EARLIEST), ("latest", OffsetSpec.LATEST),
                           ("ts", base + 30500), ("max", OffsetSpec.MAX_TIMESTAMP)):
            ctx.step("KafkaAdminClient.list_partition_offsets " + name)
            r = a.list_partition_offsets({tp: spec})
            got[name] = r[tp].offset
        ctx.check(got == {"earliest": 0, "latest": 100, "ts": 31, "max": 70}, "list_partition_offsets %s", got)
        ctx.step("KafkaAdminClient.delete_records")
        r = a.delete_records({tp: 40})
        ctx.data["delete_records"] = repr(r)[:300]
        ctx.step("KafkaAdminClient.list_partition_offsets earliest")
        e = a.list_partition_offsets({tp: OffsetSpec.EARLIEST})[tp].offset
        ctx.check(e == 40, "earliest after delete_records %d", e)
        group = ctx.topic("g-admin")
        c = self.k.KafkaConsumer(topic, bootstrap_servers=ctx.bootstrap, **ctx.extra, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest")
        ctx.step("KafkaConsumer.poll")
        for _ in deadline_loop(ctx, 60, "a record"):
            if c.poll(timeout_ms=500):
                break
        c.commit()
        c.close()
        ctx.step("KafkaAdminClient.list_groups")
        groups = a.list_groups()
        ctx.check(group in repr(groups), "list_groups %s lacks %s", repr(groups)[:400], group)
        ctx.step("KafkaAdminClient.describe_groups")
        d = a.describe_groups([group])
        ctx.check("Empty" in repr(d) or "EMPTY" in repr(d), "describe_groups %s", repr(d)[:400])
        ctx.step("KafkaAdminClient.list_group_offsets")
        o = a.list_group_offsets({group: None})
        ctx.check(topic in repr(o), "list_group_offsets %s", repr(o)[:400])
        a.close()
        ctx.data.update(offsets=got)

    def auth_refused(self, ctx):
        """The client configuration is refused: kafka-python gives up
        bootstrapping (KafkaTimeoutError) after logging each failed
        bootstrap connection with the reason, its SASL authentication
        error or the TLS alert. The broker answers a failed SASL exchange
        and then closes the connection, as Kafka does; kafka-python's
        transport drops what it read in the same pass as the close, so an
        attempt may report only "socket disconnected" (the Go side checks
        the broker's log for the refusal)."""
        import logging
        want = {"sasl": ("SaslAuthenticationFailedError", "socket disconnected"), "ssl": ("SSL",)}[ctx.arg]
        reasons = []

        class Collect(logging.Handler):
            def emit(self, record):
                if record.getMessage().startswith("Bootstrap connection to"):
                    reasons.append(record.getMessage())
        logging.getLogger("kafka").addHandler(Collect())
        ctx.step("KafkaAdminClient")
        try:
            self.k.KafkaAdminClient(bootstrap_servers=ctx.bootstrap, **ctx.extra, bootstrap_timeout_ms=3000)
            ctx.check(False, "KafkaAdminClient bootstrapped with refused credentials")
        except self.k.errors.KafkaTimeoutError as e:
            hits = sorted((r for r in reasons if any(w in r for w in want)), key=lambda r: want[0] not in r)
            ctx.check(hits, "%s; failed bootstrap connections %s, want one naming %s", e, reasons[:5], want)
            ctx.data["error"] = hits[0]

CASES = {"produce-codecs": "produce_codecs", "group-resume": "group_resume", "admin": "admin_case", "auth-refused": "auth_refused", "transactions": "transactions"}


def main():
    client_name, bootstrap, prefix = sys.argv[1:4]
    client = Confluent() if client_name == "confluent" else KafkaPython()
    for spec in sys.argv[4:]:
        name, _, arg = spec.partition("=")
        ctx = Ctx(bootstrap, prefix, arg or None)
        res = {"case": name, "client": "%s %s" % (client.name, client.version)}
        start = time.time()
        try:
            getattr(client, CASES[name])(ctx)
            res["ok"] = True
        except Failed as e:
            res.update(ok=False, api=ctx.api, error=str(e))
        except Exception as e:  # noqa: BLE001 - every failure is reported
            res.update(ok=False, api=ctx.api, error="%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc()))
        res["ms"] = int((time.time() - start) * 1000)
        res["data"] = ctx.data
        print("RESULT " + json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
