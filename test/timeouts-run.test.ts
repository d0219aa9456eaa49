// `flashsale run -f FILE` closes unpaid orders end to end: an order bought through the API and
// not paid is closed by the closer when due (payment then gets 409 ORDER_CLOSED), a paid order
// keeps its stock, and an overdue order with no timeout message is closed by the built-in scan.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { StockStore } from '../controller/dataplane/stock.ts';
import { createPool } from '../controller/infra/mysql.ts';
import { validateFlashSale } from '../controller/spec/flashsale.ts';
import { saleNames } from '../controller/spec/names.ts';
import { deleteRedisKeys, deleteTopics, dropDatabase, eventually, testConfig, testKafka, testRedis, uniqueName } from './support/infra.ts';
import { closeHttpAgent, http } from './support/order-path.ts';
import { saleDoc } from './support/timeouts.ts';

const namespace = uniqueName('tr');
const doc = saleDoc(
  namespace,
  { skus: [{ id: 'ebook', stock: 10, timeoutBucket: 'fast' }, { id: 'phone', stock: 10, timeoutBucket: 'slow' }], buckets: [{ name: 'fast', delay: '2s' }, { name: 'slow', delay: '1h' }] },
  { compensation: { interval: '1s', grace: '1s' } },
);
const sale = validateFlashSale(doc);
const names = saleNames(sale.metadata);
const config = testConfig();
const dir = mkdtempSync(join(tmpdir(), 'fs-run-'));
const file = join(dir, 'sale.yaml');
writeFileSync(file, stringify(doc));
let child: ChildProcess | undefined;

after(async () => {
  closeHttpAgent();
  if (child && child.exitCode === null && child.signalCode === null) {
    child.kill('SIGTERM');
    await new Promise((r) => child?.once('exit', r));
  }
  const kafka = testKafka();
  await deleteTopics(kafka, `flashsale.${namespace}.`).catch(() => undefined);
  await kafka.close();
  const redis = testRedis();
  await deleteRedisKeys(redis, names.redis.patterns);
  redis.disconnect();
  await dropDatabase(config);
  rmSync(dir, { recursive: true, force: true });
});

describe('flashsale run closes unpaid orders', () => {
  it('closer and compensation scan inside the standalone process', { timeout: 120_000 }, async () => {
    const { host, port, user, database } = config.mysql;
    child = spawn(process.execPath, [fileURLToPath(new URL('../bin/flashsale.js', import.meta.url)), 'run', '-f', file], {
      env: { ...process.env, MYSQL_URL: `mysql://${user}@${host}:${port}/${database}`, HTTP_PORT: '0', LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    const api = await eventually(() => /api listening on (http:\/\/\S+)/.exec(out)?.[1], { timeoutMs: 60_000, what: 'the API to listen' });
    const pool = createPool(config.mysql, { connectionLimit: 2 });
    const redis = testRedis();
    const stock = new StockStore(redis, sale);
    try {
      const buy = async (userId: string, skuId: string) => {
        // The order-path client checks every answer against docs/openapi.yaml.
        const res = await http('POST', `${api}/v1/sales/${sale.metadata.name}/orders`, { userId, skuId, quantity: 1 });
        assert.ok(res.status < 300, `buy answered ${res.status}`);
        return res.body.orderId as string;
      };
      const status = async (orderId: string) => {
        const [rows] = await pool.query('SELECT status, due_at, closed_at FROM orders WHERE order_id = ?', [orderId]);
        return (rows as { status: string; due_at: Date; closed_at: Date | null }[])[0];
      };
      const pay = (orderId: string) => http('POST', `${api}/v1/sales/${sale.metadata.name}/orders/${orderId}/pay`);

      const unpaid = await buy('alice', 'ebook');
      // The order to pay is in the 1 h bucket: in the 2 s bucket a slow machine could let the closer
      // win before the payment (a correct outcome the test would call wrong).
      const paid = await buy('bob', 'phone');
      await eventually(async () => (await status(paid))?.status === 'UNPAID', { what: 'the paid order written' });
      assert.equal((await pay(paid)).status, 200);

      // An order whose timeout message never existed (written straight to MySQL, due long ago).
      const lost = randomUUID();
      assert.equal((await stock.reserve({ orderId: lost, userId: 'carol', skuId: 'phone', quantity: 1, reservedAt: Date.now() }, 1)).outcome, 'reserved');
      assert.deepEqual(await stock.claim('phone', [lost]), ['claimed']);
      await pool.query(`INSERT INTO orders (order_id, sale, sku_id, user_id, quantity, status, created_at, due_at) VALUES (?, ?, 'phone', 'carol', 1, 'UNPAID', ?, ?)`, [
        lost, names.key, new Date(Date.now() - 7_200_000), new Date(Date.now() - 3_600_000),
      ]);

      const closed = await eventually(async () => {
        const s = await status(unpaid);
        return s?.status === 'CLOSED' ? s : null;
      }, { timeoutMs: 20_000, what: 'the unpaid order closed' });
      assert.ok((closed.closed_at as Date).getTime() >= closed.due_at.getTime(), 'not before due');
      const late = await pay(unpaid);
      assert.equal(late.status, 409);
      assert.deepEqual(late.body, { error: 'ORDER_CLOSED' });
      assert.equal((await status(paid))?.status, 'PAID');
      await eventually(async () => (await stock.level('ebook'))?.remaining === 10, { what: 'the closed unit back on sale' });
      assert.equal(await stock.holding('ebook', 'alice'), 0, 'alice may buy again');
      assert.equal(await stock.holding('phone', 'bob'), 1, 'the paid unit stays held');
      await eventually(async () => (await status(lost))?.status === 'CLOSED', { timeoutMs: 20_000, what: 'the scan closed the order with no message' });
      await eventually(async () => (await stock.level('phone'))?.remaining === 9, { what: 'the lost order\'s unit back, the paid one kept' });
      // Both releases applied and marked on their rows (the closer marks a little after a burst).
      const marked = async () => ((await pool.query("SELECT order_id FROM orders WHERE status = 'CLOSED' AND settled_at IS NOT NULL"))[0] as { order_id: string }[]).map((r) => r.order_id).sort();
      await eventually(async () => (await marked()).length === 2, { what: 'both releases marked' });
      assert.deepEqual(await marked(), [unpaid, lost].sort());
    } finally {
      redis.disconnect();
      await pool.end();
    }
  });
});
