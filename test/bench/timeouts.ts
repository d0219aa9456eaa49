// `npm run bench:timeouts [-- --orders 100000 --rounds 3 --api-rounds 1 --modes closer,api,scan]`:
// bursts of unpaid orders whose due times fall inside one second, closed by the timeout closer
// (in this process, configured as timeout-closer-main.ts configures it). Real Kafka, Redis, MariaDB.
//   - closer rounds: the benchmark places --orders orders itself (reserve + claim in Redis, rows in
//     MySQL, timeout messages in due order), due evenly inside one second in the order placed, with
//     time-ordered ids (as the API and the order writer make them);
//   - api rounds: buyers POST orders to a `flashsale api` process for --api-seconds (wrk), a
//     `flashsale order-writer` process inserts the rows and publishes the timeout messages, the
//     closer closes them: the real path end to end (as many orders as the API accepts in that time);
//   - scan: the same burst with no delay messages at all, closed only by the compensation scan.
// After every closer and api round, the ceiling of the same run: the rate of raw conditional
// `UPDATE orders SET status='CLOSED' WHERE order_id=? AND status='UNPAID'` on the same table
// (--ceiling-connections connections, --ceiling-per-tx statements per transaction, as the closer's chunks).
// One JSON line per round is appended to test/bench/results/timeouts.jsonl; `npm run bench:report`
// renders RESULTS.md and the README from it. Exits non-zero, with the figure, on a missed target.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Compensator } from '../../controller/dataplane/compensator.ts';
import { orderIdGenerator } from '../../controller/dataplane/order-id.ts';
import { CLOSER_MYSQL_CONNECTIONS, RetryWorker, TimeoutCloser } from '../../controller/dataplane/timeout-closer.ts';
import { createPool, type PoolConnection } from '../../controller/infra/mysql.ts';
import { parseDuration } from '../../controller/spec/flashsale.ts';
import { eventually } from '../support/infra.ts';
import { logger, saleFixture, sleepUntil, type PlacedOrder, type SaleFixture } from '../support/timeouts.ts';
import { acceptedCount, settledAcceptedCount } from './lib/api-metrics.ts';
import { request } from './lib/http.ts';
import { appendRun, newBatchId, resultsFile, type CpuCost, type RunContext, type TimeoutsRun } from './lib/results.ts';
import { percentile } from './lib/stats.ts';
import { TARGETS, timeoutsBudgetLine, timeoutsSummary } from './lib/summary.ts';
import { choosePinning, CpuMeter, cpuSeconds, gitInfo, infraPids, machine, missingRoles, pinned, pipelinePorts, readVersions, stopChild } from './lib/system.ts';
import { CURVE_PERCENTILES, wrk } from './lib/wrk.ts';
import { applyRuntimeSettings } from '../../controller/runtime.ts';

// The MySQL floor runs in this process: the same V8 settings as the closer it is compared with.
applyRuntimeSettings();

