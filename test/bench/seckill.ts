// `npm run bench:seckill`: the flash-sale order path under load, on this machine, in one process tree.
//   1. ceiling: a bare node:http server answering the same POSTs on the same port, same wrk settings;
//   2. rejection path: the real API (`flashsale api` process) on a sold-out SKU, half the buyers
//      already holding their order (ALREADY_ORDERED), half new (SOLD_OUT): req/s and p99;
//   3. accept path: distinct buyers on a SKU with stock to spare, with a `flashsale order-writer`
//      process: orders/s from the first request until the last row is in MySQL;
//   4. a raw multi-row INSERT rate into a copy of the orders table, measured in the same run;
//   5. checks: rows == min(stock, distinct buyers × limit) and == units reserved in Redis, nobody
//      above the limit, remaining == stock − sold.
// Prints a table and writes it to test/bench/RESULTS.md (section "seckill"). Bounded: about 1 min.
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, writeFileSync, existsSync, mkdtempSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { orderIdGenerator } from '../../controller/dataplane/order-id.ts';
import { dropDatabase, eventually, testConfig, testKafka, testRedis, uniqueName } from '../support/infra.ts';
import { http, closeHttpAgent, pool as makePool, provisionSale, removeSale, saleDoc } from '../support/order-path.ts';

const run = promisify(execFile);
const PORT = Number(process.env.BENCH_PORT ?? 18480);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 64);
// The accept path is bounded by connections ÷ hand-off latency (Little's law); a flash sale has
// thousands of concurrent buyers, so it runs with more connections than the req/s comparison.
const ACCEPT_CONNECTIONS = Number(process.env.BENCH_ACCEPT_CONNECTIONS ?? 256);
const SCARCE = 1000;
const BULK = 2_000_000;
const root = fileURLToPath(new URL('../../', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'seckill-'));

interface WrkResult {
  requests: number;
  seconds: number;
  rps: number;
  p50ms: number;
  p99ms: number;
  non2xx: number;
  errors: string;
}

function ms(v: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(v.trim());
  if (!m) return NaN;
  const n = Number(m[1]);
  return m[2] === 'us' ? n / 1000 : m[2] === 'ms' ? n : m[2] === 's' ? n * 1000 : n * 60_000;
}

/** One wrk run with a Lua script POSTing purchase bodies; userIds from a counter (mod `users` when > 0). */
async function wrk(name: string, path: string, sku: string, prefix: string, users = 0, connections = CONNECTIONS): Promise<WrkResult> {
  const script = join(work, `${name}.lua`);
  writeFileSync(
    script,
    `local counter = 0
request = function()
  counter = counter + 1
  local n = counter
  if ${users} > 0 then n = counter % ${users} end
  return wrk.format("POST", "${path}", {["Content-Type"] = "application/json"}, '{"userId":"${prefix}' .. n .. '","skuId":"${sku}"}')
end
`,
  );
  const { stdout } = await run('wrk', ['-t1', `-c${connections}`, `-d${SECONDS}s`, '--latency', '-s', script, `http://127.0.0.1:${PORT}${path}`], { maxBuffer: 1 << 20 });
  const req = /(\d+) requests in ([\d.]+)(s|m)/.exec(stdout);
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(stdout);
  const p50 = /\s50%\s+(\S+)/.exec(stdout);
  const p99 = /\s99%\s+(\S+)/.exec(stdout);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(stdout);
  const errors = /Socket errors: (.*)/.exec(stdout);
  if (!req || !rps || !p99 || !p50) throw new Error(`cannot read wrk output:\n${stdout}`);
  return {
    requests: Number(req[1]),
    seconds: Number(req[2]) * (req[3] === 'm' ? 60 : 1),
    rps: Number(rps[1]),
    p50ms: ms(p50[1] as string),
    p99ms: ms(p99[1] as string),
    non2xx: non2xx ? Number(non2xx[1]) : 0,
    errors: errors ? (errors[1] as string) : 'none',
  };
}

