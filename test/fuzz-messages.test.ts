// Fuzzing of the Kafka message parsers (controller/dataplane/messages.ts) and of the workers that
// use them. Pure properties (fast-check): whatever the bytes, a parser returns a well-formed message
// or throws MalformedMessageError — never anything else, which the workers would not catch and
// which would then block the partition; a valid message survives a round trip; a dead letter is
// built from any bytes. Then the real order writer, timeout closer and retry worker of a real sale
// (real Kafka, Redis, MariaDB) get generated poison — random bytes, wrong types, huge fields,
// missing fields — on the orders topic, the delay topic and the retry topic: every poison message
// ends in the dead-letter topic with a reason and its original bytes, and a valid message produced
// after the poison on the same partition is still handled. FUZZ_SEED replays a run.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import {
  codePoints, deadLetter, MalformedMessageError, parseOrderMessage, parseRetryMessage, parseTimeoutMessage,
  type DeadLetter, type OrderMessage, type RetryMessage, type TimeoutMessage,
} from '../controller/dataplane/messages.ts';
import { orderIdGenerator } from '../controller/dataplane/order-id.ts';
import { OrderWriter } from '../controller/dataplane/order-writer.ts';
import { saleContext } from '../controller/dataplane/sale-context.ts';
import { bucketDelays, startTimeoutWorkers } from '../controller/dataplane/timeout-closer-main.ts';
import type { OutgoingMessage } from '../controller/infra/kafka.ts';
import { eventually, logger } from './support/infra.ts';
import { readTopic, saleFixture, type SaleFixture } from './support/timeouts.ts';

const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : Math.floor(Math.random() * 2 ** 31);
const RUNS = Number(process.env.FUZZ_RUNS ?? 3000);

// ---- generators ---------------------------------------------------------------------------------

const uuid = fc.uuid({ version: 7 });
/** Ids within the parser's limits, counted in code points (emoji and other astral characters too). */
const id = (max: number) => fc.string({ unit: fc.oneof(fc.constantFrom('a', 'Z', '-', ' ', 'é'), fc.constantFrom('😀', '𝄞', '中')), minLength: 1, maxLength: max });
const epoch = fc.integer({ min: 0, max: 8_000_000_000_000 });
const validOrder: fc.Arbitrary<OrderMessage> = fc.record({
  v: fc.constant(1 as const), orderId: uuid, sale: id(128), skuId: id(64), userId: id(128), quantity: fc.integer({ min: 1, max: 2 ** 31 }), createdAt: epoch,
}, { noNullPrototype: true });
const validTimeout: fc.Arbitrary<TimeoutMessage> = fc.tuple(validOrder, epoch, fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$/)).map(([o, dueAt, bucket]) => ({ ...o, dueAt, bucket }));
const validRetry: fc.Arbitrary<RetryMessage> = fc.tuple(validTimeout, fc.integer({ min: 1, max: 100 }), epoch, fc.string()).map(([t, attempt, notBefore, error]) => ({ ...t, attempt, notBefore, error }));

const FIELDS = ['v', 'orderId', 'sale', 'skuId', 'userId', 'quantity', 'createdAt', 'dueAt', 'bucket', 'attempt', 'notBefore', 'error'];
const wrongValue = fc.oneof(
  fc.anything({ maxDepth: 2 }),
  fc.constantFrom('', null, -1, 0, 1.5, 2 ** 53, -0, 1e308, '1', true, [], {}, '\ud800', 'x'.repeat(129), '😀'.repeat(129)),
  fc.integer({ min: 1000, max: 300_000 }).map((n) => 'x'.repeat(n)),
);
/** A valid message with one field broken: wrong type, out of range, huge, or missing. */
function mutated<T extends object>(valid: fc.Arbitrary<T>): fc.Arbitrary<string> {
  return fc.tuple(valid, fc.constantFrom(...FIELDS), fc.option(wrongValue, { nil: undefined, freq: 5 })).map(([m, field, value]) => {
    const o: Record<string, unknown> = { ...(m as Record<string, unknown>) };
    if (value === undefined) delete o[field];
    else o[field] = value;
    return JSON.stringify(o);
  });
}
/** Anything a topic may hold: bytes, text, JSON of any shape, valid messages with one field broken. */
function anyValue<T extends object>(valid: fc.Arbitrary<T>): fc.Arbitrary<Buffer> {
  return fc.oneof(
    fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
    fc.string({ unit: 'binary', maxLength: 200 }).map((s) => Buffer.from(s, 'utf8')),
    fc.jsonValue({ maxDepth: 3 }).map((v) => Buffer.from(JSON.stringify(v) ?? 'undefined')),
    { weight: 4, arbitrary: mutated(valid).map((s) => Buffer.from(s, 'utf8')) },
    valid.map((m) => Buffer.from(JSON.stringify(m).slice(0, -1))),
    fc.constantFrom('', ' ', 'null', '[]', '{}', '"x"', '1e999', '['.repeat(100_000) + ']'.repeat(100_000)).map((s) => Buffer.from(s)),
  );
}

