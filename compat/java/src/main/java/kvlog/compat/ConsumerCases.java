package kvlog.compat;

import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;

/** Consumer cases: classic groups, commits, the state-rebuild pattern, offsetsForTimes. */
final class ConsumerCases {
    private ConsumerCases() {}

    static void register(Map<String, Main.Case> m) {
        m.put("group-assignors", ConsumerCases::groupAssignors);
        m.put("commit-before-restart", ConsumerCases::commitBeforeRestart);
        m.put("resume-after-restart", ConsumerCases::resumeAfterRestart);
        m.put("state-rebuild", ConsumerCases::stateRebuild);
        m.put("offsets-for-times", ConsumerCases::offsetsForTimes);
    }

    static void produce(Ctx ctx, String topic, int from, int to) throws Exception {
        Properties p = ctx.producerProps();
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        List<Future<RecordMetadata>> fs = new ArrayList<>();
        try (KafkaProducer<String, String> prod = ctx.producer(p)) {
            ctx.step("KafkaProducer.send");
            for (int i = from; i < to; i++) {
                fs.add(prod.send(new ProducerRecord<>(topic, "k" + (i % 97), Integer.toString(i))));
            }
            prod.flush();
            for (Future<RecordMetadata> f : fs) f.get();
        }
    }

    /** One group member in its own thread. */
    static final class Member implements ConsumerRebalanceListener {
        final String name;
        final KafkaConsumer<String, String> c;
        final boolean async;
        final Map<Integer, Integer> seen;
        final AtomicReference<Throwable> err;
        final Set<TopicPartition> owned = ConcurrentHashMap.newKeySet();
        final AtomicBoolean stop = new AtomicBoolean();
        volatile int rebalances;
        Thread thread;

        Member(String name, KafkaConsumer<String, String> c, boolean async, Map<Integer, Integer> seen, AtomicReference<Throwable> err) {
            this.name = name;
            this.c = c;
            this.async = async;
            this.seen = seen;
            this.err = err;
        }

        void start(String topic) {
            thread = new Thread(() -> {
                try {
                    c.subscribe(List.of(topic), this);
                    while (!stop.get()) {
                        ConsumerRecords<String, String> rs = c.poll(Ctx.ms(100));
                        for (ConsumerRecord<String, String> r : rs) {
                            seen.merge(Integer.parseInt(r.value()), 1, Integer::sum);
                        }
                        if (!rs.isEmpty()) {
                            if (async) c.commitAsync((offs, e) -> {
                                if (e != null && !(e instanceof org.apache.kafka.clients.consumer.RetriableCommitFailedException)
                                        && !(e instanceof org.apache.kafka.common.errors.RebalanceInProgressException)
                                        && !(e instanceof org.apache.kafka.clients.consumer.CommitFailedException)) {
                                    err.compareAndSet(null, new RuntimeException(name + " commitAsync", e));
                                }
                            });
                            else c.commitSync();
                        }
                    }
                    c.commitSync();
                } catch (Throwable t) {
                    err.compareAndSet(null, new RuntimeException(name + " poll/commit", t));
                } finally {
                    c.close();
                }
            }, name);
            thread.start();
        }

        @Override
        public void onPartitionsRevoked(Collection<TopicPartition> parts) {
            // Commit what was processed before giving partitions away: the
            // next owner continues exactly there.
            c.commitSync();
            owned.removeAll(parts);
        }

        @Override
        public void onPartitionsAssigned(Collection<TopicPartition> parts) {
            owned.addAll(parts);
            rebalances++;
        }

        @Override
        public void onPartitionsLost(Collection<TopicPartition> parts) {
            owned.removeAll(parts);
        }

        void close() throws InterruptedException {
            stop.set(true);
            thread.join(60_000);
        }
    }

