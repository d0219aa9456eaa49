// Contract of the Kafka gateway, against the real broker.
import assert from 'node:assert/strict';
import kafkajs from 'kafkajs';
import { createRequire } from 'node:module';
import { after, before, describe, it } from 'node:test';
import { BatchingProducer, createKafkaGateway, recentFetchSettings, type ConsumedMessage, type KafkaConsumer, type KafkaGateway } from '../controller/infra/kafka.ts';
import { deleteTopics, eventually, logger, testKafka, uniqueName } from './support/infra.ts';

const prefix = `gw.${uniqueName()}`;
const kafkajsMurmur2 = createRequire(import.meta.url)('kafkajs/src/producer/partitioners/default/murmur2.js') as (key: unknown) => number;
let kafka: KafkaGateway;

before(() => {
  kafka = testKafka();
});
after(async () => {
  await deleteTopics(kafka, prefix);
  await kafka.close();
});

async function topic(name: string, partitions = 3): Promise<string> {
  const t = `${prefix}.${name}`;
  await (await kafka.admin()).createTopics([{ topic: t, partitions, replicationFactor: 1 }]);
  return t;
}

/** Consumes and commits everything; returns the received messages and the consumer. */
function collect(groupId: string, topics: string[]): { received: ConsumedMessage[]; consumer: KafkaConsumer; started: Promise<void> } {
  const received: ConsumedMessage[] = [];
  const consumer = kafka.consumer({ groupId, topics });
  const started = consumer.start(async (batch, ctx) => {
    for (const m of batch.messages) received.push(m);
    const last = batch.messages.at(-1);
    if (last) await ctx.commit((BigInt(last.offset) + 1n).toString());
  });
  return { received, consumer, started };
}

