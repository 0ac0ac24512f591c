package kvlog.compat;

import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * What a case runs with: the broker, a topic-name prefix (so the 4.x and
 * 3.x runs share a broker), the API being exercised (named in a failure)
 * and the data the case returns to the Go driver.
 */
final class Ctx {
    final String bootstrap;
    final String prefix;
    final String arg;
    final Json.Obj data = Json.obj();
    /** The client API the case is in, named when it fails. */
    volatile String api = "";

    Ctx(String bootstrap, String prefix, String arg) {
        this.bootstrap = bootstrap;
        this.prefix = prefix;
        this.arg = arg;
    }

    /** The version of kafka-clients on the classpath. */
    static String clientVersion() {
        try (InputStream in = Ctx.class.getResourceAsStream("/kafka/kafka-version.properties")) {
            Properties p = new Properties();
            p.load(in);
            return p.getProperty("version", "unknown");
        } catch (Exception e) {
            return "unknown";
        }
    }

    /**
     * Client settings every producer, consumer and admin client of the run
     * gets on top of the case's own: the Kafka client configuration file
     * named by the system property kvlog.client.config (security.protocol,
     * sasl.*, ssl.*, exactly as an application would set them), or none.
     */
    static final Properties CLIENT_CONFIG = loadClientConfig();

    private static Properties loadClientConfig() {
        Properties p = new Properties();
        String file = System.getProperty("kvlog.client.config");
        if (file != null && !file.isEmpty()) {
            try (InputStream in = Files.newInputStream(Path.of(file))) {
                p.load(in);
            } catch (java.io.IOException e) {
                throw new java.io.UncheckedIOException("reading kvlog.client.config " + file, e);
            }
        }
        return p;
    }

    /** A failed expectation of a case. */
    static final class CheckFailed extends RuntimeException {
        CheckFailed(String msg) {
            super(msg);
        }
    }

    void step(String api) {
        this.api = api;
    }

    void check(boolean ok, String format, Object... args) {
        if (!ok) {
            throw new CheckFailed(String.format(format, args));
        }
    }

    String topic(String name) {
        return prefix + "-" + name;
    }

    String group(String name) {
        return prefix + "-g-" + name;
    }

    /** Prints a line the Go driver may wait on (e.g. to kill the broker). */
    static void progress(String line) {
        synchronized (System.out) {
            System.out.println("PROGRESS " + line);
            System.out.flush();
        }
    }

    Properties producerProps() {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.CLIENT_ID_CONFIG, prefix + "-producer");
        p.putAll(CLIENT_CONFIG);
        return p;
    }

    KafkaProducer<String, String> producer(Properties p) {
        step("KafkaProducer.<init>");
        return new KafkaProducer<>(p);
    }

    Properties consumerProps(String group) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, prefix + "-consumer");
        if (group != null) {
            p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
            p.put("group.protocol", "classic");
        }
        p.putAll(CLIENT_CONFIG);
        return p;
    }

    KafkaConsumer<String, String> consumer(Properties p) {
        step("KafkaConsumer.<init>");
        return new KafkaConsumer<>(p);
    }

    Admin admin() {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, prefix + "-admin");
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        p.putAll(CLIENT_CONFIG);
        step("Admin.create");
        return Admin.create(p);
    }

    /** Waits for an admin future, naming api when it fails. */
    <T> T get(String api, KafkaFuture<T> f) throws Exception {
        step(api);
        try {
            return f.get();
        } catch (ExecutionException e) {
            throw e.getCause() instanceof Exception c ? c : e;
        }
    }

    static Duration ms(long n) {
        return Duration.ofMillis(n);
    }
}
