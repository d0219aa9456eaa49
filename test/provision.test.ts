// Provisioning against the real Kafka, Redis and MariaDB: a SKU whose Redis keys were lost is rebuilt
// from MySQL only once no order is left between Kafka and MySQL, so the rebuild cannot sell twice.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Config } from '../controller/config.ts';
import type { KafkaGateway } from '../controller/infra/kafka.ts';
import type { Pool } from '../controller/infra/mysql.ts';
import type { Redis } from '../controller/infra/redis.ts';
import { createRegistry } from '../controller/metrics/dataplane.ts';
import { OrderWriter } from '../controller/dataplane/order-writer.ts';
import { ensureStock, ordersDrained, RebuildBlockedError, type SuspensionOutcome } from '../controller/dataplane/provision.ts';
import { Reaper } from '../controller/dataplane/reaper.ts';
import type { OrderMessage } from '../controller/dataplane/messages.ts';
import { dropDatabase, eventually, logger, testConfig, testKafka, testRedis, uniqueName } from './support/infra.ts';
import { pool as makePool, provisionSale, removeSale, saleDoc } from './support/order-path.ts';

let config: Config;
let kafka: KafkaGateway;
let redis: Redis;
let pool: Pool;

before(() => {
  config = testConfig();
  kafka = testKafka();
  redis = testRedis();
  pool = makePool(config);
});
after(async () => {
  await pool.end();
  await dropDatabase(config);
  await kafka.close();
  redis.disconnect();
});