describe('kafka gateway', () => {
  it('round-trips messages with keys and headers', { timeout: 60_000 }, async () => {
    const t = await topic('roundtrip');
    const producer = await kafka.producer();
    await producer.send([{ topic: t, messages: [{ key: 'k1', value: 'hello', headers: { kind: 'greeting' } }] }]);
    const { received, consumer } = collect(`${prefix}.g-roundtrip`, [t]);
    await eventually(() => received.length === 1, { what: 'one message' });
    assert.equal(received[0]?.key, 'k1');
    assert.equal(received[0]?.value?.toString(), 'hello');
    assert.deepEqual(received[0]?.headers, { kind: 'greeting' });
    await consumer.stop();
    await producer.disconnect();
  });

  it('keeps messages of one key on one partition, in order', { timeout: 60_000 }, async () => {
    const t = await topic('keyed', 6);
    const producer = await kafka.producer();
    const batches: number[] = [];
    const batching = new BatchingProducer(producer, { lingerMs: 1, maxBatchMessages: 50, onBatch: (byTopic) => batches.push(byTopic.get(t)?.length ?? 0) });
    const keys = ['sku-a', 'ä€-sku', '0190a000-0000-7000-8000-000000000001'];
    await Promise.all(Array.from({ length: 300 }, (_, i) => batching.send(t, { key: keys[i % 3] as string, value: String(i) })));
    // Every produce request is reported with its size (the hand-off metric), none above the cap.
    assert.equal(batches.reduce((a, b) => a + b, 0), 300);
    assert.ok(batches.every((n) => n >= 1 && n <= 50), `batch sizes ${batches.join(',')}`);
    const { received, consumer } = collect(`${prefix}.g-keyed`, [t]);
    await eventually(() => received.length === 300, { what: '300 messages' });
    for (const key of keys) {
      const mine = received.filter((m) => m.key === key);
      assert.equal(new Set(mine.map((m) => m.partition)).size, 1, `${key} on one partition`);
      // The partition every client with Kafka's default partitioner picks (kafkajs's murmur2, the Java client's).
      assert.equal(mine[0]?.partition, (kafkajsMurmur2(key) & 0x7fffffff) % 6, `${key} on kafkajs's default partition`);
      const values = mine.map((m) => Number(m.value?.toString()));
      assert.deepEqual(values, [...values].sort((a, b) => a - b), `${key} in order`);
      assert.equal(values.length, 100);
    }
    await consumer.stop();
    await batching.close();
    await producer.disconnect();
  });

  it('asks a fetch with busyFetch settings after one that brought a quarter of their minBytes, as configured otherwise', { timeout: 60_000 }, async () => {
    const t = await topic('busy', 1);
    const producer = await kafka.producer();
    // 8 KiB before the consumer starts, so its first fetch brings them all: half of minBytes 16 KiB.
    await producer.send([{ topic: t, messages: Array.from({ length: 8 }, (_, i) => ({ value: `${i}`.padEnd(1024, '.') })) }]);
    const groupId = `${prefix}.g-busy`;
    const received: ConsumedMessage[] = [];
    const consumer = kafka.consumer({ groupId, topics: [t], maxWaitMs: 500, busyFetch: { minBytes: 16 * 1024, maxWaitMs: 200 } });
    await consumer.start(async (batch, ctx) => {
      received.push(...batch.messages);
      const last = batch.messages.at(-1);
      if (last) await ctx.commit((BigInt(last.offset) + 1n).toString());
    });
    const idle = { minBytes: 1, maxWaitMs: 500 };
    const busy = { minBytes: 16 * 1024, maxWaitMs: 200 };
    try {
      await eventually(() => received.length === 8, { what: '8 messages' });
      // The 8 KiB fetch was asked as configured; the next one waited for 16 KiB or 200 ms, and after
      // it brought nothing the consumer fetched as configured again.
      const settings = await eventually(() => {
        const s = recentFetchSettings(groupId);
        const b = s.findIndex((x) => x.minBytes === busy.minBytes);
        return b > 0 && s.slice(b + 1).some((x) => x.minBytes === idle.minBytes) ? s : undefined;
      }, { what: 'a busy fetch, then an idle one again', timeoutMs: 20_000 });
      assert.deepEqual(settings[0], idle);
      assert.ok(settings.every((x) => (x.minBytes === idle.minBytes && x.maxWaitMs === idle.maxWaitMs) || (x.minBytes === busy.minBytes && x.maxWaitMs === busy.maxWaitMs)), JSON.stringify(settings));
      // A consumer without busyFetch keeps kafkajs's settings: nothing is recorded for it.
      assert.deepEqual(recentFetchSettings(`${prefix}.g-keyed`), []);
    } finally {
      await consumer.stop();
      await producer.disconnect();
    }
  });

  it('resumes from the committed offset after a consumer restart', { timeout: 60_000 }, async () => {
    const t = await topic('commit', 1);
    const producer = await kafka.producer();
    await producer.send([{ topic: t, messages: Array.from({ length: 10 }, (_, i) => ({ value: String(i) })) }]);
    const group = `${prefix}.g-commit`;
    // First member commits only the first 4 messages, then stops.
    const seen: string[] = [];
    const first = kafka.consumer({ groupId: group, topics: [t] });
    await first.start(async (batch, ctx) => {
      for (const m of batch.messages) {
        if (seen.length >= 4) return;
        seen.push(m.value?.toString() ?? '');
        await ctx.commit((BigInt(m.offset) + 1n).toString());
      }
    });
    await eventually(() => seen.length === 4);
    await first.stop();
    const { received, consumer } = collect(group, [t]);
    await eventually(() => received.length === 6, { what: 'the 6 uncommitted messages' });
    assert.deepEqual(received.map((m) => m.value?.toString()), ['4', '5', '6', '7', '8', '9']);
    const offsets = await (await kafka.admin()).groupOffsets(group, [t]);
    await eventually(async () => (await (await kafka.admin()).groupOffsets(group, [t]))[0]?.offset === '10');
    assert.equal(offsets.length, 1);
    await consumer.stop();
    await producer.disconnect();
  });

  it('pauses a partition at an offset and redelivers from there after resume', { timeout: 60_000 }, async () => {
    const t = await topic('pause', 1);
    const producer = await kafka.producer();
    await producer.send([{ topic: t, messages: Array.from({ length: 5 }, (_, i) => ({ value: String(i) })) }]);
    const handled: string[] = [];
    let pausedOnce = false;
    const consumer = kafka.consumer({ groupId: `${prefix}.g-pause`, topics: [t] });
    await consumer.start(async (batch, ctx) => {
      for (const m of batch.messages) {
        if (m.value?.toString() === '2' && !pausedOnce) {
          pausedOnce = true;
          ctx.pauseAt(m.offset);
          return;
        }
        handled.push(m.value?.toString() ?? '');
        await ctx.commit((BigInt(m.offset) + 1n).toString());
      }
    });
    await eventually(() => pausedOnce && handled.length === 2);
    // Absence can only be watched for a while (not a synchronisation: a slow machine can only make
    // this look pass, never fail a correct consumer).
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(handled, ['0', '1'], 'nothing handled while paused');
    consumer.resume(t, 0);
    await eventually(() => handled.length === 5, { what: 'messages after resume' });
    assert.deepEqual(handled, ['0', '1', '2', '3', '4']);
    await consumer.stop();
    await producer.disconnect();
  });

  it('creates partitions, describes topics and reports offsets', { timeout: 60_000 }, async () => {
    const t = await topic('grow', 2);
    const admin = await kafka.admin();
    await admin.createTopics([{ topic: t, partitions: 2, replicationFactor: 1 }]); // idempotent
    assert.deepEqual(await admin.describeTopics([t, `${prefix}.missing`]), [{ topic: t, partitions: 2 }]);
    await admin.createPartitions(t, 4);
    assert.deepEqual(await admin.describeTopics([t]), [{ topic: t, partitions: 4 }]);
    const producer = await kafka.producer();
    await producer.send([{ topic: t, messages: [{ key: 'x', value: '1' }, { key: 'x', value: '2' }] }]);
    const offsets = await admin.topicOffsets(t);
    assert.equal(offsets.length, 4);
    assert.equal(offsets.reduce((s, p) => s + Number(p.high), 0), 2);
    assert.deepEqual(await admin.groupOffsets(`${prefix}.nobody`, [t]).then((o) => o.map((x) => x.offset)), [null, null, null, null]);
    await producer.disconnect();
  });

  it('creates concurrent callers\' topics and refuses only the one the broker cannot create', { timeout: 60_000 }, async () => {
    // The per-topic errors of a shared CreateTopics request, as the real broker and kafkajs give them:
    // a replication factor of 3 on this one-broker cluster is refused, the other callers' topics are made.
    const admin = await kafka.admin();
    const names = ['shared-a', 'shared-b', 'shared-c'].map((n) => `${prefix}.${n}`);
    const [a, b, c] = await Promise.allSettled(
      names.map((t, i) => admin.createTopics([{ topic: t, partitions: 1, replicationFactor: i === 1 ? 3 : 1 }])),
    );
    assert.equal(a?.status, 'fulfilled');
    assert.equal(c?.status, 'fulfilled');
    assert.equal(b?.status, 'rejected');
    assert.equal(((b as PromiseRejectedResult).reason as { type?: string }).type, 'INVALID_REPLICATION_FACTOR');
    assert.deepEqual((await admin.describeTopics(names)).map((d) => d.topic).sort(), [names[0], names[2]]);
  });

  it('reports a send to a missing topic as an error (no auto-create)', { timeout: 60_000 }, async () => {
    const producer = await kafka.producer();
    await assert.rejects(producer.send([{ topic: `${prefix}.nope`, messages: [{ value: 'x' }] }]));
    await producer.disconnect();
  });
});

