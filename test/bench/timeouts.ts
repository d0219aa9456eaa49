// `npm run bench:timeouts`: a burst of N unpaid orders whose due times fall inside the same second
// (bucket 2s), closed by the timeout closer; then the same burst with the closer stopped and
// only the compensation scan (spec defaults: interval 30s, grace 10s) to show what losing the
// Kafka delay messages costs. Real Kafka, Redis and MariaDB; the closer runs in this process.
// Prints a table and replaces the "timeouts" section of test/bench/RESULTS.md.
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Compensator } from '../../controller/dataplane/compensator.ts';
import { parseDuration } from '../../controller/spec/flashsale.ts';
import { RetryWorker, TimeoutCloser } from '../../controller/dataplane/timeout-closer.ts';
import { eventually } from '../support/infra.ts';
import { logger, saleFixture, sleepUntil, type PlacedOrder, type SaleFixture } from '../support/timeouts.ts';

const N = Number(process.env.BENCH_N ?? 20_000);
const LEAD_MS = Number(process.env.BENCH_LEAD_MS ?? 10_000);
if (!(N >= 1)) throw new Error('BENCH_N must be a positive number');

interface Row {
  mode: string;
  orders: number;
  closed: number;
  early: number;
  closesPerSec: number;
  p50: number;
  p99: number;
  max: number;
  placeMs: number;
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

/** N orders, due uniformly inside one second starting at dueFrom; messages produced in due order (as the writer does). */
async function placeBurst(f: SaleFixture, dueFrom: number, produce: boolean): Promise<{ orders: PlacedOrder[]; placeMs: number }> {
  const t0 = Date.now();
  const orders: PlacedOrder[] = [];
  const perCall = 2000;
  for (let i = 0; i < N; i += perCall) {
    const count = Math.min(perCall, N - i);
    const part = await f.place('sku', count, { createdAt: dueFrom - 2000, dueAt: () => dueFrom + Math.floor(Math.random() * 1000), produce: false });
    orders.push(...part);
  }
  if (produce) await f.produceTimeouts([...orders].sort((a, b) => a.dueAt - b.dueAt));
  return { orders, placeMs: Date.now() - t0 };
}

async function measure(f: SaleFixture, mode: string, orders: PlacedOrder[], placeMs: number, committedAt: Map<string, number>): Promise<Row> {
  const [rows] = await f.pool.query(`SELECT order_id, due_at, closed_at FROM orders WHERE sale = ? AND status = 'CLOSED'`, [f.names.key]);
  const list = rows as { order_id: string; due_at: Date; closed_at: Date }[];
  // Delay = when the close was durable (commit time seen by the closer, else closed_at) − due time.
  const delays = list.map((r) => (committedAt.get(r.order_id) ?? r.closed_at.getTime()) - r.due_at.getTime()).sort((a, b) => a - b);
  const early = list.filter((r) => r.closed_at.getTime() < r.due_at.getTime() || (committedAt.get(r.order_id) ?? Infinity) < r.due_at.getTime()).length;
  const closeTimes = list.map((r) => committedAt.get(r.order_id) ?? r.closed_at.getTime());
  const firstClose = Math.min(...closeTimes);
  const lastClose = Math.max(...closeTimes);
  return {
    mode,
    orders: orders.length,
    closed: list.length,
    early,
    closesPerSec: Math.round(list.length / Math.max(0.001, (lastClose - firstClose) / 1000)),
    p50: pct(delays, 50),
    p99: pct(delays, 99),
    max: delays.at(-1) ?? NaN,
    placeMs,
  };
}

const breakdowns: string[] = [];

async function withCloser(round: number): Promise<Row> {
  const f = await saleFixture({ skus: [{ id: 'sku', stock: N, timeoutBucket: '2s' }], buckets: [{ name: '2s', delay: '2s' }], partitions: 6 });
  const committedAt = new Map<string, number>();
  try {
    // As timeout-closer-main.ts configures it.
    const closer = f.closer({ deferMarking: { idleMs: 200, maxMs: 5000 }, afterCommit: (ids) => {
      const t = Date.now();
      for (const id of ids) committedAt.set(id, t);
    } });
    const common = { kafka: f.kafka, producer: f.producer, closer, names: f.names, logger, metrics: f.metrics };
    const workers = [new TimeoutCloser({ ...common, bucket: '2s', partitionsConsumedConcurrently: Number(process.env.BENCH_CONC ?? 6) }), new RetryWorker(common)];
    for (const w of workers) await w.start();
    const dueFrom = Date.now() + LEAD_MS;
    const { orders, placeMs } = await placeBurst(f, dueFrom, true);
    if (Date.now() >= dueFrom) throw new Error(`placing ${N} orders took ${placeMs} ms, past the due second: raise BENCH_LEAD_MS`);
    await sleepUntil(dueFrom);
    await eventually(async () => (await f.count(`SELECT COUNT(*) FROM orders WHERE sale = ? AND status = 'UNPAID'`, [f.names.key])) === 0, { timeoutMs: 120_000, intervalMs: 250, what: 'all closed' });
    for (const w of workers) await w.stop();
    await closer.flushMarks();
    const st = workers[0]?.worker.stats;
    const ms = Object.entries(closer.timings).map(([k, v]) => `${k} ${Math.round(v)}`).join(', ');
    breakdowns.push(`round ${round}: ${st?.batches} batches, ${st?.chunks} close transactions (avg ${Math.round(N / Math.max(1, st?.chunks ?? 1))} orders), ms summed over the concurrent chunks: ${ms}`);
    process.stderr.write(`${breakdowns.at(-1)}\n`);
    return await measure(f, `timeout closer, round ${round}`, orders, placeMs, committedAt);
  } finally {
    await f.cleanup();
  }
}

async function scanOnly(): Promise<Row & { interval: string; grace: string }> {
  const f = await saleFixture({ skus: [{ id: 'sku', stock: N, timeoutBucket: '2s' }], buckets: [{ name: '2s', delay: '2s' }], partitions: 6 });
  const { interval, grace } = f.sale.spec.compensation;
  const committedAt = new Map<string, number>();
  try {
    const closer = f.closer({ afterCommit: (ids) => {
      const t = Date.now();
      for (const id of ids) committedAt.set(id, t);
    } });
    const scan = new Compensator({
      pool: f.pool, redis: f.redis, closer, saleKey: f.names.key, lockKey: f.names.redis.compensationLock,
      intervalMs: parseDuration(interval), graceMs: parseDuration(grace), logger, metrics: f.metrics,
    });
    const dueFrom = Date.now() + LEAD_MS;
    const { orders, placeMs } = await placeBurst(f, dueFrom, false); // the delay messages are "lost"
    scan.start();
    await eventually(async () => (await f.count(`SELECT COUNT(*) FROM orders WHERE sale = ? AND status = 'UNPAID'`, [f.names.key])) === 0, { timeoutMs: 180_000, intervalMs: 500, what: 'all closed by the scan' });
    await scan.stop();
    return { ...(await measure(f, `compensation scan only (interval ${interval}, grace ${grace})`, orders, placeMs, committedAt)), interval, grace };
  } finally {
    await f.cleanup();
  }
}

const started = Date.now();
// BENCH_MODES=closer runs only the first mode, BENCH_WRITE=0 leaves RESULTS.md alone (for tuning runs).
const modes = (process.env.BENCH_MODES ?? 'closer,scan').split(',');
const rows: Row[] = [];
// The machine is shared, so one round can land on a busy moment: several rounds show the spread.
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
if (modes.includes('closer')) for (let r = 1; r <= rounds; r++) rows.push(await withCloser(r));
if (modes.includes('scan')) rows.push(await scanOnly());
const sec = (ms: number) => (ms / 1000).toFixed(3);
const table = [
  '| mode | orders | closed | closed early | closes/s | delay p50 (s) | delay p99 (s) | delay max (s) |',
  '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...rows.map((r) => `| ${r.mode} | ${r.orders} | ${r.closed} | ${r.early} | ${r.closesPerSec} | ${sec(r.p50)} | ${sec(r.p99)} | ${sec(r.max)} |`),
].join('\n');
const section = `## timeouts

\`npm run bench:timeouts\` — ${new Date().toISOString()}, ${cpus().length} CPU(s) shared with other work, Kafka 3.9.1 / Redis / MariaDB on 127.0.0.1.
N = ${N} unpaid orders of one SKU in bucket \`2s\`, due times uniform inside one second; timeout messages produced in due
order to 6 partitions; closer in-process (6 partitions consumed concurrently, 500-order close transactions). Delay = commit
time of the close − due time. closes/s = closed orders / (last close − first close); with the closer it cannot exceed the burst's own rate
(N per second of due times), since nothing is closed before it is due.
Target: p99 ≤ 1 s with zero early closes.

${table}

Each closer round is a fresh sale with its own burst. Where the closer's time went (MySQL statements of the close
transaction, the Redis release script, marking releases applied):

${breakdowns.map((b) => `- ${b}`).join('\n')}

The last row is the same burst with no delay messages at all (the closer stopped / Kafka messages lost): only the
compensation scan closes them, at most interval + grace after they fall due. Run took ${Math.round((Date.now() - started) / 1000)} s.
`;
process.stdout.write(`\n${table}\n`);
if (process.env.BENCH_WRITE === '0') process.exit(0);
const resultsFile = fileURLToPath(new URL('./RESULTS.md', import.meta.url));
const current = existsSync(resultsFile) ? readFileSync(resultsFile, 'utf8') : '# Benchmark results\n';
// Replace only our section (between its markers, as the seckill section does), keep everything else.
const block = `<!-- timeouts:begin -->\n${section.trimEnd()}\n<!-- timeouts:end -->`;
const re = /<!-- timeouts:begin -->[\s\S]*?<!-- timeouts:end -->/;
const next = re.test(current) ? current.replace(re, () => block) : `${current.trimEnd()}\n\n${block}\n`;
writeFileSync(resultsFile, next);
process.stdout.write(`wrote the timeouts section of ${resultsFile}\n`);
process.exit(0);
