package kvlog.compat;

import java.util.Collection;
import java.util.List;
import java.util.Map;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AccessControlEntryFilter;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.quota.ClientQuotaAlteration;
import org.apache.kafka.common.quota.ClientQuotaEntity;
import org.apache.kafka.common.quota.ClientQuotaFilter;
import org.apache.kafka.common.quota.ClientQuotaFilterComponent;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourcePatternFilter;
import org.apache.kafka.common.resource.ResourceType;

/**
 * AdminClient ACL and client-quota APIs: createAcls/describeAcls/deleteAcls
 * (against a broker with the ACL authorizer, this client a super user) and
 * alterClientQuotas/describeClientQuotas.
 */
final class SecurityAdminCases {
    private SecurityAdminCases() {}

    static void register(Map<String, Main.Case> m) {
        m.put("admin-acls", SecurityAdminCases::acls);
        m.put("admin-quotas", SecurityAdminCases::quotas);
        m.put("auth-refused", SecurityAdminCases::authRefused);
        m.put("admin-mutation-quota", SecurityAdminCases::mutationQuota);
    }

    /**
     * controller_mutation_rate (KIP-599) on this case's client id, 1
     * partition/s (a burst of quota.window.num x 1 s): a topic taking the
     * bucket below zero is created; the next createTopics, told not to
     * retry on quota violations, fails with ThrottlingQuotaExceededException
     * and a throttle time, as against Kafka; then the quota is removed.
     */
    static void mutationQuota(Ctx ctx) throws Exception {
        String client = ctx.prefix + "-mutations";
        ClientQuotaEntity entity = new ClientQuotaEntity(Map.of(ClientQuotaEntity.CLIENT_ID, client));
        try (Admin a = ctx.admin()) {
            ctx.get("Admin.alterClientQuotas", a.alterClientQuotas(List.of(new ClientQuotaAlteration(entity,
                    List.of(new ClientQuotaAlteration.Op("controller_mutation_rate", 1.0))))).all());
            java.util.Properties p = new java.util.Properties();
            p.put(org.apache.kafka.clients.admin.AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, ctx.bootstrap);
            p.put(org.apache.kafka.clients.admin.AdminClientConfig.CLIENT_ID_CONFIG, client);
            p.putAll(Ctx.CLIENT_CONFIG);
            try (Admin m = Admin.create(p)) {
                ctx.get("Admin.createTopics (50 partitions)", m.createTopics(List.of(
                        new org.apache.kafka.clients.admin.NewTopic(ctx.topic("mutations-big"), 50, (short) 1))).all());
                ctx.step("Admin.createTopics over the quota");
                Throwable got = null;
                try {
                    m.createTopics(List.of(new org.apache.kafka.clients.admin.NewTopic(ctx.topic("mutations-next"), 1, (short) 1)),
                            new org.apache.kafka.clients.admin.CreateTopicsOptions().retryOnQuotaViolation(false)).all().get();
                } catch (java.util.concurrent.ExecutionException e) {
                    got = e.getCause();
                }
                ctx.check(got instanceof org.apache.kafka.common.errors.ThrottlingQuotaExceededException
                        && ((org.apache.kafka.common.errors.ThrottlingQuotaExceededException) got).throttleTimeMs() > 0,
                        "createTopics over controller_mutation_rate: %s", got);
                ctx.data.with("error", got.getClass().getSimpleName() + ": " + got.getMessage() + " (throttle "
                        + ((org.apache.kafka.common.errors.ThrottlingQuotaExceededException) got).throttleTimeMs() + " ms)");
            } finally {
                ctx.get("Admin.alterClientQuotas remove", a.alterClientQuotas(List.of(new ClientQuotaAlteration(entity,
                        List.of(new ClientQuotaAlteration.Op("controller_mutation_rate", null))))).all());
            }
        }
    }