describe('kafka gateway under lost broker state and handler failures', () => {
  /** What a broker that lost this producer id's state answers (kafkajs wraps it as non-retriable). */
  const stateLost = () => {
    const cause = Object.assign(new Error('The broker received an out of order sequence number'), { type: 'OUT_OF_ORDER_SEQUENCE_NUMBER', retriable: false });
    return Object.assign(new Error(cause.message, { cause }), { name: 'KafkaJSNonRetriableError', retriable: false });
  };

  /**
   * A gateway over a fake kafkajs client: producer n (1, 2, …) refuses a send with stateLost() while
   * `refuses(n)` says so and fails its k-th connect while `connectFails(n, k)` does. The renewal paths
   * cannot be provoked on demand from a real broker; scenario 10's broker restart is their real test.
   */
  function fakeGateway(o: { refuses: (id: number) => boolean; connectFails?: (id: number, attempt: number) => boolean }) {
    const producers: { id: number; sent: string[]; connected: boolean; connects: number }[] = [];
    const client = {
      producer() {
        const p = { id: producers.length + 1, sent: [] as string[], connected: false, connects: 0 };
        producers.push(p);
        return {
          async connect() {
            p.connects++;
            if (o.connectFails?.(p.id, p.connects)) throw new Error('Connection error: ECONNREFUSED');
            p.connected = true;
          },
          async disconnect() {
            p.connected = false;
          },
          async sendBatch(req: { topicMessages: { messages: { value: string }[] }[] }) {
            if (o.refuses(p.id)) throw stateLost();
            for (const t of req.topicMessages) for (const m of t.messages) p.sent.push(String(m.value));
          },
        };
      },
      admin() {
        return { connect: async () => Promise.reject(new Error('no admin in this fake')), disconnect: async () => undefined };
      },
    };
    return { producers, gateway: createKafkaGateway({ brokers: ['127.0.0.1:1'], clientId: 'fake', logger, client: () => client as never }) };
  }

  it('goes on with a new producer id when the broker lost this producer\'s sequence state', { timeout: 30_000 }, async () => {
    // What a broker restarted after kill -9 answered in scenario 10: every later request of the
    // producer id is refused with the same non-retriable error.
    let refuse = 1;
    const { producers, gateway: gw } = fakeGateway({ refuses: (id) => id === 1 && refuse-- > 0 });
    const producer = await gw.producer();
    await producer.send([{ topic: 't', messages: [{ value: 'one' }] }]);
    await producer.send([{ topic: 't', messages: [{ value: 'two' }] }]);
    assert.equal(producers.length, 2, 'a second producer (new id) replaced the refused one');
    assert.deepEqual(producers[0]?.sent, []);
    assert.equal(producers[0]?.connected, false, 'the refused producer is disconnected');
    assert.deepEqual(producers[1]?.sent, ['one', 'two'], 'the refused request was sent again, then the next one');
    await producer.disconnect();
    await gw.close();
  });

  it('connects the new producer again on the next send when its first connects failed (broker still away)', { timeout: 30_000 }, async () => {
    // The replacement's first two connects fail: the broker is not back yet.
    const { producers, gateway: gw } = fakeGateway({ refuses: (id) => id === 1, connectFails: (id, attempt) => id === 2 && attempt <= 2 });
    const producer = await gw.producer();
    await assert.rejects(producer.send([{ topic: 't', messages: [{ value: 'one' }] }]), /ECONNREFUSED/);
    await producer.send([{ topic: 't', messages: [{ value: 'two' }] }]);
    assert.equal(producers.length, 2, 'no third producer: the replacement is connected again, not replaced');
    assert.deepEqual(producers[1]?.sent, ['two']);
    await gw.close();
  });

  it('keeps consuming after the handler threw an error kafkajs deems non-retriable', { timeout: 90_000 }, async () => {
    const t = await topic('nonretriable', 1);
    const producer = await kafka.producer();
    await producer.send([{ topic: t, messages: [{ key: 'k', value: 'a' }] }]);
    let attempts = 0;
    const handled: string[] = [];
    const consumer = kafka.consumer({ groupId: `${prefix}.g-nonretriable`, topics: [t] });
    await consumer.start(async (batch, ctx) => {
      attempts++;
      // A TypeError and a KafkaJS error marked non-retriable used to stop kafkajs's consumer for good.
      if (attempts === 1) throw new TypeError('a bug in a handler');
      if (attempts === 2) throw Object.assign(new Error('The broker received an out of order sequence number'), { name: 'KafkaJSNonRetriableError', retriable: false });
      for (const m of batch.messages) handled.push(String(m.value));
      const last = batch.messages.at(-1);
      if (last) await ctx.commit((BigInt(last.offset) + 1n).toString());
    });
    try {
      await eventually(() => handled.includes('a'), { what: 'the batch handled after two failures', timeoutMs: 60_000 });
      await producer.send([{ topic: t, messages: [{ key: 'k', value: 'b' }] }]);
      await eventually(() => handled.includes('b'), { what: 'a later message handled' });
      assert.equal(attempts >= 3, true);
    } finally {
      await consumer.stop();
      await producer.disconnect();
    }
  });
});