const parsers = [
  { name: 'parseOrderMessage', parse: parseOrderMessage, valid: validOrder as fc.Arbitrary<object> },
  { name: 'parseTimeoutMessage', parse: parseTimeoutMessage, valid: validTimeout as fc.Arbitrary<object> },
  { name: 'parseRetryMessage', parse: parseRetryMessage, valid: validRetry as fc.Arbitrary<object> },
];

/** What every parsed message guarantees (the workers and MySQL rely on it). */
function wellFormed(m: OrderMessage): void {
  const s = (v: unknown, max: number) => typeof v === 'string' && v.length > 0 && codePoints(v) <= max;
  const n = (v: unknown, min: number) => typeof v === 'number' && Number.isSafeInteger(v) && v >= min;
  assert.equal(m.v, 1);
  assert.ok(s(m.orderId, 36) && s(m.sale, 128) && s(m.skuId, 64) && s(m.userId, 128), JSON.stringify(m).slice(0, 300));
  assert.ok(n(m.quantity, 1) && n(m.createdAt, 0), JSON.stringify(m).slice(0, 300));
}

describe('the message parsers (pure properties)', () => {
  for (const { name, parse, valid } of parsers) {
    it(`${name}: any bytes give a well-formed message or MalformedMessageError, nothing else (seed ${SEED})`, () => {
      let refused = 0;
      fc.assert(
        fc.property(anyValue(valid), (raw) => {
          let parsed: OrderMessage;
          try {
            parsed = parse(raw);
          } catch (err) {
            assert.ok(err instanceof MalformedMessageError, `${name} threw ${String(err)} for ${raw.toString('utf8').slice(0, 200)}`);
            assert.ok(err.message.length > 0);
            refused++;
            return;
          }
          wellFormed(parsed);
        }),
        { seed: SEED, numRuns: RUNS },
      );
      assert.ok(refused > RUNS / 2, `the generators are mostly poison (${refused} of ${RUNS} refused)`);
    });

    it(`${name}: a valid message survives JSON and the parser unchanged`, () => {
      fc.assert(fc.property(valid, (m) => assert.deepEqual(parse(JSON.stringify(m)), m)), { seed: SEED, numRuns: RUNS });
    });
  }

  it('parses an id of 128 characters outside the BMP (256 UTF-16 units), refuses 129', () => {
    const m = { v: 1, orderId: orderIdGenerator()(), sale: 'ns/sale', skuId: 'sku', userId: '😀'.repeat(128), quantity: 1, createdAt: 1 };
    assert.equal(parseOrderMessage(JSON.stringify(m)).userId, m.userId);
    assert.throws(() => parseOrderMessage(JSON.stringify({ ...m, userId: '😀'.repeat(129) })), MalformedMessageError);
  });

  it('a dead letter is built from any bytes and gives the original back (or its first bytes, marked truncated)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 500 }).map((a) => Buffer.from(a)), fc.string({ unit: 'binary' }).map((s) => Buffer.from(s))), fc.option(fc.string(), { nil: null }), (value, key) => {
        const letter = deadLetter('orders', 'reason', { topic: 't', partition: 0, offset: '7', key, value }, 1);
        const back = JSON.parse(JSON.stringify(letter)) as DeadLetter;
        assert.equal(back.reason, 'reason');
        assert.equal(back.key, key);
        assert.ok(originalMatches(back, value), 'the original bytes');
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });
});

/** The dead letter's value decodes to the original bytes, or to a prefix of them when truncated. */
function originalMatches(letter: DeadLetter, original: Buffer): boolean {
  if (letter.value === null) return original.length === 0;
  const decoded = Buffer.from(letter.value, letter.valueEncoding === 'base64' ? 'base64' : 'utf8');
  const truncated = (letter as DeadLetter & { truncated?: boolean }).truncated === true;
  return truncated ? decoded.length < original.length && original.subarray(0, decoded.length).equals(decoded) : decoded.equals(original);
}

