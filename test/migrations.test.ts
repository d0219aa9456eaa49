// Migration 5 on a table that already holds orders: the (sale, sku_id) index replaces
// (sale, sku_id, status), so a status change (pay, close) rewrites one secondary index, not two.
// Against the real MariaDB, from a database at schema version 4 as shipped before.
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

      assert.deepEqual(await migrate(config.mysql), [5]);
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
