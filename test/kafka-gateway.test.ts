// Contract of the Kafka gateway, against the real broker.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BatchingProducer, createKafkaGateway, type ConsumedMessage, type KafkaConsumer, type KafkaGateway } from '../controller/infra/kafka.ts';
import { deleteTopics, eventually, logger, testKafka, uniqueName } from './support/infra.ts';

const prefix = `gw.${uniqueName()}`;
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
    const batching = new BatchingProducer(producer, { lingerMs: 1, maxBatchMessages: 50 });
    const keys = ['sku-a', 'sku-b', 'sku-c'];
    await Promise.all(Array.from({ length: 300 }, (_, i) => batching.send(t, { key: keys[i % 3] as string, value: String(i) })));
    const { received, consumer } = collect(`${prefix}.g-keyed`, [t]);
    await eventually(() => received.length === 300, { what: '300 messages' });
    for (const key of keys) {
      const mine = received.filter((m) => m.key === key);
      assert.equal(new Set(mine.map((m) => m.partition)).size, 1, `${key} on one partition`);
      const values = mine.map((m) => Number(m.value?.toString()));
      assert.deepEqual(values, [...values].sort((a, b) => a - b), `${key} in order`);
      assert.equal(values.length, 100);
    }
    await consumer.stop();
    await batching.close();
    await producer.disconnect();
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

describe('kafka gateway admin at scale', () => {
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
