// Issue 13, scenario 8: user and SKU ids that differ only in case, accents or trailing spaces are
// different users and SKUs everywhere: in Redis, in MySQL, and in the rebuild ledger after Redis
// lost the sale. MySQL's default collation (utf8mb4_general_ci, PAD SPACE) merged them; migration 3
// makes the id columns utf8mb4_nopad_bin, also for tables that already hold orders.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { ensureStock, ordersDrained, skuLedger } from '../controller/dataplane/provision.ts';
import { migrate, migrations } from '../controller/infra/mysql.ts';
import { databaseAtVersion, deleteRedisKeys, dropDatabase, eventually, testConfig, uniqueName } from './support/infra.ts';
import { http, saleDoc } from './support/order-path.ts';
import { useSale } from './support/scenarios.ts';

const USERS = ['u-1', 'U-1', 'u-1 ', 'ú-1'];

describe('migration 3 on tables that already hold orders', () => {
  const config = testConfig();
  after(() => dropDatabase(config));

  it('keeps every row and tells ids apart that the old collation merged', async () => {
    const conn = await databaseAtVersion(config, 2);
    try {
      const rows = USERS.map((u, i) => [`00000000-0000-7000-8000-00000000000${i}`, 'ns/sale', i % 2 ? 'Phone' : 'phone', u, 1, 'UNPAID', new Date(), new Date()]);
      await conn.query('INSERT INTO orders (order_id, sale, sku_id, user_id, quantity, status, created_at, due_at) VALUES ?', [rows]);
      const groups = async () => {
        const [g] = await conn.query('SELECT user_id, sku_id, COUNT(*) AS n FROM orders GROUP BY user_id, sku_id');
        return (g as unknown[]).length;
      };
      assert.ok((await groups()) < USERS.length, 'precondition: the old collation merges some of these ids');

      assert.deepEqual(await migrate(config.mysql), [...migrations.filter((x) => x.version > 2).map((x) => x.version)]);
      assert.equal(await groups(), USERS.length, 'four users, each with their own order');
      const [cols] = await conn.query(
        "SELECT table_name AS t, column_name AS c, collation_name AS coll FROM information_schema.columns WHERE table_schema = ? AND column_name IN ('sale','sku_id','user_id')",
        [config.mysql.database],
      );
      for (const c of cols as { t: string; c: string; coll: string }[]) assert.equal(c.coll, 'utf8mb4_nopad_bin', `${c.t}.${c.c}`);
      const [count] = await conn.query('SELECT COUNT(*) AS n FROM orders');
      assert.equal(Number((count as { n: number }[])[0]?.n), USERS.length, 'no row lost');
    } finally {
      await conn.end();
    }
  });
});

describe('ids through the real api and order-writer processes, and the rebuild after Redis lost the sale', () => {
  const config = testConfig();
  const sale = saleDoc(uniqueName('ids'), {
    skus: [
      { id: 'phone', stock: 10, timeoutBucket: 'long' },
      { id: 'Phone', stock: 10, timeoutBucket: 'long' },
    ],
    timeoutBuckets: [{ name: 'long', delay: '30m' }],
  });
  const fixture = useSale(sale, { config });
  const { workers } = fixture;

  it('four users and two SKUs that differ only in case, accent or a trailing space each hold their own order, also after a rebuild', { timeout: 180_000 }, async () => {
    const { kafka, redis, db, ctx } = fixture;
    await workers.start('order-writer', sale, config);
    const api = await workers.start('api', sale, config);
    const orders = `${api.url}/v1/sales/sale/orders`;
    const placed = new Map<string, string>();
    for (const skuId of ['phone', 'Phone']) {
      for (const userId of USERS) {
        const r = await http('POST', orders, { userId, skuId });
        assert.equal(r.status, 202, `${JSON.stringify(userId)} / ${skuId}: ${r.text}`);
        placed.set(`${skuId}\0${userId}`, r.body.orderId as string);
      }
    }
    const admin = await kafka.admin();
    await eventually(() => ordersDrained(admin, sale), { timeoutMs: 60_000, what: 'the writer drained the orders topic' });
    const [rows] = await db.query('SELECT order_id, sku_id, user_id FROM orders WHERE sale = ?', [ctx.key]);
    const got = new Map((rows as { order_id: string; sku_id: string; user_id: string }[]).map((r) => [`${r.sku_id}\0${r.user_id}`, r.order_id]));
    assert.deepEqual(got, placed, 'eight rows, each with the exact user and SKU id it was accepted for');

    // Redis loses the sale; the rebuild reads the ledger from MySQL.
    for (const skuId of ['phone', 'Phone']) {
      const ledger = await skuLedger(db, ctx.key, skuId);
      assert.deepEqual(new Set(ledger.heldByUser.keys()), new Set(USERS), `${skuId}: four holders in the ledger`);
    }
    await deleteRedisKeys(redis, ctx.names.redis.patterns);
    const outcome = await ensureStock(ctx.stock, db, sale, ctx.key, { ordersDrained: () => ordersDrained(admin, sale) });
    assert.deepEqual(new Set(outcome.rebuilt), new Set(['phone', 'Phone']));
    for (const skuId of ['phone', 'Phone']) {
      assert.deepEqual(await ctx.stock.level(skuId), { stock: 10, remaining: 10 - USERS.length });
      for (const userId of USERS) {
        const again = await http('POST', orders, { userId, skuId });
        assert.deepEqual([again.status, again.body], [409, { error: 'ALREADY_ORDERED', orderId: placed.get(`${skuId}\0${userId}`) }], `${JSON.stringify(userId)} / ${skuId} after the rebuild`);
      }
    }
  });
});
