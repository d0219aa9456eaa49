// Issue 13, scenario 7: a message with a createdAt far in the future must not hold its delay
// partition for ever. Real order-writer and timeout-closer processes, one partition per topic (so a
// held head would block everything behind it): an order stamped a year ahead (an API with a broken
// clock) is written as accepted, but its timeout message is dead-lettered as poison by the closer,
// and an ordinary order behind it in the same partition closes on time. The same for a retry message
// whose notBefore is a year ahead. The far-future order is never closed early.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { DeadLetter, OrderMessage, RetryMessage } from '../controller/dataplane/messages.ts';
import { orderIdGenerator } from '../controller/dataplane/order-id.ts';
import { eventually, testConfig, uniqueName } from './support/infra.ts';
import { saleDoc } from './support/order-path.ts';
import { useSale } from './support/scenarios.ts';
import { readTopic } from './support/timeouts.ts';

const config = testConfig();
const sale = saleDoc(uniqueName('future'), {
  skus: [{ id: 'sku', stock: 10, timeoutBucket: 'fast' }],
  timeoutBuckets: [{ name: 'fast', delay: '2s' }],
  kafka: { partitions: 1, replicationFactor: 1 },
});
const fixture = useSale(sale, { config, producer: true });
const { workers } = fixture;
const YEAR = 365 * 24 * 3_600_000;

/** What the API does: reserve in Redis, then hand the order to Kafka, with the given clock reading. */
async function accept(userId: string, createdAt: number): Promise<OrderMessage> {
  const { ctx, producer } = fixture;
  const orderId = orderIdGenerator()();
  const r = await ctx.stock.reserve({ orderId, userId, skuId: 'sku', quantity: 1, reservedAt: createdAt }, 1);
  assert.equal(r.outcome, 'reserved');
  const m: OrderMessage = { v: 1, orderId, sale: ctx.key, skuId: 'sku', userId, quantity: 1, createdAt, bucket: 'fast', dueAt: createdAt + 2000 };
  await producer.send([{ topic: ctx.names.topics.orders, messages: [{ key: 'sku', value: JSON.stringify(m), timestamp: createdAt }] }]);
  return m;
}

/** An order already in MySQL (reserved, claimed, written UNPAID) whose timeout message was lost. */
async function written(userId: string, createdAt: number): Promise<OrderMessage> {
  const { ctx, db } = fixture;
  const orderId = orderIdGenerator()();
  assert.equal((await ctx.stock.reserve({ orderId, userId, skuId: 'sku', quantity: 1, reservedAt: createdAt }, 1)).outcome, 'reserved');
  assert.deepEqual(await ctx.stock.claim('sku', [orderId]), ['claimed']);
  await db.query("INSERT INTO orders (order_id, sale, sku_id, user_id, quantity, status, created_at, due_at) VALUES (?, ?, 'sku', ?, 1, 'UNPAID', ?, ?)", [orderId, ctx.key, userId, new Date(createdAt), new Date(createdAt + 2000)]);
  return { v: 1, orderId, sale: ctx.key, skuId: 'sku', userId, quantity: 1, createdAt, bucket: 'fast', dueAt: createdAt + 2000 };
}

async function row(orderId: string) {
  const [rows] = await fixture.db.query('SELECT status, due_at, closed_at FROM orders WHERE order_id = ?', [orderId]);
  return (rows as { status: string; due_at: Date; closed_at: Date | null }[])[0];
}

it('a timeout or retry message due far in the future is dead-lettered as poison; the orders behind it close on time, none early', { timeout: 180_000 }, async () => {
  const { kafka, ctx, producer } = fixture;
  await workers.start('order-writer', sale, config);
  await workers.start('timeout-closer', sale, config, { args: ['--bucket', 'fast'] });

  const future = await accept('broken-clock', Date.now() + YEAR);
  const normal = await accept('normal', Date.now());
  // A retry message a year ahead in the (one-partition) retry topic, then an ordinary failed close
  // of an order that has no timeout message: only the retry worker can close it (no compensator runs).
  const retried = await written('retried', Date.now() - 5000);
  const { bucket: _b, dueAt: _d, ...base } = retried;
  const poisonRetry: RetryMessage = { ...base, orderId: orderIdGenerator()(), dueAt: Date.now(), bucket: 'fast', attempt: 1, notBefore: Date.now() + YEAR, error: 'test' };
  const realRetry: RetryMessage = { ...base, dueAt: retried.dueAt as number, bucket: 'fast', attempt: 1, notBefore: Date.now(), error: 'test' };
  await producer.send([{ topic: ctx.names.topics.retry, messages: [poisonRetry, realRetry].map((m) => ({ key: m.orderId, value: JSON.stringify(m) })) }]);

  // The order behind the far-future one closes once due (the partition was not held).
  for (const m of [normal, retried]) {
    const closed = await eventually(async () => {
      const r = await row(m.orderId);
      return r?.status === 'CLOSED' ? r : undefined;
    }, { timeoutMs: 60_000, what: `${m.userId}'s order closed` });
    assert.ok((closed.closed_at as Date).getTime() >= closed.due_at.getTime(), 'never closed early');
  }
  // The far-future order was written as accepted, and is not closed before its due time.
  const f = await row(future.orderId);
  assert.equal(f?.status, 'UNPAID');
  assert.equal(f?.due_at.getTime(), future.createdAt + 2000);

  const letters = (await readTopic(kafka, ctx.names.topics.deadLetter, 2, 60_000)).map((m) => JSON.parse(m.value?.toString('utf8') ?? '') as DeadLetter);
  const byOrder = new Map(letters.map((l) => [(JSON.parse(l.value ?? '{}') as { orderId?: string }).orderId, l]));
  const t = byOrder.get(future.orderId);
  assert.equal(t?.source, 'timeouts');
  assert.match(t?.reason ?? '', /more than the bucket's delay .* poison/);
  const r = byOrder.get(poisonRetry.orderId);
  assert.equal(r?.source, 'retry');
  assert.match(r?.reason ?? '', /beyond the longest backoff: poison/);
  assert.equal(letters.length, 2, 'nothing else dead-lettered');
});
