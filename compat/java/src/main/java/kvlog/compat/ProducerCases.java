package kvlog.compat;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.header.Header;

/**
 * Producer cases. The records of produce-codecs and produce-acks1 follow
 * Model, which the Go driver computes too and reads back with franz-go.
 */
final class ProducerCases {
    private ProducerCases() {}

    static void register(Map<String, Main.Case> m) {
        m.put("produce-codecs", ProducerCases::codecs);
        m.put("produce-acks1", ProducerCases::acks1);
        m.put("produce-large", ProducerCases::large);
        m.put("produce-kill", ProducerCases::kill);
    }

    /** The records of the keyed cases; javacompat_test.go has the same. */
    static final class Model {
        static final int N = 600;

        static String key(int i) {
            return "k" + (i % 40);
        }

        /** null every 9th record: a tombstone. */
        static String value(String tag, int i) {
            return i % 9 == 8 ? null : tag + "-" + i + "-" + "x".repeat(i % 50);
        }
    }

    static void createTopic(Ctx ctx, String topic, int partitions, Map<String, String> configs) throws Exception {
        try (Admin admin = ctx.admin()) {
            NewTopic nt = new NewTopic(topic, Optional.of(partitions), Optional.empty()).configs(configs);
            try {
                ctx.get("Admin.createTopics", admin.createTopics(List.of(nt)).all());
            } catch (TopicExistsException e) {
                // a rerun on the same broker
            }
        }
    }

    /** Produces Model records with tag, returning each acknowledgement. */
    static void produceModel(Ctx ctx, Properties p, String topic, String tag) throws Exception {
        List<Future<RecordMetadata>> fs = new ArrayList<>();
        try (KafkaProducer<String, String> prod = ctx.producer(p)) {
            ctx.step("KafkaProducer.send");
            for (int i = 0; i < Model.N; i++) {
                ProducerRecord<String, String> r = new ProducerRecord<>(topic, Model.key(i), Model.value(tag, i));
                r.headers().add("seq", Integer.toString(i).getBytes(StandardCharsets.UTF_8));
                r.headers().add("tag", tag.getBytes(StandardCharsets.UTF_8));
                fs.add(prod.send(r));
            }
            ctx.step("KafkaProducer.flush");
            prod.flush();
            ctx.step("KafkaProducer.send (acknowledgement)");
            for (Future<RecordMetadata> f : fs) {
                f.get();
            }
        }
        // Read back with the Java consumer: values, headers, per-key order.
        Map<String, List<String>> want = new HashMap<>();
        for (int i = 0; i < Model.N; i++) {
            want.computeIfAbsent(Model.key(i), k -> new ArrayList<>()).add(i + ":" + Model.value(tag, i));
        }
        Map<String, List<String>> got = new HashMap<>();
        for (ConsumerRecord<String, String> r : readAll(ctx, topic, null, Model.N)) {
            Header seq = r.headers().lastHeader("seq");
            ctx.check(seq != null, "%s-%d@%d: no seq header", r.topic(), r.partition(), r.offset());
            Header tg = r.headers().lastHeader("tag");
            ctx.check(tg != null && tag.equals(new String(tg.value(), StandardCharsets.UTF_8)), "%s-%d@%d: tag header %s", r.topic(), r.partition(), r.offset(), tg);
            got.computeIfAbsent(r.key(), k -> new ArrayList<>()).add(new String(seq.value(), StandardCharsets.UTF_8) + ":" + r.value());
        }
        ctx.check(got.equals(want), "read back differs from what was produced:\n got %s\nwant %s", new TreeMap<>(got), new TreeMap<>(want));
        ctx.data.with("records", Model.N);
    }

    /** Reads every partition of topic from its start to its end offsets. */
    static List<ConsumerRecord<String, String>> readAll(Ctx ctx, String topic, String isolation) {
        return readAll(ctx, topic, isolation, 0);
    }