describe('the workers under poison (real order writer, timeout closer and retry worker)', () => {
  let f: SaleFixture;
  let writer: OrderWriter;
  let workers: { stop(): Promise<void> };
  const POISON_PER_TOPIC = Number(process.env.FUZZ_POISON ?? 40);

  before(async () => {
    // One partition per topic: the valid message produced after the poison is behind it.
    f = await saleFixture({ skus: [{ id: 'sku', stock: 100, timeoutBucket: 'fast' }], buckets: [{ name: 'fast', delay: '1h' }], partitions: 1 });
    writer = new OrderWriter({ ctx: saleContext(f.sale, f.redis), kafka: f.kafka, pool: f.pool, registry: f.registry, logger });
    await writer.start();
    workers = await startTimeoutWorkers({ names: f.names, stock: f.stock, kafka: f.kafka, pool: f.pool, registry: f.registry, logger, buckets: ['fast'], delays: bucketDelays(f.sale) });
  });

  after(async () => {
    await workers?.stop();
    await writer?.stop();
    await f?.cleanup();
  });

  it(`every poison message ends in the dead-letter topic with a reason; each worker goes on (seed ${SEED})`, { timeout: 120_000 }, async (t) => {
    t.diagnostic(`FUZZ_SEED=${SEED}`);
    const topics = [
      { source: 'retry' as const, topic: f.names.topics.retry, parse: parseRetryMessage, valid: validRetry as fc.Arbitrary<object> },
      { source: 'timeouts' as const, topic: f.names.topics.delay('fast'), parse: parseTimeoutMessage, valid: validTimeout as fc.Arbitrary<object> },
      { source: 'orders' as const, topic: f.names.topics.orders, parse: parseOrderMessage, valid: validOrder as fc.Arbitrary<object> },
    ];
    const poison = new Map<string, { source: string; topic: string; value: Buffer }>();
    for (const [i, tp] of topics.entries()) {
      // Only what the parser refuses: a message that parses is not poison (the worker would act on it).
      const refused = anyValue(tp.valid).filter((raw) => {
        try {
          tp.parse(raw);
          return false;
        } catch {
          return true;
        }
      });
      const values = fc.sample(refused, { seed: SEED + i, numRuns: POISON_PER_TOPIC });
      values.push(Buffer.from(JSON.stringify({ v: 1, orderId: 'x', userId: 'u'.repeat(400_000) })));
      const messages: OutgoingMessage[] = values.map((value, j) => {
        const key = `poison-${tp.source}-${j}`;
        poison.set(key, { source: tp.source, topic: tp.topic, value });
        return { key, value };
      });
      // The poison, then one valid message on the same (only) partition.
      let valid: OutgoingMessage;
      let done: () => Promise<boolean>;
      if (tp.source === 'orders') {
        // A reserved order not yet in MySQL: what the API hands to Kafka.
        const orderId = orderIdGenerator()();
        const now = Date.now();
        assert.equal((await f.stock.reserve({ orderId, userId: 'buyer-after-poison', skuId: 'sku', quantity: 1, reservedAt: now }, 5)).outcome, 'reserved');
        valid = { key: 'sku', value: JSON.stringify({ v: 1, orderId, sale: f.names.key, skuId: 'sku', userId: 'buyer-after-poison', quantity: 1, createdAt: now } satisfies OrderMessage) };
        done = async () => (await f.count('SELECT COUNT(*) FROM orders WHERE order_id = ? AND status = ?', [orderId, 'UNPAID'])) === 1;
      } else {
        // An UNPAID order already due: what the writer leaves in MySQL and Redis.
        const [order] = await f.place('sku', 1, { dueAt: Date.now() - 1, produce: false });
        const timeout: TimeoutMessage = { v: 1, orderId: order!.orderId, sale: f.names.key, skuId: 'sku', userId: order!.userId, quantity: 1, createdAt: order!.createdAt, dueAt: order!.dueAt, bucket: 'fast' };
        valid = { key: order!.orderId, value: JSON.stringify(tp.source === 'retry' ? ({ ...timeout, attempt: 1, notBefore: Date.now() - 1, error: 'earlier failure' } satisfies RetryMessage) : timeout) };
        done = async () => (await f.count('SELECT COUNT(*) FROM orders WHERE order_id = ? AND status = ?', [order!.orderId, 'CLOSED'])) === 1;
      }
      await f.producer.send([{ topic: tp.topic, messages: [...messages, valid] }]);
      await eventually(done, { timeoutMs: 60_000, what: `the valid ${tp.source} message after ${messages.length} poison messages handled` });
    }

    // Exactly one dead letter per poison message, with its reason, source, topic and original bytes.
    const letters = await readTopic(f.kafka, f.names.topics.deadLetter, poison.size, 60_000);
    const admin = await f.kafka.admin();
    const inTopic = (await admin.topicOffsets(f.names.topics.deadLetter)).reduce((n, p) => n + Number(p.high) - Number(p.low), 0);
    assert.equal(inTopic, poison.size, 'one dead letter per poison message, no more');
    const seen = new Set<string>();
    for (const m of letters) {
      const letter = JSON.parse(m.value!.toString('utf8')) as DeadLetter;
      const original = poison.get(letter.key ?? '');
      assert.ok(original, `dead letter for an unknown message: ${JSON.stringify(letter).slice(0, 300)}`);
      assert.ok(!seen.has(letter.key!), `two dead letters for ${letter.key}`);
      seen.add(letter.key!);
      assert.equal(letter.source, original.source);
      assert.equal(letter.topic, original.topic);
      assert.ok(typeof letter.reason === 'string' && letter.reason.length > 0, `a reason for ${letter.key}`);
      assert.ok(originalMatches(letter, original.value), `the original bytes of ${letter.key}`);
    }
    assert.equal(seen.size, poison.size);
    // Nothing of the poison reached MySQL: only the three valid orders are there.
    assert.equal(await f.count('SELECT COUNT(*) FROM orders WHERE sale = ?', [f.names.key]), 3);
  });
});
