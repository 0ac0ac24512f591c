package kvlog.compat;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.InvalidProducerEpochException;
import org.apache.kafka.common.errors.ProducerFencedException;

/**
 * The transactional producer: initTransactions, a consume-transform-produce
 * loop with sendOffsetsToTransaction, commits and aborts, and the fencing
 * of a zombie by a second instance with the same transactional.id.
 */
final class TransactionCases {
    private TransactionCases() {}

    static void register(Map<String, Main.Case> m) {
        m.put("transactions", TransactionCases::transactions);
    }

    static final int N = 300;

    static void transactions(Ctx ctx) throws Exception {
        String in = ctx.topic("txn-in"), out = ctx.topic("txn-out"), group = ctx.group("txn");
        ProducerCases.createTopic(ctx, in, 3, Map.of());
        ProducerCases.createTopic(ctx, out, 3, Map.of("cleanup.policy", "compact"));
        ConsumerCases.produce(ctx, in, 0, N);

        Properties pp = ctx.producerProps();
        pp.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, ctx.prefix + "-txn");
        pp.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "30000");
        Properties cp = ctx.consumerProps(group);
        cp.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        cp.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "40");
        int commits = 0, aborts = 0;
        try (KafkaProducer<String, String> prod = ctx.producer(pp);
                KafkaConsumer<String, String> cons = ctx.consumer(cp)) {
            ctx.step("KafkaProducer.initTransactions");
            prod.initTransactions();
            ctx.step("KafkaConsumer.subscribe/poll");
            cons.subscribe(List.of(in));
            Set<String> done = new HashSet<>();
            long deadline = System.currentTimeMillis() + 90_000;
            int round = 0;
            while (done.size() < N) {
                ctx.check(System.currentTimeMillis() < deadline, "transformed %d of %d records within 90s", done.size(), N);
                ctx.step("KafkaConsumer.poll");
                ConsumerRecords<String, String> recs = cons.poll(Ctx.ms(200));
                if (recs.isEmpty()) {
                    continue;
                }
                round++;
                boolean abort = round % 3 == 2;
                ctx.step("KafkaProducer.beginTransaction");
                prod.beginTransaction();
                Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
                List<String> values = new ArrayList<>();
                ctx.step("KafkaProducer.send");
                for (ConsumerRecord<String, String> r : recs) {
                    prod.send(new ProducerRecord<>(out, r.key(), (abort ? "aborted-" : "") + r.value()));
                    values.add(r.value());
                    offsets.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                }
                ctx.step("KafkaProducer.sendOffsetsToTransaction");
                prod.sendOffsetsToTransaction(offsets, cons.groupMetadata());
                if (abort) {
                    ctx.step("KafkaProducer.abortTransaction");
                    prod.abortTransaction();
                    aborts++;
                    // Back to the committed offsets: the aborted records
                    // are transformed again.
                    ctx.step("KafkaConsumer.committed/seek");
                    Map<TopicPartition, OffsetAndMetadata> committed = cons.committed(offsets.keySet());
                    for (TopicPartition tp : offsets.keySet()) {
                        OffsetAndMetadata o = committed.get(tp);
                        if (o == null) {
                            cons.seekToBeginning(List.of(tp));
                        } else {
                            cons.seek(tp, o.offset());
                        }
                    }
                    continue;
                }
                ctx.step("KafkaProducer.commitTransaction");
                prod.commitTransaction();
                commits++;
                done.addAll(values);
            }
            ctx.step("KafkaConsumer.committed");
            Set<TopicPartition> tps = new HashSet<>();
            for (int p = 0; p < 3; p++) {
                tps.add(new TopicPartition(in, p));
            }
            long sum = 0;
            for (OffsetAndMetadata o : cons.committed(tps).values()) {
                sum += o == null ? 0 : o.offset();
            }
            ctx.check(sum == N, "the group's committed offsets sum to %d, want %d", sum, N);
        }

        // The output under read_committed: each input exactly once, no
        // aborted record.
        Properties rp = ctx.consumerProps(null);
        rp.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        Map<String, Integer> seen = new HashMap<>();
        try (KafkaConsumer<String, String> c = ctx.consumer(rp)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int p = 0; p < 3; p++) {
                tps.add(new TopicPartition(out, p));
            }
            c.assign(tps);
            c.seekToBeginning(tps);
            ctx.step("KafkaConsumer.endOffsets(read_committed)");
            Map<TopicPartition, Long> end = c.endOffsets(tps);
            long deadline = System.currentTimeMillis() + 60_000;
            ctx.step("KafkaConsumer.poll(read_committed)");
            while (true) {
                boolean reached = true;
                for (TopicPartition tp : tps) {
                    reached &= c.position(tp) >= end.get(tp);
                }
                if (reached) {
                    break;
                }
                ctx.check(System.currentTimeMillis() < deadline, "read_committed did not reach %s within 60s", end);
                for (ConsumerRecord<String, String> r : c.poll(Ctx.ms(200))) {
                    ctx.check(!r.value().startsWith("aborted-"), "read_committed returned an aborted record %s at %s-%d@%d", r.value(), r.topic(), r.partition(), r.offset());
                    seen.merge(r.value(), 1, Integer::sum);
                }
            }
        }
        ctx.check(seen.size() == N, "read_committed returned %d distinct inputs, want %d", seen.size(), N);
        seen.forEach((v, n) -> ctx.check(n == 1, "input %s appears %d times in the output", v, n));

        // Fencing: a second instance with the same transactional.id.
        String fencedMsg;
        try (KafkaProducer<String, String> zombie = ctx.producer(pp)) {
            ctx.step("KafkaProducer.initTransactions(zombie)");
            zombie.initTransactions();
            zombie.beginTransaction();
            zombie.send(new ProducerRecord<>(out, "zombie", "zombie")).get();
            try (KafkaProducer<String, String> fresh = ctx.producer(pp)) {
                ctx.step("KafkaProducer.initTransactions(new instance)");
                fresh.initTransactions();
                Throwable got = null;
                try {
                    ctx.step("KafkaProducer.send/commitTransaction(zombie)");
                    zombie.send(new ProducerRecord<>(out, "zombie", "zombie-2")).get();
                    zombie.commitTransaction();
                } catch (Exception e) {
                    got = e;
                }
                ctx.check(fenced(got), "the zombie was not fenced: %s", got);
                fencedMsg = String.valueOf(got);
                ctx.step("KafkaProducer.beginTransaction(new instance)");
                fresh.beginTransaction();
                fresh.send(new ProducerRecord<>(out, "fresh", "fresh")).get();
                fresh.commitTransaction();
            }
        }
        ctx.data.with("commits", commits).with("aborts", aborts).with("fenced", fencedMsg);
    }

    static boolean fenced(Throwable t) {
        for (; t != null; t = t.getCause()) {
            if (t instanceof ProducerFencedException || t instanceof InvalidProducerEpochException) {
                return true;
            }
            if (t instanceof KafkaException && String.valueOf(t.getMessage()).contains("fenced")) {
                return true;
            }
        }
        return false;
    }
}