describe('kafka gateway: a produce request the broker wrote but whose reply was lost', () => {
  /**
   * A fake kafkajs client over a one-partition fake broker that keeps Kafka's idempotence rules:
   * a batch whose sequence range equals the producer id's last written one is a retry (acknowledged,
   * not written again); any other range that does not follow on is OUT_OF_ORDER_SEQUENCE_NUMBER.
   * Each producer numbers its batches like kafkajs: taken before sending, given back when the send
   * fails. `lostReply(value)` makes the broker write a batch and the connection drop before the
   * reply (a broker killed mid-request). `connecting(n)`, when given, is awaited by the n-th
   * producer's connect; `connected()` tells which producers are connected now.
   */
  function fakeBroker(lostReply: (first: string) => boolean, connecting?: (n: number) => Promise<void>) {
    const log: string[] = [];
    const lastBatch = new Map<number, { first: number; count: number }>();
    const connectedNow: boolean[] = [];
    let producers = 0;
    let producerIds = 0;
    let inFlight = 0;
    let maxInFlight = 0;
    const client = {
      producer() {
        const n = producers++;
        connectedNow[n] = false;
        let id = -1;
        let sequence = 0;
        return {
          async connect() {
            await connecting?.(n + 1);
            id = ++producerIds;
            sequence = 0;
            connectedNow[n] = true;
          },
          async disconnect() {
            connectedNow[n] = false;
          },
          async sendBatch(req: { topicMessages: { messages: { value: string }[] }[] }) {
            const values = req.topicMessages.flatMap((t) => t.messages.map((m) => String(m.value)));
            const first = sequence;
            sequence += values.length;
            inFlight++;
            maxInFlight = Math.max(maxInFlight, inFlight);
            try {
              // The request travels: other sends may start meanwhile.
              await new Promise((r) => setImmediate(r));
              const last = lastBatch.get(id);
              if (last && last.first === first && last.count === values.length) return; // a "retry"
              const expected = last ? last.first + last.count : 0;
              if (first !== expected) {
                const cause = Object.assign(new Error('out of order sequence number'), { type: 'OUT_OF_ORDER_SEQUENCE_NUMBER', retriable: false });
                throw Object.assign(new Error(cause.message, { cause }), { name: 'KafkaJSNonRetriableError', retriable: false });
              }
              log.push(...values);
              lastBatch.set(id, { first, count: values.length });
              if (lostReply(values[0] as string)) throw Object.assign(new Error('Closed connection'), { name: 'KafkaJSNonRetriableError', retriable: false });
            } catch (err) {
              sequence -= values.length; // kafkajs gives the numbers back
              throw err;
            } finally {
              inFlight--;
            }
          },
        };
      },
      admin() {
        return { connect: async () => Promise.reject(new Error('no admin in this fake')), disconnect: async () => undefined };
      },
    };
    const gateway = createKafkaGateway({ brokers: ['127.0.0.1:1'], clientId: 'fake', logger, client: () => client as never });
    return { log, gateway, producerIds: () => producerIds, maxInFlight: () => maxInFlight, connected: () => [...connectedNow] };
  }

  it('the next request is written, not taken for a retry of the written one (an acknowledged message is in the log)', { timeout: 30_000 }, async () => {
    const broker = fakeBroker((first) => first === 'a');
    const producer = await broker.gateway.producer();
    await assert.rejects(producer.send([{ topic: 't', messages: [{ value: 'a' }] }]), /Closed connection/);
    await producer.send([{ topic: 't', messages: [{ value: 'b' }] }]);
    assert.deepEqual(broker.log, ['a', 'b'], "'b' was acknowledged, so it is in the log");
    assert.equal(broker.producerIds(), 2, 'the request after the failed one went with a new producer id');
    await broker.gateway.close();
  });

  it('a disconnected producer stays disconnected: a send fails and no new producer is made', { timeout: 30_000 }, async () => {
    const broker = fakeBroker(() => false);
    const producer = await broker.gateway.producer();
    await producer.disconnect();
    await assert.rejects(producer.send([{ topic: 't', messages: [{ value: 'late' }] }]), /disconnected/);
    assert.equal(broker.producerIds(), 1);
    assert.deepEqual(broker.log, []);
    await broker.gateway.close();
  });

  it('a disconnect while the replacement is still connecting leaves no connection behind', { timeout: 30_000 }, async () => {
    // The replacement's connect ends only when the test says so: the disconnect comes first.
    let finishConnect = () => undefined as void;
    const broker = fakeBroker(() => true, (n) => (n > 1 ? new Promise<void>((r) => (finishConnect = r)) : Promise.resolve()));
    const producer = await broker.gateway.producer();
    await assert.rejects(producer.send([{ topic: 't', messages: [{ value: 'a' }] }]), /Closed connection/);
    assert.equal(broker.connected().length, 2, 'a replacement is connecting');
    const closing = producer.disconnect();
    finishConnect();
    await closing;
    assert.deepEqual(broker.connected(), [false, false], 'neither producer is left connected');
    await broker.gateway.close();
  });

  it('concurrent sends go one at a time, so none takes numbers a failed one gave back', { timeout: 30_000 }, async () => {
    const broker = fakeBroker((first) => first === 'a');
    const producer = await broker.gateway.producer();
    const outcomes = await Promise.allSettled(['a', 'b', 'c', 'd'].map((value) => producer.send([{ topic: 't', messages: [{ value }] }])));
    const acknowledged = ['a', 'b', 'c', 'd'].filter((_, i) => outcomes[i]?.status === 'fulfilled');
    assert.deepEqual(acknowledged, ['b', 'c', 'd']);
    for (const v of acknowledged) assert.ok(broker.log.includes(v), `acknowledged '${v}' is in the log`);
    assert.equal(broker.maxInFlight(), 1);
    await broker.gateway.close();
  });
});

