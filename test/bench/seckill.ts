// `npm run bench:seckill [-- --duration 10s --connections 64 --accept-connections 256 --pairs 3
// --reject-rounds 15 --reject-launches 5 --reject-seconds 2s]`: the flash-sale order path under load
// against a bare node:http ceiling measured in the same run, in alternating measured runs.
//   - Rejection rounds first: the bare server, the rejection floor, the connected floor and the API
//     are started (afresh for every 3 rounds: 5 launches of each, since one launch of a Node process
//     is one draw of its speed), warmed up, and measured in short slices, round after round, bare
//     between the floors and the API (floor → connected floor → bare → API, the next round the
//     reverse), each slice after 1 s of unmeasured load, so each run compared with bare is near it
//     and a drift of the shared machine lands on both.
//     10-s runs a pair apart left the ratio to that drift: identical code gave 0.72 to 1.01 on
//     2026-12-04, and on that day's machine one server's rate moved by 1.5× from one 3-s slice to
//     the next (so: short slices, many rounds).
//   - Then accept pairs: bare (accept settings) → API accept path, each process started for its run.
//   - bare: a node:http server answering the same POSTs (the ceiling);
//   - reject-floor: only what every rejection needs, the same answers (lib/rejection-floor.ts);
//   - reject-floor-connected: the same handler in a process holding the API's client connections
//     (Kafka, Redis, MySQL) with the sold-out copy's Redis traffic (rejection-floor.ts --connected);
//   - reject: the real API (`flashsale api`) on a sold-out SKU, half the buyers already holding
//     their order (ALREADY_ORDERED), half new (SOLD_OUT);
//   - accept: distinct buyers on a SKU with stock to spare, with a `flashsale order-writer`
//     process: orders/s from the first request until the last row is in MySQL.
//   - accept-floor: after each accept run, an order path doing only what every accepted order
//     needs with the same parts (lib/accept-floor.ts), measured the same way.
// wrk and the server under test are pinned to different cores when there are two. CPU time of
// every process of the pipeline (server, order writer, Redis, MariaDB, Kafka) is read from
// /proc/<pid>/stat around each run. Before each accept run, the parts' floor: what Redis, Kafka and
// MariaDB cost per order through their clients alone (test/bench/lib/parts.ts). Each measured run is appended as one JSON line to
// test/bench/results/seckill.jsonl; `npm run bench:report` renders RESULTS.md and the README from
// that file. Exits non-zero, with the figure, when a target or a correctness check is missed.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { dropDatabase, eventually, testConfig, testKafka, testRedis, uniqueName } from '../support/infra.ts';
import { pool as makePool, provisionSale, removeSale, saleDoc } from '../support/order-path.ts';
import { prepareAcceptFloor, removeAcceptFloor, type AcceptFloorConfig, type AcceptFloorServerCounts } from './lib/accept-floor.ts';
import { acceptedCount, histogramTotals, metricSum, settledAcceptedCount, whenQuiet } from './lib/api-metrics.ts';
import { request as http } from './lib/http.ts';
import { checkPerf, PERF_NODE_ARGS, PerfRecording } from './lib/perf.ts';
import { API_STEPS, attribute, WRITER_STEPS, type StepRule } from './lib/profile.ts';
import { measureParts, type PartsFloor } from './lib/parts.ts';
import { appendRun, newBatchId, resultsFile, type CpuCost, type ProfileRun, type RunContext, type SeckillRun } from './lib/results.ts';
import { acceptFloorLine, budgetLine, floorLine, latencyBudgetLine, rejectBudgetLine, seckillSummary, TARGETS } from './lib/summary.ts';
import { choosePinning, CpuMeter, gitInfo, infraPids, machine, missingRoles, pinned, pipelinePorts, readVersions, stopChild } from './lib/system.ts';
import { wrk, type WrkResult } from './lib/wrk.ts';
import { applyRuntimeSettings, V8_FLAGS } from '../../controller/runtime.ts';

// The parts' floor runs its clients in this process: the same V8 settings as every server measured.
applyRuntimeSettings();

/** A Node command line with the program's V8 settings (flags, held tick maps): bare and the floors run as `flashsale` does. */
function nodeCommand(...args: string[]): string[] {
  return [process.execPath, ...V8_FLAGS, '--import', pathToFileURL(join(root, 'test/bench/lib/runtime-preload.ts')).href, ...args];
}

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: process.env.BENCH_SECONDS ?? '10s' },
    // Load on the server under test before each measured run, same settings, not measured: a
    // long-running server is warm (V8 has optimised its hot code), a fresh process is not.
    warmup: { type: 'string', default: process.env.BENCH_WARMUP ?? '3s' },
    // One unmeasured accept run through the whole pipeline before the first pair: the Kafka broker's
    // JVM compiles its hot code in its first minutes of load (see pipelineWarmUp).
    'pipeline-warmup': { type: 'string', default: process.env.BENCH_PIPELINE_WARMUP ?? '30s' },
    connections: { type: 'string', default: process.env.BENCH_CONNECTIONS ?? '64' },
    'accept-connections': { type: 'string', default: process.env.BENCH_ACCEPT_CONNECTIONS ?? String(TARGETS.acceptP99Connections) },
    pairs: { type: 'string', default: process.env.BENCH_PAIRS ?? '3' },
    'reject-rounds': { type: 'string', default: process.env.BENCH_REJECT_ROUNDS ?? '15' },
    // Fresh bare, floor and API processes for each share of the rounds: a Node process's speed
    // varies from launch to launch (V8's optimisation choices; ~±5 % for the API measured on one
    // sale, docs/order-path.md), so one launch of each is one draw, and a batch's ratio moved with it.
    'reject-launches': { type: 'string', default: process.env.BENCH_REJECT_LAUNCHES ?? '5' },
    'reject-seconds': { type: 'string', default: process.env.BENCH_REJECT_SECONDS ?? '2s' },
    port: { type: 'string', default: process.env.BENCH_PORT ?? '18480' },
    results: { type: 'string' },
    'no-pin': { type: 'boolean', default: false },
    // Samples the API, the order writer and the bare server with Linux perf (on-CPU time, kernel and
    // helper threads included; test/bench/lib/perf.ts) and charges their CPU to the steps of the
    // purchase path (test/bench/lib/profile.ts). Such a batch is recorded as a smoke batch (its
    // throughput is not reported) and its step costs go to results/profile.jsonl.
    profile: { type: 'boolean', default: false },
    // Orders of the parts' floor measured in each pair before the accept run (test/bench/lib/parts.ts); 0: none.
    'parts-orders': { type: 'string', default: process.env.BENCH_PARTS_ORDERS ?? '50000' },
    // The accept floor (test/bench/lib/accept-floor.ts) measured in each pair after the API's accept run.
    'no-accept-floor': { type: 'boolean', default: false },
  },
});