async function waitFor(url: string, timeoutMs = 30_000): Promise<void> {
  await eventually(async () => (await http('GET', url)).status === 200, { timeoutMs, intervalMs: 100, what: url });
}

async function stopChild(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  c.kill('SIGTERM');
  const timer = setTimeout(() => c.kill('SIGKILL'), 10_000);
  await once(c, 'exit');
  clearTimeout(timer);
}

function metric(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

const config = testConfig();
const kafka = testKafka('bench-seckill');
const redis = testRedis();
const db = makePool(config);
const sale = saleDoc(uniqueName('bench'), {
  skus: [
    { id: 'scarce', stock: SCARCE, timeoutBucket: 'short' },
    { id: 'bulk', stock: BULK, timeoutBucket: 'long' },
  ],
  kafka: { partitions: 6, replicationFactor: 1 },
});
const children: ChildProcess[] = [];

function flashsale(command: string): ChildProcess {
  const child = spawn(process.execPath, ['--disable-warning=TimeoutNegativeWarning', join(root, 'bin/flashsale.js'), command], {
    env: {
      ...process.env,
      FLASHSALE_SPEC: JSON.stringify(sale),
      MYSQL_URL: `mysql://${config.mysql.user}@${config.mysql.host}:${config.mysql.port}/${config.mysql.database}`,
      HTTP_PORT: command === 'api' ? String(PORT) : String(PORT + 1),
      HTTP_HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(child);
  return child;
}

const ctx = await provisionSale(sale, { config, kafka, redis, pool: db });
const base = `/v1/sales/${sale.metadata.name}/orders`;
try {
  // 1. The ceiling: bare node:http, same port, same requests. Measured before and after the
  // rejection run (the machine is shared; the mean of both is the ceiling).
  const bareRun = async (name: string) => {
    const bare = spawn(
      process.execPath,
      [
        '-e',
        `require('node:http').createServer((req, res) => { req.resume(); req.on('end', () => { res.writeHead(202, {'content-type': 'application/json', 'content-length': 2}); res.end('{}'); }); }).listen(${PORT}, '127.0.0.1');`,
      ],
      { stdio: 'inherit' },
    );
    children.push(bare);
    await eventually(async () => (await http('POST', `http://127.0.0.1:${PORT}/`, '{}')).status === 202, { what: 'bare server' });
    const r = await wrk(name, base, 'scarce', 'b-', 2 * SCARCE);
    await stopChild(bare);
    process.stderr.write(`${name}: ${r.rps} req/s\n`);
    return r;
  };
  const bare1 = await bareRun('bare-1');

  // 2. Rejection path: the scarce SKU sold to u-0..u-999, then half repeat buyers, half new ones.
  let api = flashsale('api');
  const writer = flashsale('order-writer');
  await waitFor(`http://127.0.0.1:${PORT}/readyz`);
  await waitFor(`http://127.0.0.1:${PORT + 1}/readyz`);
  const sold = await Promise.all(Array.from({ length: SCARCE }, (_, i) => http('POST', `http://127.0.0.1:${PORT}${base}`, { userId: `u-${i}`, skuId: 'scarce' })));
  assert.ok(sold.every((r) => r.status === 202), 'the scarce SKU sells out to its first 1,000 buyers');
  const before = (await http('GET', `http://127.0.0.1:${PORT}/metrics`)).text;
  const reject = await wrk('reject', base, 'scarce', 'u-', 2 * SCARCE);
  const afterReject = (await http('GET', `http://127.0.0.1:${PORT}/metrics`)).text;
  const soldOut = metric(afterReject, 'flashsale_api_requests_total', 'outcome="sold_out"') - metric(before, 'flashsale_api_requests_total', 'outcome="sold_out"');
  const already = metric(afterReject, 'flashsale_api_requests_total', 'outcome="already_ordered"') - metric(before, 'flashsale_api_requests_total', 'outcome="already_ordered"');
  assert.equal(reject.non2xx, reject.requests, 'the rejection run accepts nothing');
  process.stderr.write(`rejection path: ${reject.rps} req/s\n`);
  await stopChild(api);
  const bare2 = await bareRun('bare-2');
  const ceiling = { rps: (bare1.rps + bare2.rps) / 2, p50ms: (bare1.p50ms + bare2.p50ms) / 2, p99ms: (bare1.p99ms + bare2.p99ms) / 2 };
  api = flashsale('api');
  await waitFor(`http://127.0.0.1:${PORT}/readyz`);

  // 3. Accept path: distinct buyers of the bulk SKU; clock runs until the last row is in MySQL.
  const t0 = performance.now();
  const accept = await wrk('accept', base, 'bulk', 'a-', 0, ACCEPT_CONNECTIONS);
  // wrk hangs up with up to ACCEPT_CONNECTIONS requests still being decided: stop the API (it finishes
  // them and hands their orders off before it exits) before reading what Redis reserved.
  await stopChild(api);
  const level = await ctx.stock.level('bulk');
  assert.ok(level);
  const reserved = level.stock - level.remaining;
  await eventually(async () => {
    const [r] = await db.query('SELECT COUNT(*) AS n FROM orders WHERE sale = ? AND sku_id = ?', [ctx.key, 'bulk']);
    return Number((r as { n: number }[])[0]?.n) >= reserved;
  }, { timeoutMs: 120_000, intervalMs: 20, what: 'every accepted order in MySQL' });
  const acceptSeconds = (performance.now() - t0) / 1000;
  const ordersPerSecond = reserved / acceptSeconds;
  process.stderr.write(`accept path: ${ordersPerSecond.toFixed(0)} orders/s into MySQL\n`);
  await stopChild(writer);

  // 4. Raw multi-row INSERT rate on the same server: same row shape, 1,000-row statements, 3 at a time (as the writer).
  await db.query('CREATE TABLE bench_orders LIKE orders');
  const RAW = 60_000;
  const nextId = orderIdGenerator();
  const now = Date.now();
  const chunks = Array.from({ length: RAW / 1000 }, (_, c) =>
    Array.from({ length: 1000 }, (_, i) => [nextId(), ctx.key, 'bulk', `raw-${c}-${i}`, 1, 'UNPAID', new Date(now), new Date(now + 1_800_000), null]),
  );
  const r0 = performance.now();
  let nextChunk = 0;
  await Promise.all(
    Array.from({ length: 3 }, async () => {
      while (nextChunk < chunks.length) {
        const values = chunks[nextChunk++];
        await db.query('INSERT IGNORE INTO bench_orders (order_id, sale, sku_id, user_id, quantity, status, created_at, due_at, closed_at) VALUES ?', [values]);
      }
    }),
  );
  const rawPerSecond = RAW / ((performance.now() - r0) / 1000);
  await db.query('DROP TABLE bench_orders');

  // 5. Checks.
  // Only UNPAID rows hold units (a CLOSED row would be an order whose reservation was given back).
  const [counts] = await db.query("SELECT sku_id, COUNT(*) AS n, SUM(quantity) AS units FROM orders WHERE sale = ? AND status = 'UNPAID' GROUP BY sku_id", [ctx.key]);
  const bySku = new Map((counts as { sku_id: string; n: number; units: number }[]).map((r) => [r.sku_id, { n: Number(r.n), units: Number(r.units) }]));
  const [over] = await db.query('SELECT COUNT(*) AS n FROM (SELECT user_id FROM orders WHERE sale = ? GROUP BY sku_id, user_id HAVING SUM(quantity) > ?) x', [ctx.key, sale.spec.perUserLimit]);
  const scarceLevel = await ctx.stock.level('scarce');
  const checks: [string, boolean][] = [
    [`scarce: rows (${bySku.get('scarce')?.n}) == min(stock ${SCARCE}, distinct buyers ${2 * SCARCE} × limit 1)`, bySku.get('scarce')?.n === Math.min(SCARCE, 2 * SCARCE)],
    [`scarce: remaining (${scarceLevel?.remaining}) == stock − sold`, scarceLevel?.remaining === SCARCE - (bySku.get('scarce')?.units ?? 0)],
    [`bulk: rows (${bySku.get('bulk')?.n}) == units reserved in Redis (${reserved}) == stock − remaining`, bySku.get('bulk')?.n === reserved],
    [`bulk: wrk's 2xx answers (${accept.requests - accept.non2xx}) ≤ rows ≤ 2xx + open connections`, accept.requests - accept.non2xx <= reserved && reserved <= accept.requests - accept.non2xx + ACCEPT_CONNECTIONS],
    [`bulk: rows (${reserved}) == min(stock ${BULK}, distinct buyers × limit 1)`, reserved < BULK],
    [`nobody above the per-user limit (${Number((over as { n: number }[])[0]?.n)} users over)`, Number((over as { n: number }[])[0]?.n) === 0],
    ['the rejection run: every answer is SOLD_OUT or ALREADY_ORDERED', soldOut + already >= reject.requests],
  ];

  const f = (n: number, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
  const table = [
    `## seckill`,
    '',
    `Run ${new Date().toISOString()} on ${cpus().length} cores (${cpus()[0]?.model.trim()}), shared with Kafka, Redis, MariaDB and the load generator.`,
    `wrk -t1 -c${CONNECTIONS} -d${SECONDS}s, POST ${base} with a distinct JSON body per request (Lua counter); API and order writer each one Node process.`,
    '',
    '| measurement | figure | p50 | p99 | ratio |',
    '| --- | ---: | ---: | ---: | ---: |',
    `| bare node:http (ceiling), same port, same POSTs: mean of ${f(bare1.rps)} (before) and ${f(bare2.rps)} (after the rejection run) | ${f(ceiling.rps)} req/s | ${f(ceiling.p50ms, 2)} ms | ${f(ceiling.p99ms, 2)} ms | 1.00 |`,
    `| API rejection path (${f(soldOut)} SOLD_OUT + ${f(already)} ALREADY_ORDERED) | ${f(reject.rps)} req/s | ${f(reject.p50ms, 2)} ms | ${f(reject.p99ms, 2)} ms | ${(reject.rps / ceiling.rps).toFixed(2)} of bare (target ≥ 0.70) |`,
    `| API accept path, HTTP answers (202), wrk -c${ACCEPT_CONNECTIONS} | ${f(accept.rps)} req/s | ${f(accept.p50ms, 2)} ms | ${f(accept.p99ms, 2)} ms | |`,
    `| accepted orders into MySQL, first request → last row (${f(reserved)} orders in ${f(acceptSeconds, 1)} s) | ${f(ordersPerSecond)} orders/s | | | ${(ordersPerSecond / rawPerSecond).toFixed(2)} of raw INSERT (target ≥ 10,000/s) |`,
    `| raw multi-row INSERT, 1,000 rows/statement, 3 connections | ${f(rawPerSecond)} rows/s | | | 1.00 |`,
    '',
    'Checks:',
    '',
    ...checks.map(([what, ok]) => `- ${ok ? 'PASS' : 'FAIL'}: ${what}`),
    '',
  ].join('\n');
  process.stdout.write(`\n${table}\n`);

  const file = join(root, 'test/bench/RESULTS.md');
  const existing = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmark results\n\n';
  const begin = '<!-- seckill:begin -->';
  const end = '<!-- seckill:end -->';
  const section = `${begin}\n${table}${end}\n`;
  const next = existing.includes(begin) ? existing.replace(new RegExp(`${begin}[\\s\\S]*?${end}\\n?`), section) : `${existing.trimEnd()}\n\n${section}`;
  writeFileSync(file, next);
  if (checks.some(([, ok]) => !ok)) process.exitCode = 1;
} finally {
  for (const c of children) await stopChild(c).catch(() => undefined);
  closeHttpAgent();
  await removeSale(ctx, { kafka, redis });
  await kafka.close();
  redis.disconnect();
  await db.end();
  await dropDatabase(config);
}