const { values: args } = parseArgs({
  options: {
    orders: { type: 'string', default: process.env.BENCH_N ?? String(TARGETS.closeOrders) },
    rounds: { type: 'string', default: process.env.BENCH_ROUNDS ?? '3' },
    'api-rounds': { type: 'string', default: '1' },
    'api-seconds': { type: 'string', default: '1' },
    'api-connections': { type: 'string', default: '256' },
    'api-delay': { type: 'string', default: '10s' },
    modes: { type: 'string', default: process.env.BENCH_MODES ?? 'closer,api,scan' },
    'lead-ms': { type: 'string', default: process.env.BENCH_LEAD_MS },
    'ceiling-connections': { type: 'string', default: '6' },
    'ceiling-per-tx': { type: 'string', default: '500' },
    port: { type: 'string', default: process.env.BENCH_PORT ?? '18490' },
    results: { type: 'string' },
    'no-pin': { type: 'boolean', default: false },
  },
});
function positive(name: string, v: string | undefined): number {
  const n = Number(v);
  if (!(n > 0) || !Number.isFinite(n)) throw new Error(`--${name}: "${v}" must be a positive number`);
  return n;
}
const N = positive('orders', args.orders);
const ROUNDS = positive('rounds', args.rounds);
const API_ROUNDS = Number(args['api-rounds']);
const API_SECONDS = positive('api-seconds', args['api-seconds']);
const API_CONNECTIONS = positive('api-connections', args['api-connections']);
const API_DELAY = args['api-delay'] as string;
// Placing the burst must end before its due second: 0.1–0.9 ms per order measured here (idle to loaded), so 0.5 ms per order of lead.
const LEAD_MS = args['lead-ms'] ? positive('lead-ms', args['lead-ms']) : Math.max(10_000, Math.ceil(N * 0.5));
const CEILING_CONNECTIONS = positive('ceiling-connections', args['ceiling-connections']);
const CEILING_PER_TX = positive('ceiling-per-tx', args['ceiling-per-tx']);
const PORT = positive('port', args.port);
const MODES = (args.modes as string).split(',');
for (const m of MODES) if (!['closer', 'api', 'scan'].includes(m)) throw new Error(`--modes: "${m}" is not one of closer, api, scan`);
const FILE = args.results ?? resultsFile('timeouts');
const SMOKE = N < TARGETS.closeOrders || ROUNDS < 3;
const BUCKET = '2s';
const PARTITIONS = 6;
const root = fileURLToPath(new URL('../../', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'timeouts-'));
const pin = choosePinning(args['no-pin']);

/** The context of every line: versions read from the running systems through a throwaway fixture. */
async function runContext(): Promise<RunContext> {
  const f = await fixture({ skus: [{ id: 'sku', stock: 1, timeoutBucket: BUCKET }], buckets: [{ name: BUCKET, delay: BUCKET }], partitions: 1 });
  try {
    return {
      batch: newBatchId(),
      smoke: SMOKE,
      git: gitInfo(root),
      machine: machine(),
      versions: await readVersions({ pool: f.pool, redis: f.redis, kafkaPid: infraPids(pipelinePorts(f.config)).kafka[0] }),
      pinning: MODES.includes('api') ? `${pin.note} (api rounds only)` : 'not pinned (no HTTP load)',
    };
  } finally {
    await f.cleanup();
  }
}

/** N orders, due evenly inside one second from dueFrom in the order placed; messages produced in due order (as the writer does). */
async function placeBurst(f: SaleFixture, dueFrom: number, produce: boolean): Promise<{ orders: PlacedOrder[]; placeMs: number }> {
  const t0 = Date.now();
  const orders: PlacedOrder[] = [];
  const perCall = 2000;
  for (let i = 0; i < N; i += perCall) {
    const count = Math.min(perCall, N - i);
    // Due in the order placed, spread evenly over the second: in a sale an order is due a fixed
    // delay after the API accepted it and gave it its time-ordered id, so ids and due times rise together.
    orders.push(...(await f.place('sku', count, { createdAt: dueFrom - 2000, dueAt: (j) => dueFrom + Math.floor(((i + j) * 1000) / N), produce: false })));
  }
  if (produce) await f.produceTimeouts([...orders].sort((a, b) => a.dueAt - b.dueAt));
  return { orders, placeMs: Date.now() - t0 };
}

interface Measured {
  closed: number;
  early: number;
  closesPerSecond: number;
  delayMs: TimeoutsRun['delayMs'];
  curve: [number, number][];
  dueSpreadMs: number;
}

