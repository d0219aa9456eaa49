// The benchmark machinery without a benchmark: summaries and target checks computed from raw
// lines, generated blocks that leave other blocks alone, the SVG renderer.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { replaceBlock } from './lib/blocks.ts';
import type { SeckillRun, TimeoutsRun } from './lib/results.ts';
import { spread } from './lib/stats.ts';
import { acceptFloorLine, budgetLine, closeCpuBudget, floorLine, latencyBudgetLine, rejectBudgetLine, seckillSummary, timeoutsBudgetLine, timeoutsSummary } from './lib/summary.ts';
import { renderChart } from './lib/svg.ts';

const context = {
  batch: 'b1',
  smoke: false,
  git: { commit: 'abcdef0123', dirty: false },
  machine: { cores: 2, model: 'test', loadavg1: 0 },
  versions: { node: 'v24', kafka: '3.9.1', mariadb: '10.11', redis: '7.0', wrk: '4.1' },
  pinning: 'test',
};

function seckillRun(which: SeckillRun['which'], pair: number, rps: number, o: { ceilingOf?: 'reject' | 'accept'; p99?: number; orders?: number; cpuUs?: number } = {}): SeckillRun {
  const units = o.orders ?? rps * 10;
  const cpuSeconds = ((o.cpuUs ?? 50) * units) / 1e6;
  return {
    bench: 'seckill', ...context, timestamp: '2026-12-01T00:00:00.000Z', which, ceilingOf: o.ceilingOf, pair,
    params: { seconds: 10, connections: which === 'accept' || which === 'accept-floor' || o.ceilingOf === 'accept' ? 256 : 64, threads: 1 },
    requests: rps * 10, rps, non2xx: 0, socketErrors: { connect: 0, read: 0, write: 0, timeout: 0 },
    latencyMs: { p50: 1, p90: 2, p99: o.p99 ?? 3, p999: 4, max: 5, mean: 1 }, curve: [[50, 1], [99, o.p99 ?? 3]],
    cpu: { seconds: { api: cpuSeconds / 2, kafka: cpuSeconds / 2 }, total: cpuSeconds, units, usPerUnit: o.cpuUs ?? 50, missing: [] },
    accepted: o.orders === undefined ? undefined : { orders: o.orders, wrk2xx: o.orders, toLastRowSeconds: 10, ordersPerSecond: o.orders / 10 },
    checks: [{ what: 'ok', ok: true }],
  };
}

function pairs(acceptOrdersPerSecond: number[], rejectRps: number, p99: number, cpuUs: number): SeckillRun[] {
  return acceptOrdersPerSecond.flatMap((ops, i) => [
    seckillRun('bare', i + 1, 10_000, { ceilingOf: 'reject' }),
    seckillRun('reject', i + 1, rejectRps),
    seckillRun('bare', i + 1, 10_000, { ceilingOf: 'accept' }),
    seckillRun('accept', i + 1, ops, { orders: ops * 10, p99, cpuUs }),
  ]);
}

test('spread: median of odd and even counts, min–max, NaN left out', () => {
  assert.deepEqual(spread([3, 1, 2]), { n: 3, median: 2, min: 1, max: 3 });
  assert.deepEqual(spread([4, 1, NaN, 2, 3]), { n: 4, median: 2.5, min: 1, max: 4 });
  assert.equal(spread([]).n, 0);
});

