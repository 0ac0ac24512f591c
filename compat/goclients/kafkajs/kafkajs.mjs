// Runs kafkajs against a kvlogd for compat/goclients/kafkajs_test.go.
// $KVLOG_KAFKAJS is a JSON object: brokers, ssl (kafkajs's ssl option:
// ca, cert, key as PEM text), sasl (kafkajs's sasl option, or absent),
// case ("roundtrip" or "auth-refused"), topic, group and records (key,
// value, tombstone). It prints one line of JSON: {ok, ...} with what it
// read, or {ok: false, error, message} when a step failed.
import kafkajs from 'kafkajs';

const { Kafka, Partitioners, logLevel } = kafkajs;
const cfg = JSON.parse(process.env.KVLOG_KAFKAJS);

// kafkajs's own log lines go to standard error, standard output is the
// result.
const logCreator = () => ({ namespace, level, log }) => {
  const { message, ...extra } = log;
  process.stderr.write(`kafkajs ${namespace} ${level}: ${message} ${JSON.stringify(extra)}\n`);
};

const kafka = new Kafka({
  clientId: 'kvlog-kafkajs',
  brokers: cfg.brokers,
  ssl: cfg.ssl,
  sasl: cfg.sasl,
  connectionTimeout: 5000,
  authenticationTimeout: 5000,
  requestTimeout: 20000,
  retry: { retries: cfg.case === 'auth-refused' ? 0 : 3 },
  logLevel: cfg.case === 'auth-refused' ? logLevel.NOTHING : logLevel.WARN,
  logCreator,
});

function result(r) {
  process.stdout.write(JSON.stringify(r) + '\n');
}

async function roundtrip() {
  const out = { ok: true };
  let step = 'admin';
  const admin = kafka.admin();
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: Partitioners.DefaultPartitioner });
  const consumer = kafka.consumer({ groupId: cfg.group, sessionTimeout: 10000, rebalanceTimeout: 10000, heartbeatInterval: 1000, maxWaitTimeInMs: 200 });
  try {
    await admin.connect();
    out.created = await admin.createTopics({ topics: [{ topic: cfg.topic, numPartitions: 3, replicationFactor: 1 }], waitForLeaders: true });
    out.createdAgain = await admin.createTopics({ topics: [{ topic: cfg.topic, numPartitions: 3, replicationFactor: 1 }] });
    const topics = await admin.listTopics();
    out.listed = topics.includes(cfg.topic);
    const md = await admin.fetchTopicMetadata({ topics: [cfg.topic] });
    out.partitions = md.topics[0].partitions.length;

    step = 'produce';
    await producer.connect();
    const sent = await producer.send({
      topic: cfg.topic,
      acks: -1,
      messages: cfg.records.map((r) => ({ key: r.key, value: r.tombstone ? null : r.value })),
    });
    out.produced = sent.map((s) => ({ partition: s.partition, errorCode: s.errorCode, baseOffset: s.baseOffset }));

    step = 'consume';
    const got = [];
    await consumer.connect();
    await consumer.subscribe({ topics: [cfg.topic], fromBeginning: true });
    const done = new Promise((resolve) => {
      consumer.run({
        autoCommit: false,
        eachMessage: async ({ topic, partition, message }) => {
          got.push({
            key: message.key === null ? null : message.key.toString(),
            value: message.value === null ? '' : message.value.toString(),
            tombstone: message.value === null,
            partition,
            offset: Number(message.offset),
          });
          await consumer.commitOffsets([{ topic, partition, offset: (BigInt(message.offset) + 1n).toString() }]);
          if (got.length === cfg.records.length) resolve();
        },
      });
    });
    let timer;
    await Promise.race([done, new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`read ${got.length} of ${cfg.records.length} records in 60 s`)), 60000); })]);
    clearTimeout(timer);
    out.records = got;

    step = 'committed';
    await consumer.disconnect();
    out.committed = await admin.fetchOffsets({ groupId: cfg.group, topics: [cfg.topic] });
  } catch (e) {
    result({ ok: false, step, error: e.name, message: e.message });
    return;
  } finally {
    await Promise.allSettled([consumer.disconnect(), producer.disconnect(), admin.disconnect()]);
  }
  result(out);
}

async function authRefused() {
  const admin = kafka.admin();
  try {
    await admin.connect();
    await admin.listTopics();
    result({ ok: true });
  } catch (e) {
    result({ ok: false, error: e.name, type: e.type, message: e.message });
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

await (cfg.case === 'auth-refused' ? authRefused() : roundtrip());