describe('stock provisioning after Redis lost a sale', () => {
  it('waits for the order writer to drain the orders topic, then rebuilds counting those orders', { timeout: 60_000 }, async () => {
    const sale = saleDoc(uniqueName('prov'));
    const ctx = await provisionSale(sale, { config, kafka, redis, pool });
    try {
      // Two accepted orders are in Kafka, not yet in MySQL (no writer runs).
      const producer = await kafka.producer();
      const messages: OrderMessage[] = ['u1', 'u2'].map((userId, i) => ({ v: 1, orderId: `0190a000-0000-7000-8000-00000000000${i}`, sale: ctx.key, skuId: 'hot', userId, quantity: 1, createdAt: Date.now() }));
      for (const m of messages) {
        const r = await ctx.stock.reserve({ orderId: m.orderId, userId: m.userId, skuId: m.skuId, quantity: 1, reservedAt: m.createdAt }, 1);
        assert.equal(r.outcome, 'reserved');
      }
      await producer.send([{ topic: ctx.names.topics.orders, messages: messages.map((m) => ({ key: m.skuId, value: JSON.stringify(m), timestamp: m.createdAt })) }]);
      await producer.disconnect();
      // Redis loses everything of the sale.
      for (const sku of sale.spec.skus) await redis.del(...Object.values(ctx.names.redis.sku(sku.id)));
      const admin = await kafka.admin();
      assert.equal(await ordersDrained(admin, sale), false);
      await assert.rejects(ensureStock(ctx.stock, pool, sale, ctx.key, { ordersDrained: () => ordersDrained(admin, sale) }), RebuildBlockedError);
      assert.equal(await ctx.stock.level('hot'), null, 'nothing seeded while orders are in flight');
      // A release for a SKU without keys must not create a stock key the API could sell from.
      assert.equal(await ctx.stock.releaseOrder({ orderId: 'x', userId: 'u9', skuId: 'hot', quantity: 1 }), false);
      assert.equal(await redis.exists(ctx.names.redis.sku('hot').stock), 0);

      const writer = new OrderWriter({ ctx, kafka, pool, registry: createRegistry(), logger });
      await writer.start();
      try {
        await eventually(() => ordersDrained(admin, sale), { what: 'the writer drains the orders topic' });
      } finally {
        await writer.stop();
      }
      const outcome = await ensureStock(ctx.stock, pool, sale, ctx.key, { ordersDrained: () => ordersDrained(admin, sale) });
      assert.deepEqual(outcome.rebuilt, ['hot']);
      assert.deepEqual(await ctx.stock.level('hot'), { stock: 100, remaining: 98 }, 'the two orders from Kafka are counted, not sold again');
      assert.equal(await ctx.stock.holding('hot', 'u1'), 1);
      // A retried purchase still learns its order id after the rebuild.
      assert.deepEqual(await ctx.stock.reserve({ orderId: '0190a000-0000-7000-8000-0000000000f1', userId: 'u1', skuId: 'hot', quantity: 1, reservedAt: Date.now() }, 1), {
        outcome: 'already-ordered',
        orderId: messages[0]?.orderId,
      });
      assert.deepEqual(await ctx.stock.level('plenty'), { stock: 100000, remaining: 100000 });
    } finally {
      await removeSale(ctx, { kafka, redis });
    }
  });

  it('seeds a SKU added mid-sale at once, while a lost SKU still waits for the order writer', { timeout: 60_000 }, async () => {
    const sale = saleDoc(uniqueName('prov'));
    const ctx = await provisionSale(sale, { config, kafka, redis, pool });
    try {
      // An accepted order is in Kafka, not yet in MySQL (no writer runs): the topic is not drained.
      const order: OrderMessage = { v: 1, orderId: '0190a000-0000-7000-8000-0000000000c1', sale: ctx.key, skuId: 'hot', userId: 'u1', quantity: 1, createdAt: Date.now() };
      assert.equal((await ctx.stock.reserve({ ...order, reservedAt: order.createdAt }, 1)).outcome, 'reserved');
      const producer = await kafka.producer();
      await producer.send([{ topic: ctx.names.topics.orders, messages: [{ key: order.skuId, value: JSON.stringify(order), timestamp: order.createdAt }] }]);
      await producer.disconnect();
      const admin = await kafka.admin();
      assert.equal(await ordersDrained(admin, sale), false);

      // The user adds a SKU: it was never seeded, so no order for it can exist anywhere.
      const grown = saleDoc(sale.metadata.namespace ?? '', { skus: [...sale.spec.skus, { id: 'new', stock: 5, timeoutBucket: 'short' }] });
      let drainAsked = 0;
      const drained = async () => {
        drainAsked++;
        return ordersDrained(admin, grown);
      };
      const outcome = await ensureStock(ctx.stock, pool, grown, ctx.key, { ordersDrained: drained });
      assert.deepEqual(outcome.seeded, ['new']);
      assert.equal(drainAsked, 0, 'a new SKU does not wait for the order writer');
      assert.deepEqual(await ctx.stock.level('new'), { stock: 5, remaining: 5 });

      // Redis loses 'hot' (seeded before, an order in flight) and 'new': 'new' is not new any more.
      await redis.del(...Object.values(ctx.names.redis.sku('hot')), ...Object.values(ctx.names.redis.sku('new')));
      await assert.rejects(ensureStock(ctx.stock, pool, grown, ctx.key, { ordersDrained: drained }), (err: Error) => err instanceof RebuildBlockedError && /hot, new/.test(err.message));
      assert.equal(await ctx.stock.level('hot'), null, 'nothing seeded for a lost SKU while orders are in flight');
      assert.equal(await ctx.stock.level('new'), null);

      // A third SKU added while the others wait is still seeded at once (and the wait still reported).
      const third = saleDoc(sale.metadata.namespace ?? '', { skus: [...grown.spec.skus, { id: 'third', stock: 7, timeoutBucket: 'long' }] });
      await assert.rejects(ensureStock(ctx.stock, pool, third, ctx.key, { ordersDrained: drained }), RebuildBlockedError);
      assert.deepEqual(await ctx.stock.level('third'), { stock: 7, remaining: 7 });
    } finally {
      await removeSale(ctx, { kafka, redis });
    }
  });

  it('counts an empty orders topic of a new sale as drained', { timeout: 60_000 }, async () => {
    const sale = saleDoc(uniqueName('prov'));
    const ctx = await provisionSale(sale, { config, kafka, redis, pool });
    try {
      assert.equal(await ordersDrained(await kafka.admin(), sale), true);
    } finally {
      await removeSale(ctx, { kafka, redis });
    }
  });
});