async function measure(f: SaleFixture, commits: CommitLog): Promise<Measured> {
  const committedAt = commits.times();
  const [rows] = await f.pool.query(`SELECT order_id, due_at, closed_at FROM orders WHERE sale = ? AND status = 'CLOSED'`, [f.names.key]);
  const list = rows as { order_id: string; due_at: Date; closed_at: Date }[];
  // Delay = when the close was durable (commit time seen by the closer, else closed_at) − due time.
  const closeAt = (r: (typeof list)[number]) => committedAt.get(r.order_id) ?? r.closed_at.getTime();
  const delays = list.map((r) => closeAt(r) - r.due_at.getTime()).sort((a, b) => a - b);
  const early = list.filter((r) => r.closed_at.getTime() < r.due_at.getTime() || closeAt(r) < r.due_at.getTime()).length;
  const closeTimes = list.map(closeAt);
  const dues = list.map((r) => r.due_at.getTime());
  const span = (xs: number[]) => (xs.length ? xs.reduce((m, x) => Math.max(m, x), -Infinity) - xs.reduce((m, x) => Math.min(m, x), Infinity) : 0);
  return {
    closed: list.length,
    early,
    closesPerSecond: list.length / Math.max(0.001, span(closeTimes) / 1000),
    delayMs: { p50: percentile(delays, 50), p90: percentile(delays, 90), p99: percentile(delays, 99), max: delays.at(-1) ?? NaN },
    curve: CURVE_PERCENTILES.map((p) => [p, percentile(delays, p)]),
    dueSpreadMs: span(dues),
  };
}

/**
 * The ceiling of the same run, on the same table: raw conditional UPDATEs closing `rows` fresh UNPAID
 * rows, one row per statement (`WHERE order_id = ? AND status = 'UNPAID'`) and, as the closer
 * batches them, one statement per chunk (`WHERE order_id IN (…) AND status = 'UNPAID'`); both over
 * CEILING_CONNECTIONS connections in transactions of CEILING_PER_TX rows.
 */
async function ceiling(f: SaleFixture, rows: number): Promise<NonNullable<TimeoutsRun['ceiling']>> {
  const mariadb = infraPids(pipelinePorts(f.config)).mariadb;
  const cpuNow = () => cpuSeconds(process.pid) + mariadb.reduce((s, p) => s + cpuSeconds(p), 0);
  // CEILING_CONNECTIONS connections, each taking the next CEILING_PER_TX ids until none are left.
  const chunked = async (ids: string[], work: (conn: PoolConnection, chunk: string[]) => Promise<void>) => {
    let next = 0;
    await Promise.all(
      Array.from({ length: CEILING_CONNECTIONS }, async () => {
        const conn = await f.pool.getConnection();
        try {
          while (next < ids.length) {
            const chunk = ids.slice(next, next + CEILING_PER_TX);
            next += chunk.length;
            await work(conn, chunk);
          }
        } finally {
          conn.release();
        }
      }),
    );
  };
  const rate = async (perStatement: 'one' | 'chunk') => {
    const sale = `${f.names.key}/ceiling`;
    const nextOrderId = orderIdGenerator();
    const ids = Array.from({ length: rows }, () => nextOrderId());
    const now = new Date();
    for (let i = 0; i < ids.length; i += 1000) {
      await f.pool.query('INSERT INTO orders (order_id, sale, sku_id, user_id, quantity, status, created_at, due_at) VALUES ?', [
        ids.slice(i, i + 1000).map((id, j) => [id, sale, 'sku', `ceiling-${i + j}`, 1, 'UNPAID', now, now]),
      ]);
    }
    let updated = 0;
    const closedAt = new Date();
    const c0 = cpuNow();
    const t0 = performance.now();
    await chunked(ids, async (conn, chunk) => {
      await conn.beginTransaction();
      if (perStatement === 'one') {
        for (const id of chunk) {
          const [r] = await conn.query("UPDATE orders SET status = 'CLOSED', closed_at = NOW(3) WHERE order_id = ? AND status = 'UNPAID'", [id]);
          updated += (r as { affectedRows: number }).affectedRows;
        }
      } else {
        const [r] = await conn.query("UPDATE orders SET status = 'CLOSED', closed_at = ? WHERE order_id IN (?) AND status = 'UNPAID'", [closedAt, chunk]);
        updated += (r as { affectedRows: number }).affectedRows;
      }
      await conn.commit();
    });
    const seconds = (performance.now() - t0) / 1000;
    const updateUs = ((cpuNow() - c0) / rows) * 1e6;
    // The other statement every close needs: the closed rows read back for the releases they owe
    // (what makes the stock come back), as the closer reads them (close.ts), chunk by chunk.
    const c1 = cpuNow();
    let read = 0;
    if (perStatement === 'chunk') {
      await chunked(ids, async (conn, chunk) => {
        await conn.beginTransaction();
        const [r] = await conn.query(
          `SELECT order_id, sku_id, user_id, quantity FROM orders FORCE INDEX (PRIMARY)
           WHERE order_id IN (?) AND sale = ? AND status = 'CLOSED' AND closed_at = ? AND settled_at IS NULL`,
          [chunk, sale, closedAt],
        );
        read += (r as unknown[]).length;
        await conn.commit();
      });
      if (read !== rows) throw new Error(`ceiling: ${read} of ${rows} closed rows read back`);
    }
    const releaseReadUs = ((cpuNow() - c1) / rows) * 1e6;
    await f.pool.query('DELETE FROM orders WHERE sale = ?', [sale]);
    if (updated !== rows) throw new Error(`ceiling: ${updated} of ${rows} conditional UPDATEs changed a row`);
    return { perSecond: rows / seconds, updateUs, releaseReadUs };
  };
  const updatesPerSecond = (await rate('one')).perSecond;
  const chunk = await rate('chunk');
  return {
    updatesPerSecond,
    chunkedPerSecond: chunk.perSecond,
    rows,
    connections: CEILING_CONNECTIONS,
    perTransaction: CEILING_PER_TX,
    cpuUsPerRow: { update: chunk.updateUs, releaseRead: chunk.releaseReadUs },
  };
}

