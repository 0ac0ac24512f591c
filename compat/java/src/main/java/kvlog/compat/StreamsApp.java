package kvlog.compat;

import java.util.Arrays;
import java.util.Map;
import java.util.Properties;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.CloseOptions;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.ThreadMetadata;
import org.apache.kafka.streams.TaskMetadata;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.processor.StateRestoreListener;
import org.apache.kafka.streams.state.KeyValueStore;

/**
 * A Kafka Streams application over an entity changelog:
 *
 * <pre>java -cp CLASSPATH kvlog.compat.StreamsApp BOOTSTRAP APP_ID STATE_DIR GUARANTEE [restore PARTITIONS]</pre>
 *
 * <ul>
 *   <li>user-profiles (keyed "region=R;score=N" updates, null tombstones)
 *       becomes a KTable in the persistent (RocksDB) store "profiles",
 *       re-keyed by region (a repartition topic) and aggregated into the
 *       set of each region's users (store "region-members"), written to
 *       regions-out as "u1,u2,..." ("" when empty);
 *   <li>user-events (keyed points) is grouped by key and aggregated into
 *       each user's maximum (store "max-points"), written to points-out.
 * </ul>
 *
 * Both aggregates are idempotent (set membership, maximum), so replaying
 * input after a crash under at_least_once leaves the same final tables.
 * Standard output gets "PROGRESS ..." lines: state changes, the active
 * tasks, and each store partition's restoration.
 *
 * <p>With "restore PARTITIONS" (kvbench's restore scenario) the application
 * starts from an empty STATE_DIR, restores its stores from changelogs the
 * caller wrote beforehand (APP_ID-profiles-changelog), and once it is RUNNING
 * with PARTITIONS partitions of "profiles" restored prints one line
 * "RESTORED {json}": records restored (the StateRestoreListener's totals,
 * tombstones included; records of aborted transactions are not restored
 * under exactly_once_v2), restore_ms from the first partition's restore
 * start to the last one's end, running_ms from start() to RUNNING, the
 * restored offset ranges; then it leaves the group and exits.
 */
public final class StreamsApp {
    static final String PROFILES = "user-profiles", EVENTS = "user-events", REGIONS_OUT = "regions-out", POINTS_OUT = "points-out";

    private StreamsApp() {}

    static String region(String profile) {
        for (String f : profile.split(";")) {
            if (f.startsWith("region=")) return f.substring(7);
        }
        return "none";
    }

    static String add(String agg, String user) {
        TreeSet<String> s = set(agg);
        s.add(user);
        return String.join(",", s);
    }

    static String remove(String agg, String user) {
        TreeSet<String> s = set(agg);
        s.remove(user);
        return String.join(",", s);
    }

    static TreeSet<String> set(String agg) {
        TreeSet<String> s = new TreeSet<>();
        if (agg != null && !agg.isEmpty()) s.addAll(Arrays.asList(agg.split(",")));
        return s;
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], appId = args[1], stateDir = args[2], guarantee = args[3];
        boolean restoreOnly = args.length > 5 && args[4].equals("restore");
        int restorePartitions = restoreOnly ? Integer.parseInt(args[5]) : 0;
        // Changelogs small enough to roll and be compacted during a test;
        // in restore mode the changelogs Streams creates get the broker's
        // defaults (Apache Kafka refuses segment.bytes below 1 MiB).
        Map<String, String> changelog = restoreOnly ? Map.of()
                : Map.of("segment.bytes", "65536", "min.cleanable.dirty.ratio", "0.01");