describe('kafka gateway admin at scale', () => {
  it('asks a group\'s offsets again while its coordinator is loading or has moved, and gives up on other errors', async () => {
    const answers: unknown[] = [
      Object.assign(new Error('This is not the correct coordinator for this group'), { type: 'NOT_COORDINATOR_FOR_GROUP', retriable: true }),
      Object.assign(new Error('loading'), { type: 'COORDINATOR_LOAD_IN_PROGRESS', retriable: true }),
      [{ topic: 't', partitions: [{ partition: 0, offset: '5' }] }],
      Object.assign(new Error('denied'), { type: 'GROUP_AUTHORIZATION_FAILED', retriable: false }),
    ];
    let asked = 0;
    const fakeAdmin = {
      connect: async () => undefined,
      disconnect: async () => undefined,
      listTopics: async () => ['t'],
      async fetchOffsets() {
        const a = answers[asked++];
        if (a instanceof Error) throw a;
        return a;
      },
    };
    const gw = createKafkaGateway({ brokers: ['127.0.0.1:1'], clientId: 'fake', logger, client: () => ({ admin: () => fakeAdmin }) as never });
    const admin = await gw.admin();
    assert.deepEqual(await admin.groupOffsets('g', ['t']), [{ topic: 't', partition: 0, offset: '5' }]);
    assert.equal(asked, 3);
    await assert.rejects(admin.groupOffsets('g', ['t']), /denied/);
    assert.equal(asked, 4, 'not asked again after an error that is not the coordinator\'s');
    await gw.close();
  });

  it('answers concurrent questions about topics from one listing, and sees a topic it just created', { timeout: 30_000 }, async () => {
    // A fake kafkajs admin counts the listings (each one is the metadata of every topic of the cluster).
    const topics = new Set(Array.from({ length: 2000 }, (_, i) => `t${i}`));
    let listings = 0;
    const opened = Promise.resolve();
    let gate: Promise<void> = opened;
    let createEntered!: () => void;
    const entered = new Promise<void>((r) => (createEntered = r));
    let finishCreate!: () => void;
    const createGate = new Promise<void>((r) => (finishCreate = r));
    const fakeAdmin = {
      connect: async () => undefined,
      disconnect: async () => undefined,
      async listTopics() {
        listings++;
        const snapshot = [...topics];
        await gate;
        return snapshot;
      },
      async fetchTopicMetadata({ topics: asked }: { topics: string[] }) {
        return { topics: asked.map((name) => ({ name, partitions: [{ partitionId: 0, leader: 1 }] })) };
      },
      async createTopics({ topics: created }: { topics: { topic: string }[] }) {
        createEntered();
        await createGate;
        for (const t of created) topics.add(t.topic);
        return true;
      },
      fetchTopicOffsets: async () => [{ partition: 0, offset: '0', high: '0', low: '0' }],
    };
    const gw = createKafkaGateway({ brokers: ['127.0.0.1:1'], clientId: 'fake', logger, client: () => ({ admin: () => fakeAdmin }) as never });
    const admin = await gw.admin();
    let release!: () => void;
    gate = new Promise<void>((r) => (release = r));
    const answers = Promise.all(Array.from({ length: 500 }, (_, i) => admin.describeTopics([`t${i}`, 'missing'])));
    release();
    const described = await answers;
    assert.equal(listings, 1, '500 concurrent questions, one listing');
    assert.deepEqual(described[7], [{ topic: 't7', partitions: 1 }]);

    // A listing started while a create is under way, still in flight when the create ends, is not
    // joined by a question asked after the create.
    gate = opened;
    const creating = admin.createTopics([{ topic: 'fresh', partitions: 1, replicationFactor: 1 }]);
    await entered;
    gate = new Promise<void>((r) => (release = r));
    const stale = admin.describeTopics(['fresh']);
    finishCreate();
    await creating;
    gate = opened;
    const after = admin.describeTopics(['fresh']);
    release();
    assert.deepEqual(await stale, []);
    assert.deepEqual(await after, [{ topic: 'fresh', partitions: 1 }], 'a question after the create sees the new topic');
    await gw.close();
  });
  it('asks an offsets question again on a new admin when kafkajs\'s metadata cache lost the topic\'s partitions', { timeout: 30_000 }, async () => {
    // kafkajs 2.2.4 fails such a question with a TypeError (it destructures an empty answer) until its
    // cache is refreshed, up to 5 minutes later; 500 sales created at once met it dozens of times.
    const admins: { connected: boolean; asked: number }[] = [];
    const makeAdmin = () => {
      const me = { connected: false, asked: 0 };
      admins.push(me);
      return {
        connect: async () => void (me.connected = true),
        disconnect: async () => void (me.connected = false),
        listTopics: async () => ['orders'],
        async fetchTopicOffsets() {
          me.asked++;
          if (admins.indexOf(me) === 0) throw new TypeError("Cannot destructure property 'partitions' of 'low.pop(...)' as it is undefined.");
          return [{ partition: 0, offset: '5', high: '5', low: '0' }];
        },
      };
    };
    const gw = createKafkaGateway({ brokers: ['127.0.0.1:1'], clientId: 'fake', logger, client: () => ({ admin: makeAdmin }) as never });
    const admin = await gw.admin();
    const answers = await Promise.all([admin.topicOffsets('orders'), admin.topicOffsets('orders'), admin.topicOffsets('orders')]);
    assert.deepEqual(answers[0], [{ partition: 0, high: '5', low: '0' }]);
    assert.equal(admins.length, 2, 'one renewal for three questions that met the stale cache');
    assert.equal(admins[1]?.asked, 3);
    assert.deepEqual(await admin.topicOffsets('orders'), [{ partition: 0, high: '5', low: '0' }]);
    assert.equal(admins.length, 2, 'later questions go to the new admin');
    await gw.close();
  });
});