test('seckill: targets computed from per-pair ratios; a miss is reported with its figure', () => {
  const s = seckillSummary(pairs([4000, 4200, 3900], 8500, 40, 600));
  const [accept, p99, reject] = s.verdicts;
  assert.equal(accept?.ok, false);
  assert.match(accept?.figure ?? '', /^0\.40 \(0\.39–0\.42\)/);
  assert.equal(p99?.ok, true);
  assert.equal(reject?.ok, true);
  assert.equal(s.pairs, 3);
  // 2 cores / 600 µs per order = 3,333 orders/s < 0.5 × 10,000: out of reach, and says so.
  assert.equal(Math.round(s.budgetOrdersPerSecond), 3333);
  assert.match(budgetLine(s), /Out of reach on 2 cores.*below 400 µs per order/);
  // 256 connections ÷ 3,333 orders/s = 76.8 ms mean at best; bare's p99 is 3 × its mean here.
  assert.match(latencyBudgetLine(s), /at least 76\.8 ms.*3\.0 × its mean.*near 230 ms.*out of reach/);
  // Bare and rejection runs both cost 50 µs per request: within a budget of 50 ÷ 0.8 = 62.5 µs.
  assert.match(rejectBudgetLine(s), /at most 62\.5 µs.*spent 50\.0 µs.*about 1\.00 of bare\. Within the budget/);
  assert.deepEqual(Object.keys(s.cpuPerOrderByRole).sort(), ['api', 'kafka']);
});

test('seckill: rejection rounds pair each API slice with the bare slice of its round; the floor is reported beside them', () => {
  // 12 rounds of bare, floor and API slices, then 3 accept pairs: the round numbers run past the pairs'.
  const rounds = Array.from({ length: 12 }, (_, i) => [
    seckillRun('bare', i + 1, i % 2 ? 12_000 : 8_000, { ceilingOf: 'reject', cpuUs: 20 }),
    seckillRun('reject-floor', i + 1, i % 2 ? 9_000 : 6_200, { cpuUs: 25 }),
    seckillRun('reject-floor-connected', i + 1, i % 2 ? 9_600 : 6_400, { cpuUs: 24 }),
    seckillRun('reject', i + 1, i % 2 ? 9_000 : 6_000, { cpuUs: 26 }),
  ]).flat();
  const accept = pairs([6000, 5500, 7000], 0, 20, 100).filter((r) => r.ceilingOf !== 'reject' && r.which !== 'reject');
  const s = seckillSummary([...rounds, ...accept]);
  assert.equal(s.pairs, 3);
  assert.equal(s.rejectRounds, 12);
  // Per round 9,000 ÷ 12,000 = 0.75 and 6,000 ÷ 8,000 = 0.75; pooled medians would give 7,500 ÷ 10,000 as well, but not the spread.
  assert.deepEqual(s.rejectRatio, { n: 12, median: 0.75, min: 0.75, max: 0.75 });
  assert.equal(s.verdicts[2]?.ok, false);
  assert.match(s.verdicts[2]?.what ?? '', /median of 12 ratios, one per round/);
  assert.equal(s.rejectFloor?.ratio.median, (0.75 + 0.775) / 2);
  // The bare CPU per request is the rejection rounds' (20 µs), not the accept pairs' (50 µs).
  assert.equal(s.cpuPerBareUs.median, 20);
  assert.match(rejectBudgetLine(s), /at most 25\.0 µs\. It spent 26\.0 µs.*The rejection floor.*0\.76 \(0\.75–0\.78\) of bare at 25\.0 µs per request \(server only\), below the target itself/);
  // The connected floor, per round against the same bare slice: 9,600 ÷ 12,000 = 0.8 and 6,400 ÷ 8,000 = 0.8.
  assert.deepEqual(s.rejectFloorConnected?.ratio, { n: 12, median: 0.8, min: 0.8, max: 0.8 });
  assert.match(rejectBudgetLine(s), /client connections.*0\.80 \(0\.80–0\.80\) of bare at 24\.0 µs per request: what a process that must hold those connections can expect/);
  assert.doesNotMatch(rejectBudgetLine(s), /connections.*Below the target itself/);
  // Batches without a floor say nothing about it.
  assert.doesNotMatch(rejectBudgetLine(seckillSummary(pairs([6000, 5500, 7000], 9000, 20, 100))), /floor/);
  assert.equal(seckillSummary(pairs([6000, 5500, 7000], 9000, 20, 100)).rejectFloorConnected, null);
});