describe('giving a reservation back', () => {
  it('tells released, claimed by the writer, released before and lost keys apart', { timeout: 60_000 }, async () => {
    const sale = saleDoc(uniqueName('rel'));
    const ctx = await provisionSale(sale, { config, kafka, redis, pool });
    try {
      const r = (orderId: string, userId: string) => ({ orderId, userId, skuId: 'hot', quantity: 1, reservedAt: Date.now() });
      const a = r('0190a000-0000-7000-8000-0000000000a1', 'ua');
      const b = r('0190a000-0000-7000-8000-0000000000b1', 'ub');
      for (const x of [a, b]) assert.equal((await ctx.stock.reserve(x, 1)).outcome, 'reserved');
      assert.deepEqual(await ctx.stock.claim('hot', [b.orderId]), ['claimed']);
      assert.equal(await ctx.stock.releaseReservation(a), 'released');
      assert.equal(await ctx.stock.releaseReservation(a), 'released-before');
      // Only this answer lets the API keep an order whose send reported failure: the writer has it.
      assert.equal(await ctx.stock.releaseReservation(b), 'claimed');
      assert.deepEqual(await ctx.stock.level('hot'), { stock: 100, remaining: 99 });
      await redis.del(...Object.values(ctx.names.redis.sku('hot')));
      assert.equal(await ctx.stock.releaseReservation(r('0190a000-0000-7000-8000-0000000000c1', 'uc')), 'no-stock-keys');
    } finally {
      await removeSale(ctx, { kafka, redis });
    }
  });
});

describe('the reaper and a lagging order writer', () => {
  it('never reaps an order that waits in Kafka; reaps a true orphan once the writer has caught up', { timeout: 60_000 }, async () => {
    const sale = saleDoc(uniqueName('reap'));
    const ctx = await provisionSale(sale, { config, kafka, redis, pool });
    try {
      const now = Date.now();
      const queued = { orderId: '0190a000-0000-7000-8000-0000000000d1', userId: 'uq', skuId: 'hot', quantity: 1, reservedAt: now };
      const orphan = { orderId: '0190a000-0000-7000-8000-0000000000e1', userId: 'uo', skuId: 'hot', quantity: 1, reservedAt: now };
      for (const r of [queued, orphan]) assert.equal((await ctx.stock.reserve(r, 1)).outcome, 'reserved');
      const message: OrderMessage = { v: 1, orderId: queued.orderId, sale: ctx.key, skuId: 'hot', userId: 'uq', quantity: 1, createdAt: now };
      const producer = await kafka.producer();
      await producer.send([{ topic: ctx.names.topics.orders, messages: [{ key: 'hot', value: JSON.stringify(message), timestamp: now }] }]);
      await producer.disconnect();
      // The reaper's clock is injected: both reservations are older than the bound by it (no sleep),
      // but the writer has not run.
      let reaperNow = now + 1000;
      const reaper = new Reaper({ sales: [ctx], registry: createRegistry(), logger, olderThanMs: 200, kafka, clock: () => reaperNow });
      assert.equal(await reaper.tick(), 0, 'nothing reaped while the writer lags');
      assert.deepEqual(await ctx.stock.level('hot'), { stock: 100, remaining: 98 });

      const writer = new OrderWriter({ ctx, kafka, pool, registry: createRegistry(), logger });
      await writer.start();
      try {
        const admin = await kafka.admin();
        await eventually(() => ordersDrained(admin, sale), { what: 'the writer drains the orders topic' });
      } finally {
        await writer.stop();
      }
      reaperNow += 1000;
      assert.equal(await reaper.tick(), 1, 'the orphan, and only it');
      const [rows] = await pool.query('SELECT order_id, status FROM orders WHERE sale = ?', [ctx.key]);
      assert.deepEqual(rows, [{ order_id: queued.orderId, status: 'UNPAID' }]);
      assert.deepEqual(await ctx.stock.level('hot'), { stock: 100, remaining: 99 });
      assert.equal(await ctx.stock.holding('hot', 'uo'), 0);
    } finally {
      await removeSale(ctx, { kafka, redis });
    }
  });
});

