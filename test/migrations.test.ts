// Migrations 5, 6 and 7 on tables that already hold orders, against the real MariaDB, from a
// database as the release before each shipped it. 5: the (sale, sku_id) index replaces (sale,
// sku_id, status), so a status change (pay, close) rewrites one secondary index, not two. 6: orders
// and stock_releases in the REDUNDANT row format, so closed_at, paid_at and applied_at go from NULL
// to a value in place. 7: what the compensation scan looks for is kept on the order row
// (settled_at, NULL while the order is open or owes its release) and no index holds status.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { seededSkus, skuLedger, soldUnits } from '../controller/dataplane/provision.ts';
import { createPool, migrate, migrations } from '../controller/infra/mysql.ts';
import { databaseAtVersion, dropDatabase, testConfig } from './support/infra.ts';

describe('migration 5 on a table that already holds orders', () => {
  const config = testConfig();
  after(() => dropDatabase(config));

  it('keeps every row, indexes status only with due_at, and reads the ledger as before', async () => {
    const conn = await databaseAtVersion(config, 4);
    const pool = createPool(config.mysql);
    try {
      const at = new Date('2026-12-01T00:00:00Z');
      const statuses = ['UNPAID', 'PAID', 'CLOSED', 'UNPAID', 'CLOSED'];
      const rows = statuses.map((status, i) => [`00000000-0000-7000-8000-00000000000${i}`, 'ns/sale', i < 3 ? 'phone' : 'book', `u-${i}`, i + 1, status, at, at]);
      await conn.query('INSERT INTO orders (order_id, sale, sku_id, user_id, quantity, status, created_at, due_at) VALUES ?', [rows]);

      assert.deepEqual(await migrate(config.mysql, 5), [5]);
      const [idx] = await conn.query(
        'SELECT index_name AS i, GROUP_CONCAT(column_name ORDER BY seq_in_index) AS cols FROM information_schema.statistics WHERE table_schema = ? AND table_name = ? GROUP BY index_name ORDER BY index_name',
        [config.mysql.database, 'orders'],
      );
      assert.deepEqual(idx, [
        { i: 'orders_sale_sku', cols: 'sale,sku_id' },
        { i: 'orders_status_due', cols: 'status,due_at' },
        { i: 'PRIMARY', cols: 'order_id' },
      ]);
      const [count] = await conn.query('SELECT COUNT(*) AS n FROM orders');
      assert.equal(Number((count as { n: number }[])[0]?.n), statuses.length, 'no row lost');

      // A crash after the ALTER and before its schema_migrations row: the statement runs again.
      for (const sql of migrations.find((m) => m.version === 5)?.statements ?? []) await conn.query(sql);

      // The readers that used the old index's status column read the same answers from the rows.
      const ledger = await skuLedger(pool, 'ns/sale', 'phone');
      assert.deepEqual([...ledger.heldByUser], [['u-0', 1], ['u-1', 2]]);
      assert.deepEqual(ledger.closedOrderIds, ['00000000-0000-7000-8000-000000000002']);
      assert.deepEqual([...(await soldUnits(pool, 'ns/sale'))].sort(), [['book', 4], ['phone', 3]]);
      assert.deepEqual([...(await seededSkus(pool, 'ns/sale', ['phone', 'book', 'pen']))].sort(), ['book', 'phone']);
    } finally {
      await pool.end();
      await conn.end();
    }
  });
});

describe('migration 6 on tables that already hold orders and releases', () => {
  const config = testConfig();
  after(() => dropDatabase(config));

  it('rebuilds both tables in the REDUNDANT row format with every row and value kept', async () => {
    const conn = await databaseAtVersion(config, 5);
    try {
      const at = new Date('2026-12-01T00:00:00.123Z');
      const later = new Date('2026-12-01T00:05:00.456Z');
      const id = (i: number) => `00000000-0000-7000-8000-00000000000${i}`;
      await conn.query('INSERT INTO orders (order_id, sale, sku_id, user_id, quantity, status, created_at, due_at, paid_at, closed_at) VALUES ?', [
        [
          [id(0), 'ns/sale', 'phone', 'u-0', 1, 'UNPAID', at, later, null, null],
          [id(1), 'ns/sale', 'phone', 'ü-1 ', 2, 'PAID', at, later, later, null],
          [id(2), 'ns/sale', 'book', 'u-2', 3, 'CLOSED', at, later, null, later],
        ],
      ]);
      await conn.query('INSERT INTO stock_releases (order_id, sale, sku_id, user_id, quantity, created_at, applied_at) VALUES ?', [
        [
          [id(2), 'ns/sale', 'book', 'u-2', 3, later, null],
          [id(3), 'ns/sale', 'book', 'u-3', 1, at, at],
        ],
      ]);
      const read = async () => ({
        orders: (await conn.query('SELECT * FROM orders ORDER BY order_id'))[0],
        releases: (await conn.query('SELECT * FROM stock_releases ORDER BY order_id'))[0],
      });
      const before = await read();
      const formats = async () =>
        (
          await conn.query("SELECT table_name AS t, row_format AS f FROM information_schema.tables WHERE table_schema = ? AND table_name IN ('orders', 'stock_releases') ORDER BY table_name", [
            config.mysql.database,
          ])
        )[0];
      assert.deepEqual(await formats(), [
        { t: 'orders', f: 'Dynamic' },
        { t: 'stock_releases', f: 'Dynamic' },
      ]);

      assert.deepEqual(await migrate(config.mysql, 6), [6]);
      assert.deepEqual(await formats(), [
        { t: 'orders', f: 'Redundant' },
        { t: 'stock_releases', f: 'Redundant' },
      ]);
      assert.deepEqual(await read(), before, 'every row and value kept');

      // A crash after the ALTERs and before the schema_migrations row: the statements run again.
      for (const sql of migrations.find((m) => m.version === 6)?.statements ?? []) await conn.query(sql);
      assert.deepEqual(await read(), before);

      // The updates the format is for: NULL to a value, read back exactly.
      await conn.query("UPDATE orders SET status = 'CLOSED', closed_at = ? WHERE order_id = ? AND status = 'UNPAID'", [later, id(0)]);
      await conn.query('UPDATE stock_releases SET applied_at = ? WHERE order_id = ? AND applied_at IS NULL', [later, id(2)]);
      const [closed] = await conn.query('SELECT status, closed_at, paid_at FROM orders WHERE order_id = ?', [id(0)]);
      assert.deepEqual(closed, [{ status: 'CLOSED', closed_at: later, paid_at: null }]);
      const [marked] = await conn.query('SELECT applied_at FROM stock_releases WHERE order_id = ?', [id(2)]);
      assert.deepEqual(marked, [{ applied_at: later }]);
    } finally {
      await conn.end();
    }
  });
});

