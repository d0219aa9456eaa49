// Issue 13, scenario 2: a backlog whose one batch of timeout messages exceeds the broker's
// message.max.bytes (one partition, 6,000 queued orders), and one oversized poison message whose
// dead letter (the original value wrapped in JSON) could never be produced. A real order-writer
// process must write every order, publish every timeout message (in produce requests under the
// topic's limit) and dead-letter the poison (trimmed, with the reason) without wedging the partition.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEAD_LETTER_VALUE_BYTES, type DeadLetter, type OrderMessage } from '../controller/dataplane/messages.ts';
import { orderIdGenerator } from '../controller/dataplane/order-id.ts';
import { ordersDrained } from '../controller/dataplane/provision.ts';
import { MessageTooLargeError, recordBytes, requestBudget, splitForLimits, type OutgoingMessage } from '../controller/infra/kafka.ts';
import { eventually, testConfig, uniqueName } from './support/infra.ts';
import { saleDoc } from './support/order-path.ts';
import { useSale } from './support/scenarios.ts';
import { readTopic } from './support/timeouts.ts';

describe('splitting produce requests (pure)', () => {
  const msg = (n: number): OutgoingMessage => ({ key: 'k', value: 'x'.repeat(n) });
  it('keeps each request of a topic within its budget and the order of its messages', () => {
    const a = Array.from({ length: 100 }, (_, i) => ({ key: String(i), value: 'a'.repeat(1000) }));
    const b = Array.from({ length: 10 }, (_, i) => ({ key: String(i), value: 'b'.repeat(100) }));
    const requests = splitForLimits([{ topic: 'A', messages: a }, { topic: 'B', messages: b }], (t) => (t === 'A' ? 10_000 : 1_000_000));
    assert.ok(requests.length >= 10);
    for (const r of requests) for (const t of r) assert.ok(t.messages.reduce((s, m) => s + recordBytes(m), 0) <= (t.topic === 'A' ? 10_000 : 1_000_000));
    assert.deepEqual(requests.flatMap((r) => r.filter((t) => t.topic === 'A').flatMap((t) => t.messages)), a);
    assert.deepEqual(requests.flatMap((r) => r.filter((t) => t.topic === 'B').flatMap((t) => t.messages)), b);
  });
  it('refuses a message that alone exceeds the budget, before anything is sent', () => {
    assert.throws(() => splitForLimits([{ topic: 'A', messages: [msg(10), msg(requestBudget(1_048_588))] }], () => requestBudget(1_048_588)), MessageTooLargeError);
  });
});

const config = testConfig();
const sale = saleDoc(uniqueName('limits'), {
  skus: [{ id: 'sku', stock: 10_000, timeoutBucket: 'long' }],
  timeoutBuckets: [{ name: 'long', delay: '30m' }],
  kafka: { partitions: 1, replicationFactor: 1 },
});
const N = 6000;
const fixture = useSale(sale, { config, producer: true });
const { workers } = fixture;

it(`a one-partition backlog of ${N} orders and an oversized poison message: every order written, every timeout published, the poison dead-lettered trimmed`, { timeout: 300_000 }, async () => {
  const { kafka, db, ctx, producer } = fixture;
  const nextId = orderIdGenerator();
  const now = Date.now();
  const orders: OrderMessage[] = Array.from({ length: N }, (_, i) => ({
    v: 1, orderId: nextId(), sale: ctx.key, skuId: 'sku', userId: `user-${i}-${'x'.repeat(100)}`, quantity: 1, createdAt: now, bucket: 'long', dueAt: now + 30 * 60_000,
  }));
  const reserved = await Promise.all(orders.map((o) => ctx.stock.reserve({ orderId: o.orderId, userId: o.userId, skuId: 'sku', quantity: 1, reservedAt: now }, 1)));
  assert.ok(reserved.every((r) => r.outcome === 'reserved'));
  // The backlog is queued before the writer starts, so its batches are as large as a fetch allows.
  const poison = Buffer.alloc(900_000, '"'); // every byte doubles when escaped into the dead letter's JSON
  // In sends of 500 (each well under the limit), so one fetch of the writer (1 MiB per partition)
  // holds thousands of orders, whose timeout messages (longer: key, due time) exceed 1 MiB together.
  const asMessages = (list: OrderMessage[]) => list.map((o) => ({ key: 'sku', value: JSON.stringify(o), timestamp: o.createdAt }));
  for (let i = 0; i < N; i += 500) {
    if (i === N / 2) await producer.send([{ topic: ctx.names.topics.orders, messages: [{ key: 'sku', value: poison }] }]);
    await producer.send([{ topic: ctx.names.topics.orders, messages: asMessages(orders.slice(i, i + 500)) }]);
  }

  await workers.start('order-writer', sale, config);
  const admin = await kafka.admin();
  await eventually(() => ordersDrained(admin, sale), { timeoutMs: 240_000, intervalMs: 500, what: 'the writer drained the orders topic (not wedged)' });

  const [rows] = await db.query("SELECT COUNT(*) AS n FROM orders WHERE sale = ? AND status = 'UNPAID'", [ctx.key]);
  assert.equal(Number((rows as { n: number }[])[0]?.n), N, 'every order written');
  const delay = await admin.topicOffsets(ctx.names.topics.delay('long'));
  assert.ok(delay.reduce((s, p) => s + Number(p.high), 0) >= N, 'a timeout message per order');

  const [letter] = (await readTopic(kafka, ctx.names.topics.deadLetter, 1, 60_000)).map((m) => JSON.parse(m.value?.toString('utf8') ?? '') as DeadLetter);
  assert.ok(letter);
  assert.equal(letter.source, 'orders');
  assert.match(letter.reason, /^not JSON/);
  assert.equal(letter.truncated, true);
  assert.equal(letter.valueBytes, poison.length);
  assert.equal(letter.value?.length, DEAD_LETTER_VALUE_BYTES);
  const dlq = await admin.topicOffsets(ctx.names.topics.deadLetter);
  assert.equal(dlq.reduce((s, p) => s + Number(p.high), 0), 1, 'one dead letter');
});