    /**
     * Reads every partition of topic from its start to its end offsets, once
     * the end offsets add up to at least minEnd. A record acknowledged with
     * acks=1 becomes readable (below the high watermark) only once it is as
     * durable as the broker promises — on kvlog's default single node, after
     * its fsync — so a read right after an acks=1 send waits for that.
     */
    static List<ConsumerRecord<String, String>> readAll(Ctx ctx, String topic, String isolation, long minEnd) {
        Properties cp = ctx.consumerProps(null);
        cp.put("max.partition.fetch.bytes", Integer.toString(4 << 20));
        if (isolation != null) cp.put("isolation.level", isolation);
        List<ConsumerRecord<String, String>> out = new ArrayList<>();
        try (KafkaConsumer<String, String> c = ctx.consumer(cp)) {
            ctx.step("KafkaConsumer.partitionsFor");
            List<TopicPartition> tps = new ArrayList<>();
            c.partitionsFor(topic).forEach(pi -> tps.add(new TopicPartition(topic, pi.partition())));
            c.assign(tps);
            ctx.step("KafkaConsumer.seekToBeginning");
            c.seekToBeginning(tps);
            ctx.step("KafkaConsumer.endOffsets");
            Map<TopicPartition, Long> end = c.endOffsets(tps);
            long endBy = System.currentTimeMillis() + 30_000;
            while (end.values().stream().mapToLong(Long::longValue).sum() < minEnd) {
                ctx.check(System.currentTimeMillis() < endBy, "%s: end offsets %s never reached %d records", topic, end, minEnd);
                try {
                    Thread.sleep(20);
                } catch (InterruptedException e) {
                    throw new RuntimeException(e);
                }
                end = c.endOffsets(tps);
            }
            ctx.step("KafkaConsumer.poll");
            long deadline = System.currentTimeMillis() + 60_000;
            while (!caughtUp(c, end)) {
                ctx.check(System.currentTimeMillis() < deadline, "%s: not read to %s within 60s", topic, end);
                c.poll(Ctx.ms(500)).forEach(out::add);
            }
        }
        return out;
    }

    static boolean caughtUp(KafkaConsumer<String, String> c, Map<TopicPartition, Long> end) {
        for (Map.Entry<TopicPartition, Long> e : end.entrySet()) {
            if (c.position(e.getKey()) < e.getValue()) return false;
        }
        return true;
    }