/** The closer and its retry worker, as timeout-closer-main.ts runs them; commit times recorded per order. */
/**
 * Commit times of the orders closed, as the closer reports them after each chunk: appended per chunk
 * and turned into a map per order only after the round. A Map.set per order in the report (the
 * closer's thread, inside the burst) cost 71 ms of a 2.1-s burst in a CPU profile (2026-12-07),
 * about 0.7 µs per close that the benchmark, not the closer, spent.
 */
class CommitLog {
  private readonly chunks: { ids: string[]; at: number }[] = [];
  count = 0;

  add(ids: string[], at: number): void {
    this.chunks.push({ ids, at });
    this.count += ids.length;
  }

  times(): Map<string, number> {
    const m = new Map<string, number>();
    for (const c of this.chunks) for (const id of c.ids) m.set(id, c.at);
    return m;
  }
}

async function startCloser(f: SaleFixture, commits: CommitLog) {
  const pool = createPool(f.config.mysql, { connectionLimit: CLOSER_MYSQL_CONNECTIONS });
  let waiter: { n: number; resolve: () => void } | undefined;
  const closer = f.closer({
    pool,
    deferMarking: { idleMs: 200, maxMs: 5000 },
    afterCommit: (ids) => {
      commits.add(ids, Date.now());
      if (waiter && commits.count >= waiter.n) waiter.resolve();
    },
  });
  /**
   * Resolves once `n` orders were committed closed, as the closer reports them: the round's end
   * without a COUNT over the orders table every 250 ms, which cost MariaDB CPU inside the burst.
   */
  const closedAtLeast = (n: number, timeoutMs: number): Promise<void> =>
    commits.count >= n
      ? Promise.resolve()
      : new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`${commits.count} of ${n} orders closed within ${timeoutMs} ms`)), timeoutMs);
          waiter = {
            n,
            resolve: () => {
              clearTimeout(timer);
              resolve();
            },
          };
        });
  const common = { kafka: f.kafka, producer: f.producer, closer, names: f.names, logger, metrics: f.metrics };
  const workers = [new TimeoutCloser({ ...common, bucket: f.sale.spec.timeoutBuckets[0]?.name as string, partitionsConsumedConcurrently: PARTITIONS }), new RetryWorker(common)];
  for (const w of workers) await w.start();
  return {
    closer,
    workers,
    closedAtLeast,
    async stop() {
      for (const w of workers) await w.stop();
      await closer.flushMarks();
      await pool.end();
    },
  };
}