function seconds(v: string, name = 'duration'): number {
  const m = /^(\d+(?:\.\d+)?)(s|m)?$/.exec(v.trim());
  if (!m) throw new Error(`--${name}: "${v}" is not a duration like 10s or 1m`);
  return Number(m[1]) * (m[2] === 'm' ? 60 : 1);
}
function positive(name: string, v: string | undefined): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name}: "${v}" must be a positive integer`);
  return n;
}

const SECONDS = seconds(args.duration as string);
const WARMUP = seconds(args.warmup as string, 'warmup');
const PIPELINE_WARMUP = seconds(args['pipeline-warmup'] as string, 'pipeline-warmup');
const CONNECTIONS = positive('connections', args.connections);
// The accept path is bounded by connections ÷ hand-off latency (Little's law); a flash sale has
// thousands of concurrent buyers, so it runs with more connections than the rejection comparison.
const ACCEPT_CONNECTIONS = positive('accept-connections', args['accept-connections']);
const PAIRS = positive('pairs', args.pairs);
const REJECT_ROUNDS = positive('reject-rounds', args['reject-rounds']);
const REJECT_SECONDS = seconds(args['reject-seconds'] as string, 'reject-seconds');
const REJECT_LAUNCHES = Math.min(positive('reject-launches', args['reject-launches']), REJECT_ROUNDS);
/** Rounds per launch of the rejection servers (the last launch may have fewer). */
const LAUNCH_ROUNDS = Math.ceil(REJECT_ROUNDS / REJECT_LAUNCHES);
/** Unmeasured load on a server just before each of its rejection slices (wrk's shortest run). */
const SLICE_WARMUP = 1;
const PARTS_ORDERS = args['parts-orders'] === '0' ? 0 : positive('parts-orders', args['parts-orders']);
const PORT = positive('port', args.port);
const ACCEPT_FLOOR = !args['no-accept-floor'];
const FILE = args.results ?? resultsFile('seckill');
const PROFILE = args.profile as boolean;
if (PROFILE) checkPerf();
const PROFILE_FILE = args.results ? join(dirname(args.results), 'profile.jsonl') : resultsFile('profile');
// Anything shorter than the documented full run is a smoke run: recorded, but not reported.
const SMOKE = PROFILE || SECONDS < 10 || PAIRS < 3 || REJECT_ROUNDS < 15 || REJECT_SECONDS < 2 || ACCEPT_CONNECTIONS !== TARGETS.acceptP99Connections;
const SCARCE = 1000;
const BULK = 50_000_000;
const root = fileURLToPath(new URL('../../', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'seckill-'));
const pin = choosePinning(args['no-pin']);
process.stderr.write(`${pin.note}\n`);

async function waitFor(url: string, timeoutMs = 30_000): Promise<void> {
  await eventually(async () => (await http('GET', url)).status === 200, { timeoutMs, intervalMs: 100, what: url });
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
    // Reserved and claimed by the parts' floor only (no order of it reaches Kafka or MySQL).
    { id: 'parts', stock: BULK, timeoutBucket: 'long' },
    // Sold by the accept floor only, into its own topics and tables.
    { id: 'floor', stock: BULK, timeoutBucket: 'long' },
  ],
  kafka: { partitions: 6, replicationFactor: 1 },
});
const children: ChildProcess[] = [];

/** With --profile: the directory of a process's perf recording. */
function profileDir(name: string): string {
  const dir = join(work, 'profiles', name);
  mkdirSync(dir, { recursive: true });
  return dir;
}
const recordings = new Map<string, PerfRecording>();

/** perf records the process from here until it exits (test/bench/lib/perf.ts). */
function startRecording(dir: string | undefined, pid: number | undefined): void {
  if (dir && pid) recordings.set(dir, PerfRecording.start(pid, join(dir, 'perf.data')));
}

/** The environment of the benchmark's flashsale processes (and of the connected floor, which reads the same). */
function workerEnv(httpPort: number): NodeJS.ProcessEnv {
  return {
    ...process.env,
    FLASHSALE_SPEC: JSON.stringify(sale),
    MYSQL_URL: `mysql://${config.mysql.user}@${config.mysql.host}:${config.mysql.port}/${config.mysql.database}`,
    HTTP_PORT: String(httpPort),
    HTTP_HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
  };
}