test('seckill: the accept floor is set against the bare run of its pair; below the target it is called out of reach for these parts', () => {
  // Bare 10,000 req/s in each pair; the API puts 3,000, 2,800, 3,200 orders/s into MySQL; the floor 3,300, 3,000, 3,600.
  const runs = pairs([3000, 2800, 3200], 9000, 20, 100);
  const withFloor = [...runs, ...[3300, 3000, 3600].map((ops, i) => seckillRun('accept-floor', i + 1, ops, { orders: ops * 10, cpuUs: 90 }))];
  const s = seckillSummary(withFloor);
  assert.deepEqual(s.acceptFloor?.ratio, { n: 3, median: 0.33, min: 0.3, max: 0.36 });
  assert.equal(s.acceptFloor?.cpuUs.median, 90);
  // The floor's runs are not the API's: its figures and verdicts are unchanged by them.
  assert.deepEqual(s.acceptRatio, seckillSummary(runs).acceptRatio);
  assert.equal(s.cpuPerOrderUs.median, 100);
  assert.match(acceptFloorLine(s) ?? '', /3,300 \(3,000–3,600\) orders\/s into MySQL, 0\.33 \(0\.30–0\.36\) of bare.*the API reached 91 % of the floor's rate at 100\.0 µs per order\. The floor is below the target itself.*the API's 0\.30 against the floor's 0\.33\. At the floor's CPU per order the 2 cores allow at most 22,222 orders\/s against the target's 5,000\.$/);
  // A floor that costs more per order than the target allows is out of reach on the cores as well.
  const costly = seckillSummary([...runs, ...[3300, 3000, 3600].map((ops, i) => seckillRun('accept-floor', i + 1, ops, { orders: ops * 10, cpuUs: 500 }))]);
  assert.match(acceptFloorLine(costly) ?? '', /allow at most 4,000 orders\/s against the target's 5,000: out of reach on 2 cores at that cost too \(the target allows 400\.0 µs per order\)\.$/);
  // A floor at or above the target puts the gap on our code.
  const high = seckillSummary([...runs, ...[5000, 5200, 5100].map((ops, i) => seckillRun('accept-floor', i + 1, ops, { orders: ops * 10 }))]);
  assert.match(acceptFloorLine(high) ?? '', /The floor reaches the target: what stands between the API and it is our code's cost per order\./);
  // Batches without a floor say nothing about it.
  assert.equal(acceptFloorLine(seckillSummary(runs)), null);
});

test('seckill: all targets met when the figures are', () => {
  const s = seckillSummary(pairs([6000, 5500, 7000], 9000, 20, 100));
  assert.ok(s.verdicts.every((v) => v.ok), JSON.stringify(s.verdicts));
  assert.match(budgetLine(s), /Within the budget/);
  assert.match(latencyBudgetLine(s), /at least 12\.8 ms.*near 38 ms.*within reach/);
});

test("seckill: the parts' floor is each pair's bare CPU per request plus its parts, set against what the target allows", () => {
  // Bare runs cost 50 µs per request; target 0.5 × 10,000 = 5,000 orders/s, so 2 cores allow 400 µs per order.
  const floor = (redis: number, kafka: number, mysql: number) => ({
    orders: 1000, batch: 256, usPerOrder: { redis, kafka, mysql },
    seconds: { redis: { client: 0, server: 0 }, kafka: { client: 0, server: 0 }, mysql: { client: 0, server: 0 } },
  });
  const withFloors = (floors: ReturnType<typeof floor>[]) => {
    let i = 0;
    return pairs([4000, 4200, 3900], 8500, 40, 600).map((r) => (r.which === 'accept' ? { ...r, parts: floors[i++] } : r));
  };
  assert.equal(floorLine(seckillSummary(pairs([4000], 8500, 40, 600))), null, 'no floor line without a measured floor');
  const over = seckillSummary(withFloors([floor(200, 150, 60), floor(210, 160, 60), floor(190, 140, 60)]));
  assert.deepEqual(over.partsFloorUs, { n: 3, median: 460, min: 440, max: 480 });
  assert.equal(over.partsFloorByPart.http?.median, 50);
  assert.match(floorLine(over) ?? '', /= 460\.0 \(440\.0–480\.0\) µs per order; the accept target allows 400\.0 µs on 2 cores\. Out of reach on 2 cores whatever our code does: the parts alone cost 60\.0 µs/);
  // Floors 250–270 µs under the 400 allowed, the pipeline at 600: 340 above the floor, 200 of them too many.
  const under = seckillSummary(withFloors([floor(100, 70, 30), floor(110, 80, 30), floor(90, 60, 30)]));
  assert.match(floorLine(under) ?? '', /= 250\.0 .*Within reach of the parts, which take 63 % of it: of the pipeline's 600\.0 µs per order, 350\.0 are above the floor .* and 200\.0 of them must go/);
  assert.doesNotMatch(floorLine(under) ?? '', /Batch sizes/, 'no batch sizes in lines before they were recorded');
  // With the batching histograms recorded: orders per produce request and per writer batch, per run.
  let k = 0;
  const sizes = [[100, 5, 30, 2], [120, 6, 60, 2], [90, 3, 40, 1]] as const;
  const batched = seckillSummary(withFloors([floor(100, 70, 30), floor(110, 80, 30), floor(90, 60, 30)]).map((r) => {
    if (r.which !== 'accept') return r;
    const [orders, requests, messages, batches] = sizes[k++] as readonly [number, number, number, number];
    return { ...r, batches: { handOff: { requests, orders }, writer: { batches, messages } } };
  }));
  assert.match(floorLine(batched) ?? '', /Batch sizes in the pipeline \(the floor's: 256 orders per request\): 20 \(20–30\) orders per produce request of the API, 30 \(15–40\) per order-writer batch\.$/);
});

test("seckill: the load generator's CPU per request is taken out of what the cores leave the pipeline", () => {
  // wrk costs 20 µs per request in the bare runs, 30 in the accept runs; the pipeline 100 µs per order.
  const withGen = (runs: SeckillRun[]) =>
    runs.map((r) => (r.ceilingOf === 'accept' || r.which === 'accept' ? { ...r, loadGen: { cpuSeconds: 1, usPerRequest: r.which === 'accept' ? 30 : 20 } } : r));
  const s = seckillSummary(withGen(pairs([6000, 5500, 7000], 9000, 20, 100)));
  assert.deepEqual(s.loadGenUs?.accept, { n: 3, median: 30, min: 30, max: 30 });
  // 2 cores ÷ (100 + 30) µs = 15,385 orders/s; the target's 5,000 orders/s leave 400 − min(20, 30) = 380 µs.
  assert.equal(Math.round(s.budgetOrdersPerSecond), 15_385);
  assert.equal(s.allowedUsPerOrder, 380);
  assert.match(budgetLine(s), /2 cores ÷ \(100 µs .* \+ 30\.0 µs of the load generator's per request, which shares the cores\) = at most 15,385 orders\/s.*Within the budget.*= 380\.0 µs per order\./);
  // A floor of 390 µs is under the 400 the cores alone would allow, but over what wrk leaves.
  const floor = { orders: 1000, batch: 256, usPerOrder: { redis: 200, kafka: 100, mysql: 40 }, seconds: { redis: { client: 0, server: 0 }, kafka: { client: 0, server: 0 }, mysql: { client: 0, server: 0 } } };
  const withFloor = seckillSummary(withGen(pairs([4000, 4200, 3900], 8500, 40, 600)).map((r) => (r.which === 'accept' ? { ...r, parts: floor } : r)));
  assert.match(floorLine(withFloor) ?? '', /= 390\.0 .*allows 380\.0 µs on 2 cores once the load generator has its share\. Out of reach .* 10\.0 µs per order more/);
  // The latency budget at the floor's cost: 2 cores ÷ (390 + 30) µs = 4,762 orders/s, 256 ÷ that = 53.8 ms mean, × 3 (bare's p99 ÷ mean).
  assert.match(latencyBudgetLine(withFloor), /at this CPU cost\)\. At the parts' floor's cost \(390\.0 µs per order, wrk's 30\.0 µs per request on top\) the cores would allow 4,762 orders\/s and a p99 near 161 ms: out of reach on this machine whatever our code does\./);
  // A floor of 80 µs (bare's 50 + 30): 2 cores ÷ 110 µs = 18,182 orders/s, 14.1 ms mean, p99 near 42 ms.
  const low = { ...floor, usPerOrder: { redis: 10, kafka: 10, mysql: 10 } };
  const lowFloor = seckillSummary(withGen(pairs([4000, 4200, 3900], 8500, 40, 600)).map((r) => (r.which === 'accept' ? { ...r, parts: low } : r)));
  assert.match(latencyBudgetLine(lowFloor), /would allow 18,182 orders\/s and a p99 near 42 ms: the target is within reach of the parts/);
  assert.doesNotMatch(latencyBudgetLine(lowFloor), /event loop/, 'no event-loop line in batches before it was recorded');
  // The API's event-loop busy share per accept run, as median (min–max), read as the bottleneck from 0.75 up.
  const busy = (shares: number[]) => {
    let i = 0;
    return seckillSummary(pairs([4000, 4200, 3900], 8500, 40, 600).map((r) => (r.which === 'accept' ? { ...r, apiEventLoopBusy: shares[i++] } : r)));
  };
  assert.match(latencyBudgetLine(busy([0.8, 0.86, 0.78])), /event loop \(one thread, its process pinned to one core\) was busy 0\.80 \(0\.78–0\.86\) of the accept runs' time: the accepts queue on that thread/);
  assert.match(latencyBudgetLine(busy([0.5, 0.6, 0.4])), /was busy 0\.50 \(0\.40–0\.60\) of the accept runs' time\.$/);
  // Lines without the figure: no share taken, the sentence as before.
  assert.equal(seckillSummary(pairs([6000], 9000, 20, 100)).loadGenUs, null);
  assert.doesNotMatch(budgetLine(seckillSummary(pairs([6000], 9000, 20, 100))), /load generator/);
});

test('seckill: a ratio just under its target is not shown rounded up to it', () => {
  // 7,995 ÷ 10,000 = 0.7995: missed, and shown as 0.799 rather than 0.80 beside the word MISSED.
  const s = seckillSummary(pairs([6000], 7995, 20, 100));
  assert.equal(s.verdicts[2]?.ok, false);
  assert.match(s.verdicts[2]?.figure ?? '', /^0\.799 \(0\.80–0\.80\)/);
  assert.match(seckillSummary(pairs([6000], 8500, 20, 100)).verdicts[2]?.figure ?? '', /^0\.85 /);
});

test('seckill: the p99 target is not met at fewer connections than it names', () => {
  const runs = pairs([6000], 9000, 20, 100).map((r) => (r.which === 'accept' ? { ...r, params: { ...r.params, connections: 64 } } : r));
  assert.equal(seckillSummary(runs).verdicts[1]?.ok, false);
});

test('timeouts: an early close or a smaller burst than the target misses', () => {
  const round = (which: TimeoutsRun['which'], orders: number, early: number, p99: number): TimeoutsRun => ({
    bench: 'timeouts', ...context, timestamp: '2026-12-01T00:00:00.000Z', which, round: 1,
    params: { orders, bucket: '2s', partitions: 6, dueSpreadMs: 999 }, orders, closed: orders, early, closesPerSecond: orders,
    delayMs: { p50: p99 / 2, p90: p99, p99, max: p99 }, curve: [[99, p99]], ceiling: null, notes: [], checks: [],
  });
  assert.ok(timeoutsSummary([round('closer', 100_000, 0, 400), round('api', 9000, 0, 600)]).verdicts.every((v) => v.ok));
  const early = timeoutsSummary([round('closer', 100_000, 1, 400)]).verdicts;
  assert.deepEqual(early.map((v) => v.ok), [true, false]);
  assert.equal(timeoutsSummary([round('closer', 2000, 0, 400)]).verdicts[0]?.ok, false);
  assert.equal(timeoutsSummary([round('closer', 100_000, 0, 1001)]).verdicts[0]?.ok, false);
});

test('timeouts CPU budget: the MySQL floor against the CPU per close the needed rate allows', () => {
  const round = (update: number, releaseInsert: number, spent: number, seconds: Record<string, number> = { closer: 1 }): TimeoutsRun => ({
    bench: 'timeouts', ...context, timestamp: '2026-12-01T00:00:00.000Z', which: 'closer', round: 1,
    params: { orders: 100_000, bucket: '2s', partitions: 6, dueSpreadMs: 999 }, orders: 100_000, closed: 100_000, early: 0, closesPerSecond: 12_000,
    delayMs: { p50: 3000, p90: 6000, p99: 7000, max: 7100 }, curve: [[99, 7000]], notes: [], checks: [],
    ceiling: { updatesPerSecond: 9000, chunkedPerSecond: 45_000, rows: 100_000, connections: 6, perTransaction: 500, cpuUsPerRow: { update, releaseInsert } },
    cpu: { seconds, total: 1, units: 100_000, usPerUnit: spent, missing: [] },
  });
  // 2 cores (the shared context) at 50,000 closes/s leave 40 µs per close.
  const out = closeCpuBudget([round(38, 20, 150), round(36, 22, 160), round(40, 24, 140)], 50_000);
  assert.match(out, /leave 40\.0 µs of CPU per close/);
  assert.match(out, /cost 58\.0 \(58\.0–64\.0\) µs per order/);
  assert.match(out, /the closer spent 150 \(140–160\) µs per close/);
  assert.match(out, /Out of reach on 2 cores at this design's cost: those two statements alone cost 18\.0 µs per close more/);
  // No Redis figure in these rounds: nothing said of a design without the record.
  assert.doesNotMatch(out, /Redis server|Without the record/);
  // With the Redis server's CPU (0.8 s and 1.2 s per 100,000 closes: 8 and 12 µs per close) and the closer's (2 s: 20 µs).
  const redis = closeCpuBudget([round(30, 20, 90, { closer: 2, redis: 0.8 }), round(32, 20, 95, { closer: 2, redis: 1.2 })], 50_000);
  assert.match(redis, /the Redis server spent 10\.0 \(8\.0–12\.0\) µs per close in the closer rounds/);
  assert.match(redis, /the UPDATE and the Redis server's share of the releases would take 41\.0 of the 40\.0 µs: out of reach that way too\./);
  const tight = closeCpuBudget([round(28, 20, 90, { closer: 2, redis: 0.8 })], 50_000);
  assert.match(tight, /would take 36\.0 of the 40\.0 µs, leaving 4\.0 µs for everything else; the closer's own process alone spent 20\.0 µs per close\./);
  // The writes fit (20 + 15 of 40 µs), not with the Redis server's 8: out of reach all the same.
  const withRedis = closeCpuBudget([round(20, 15, 90, { closer: 2, redis: 0.8 })], 50_000);
  assert.match(withRedis, /the two statements fit in the budget, but with the Redis server's share of the releases they take 43\.0 µs per close, 3\.0 more than the target allows\. Without the record .* would take 28\.0 of the 40\.0 µs, leaving 12\.0 µs for everything else/);
  const within = closeCpuBudget([round(10, 5, 150)], 50_000);
  assert.match(within, /within the budget: the closer's cost above it is what must fall/);
  // Every process together within the 40 µs too: the line points at the start of the burst.
  const started = (start: number) => ({ ...round(10, 5, 38, { closer: 1.5, redis: 0.5 }), curve: [[0, start], [99, 1200]] as [number, number][] });
  const cpuWithin = closeCpuBudget([started(110), started(300)], 50_000);
  assert.match(cpuWithin, /and so is what every process spent per close in the median round: what the p99 misses is not CPU per close but when the closing starts and how evenly it runs \(the first order of a round closed 0\.11–0\.30 s after its due time/);
  assert.doesNotMatch(cpuWithin, /what must fall/);
  // Every round within the target: said so, nothing about a miss.
  const quick = (p99: number, spent: number, seconds: Record<string, number>, n: number): TimeoutsRun => ({ ...round(10, 5, spent, seconds), round: n, delayMs: { p50: 500, p90: 700, p99, max: p99 + 20 } });
  const metAll = closeCpuBudget([quick(800, 29, { closer: 1.2, redis: 0.5, mariadb: 1.0 }, 1), quick(900, 30, { closer: 1.3, redis: 0.5, mariadb: 1.0 }, 2)], 50_000);
  assert.match(metAll, /in the median round; every round met the p99 target\.$/);
  // One round missed, spending above the budget with every process costlier: the machine ran slower then.
  const slowRound = closeCpuBudget([quick(800, 29, { closer: 1.2, redis: 0.5, mariadb: 1.0 }, 1), quick(1270, 42, { closer: 1.6, redis: 0.7, mariadb: 1.3 }, 2), quick(780, 30, { closer: 1.2, redis: 0.5, mariadb: 1.0 }, 3)], 50_000);
  assert.match(slowRound, /but the round that missed \(round 2, p99 1\.270 s\) spent 42\.0 µs per close, above the 40\.0 allowed, against 29\.5 in the batch's other rounds \(median; by process: closer 16\.0 against 12\.0, redis 7\.0 against 5\.0, mariadb 13\.0 against 10\.0\): every process spent at least a tenth more for the same work, so the machine ran slower in that round\./);
  // Only the closer costlier: no claim about the machine.
  const closerOnly = closeCpuBudget([quick(800, 29, { closer: 1.2, redis: 0.5, mariadb: 1.0 }, 1), quick(1270, 42, { closer: 2.5, redis: 0.5, mariadb: 1.0 }, 2)], 50_000);
  assert.match(closerOnly, /by process: closer 25\.0 against 12\.0, redis 5\.0 against 5\.0, mariadb 10\.0 against 10\.0\)\.$/);
  // Since migration 7 the release's statement is the closed rows read back: named so, and no clause
  // about a design without the record (there is none to leave out).
  const readBack = (update: number, releaseRead: number, spent: number, seconds: Record<string, number>): TimeoutsRun => {
    const r = round(update, 0, spent, seconds);
    return { ...r, ceiling: { ...(r.ceiling as NonNullable<TimeoutsRun['ceiling']>), cpuUsPerRow: { update, releaseRead } } };
  };
  const rowState = closeCpuBudget([readBack(11, 4, 45, { closer: 1.3, redis: 0.5 }), readBack(13, 6, 47, { closer: 1.5, redis: 0.5 })], 50_000);
  assert.match(rowState, /statements per close cost 17\.0 \(15\.0–19\.0\) µs per order in the ceiling runs \(the conditional UPDATE 12\.0, the closed rows read back for their releases 5\.0; client \+ MariaDB\)/);
  assert.match(rowState, /the closer's cost above it is what must fall/);
  assert.doesNotMatch(rowState, /Without the record|release record/);
  // Lines from before the floor was measured say nothing.
  const old = round(1, 1, 1);
  assert.equal(closeCpuBudget([{ ...old, ceiling: { ...(old.ceiling as NonNullable<TimeoutsRun['ceiling']>), cpuUsPerRow: undefined } }], 50_000), '');
  assert.match(timeoutsBudgetLine(timeoutsSummary([round(38, 20, 150)])), /CPU budget: 49,774 closes\/s on 2 cores leave 40\.2 µs/);
});

test('generated blocks: only the named block is replaced; text and other blocks stay', () => {
  const doc = '# R\n\nintro\n\n<!-- generated:seckill -->\nold\n<!-- /generated:seckill -->\n\n<!-- generated:chaos -->\nchaos text\n<!-- /generated:chaos -->\n';
  const next = replaceBlock(doc, 'seckill', 'new table', true);
  assert.match(next, /<!-- generated:seckill -->\n<!-- written by[^\n]*-->\nnew table\n<!-- \/generated:seckill -->/);
  assert.ok(!next.includes('\nold\n'));
  assert.ok(next.includes('intro') && next.includes('<!-- generated:chaos -->\nchaos text\n<!-- /generated:chaos -->'));
  assert.equal(replaceBlock(next, 'seckill', 'new table', true), next, 'idempotent');
  assert.match(replaceBlock(doc, 'timeouts', 'x', true), /<!-- \/generated:chaos -->\n\n<!-- generated:timeouts -->/);
  assert.throws(() => replaceBlock(doc, 'benchmarks', 'x', false), /no <!-- generated:benchmarks -->/);
});

test('svg: axes, labels, one polyline per series, escaped text', () => {
  const svg = renderChart({
    title: 'Latency <p99>',
    x: { label: 'percentile', scale: 'percentile', format: (p) => `${p}%` },
    y: { label: 'ms', scale: 'log' },
    series: [
      { name: 'a', color: '#f00', points: [[0, 0.5], [50, 1], [99, 20], [100, 40]] },
      { name: 'b', color: '#00f', points: [[0, 0.2], [50, 0.4], [99.9, 2]], dashed: true },
    ],
    hlines: [{ y: 50, label: 'target', color: '#0a0' }],
  });
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.equal(svg.match(/<polyline /g)?.length, 2);
  assert.ok(svg.includes('Latency &lt;p99&gt;'));
  for (const label of ['percentile', 'ms', 'target', '99%', '99.9%']) assert.ok(svg.includes(`>${label}<`), label);
  assert.ok(!/NaN|Infinity/.test(svg));
});

test('timeouts ceiling sentence: a burst the raw UPDATE rate cannot close within the target is called out of reach', () => {
  const withCeiling = (rate: number): TimeoutsRun => ({
    bench: 'timeouts', ...context, timestamp: '2026-12-01T00:00:00.000Z', which: 'closer', round: 1,
    params: { orders: 100_000, bucket: '2s', partitions: 6, dueSpreadMs: 1000 }, orders: 100_000, closed: 100_000, early: 0, closesPerSecond: 10_000,
    delayMs: { p50: 2000, p90: 3500, p99: 4000, max: 4000 }, curve: [[99, 4000]], notes: [], checks: [], ceiling: { updatesPerSecond: rate / 4, chunkedPerSecond: rate, rows: 100_000, connections: 4, perTransaction: 500 } });
  // 100,000 orders at 40,000 rows/s: 2.5 s of UPDATEs for dues spread over 1 s → p99 ≥ 0.99 × 1.5 s = 1.485 s.
  assert.match(timeoutsBudgetLine(timeoutsSummary([withCeiling(40_000)])), /p99 is at least 1\.48 s.*needs ≥ 49,749 rows\/s: out of reach/);
  assert.match(timeoutsBudgetLine(timeoutsSummary([withCeiling(200_000)])), /p99 is at least 0\.00 s.*By the UPDATEs. rate alone the p99 target is within reach/);
});
