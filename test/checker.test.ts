// The invariant checker must pass on a consistent sale and name the offending ids of every kind of
// violation it knows (a checker that cannot fail is a defect).
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { checkInvariants, notQuiet, type AcknowledgedOrder } from './support/checker.ts';
import { trackedFixtures } from './support/timeouts.ts';

const fixture = trackedFixtures();

it('passes on a consistent sale, and reports each broken invariant with the offending ids', { timeout: 120_000 }, async () => {
  const f = await fixture({ skus: [{ id: 'a', stock: 10, timeoutBucket: 'b' }], buckets: [{ name: 'b', delay: '1h' }] });
  const now = Date.now();
  const placed = await f.place('a', 4, { dueAt: now + 3_600_000, createdAt: now, produce: false });
  const acknowledged = new Map<string, AcknowledgedOrder>(placed.map((o) => [o.orderId, { userId: o.userId, skuId: o.skuId, quantity: o.quantity }]));
  const [p0, p1, p2, p3] = placed.map((o) => o.orderId) as [string, string, string, string];
  await f.pool.query("UPDATE orders SET status = 'PAID' WHERE order_id = ?", [p0]);
  const base = { pool: f.pool, redis: f.redis, sale: f.sale, acknowledged, paid: new Set([p0]), deadLetters: [] };

  const ok = await checkInvariants(base);
  assert.deepEqual(ok.violations, []);
  assert.equal(ok.summary.rows, 4);
  assert.deepEqual(await notQuiet({ pool: f.pool, redis: f.redis, kafka: f.kafka, sale: f.sale, noInFlight: true }), []);

  // A lost 202 order, a payment that did not stick, an early close, a unit given back twice.
  acknowledged.set('00000000-0000-7000-8000-000000000001', { userId: 'ghost', skuId: 'a', quantity: 1 });
  await f.pool.query("UPDATE orders SET status = 'CLOSED', closed_at = ? WHERE order_id = ?", [new Date(now), p1]);
  await f.stock.releaseOrder({ orderId: p1, userId: placed[1]?.userId as string, skuId: 'a', quantity: 1 });
  await f.redis.incrby(f.names.redis.sku('a').stock, 1);
  const paid = new Set([p0, p2]);
  const bad = await checkInvariants({ ...base, paid });
  const text = bad.violations.join('\n');
  assert.match(text, /R1 lost 202 orders: 1 .*00000000-0000-7000-8000-000000000001/);
  assert.match(text, new RegExp(`R4 closed before due: ${p1}`));
  assert.match(text, /R5 a: Redis remaining 8 ≠ stock 10 − UNPAID\/PAID 3 − in flight 0 = 7/);
  assert.match(text, new RegExp(`R5 a: CLOSED orders whose release is not marked applied \\(settled_at NULL\\): ${p1}`));
  assert.match(text, new RegExp(`R6 .*${p2}=UNPAID`));

  // Oversell and a user over the limit, seen from MySQL.
  await f.pool.query('UPDATE orders SET user_id = ?, quantity = 5 WHERE order_id IN (?, ?)', [placed[3]?.userId, p2, p3]);
  const worse = (await checkInvariants({ ...base, acknowledged: new Map() })).violations.join('\n');
  assert.match(worse, /R2 oversold a: 11 units UNPAID\/PAID > stock 10/);
  assert.match(worse, new RegExp(`R3 a: users above the limit 5: ${placed[3]?.userId}=10 \\(${p2} ${p3}\\)|R3 a: users above the limit 5: ${placed[3]?.userId}=10 \\(${p3} ${p2}\\)`));

  // A dead-lettered acknowledged order that never reached MySQL.
  const dl = await checkInvariants({ ...base, deadLetters: [{ v: 1, source: 'orders', reason: 'unknown SKU', topic: 't', partition: 0, offset: '7', key: 'a', value: JSON.stringify({ orderId: '00000000-0000-7000-8000-000000000001' }), valueEncoding: 'utf8', valueBytes: 10, truncated: false, at: now }] });
  assert.match(dl.violations.join('\n'), /R7 dead letters not accounted for: orders@t\/0\/7 "unknown SKU": acknowledged order 00000000-0000-7000-8000-000000000001/);
});