describe('migration 7 on tables that already hold orders and release records', () => {
  const config = testConfig();
  after(() => dropDatabase(config));

  it("settles paid orders and applied releases on their rows; an owed release stays NULL; the scan's index holds no status", async () => {
    const conn = await databaseAtVersion(config, 6);
    try {
      const at = new Date('2026-12-01T00:00:00.123Z');
      const later = new Date('2026-12-01T00:05:00.456Z');
      const paid = new Date('2026-12-01T00:04:00.321Z');
      const applied = new Date('2026-12-01T00:05:01.789Z');
      const id = (i: number) => `00000000-0000-7000-8000-00000000000${i}`;
      await conn.query('INSERT INTO orders (order_id, sale, sku_id, user_id, quantity, status, created_at, due_at, paid_at, closed_at) VALUES ?', [
        [
          [id(0), 'ns/sale', 'phone', 'u-0', 1, 'UNPAID', at, later, null, null],
          [id(1), 'ns/sale', 'phone', 'u-1', 2, 'PAID', at, later, paid, null],
          [id(2), 'ns/sale', 'book', 'u-2', 3, 'CLOSED', at, later, null, later], // release pending
          [id(3), 'ns/sale', 'book', 'u-3', 1, 'CLOSED', at, later, null, later], // release applied
          [id(4), 'ns/sale', 'book', 'u-4', 1, 'CLOSED', at, later, null, at], // written CLOSED after a reap: no record
        ],
      ]);
      await conn.query('INSERT INTO stock_releases (order_id, sale, sku_id, user_id, quantity, created_at, applied_at) VALUES ?', [
        [
          [id(2), 'ns/sale', 'book', 'u-2', 3, later, null],
          [id(3), 'ns/sale', 'book', 'u-3', 1, later, applied],
        ],
      ]);
      assert.deepEqual(await migrate(config.mysql), [7]);
      const read = async () => (await conn.query('SELECT order_id, status, closed_at, settled_at FROM orders ORDER BY order_id'))[0];
      const expected = [
        { order_id: id(0), status: 'UNPAID', closed_at: null, settled_at: null },
        { order_id: id(1), status: 'PAID', closed_at: null, settled_at: paid },
        { order_id: id(2), status: 'CLOSED', closed_at: later, settled_at: null },
        { order_id: id(3), status: 'CLOSED', closed_at: later, settled_at: applied },
        { order_id: id(4), status: 'CLOSED', closed_at: at, settled_at: at },
      ];
      assert.deepEqual(await read(), expected);
      const [idx] = await conn.query(
        'SELECT index_name AS i, GROUP_CONCAT(column_name ORDER BY seq_in_index) AS cols FROM information_schema.statistics WHERE table_schema = ? AND table_name = ? GROUP BY index_name ORDER BY index_name',
        [config.mysql.database, 'orders'],
      );
      assert.deepEqual(idx, [
        { i: 'orders_sale_sku', cols: 'sale,sku_id' },
        { i: 'orders_settled_due', cols: 'settled_at,due_at' },
        { i: 'PRIMARY', cols: 'order_id' },
      ], 'no secondary index holds status or closed_at: a close rewrites none');
      const [format] = await conn.query("SELECT row_format AS f FROM information_schema.tables WHERE table_schema = ? AND table_name = 'orders'", [config.mysql.database]);
      assert.deepEqual(format, [{ f: 'Redundant' }], 'the rows are still updated in place');

      // A crash after the statements and before the schema_migrations row: they run again, harmlessly.
      for (const sql of migrations.find((m) => m.version === 7)?.statements ?? []) await conn.query(sql);
      assert.deepEqual(await read(), expected);

      // What the scan reads by the index: the overdue UNPAID order, and the one release owed.
      const scan = async (status: string) =>
        ((await conn.query(`SELECT order_id FROM orders FORCE INDEX (orders_settled_due) WHERE settled_at IS NULL AND due_at <= ? AND status = ? AND sale = ?`, [later, status, 'ns/sale']))[0] as { order_id: string }[]).map((r) => r.order_id);
      assert.deepEqual(await scan('UNPAID'), [id(0)]);
      assert.deepEqual(await scan('CLOSED'), [id(2)]);
      // A previous release's scan names the index that is gone: its query fails (logged, tried again
      // each interval) until the rollout replaces it (docs/install.md).
      await assert.rejects(conn.query("SELECT order_id FROM orders FORCE INDEX (orders_status_due) WHERE status = 'UNPAID' AND due_at <= ?", [later]), /orders_status_due/);
    } finally {
      await conn.end();
    }
  });
});
