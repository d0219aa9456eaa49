// Issue 13, scenario 3: Redis restored from an older snapshot (DUMP/RESTORE of a SKU's keys taken
// earlier: keys present, stale). Real api, order-writer, timeout-closer and compensator processes.
//  a) Units sold after the snapshot come back to stock with the restore: the next reserve must not
//     sell them again (oversell). The API sees the SKU's counter below one it saw, fences the SKU
//     (503), and the rebuild from MySQL restores the truth.
//  b) Releases applied after the snapshot are undone by the restore: the compensator sees the
//     counter below the mark MySQL recorded, fences the SKU, and the rebuild gives the units back
//     once (not lost, not twice).
//  c) The same as a), but the api process that sold the unit is replaced after the restore (no
//     memory of the counter) and no compensator runs: the new process reads the marks MySQL recorded
//     before its first reserve, sees the counter below them and fences the SKU.
// Then the invariant checker over everything acknowledged.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { ensureStock, ordersDrained } from '../controller/dataplane/provision.ts';
import { readMarks } from '../controller/dataplane/restore-fence.ts';
import { assertInvariants, type AcknowledgedOrder } from './support/checker.ts';
import { restore, snapshot } from './support/faults/redis.ts';
import { eventually, testConfig, uniqueName } from './support/infra.ts';
import { http, saleDoc } from './support/order-path.ts';
import { useSale } from './support/scenarios.ts';

const config = testConfig();
const sale = saleDoc(uniqueName('stale'), {
  skus: [
    { id: 'a', stock: 2, timeoutBucket: 'long' },
    { id: 'b', stock: 2, timeoutBucket: 'fast' },
    { id: 'c', stock: 1, timeoutBucket: 'long' },
  ],
  timeoutBuckets: [
    { name: 'long', delay: '30m' },
    { name: 'fast', delay: '2s' },
  ],
  compensation: { interval: '1s', grace: '1s' },
});
const fixture = useSale(sale, { config });
const { workers } = fixture;
const acknowledged = new Map<string, AcknowledgedOrder>();

const skuKeys = (skuId: string) => Object.values(fixture.ctx.names.redis.sku(skuId));