function flashsale(command: string, core: number | null, profileTo?: string): ChildProcess {
  const [cmd, argv] = pinned(core, [process.execPath, ...(profileTo ? PERF_NODE_ARGS : []), join(root, 'bin/flashsale.js'), command]);
  // taskset execs the command, so the child's pid is the server's pid (its CPU time is what we read).
  const child = spawn(cmd, argv, { env: workerEnv(command === 'api' ? PORT : PORT + 1), stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  startRecording(profileTo, child.pid);
  return child;
}

function cpuCost(seconds: Record<string, number>, units: number, missing: string[]): CpuCost {
  const total = Object.values(seconds).reduce((s, v) => s + v, 0);
  return { seconds, total, units, usPerUnit: (total / units) * 1e6, missing };
}

const ctx = await provisionSale(sale, { config, kafka, redis, pool: db });
const base = `/v1/sales/${sale.metadata.name}/orders`;
const url = `http://127.0.0.1:${PORT}`;
const infra = infraPids(pipelinePorts(config));
const missing = missingRoles(infra);
if (missing.length > 0) process.stderr.write(`CPU of ${missing.join(', ')} not measured: process not found on this machine\n`);
const runContext: RunContext = {
  batch: newBatchId(),
  smoke: SMOKE,
  git: gitInfo(root),
  machine: machine(),
  versions: await readVersions({ pool: db, redis, kafkaPid: infra.kafka[0] }),
  pinning: pin.note,
};
process.stderr.write(`batch ${runContext.batch}${SMOKE ? ' (smoke: shorter than the full run, not reported)' : ''}; versions ${JSON.stringify(runContext.versions)}\n`);
const lines: SeckillRun[] = [];
let failed = false;

function record(which: SeckillRun['which'], pair: number, r: WrkResult, cpu: CpuCost, connections: number, extra: Partial<SeckillRun> = {}): SeckillRun {
  const wrkUs = (r.cpuSeconds / r.requests) * 1e6;
  const line: SeckillRun = {
    bench: 'seckill',
    ...runContext,
    timestamp: new Date().toISOString(),
    which,
    pair,
    params: { seconds: SECONDS, connections, threads: 1, warmupSeconds: WARMUP, pipelineWarmupSeconds: PIPELINE_WARMUP },
    requests: r.requests,
    rps: r.rps,
    non2xx: r.non2xx,
    socketErrors: r.socketErrors,
    latencyMs: r.latencyMs,
    curve: r.curve,
    cpu,
    loadGen: { cpuSeconds: r.cpuSeconds, usPerRequest: wrkUs },
    checks: [],
    ...extra,
  };
  appendRun(FILE, line);
  lines.push(line);
  const us = Number.isFinite(cpu.usPerUnit) ? cpu.usPerUnit.toFixed(0) : 'n/a';
  process.stderr.write(`pair ${pair} ${which}${extra.ceilingOf ? ` (ceiling of ${extra.ceilingOf})` : ''}: ${r.rps.toFixed(0)} req/s, p50 ${r.latencyMs.p50} ms, p99 ${r.latencyMs.p99} ms, CPU ${us} µs per ${which === 'accept' || which === 'accept-floor' ? 'order' : 'request'} (wrk ${wrkUs.toFixed(1)} µs per request)${line.accepted ? `; ${line.accepted.orders} orders into MySQL in ${line.accepted.toLastRowSeconds.toFixed(2)} s = ${line.accepted.ordersPerSecond.toFixed(0)} orders/s` : ''}${line.batches ? `; ${(line.batches.handOff.orders / line.batches.handOff.requests).toFixed(1)} orders per produce request (${line.batches.handOff.requests}), ${(line.batches.writer.messages / line.batches.writer.batches).toFixed(1)} per writer batch (${line.batches.writer.batches})` : ''}${line.apiEventLoopBusy !== undefined ? `; API event loop busy ${line.apiEventLoopBusy.toFixed(2)} of the run` : ''}\n`);
  for (const c of line.checks) {
    if (!c.ok) failed = true;
    process.stderr.write(`  ${c.ok ? 'PASS' : 'FAIL'}: ${c.what}\n`);
  }
  return line;
}

/** Reads the perf recording of a stopped process and appends its step costs to PROFILE_FILE. */
async function recordProfile(dir: string, proc: ProfileRun['process'], which: ProfileRun['which'], units: number, unit: ProfileRun['unit'], rules: StepRule[]): Promise<void> {
  const recording = recordings.get(dir);
  if (!recording) throw new Error(`${dir}: no perf recording`);
  const cost = attribute(await recording.finish(), rules);
  const line: ProfileRun = { bench: 'profile', ...runContext, timestamp: new Date().toISOString(), process: proc, which, units, unit, profiler: 'perf', ...cost };
  appendRun(PROFILE_FILE, line);
  process.stderr.write(`profile of the ${proc} (${which}): ${cost.cpuMs.toFixed(0)} ms of CPU for ${units} ${unit}s = ${((cost.cpuMs * 1000) / units).toFixed(1)} µs per ${unit} (perf's on-CPU samples)\n`);
  for (const [step, ms] of Object.entries(cost.steps).sort((a, b) => b[1] - a[1])) {
    process.stderr.write(`  ${((ms * 1000) / units).toFixed(1).padStart(7)} µs  ${step}\n`);
  }
  process.stderr.write('  functions with the most self time:\n');
  for (const [frame, ms] of Object.entries(cost.top)) process.stderr.write(`  ${((ms * 1000) / units).toFixed(2).padStart(8)} µs  ${frame}\n`);
}

const wrkCommon = { workDir: work, url, path: base, threads: 1, seconds: SECONDS, core: pin.loadCore };

/** The unmeasured load before a measured run (--warmup), with the measured run's settings. */
async function warmUp(o: Omit<Parameters<typeof wrk>[0], keyof typeof wrkCommon> & { url?: string }): Promise<number> {
  if (WARMUP <= 0) return 0;
  return (await wrk({ ...wrkCommon, ...o, name: `${o.name}-warmup`, seconds: WARMUP })).requests;
}

/** The bare node:http server (the ceiling) on `port`, pinned to the server core. */
async function startBare(port: number, profileTo?: string): Promise<ChildProcess> {
  const [cmd, argv] = pinned(pin.serverCore, nodeCommand(
    ...(profileTo ? PERF_NODE_ARGS : []),
    '-e',
    `require('node:http').createServer((req, res) => { req.resume(); req.on('end', () => { res.writeHead(202, {'content-type': 'application/json', 'content-length': 2}); res.end('{}'); }); }).listen(${port}, '127.0.0.1'); process.on('SIGTERM', () => process.exit(0));`,
  ));
  const bare = spawn(cmd, argv, { stdio: 'inherit' });
  children.push(bare);
  startRecording(profileTo, bare.pid);
  await eventually(async () => (await http('POST', `http://127.0.0.1:${port}/`, '{}')).status === 202, { what: 'bare server' });
  return bare;
}

/** The bare server's run at the accept settings, started for this run (like the accept run's API). */
async function bareRun(pair: number): Promise<void> {
  // Profiled too with --profile: the ceiling's own steps beside the API's show what the API adds.
  const prof = PROFILE ? profileDir(`bare-accept-${pair}`) : undefined;
  const bare = await startBare(PORT, prof);
  const load = { name: `bare-accept-${pair}`, skuId: 'bulk', prefix: `b${pair}-`, users: 0, connections: ACCEPT_CONNECTIONS };
  const warm = await warmUp(load);
  const meter = new CpuMeter({ server: [bare.pid as number] });
  meter.begin();
  const r = await wrk({ ...wrkCommon, ...load });
  const cpu = meter.end();
  await stopChild(bare);
  // The profile covers the warm-up too: per request, it is divided by both.
  if (prof) await recordProfile(prof, 'bare', 'accept', warm + r.requests, 'request', API_STEPS);
  record('bare', pair, r, cpuCost(cpu, r.requests, []), ACCEPT_CONNECTIONS, { ceilingOf: 'accept' });
}

async function startApi(profileTo?: string): Promise<ChildProcess> {
  const api = flashsale('api', pin.serverCore, profileTo);
  await waitFor(`${url}/readyz`);
  return api;
}

function pipelineMeter(api: ChildProcess, writer: ChildProcess): CpuMeter {
  return new CpuMeter({ api: [api.pid as number], writer: [writer.pid as number], redis: infra.redis, mariadb: infra.mariadb, kafka: infra.kafka });
}

/** lib/rejection-floor.ts on `port`, pinned to the server core; `connected` holds the API's connections (the API's environment). */
async function startRejectionFloor(port: number, holdersFile: string, connected: boolean): Promise<ChildProcess> {
  const [cmd, argv] = pinned(pin.serverCore, nodeCommand(join(root, 'test/bench/lib/rejection-floor.ts'), String(port), holdersFile, ...(connected ? ['--connected'] : [])));
  const floor = spawn(cmd, argv, { env: connected ? workerEnv(port) : process.env, stdio: 'inherit' });
  children.push(floor);
  await eventually(async () => (await http('POST', `http://127.0.0.1:${port}${base}`, { userId: 'u-0', skuId: 'scarce' })).status === 409, { what: `${connected ? 'connected ' : ''}rejection floor server` });
  return floor;
}

/**
 * The rejection comparison (see the head of this file): the bare server, the rejection floor, the
 * connected floor and the API on the sold-out SKU, REJECT_ROUNDS rounds of one slice each, the order
 * reversed every other round. The four servers are started and warmed up afresh for every LAUNCH_ROUNDS rounds
 * (REJECT_LAUNCHES launches), so the medians span several launches of each. With --profile only the
 * first launch is profiled. `holders` maps u-0..u-999 to their order ids, for the floor.
 */
async function rejectionRounds(writer: ChildProcess, holders: Record<string, string>): Promise<void> {
  const holdersFile = join(work, 'holders.json');
  writeFileSync(holdersFile, JSON.stringify(holders));
  const barePort = PORT + 2;
  const floorPort = PORT + 3;
  const connectedPort = PORT + 6;
  const load = { skuId: 'scarce', prefix: 'u-', users: 2 * SCARCE, connections: CONNECTIONS };
  for (let launch = 1, round = 1; round <= REJECT_ROUNDS; launch++) {
    const prof = (name: string) => (PROFILE && launch === 1 ? profileDir(`${name}-reject`) : undefined);
    const bareProfile = prof('bare');
    const apiProfile = prof('api');
    const bare = await startBare(barePort, bareProfile);
    const floor = await startRejectionFloor(floorPort, holdersFile, false);
    const connected = await startRejectionFloor(connectedPort, holdersFile, true);
    const api = await startApi(apiProfile);
    // Bare between the floors and the API: the API's slice and the connected floor's are next to the
    // bare slice of their round, the plain floor one further.
    const servers = [
      { which: 'reject-floor' as const, url: `http://127.0.0.1:${floorPort}`, meter: () => new CpuMeter({ server: [floor.pid as number] }) },
      { which: 'reject-floor-connected' as const, url: `http://127.0.0.1:${connectedPort}`, meter: () => new CpuMeter({ server: [connected.pid as number] }) },
      { which: 'bare' as const, url: `http://127.0.0.1:${barePort}`, meter: () => new CpuMeter({ server: [bare.pid as number] }) },
      { which: 'reject' as const, url, meter: () => pipelineMeter(api, writer) },
    ];
    const warm: Record<string, number> = {};
    for (const s of servers) warm[s.which] = await warmUp({ ...load, url: s.url, name: `${s.which}-rejection-launch-${launch}` });
    const requests: Record<string, number> = { bare: 0, reject: 0 };
    for (const last = Math.min(REJECT_ROUNDS, round + LAUNCH_ROUNDS - 1); round <= last; round++) {
      for (const s of round % 2 === 1 ? servers : [...servers].reverse()) {
        // The API's counters are read before its second of warm-up, not between it and the slice: no
        // other server has anything but its own load before its slice, and an API scraped there ran
        // ~9 % slower than one scraped before its warm-up in the same rounds (docs/order-path.md,
        // "A scrape just before the slice"). The check below covers both wrk runs.
        const before = s.which === 'reject' ? (await http('GET', `${url}/metrics`)).text : '';
        // Every slice follows a second of unmeasured load on its server: the API's copy of a sold-out
        // SKU's holders lapses after 2 × 250 ms without requests (api.ts), and until a refresh lands the
        // first ~1,000 requests of a slice would go to Redis, which no server under steady load does.
        const touch = await wrk({ ...wrkCommon, ...load, url: s.url, seconds: SLICE_WARMUP, name: `${s.which}-rejection-${round}-warmup` });
        const meter = s.meter();
        meter.begin();
        const r = await wrk({ ...wrkCommon, ...load, url: s.url, seconds: REJECT_SECONDS, name: `${s.which}-rejection-${round}` });
        const cpu = meter.end();
        requests[s.which] = (requests[s.which] ?? 0) + touch.requests + r.requests;
        const params = { seconds: REJECT_SECONDS, connections: CONNECTIONS, threads: 1, warmupSeconds: WARMUP, pipelineWarmupSeconds: PIPELINE_WARMUP, sliceWarmupSeconds: SLICE_WARMUP, launch, launches: REJECT_LAUNCHES };
        if (s.which === 'bare') {
          record('bare', round, r, cpuCost(cpu, r.requests, []), CONNECTIONS, { ceilingOf: 'reject', params });
        } else if (s.which === 'reject-floor' || s.which === 'reject-floor-connected') {
          record(s.which, round, r, cpuCost(cpu, r.requests, []), CONNECTIONS, {
            params,
            checks: [{ what: `the ${s.which === 'reject-floor' ? 'rejection floor' : 'connected rejection floor'} accepts nothing (${r.non2xx} of ${r.requests} answers are not 2xx)`, ok: r.non2xx === r.requests }],
          });
        } else {
          const after = (await http('GET', `${url}/metrics`)).text;
          const delta = (outcome: string) => metric(after, 'flashsale_api_requests_total', `outcome="${outcome}"`) - metric(before, 'flashsale_api_requests_total', `outcome="${outcome}"`);
          const soldOut = delta('sold_out');
          const already = delta('already_ordered');
          // The counters span the warm-up and the slice.
          const answers = touch.requests + r.requests;
          const rejected = touch.non2xx + r.non2xx;
          record('reject', round, r, cpuCost(cpu, r.requests, missing), CONNECTIONS, {
            params,
            checks: [
              { what: `the rejection run and its warm-up accept nothing (${rejected} of ${answers} answers are not 2xx)`, ok: rejected === answers },
              { what: `every answer of the run and its warm-up is SOLD_OUT or ALREADY_ORDERED (${soldOut} + ${already} ≥ ${answers})`, ok: soldOut + already >= answers && delta('accepted') === 0 },
            ],
          });
        }
      }
    }
    await stopChild(api);
    await stopChild(floor);
    await stopChild(connected);
    await stopChild(bare);
    // A profile covers the warm-ups and every slice of its process: per request, it is divided by all of them.
    if (apiProfile) await recordProfile(apiProfile, 'api', 'reject', (warm.reject ?? 0) + (requests.reject ?? 0), 'request', API_STEPS);
    if (bareProfile) await recordProfile(bareProfile, 'bare', 'reject', (warm.bare ?? 0) + (requests.bare ?? 0), 'request', API_STEPS);
  }
}

async function bulkRows(): Promise<number> {
  const [r] = await db.query('SELECT COUNT(*) AS n FROM orders WHERE sale = ? AND sku_id = ?', [ctx.key, 'bulk']);
  return Number((r as { n: number }[])[0]?.n);
}

/** The batching histograms: the API's produce requests (`of`: the API's URL) or the writer's batches. */
async function batchTotals(of: 'api' | 'writer'): Promise<{ sum: number; count: number }> {
  const text = (await http('GET', of === 'api' ? `${url}/metrics` : `http://127.0.0.1:${PORT + 1}/metrics`)).text;
  return histogramTotals(text, of === 'api' ? 'flashsale_api_handoff_batch_orders' : 'flashsale_order_writer_batch_orders');
}

/** The API's event-loop busy seconds so far (its /metrics) and when they were read (performance.now()). */
async function eventLoopBusy(): Promise<{ seconds: number; at: number }> {
  const text = (await http('GET', `${url}/metrics`)).text;
  return { seconds: metricSum(text, 'flashsale_event_loop_busy_seconds_total'), at: performance.now() };
}

/** Orders the writer reports inserted (its /metrics): cheap to poll, unlike COUNT(*) on a growing table. */
async function ordersWritten(): Promise<number> {
  return metricSum((await http('GET', `http://127.0.0.1:${PORT + 1}/metrics`)).text, 'flashsale_orders_written_total');
}

/**
 * --pipeline-warmup seconds of accept load through a fresh API, not measured, before the first pair;
 * its orders are written before anything else starts. A long-running broker has compiled its hot code;
 * one started minutes before has not: on 2026-12-03 the first batch on a broker started 2 minutes
 * earlier spent 35-62 µs of Kafka CPU per accepted order, where the batches of 2026-12-02 on a broker
 * up for hours spent 15-24 µs (same code, same settings). The per-run --warmup warms the API process
 * only. MariaDB's buffer pool and Redis warm up too.
 */
async function pipelineWarmUp(): Promise<void> {
  const api = await startApi();
  const before = await ordersWritten();
  await wrk({ ...wrkCommon, name: 'pipeline-warmup', skuId: 'bulk', prefix: 'pw-', users: 0, connections: ACCEPT_CONNECTIONS, seconds: PIPELINE_WARMUP });
  const accepted = await settledAcceptedCount(url, 1000);
  await stopChild(api);
  await eventually(async () => (await ordersWritten()) - before >= accepted || undefined, { timeoutMs: 300_000, intervalMs: 100, what: `${accepted} pipeline warm-up orders written by the order writer` });
  process.stderr.write(`pipeline warm-up: ${accepted} orders in ${PIPELINE_WARMUP} s through the API and the order writer, not measured\n`);
}

/** The parts' floor of this pair (test/bench/lib/parts.ts), in batches of the accept run's connections. */
async function partsRun(pair: number): Promise<PartsFloor> {
  const floor = await measureParts({
    orders: PARTS_ORDERS, batch: ACCEPT_CONNECTIONS, tag: `${runContext.batch.slice(-4)}-${pair}`, sale, skuId: 'parts', redis,
    brokers: config.kafkaBrokers, partitions: 6, pool: db, servers: { redis: infra.redis, kafka: infra.kafka, mysql: infra.mariadb },
  });
  const us = (s: { client: number; server: number }) => `${((s.client / floor.orders) * 1e6).toFixed(1)} + ${((s.server / floor.orders) * 1e6).toFixed(1)}`;
  const f = floor.seconds;
  process.stderr.write(`pair ${pair} parts' floor: ${floor.orders} orders, ${floor.batch} per request; µs per order, client + server: redis ${us(f.redis)}, kafka ${us(f.kafka)}, mysql ${us(f.mysql)}\n`);
  return floor;
}

/**
 * From the end of a run on, every change of a writer's count (`written`) is noted with its time and
 * the pipeline's CPU, so "last row" is when the last accepted order was written, not when a later
 * poll noticed it. Polls every 20 ms until stopped; the caller's wait on the trace has a deadline.
 */
function traceWritten(written: () => Promise<number>, meter: CpuMeter): { trace: { t: number; written: number; cpu: Record<string, number> }[]; stop: () => Promise<void> } {
  const trace: { t: number; written: number; cpu: Record<string, number> }[] = [];
  let tracing = true;
  const tracer = (async () => {
    while (tracing) {
      try {
        const n = await written();
        if (trace.at(-1)?.written !== n) trace.push({ t: performance.now(), written: n, cpu: meter.end() });
      } catch {
        // the writer's endpoint did not answer this once: the next poll will
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  return {
    trace,
    stop: async () => {
      tracing = false;
      await tracer;
    },
  };
}

async function acceptRun(pair: number, writer: ChildProcess, parts?: PartsFloor): Promise<void> {
  const prof = PROFILE ? profileDir(`api-accept-${pair}`) : undefined;
  const api = await startApi(prof);
  const writtenAtStart = await ordersWritten();
  let warmAccepted = 0;
  if (WARMUP > 0) {
    // Warm-up orders are real orders: every one is decided and written before the measured run's
    // starting counts are read, so they are in none of its figures.
    await warmUp({ name: `accept-${pair}`, skuId: 'bulk', prefix: `w${pair}-`, users: 0, connections: ACCEPT_CONNECTIONS });
    warmAccepted = await settledAcceptedCount(url, 1000);
    await eventually(async () => (await ordersWritten()) - writtenAtStart >= warmAccepted || undefined, { timeoutMs: 120_000, intervalMs: 50, what: `${warmAccepted} warm-up orders written by the order writer` });
  }
  const levelBefore = await ctx.stock.level('bulk');
  const rowsBefore = await bulkRows();
  const writtenBefore = await ordersWritten();
  const acceptedBefore = await acceptedCount(url);
  const handOffBefore = await batchTotals('api');
  const writerBefore = await batchTotals('writer');
  const busyBefore = await eventLoopBusy();
  const meter = pipelineMeter(api, writer);
  meter.begin();
  const t0 = performance.now();
  const r = await wrk({ ...wrkCommon, name: `accept-${pair}`, skuId: 'bulk', prefix: `a${pair}-`, users: 0, connections: ACCEPT_CONNECTIONS });
  const apiCpu = meter.end().api as number;
  const busyAfter = await eventLoopBusy();
  const apiEventLoopBusy = (busyAfter.seconds - busyBefore.seconds) / ((busyAfter.at - busyBefore.at) / 1000);
  const { trace, stop } = traceWritten(async () => (await ordersWritten()) - writtenBefore, meter);
  try {
    // wrk hangs up with up to ACCEPT_CONNECTIONS requests still being decided; the API still answers
    // them (to closed sockets). Its 202s are read once its count of decided requests has not moved for
    // twice the slowest answer wrk saw (at least 1 s); then the API is stopped (it hands every accepted
    // order off before exiting).
    const answered = (await settledAcceptedCount(url, Math.min(20_000, Math.max(1000, 2 * r.latencyMs.max)))) - acceptedBefore;
    const handOffAfter = await batchTotals('api');
    await stopChild(api);
    const levelAfter = await ctx.stock.level('bulk');
    if (!levelBefore || !levelAfter) throw new Error('no stock level for the bulk SKU');
    // Every 202 keeps its reservation (a failed hand-off gives it back), so units reserved = orders accepted.
    const accepted = levelBefore.remaining - levelAfter.remaining;
    if (prof) await recordProfile(prof, 'api', 'accept', warmAccepted + accepted, 'order', API_STEPS);
    const last = await eventually(() => trace.find((e) => e.written >= accepted), { timeoutMs: 120_000, intervalMs: 20, what: `${accepted} accepted orders written by the order writer` });
    const writerAfter = await batchTotals('writer');
    const rows = (await bulkRows()) - rowsBefore;
    const toLastRow = (last.t - t0) / 1000;
    // The API's CPU is read when wrk finished (answering the hung-up requests and /metrics polls are not counted).
    const cpu = { ...last.cpu, api: apiCpu };
    const wrk2xx = r.requests - r.non2xx;
    record('accept', pair, r, cpuCost(cpu, accepted, missing), ACCEPT_CONNECTIONS, {
      accepted: { orders: accepted, wrk2xx, api202: answered, rows, toLastRowSeconds: toLastRow, ordersPerSecond: accepted / toLastRow },
      ...(parts ? { parts } : {}),
      batches: {
        handOff: { requests: handOffAfter.count - handOffBefore.count, orders: handOffAfter.sum - handOffBefore.sum },
        writer: { batches: writerAfter.count - writerBefore.count, messages: writerAfter.sum - writerBefore.sum },
      },
      apiEventLoopBusy,
      checks: [
        { what: `no accepted order lost: rows in MySQL (${rows}) == 202 answers counted by the API (${answered}) == units reserved in Redis (${accepted}) == orders the writer reports written (${last.written})`, ok: rows === accepted && rows === answered && last.written === accepted },
        { what: `wrk's 2xx answers (${wrk2xx}) ≤ accepted (${accepted}) ≤ 2xx + open connections (${ACCEPT_CONNECTIONS})`, ok: wrk2xx <= accepted && accepted <= wrk2xx + ACCEPT_CONNECTIONS },
        { what: `the bulk SKU did not sell out (${levelAfter.remaining} left)`, ok: levelAfter.remaining > 0 },
      ],
    });
  } finally {
    await stop();
  }
}

/** The accept floor (test/bench/lib/accept-floor.ts): its own SKU, topics and tables; its writer runs for the whole batch. */
const floorTag = runContext.batch.slice(-4).replace(/[^a-zA-Z0-9]/g, '_');
const floorConfig: AcceptFloorConfig = {
  port: PORT + 4, writerPort: PORT + 5, sale, skuId: 'floor', redisUrl: config.redisUrl, brokers: config.kafkaBrokers,
  ordersTopic: `bench-floor-${floorTag}-orders`, delayTopic: `bench-floor-${floorTag}-delay`, groupId: `bench-floor-${floorTag}`,
  mysql: config.mysql, table: `floor_${floorTag}`, marksTable: `floor_${floorTag}_marks`,
};
const floorScript = join(root, 'test/bench/lib/accept-floor.ts');
const floorConfigFile = join(work, 'accept-floor.json');
const floorUrl = `http://127.0.0.1:${floorConfig.port}`;
const floorWriterUrl = `http://127.0.0.1:${floorConfig.writerPort}`;
let floorWriter: ChildProcess | undefined;
/** Reserves granted by the floor servers already stopped: the floor writer's count is for the whole batch. */
let floorReservedBefore = 0;

async function floorCounts(): Promise<AcceptFloorServerCounts> {
  return JSON.parse((await http('GET', floorUrl)).text) as AcceptFloorServerCounts;
}
async function floorWritten(): Promise<number> {
  return (JSON.parse((await http('GET', floorWriterUrl)).text) as { written: number }).written;
}
/** The floor server's counts once its answers have not moved for quietMs (wrk hangs up with requests in flight). */
function settledFloor(quietMs: number): Promise<AcceptFloorServerCounts> {
  return whenQuiet(floorCounts, (c) => c.answered, quietMs, 'the accept floor to answer the requests the load generator hung up on');
}
async function floorRows(): Promise<number> {
  const [r] = await db.query(`SELECT COUNT(*) AS n FROM ${floorConfig.table}`);
  return Number((r as { n: number }[])[0]?.n);
}

/** The accept floor's run of this pair, with the API's accept run's settings (started for the run, warmed up). */
async function acceptFloorRun(pair: number): Promise<void> {
  if (!floorWriter) {
    writeFileSync(floorConfigFile, JSON.stringify(floorConfig));
    await prepareAcceptFloor(floorConfig, db);
    const [cmd, argv] = pinned(null, nodeCommand(floorScript, 'writer', floorConfigFile));
    floorWriter = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'inherit'] });
    children.push(floorWriter);
    await waitFor(floorWriterUrl);
  }
  const writer = floorWriter;
  const [cmd, argv] = pinned(pin.serverCore, nodeCommand(floorScript, 'server', floorConfigFile));
  const server = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(server);
  await waitFor(floorUrl);
  const load = { skuId: 'floor', users: 0, connections: ACCEPT_CONNECTIONS, url: floorUrl };
  await warmUp({ ...load, name: `accept-floor-${pair}`, prefix: `fw${pair}-` });
  const before = await settledFloor(1000);
  await eventually(async () => (await floorWritten()) >= floorReservedBefore + before.reserved || undefined, { timeoutMs: 120_000, intervalMs: 50, what: 'the accept floor\'s warm-up orders written' });
  const writtenBefore = await floorWritten();
  const rowsBefore = await floorRows();
  const meter = new CpuMeter({ api: [server.pid as number], writer: [writer.pid as number], redis: infra.redis, mariadb: infra.mariadb, kafka: infra.kafka });
  meter.begin();
  const t0 = performance.now();
  const r = await wrk({ ...wrkCommon, ...load, name: `accept-floor-${pair}`, prefix: `f${pair}-` });
  const serverCpu = meter.end().api as number;
  const { trace, stop } = traceWritten(async () => (await floorWritten()) - writtenBefore, meter);
  try {
    const after = await settledFloor(Math.min(20_000, Math.max(1000, 2 * r.latencyMs.max)));
    await stopChild(server);
    floorReservedBefore += after.reserved;
    const reserved = after.reserved - before.reserved;
    const accepted = after.accepted - before.accepted;
    const failedHere = after.failed - before.failed;
    const last = await eventually(() => trace.find((e) => e.written >= reserved), { timeoutMs: 120_000, intervalMs: 20, what: `${reserved} accept-floor orders written` });
    const rows = (await floorRows()) - rowsBefore;
    const toLastRow = (last.t - t0) / 1000;
    const wrk2xx = r.requests - r.non2xx;
    record('accept-floor', pair, r, cpuCost({ ...last.cpu, api: serverCpu }, accepted, missing), ACCEPT_CONNECTIONS, {
      accepted: { orders: accepted, wrk2xx, api202: accepted, rows, toLastRowSeconds: toLastRow, ordersPerSecond: accepted / toLastRow },
      checks: [
        { what: `accept floor: rows (${rows}) == 202 answers (${accepted}) == reserves granted (${reserved}), none failed (${failedHere})`, ok: rows === accepted && accepted === reserved && failedHere === 0 },
        { what: `accept floor: wrk's 2xx answers (${wrk2xx}) ≤ accepted (${accepted}) ≤ 2xx + open connections (${ACCEPT_CONNECTIONS})`, ok: wrk2xx <= accepted && accepted <= wrk2xx + ACCEPT_CONNECTIONS },
      ],
    });
  } finally {
    await stop();
  }
}

let exitCode = 0;
try {
  const writerProfile = PROFILE ? profileDir('writer') : undefined;
  const writer = flashsale('order-writer', null, writerProfile);
  await waitFor(`http://127.0.0.1:${PORT + 1}/readyz`);
  // The scarce SKU sold to u-0..u-999: the rejection runs then see half repeat buyers, half new ones.
  const api = await startApi();
  const sold = await Promise.all(Array.from({ length: SCARCE }, (_, i) => http('POST', `${url}${base}`, { userId: `u-${i}`, skuId: 'scarce' })));
  await stopChild(api);
  if (!sold.every((r) => r.status === 202)) throw new Error('the scarce SKU did not sell out to its first 1,000 buyers');
  const holders = Object.fromEntries(sold.map((r, i) => [`u-${i}`, (JSON.parse(r.text) as { orderId: string }).orderId]));

  if (PIPELINE_WARMUP > 0) await pipelineWarmUp();
  await rejectionRounds(writer, holders);
  for (let pair = 1; pair <= PAIRS; pair++) {
    await bareRun(pair);
    await acceptRun(pair, writer, PARTS_ORDERS > 0 ? await partsRun(pair) : undefined);
    if (ACCEPT_FLOOR) await acceptFloorRun(pair);
  }
  if (floorWriter) await stopChild(floorWriter);
  const writtenInAll = await ordersWritten();
  await stopChild(writer);
  if (writerProfile) await recordProfile(writerProfile, 'writer', 'all', writtenInAll, 'order', WRITER_STEPS);

  // Whole-sale checks, after every run.
  const [counts] = await db.query("SELECT sku_id, COUNT(*) AS n, SUM(quantity) AS units FROM orders WHERE sale = ? AND status = 'UNPAID' GROUP BY sku_id", [ctx.key]);
  const bySku = new Map((counts as { sku_id: string; n: number; units: number }[]).map((r) => [r.sku_id, { n: Number(r.n), units: Number(r.units) }]));
  const [over] = await db.query('SELECT COUNT(*) AS n FROM (SELECT user_id FROM orders WHERE sale = ? GROUP BY sku_id, user_id HAVING SUM(quantity) > ?) x', [ctx.key, sale.spec.perUserLimit]);
  const scarceLevel = await ctx.stock.level('scarce');
  const bulkLevel = await ctx.stock.level('bulk');
  const overN = Number((over as { n: number }[])[0]?.n);
  const saleChecks: [string, boolean][] = [
    [`scarce: rows (${bySku.get('scarce')?.n}) == min(stock ${SCARCE}, distinct buyers ${2 * SCARCE} × limit 1)`, bySku.get('scarce')?.n === SCARCE],
    [`scarce: remaining (${scarceLevel?.remaining}) == stock − sold`, scarceLevel?.remaining === SCARCE - (bySku.get('scarce')?.units ?? 0)],
    [`bulk: UNPAID units (${bySku.get('bulk')?.units}) == stock − remaining (${BULK - (bulkLevel?.remaining ?? NaN)})`, bySku.get('bulk')?.units === BULK - (bulkLevel?.remaining ?? NaN)],
    [`nobody above the per-user limit (${overN} users over)`, overN === 0],
  ];
  for (const [what, ok] of saleChecks) {
    process.stderr.write(`${ok ? 'PASS' : 'FAIL'}: ${what}\n`);
    if (!ok) failed = true;
  }

  const s = seckillSummary(lines);
  const f0 = (n: number) => Math.round(n).toLocaleString('en-US');
  const range = (x: { median: number; min: number; max: number }, d = 0) => `${x.median.toFixed(d)} (${x.min.toFixed(d)}–${x.max.toFixed(d)})`;
  process.stdout.write(
    [
      '',
      `seckill batch ${s.batch}: ${s.rejectRounds} rejection round(s) of ${REJECT_SECONDS} s slices at -c${CONNECTIONS} on ${REJECT_LAUNCHES} launch(es) of the servers, ${s.pairs} accept pair(s) of ${SECONDS} s runs at -c${ACCEPT_CONNECTIONS}, wrk -t1; median (min–max)`,
      `  bare node:http, rejection settings: ${range(s.bareReject)} req/s, CPU ${range(s.cpuPerBareUs, 1)} µs per request`,
      ...(s.rejectFloor ? [`  rejection floor (lib/rejection-floor.ts): ${range(s.rejectFloor.rps)} req/s, ratio ${range(s.rejectFloor.ratio, 2)}, CPU ${range(s.rejectFloor.cpuUs, 1)} µs per request`] : []),
      ...(s.rejectFloorConnected ? [`  connected floor (--connected):      ${range(s.rejectFloorConnected.rps)} req/s, ratio ${range(s.rejectFloorConnected.ratio, 2)}, CPU ${range(s.rejectFloorConnected.cpuUs, 1)} µs per request`] : []),
      `  API rejection path:                 ${range(s.reject)} req/s, ratio ${range(s.rejectRatio, 2)}, p99 ${range(s.rejectP99, 2)} ms, CPU ${range(s.cpuPerRejectUs, 1)} µs per request`,
      `  bare node:http, accept settings:    ${range(s.bareAccept)} req/s, p99 ${range(s.bareAcceptP99, 2)} ms`,
      `  API accept path (HTTP):             ${range(s.acceptHttp)} req/s, p50 ${range(s.acceptP50, 2)} ms, p99 ${range(s.acceptP99, 2)} ms`,
      `  accepted orders into MySQL:         ${range(s.ordersPerSecond)} orders/s, ratio ${range(s.acceptRatio, 2)}`,
      `  CPU per accepted order:             ${range(s.cpuPerOrderUs, 1)} µs (${Object.entries(s.cpuPerOrderByRole).map(([k, v]) => `${k} ${v.median.toFixed(1)}`).join(', ')})`,
      ...(s.acceptFloor ? [`  accept floor (lib/accept-floor.ts):  ${range(s.acceptFloor.ordersPerSecond)} orders/s, ratio ${range(s.acceptFloor.ratio, 2)}, p99 ${range(s.acceptFloor.p99, 2)} ms, CPU ${range(s.acceptFloor.cpuUs, 1)} µs per order (server ${s.acceptFloor.serverUs.median.toFixed(1)})`] : []),
      `  ${budgetLine(s)}`,
      ...(floorLine(s) ? [`  ${floorLine(s)}`] : []),
      ...(acceptFloorLine(s) ? [`  ${acceptFloorLine(s)}`] : []),
      `  ${latencyBudgetLine(s)}`,
      `  ${rejectBudgetLine(s)}`,
      ...s.verdicts.map((v) => `  ${v.ok ? 'TARGET MET' : 'TARGET MISSED'}: ${v.what}: ${v.figure}`),
      `  raw results appended to ${FILE} (${lines.length} lines); \`npm run bench:report\` renders RESULTS.md and the README${SMOKE ? ' (this smoke batch is skipped by the report)' : ''}`,
      `  ${f0(lines.filter((l) => l.which === 'accept').reduce((n, l) => n + (l.accepted?.orders ?? 0), 0))} orders accepted in all; checks ${failed ? 'FAILED (above)' : 'passed'}`,
      '',
    ].join('\n'),
  );
  if (failed || s.verdicts.some((v) => !v.ok)) exitCode = 1;
} finally {
  for (const c of children) await stopChild(c).catch(() => undefined);
  if (ACCEPT_FLOOR) await removeAcceptFloor(floorConfig, db).catch(() => undefined);
  await removeSale(ctx, { kafka, redis });
  await kafka.close();
  redis.disconnect();
  await db.end();
  await dropDatabase(config);
  rmSync(work, { recursive: true, force: true });
}
process.exit(exitCode);
