// Failures around closing, against the real Kafka, Redis and MariaDB: a closer killed mid-batch,
// a crash between the MySQL commit and Redis, lost delay messages, two scanners at once, the
// scan lock, and a database that fails (3 retries, dead letter, then the scan recovers it).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { stringify } from 'yaml';
import { Compensator } from '../controller/dataplane/compensator.ts';
import { RetryWorker, TimeoutCloser } from '../controller/dataplane/timeout-closer.ts';
import type { Clock, OrderCloser } from '../controller/dataplane/close.ts';
import { RedisLease } from '../controller/infra/lock.ts';
import { createPool } from '../controller/infra/mysql.ts';
import { eventually } from './support/infra.ts';
import { logger, readTopic, saleDoc, trackedFixtures, type SaleFixture } from './support/timeouts.ts';

const fixture = trackedFixtures();

function compensator(f: SaleFixture, o: { graceMs?: number; useLock?: boolean; closer?: OrderCloser; chunkSize?: number; clock?: Clock } = {}): Compensator {
  return new Compensator({
    pool: f.pool,
    redis: f.redis,
    closer: o.closer ?? f.closer({ clock: o.clock }),
    clock: o.clock,
    saleKey: f.names.key,
    lockKey: f.names.redis.compensationLock,
    intervalMs: 60_000,
    graceMs: o.graceMs ?? 0,
    logger,
    metrics: f.metrics,
    useLock: o.useLock,
    chunkSize: o.chunkSize,
  });
}

/** Every order CLOSED exactly once, every release applied once and marked, Redis stock whole again. */
async function assertAllClosedOnce(f: SaleFixture, skuId: string, stock: number, n: number): Promise<void> {
  assert.equal(await f.count(`SELECT COUNT(*) FROM orders WHERE sale = ? AND status = 'CLOSED'`, [f.names.key]), n, 'every order closed');
  assert.equal(await f.count(`SELECT COUNT(*) FROM orders WHERE sale = ? AND status = 'CLOSED' AND settled_at IS NULL`, [f.names.key]), 0, 'every release applied and marked');
  assert.equal(await f.redis.scard(f.names.redis.sku(skuId).released), n, 'Redis saw each release once');
  assert.equal((await f.stock.level(skuId))?.remaining, stock, 'stock back exactly once');
  assert.equal(await f.redis.hlen(f.names.redis.sku(skuId).holdings), 0, 'every user slot freed');
  for (const s of (await f.statuses()).values()) assert.ok((s.closedAt as number) >= s.dueAt, 'never closed early');
}