/** A fresh sale; provisioning is retried (topic creation on a busy broker can answer UNKNOWN_TOPIC_OR_PARTITION). */
async function fixture(setup: Parameters<typeof saleFixture>[0]): Promise<SaleFixture> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await saleFixture(setup);
    } catch (err) {
      if (attempt >= 3) throw err;
      process.stderr.write(`provisioning a sale failed (${String(err)}), attempt ${attempt + 1} of 3\n`);
    }
  }
}

const unpaid = (f: SaleFixture) => f.count(`SELECT COUNT(*) FROM orders WHERE sale = ? AND status = 'UNPAID'`, [f.names.key]);

/**
 * CPU of the closing: this process (the closer runs here), Redis, MariaDB, Kafka, and any extra
 * process. The processes are looked up at once (a scan of /proc: 20-35 ms on this thread, which is
 * the closer's; at the due time it held back the burst's start) and counted from begin().
 */
function closeMeter(f: SaleFixture, extra: Record<string, number[]> = {}) {
  const roles = { closer: [process.pid], ...infraPids(pipelinePorts(f.config)), ...extra };
  const meter = new CpuMeter(roles);
  return {
    begin(): (closed: number) => CpuCost {
      meter.begin();
      return (closed) => {
        const seconds = meter.end();
        const total = Object.values(seconds).reduce((a, b) => a + b, 0);
        return { seconds, total, units: closed, usPerUnit: (total / closed) * 1e6, missing: missingRoles(roles) };
      };
    },
  };
}

/**
 * The closer runs in this process, which has just placed the burst (100,000 rows and messages): a
 * full collection of that garbage came 0.2 s into the burst (40-55 ms on the closer's thread). A
 * closer process never places orders, so it is collected before the due time (npm run
 * bench:timeouts passes --expose-gc; without it, nothing is done).
 */