    /**
     * group-assignors=ASSIGNOR (cooperative-sticky or range): three classic
     * members join one after the other while records are produced, the
     * first leaves; every record is consumed exactly once (commits in
     * onPartitionsRevoked) and the final assignment splits the partitions.
     */
    static void groupAssignors(Ctx ctx) throws Exception {
        String assignor = ctx.arg;
        String cls = assignor.equals("range") ? "org.apache.kafka.clients.consumer.RangeAssignor"
                : "org.apache.kafka.clients.consumer.CooperativeStickyAssignor";
        String topic = ctx.topic("group-" + assignor);
        String group = ctx.group(assignor);
        ProducerCases.createTopic(ctx, topic, 6, Map.of());
        produce(ctx, topic, 0, 3000);
        Map<Integer, Integer> seen = new ConcurrentHashMap<>();
        AtomicReference<Throwable> err = new AtomicReference<>();
        List<Member> members = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            Properties p = ctx.consumerProps(group);
            p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, cls);
            p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "50");
            p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "500");
            p.put(ConsumerConfig.CLIENT_ID_CONFIG, ctx.prefix + "-" + assignor + "-" + i);
            members.add(new Member("member-" + i, ctx.consumer(p), i > 0, seen, err));
        }
        ctx.step("KafkaConsumer.poll (member-0 alone)");
        members.get(0).start(topic);
        waitFor(ctx, err, () -> seen.size() >= 500, "member-0 consumes 500 records");
        ctx.step("KafkaConsumer.poll (member-1 joins)");
        members.get(1).start(topic);
        waitFor(ctx, err, () -> !members.get(1).owned.isEmpty(), "member-1 gets partitions");
        ctx.step("KafkaConsumer.poll (member-2 joins)");
        members.get(2).start(topic);
        waitFor(ctx, err, () -> !members.get(2).owned.isEmpty() && !members.get(0).owned.isEmpty() && !members.get(1).owned.isEmpty(),
                "all three members own partitions");
        produce(ctx, topic, 3000, 4500);
        ctx.step("KafkaConsumer.close (member-0 leaves)");
        members.get(0).close();
        produce(ctx, topic, 4500, 6000);
        ctx.step("KafkaConsumer.poll (member-1, member-2)");
        waitFor(ctx, err, () -> seen.size() >= 6000 && members.get(1).owned.size() + members.get(2).owned.size() == 6,
                "members 1 and 2 consume all 6000 records and own the 6 partitions");
        Set<TopicPartition> union = new HashSet<>(members.get(1).owned);
        union.addAll(members.get(2).owned);
        ctx.check(union.size() == 6, "final assignment %s / %s", members.get(1).owned, members.get(2).owned);
        Map<String, Object> owned = new TreeMap<>();
        for (Member m : members) owned.put(m.name, m.owned.toString());
        members.get(1).close();
        members.get(2).close();
        if (err.get() != null) throw new RuntimeException(err.get());
        List<Integer> dups = new ArrayList<>();
        seen.forEach((v, n) -> {
            if (n != 1) dups.add(v);
        });
        ctx.check(dups.isEmpty(), "%d records consumed more than once, e.g. %s", dups.size(), dups.subList(0, Math.min(10, dups.size())));
        ctx.check(seen.size() == 6000, "consumed %d distinct records of 6000", seen.size());
        // Everything consumed is committed.
        try (Admin admin = ctx.admin()) {
            Map<TopicPartition, OffsetAndMetadata> offs = ctx.get("Admin.listConsumerGroupOffsets",
                    admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
            long sum = 0;
            for (OffsetAndMetadata o : offs.values()) sum += o.offset();
            ctx.check(offs.size() == 6 && sum == 6000, "committed offsets %s, want the 6 partitions' ends (6000 records)", offs);
        }
        ctx.data.with("topic", topic).with("group", group).with("final", owned)
                .with("rebalances", List.of(members.get(0).rebalances, members.get(1).rebalances, members.get(2).rebalances));
    }

    interface Cond {
        boolean ok();
    }

    static void waitFor(Ctx ctx, AtomicReference<Throwable> err, Cond c, String what) throws InterruptedException {
        long deadline = System.currentTimeMillis() + 60_000;
        while (!c.ok()) {
            if (err.get() != null) throw new RuntimeException("waiting until " + what, err.get());
            ctx.check(System.currentTimeMillis() < deadline, "not within 60s: %s", what);
            Thread.sleep(20);
        }
    }

    /**
     * commit-before-restart: produces 900 records to 3 partitions, consumes
     * about half in a group and commits exactly half of each partition
     * (commitSync with offsets); the driver then SIGKILLs and restarts the
     * broker and runs resume-after-restart.
     */
    static void commitBeforeRestart(Ctx ctx) throws Exception {
        String topic = ctx.topic("resume");
        ProducerCases.createTopic(ctx, topic, 3, Map.of());
        produce(ctx, topic, 0, 900);
        Map<TopicPartition, OffsetAndMetadata> commit = new HashMap<>();
        try (KafkaConsumer<String, String> c = ctx.consumer(ctx.consumerProps(ctx.group("resume")))) {
            List<TopicPartition> tps = List.of(new TopicPartition(topic, 0), new TopicPartition(topic, 1), new TopicPartition(topic, 2));
            ctx.step("KafkaConsumer.endOffsets");
            Map<TopicPartition, Long> end = c.endOffsets(tps);
            ctx.step("KafkaConsumer.subscribe/poll");
            c.subscribe(List.of(topic));
            int n = 0;
            long deadline = System.currentTimeMillis() + 60_000;
            while (n < 450) {
                ctx.check(System.currentTimeMillis() < deadline, "consumed %d of 450 within 60s", n);
                n += c.poll(Ctx.ms(200)).count();
            }
            for (TopicPartition tp : tps) {
                commit.put(tp, new OffsetAndMetadata(end.get(tp) / 2, "half"));
            }
            ctx.step("KafkaConsumer.commitSync(offsets)");
            c.commitSync(commit);
            ctx.step("KafkaConsumer.committed");
            Map<TopicPartition, OffsetAndMetadata> got = c.committed(new HashSet<>(tps));
            ctx.check(got.equals(commit), "committed %s, want %s", got, commit);
        }
        Map<String, Object> out = new TreeMap<>();
        commit.forEach((tp, o) -> out.put(Integer.toString(tp.partition()), o.offset()));
        ctx.data.with("topic", topic).with("committed", out);
    }

    /** resume-after-restart: a new member of the group starts at the committed offsets. */
    static void resumeAfterRestart(Ctx ctx) throws Exception {
        String topic = ctx.topic("resume");
        Map<Integer, Long> first = new TreeMap<>();
        Map<Integer, Long> committed = new TreeMap<>();
        try (KafkaConsumer<String, String> c = ctx.consumer(ctx.consumerProps(ctx.group("resume")))) {
            List<TopicPartition> tps = List.of(new TopicPartition(topic, 0), new TopicPartition(topic, 1), new TopicPartition(topic, 2));
            ctx.step("KafkaConsumer.committed");
            c.committed(new HashSet<>(tps)).forEach((tp, o) -> {
                if (o != null) {
                    committed.put(tp.partition(), o.offset());
                    ctx.check("half".equals(o.metadata()), "%s: commit metadata %s", tp, o.metadata());
                }
            });
            ctx.check(committed.size() == 3, "committed offsets after the restart: %s", committed);
            ctx.step("KafkaConsumer.endOffsets");
            Map<TopicPartition, Long> end = c.endOffsets(tps);
            c.subscribe(List.of(topic));
            ctx.step("KafkaConsumer.poll");
            int n = 0;
            long want = 0;
            for (TopicPartition tp : tps) want += end.get(tp) - committed.get(tp.partition());
            long deadline = System.currentTimeMillis() + 60_000;
            while (n < want) {
                ctx.check(System.currentTimeMillis() < deadline, "consumed %d of %d within 60s", n, want);
                for (ConsumerRecord<String, String> r : c.poll(Ctx.ms(200))) {
                    first.putIfAbsent(r.partition(), r.offset());
                    n++;
                }
            }
            ctx.check(n == want, "consumed %d records after the committed offsets, want %d", n, want);
            ctx.check(first.equals(committed), "first offsets consumed %s, committed %s", first, committed);
            c.commitSync();
        }
        ctx.data.with("first", new TreeMap<>(first));
    }

    /**
     * state-rebuild=ISOLATION: keyed updates and tombstones in a compacted
     * topic; assign all partitions, seekToBeginning, read to endOffsets,
     * and the table equals the last value per key.
     */
    static void stateRebuild(Ctx ctx) throws Exception {
        String isolation = ctx.arg == null ? "read_uncommitted" : ctx.arg;
        String topic = ctx.topic("rebuild-" + isolation.replace('_', '-'));
        ProducerCases.createTopic(ctx, topic, 4, Map.of("cleanup.policy", "compact", "min.cleanable.dirty.ratio", "0.01", "segment.bytes", "16384"));
        Map<String, String> want = new TreeMap<>();
        Properties p = ctx.producerProps();
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        try (KafkaProducer<String, String> prod = ctx.producer(p)) {
            ctx.step("KafkaProducer.send");
            for (int i = 0; i < 5000; i++) {
                String k = "user-" + (i % 300);
                String v = i % 11 == 10 ? null : "{\"v\":" + i + "}";
                prod.send(new ProducerRecord<>(topic, k, v));
                if (v == null) want.remove(k);
                else want.put(k, v);
            }
            ctx.step("KafkaProducer.flush");
            prod.flush();
        }
        Map<String, String> table = new TreeMap<>();
        long t0 = System.nanoTime();
        List<ConsumerRecord<String, String>> rs = ProducerCases.readAll(ctx, topic, isolation);
        for (ConsumerRecord<String, String> r : rs) {
            if (r.value() == null) table.remove(r.key());
            else table.put(r.key(), r.value());
        }
        ctx.check(table.equals(want), "rebuilt table (%d keys) differs from the model (%d keys)", table.size(), want.size());
        ctx.data.with("topic", topic).with("keys", table.size()).with("records_read", rs.size())
                .with("rebuild_ms", (System.nanoTime() - t0) / 1_000_000);
    }

    /** offsets-for-times: records with explicit timestamps; offsetsForTimes finds the first at or after. */
    static void offsetsForTimes(Ctx ctx) throws Exception {
        String topic = ctx.topic("times");
        ProducerCases.createTopic(ctx, topic, 1, Map.of());
        long base = 1_700_000_000_000L;
        try (KafkaProducer<String, String> prod = ctx.producer(ctx.producerProps())) {
            ctx.step("KafkaProducer.send");
            for (int i = 0; i < 100; i++) {
                prod.send(new ProducerRecord<>(topic, 0, base + i * 1000L, "k", Integer.toString(i)));
            }
            prod.flush();
        }
        TopicPartition tp = new TopicPartition(topic, 0);
        try (KafkaConsumer<String, String> c = ctx.consumer(ctx.consumerProps(null))) {
            ctx.step("KafkaConsumer.offsetsForTimes");
            Map<TopicPartition, OffsetAndTimestamp> r = c.offsetsForTimes(Map.of(tp, base + 41_500L));
            ctx.check(r.get(tp) != null && r.get(tp).offset() == 42 && r.get(tp).timestamp() == base + 42_000L,
                    "offsetsForTimes(base+41.5s) = %s, want offset 42 at base+42s", r.get(tp));
            r = c.offsetsForTimes(Map.of(tp, base));
            ctx.check(r.get(tp) != null && r.get(tp).offset() == 0, "offsetsForTimes(base) = %s, want offset 0", r.get(tp));
            r = c.offsetsForTimes(Map.of(tp, base + 1_000_000L));
            ctx.check(r.get(tp) == null, "offsetsForTimes(after the last) = %s, want null", r.get(tp));
        }
    }
}
