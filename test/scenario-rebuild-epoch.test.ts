// Two losses of a SKU in one epoch (found by the seeded chaos run of 2026-12-04). A rebuild starts
// the SKU's counter at the next multiple of 2^32 above the mark MySQL recorded (stock.ts
// rebuiltCounter). When Redis loses the SKU again before any claim of the new epoch was recorded —
// the writer was down while the API sold, and its claims then found the keys gone — the next rebuild
// must still start above that epoch: started at the same multiple, it would be below counters the API
// saw, the API would take it for a restore and fence it, and so every rebuild until some claim
// happened to be recorded (the chaos run: 503 for ~50 s). The rebuild records the epoch it starts.
// Real api and order-writer processes, Redis, Kafka and MariaDB.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { ensureStock, ordersDrained } from '../controller/dataplane/provision.ts';
import { readMarks } from '../controller/dataplane/restore-fence.ts';
import { eventually, testConfig, uniqueName } from './support/infra.ts';
import { http, saleDoc } from './support/order-path.ts';
import { useSale } from './support/scenarios.ts';

const config = testConfig();
const sale = saleDoc(uniqueName('epoch'), {
  skus: [{ id: 'x', stock: 50, timeoutBucket: 'long' }],
  timeoutBuckets: [{ name: 'long', delay: '30m' }],
});
const fixture = useSale(sale, { config });
const EPOCH = 2 ** 32;

it('a SKU lost twice in one epoch is rebuilt above every counter the API saw and sells again at once, without a fence', { timeout: 240_000 }, async () => {
  const { kafka, redis, db, ctx, workers } = fixture;
  const writer = await workers.start('order-writer', sale, config);
  const api = await workers.start('api', sale, config);
  const orders = `${api.url}/v1/sales/sale/orders`;
  const admin = await kafka.admin();
  const buy = async (userId: string) => (await http('POST', orders, { userId, skuId: 'x' })).status;
  const drained = () => eventually(() => ordersDrained(admin, sale), { timeoutMs: 60_000, what: 'the writer drained the orders topic' });
  const rebuild = async () => {
    await drained();
    return ensureStock(ctx.stock, db, sale, ctx.key, { ordersDrained: () => ordersDrained(admin, sale) });
  };
  const lose = () => redis.del(...Object.values(ctx.names.redis.sku('x')));
  const mark = async () => (await readMarks(db, ctx.key, ['x'])).get('x') ?? 0;

  // A sale the writer claims and records, in the epoch the SKU was seeded in.
  assert.equal(await buy('u-1'), 202);
  await drained();
  const first = await mark();
  assert.ok(first > 0, 'a mark recorded');
  const next = (Math.floor(first / EPOCH) + 1) * EPOCH;
  // Redis loses the SKU; the rebuild starts the next epoch.
  await lose();
  assert.deepEqual((await rebuild()).rebuilt, ['x']);
  // The writer is down while the API sells in the new epoch, then Redis loses the SKU again: the
  // restarted writer's claims find the keys gone, so no counter the API saw is recorded by a claim.
  await writer.stop();
  for (const u of ['u-2', 'u-3', 'u-4']) assert.equal(await buy(u), 202);
  const seen = await ctx.stock.seq('x');
  assert.ok(seen > next, `the API saw counters of the new epoch (${seen})`);
  await lose();
  await workers.start('order-writer', sale, config, { label: 'order-writer (restarted)' });
  assert.deepEqual((await rebuild()).rebuilt, ['x']);
  // The second rebuild starts an epoch above the first, so above what the API saw: no fence.
  assert.ok((await ctx.stock.seq('x')) > seen, `the rebuilt counter starts above what the API saw (${seen})`);
  assert.equal(await buy('u-5'), 202, 'sold at once, not taken for a restore');
  assert.notEqual(await ctx.stock.level('x'), null, 'not fenced');
  await drained();
  const [rows] = await db.query("SELECT COUNT(*) AS n FROM orders WHERE sale = ? AND status = 'UNPAID'", [ctx.key]);
  assert.equal(Number((rows as { n: number }[])[0]?.n), 5, 'every 202 order written once');
  assert.deepEqual(await ctx.stock.level('x'), { stock: 50, remaining: 45 });
});