describe('timeout recovery', () => {
  it('a closer process killed mid-batch and restarted: every due order closed once, every release applied once', { timeout: 120_000 }, async () => {
    const n = 4000;
    const f = await fixture({ skus: [{ id: 'sku', stock: n, timeoutBucket: 'b2' }], buckets: [{ name: 'b2', delay: '2s' }] });
    const dir = mkdtempSync(join(tmpdir(), 'fs-timeouts-'));
    const file = join(dir, 'sale.yaml');
    writeFileSync(file, stringify(saleDoc(f.sale.metadata.namespace, { skus: [{ id: 'sku', stock: n, timeoutBucket: 'b2' }], buckets: [{ name: 'b2', delay: '2s' }] })));
    const { host, port, database } = f.config.mysql;
    const spawnCloser = (): ChildProcess =>
      spawn(process.execPath, [fileURLToPath(new URL('../bin/flashsale.js', import.meta.url)), 'timeout-closer', '--bucket', 'b2', '-f', file], {
        env: { ...process.env, MYSQL_URL: `mysql://root@${host}:${port}/${database}`, HTTP_PORT: '0', HTTP_HOST: '127.0.0.1', LOG_LEVEL: 'error' },
        stdio: ['ignore', 'ignore', 'inherit'],
      });
    const closedCount = () => f.count(`SELECT COUNT(*) FROM orders WHERE sale = ? AND status = 'CLOSED'`, [f.names.key]);
    // Mid-burst by construction, not by timing: the test holds row locks on the last 200 orders
    // placed (the tail of every partition), so the killed closer cannot have closed them, while
    // the chunks before them close.
    const locker = await f.pool.getConnection();
    try {
      const orders = await f.place('sku', n, { dueAt: Date.now() - 1 });
      const held = orders.slice(-200).map((o) => o.orderId);
      await locker.beginTransaction();
      await locker.query('SELECT order_id FROM orders WHERE order_id IN (?) FOR UPDATE', [held]);
      const first = spawnCloser();
      const exited = new Promise((r) => first.once('exit', r));
      await eventually(async () => (await closedCount()) > 0, { intervalMs: 20, timeoutMs: 30_000, what: 'the first closes' });
      first.kill('SIGKILL');
      await exited;
      await locker.rollback();
      const atKill = await closedCount();
      logger.warn({ closedAtKill: atKill, of: n }, 'closer killed');
      assert.ok(atKill > 0 && atKill <= n - held.length, `killed mid-burst (${atKill} of ${n} closed), else the restart path is not exercised`);
      const second = spawnCloser();
      try {
        await eventually(async () => (await closedCount()) === n, { timeoutMs: 30_000, what: 'all closed after the restart' });
        // Offsets are committed only after close + Redis release, so the restarted closer met again
        // every order the killed one had closed but not committed, and released it itself. What the
        // scan may still find are settled_at marks the killed process had deferred: it re-runs the
        // idempotent script for them, which returns no units.
        const scan = await compensator(f).scanOnce();
        assert.deepEqual([scan.closed, scan.applied], [0, 0], 'nothing left to close or to release');
        await assertAllClosedOnce(f, 'sku', n, n);
      } finally {
        second.kill('SIGTERM');
        await new Promise((r) => second.once('exit', r));
      }
    } finally {
      await locker.rollback().catch(() => undefined);
      locker.release();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a crash between the MySQL commit and the Redis release is finished later, exactly once', { timeout: 60_000 }, async () => {
    const f = await fixture({ skus: [{ id: 'sku', stock: 100, timeoutBucket: 'b1' }], buckets: [{ name: 'b1', delay: '1s' }], partitions: 1 });
    let crashes = 0;
    const closer = f.closer({
      afterCommit: () => {
        if (crashes++ === 0) throw new Error('simulated crash after commit');
      },
    });
    // Without Kafka first: the close commits, Redis is never told.
    const early = await f.place('sku', 30, { dueAt: Date.now() - 10, produce: false });
    await assert.rejects(closer.close(early, 'closer'), /simulated crash/);
    assert.equal(await f.count(`SELECT COUNT(*) FROM orders WHERE status = 'CLOSED' AND settled_at IS NULL`), 30, 'closes committed, releases owed');
    assert.equal((await f.stock.level('sku'))?.remaining, 70, 'no units back yet');
    const scan = compensator(f);
    const r1 = await scan.scanOnce();
    assert.deepEqual({ closed: r1.closed, applied: r1.applied, pending: r1.pending }, { closed: 0, applied: 30, pending: 0 });
    const r2 = await scan.scanOnce();
    assert.equal(r2.applied, 0, 'a second scan applies nothing');
    assert.equal((await f.stock.level('sku'))?.remaining, 100);

    // Through Kafka: the crash sends the message to the retry topic; the retry finds the order
    // closed and finishes its pending release.
    crashes = 0;
    const common = { kafka: f.kafka, producer: f.producer, closer, names: f.names, logger, metrics: f.metrics, retryBaseMs: 100 };
    const workers = [new TimeoutCloser({ ...common, bucket: 'b1' }), new RetryWorker(common)];
    for (const w of workers) await w.start();
    const late = await f.place('sku', 30, { dueAt: Date.now() + 500 });
    await eventually(async () => (await f.count(`SELECT COUNT(*) FROM orders WHERE sale = ? AND status = 'CLOSED'`, [f.names.key])) === 60, { what: 'all closed' });
    await eventually(async () => (await f.count(`SELECT COUNT(*) FROM orders WHERE status = 'CLOSED' AND settled_at IS NULL`)) === 0, { what: 'pending releases applied' });
    assert.ok((await f.metric('flashsale_timeout_retries_total')) > 0, 'the crashed chunk went through the retry topic');
    assert.ok((await f.metric('flashsale_timeout_closes_total', { outcome: 'already_closed' })) > 0, 'the retry found its orders closed');
    assert.equal(late.length + early.length, 60);
    assert.equal((await scan.scanOnce()).applied, 0);
    await assertAllClosedOnce(f, 'sku', 100, 60);
    assert.equal(await f.metric('flashsale_stock_releases_applied_total'), 60);
    for (const w of workers) await w.stop();
  });

  it('delay messages never produced: the scan closes the orders after grace, and two scanners at once close each once', { timeout: 60_000 }, async () => {
    const n = 1200;
    const f = await fixture({ skus: [{ id: 'sku', stock: n, timeoutBucket: 'b1' }], buckets: [{ name: 'b1', delay: '1s' }] });
    const dueAt = Date.parse('2030-01-01T00:00:00.000Z');
    await f.place('sku', n, { dueAt, createdAt: dueAt - 1000, produce: false });
    const graceMs = 1000;
    // The scanners and their closers run on an injected clock: no sleeping into the grace period.
    let now = dueAt + 200;
    const clock = { now: () => now };
    // No lock: the conditional UPDATE alone must keep the two scanners from closing an order twice.
    const a = compensator(f, { graceMs, useLock: false, chunkSize: 100, clock });
    const b = compensator(f, { graceMs, useLock: false, chunkSize: 100, clock });
    const before = await Promise.all([a.scanOnce(), b.scanOnce()]);
    assert.equal(before[0].closed + before[1].closed, 0, 'nothing closed inside the grace period');
    now = dueAt + graceMs - 1;
    const edge = await Promise.all([a.scanOnce(), b.scanOnce()]);
    assert.equal(edge[0].closed + edge[1].closed, 0, 'nothing closed 1 ms before the grace ends');
    now = dueAt + graceMs;
    const results = await Promise.all([a.scanOnce(), b.scanOnce()]);
    logger.warn({ a: results[0].closed, b: results[1].closed }, 'two scanners');
    assert.equal(results[0].closed + results[1].closed, n, 'each order closed by exactly one scanner');
    assert.equal(await f.metric('flashsale_compensation_closes_total'), n);
    assert.equal(await f.metric('flashsale_stock_releases_pending'), 0);
    await assertAllClosedOnce(f, 'sku', n, n);
    for (const s of (await f.statuses()).values()) assert.ok((s.closedAt as number) >= s.dueAt + graceMs, 'closed only after the grace');
  });

  it('orders paid without settled_at (an API of the release before migration 7, during a rollout) are settled by the scan, never closed', { timeout: 60_000 }, async () => {
    const f = await fixture({ skus: [{ id: 'sku', stock: 10, timeoutBucket: 'b1' }], buckets: [{ name: 'b1', delay: '1s' }], partitions: 1 });
    const dueAt = Date.parse('2030-01-01T00:00:00.000Z');
    const orders = await f.place('sku', 3, { dueAt, createdAt: dueAt - 1000, produce: false });
    const [old, current, unpaid] = orders.map((o) => o.orderId) as [string, string, string];
    const paidAt = new Date(dueAt - 500);
    await f.pool.query("UPDATE orders SET status = 'PAID', paid_at = ? WHERE order_id = ?", [paidAt, old]);
    await f.pool.query("UPDATE orders SET status = 'PAID', paid_at = ?, settled_at = ? WHERE order_id = ?", [paidAt, paidAt, current]);
    const r = await compensator(f, { clock: { now: () => dueAt + 60_000 } }).scanOnce();
    assert.deepEqual([r.closed, r.pending], [1, 0], 'only the unpaid order closed');
    const [rows] = await f.pool.query('SELECT order_id, status, settled_at FROM orders ORDER BY order_id');
    const byId = new Map((rows as { order_id: string; status: string; settled_at: Date | null }[]).map((x) => [x.order_id, x]));
    assert.deepEqual([byId.get(old)?.status, byId.get(old)?.settled_at?.getTime()], ['PAID', paidAt.getTime()], 'settled at its pay time');
    assert.equal(byId.get(current)?.status, 'PAID');
    assert.equal(byId.get(unpaid)?.status, 'CLOSED');
    assert.equal((await f.stock.level('sku'))?.remaining, 8, 'the two paid units held, the closed one back');
  });

  it('the scan lock: one holder; only the token holder renews or releases it', { timeout: 60_000 }, async () => {
    const f = await fixture({ skus: [{ id: 'sku', stock: 10, timeoutBucket: 'b1' }], buckets: [{ name: 'b1', delay: '1s' }], partitions: 1 });
    const key = f.names.redis.compensationLock;
    const one = new RedisLease(f.redis, key, 5000);
    const two = new RedisLease(f.redis, key, 5000);
    assert.equal(await one.acquire(), true);
    assert.equal(await two.acquire(), false);
    assert.equal(await two.renew(), false);
    assert.equal(await two.release(), false, 'a non-holder cannot delete the lock');
    assert.ok((await f.redis.pttl(key)) > 0);
    // A locked-out scanner does nothing; a holder whose lease expired cannot extend it.
    await f.place('sku', 3, { dueAt: Date.now() - 1, produce: false });
    assert.deepEqual(await compensator(f).scanOnce(), { ran: false, closed: 0, applied: 0, pending: 0 });
    assert.equal(await one.renew(), true);
    await f.redis.set(key, 'someone-else', 'PX', 5000);
    assert.equal(await one.renew(), false, 'lost lease is not extended');
    assert.equal(await one.release(), false);
    assert.equal(await f.redis.get(key), 'someone-else', 'the new holder keeps it');
    await f.redis.del(key);
    const r = await compensator(f).scanOnce();
    assert.equal(r.ran, true);
    assert.equal(r.closed, 3);
    assert.equal(await f.redis.exists(key), 0, 'released after the scan');
  });

  it('a failing database: 3 retries, then the dead-letter topic; nothing lost once the database returns and the scan runs', { timeout: 60_000 }, async () => {
    const n = 20;
    const f = await fixture({ skus: [{ id: 'sku', stock: 50, timeoutBucket: 'b1' }], buckets: [{ name: 'b1', delay: '1s' }] });
    // A pool pointing at a port where no database listens.
    const deadPool = createPool({ ...f.config.mysql, port: 1 }, { connectionLimit: 2 });
    const closer = f.closer({ pool: deadPool });
    const common = { kafka: f.kafka, producer: f.producer, closer, names: f.names, logger, metrics: f.metrics, retryBaseMs: 100 };
    const workers = [new TimeoutCloser({ ...common, bucket: 'b1' }), new RetryWorker(common)];
    for (const w of workers) await w.start();
    try {
      const orders = await f.place('sku', n, { dueAt: Date.now() + 300 });
      const dead = await readTopic(f.kafka, f.names.topics.deadLetter, n);
      const records = dead.map((m) => JSON.parse(m.value?.toString() ?? '{}') as { source: string; reason: string; value: string });
      assert.equal(records.length, n);
      for (const r of records) {
        assert.equal(r.source, 'retry');
        assert.match(r.reason, /close failed after 3 retries: .*ECONNREFUSED/);
        assert.equal((JSON.parse(r.value) as { attempt: number }).attempt, 3);
      }
      assert.deepEqual(new Set(records.map((r) => (JSON.parse(r.value) as { orderId: string }).orderId)), new Set(orders.map((o) => o.orderId)));
      const retries = await readTopic(f.kafka, f.names.topics.retry, 3 * n);
      const attempts = retries.map((m) => (JSON.parse(m.value?.toString() ?? '{}') as { attempt: number }).attempt).sort();
      assert.deepEqual(attempts, [...Array(n).fill(1), ...Array(n).fill(2), ...Array(n).fill(3)], 'each order retried 3 times');
      assert.equal(await f.metric('flashsale_timeout_retries_total'), 3 * n);
      assert.equal(await f.metric('flashsale_dead_letters_total', { source: 'retry', reason: 'retries_exhausted' }), n);
      assert.equal(await f.count(`SELECT COUNT(*) FROM orders WHERE sale = ? AND status = 'UNPAID'`, [f.names.key]), n, 'still UNPAID, nothing lost');
      // The database is back (the scan uses the working pool): it closes them all.
      const r = await compensator(f).scanOnce();
      assert.equal(r.closed, n);
      await assertAllClosedOnce(f, 'sku', 50, n);
    } finally {
      for (const w of workers) await w.stop();
      await deadPool.end();
    }
  });
});
