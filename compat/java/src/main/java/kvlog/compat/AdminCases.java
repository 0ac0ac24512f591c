package kvlog.compat;

import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.ConsumerGroupListing;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.DescribeConfigsOptions;
import org.apache.kafka.clients.admin.ListOffsetsResult.ListOffsetsResultInfo;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.ReplicaInfo;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;

/** AdminClient cases: topics, configs, offsets, log dirs, groups. */
final class AdminCases {
    private AdminCases() {}

    static void register(Map<String, Main.Case> m) {
        m.put("admin-topics", AdminCases::topics);
        m.put("admin-configs", AdminCases::configs);
        m.put("admin-offsets", AdminCases::offsets);
        m.put("admin-cluster", AdminCases::cluster);
        m.put("admin-groups", AdminCases::groups);
    }

    static TopicDescription describe(Ctx ctx, Admin admin, String topic) throws Exception {
        return ctx.get("Admin.describeTopics", admin.describeTopics(List.of(topic)).allTopicNames()).get(topic);
    }

    /** createTopics (defaults: -1 partitions and replicas), describeTopics, createPartitions, deleteTopics. */
    static void topics(Ctx ctx) throws Exception {
        String t1 = ctx.topic("admin-defaults"), t2 = ctx.topic("admin-rf-1");
        try (Admin admin = ctx.admin()) {
            ctx.get("Admin.createTopics", admin.createTopics(List.of(
                    new NewTopic(t1, Optional.empty(), Optional.empty()),
                    new NewTopic(t2, Optional.of(3), Optional.empty())
                            .configs(Map.of("cleanup.policy", "compact", "min.cleanable.dirty.ratio", "0.1", "segment.ms", "60000")))).all());
            TopicDescription d1 = describe(ctx, admin, t1);
            TopicDescription d2 = describe(ctx, admin, t2);
            ctx.check(d1.partitions().size() >= 1, "%s: %d partitions", t1, d1.partitions().size());
            ctx.check(d2.partitions().size() == 3, "%s: %d partitions, want 3", t2, d2.partitions().size());
            ctx.check(d2.topicId() != null && !d2.topicId().toString().equals("AAAAAAAAAAAAAAAAAAAAAA"), "%s: topic id %s", t2, d2.topicId());
            for (TopicPartitionInfo p : d2.partitions()) {
                ctx.check(p.leader() != null && p.replicas().size() == 1 && p.isr().size() == 1,
                        "%s-%d: leader %s replicas %s isr %s", t2, p.partition(), p.leader(), p.replicas(), p.isr());
            }
            ctx.step("Admin.createTopics (exists)");
            try {
                admin.createTopics(List.of(new NewTopic(t2, 3, (short) 1))).all().get();
                ctx.check(false, "creating %s twice succeeded", t2);
            } catch (java.util.concurrent.ExecutionException e) {
                ctx.check(e.getCause() instanceof org.apache.kafka.common.errors.TopicExistsException, "creating %s twice: %s", t2, e.getCause());
            }
            ctx.get("Admin.createPartitions", admin.createPartitions(Map.of(t2, NewPartitions.increaseTo(5))).all());
            ctx.check(describe(ctx, admin, t2).partitions().size() == 5, "%s: not 5 partitions after createPartitions", t2);
            Set<String> names = ctx.get("Admin.listTopics", admin.listTopics().names());
            ctx.check(names.contains(t1) && names.contains(t2), "listTopics %s lacks %s or %s", names, t1, t2);
            ctx.get("Admin.deleteTopics", admin.deleteTopics(List.of(t1)).all());
            long deadline = System.currentTimeMillis() + 30_000;
            while (ctx.get("Admin.listTopics", admin.listTopics().names()).contains(t1)) {
                ctx.check(System.currentTimeMillis() < deadline, "%s still listed 30s after deleteTopics", t1);
                Thread.sleep(100);
            }
            ctx.data.with("default_partitions", d1.partitions().size()).with("topic", t2);
        }
    }

