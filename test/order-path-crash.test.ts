// A real `flashsale order-writer` process killed with SIGKILL in the middle of a backlog, then
// restarted: no order lost, none written twice, every UNPAID order has its timeout message, and
// for every SKU stock = remaining + units in UNPAID/PAID orders + units in flight.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { after, before, it } from 'node:test';
import { parseTimeoutMessage, type OrderMessage } from '../controller/dataplane/messages.ts';
import { orderIdGenerator } from '../controller/dataplane/order-id.ts';
import type { SaleContext } from '../controller/dataplane/sale-context.ts';
import type { ConsumedMessage, KafkaGateway, KafkaProducer } from '../controller/infra/kafka.ts';
import type { Pool } from '../controller/infra/mysql.ts';
import type { Redis } from '../controller/infra/redis.ts';
import { dropDatabase, eventually, testConfig, testKafka, testRedis, uniqueName } from './support/infra.ts';
import { pool as makePool, provisionSale, removeSale, saleDoc } from './support/order-path.ts';
import { spawnWorker } from './support/scenarios.ts';

const config = testConfig();
const sale = saleDoc(uniqueName('crash'), {
  skus: [
    { id: 'hot', stock: 500, timeoutBucket: 'short' },
    { id: 'plenty', stock: 100000, timeoutBucket: 'long' },
  ],
});
const N = 15_000;
const ORPHANS = 5;
let kafka: KafkaGateway;
let redis: Redis;
let db: Pool;
let ctx: SaleContext;
let producer: KafkaProducer;
const children: ChildProcess[] = [];

function startWriter(): ChildProcess {
  const child = spawnWorker('order-writer', sale, config);
  child.stderr?.on('data', (d: Buffer) => process.stderr.write(`[writer ${child.pid}] ${d.toString()}`));
  children.push(child);
  return child;
}

async function rows(): Promise<number> {
  const [r] = await db.query('SELECT COUNT(*) AS n FROM orders WHERE sale = ?', [ctx.key]);
  return Number((r as { n: number }[])[0]?.n);
}

before(async () => {
  kafka = testKafka();
  redis = testRedis();
  db = makePool(config);
  ctx = await provisionSale(sale, { config, kafka, redis, pool: db });
  producer = await kafka.producer();
});

after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await producer?.disconnect();
  await removeSale(ctx, { kafka, redis });
  await kafka.close();
  redis.disconnect();
  await db.end();
  await dropDatabase(config);
});