        StreamsBuilder sb = new StreamsBuilder();
        KTable<String, String> profiles = sb.table(PROFILES, Consumed.with(Serdes.String(), Serdes.String()),
                Materialized.<String, String, KeyValueStore<Bytes, byte[]>>as("profiles")
                        .withKeySerde(Serdes.String()).withValueSerde(Serdes.String()).withLoggingEnabled(changelog));
        profiles.groupBy((user, profile) -> KeyValue.pair(region(profile), user), Grouped.with("by-region", Serdes.String(), Serdes.String()))
                .aggregate(() -> "", (region, user, agg) -> add(agg, user), (region, user, agg) -> remove(agg, user),
                        Materialized.<String, String, KeyValueStore<Bytes, byte[]>>as("region-members")
                                .withKeySerde(Serdes.String()).withValueSerde(Serdes.String()).withLoggingEnabled(changelog))
                .toStream().to(REGIONS_OUT, Produced.with(Serdes.String(), Serdes.String()));
        sb.stream(EVENTS, Consumed.with(Serdes.String(), Serdes.String()))
                .groupByKey()
                .aggregate(() -> "0", (user, pts, agg) -> Long.toString(Math.max(Long.parseLong(agg), Long.parseLong(pts))),
                        Materialized.<String, String, KeyValueStore<Bytes, byte[]>>as("max-points")
                                .withKeySerde(Serdes.String()).withValueSerde(Serdes.String()).withLoggingEnabled(changelog))
                .toStream().to(POINTS_OUT, Produced.with(Serdes.String(), Serdes.String()));

        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, guarantee);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, "1");
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, "500");
        p.put(StreamsConfig.REPARTITION_PURGE_INTERVAL_MS_CONFIG, "1000");
        // No record cache: every update reaches the changelogs, which then
        // hold superseded values for the log cleaner to compact.
        p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, "0");
        p.put("group.protocol", "classic");
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), "6000");
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG), "1000");
        p.put(StreamsConfig.RETRY_BACKOFF_MS_CONFIG, "200");
        p.put(StreamsConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "1000");

        KafkaStreams streams = new KafkaStreams(sb.build(), p);
        Map<String, Long> restoreStart = new ConcurrentHashMap<>();
        // Restore mode: totals over the partitions of "profiles", the store
        // whose changelog the caller wrote (the others' are empty).
        AtomicLong restored = new AtomicLong(), offsets = new AtomicLong(), ended = new AtomicLong();
        AtomicLong firstStart = new AtomicLong(Long.MAX_VALUE), lastEnd = new AtomicLong(Long.MIN_VALUE);
        streams.setGlobalStateRestoreListener(new StateRestoreListener() {
            @Override
            public void onRestoreStart(TopicPartition tp, String store, long start, long end) {
                long now = System.nanoTime();
                restoreStart.put(tp.toString(), now);
                if (store.equals("profiles")) {
                    firstStart.accumulateAndGet(now, Math::min);
                    offsets.addAndGet(end - start);
                }
                Ctx.progress("restore-start " + Json.obj().with("store", store).with("changelog", tp.toString())
                        .with("start_offset", start).with("end_offset", end));
            }

            @Override
            public void onBatchRestored(TopicPartition tp, String store, long batchEnd, long n) {}

            @Override
            public void onRestoreEnd(TopicPartition tp, String store, long total) {
                if (store.equals("profiles")) {
                    lastEnd.accumulateAndGet(System.nanoTime(), Math::max);
                    restored.addAndGet(total);
                    ended.incrementAndGet();
                }
                Long t0 = restoreStart.get(tp.toString());
                long us = t0 == null ? -1 : (System.nanoTime() - t0) / 1000;
                Ctx.progress("restore-end " + Json.obj().with("store", store).with("changelog", tp.toString())
                        .with("restored", total).with("us", us));
            }
        });
        streams.setUncaughtExceptionHandler(e -> {
            Ctx.progress("uncaught " + Json.obj().with("error", Main.describe(e).split("\n")[0]));
            // Retried by a new thread (e.g. the broker went away).
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.REPLACE_THREAD;
        });
        streams.setStateListener((now, before) -> {
            Ctx.progress("state " + now);
            if (now == KafkaStreams.State.ERROR) {
                System.out.flush();
                Runtime.getRuntime().halt(3);
            }
        });
        ScheduledExecutorService ex = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "task-reporter");
            t.setDaemon(true);
            return t;
        });
        String[] last = {""};
        ex.scheduleAtFixedRate(() -> {
            try {
                TreeSet<String> active = new TreeSet<>();
                for (ThreadMetadata tm : streams.metadataForLocalThreads()) {
                    for (TaskMetadata task : tm.activeTasks()) active.add(task.taskId().toString());
                }
                String now = streams.state() + " " + active;
                if (!now.equals(last[0])) {
                    last[0] = now;
                    Ctx.progress("tasks " + Json.obj().with("state", streams.state().toString()).with("active", active.size())
                            .with("ids", String.join(",", active)));
                }
            } catch (Exception e) {
                // not started yet
            }
        }, 200, 200, TimeUnit.MILLISECONDS);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            Ctx.progress("closing");
            streams.close(java.time.Duration.ofSeconds(20));
            Ctx.progress("closed");
        }));
        long started = System.nanoTime();
        streams.start();
        if (!restoreOnly) {
            Thread.currentThread().join();
        }
        // Restore mode: RUNNING means every active task is restored; a first
        // assignment may not hold every partition yet, so wait for them all.
        while (streams.state() != KafkaStreams.State.RUNNING || ended.get() < restorePartitions) {
            Thread.sleep(20);
        }
        long running = System.nanoTime();
        synchronized (System.out) {
            System.out.println("RESTORED " + Json.obj().with("records", restored.get()).with("partitions", ended.get())
                    .with("offsets", offsets.get()).with("restore_ms", (lastEnd.get() - firstStart.get()) / 1e6)
                    .with("running_ms", (running - started) / 1e6));
            System.out.flush();
        }
        streams.close(CloseOptions.groupMembershipOperation(CloseOptions.GroupMembershipOperation.LEAVE_GROUP)
                .withTimeout(java.time.Duration.ofSeconds(20)));
        System.out.flush();
        Runtime.getRuntime().halt(0);
    }
}