    static Map<String, ConfigEntry> describeConfigs(Ctx ctx, Admin admin, ConfigResource r) throws Exception {
        Config c = ctx.get("Admin.describeConfigs " + r, admin.describeConfigs(List.of(r),
                new DescribeConfigsOptions().includeSynonyms(true).includeDocumentation(true)).all()).get(r);
        Map<String, ConfigEntry> m = new HashMap<>();
        for (ConfigEntry e : c.entries()) m.put(e.name(), e);
        return m;
    }

    static void entry(Ctx ctx, Map<String, ConfigEntry> m, String name, String value, ConfigEntry.ConfigSource source) {
        ConfigEntry e = m.get(name);
        ctx.check(e != null, "config %s missing", name);
        ctx.check(java.util.Objects.equals(e.value(), value) && e.source() == source, "config %s = %s (%s), want %s (%s)", name, e.value(), e.source(), value, source);
    }

    /** describeConfigs (values, sources, synonyms) and incrementalAlterConfigs of a topic and the broker. */
    static void configs(Ctx ctx) throws Exception {
        String topic = ctx.topic("admin-configs");
        ProducerCases.createTopic(ctx, topic, 1, Map.of("cleanup.policy", "compact", "min.cleanable.dirty.ratio", "0.1"));
        try (Admin admin = ctx.admin()) {
            ConfigResource tr = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            Map<String, ConfigEntry> m = describeConfigs(ctx, admin, tr);
            entry(ctx, m, "cleanup.policy", "compact", ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG);
            entry(ctx, m, "min.cleanable.dirty.ratio", "0.1", ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG);
            entry(ctx, m, "retention.ms", "604800000", ConfigEntry.ConfigSource.DEFAULT_CONFIG);
            entry(ctx, m, "segment.bytes", "1073741824", ConfigEntry.ConfigSource.DEFAULT_CONFIG);
            List<String> syn = m.get("cleanup.policy").synonyms().stream().map(s -> s.name() + "=" + s.value() + ":" + s.source()).collect(Collectors.toList());
            ctx.check(syn.size() >= 2 && syn.get(0).equals("cleanup.policy=compact:DYNAMIC_TOPIC_CONFIG") && syn.get(syn.size() - 1).startsWith("log.cleanup.policy=delete:"),
                    "cleanup.policy synonyms %s, want the topic's then log.cleanup.policy's", syn);
            ctx.check(m.get("cleanup.policy").type() == ConfigEntry.ConfigType.LIST, "cleanup.policy type %s", m.get("cleanup.policy").type());
            ctx.get("Admin.incrementalAlterConfigs (topic)", admin.incrementalAlterConfigs(Map.of(tr, List.of(
                    new AlterConfigOp(new ConfigEntry("retention.ms", "3600000"), AlterConfigOp.OpType.SET),
                    new AlterConfigOp(new ConfigEntry("min.cleanable.dirty.ratio", ""), AlterConfigOp.OpType.DELETE),
                    new AlterConfigOp(new ConfigEntry("cleanup.policy", "delete"), AlterConfigOp.OpType.APPEND)))).all());
            m = describeConfigs(ctx, admin, tr);
            entry(ctx, m, "retention.ms", "3600000", ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG);
            entry(ctx, m, "min.cleanable.dirty.ratio", "0.5", ConfigEntry.ConfigSource.DEFAULT_CONFIG);
            entry(ctx, m, "cleanup.policy", "compact,delete", ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG);

            ConfigResource br = new ConfigResource(ConfigResource.Type.BROKER, "0");
            ConfigResource dflt = new ConfigResource(ConfigResource.Type.BROKER, "");
            m = describeConfigs(ctx, admin, br);
            entry(ctx, m, "log.cleaner.backoff.ms", "15000", ConfigEntry.ConfigSource.DEFAULT_CONFIG);
            ctx.get("Admin.incrementalAlterConfigs (broker 0)", admin.incrementalAlterConfigs(Map.of(br, List.of(
                    new AlterConfigOp(new ConfigEntry("log.cleaner.backoff.ms", "2000"), AlterConfigOp.OpType.SET),
                    new AlterConfigOp(new ConfigEntry("log.cleaner.io.max.bytes.per.second", "104857600"), AlterConfigOp.OpType.SET)))).all());
            ctx.get("Admin.incrementalAlterConfigs (cluster default)", admin.incrementalAlterConfigs(Map.of(dflt, List.of(
                    new AlterConfigOp(new ConfigEntry("log.cleaner.min.cleanable.ratio", "0.3"), AlterConfigOp.OpType.SET)))).all());
            m = describeConfigs(ctx, admin, br);
            entry(ctx, m, "log.cleaner.backoff.ms", "2000", ConfigEntry.ConfigSource.DYNAMIC_BROKER_CONFIG);
            entry(ctx, m, "log.cleaner.min.cleanable.ratio", "0.3", ConfigEntry.ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG);
            // The new cluster default reaches the topics that do not set the key.
            m = describeConfigs(ctx, admin, tr);
            entry(ctx, m, "min.cleanable.dirty.ratio", "0.3", ConfigEntry.ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG);
            // Put the broker back as it was for the other cases.
            ctx.get("Admin.incrementalAlterConfigs (broker 0, delete)", admin.incrementalAlterConfigs(Map.of(br, List.of(
                    new AlterConfigOp(new ConfigEntry("log.cleaner.backoff.ms", ""), AlterConfigOp.OpType.DELETE),
                    new AlterConfigOp(new ConfigEntry("log.cleaner.io.max.bytes.per.second", ""), AlterConfigOp.OpType.DELETE)))).all());
            ctx.get("Admin.incrementalAlterConfigs (cluster default, delete)", admin.incrementalAlterConfigs(Map.of(dflt, List.of(
                    new AlterConfigOp(new ConfigEntry("log.cleaner.min.cleanable.ratio", ""), AlterConfigOp.OpType.DELETE)))).all());
            m = describeConfigs(ctx, admin, br);
            entry(ctx, m, "log.cleaner.backoff.ms", "15000", ConfigEntry.ConfigSource.DEFAULT_CONFIG);
            ctx.step("Admin.incrementalAlterConfigs (invalid value)");
            try {
                admin.incrementalAlterConfigs(Map.of(tr, List.of(new AlterConfigOp(new ConfigEntry("cleanup.policy", "bogus"), AlterConfigOp.OpType.SET)))).all().get();
                ctx.check(false, "cleanup.policy=bogus accepted");
            } catch (java.util.concurrent.ExecutionException e) {
                ctx.check(e.getCause() instanceof org.apache.kafka.common.errors.InvalidConfigurationException
                        || e.getCause() instanceof org.apache.kafka.common.errors.InvalidRequestException, "cleanup.policy=bogus: %s", e.getCause());
            }
        }
    }