it('a SKU restored from an older snapshot is detected and fenced, then rebuilt from MySQL: no oversell, releases neither lost nor doubled', { timeout: 240_000 }, async () => {
  const { kafka, redis, db, ctx } = fixture;
  await workers.start('order-writer', sale, config);
  const api = await workers.start('api', sale, config);
  await workers.start('timeout-closer', sale, config, { args: ['--bucket', 'fast'] });
  const compensator = await workers.start('compensator', sale, config);
  let orders = `${api.url}/v1/sales/sale/orders`;
  const admin = await kafka.admin();
  const buy = async (userId: string, skuId: string) => {
    const r = await http('POST', orders, { userId, skuId });
    if (r.status === 202) acknowledged.set(r.body.orderId as string, { userId, skuId, quantity: 1 });
    return r;
  };
  const rebuild = async () => {
    await eventually(() => ordersDrained(admin, sale), { timeoutMs: 60_000, what: 'the writer drained the orders topic' });
    return ensureStock(ctx.stock, db, sale, ctx.key, { ordersDrained: () => ordersDrained(admin, sale) });
  };

  // a) The snapshot is taken before anything is sold; two units are sold after it.
  const before = await snapshot(redis, skuKeys('a'));
  const a1 = await buy('a-1', 'a');
  assert.equal(a1.status, 202);
  assert.equal((await buy('a-2', 'a')).status, 202);
  await eventually(() => ordersDrained(admin, sale), { timeoutMs: 60_000, what: 'a-1 and a-2 written' });
  await restore(redis, before); // Redis thinks nothing of 'a' was sold
  const a3 = await buy('a-3', 'a');
  assert.equal(a3.status, 503, `no sale from the stale stock: ${a3.text}`);
  assert.equal(await ctx.stock.level('a'), null, 'the SKU is fenced until the rebuild');
  assert.deepEqual((await rebuild()).rebuilt, ['a']);
  assert.deepEqual(await ctx.stock.level('a'), { stock: 2, remaining: 0 });
  assert.deepEqual((await buy('a-3', 'a')).body, { error: 'SOLD_OUT' });
  assert.deepEqual((await buy('a-1', 'a')).body, { error: 'ALREADY_ORDERED', orderId: a1.body.orderId });

  // b) Two orders are sold, snapshot, then both close and their units come back; the restore undoes that.
  assert.equal((await buy('b-1', 'b')).status, 202);
  assert.equal((await buy('b-2', 'b')).status, 202);
  await eventually(() => ordersDrained(admin, sale), { timeoutMs: 60_000, what: 'b-1 and b-2 written' });
  const sold = await snapshot(redis, skuKeys('b'));
  await eventually(async () => (await ctx.stock.level('b'))?.remaining === 2, { timeoutMs: 60_000, what: 'b-1 and b-2 closed and released' });
  // The closer writes settled_at and its counter mark shortly after the release (deferred). The
  // restore must come after both: else the scan applies the still-owed releases again to the
  // restored keys (healing them, raising the counter) and the mark never exceeds it.
  await eventually(async () => {
    const [owed] = await db.query("SELECT COUNT(*) AS n FROM orders WHERE sale = ? AND status = 'CLOSED' AND settled_at IS NULL", [ctx.key]);
    const mark = (await readMarks(db, ctx.key, ['b'])).get('b') ?? 0;
    return Number((owed as { n: number }[])[0]?.n) === 0 && mark >= Number(await redis.get(ctx.names.redis.sku('b').seq));
  }, { timeoutMs: 60_000, what: "b-1's and b-2's releases marked applied and the closer's counter mark recorded" });
  await restore(redis, sold);
  // The compensator notices (counter below the mark the closer recorded) and fences the SKU.
  await eventually(async () => (await ctx.stock.level('b')) === null, { timeoutMs: 60_000, what: 'the compensator fences the restored SKU' });
  assert.deepEqual((await rebuild()).rebuilt, ['b']);
  assert.deepEqual(await ctx.stock.level('b'), { stock: 2, remaining: 2 }, 'both releases back, once');
  assert.equal(await redis.scard(ctx.names.redis.sku('b').released), 2);
  assert.equal((await buy('b-3', 'b')).status, 202);
  assert.equal((await buy('b-1', 'b')).status, 202, "b-1's closed order no longer counts against the limit");
  assert.deepEqual((await buy('b-4', 'b')).body, { error: 'SOLD_OUT' });

  // c) Only the order writer and a fresh api process remain to notice.
  await compensator.kill();
  const empty = await snapshot(redis, skuKeys('c'));
  assert.equal((await buy('c-1', 'c')).status, 202);
  await eventually(() => ordersDrained(admin, sale), { timeoutMs: 60_000, what: 'c-1 written' });
  await api.kill();
  await restore(redis, empty);
  const api2 = await workers.start('api', sale, config, { label: 'api (restarted)' });
  orders = `${api2.url}/v1/sales/sale/orders`;
  const c2 = await buy('c-2', 'c');
  assert.equal(c2.status, 503, `no sale from the stale stock by a process that never saw the counter: ${c2.text}`);
  assert.equal(await ctx.stock.level('c'), null, 'fenced');
  assert.deepEqual((await rebuild()).rebuilt, ['c']);
  assert.deepEqual((await buy('c-2', 'c')).body, { error: 'SOLD_OUT' });

  await eventually(() => ordersDrained(admin, sale), { timeoutMs: 60_000, what: 'the last orders written' });
  await eventually(async () => (await ctx.stock.inFlight('b')).length === 0, { what: 'no reservation in flight' });
  // The invariants hold between closes, not during one (MySQL and Redis are read one after the
  // other): b-3 and b-1's second order (bucket 'fast', 2 s) must have closed and been released.
  await eventually(async () => {
    const [open] = await db.query("SELECT COUNT(*) AS n FROM orders WHERE sale = ? AND sku_id = 'b' AND status <> 'CLOSED'", [ctx.key]);
    const [owed] = await db.query("SELECT COUNT(*) AS n FROM orders WHERE sale = ? AND status = 'CLOSED' AND settled_at IS NULL", [ctx.key]);
    return Number((open as { n: number }[])[0]?.n) === 0 && Number((owed as { n: number }[])[0]?.n) === 0;
  }, { timeoutMs: 60_000, what: "every order of 'b' closed and its release applied" });
  await assertInvariants({ pool: db, redis, sale, acknowledged, paid: new Set(), kafka });
});