it('a writer killed mid-backlog and restarted loses nothing, duplicates nothing, and keeps the stock invariant', { timeout: 120_000 }, async (t) => {
  const t0 = Date.now();
  // What the API does for each accepted order: reserve in Redis, then hand the order to Kafka.
  const nextId = orderIdGenerator();
  const now = Date.now();
  const accepted: OrderMessage[] = [];
  const tries = Array.from({ length: N }, (_, i) => {
    const skuId = i % 20 === 0 ? 'hot' : 'plenty';
    return { orderId: nextId(), userId: `u-${i}`, skuId, quantity: 1, reservedAt: now };
  });
  const results = await Promise.all(tries.map((r) => ctx.stock.reserve(r, 1)));
  tries.forEach((r, i) => {
    if (results[i]?.outcome === 'reserved') accepted.push({ v: 1, orderId: r.orderId, sale: ctx.key, skuId: r.skuId, userId: r.userId, quantity: 1, createdAt: r.reservedAt });
  });
  assert.equal(accepted.filter((o) => o.skuId === 'hot').length, 500, 'hot sold out at its stock');
  for (let i = 0; i < accepted.length; i += 2000) {
    await producer.send([{ topic: ctx.names.topics.orders, messages: accepted.slice(i, i + 2000).map((o) => ({ key: o.skuId, value: JSON.stringify(o), timestamp: o.createdAt })) }]);
  }
  // A few reservations whose API died before the hand-off: in flight, never in Kafka.
  for (let i = 0; i < ORPHANS; i++) {
    assert.equal((await ctx.stock.reserve({ orderId: nextId(), userId: `orphan-${i}`, skuId: 'plenty', quantity: 1, reservedAt: now }, 1)).outcome, 'reserved');
  }

  // Mid-backlog by construction, not by racing a poll against the writer: the test holds a gap lock
  // where one order of the backlog (60% in) must be inserted, between two sentinel rows of another
  // sale, so the writer cannot have written that order when it is killed, while rows before it go in.
  const held = accepted.filter((o) => o.skuId === 'plenty' && /[1-9a-e]$/.test(o.orderId)).at(Math.floor(accepted.length * 0.6) - 500) as OrderMessage;
  const beside = (id: string, d: number) => id.slice(0, -1) + (parseInt(id.at(-1) as string, 16) + d).toString(16);
  const ids = new Set(accepted.map((o) => o.orderId));
  assert.ok(!ids.has(beside(held.orderId, -1)) && !ids.has(beside(held.orderId, 1)), 'sentinel ids are free');
  await db.query('INSERT INTO orders (order_id, sale, sku_id, user_id, quantity, status, created_at, due_at) VALUES ?', [
    [-1, 1].map((d) => [beside(held.orderId, d), 'sentinel/none', 'x', 'x', 1, 'CLOSED', new Date(now), new Date(now)]),
  ]);
  const locker = await db.getConnection();
  await locker.beginTransaction();
  await locker.query('SELECT order_id FROM orders WHERE order_id = ? FOR UPDATE', [held.orderId]);
  let atKill: number;
  try {
    const first = startWriter();
    atKill = await eventually(async () => {
      const n = await rows();
      return n > 0 ? n : undefined;
    }, { intervalMs: 20, timeoutMs: 60_000, what: 'the first rows' });
    first.kill('SIGKILL');
    await once(first, 'exit');
    const [[heldRow]] = (await db.query('SELECT COUNT(*) AS n FROM orders WHERE order_id = ?', [held.orderId])) as unknown as [{ n: number }[]];
    assert.equal(Number(heldRow?.n), 0, 'the held order was not written before the kill');
  } finally {
    await locker.rollback();
    locker.release();
  }
  assert.ok(atKill < accepted.length, `killed mid-backlog (${atKill} of ${accepted.length} rows written)`);

  const delays: ConsumedMessage[] = [];
  const probe = kafka.consumer({ groupId: `${ctx.names.groups.orderWriter}.probe`, topics: [ctx.names.topics.delay('short'), ctx.names.topics.delay('long')] });
  void probe.start(async (batch, bctx) => {
    delays.push(...batch.messages);
    const last = batch.messages.at(-1);
    if (last) await bctx.commit((BigInt(last.offset) + 1n).toString());
  });

  t.diagnostic(`killed after ${atKill} of ${accepted.length} rows, ${Date.now() - t0} ms in`);
  const second = startWriter();
  try {
    await eventually(async () => (await rows()) === accepted.length, { timeoutMs: 120_000, intervalMs: 200, what: `all ${accepted.length} rows after the restart` });
    t.diagnostic(`all rows after the restart, ${Date.now() - t0} ms in`);
    const [written] = await db.query('SELECT order_id, user_id, sku_id, status FROM orders WHERE sale = ?', [ctx.key]);
    const list = written as { order_id: string; user_id: string; sku_id: string; status: string }[];
    assert.deepEqual(new Set(list.map((r) => r.order_id)), new Set(accepted.map((o) => o.orderId)), 'exactly the accepted orders');
    assert.equal(new Set(list.map((r) => `${r.sku_id}/${r.user_id}`)).size, list.length, 'nobody twice');
    assert.ok(list.every((r) => r.status === 'UNPAID'));

    // Every UNPAID order has a timeout message, including those of a batch cut off by the kill.
    const unpaid = new Set(list.map((r) => r.order_id));
    await eventually(() => {
      const seen = new Set(delays.map((m) => parseTimeoutMessage(m.value).orderId));
      return [...unpaid].every((id) => seen.has(id));
    }, { timeoutMs: 60_000, what: 'a timeout message for every UNPAID order' });

    // Quiet: the invariant per SKU.
    for (const skuId of ['hot', 'plenty']) {
      const level = await ctx.stock.level(skuId);
      const [held] = await db.query("SELECT COALESCE(SUM(quantity), 0) AS units FROM orders WHERE sale = ? AND sku_id = ? AND status IN ('UNPAID','PAID')", [ctx.key, skuId]);
      const units = Number((held as { units: number }[])[0]?.units);
      const inFlight = (await ctx.stock.inFlight(skuId)).reduce((s, r) => s + r.quantity, 0);
      assert.equal(inFlight, skuId === 'plenty' ? ORPHANS : 0, `${skuId}: only the orphans are in flight`);
      assert.equal(level?.stock, (level?.remaining ?? NaN) + units + inFlight, `${skuId}: stock = remaining + UNPAID/PAID + in flight`);
    }
  } finally {
    second.kill('SIGTERM');
    const [code] = (await once(second, 'exit')) as [number | null];
    await probe.stop();
    assert.equal(code, 0, 'the writer stops cleanly on SIGTERM');
  }
});
