package kvlog.compat;

import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewPartitionReassignment;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.ElectionType;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.UnsupportedVersionException;

/**
 * What kvlog does not serve yet fails in the client with the ordinary
 * UnsupportedVersionException, promptly: each case pins one API.
 */
final class UnsupportedCases {
    private UnsupportedCases() {}

    interface Call {
        void run() throws Exception;
    }

    static void register(Map<String, Main.Case> m) {
        m.put("unsupported-consumer-protocol", UnsupportedCases::consumerProtocol);
        m.put("admin-scram", UnsupportedCases::scram);
        m.put("unsupported-reassignment", ctx -> admin(ctx, "Admin.listPartitionReassignments/alterPartitionReassignments", a -> {
            expect(ctx, "Admin.listPartitionReassignments", () -> a.listPartitionReassignments().reassignments().get());
            expect(ctx, "Admin.alterPartitionReassignments", () -> a.alterPartitionReassignments(Map.of(
                    new TopicPartition(ctx.topic("reassign"), 0), Optional.of(new NewPartitionReassignment(List.of(0))))).all().get());
        }));
        m.put("unsupported-elect-leaders", ctx -> admin(ctx, "Admin.electLeaders", a ->
                expect(ctx, "Admin.electLeaders", () -> a.electLeaders(ElectionType.PREFERRED, Set.of(new TopicPartition(ctx.topic("elect"), 0))).partitions().get())));
    }

    /** SCRAM credentials: upsert, describe (mechanism and iterations only), delete, describe a missing user. */
    static void scram(Ctx ctx) throws Exception {
        String user = ctx.prefix + "-alice";
        try (Admin a = ctx.admin()) {
            ctx.step("Admin.alterUserScramCredentials upsert");
            a.alterUserScramCredentials(List.of(
                    new UserScramCredentialUpsertion(user, new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), "secret"),
                    new UserScramCredentialUpsertion(user, new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), "secret"))).all().get();
            var desc = ctx.get("Admin.describeUserScramCredentials", a.describeUserScramCredentials(List.of(user)).description(user));
            var infos = desc.credentialInfos();
            ctx.check(infos.size() == 2 && infos.contains(new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096))
                    && infos.contains(new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)), "described %s", infos);
            ctx.step("Admin.alterUserScramCredentials delete");
            a.alterUserScramCredentials(List.of(
                    new org.apache.kafka.clients.admin.UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_256),
                    new org.apache.kafka.clients.admin.UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_512))).all().get();
            ctx.step("Admin.describeUserScramCredentials missing user");
            Throwable got = null;
            try {
                a.describeUserScramCredentials(List.of(user)).description(user).get();
            } catch (ExecutionException e) {
                got = e.getCause();
            }
            ctx.check(got instanceof org.apache.kafka.common.errors.ResourceNotFoundException, "describe a deleted user: %s", got);
            ctx.data.with("describe", infos.toString());
        }
    }

    interface AdminCall {
        void run(Admin a) throws Exception;
    }

    static void admin(Ctx ctx, String what, AdminCall call) throws Exception {
        try (Admin a = ctx.admin()) {
            call.run(a);
        }
    }

    /** Runs call and requires an UnsupportedVersionException, within the case's timeout. */
    static void expect(Ctx ctx, String api, Call call) {
        ctx.step(api);
        long t0 = System.nanoTime();
        Throwable got = null;
        try {
            call.run();
        } catch (ExecutionException e) {
            got = e.getCause();
        } catch (Exception e) {
            got = e;
        }
        long ms = (System.nanoTime() - t0) / 1_000_000;
        ctx.check(got instanceof UnsupportedVersionException, "%s: want UnsupportedVersionException, got %s", api, got == null ? "success" : got.toString());
        ctx.data.with(api, ms + " ms: " + got.getMessage());
    }

    /** KIP-848: group.protocol=consumer. */
    static void consumerProtocol(Ctx ctx) throws Exception {
        Properties p = ctx.consumerProps(ctx.group("kip848"));
        p.put("group.protocol", "consumer");
        try (KafkaConsumer<String, String> c = ctx.consumer(p)) {
            c.subscribe(List.of(ctx.topic("kip848")));
            expect(ctx, "KafkaConsumer.poll (group.protocol=consumer)", () -> {
                long deadline = System.currentTimeMillis() + 30_000;
                while (System.currentTimeMillis() < deadline) {
                    c.poll(Ctx.ms(200));
                }
            });
        }
    }

    static <T> T unused(KafkaFuture<T> f) {
        return null;
    }
}
