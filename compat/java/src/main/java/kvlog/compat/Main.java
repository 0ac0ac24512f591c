package kvlog.compat;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * Runs named cases against a broker:
 *
 * <pre>java -cp CLASSPATH kvlog.compat.Main BOOTSTRAP PREFIX CASE[=ARG]...</pre>
 *
 * and prints, per case, one line "RESULT {json}" with the case, the client
 * version, ok, and on failure the client API it was in and the error; a
 * case's data for the Go driver's checks is under "data". Lines starting
 * with "PROGRESS " tell the driver how far a case is.
 */
public final class Main {
    interface Case {
        void run(Ctx ctx) throws Exception;
    }

    static final Map<String, Case> CASES = new LinkedHashMap<>();

    static {
        ProducerCases.register(CASES);
        ConsumerCases.register(CASES);
        AdminCases.register(CASES);
        UnsupportedCases.register(CASES);
        TransactionCases.register(CASES);
        SecurityAdminCases.register(CASES);
    }

    private Main() {}

    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: Main BOOTSTRAP PREFIX CASE[=ARG]...; cases: " + CASES.keySet());
            System.exit(2);
        }
        String client = "kafka-clients " + Ctx.clientVersion();
        long timeoutMs = Long.getLong("kvlog.case.timeout.ms", 120_000);
        ExecutorService ex = Executors.newCachedThreadPool(r -> {
            Thread t = new Thread(r, "case");
            t.setDaemon(true);
            return t;
        });
        boolean stuck = false;
        for (int i = 2; i < args.length && !stuck; i++) {
            String name = args[i], arg = null;
            int eq = name.indexOf('=');
            if (eq >= 0) {
                arg = name.substring(eq + 1);
                name = name.substring(0, eq);
            }
            Json.Obj res = Json.obj().with("case", name).with("client", client);
            Case c = CASES.get(name);
            Ctx ctx = new Ctx(args[0], args[1], arg);
            long start = System.nanoTime();
            if (c == null) {
                res.with("ok", false).with("api", "").with("error", "unknown case " + name);
            } else {
                Future<?> f = ex.submit(() -> {
                    c.run(ctx);
                    return null;
                });
                try {
                    f.get(timeoutMs, TimeUnit.MILLISECONDS);
                    res.with("ok", true);
                } catch (TimeoutException e) {
                    stuck = true;
                    res.with("ok", false).with("api", ctx.api)
                            .with("error", "timed out after " + timeoutMs + " ms in " + ctx.api + "\n" + threadDump());
                } catch (java.util.concurrent.ExecutionException e) {
                    Throwable cause = e.getCause();
                    res.with("ok", false).with("api", ctx.api).with("error", describe(cause));
                }
            }
            res.with("ms", (System.nanoTime() - start) / 1_000_000).with("data", ctx.data);
            synchronized (System.out) {
                System.out.println("RESULT " + res);
                System.out.flush();
            }
        }
        // Clients a failed case left open must not keep the JVM alive.
        System.exit(0);
    }

    /** The exception chain and stack of a failure, for the test log. */
    static String describe(Throwable t) {
        StringBuilder sb = new StringBuilder();
        for (Throwable c = t; c != null; c = c.getCause()) {
            if (sb.length() > 0) sb.append(" <- caused by ");
            sb.append(c.getClass().getName()).append(": ").append(c.getMessage());
            if (c.getCause() == c) break;
        }
        if (!(t instanceof Ctx.CheckFailed)) {
            StringWriter sw = new StringWriter();
            t.printStackTrace(new PrintWriter(sw));
            sb.append('\n').append(sw);
        }
        return sb.toString();
    }

    static String threadDump() {
        StringBuilder sb = new StringBuilder();
        Thread.getAllStackTraces().forEach((th, st) -> {
            if (!th.getName().startsWith("case") && !th.getName().startsWith("kafka")) return;
            sb.append("thread ").append(th.getName()).append('\n');
            for (StackTraceElement e : st) sb.append("  at ").append(e).append('\n');
        });
        return sb.toString();
    }
}