describe('kafka gateway when another client deletes a topic it asked about', () => {
  it('goes on answering about other topics, creating and reading group offsets (a new admin), and says the deleted one is gone', { timeout: 60_000 }, async () => {
    // kafkajs keeps every topic it was asked about in its metadata target list: once another client
    // deleted one, every later request of that admin failed (checked against the broker before the fix).
    const mine = testKafka(`${prefix}-mine`);
    const other = testKafka(`${prefix}-other`);
    try {
      const gone = await topic('deleted-by-other', 1);
      const kept = await topic('kept', 1);
      const admin = await mine.admin();
      assert.equal((await admin.topicOffsets(gone)).length, 1);
      assert.equal((await admin.topicOffsets(kept)).length, 1);
      assert.deepEqual([...(await admin.topicsOffsets([gone, kept])).keys()].sort(), [gone, kept].sort());
      await (await other.admin()).deleteTopics([gone]);
      assert.deepEqual([...(await admin.topicsOffsets([kept, gone])).keys()], [kept], 'many topics at once: the deleted one is absent, the other answered');
      assert.equal((await admin.topicOffsets(kept)).length, 1);
      assert.deepEqual(await admin.groupOffsets(`${prefix}.nobody`, [kept]).then((o) => o.map((x) => x.offset)), [null]);
      const created = `${prefix}.created-after`;
      await admin.createTopics([{ topic: created, partitions: 1, replicationFactor: 1 }]);
      assert.deepEqual(await admin.describeTopics([created]), [{ topic: created, partitions: 1 }]);
      await assert.rejects(admin.topicOffsets(gone), /does not exist/);
      assert.ok(!(await admin.listTopics()).includes(gone));
    } finally {
      await mine.close();
      await other.close();
    }
  });
});

describe('kafka gateway watermarks of many topics', () => {
  it('answers like topicOffsets for each topic, in two ListOffsets requests for all of them, without the missing ones', { timeout: 60_000 }, async () => {
    // A real kafkajs client whose admins report every request they send (kafkajs's instrumentation events).
    const requests: string[] = [];
    const { Kafka } = kafkajs;
    const counted = createKafkaGateway({
      brokers: ['127.0.0.1:9092'],
      clientId: `${prefix}-counted`,
      logger,
      client: (config) => {
        const k = new Kafka(config);
        const admin = k.admin.bind(k);
        k.admin = (...args: Parameters<typeof admin>) => {
          const a = admin(...args);
          a.on(a.events.REQUEST, (e: { payload: { apiName: string } }) => requests.push(e.payload.apiName));
          return a;
        };
        return k;
      },
    });
    try {
      const topics = await Promise.all(['many-a', 'many-b', 'many-c', 'many-d'].map((name, i) => topic(name, i + 1)));
      const producer = await kafka.producer();
      await producer.send(topics.map((t, i) => ({ topic: t, messages: Array.from({ length: 3 * i + 1 }, (_, j) => ({ key: String(j), value: 'x' })) })));
      await producer.disconnect();
      const admin = await counted.admin();
      const missing = `${prefix}.never-created`;
      // Leaders of just-created topics settle first (a NOT_LEADER answer sends the call topic by topic).
      await eventually(async () => (await admin.topicsOffsets(topics)).size === topics.length, { what: 'every topic answered' });
      requests.length = 0;
      const many = await admin.topicsOffsets([...topics, missing]);
      assert.deepEqual(requests.filter((r) => r === 'ListOffsets'), ['ListOffsets', 'ListOffsets'], `requests: ${requests.join(', ')}`);
      assert.deepEqual([...many.keys()].sort(), [...topics].sort(), 'a topic that does not exist is absent');
      for (const t of topics) {
        const one = await admin.topicOffsets(t);
        assert.deepEqual(many.get(t)?.sort((a, b) => a.partition - b.partition), one.sort((a, b) => a.partition - b.partition), t);
      }
      assert.deepEqual(
        topics.map((t) => many.get(t)?.reduce((n, p) => n + Number(p.high), 0)),
        [1, 4, 7, 10],
      );
      assert.deepEqual(await admin.topicsOffsets([missing]), new Map());
    } finally {
      await counted.close();
    }
  });
});

describe('kafka gateway time index', () => {
  it('finds the first offset at or after a timestamp', { timeout: 60_000 }, async () => {
    const t = await topic('time', 1);
    const producer = await kafka.producer();
    const base = Date.now() - 60_000;
    await producer.send([{ topic: t, messages: [0, 10, 20, 30].map((s) => ({ value: String(s), timestamp: base + s * 1000 })) }]);
    const admin = await kafka.admin();
    assert.deepEqual(await admin.topicOffsetsAt(t, base + 15_000), [{ partition: 0, offset: '2' }]);
    assert.deepEqual(await admin.topicOffsetsAt(t, base), [{ partition: 0, offset: '0' }]);
    assert.deepEqual(await admin.topicOffsetsAt(t, base + 31_000), [{ partition: 0, offset: '4' }], 'high watermark when all are older');
    await producer.disconnect();
  });
});