    /** deleteRecords and listOffsets: earliest, latest, timestamp, max-timestamp. */
    static void offsets(Ctx ctx) throws Exception {
        String topic = ctx.topic("admin-offsets");
        ProducerCases.createTopic(ctx, topic, 1, Map.of());
        TopicPartition tp = new TopicPartition(topic, 0);
        long base = 1_700_000_000_000L;
        try (KafkaProducer<String, String> prod = ctx.producer(ctx.producerProps())) {
            ctx.step("KafkaProducer.send");
            for (int i = 0; i < 100; i++) {
                long ts = i == 70 ? base + 1_000_000 : base + i * 1000L; // the maximum in the middle
                prod.send(new ProducerRecord<>(topic, 0, ts, "k" + i, "v" + i));
            }
            prod.flush();
        }
        try (Admin admin = ctx.admin()) {
            Map<String, Object> got = new TreeMap<>();
            for (Map.Entry<String, OffsetSpec> e : Map.of(
                    "earliest", OffsetSpec.earliest(), "latest", OffsetSpec.latest(),
                    "ts+30.5s", OffsetSpec.forTimestamp(base + 30_500), "max", OffsetSpec.maxTimestamp()).entrySet()) {
                ListOffsetsResultInfo info = ctx.get("Admin.listOffsets " + e.getKey(), admin.listOffsets(Map.of(tp, e.getValue())).partitionResult(tp));
                got.put(e.getKey(), info.offset() + "@" + info.timestamp());
            }
            Map<String, Object> want = new TreeMap<>(Map.of("earliest", "0@-1", "latest", "100@-1",
                    "ts+30.5s", "31@" + (base + 31_000), "max", "70@" + (base + 1_000_000)));
            ctx.check(got.equals(want), "listOffsets %s, want %s", got, want);
            long low = ctx.get("Admin.deleteRecords", admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(40))).lowWatermarks().get(tp)).lowWatermark();
            ctx.check(low == 40, "deleteRecords low watermark %d, want 40", low);
            ListOffsetsResultInfo e = ctx.get("Admin.listOffsets earliest", admin.listOffsets(Map.of(tp, OffsetSpec.earliest())).partitionResult(tp));
            ctx.check(e.offset() == 40, "earliest after deleteRecords %d, want 40", e.offset());
            ctx.step("Admin.deleteRecords (beyond the high watermark)");
            try {
                admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(1000))).all().get();
                ctx.check(false, "deleteRecords beyond the high watermark succeeded");
            } catch (java.util.concurrent.ExecutionException ex) {
                ctx.check(ex.getCause() instanceof org.apache.kafka.common.errors.OffsetOutOfRangeException, "deleteRecords beyond the end: %s", ex.getCause());
            }
            ctx.data.with("offsets", got);
        }
    }

    /** describeCluster and describeLogDirs. */
    static void cluster(Ctx ctx) throws Exception {
        String topic = ctx.topic("admin-logdirs");
        ProducerCases.createTopic(ctx, topic, 2, Map.of());
        try (KafkaProducer<String, String> prod = ctx.producer(ctx.producerProps())) {
            ctx.step("KafkaProducer.send");
            for (int i = 0; i < 50; i++) prod.send(new ProducerRecord<>(topic, i % 2, "k", "v".repeat(100)));
            prod.flush();
        }
        try (Admin admin = ctx.admin()) {
            DescribeClusterResult dc = admin.describeCluster();
            Collection<Node> nodes = ctx.get("Admin.describeCluster nodes", dc.nodes());
            Node controller = ctx.get("Admin.describeCluster controller", dc.controller());
            String id = ctx.get("Admin.describeCluster clusterId", dc.clusterId());
            ctx.check(nodes.size() == 1 && controller != null && id != null && !id.isEmpty(), "describeCluster nodes %s controller %s id %s", nodes, controller, id);
            int node = nodes.iterator().next().id();
            Map<Integer, Map<String, LogDirDescription>> dirs = ctx.get("Admin.describeLogDirs", admin.describeLogDirs(List.of(node)).allDescriptions());
            Map<String, LogDirDescription> mine = dirs.get(node);
            ctx.check(mine != null && mine.size() == 1, "describeLogDirs %s", dirs);
            LogDirDescription d = mine.values().iterator().next();
            ctx.check(d.error() == null, "log dir error %s", d.error());
            long size = 0;
            for (int p = 0; p < 2; p++) {
                ReplicaInfo ri = d.replicaInfos().get(new TopicPartition(topic, p));
                ctx.check(ri != null && ri.size() > 25 * 100, "%s-%d replica info %s", topic, p, ri);
                size += ri.size();
            }
            ctx.data.with("cluster_id", id).with("log_dir", mine.keySet().iterator().next()).with("topic_bytes", size)
                    .with("total_bytes", d.totalBytes().orElse(-1L)).with("usable_bytes", d.usableBytes().orElse(-1L));
        }
    }

    /** list/describe/delete consumer groups, list and alter their offsets. */
    static void groups(Ctx ctx) throws Exception {
        String topic = ctx.topic("admin-groups");
        String group = ctx.group("admin");
        ProducerCases.createTopic(ctx, topic, 2, Map.of());
        ConsumerCases.produce(ctx, topic, 0, 100);
        try (Admin admin = ctx.admin()) {
            try (KafkaConsumer<String, String> c = ctx.consumer(ctx.consumerProps(group))) {
                c.subscribe(List.of(topic));
                ctx.step("KafkaConsumer.poll");
                long deadline = System.currentTimeMillis() + 60_000;
                int n = 0;
                while (n < 100) {
                    ctx.check(System.currentTimeMillis() < deadline, "consumed %d of 100 within 60s", n);
                    n += c.poll(Ctx.ms(200)).count();
                }
                c.commitSync();
                ConsumerGroupDescription d = ctx.get("Admin.describeConsumerGroups", admin.describeConsumerGroups(List.of(group)).describedGroups().get(group));
                ctx.check(d.state().toString().equalsIgnoreCase("Stable") && d.members().size() == 1 && !d.isSimpleConsumerGroup()
                        && d.members().iterator().next().assignment().topicPartitions().size() == 2,
                        "describeConsumerGroups while consuming: %s", d);
                ctx.data.with("assignor", d.partitionAssignor()).with("state_active", d.state().toString());
            }
            Collection<ConsumerGroupListing> ls = ctx.get("Admin.listConsumerGroups", admin.listConsumerGroups().all());
            ConsumerGroupListing l = ls.stream().filter(x -> x.groupId().equals(group)).findFirst().orElse(null);
            ctx.check(l != null && l.state().isPresent() && l.state().get().toString().equalsIgnoreCase("Empty"), "listConsumerGroups %s: %s not Empty", ls, group);
            ConsumerGroupDescription d = ctx.get("Admin.describeConsumerGroups", admin.describeConsumerGroups(List.of(group)).describedGroups().get(group));
            ctx.check(d.state().toString().equalsIgnoreCase("Empty") && d.members().isEmpty(), "describeConsumerGroups after close: %s", d);
            Map<TopicPartition, OffsetAndMetadata> offs = ctx.get("Admin.listConsumerGroupOffsets", admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
            long sum = offs.values().stream().mapToLong(OffsetAndMetadata::offset).sum();
            ctx.check(offs.size() == 2 && sum == 100, "listConsumerGroupOffsets %s, want the ends (100 records)", offs);
            TopicPartition tp0 = new TopicPartition(topic, 0);
            ctx.get("Admin.alterConsumerGroupOffsets", admin.alterConsumerGroupOffsets(group, Map.of(tp0, new OffsetAndMetadata(5, "reset"))).all());
            offs = ctx.get("Admin.listConsumerGroupOffsets", admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
            ctx.check(offs.get(tp0) != null && offs.get(tp0).offset() == 5 && "reset".equals(offs.get(tp0).metadata()), "after alterConsumerGroupOffsets: %s", offs);
            ctx.get("Admin.deleteConsumerGroups", admin.deleteConsumerGroups(List.of(group)).all());
            Set<String> left = new HashSet<>();
            for (ConsumerGroupListing x : ctx.get("Admin.listConsumerGroups", admin.listConsumerGroups().all())) left.add(x.groupId());
            ctx.check(!left.contains(group), "%s listed after deleteConsumerGroups: %s", group, left);
            ctx.step("Admin.describeConsumerGroups (deleted)");
            try {
                ConsumerGroupDescription gone = admin.describeConsumerGroups(List.of(group)).describedGroups().get(group).get();
                ctx.check(gone.state().toString().equalsIgnoreCase("Dead"), "deleted group described as %s", gone);
            } catch (java.util.concurrent.ExecutionException e) {
                ctx.check(e.getCause() instanceof org.apache.kafka.common.errors.GroupIdNotFoundException, "describing a deleted group: %s", e.getCause());
            }
        }
    }

    static <T> List<T> list(Collection<T> c) {
        return new ArrayList<>(c);
    }
}