    /**
     * The run's client configuration (kvlog.client.config) is refused by the
     * broker: Admin.describeCluster fails with the exception the argument
     * names ("sasl": SaslAuthenticationException, "ssl":
     * SslAuthenticationException), as against Apache Kafka, not with a
     * timeout.
     */
    static void authRefused(Ctx ctx) throws Exception {
        Class<?> want = switch (ctx.arg == null ? "" : ctx.arg) {
            case "sasl" -> org.apache.kafka.common.errors.SaslAuthenticationException.class;
            case "ssl" -> org.apache.kafka.common.errors.SslAuthenticationException.class;
            default -> throw new IllegalArgumentException("auth-refused=sasl|ssl, not " + ctx.arg);
        };
        try (Admin a = ctx.admin()) {
            ctx.step("Admin.describeCluster");
            Throwable got = null;
            try {
                a.describeCluster().clusterId().get(30, java.util.concurrent.TimeUnit.SECONDS);
            } catch (java.util.concurrent.ExecutionException e) {
                got = e.getCause();
            }
            ctx.check(want.isInstance(got), "describeCluster with refused credentials: %s, want %s", got, want.getSimpleName());
            ctx.data.with("error", got.getClass().getSimpleName() + ": " + got.getMessage());
        }
    }

    /** Create literal and prefixed ACLs, describe with filters (MATCH included), delete by filter. */
    static void acls(Ctx ctx) throws Exception {
        String topic = ctx.prefix + "-acl-orders";
        String prefix = ctx.prefix + "-acl-";
        AclBinding read = new AclBinding(new ResourcePattern(ResourceType.TOPIC, topic, PatternType.LITERAL),
                new AccessControlEntry("User:alice", "*", AclOperation.READ, AclPermissionType.ALLOW));
        AclBinding write = new AclBinding(new ResourcePattern(ResourceType.TOPIC, prefix, PatternType.PREFIXED),
                new AccessControlEntry("User:bob", "10.0.0.1", AclOperation.WRITE, AclPermissionType.ALLOW));
        AclBinding group = new AclBinding(new ResourcePattern(ResourceType.GROUP, ctx.prefix + "-acl-group", PatternType.LITERAL),
                new AccessControlEntry("User:alice", "*", AclOperation.READ, AclPermissionType.DENY));
        try (Admin a = ctx.admin()) {
            ctx.step("Admin.createAcls");
            a.createAcls(List.of(read, write, group)).all().get();
            ctx.step("Admin.createAcls invalid");
            Throwable got = null;
            try {
                a.createAcls(List.of(new AclBinding(new ResourcePattern(ResourceType.CLUSTER, "not-kafka-cluster", PatternType.LITERAL),
                        new AccessControlEntry("User:alice", "*", AclOperation.ALTER, AclPermissionType.ALLOW)))).all().get();
            } catch (java.util.concurrent.ExecutionException e) {
                got = e.getCause();
            }
            ctx.check(got instanceof org.apache.kafka.common.errors.InvalidRequestException, "cluster ACL with a bad name: %s", got);

            Collection<AclBinding> all = ctx.get("Admin.describeAcls ANY", a.describeAcls(AclBindingFilter.ANY).values());
            ctx.check(all.contains(read) && all.contains(write) && all.contains(group), "describe ANY: %s", all);
            Collection<AclBinding> matching = ctx.get("Admin.describeAcls MATCH", a.describeAcls(new AclBindingFilter(
                    new ResourcePatternFilter(ResourceType.TOPIC, topic, PatternType.MATCH), AccessControlEntryFilter.ANY)).values());
            ctx.check(matching.size() == 2 && matching.contains(read) && matching.contains(write), "describe MATCH %s: %s", topic, matching);
            Collection<AclBinding> prefixed = ctx.get("Admin.describeAcls PREFIXED", a.describeAcls(new AclBindingFilter(
                    new ResourcePatternFilter(ResourceType.TOPIC, prefix, PatternType.PREFIXED), AccessControlEntryFilter.ANY)).values());
            ctx.check(prefixed.size() == 1 && prefixed.contains(write), "describe PREFIXED: %s", prefixed);

            Collection<AclBinding> deleted = ctx.get("Admin.deleteAcls", a.deleteAcls(List.of(new AclBindingFilter(
                    ResourcePatternFilter.ANY, new AccessControlEntryFilter("User:alice", null, AclOperation.ANY, AclPermissionType.ANY)))).all());
            ctx.check(deleted.size() == 2 && deleted.contains(read) && deleted.contains(group), "deleted: %s", deleted);
            Collection<AclBinding> left = ctx.get("Admin.describeAcls after delete", a.describeAcls(AclBindingFilter.ANY).values());
            ctx.check(!left.contains(read) && !left.contains(group) && left.contains(write), "left: %s", left);
            ctx.data.with("described", all.size() + " ACLs").with("deleted", deleted.size() + " ACLs");
        }
    }