describe('the per-user limit above 1', () => {
  it('counts units across orders, also when one user sends many at once', { timeout: 60_000 }, async () => {
    const sale = saleDoc(uniqueName('lim'), { perUserLimit: 3 });
    const ctx = await provisionSale(sale, { config, kafka, redis, pool });
    try {
      let id = 0;
      const reserve = (userId: string, quantity: number) =>
        ctx.stock.reserve({ orderId: `0190a000-0000-7000-8000-${String(++id).padStart(12, '0')}`, userId, skuId: 'hot', quantity, reservedAt: Date.now() }, 3);
      assert.equal((await reserve('a', 2)).outcome, 'reserved');
      assert.equal((await reserve('a', 2)).outcome, 'already-ordered', '2 + 2 > 3');
      assert.equal((await reserve('a', 1)).outcome, 'reserved');
      assert.equal((await reserve('a', 1)).outcome, 'already-ordered');
      const burst = await Promise.all(Array.from({ length: 50 }, () => reserve('b', 1)));
      assert.equal(burst.filter((r) => r.outcome === 'reserved').length, 3);
      assert.equal(await ctx.stock.holding('hot', 'b'), 3);
      assert.deepEqual(await ctx.stock.level('hot'), { stock: 100, remaining: 94 });
    } finally {
      await removeSale(ctx, { kafka, redis });
    }
  });
});

describe('the reserves of one event-loop turn', () => {
  it('share one script call per SKU, run in the order asked, and answer the same when the call is resent', { timeout: 60_000 }, async () => {
    const sale = saleDoc(uniqueName('rsv'), {
      perUserLimit: 2,
      skus: [{ id: 'few', stock: 5, timeoutBucket: 'long' }, { id: 'other', stock: 3, timeoutBucket: 'long' }],
      timeoutBuckets: [{ name: 'long', delay: '30m' }],
    });
    const ctx = await provisionSale(sale, { config, kafka, redis, pool });
    // Count the script calls: StockStore defined fsReserve on this client; wrap it after. ioredis's
    // auto-pipeline copies the function and calls it again on its pipeline: count the client's calls.
    const scripted = redis as unknown as { fsReserve(...a: (string | number)[]): Promise<unknown[]> };
    const original = scripted.fsReserve;
    const calls: (string | number)[][] = [];
    scripted.fsReserve = function (this: unknown, ...a: (string | number)[]) {
      if (this === scripted) calls.push(a);
      return original.apply(this, a);
    };
    try {
      let id = 0;
      const order = (userId: string, skuId: string, quantity = 1) => ({ orderId: `0190a000-0000-7000-8000-${String(++id).padStart(12, '0')}`, userId, skuId, quantity, reservedAt: Date.now() });
      const asked = [
        order('a', 'few'), order('a', 'few'), order('a', 'few'), order('b', 'few', 2), order('c', 'few', 2),
        order('d', 'few'), order('e', 'few'), order('x', 'other', 2), order('x', 'other'), order('y', 'other'),
      ];
      const results = await Promise.all(asked.map((r) => ctx.stock.reserve(r, 2)));
      assert.equal(calls.length, 2, 'one call per SKU');
      assert.deepEqual(results.map((r) => r.outcome), [
        'reserved', 'reserved', 'already-ordered', 'reserved', 'sold-out', 'reserved', 'sold-out', 'reserved', 'already-ordered', 'reserved',
      ]);
      assert.deepEqual(results[2], { outcome: 'already-ordered', orderId: asked[1]!.orderId }, "the user's last order, reserved earlier in the same call");
      assert.deepEqual(results.map((r) => (r.outcome === 'reserved' ? r.remaining : null)), [4, 3, null, 1, null, 0, null, 1, null, 0]);
      const seqs = results.flatMap((r) => (r.outcome === 'reserved' ? [r.seq] : []));
      assert.ok(seqs[0]! > 0 && seqs[1]! > seqs[0]! && seqs[2]! > seqs[1]! && seqs[3]! > seqs[2]!, `the counter rises with each reserve: ${seqs}`);
      assert.deepEqual(await ctx.stock.level('few'), { stock: 5, remaining: 0 });

      // ioredis resends an unanswered command after a reconnect: the whole call runs again.
      const before = await Promise.all([ctx.stock.inFlight('few'), ctx.stock.inFlight('other')]);
      const again = await original.apply(scripted, calls[0]!);
      assert.deepEqual(
        Array.from({ length: again.length / 3 }, (_, j) => Number(again[3 * j])),
        [1, 1, -2, 1, -3, 1, -3],
        'reserved ones answer reserved again, the rest as before',
      );
      assert.deepEqual(await Promise.all([ctx.stock.inFlight('few'), ctx.stock.inFlight('other')]), before, 'nothing reserved twice');
      assert.deepEqual(await ctx.stock.level('few'), { stock: 5, remaining: 0 });
      assert.equal(await ctx.stock.holding('few', 'a'), 2);
      assert.equal(await ctx.stock.holding('few', 'b'), 2);
    } finally {
      scripted.fsReserve = original;
      await removeSale(ctx, { kafka, redis });
    }
  });
});

