// Issue 13, scenario 1: a SKU (in a new timeout bucket) is added while the api and order-writer
// Deployments roll out independently. An api process that already has the new spec accepts an
// order for the new SKU; the order-writer process still runs the old spec, which knows neither the
// SKU nor its bucket. The order must be written UNPAID with the due time the API gave it, closed by
// the new bucket's closer when due, its unit given back once, and nothing dead-lettered or reaped.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { eventually, testConfig, uniqueName } from './support/infra.ts';
import { http, saleDoc } from './support/order-path.ts';
import { useSale } from './support/scenarios.ts';

const config = testConfig();
const namespace = uniqueName('rollout');
const oldSpec = {
  skus: [{ id: 'old', stock: 10, timeoutBucket: 'fast' }],
  timeoutBuckets: [{ name: 'fast', delay: '2s' }],
  kafka: { partitions: 1, replicationFactor: 1 },
};
const newSpec = {
  ...oldSpec,
  skus: [...oldSpec.skus, { id: 'fresh', stock: 5, timeoutBucket: 'quick' }],
  timeoutBuckets: [...oldSpec.timeoutBuckets, { name: 'quick', delay: '1s' }],
};
const oldSale = saleDoc(namespace, oldSpec);
const newSale = saleDoc(namespace, newSpec);
// The operator's order: topics (incl. the new bucket's delay topic) and stock before any workload.
const fixture = useSale(newSale, { config });
const { workers } = fixture;

it('an order writer that does not know a new SKU yet writes its order with the due time the API fixed; it closes on time, nothing dead-lettered or reaped', { timeout: 180_000 }, async () => {
  const { kafka, redis, db, ctx } = fixture;
  const writer = await workers.start('order-writer', oldSale, config, { label: 'writer(old spec)' });
  const api = await workers.start('api', newSale, config, { label: 'api(new spec)' });
  await workers.start('timeout-closer', newSale, config, { args: ['--bucket', 'quick'], label: 'closer(quick)' });

  const placed = await http('POST', `${api.url}/v1/sales/sale/orders`, { userId: 'u-1', skuId: 'fresh' });
  assert.equal(placed.status, 202, placed.text);
  const orderId = placed.body.orderId as string;
  const known = await http('POST', `${api.url}/v1/sales/sale/orders`, { userId: 'u-1', skuId: 'old' });
  assert.equal(known.status, 202, known.text);

  const row = await eventually(async () => {
    const [rows] = await db.query('SELECT status, created_at, due_at FROM orders WHERE order_id = ?', [orderId]);
    return (rows as { status: string; created_at: Date; due_at: Date }[])[0];
  }, { timeoutMs: 60_000, what: 'the new SKU order in MySQL' });
  assert.equal(row.due_at.getTime() - row.created_at.getTime(), 1000, "due time from the new bucket's delay (1s), fixed by the API");

  const closed = await eventually(async () => {
    const [rows] = await db.query("SELECT status, due_at, closed_at FROM orders WHERE order_id = ? AND status = 'CLOSED'", [orderId]);
    return (rows as { status: string; due_at: Date; closed_at: Date }[])[0];
  }, { timeoutMs: 60_000, what: 'the new SKU order closed by its timeout' });
  assert.ok(closed.closed_at.getTime() >= closed.due_at.getTime(), 'never closed early');
  await eventually(async () => (await ctx.stock.level('fresh'))?.remaining === 5, { what: 'the unit back in stock' });
  assert.equal(await redis.sismember(ctx.names.redis.sku('fresh').released, orderId), 1);
  assert.equal(await redis.hlen(ctx.names.redis.sku('fresh').holdings), 0, 'the user slot freed');

  // Nothing was dead-lettered, and the writer claimed the reservation (so the reaper has nothing to return).
  const admin = await kafka.admin();
  const dlq = await admin.topicOffsets(ctx.names.topics.deadLetter);
  assert.ok(dlq.every((p) => p.high === p.low), `dead-letter topic empty (${JSON.stringify(dlq)})`);
  assert.deepEqual(await ctx.stock.inFlight('fresh'), [], 'the reservation was claimed by the writer');
  const metrics = (await http('GET', `${writer.url}/metrics`)).text;
  assert.doesNotMatch(metrics, /flashsale_dead_letters_total\{[^}]*\} [1-9]/);
  assert.doesNotMatch(metrics, /flashsale_reservations_reaped_total\{[^}]*\} [1-9]/);
});