    /** Quotas on a client id, a user and the default user; describe with filters; remove. */
    static void quotas(Ctx ctx) throws Exception {
        String client = ctx.prefix + "-quota-client";
        String user = ctx.prefix + "-quota-user";
        ClientQuotaEntity clientEntity = new ClientQuotaEntity(Map.of(ClientQuotaEntity.CLIENT_ID, client));
        ClientQuotaEntity userEntity = new ClientQuotaEntity(Map.of(ClientQuotaEntity.USER, user));
        java.util.HashMap<String, String> defaultUser = new java.util.HashMap<>();
        defaultUser.put(ClientQuotaEntity.USER, null);
        ClientQuotaEntity defaultUserEntity = new ClientQuotaEntity(defaultUser);
        try (Admin a = ctx.admin()) {
            ctx.step("Admin.alterClientQuotas");
            a.alterClientQuotas(List.of(
                    new ClientQuotaAlteration(clientEntity, List.of(new ClientQuotaAlteration.Op("producer_byte_rate", 1048576.0),
                            new ClientQuotaAlteration.Op("consumer_byte_rate", 2097152.0))),
                    new ClientQuotaAlteration(userEntity, List.of(new ClientQuotaAlteration.Op("request_percentage", 25.5))),
                    new ClientQuotaAlteration(defaultUserEntity, List.of(new ClientQuotaAlteration.Op("producer_byte_rate", 4096.0))))).all().get();
            var byClient = ctx.get("Admin.describeClientQuotas client", a.describeClientQuotas(ClientQuotaFilter.containsOnly(
                    List.of(ClientQuotaFilterComponent.ofEntity(ClientQuotaEntity.CLIENT_ID, client)))).entities());
            ctx.check(byClient.size() == 1 && byClient.get(clientEntity).equals(Map.of("producer_byte_rate", 1048576.0, "consumer_byte_rate", 2097152.0)),
                    "client quotas: %s", byClient);
            var defaults = ctx.get("Admin.describeClientQuotas default user", a.describeClientQuotas(ClientQuotaFilter.contains(
                    List.of(ClientQuotaFilterComponent.ofDefaultEntity(ClientQuotaEntity.USER)))).entities());
            ctx.check(defaults.size() == 1 && defaults.get(defaultUserEntity).equals(Map.of("producer_byte_rate", 4096.0)), "default user: %s", defaults);
            var users = ctx.get("Admin.describeClientQuotas users", a.describeClientQuotas(ClientQuotaFilter.containsOnly(
                    List.of(ClientQuotaFilterComponent.ofEntityType(ClientQuotaEntity.USER)))).entities());
            ctx.check(users.get(userEntity) != null && users.get(userEntity).equals(Map.of("request_percentage", 25.5)), "users: %s", users);

            ctx.step("Admin.alterClientQuotas invalid key");
            Throwable got = null;
            try {
                a.alterClientQuotas(List.of(new ClientQuotaAlteration(clientEntity,
                        List.of(new ClientQuotaAlteration.Op("no_such_rate", 1.0))))).all().get();
            } catch (java.util.concurrent.ExecutionException e) {
                got = e.getCause();
            }
            ctx.check(got instanceof org.apache.kafka.common.errors.InvalidRequestException, "unknown quota key: %s", got);

            ctx.step("Admin.alterClientQuotas remove");
            a.alterClientQuotas(List.of(
                    new ClientQuotaAlteration(clientEntity, List.of(new ClientQuotaAlteration.Op("producer_byte_rate", null),
                            new ClientQuotaAlteration.Op("consumer_byte_rate", null))),
                    new ClientQuotaAlteration(userEntity, List.of(new ClientQuotaAlteration.Op("request_percentage", null))),
                    new ClientQuotaAlteration(defaultUserEntity, List.of(new ClientQuotaAlteration.Op("producer_byte_rate", null))))).all().get();
            var after = ctx.get("Admin.describeClientQuotas after remove", a.describeClientQuotas(ClientQuotaFilter.all()).entities());
            ctx.check(!after.containsKey(clientEntity) && !after.containsKey(userEntity) && !after.containsKey(defaultUserEntity), "after removal: %s", after);
            ctx.data.with("client", byClient.toString());
        }
    }
}