describe('spec.suspend, the sale\'s emergency stop', () => {
  it('refuses only what would reserve, on every SKU (one added while suspended too), before a refused stock cut; idle rounds write nothing; resuming sells again; one SKU alone', { timeout: 60_000 }, async () => {
    const skus = [{ id: 'few', stock: 2, timeoutBucket: 'long' }, { id: 'many', stock: 50, timeoutBucket: 'long' }];
    const spec = (extra: Record<string, unknown>) => ({ skus, timeoutBuckets: [{ name: 'long', delay: '30m' }], ...extra });
    const sale = saleDoc(uniqueName('susp'), spec({}));
    const ctx = await provisionSale(sale, { config, kafka, redis, pool });
    try {
      let id = 0;
      const order = (userId: string, skuId: string) => ({ orderId: `0190a000-0000-7000-8000-${String(++id).padStart(12, '0')}`, userId, skuId, quantity: 1, reservedAt: Date.now() });
      const early = order('a', 'few');
      assert.equal((await ctx.stock.reserve(early, 1)).outcome, 'reserved');
      assert.equal((await ctx.stock.reserve(order('b', 'few'), 1)).outcome, 'reserved');
      const ensure = async (s: ReturnType<typeof saleDoc>) => {
        const seen: SuspensionOutcome[] = [];
        const out = await ensureStock(ctx.stock, pool, s, ctx.key, { onSuspension: (o) => seen.push(o) }).catch((err: unknown) => err);
        assert.equal(seen.length, 1, `reported once per call (${String(out)})`);
        const o = seen[0] as SuspensionOutcome;
        return { out, suspension: { ...o, skus: [...o.skus].sort(), turnedOn: [...o.turnedOn].sort(), turnedOff: [...o.turnedOff].sort() } };
      };

      // Suspended, with a SKU added in the same edit: its switch is set before it is seeded.
      const suspended = saleDoc(sale.metadata.namespace, spec({ suspend: true, skus: [...skus, { id: 'new', stock: 5, timeoutBucket: 'long' }] }));
      const first = await ensure(suspended);
      assert.ok(!(first.out instanceof Error), String(first.out));
      assert.deepEqual(first.suspension, { suspended: true, skus: ['few', 'many', 'new'], turnedOn: ['few', 'many', 'new'], turnedOff: [] });
      for (const sku of ['few', 'many', 'new']) assert.equal((await ctx.stock.state(sku)).suspended, true, sku);
      const refused = order('c', 'many');
      assert.deepEqual(await ctx.stock.reserve(refused, 1), { outcome: 'suspended' });
      assert.deepEqual(await ctx.stock.reserve(order('c', 'new'), 1), { outcome: 'suspended' }, 'the SKU added while suspended never sold');
      assert.deepEqual(await ctx.stock.reserve(order('a', 'few'), 1), { outcome: 'already-ordered', orderId: early.orderId }, 'a buyer at the limit still learns the order');
      assert.deepEqual(await ctx.stock.reserve(order('d', 'few'), 1), { outcome: 'sold-out' });
      const rerun = await ctx.stock.reserve(early, 1);
      assert.equal(rerun.outcome, 'reserved', 'a re-run of a reservation made before answers as the first run did');
      assert.deepEqual(await ctx.stock.level('many'), { stock: 50, remaining: 50 }, 'nothing taken');
      assert.deepEqual(await ctx.stock.level('new'), { stock: 5, remaining: 5 });
      assert.equal(await ctx.stock.holding('many', 'c'), 0);
      assert.deepEqual((await ctx.stock.inFlight('many')).map((r) => r.orderId), [], 'no reservation record');

      // The same spec again writes nothing.
      const idle = await ensure(suspended);
      assert.deepEqual(idle.suspension, { suspended: true, skus: ['few', 'many', 'new'], turnedOn: [], turnedOff: [] });

      // Resumed in the same edit as a refused stock cut: the switch follows spec.suspend anyway.
      const cut = saleDoc(sale.metadata.namespace, spec({ suspend: false, skus: [{ id: 'few', stock: 1, timeoutBucket: 'long' }, skus[1], { id: 'new', stock: 5, timeoutBucket: 'long' }] }));
      const resumed = await ensure(cut);
      assert.match(String(resumed.out), /stock cannot go below what is already sold: few has sold 2, spec asks 1/);
      assert.deepEqual(resumed.suspension, { suspended: false, skus: [], turnedOn: [], turnedOff: ['few', 'many', 'new'] });
      assert.equal((await ctx.stock.reserve(refused, 1)).outcome, 'reserved', 'sells again');
      assert.deepEqual(await ctx.stock.level('many'), { stock: 50, remaining: 49 });

      // Suspended again while Redis lost a SKU: the switch is set before the rebuild seeds it.
      await redis.del(...Object.values(ctx.names.redis.sku('many')));
      const again = saleDoc(sale.metadata.namespace, spec({ suspend: true, skus: [...skus, { id: 'new', stock: 5, timeoutBucket: 'long' }] }));
      const lost = await ensure(again);
      assert.ok(!(lost.out instanceof Error), String(lost.out));
      assert.deepEqual(await ctx.stock.level('many'), { stock: 50, remaining: 50 }, 'rebuilt from MySQL (no order of it was written)');
      assert.deepEqual(await ctx.stock.reserve(order('e', 'many'), 1), { outcome: 'suspended' });

      // One SKU of its own (spec.skus[].suspend, a wrong price): the others sell on.
      const one = saleDoc(sale.metadata.namespace, spec({ skus: [skus[0], { ...skus[1], suspend: true }, { id: 'new', stock: 5, timeoutBucket: 'long' }] }));
      const single = await ensure(one);
      assert.ok(!(single.out instanceof Error), String(single.out));
      assert.deepEqual(single.suspension, { suspended: false, skus: ['many'], turnedOn: [], turnedOff: ['few', 'new'] });
      assert.deepEqual(await ctx.stock.reserve(order('f', 'many'), 1), { outcome: 'suspended' });
      assert.equal((await ctx.stock.reserve(order('f', 'new'), 1)).outcome, 'reserved');
    } finally {
      await removeSale(ctx, { kafka, redis });
    }
  });
});