describe('kafka gateway topic creation for many sales at once', () => {
  type ErrorClass = new (...args: unknown[]) => Error;
  const { KafkaJSAggregateError, KafkaJSCreateTopicError, KafkaJSNonRetriableError } = kafkajs as unknown as Record<'KafkaJSAggregateError' | 'KafkaJSCreateTopicError' | 'KafkaJSNonRetriableError', ErrorClass>;
  const protocolError = (type: string) => ({ type, code: 38, retriable: false, message: `broker refused: ${type}` });

  /**
   * A fake kafkajs admin that answers like kafkajs 2.2.4 over one broker: createTopics rejects the whole
   * request with a KafkaJSAggregateError of per-topic KafkaJSCreateTopicErrors (and returns false when
   * they are all TOPIC_ALREADY_EXISTS), its client-side checks refuse a request with a
   * KafkaJSNonRetriableError, and fetchTopicMetadata fails the whole request for one topic the broker
   * does not know yet. Every request is recorded.
   */
  function fakeBroker() {
    const f = {
      topics: new Set<string>(),
      /** Created by someone else after our listing: the create answers TOPIC_ALREADY_EXISTS. */
      existsOnCreate: new Set<string>(),
      /** Refused by the broker with this error type. */
      refuse: new Map<string, string>(),
      /** Created, but not yet in the broker's metadata (UNKNOWN_TOPIC_OR_PARTITION). */
      unknown: new Set<string>(),
      leaderless: new Set<string>(),
      createRequests: [] as string[][],
      metadataRequests: [] as string[][],
      probes: [] as string[],
      createGate: Promise.resolve(),
      createEntered: [] as (() => void)[],
      askedListeners: [] as { names: string[]; done: () => void }[],
    };
    /** Resolves once one metadata request asks about all of `names` together. */
    const asked = (names: string[]) => new Promise<void>((done) => f.askedListeners.push({ names, done }));
    const admin = {
      connect: async () => undefined,
      disconnect: async () => undefined,
      listTopics: async () => [...f.topics],
      async createTopics({ topics }: { topics: { topic: string; configEntries: { name: string; value: unknown }[] }[] }) {
        f.createRequests.push(topics.map((t) => t.topic));
        for (const e of f.createEntered.splice(0)) e();
        await f.createGate;
        for (const { topic, configEntries } of topics) {
          if (configEntries.some((c) => typeof c.value !== 'string')) {
            throw new KafkaJSNonRetriableError(`Invalid configEntries for topic "${topic}". Entry 0 must have a valid "value" property`);
          }
        }
        const errors: Error[] = [];
        for (const { topic } of topics) {
          const refused = f.refuse.get(topic);
          if (refused) errors.push(new KafkaJSCreateTopicError(protocolError(refused), topic));
          else if (f.topics.has(topic) || f.existsOnCreate.has(topic)) {
            f.topics.add(topic);
            errors.push(new KafkaJSCreateTopicError(protocolError('TOPIC_ALREADY_EXISTS'), topic));
          } else f.topics.add(topic);
        }
        if (errors.length === 0) return true;
        if (errors.every((e) => (e as { type?: string }).type === 'TOPIC_ALREADY_EXISTS')) return false;
        throw new KafkaJSAggregateError('Topic creation errors', errors);
      },
      async fetchTopicMetadata({ topics }: { topics: string[] }) {
        f.metadataRequests.push([...topics]);
        f.askedListeners = f.askedListeners.filter((l) => (l.names.every((n) => topics.includes(n)) ? (l.done(), false) : true));
        if (topics.some((t) => f.unknown.has(t))) throw Object.assign(new Error('This server does not host this topic-partition'), { name: 'KafkaJSProtocolError', type: 'UNKNOWN_TOPIC_OR_PARTITION' });
        return { topics: topics.filter((t) => f.topics.has(t)).map((name) => ({ name, partitions: [{ partitionId: 0, leader: f.leaderless.has(name) ? -1 : 1 }] })) };
      },
      async fetchTopicOffsets(topic: string) {
        f.probes.push(topic);
        return [{ partition: 0, offset: '0', high: '0', low: '0' }];
      },
    };
    return { f, asked, admin };
  }
  const saleTopics = (sale: string, n = 4) => Array.from({ length: n }, (_, i) => ({ topic: `${sale}.t${i}`, partitions: 3, replicationFactor: 1 }));
  const settled = <T>(p: Promise<T>) => {
    const s = { done: false };
    p.then(() => (s.done = true), () => (s.done = true));
    return s;
  };

  it('sends one CreateTopics request for concurrent callers and polls their leaders together', { timeout: 30_000 }, async () => {
    const { f, admin: fake } = fakeBroker();
    const gw = createKafkaGateway({ brokers: ['127.0.0.1:1'], clientId: 'fake', logger, client: () => ({ admin: () => fake }) as never });
    const admin = await gw.admin();
    const sales = Array.from({ length: 8 }, (_, i) => saleTopics(`s${i}`));
    await Promise.all(sales.map((s) => admin.createTopics(s)));
    assert.ok(f.createRequests.length < 8, `8 concurrent callers, ${f.createRequests.length} CreateTopics requests`);
    const all = sales.flat().map((t) => t.topic).sort();
    assert.deepEqual(f.createRequests.flat().sort(), all, 'every topic asked for once');
    assert.ok(f.metadataRequests.length < 8, `8 callers waiting for leaders, ${f.metadataRequests.length} metadata requests`);
    assert.deepEqual([...f.probes].sort(), all, 'each new topic probed for offsets once');

    // Callers that come while a request is in flight go together in the next one.
    let open!: () => void;
    f.createGate = new Promise<void>((r) => (open = r));
    const entered = new Promise<void>((r) => f.createEntered.push(r));
    const first = admin.createTopics(saleTopics('w0'));
    await entered;
    const rest = Array.from({ length: 5 }, (_, i) => admin.createTopics(saleTopics(`w${i + 1}`)));
    const second = new Promise<void>((r) => f.createEntered.push(r));
    open();
    await second;
    await Promise.all([first, ...rest]);
    assert.deepEqual(f.createRequests.slice(-2).map((r) => r.length), [4, 20], 'the first caller alone, then the five that came meanwhile');

    // Bounded: 60 sales of 4 topics go in requests of at most 200 topics.
    const before = f.createRequests.length;
    await Promise.all(Array.from({ length: 60 }, (_, i) => admin.createTopics(saleTopics(`b${i}`))));
    const big = f.createRequests.slice(before);
    assert.ok(big.length >= 2 && big.length < 60, `${big.length} requests for 60 callers`);
    assert.ok(big.every((r) => r.length <= 200), 'no request above 200 topics');
    assert.equal(big.flat().length, 240);
    await gw.close();
  });

  it('reports a topic the broker refused to its own caller only; the request\'s other callers succeed', { timeout: 30_000 }, async () => {
    const { f, admin: fake } = fakeBroker();
    const gw = createKafkaGateway({ brokers: ['127.0.0.1:1'], clientId: 'fake', logger, client: () => ({ admin: () => fake }) as never });
    const admin = await gw.admin();
    f.refuse.set('bad.t1', 'INVALID_REPLICATION_FACTOR');
    f.refuse.set('worse.t0', 'INVALID_CONFIG');
    f.refuse.set('worse.t2', 'POLICY_VIOLATION');
    for (const t of saleTopics('taken')) f.existsOnCreate.add(t.topic);
    const [good, bad, worse, taken] = await Promise.allSettled(['good', 'bad', 'worse', 'taken'].map((s) => admin.createTopics(saleTopics(s))));
    assert.equal(f.createRequests.length, 1, 'the four callers shared one request');
    assert.equal(good?.status, 'fulfilled');
    assert.equal(taken?.status, 'fulfilled', 'TOPIC_ALREADY_EXISTS is success');
    assert.equal(bad?.status, 'rejected');
    const badErr = (bad as PromiseRejectedResult).reason as { type?: string; topic?: string };
    assert.equal(badErr.type, 'INVALID_REPLICATION_FACTOR');
    assert.equal(badErr.topic, 'bad.t1');
    assert.equal(worse?.status, 'rejected');
    const worseErr = (worse as PromiseRejectedResult).reason as Error & { errors?: unknown[] };
    assert.equal(worseErr.errors?.length, 2, 'both of its refused topics, and no other caller\'s');
    assert.match(worseErr.message, /worse\.t0: .*INVALID_CONFIG.*worse\.t2: .*POLICY_VIOLATION/);
    assert.doesNotMatch(worseErr.message, /bad\.t1/);
    await gw.close();
  });

  it('asks again caller by caller when a shared request fails for no named topic', { timeout: 30_000 }, async () => {
    const { f, admin: fake } = fakeBroker();
    const gw = createKafkaGateway({ brokers: ['127.0.0.1:1'], clientId: 'fake', logger, client: () => ({ admin: () => fake }) as never });
    const admin = await gw.admin();
    // A setting of the wrong type (from a hand-written spec) makes kafkajs refuse the whole request.
    const poisoned = [{ topic: 'poison.t0', partitions: 1, replicationFactor: 1, configs: { 'retention.ms': 1000 as unknown as string } }];
    const [good, poison] = await Promise.allSettled([admin.createTopics(saleTopics('good')), admin.createTopics(poisoned)]);
    assert.equal(good?.status, 'fulfilled');
    assert.equal(poison?.status, 'rejected');
    assert.match(String((poison as PromiseRejectedResult).reason), /Invalid configEntries for topic "poison\.t0"/);
    assert.equal(f.createRequests.length, 3, 'the shared request, then one per caller');
    assert.deepEqual(f.createRequests[0]?.length, 5);
    assert.ok(saleTopics('good').every((t) => f.topics.has(t.topic)));
    await gw.close();
  });

  it('gives each caller waiting for leaders its own deadline', { timeout: 30_000 }, async () => {
    const { f, asked, admin: fake } = fakeBroker();
    let clock = 1_000_000;
    const gw = createKafkaGateway({ brokers: ['127.0.0.1:1'], clientId: 'fake', logger, now: () => clock, client: () => ({ admin: () => fake }) as never });
    const admin = await gw.admin();
    f.leaderless.add('a.t0');
    f.leaderless.add('c.t0');
    const a = admin.createTopics(saleTopics('a', 1));
    const aState = settled(a);
    await asked(['a.t0']);
    // A caller whose topic is ready is answered while another still waits.
    await admin.createTopics(saleTopics('b', 1));
    assert.equal(aState.done, false);
    clock += 30_000;
    const c = admin.createTopics(saleTopics('c', 1));
    const cState = settled(c);
    await asked(['a.t0', 'c.t0']);
    clock += 30_001;
    await assert.rejects(a, /topics a\.t0 have no leader 60000 ms after creation/);
    assert.equal(cState.done, false, 'the later caller keeps its own deadline');
    f.leaderless.delete('c.t0');
    await c;
    await gw.close();
  });

  it('does not hold a caller whose topics are known while another request\'s topics are not yet', { timeout: 30_000 }, async () => {
    const { f, asked, admin: fake } = fakeBroker();
    const gw = createKafkaGateway({ brokers: ['127.0.0.1:1'], clientId: 'fake', logger, client: () => ({ admin: () => fake }) as never });
    const admin = await gw.admin();
    f.unknown.add('y.t0');
    const y = admin.createTopics(saleTopics('y', 1));
    const yState = settled(y);
    await asked(['y.t0']);
    await admin.createTopics(saleTopics('x', 1));
    assert.equal(yState.done, false);
    f.unknown.delete('y.t0');
    await y;
    await gw.close();
  });
});