function collectPlacingGarbage(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

const ctx = await runContext();
process.stderr.write(`batch ${ctx.batch}${SMOKE ? ' (smoke: shorter than the full run, not reported)' : ''}; versions ${JSON.stringify(ctx.versions)}\n`);
const lines: TimeoutsRun[] = [];

function record(which: TimeoutsRun['which'], round: number, m: Measured, orders: number, bucket: string, ceil: TimeoutsRun['ceiling'], cpu: CpuCost, notes: string[], checks: TimeoutsRun['checks']): void {
  const line: TimeoutsRun = {
    bench: 'timeouts',
    ...ctx,
    timestamp: new Date().toISOString(),
    which,
    round,
    params: { orders, bucket, partitions: PARTITIONS, dueSpreadMs: m.dueSpreadMs, ...(which === 'api' ? {} : { dueInIdOrder: true }) },
    orders,
    closed: m.closed,
    early: m.early,
    closesPerSecond: m.closesPerSecond,
    delayMs: m.delayMs,
    curve: m.curve,
    ceiling: ceil,
    cpu,
    notes,
    checks: [{ what: `every order closed (${m.closed} of ${orders})`, ok: m.closed === orders }, { what: `no order closed before it was due (${m.early} early)`, ok: m.early === 0 }, ...checks],
  };
  appendRun(FILE, line);
  lines.push(line);
  const s = (ms: number) => (ms / 1000).toFixed(3);
  process.stderr.write(
    `${which} round ${round}: ${m.closed}/${orders} closed, ${m.early} early, due within ${s(m.dueSpreadMs)} s, delay p50 ${s(m.delayMs.p50)} s p99 ${s(m.delayMs.p99)} s max ${s(m.delayMs.max)} s, ` +
      `${Math.round(m.closesPerSecond)} closes/s, CPU ${cpu.usPerUnit.toFixed(0)} µs per close${ceil ? `, ceiling ${Math.round(ceil.updatesPerSecond)} rows/s one per UPDATE, ${Math.round(ceil.chunkedPerSecond)} rows/s ${ceil.perTransaction} per UPDATE` : ''}\n`,
  );
  for (const c of line.checks) if (!c.ok) process.stderr.write(`  FAIL: ${c.what}\n`);
}

async function closerRound(round: number): Promise<void> {
  const f = await fixture({ skus: [{ id: 'sku', stock: N, timeoutBucket: BUCKET }], buckets: [{ name: BUCKET, delay: BUCKET }], partitions: PARTITIONS });
  const commits = new CommitLog();
  try {
    const c = await startCloser(f, commits);
    const dueFrom = Date.now() + LEAD_MS;
    const { orders, placeMs } = await placeBurst(f, dueFrom, true);
    if (Date.now() >= dueFrom) throw new Error(`placing ${N} orders took ${placeMs} ms, past the due second: raise --lead-ms`);
    const meter = closeMeter(f);
    collectPlacingGarbage();
    await sleepUntil(dueFrom);
    const cpu = meter.begin();
    await c.closedAtLeast(orders.length, 300_000);
    const cpuCost = cpu(orders.length);
    await c.stop();
    const st = c.workers[0]?.worker.stats;
    const timings = Object.entries(c.closer.timings).map(([k, v]) => `${k} ${Math.round(v)}`).join(', ');
    const m = await measure(f, commits);
    record('closer', round, m, orders.length, BUCKET, await ceiling(f, N), cpuCost, [
      `placed in ${placeMs} ms`,
      `${st?.batches} batches, ${st?.chunks} close transactions (avg ${Math.round(N / Math.max(1, st?.chunks ?? 1))} orders); ms summed over concurrent chunks: ${timings}`,
    ], []);
  } finally {
    await f.cleanup();
  }
}

async function apiRound(round: number): Promise<void> {
  const STOCK = 10_000_000;
  const f = await fixture({ skus: [{ id: 'sku', stock: STOCK, timeoutBucket: 'api' }], buckets: [{ name: 'api', delay: API_DELAY }], partitions: PARTITIONS });
  const commits = new CommitLog();
  const children: ChildProcess[] = [];
  const flashsale = (command: string, port: number, core: number | null) => {
    const [cmd, argv] = pinned(core, [process.execPath, join(root, 'bin/flashsale.js'), command]);
    const child = spawn(cmd, argv, {
      env: {
        ...process.env,
        FLASHSALE_SPEC: JSON.stringify(f.sale),
        MYSQL_URL: `mysql://${f.config.mysql.user}@${f.config.mysql.host}:${f.config.mysql.port}/${f.config.mysql.database}`,
        HTTP_PORT: String(port),
        HTTP_HOST: '127.0.0.1',
        LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    children.push(child);
    return child;
  };
  try {
    const c = await startCloser(f, commits);
    const api = flashsale('api', PORT, pin.serverCore);
    const writer = flashsale('order-writer', PORT + 1, null);
    for (const p of [PORT, PORT + 1]) await eventually(async () => (await request('GET', `http://127.0.0.1:${p}/readyz`)).status === 200, { timeoutMs: 30_000, what: `readyz on ${p}` });
    const url = `http://127.0.0.1:${PORT}`;
    const acceptedBefore = await acceptedCount(url);
    const r = await wrk({
      name: `api-${round}`, workDir: work, url, path: `/v1/sales/${f.sale.metadata.name}/orders`, skuId: 'sku', prefix: `t${round}-`, users: 0,
      connections: API_CONNECTIONS, seconds: API_SECONDS, threads: 1, core: pin.loadCore,
    });
    const answered = (await settledAcceptedCount(url, Math.min(20_000, Math.max(1000, 2 * r.latencyMs.max)))) - acceptedBefore;
    await stopChild(api); // hands every accepted order off before it exits
    const level = await f.stock.level('sku');
    const accepted = STOCK - (level?.remaining ?? NaN);
    const rows = await eventually(async () => {
      const n = await f.count('SELECT COUNT(*) FROM orders WHERE sale = ?', [f.names.key]);
      return n >= accepted ? n : undefined;
    }, { timeoutMs: 120_000, intervalMs: 100, what: `${accepted} accepted orders in MySQL` });
    // From the first due time to the last close (the writer, idle by then, is counted too).
    const [due] = await f.pool.query('SELECT MIN(due_at) AS first FROM orders WHERE sale = ?', [f.names.key]);
    const meter = closeMeter(f, { writer: [writer.pid as number] });
    await sleepUntil(((due as { first: Date }[])[0]?.first ?? new Date()).getTime());
    const cpu = meter.begin();
    await eventually(async () => (await unpaid(f)) === 0, { timeoutMs: 300_000 + parseDuration(API_DELAY), intervalMs: 250, what: 'every order closed' });
    const cpuCost = cpu(accepted);
    await c.stop();
    await stopChild(writer);
    const m = await measure(f, commits);
    const wrk2xx = r.requests - r.non2xx;
    record('api', round, m, accepted, `api (${API_DELAY})`, await ceiling(f, Math.max(accepted, 1000)), cpuCost, [
      `wrk -c${API_CONNECTIONS} -d${API_SECONDS}s: ${wrk2xx} answers 202 seen by wrk, ${accepted} orders accepted (units reserved)`,
    ], [
      { what: `rows (${rows}) == 202 answers counted by the API (${answered}) == units reserved in Redis (${accepted})`, ok: rows === accepted && rows === answered },
      { what: `wrk's 2xx (${wrk2xx}) ≤ accepted (${accepted}) ≤ 2xx + connections`, ok: wrk2xx <= accepted && accepted <= wrk2xx + API_CONNECTIONS },
    ]);
  } finally {
    for (const ch of children) await stopChild(ch).catch(() => undefined);
    await f.cleanup();
  }
}

async function scanOnly(): Promise<void> {
  const f = await fixture({ skus: [{ id: 'sku', stock: N, timeoutBucket: BUCKET }], buckets: [{ name: BUCKET, delay: BUCKET }], partitions: PARTITIONS });
  const { interval, grace } = f.sale.spec.compensation;
  const commits = new CommitLog();
  try {
    const closer = f.closer({ afterCommit: (ids) => commits.add(ids, Date.now()) });
    const scan = new Compensator({
      pool: f.pool, redis: f.redis, closer, saleKey: f.names.key, lockKey: f.names.redis.compensationLock,
      intervalMs: parseDuration(interval), graceMs: parseDuration(grace), logger, metrics: f.metrics,
    });
    const dueFrom = Date.now() + LEAD_MS;
    const { orders } = await placeBurst(f, dueFrom, false); // the delay messages are "lost"
    const cpu = closeMeter(f).begin();
    scan.start();
    await eventually(async () => (await unpaid(f)) === 0, { timeoutMs: 300_000, intervalMs: 500, what: 'every order closed by the scan' });
    const cpuCost = cpu(orders.length);
    await scan.stop();
    record('scan', 1, await measure(f, commits), orders.length, BUCKET, null, cpuCost, [`compensation scan only: interval ${interval}, grace ${grace}`], []);
  } finally {
    await f.cleanup();
  }
}

try {
  if (MODES.includes('closer')) for (let r = 1; r <= ROUNDS; r++) await closerRound(r);
  if (MODES.includes('api')) for (let r = 1; r <= API_ROUNDS; r++) await apiRound(r);
  if (MODES.includes('scan')) await scanOnly();
} finally {
  rmSync(work, { recursive: true, force: true });
}

const s = timeoutsSummary(lines);
process.stdout.write(
  [
    '',
    `timeouts batch ${s.batch}: ${N} orders per closer round, ${ROUNDS} round(s), modes ${MODES.join(',')}`,
    `  ${timeoutsBudgetLine(s)}`,
    ...s.verdicts.map((v) => `  ${v.ok ? 'TARGET MET' : 'TARGET MISSED'}: ${v.what}: ${v.figure}`),
    ...s.checksFailed.map((c) => `  CHECK FAILED: ${c}`),
    `  raw results appended to ${FILE} (${lines.length} lines); \`npm run bench:report\` renders RESULTS.md and the README${SMOKE ? ' (this smoke batch is skipped by the report)' : ''}`,
    '',
  ].join('\n'),
);
process.exit(s.verdicts.every((v) => v.ok) && s.checksFailed.length === 0 ? 0 : 1);