    /** produce-codecs=CODEC: idempotent (the default), acks=all, compressed. */
    static void codecs(Ctx ctx) throws Exception {
        String codec = ctx.arg;
        String topic = ctx.topic("codec-" + codec);
        createTopic(ctx, topic, 3, Map.of("cleanup.policy", "compact"));
        Properties p = ctx.producerProps();
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
        p.put(ProducerConfig.LINGER_MS_CONFIG, "20");
        p.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, "5");
        produceModel(ctx, p, topic, codec);
        ctx.data.with("topic", topic);
    }

    /** produce-acks1: acks=1 without idempotence. */
    static void acks1(Ctx ctx) throws Exception {
        String topic = ctx.topic("acks1");
        createTopic(ctx, topic, 3, Map.of("cleanup.policy", "compact"));
        Properties p = ctx.producerProps();
        p.put(ProducerConfig.ACKS_CONFIG, "1");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "false");
        produceModel(ctx, p, topic, "acks1");
        ctx.data.with("topic", topic);
    }

    /** produce-large: 1 MiB batches, five in flight, and records near message.max.bytes. */
    static void large(Ctx ctx) throws Exception {
        String topic = ctx.topic("large");
        createTopic(ctx, topic, 2, Map.of());
        Properties p = ctx.producerProps();
        p.put(ProducerConfig.BATCH_SIZE_CONFIG, Integer.toString(1 << 20));
        p.put(ProducerConfig.LINGER_MS_CONFIG, "50");
        p.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, "5");
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, "lz4");
        int n = 20_000;
        String pad = "v".repeat(500);
        String big = "B".repeat(900_000);
        List<Future<RecordMetadata>> fs = new ArrayList<>();
        try (KafkaProducer<String, String> prod = ctx.producer(p)) {
            ctx.step("KafkaProducer.send");
            for (int i = 0; i < n; i++) {
                fs.add(prod.send(new ProducerRecord<>(topic, "k" + (i % 64), i + ":" + pad)));
            }
            for (int i = 0; i < 3; i++) {
                fs.add(prod.send(new ProducerRecord<>(topic, "big", "big" + i + ":" + big)));
            }
            ctx.step("KafkaProducer.flush");
            prod.flush();
            ctx.step("KafkaProducer.send (acknowledgement)");
            for (Future<RecordMetadata> f : fs) f.get();
        }
        Map<String, Integer> next = new HashMap<>();
        int count = 0, bigs = 0;
        for (ConsumerRecord<String, String> r : readAll(ctx, topic, null)) {
            count++;
            int seq = Integer.parseInt(r.value().substring(r.value().startsWith("big") ? 3 : 0, r.value().indexOf(':')));
            if (r.key().equals("big")) {
                ctx.check(r.value().length() == big.length() + 5, "big record %d: %d bytes", seq, r.value().length());
                ctx.check(seq == bigs, "big record %d, want %d", seq, bigs);
                bigs++;
                continue;
            }
            int want = next.getOrDefault(r.key(), Integer.parseInt(r.key().substring(1)));
            ctx.check(seq == want, "key %s: record %d after %d", r.key(), seq, want - 64);
            next.put(r.key(), seq + 64);
        }
        ctx.check(count == n + 3, "read back %d records, produced %d", count, n + 3);
        ctx.data.with("topic", topic).with("records", count);
    }

    /**
     * produce-kill: an idempotent producer, five requests in flight, sends
     * keyed records (value "key:seq") without a pause; the driver SIGKILLs
     * the broker when "PROGRESS acked N" passes a mark and restarts it,
     * then writes "restarted" to standard input; 3000 records acknowledged
     * after that, the case stops and returns every acknowledged (key, seq).
     */
    static void kill(Ctx ctx) throws Exception {
        String topic = ctx.topic("kill");
        createTopic(ctx, topic, 4, Map.of("cleanup.policy", "compact"));
        Properties p = ctx.producerProps();
        p.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, "5");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "2");
        p.put(ProducerConfig.BATCH_SIZE_CONFIG, "16384");
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, "snappy");
        p.put(ProducerConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "500");
        int keys = 100;
        Map<String, List<Long>> acked = new ConcurrentHashMap<>();
        AtomicLong ackCount = new AtomicLong();
        AtomicLong ackAfterRestart = new AtomicLong();
        AtomicLong sentCount = new AtomicLong();
        AtomicReference<String> firstError = new AtomicReference<>();
        AtomicLong failed = new AtomicLong();
        java.util.concurrent.atomic.AtomicBoolean restarted = new java.util.concurrent.atomic.AtomicBoolean();
        Thread stdin = new Thread(() -> {
            try {
                BufferedReader br = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
                for (String line; (line = br.readLine()) != null; ) {
                    if (line.trim().equals("restarted")) {
                        restarted.set(true);
                        Ctx.progress("restart seen with " + ackCount.get() + " acknowledged of " + sentCount.get() + " sent");
                    }
                }
            } catch (Exception ignored) {
                // the driver closed standard input
            }
        }, "stdin");
        stdin.setDaemon(true);
        stdin.start();
        long[] seqs = new long[keys];
        long sent = 0;
        long deadline = System.currentTimeMillis() + 100_000;
        try (KafkaProducer<String, String> prod = ctx.producer(p)) {
            ctx.step("KafkaProducer.send");
            while (ackAfterRestart.get() < 3000) {
                ctx.check(System.currentTimeMillis() < deadline,
                        "no 3000 acknowledgements after the restart within 100s (acked %d, after restart %d, failed %d: %s)",
                        ackCount.get(), ackAfterRestart.get(), failed.get(), firstError.get());
                int k = (int) (sent % keys);
                long seq = seqs[k]++;
                String key = "k" + k;
                sent++;
                sentCount.set(sent);
                prod.send(new ProducerRecord<>(topic, key, key + ":" + seq), (md, err) -> {
                    if (err != null) {
                        failed.incrementAndGet();
                        firstError.compareAndSet(null, err.toString());
                        return;
                    }
                    acked.computeIfAbsent(key, x -> java.util.Collections.synchronizedList(new ArrayList<>())).add(seq);
                    long n = ackCount.incrementAndGet();
                    if (restarted.get()) ackAfterRestart.incrementAndGet();
                    if (n % 1000 == 0) Ctx.progress("acked " + n);
                });
                if (sent % 50 == 0) {
                    Thread.sleep(1); // a steady stream rather than one burst
                }
            }
            ctx.step("KafkaProducer.flush");
            prod.flush();
        }
        ctx.check(failed.get() == 0, "%d sends failed; first: %s", failed.get(), firstError.get());
        Map<String, Object> ack = new TreeMap<>();
        acked.forEach((k, v) -> {
            List<Long> s = new ArrayList<>(v);
            java.util.Collections.sort(s);
            ack.put(k, s);
        });
        ctx.data.with("topic", topic).with("sent", sent).with("acked", ack).with("failed", failed.get());
    }

    static <T> List<T> list(Collection<T> c) {
        return new ArrayList<>(c);
    }
}
