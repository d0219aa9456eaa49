// Targets and summaries of a batch of runs, computed from raw result lines only: the benchmark
// prints them at the end of a run and the report generator renders the same figures into
// RESULTS.md and the README, so what is checked is what is shown.
import type { SeckillRun, TimeoutsRun } from './results.ts';
import { spread, type Spread } from './stats.ts';

export const TARGETS = {
  /** Accepted orders reaching MySQL per second ÷ bare node:http req/s with the same wrk settings. */
  acceptRatio: 0.5,
  /** Accept path HTTP p99 at ACCEPT_P99_CONNECTIONS connections, ms. */
  acceptP99Ms: 50,
  acceptP99Connections: 256,
  /** Rejection path req/s ÷ bare node:http req/s. */
  rejectRatio: 0.8,
  /** Timeouts: close delay p99, ms, with zero early closes, for this many orders due within one second. */
  closeP99Ms: 1000,
  closeOrders: 100_000,
};

export interface Verdict {
  what: string;
  ok: boolean;
  figure: string;
}

/** A rejection floor's figures: req/s, ratio to the bare run of its round, latency, CPU per request of its server. */
export interface RejectFloor {
  rps: Spread;
  ratio: Spread;
  p50: Spread;
  p99: Spread;
  cpuUs: Spread;
}

export interface SeckillSummary {
  batch: string;
  /** Accept pairs (bare → accept). */
  pairs: number;
  /** Rejection pairs or rounds with both a bare and an API rejection run (each gives one ratio). */
  rejectRounds: number;
  first: SeckillRun;
  bareReject: Spread;
  bareRejectP50: Spread;
  bareRejectP99: Spread;
  reject: Spread;
  rejectP50: Spread;
  rejectRatio: Spread;
  rejectP99: Spread;
  /**
   * The rejection floor (lib/rejection-floor.ts): req/s, ratio to the bare run of its round, latency,
   * CPU per request of the floor server; null in batches before it existed.
   */
  rejectFloor: RejectFloor | null;
  /** The rejection floor in a process holding the API's client connections (batches since 2026-12-06). */
  rejectFloorConnected: RejectFloor | null;
  /**
   * The accept floor (lib/accept-floor.ts): orders/s into its table, ratio to the bare run of its
   * pair, HTTP latency, CPU per order of all its processes and of its server alone; null in batches
   * before it existed (2026-12-05 13:16).
   */
  acceptFloor: { ordersPerSecond: Spread; ratio: Spread; p50: Spread; p99: Spread; cpuUs: Spread; serverUs: Spread } | null;
  bareAccept: Spread;
  bareAcceptP50: Spread;
  bareAcceptP99: Spread;
  /** Mean latency of the bare runs at the accept settings (wrk's own mean). */
  bareAcceptMean: Spread;
  acceptHttp: Spread;
  acceptP50: Spread;
  acceptP99: Spread;
  ordersPerSecond: Spread;
  acceptRatio: Spread;
  cpuPerOrderUs: Spread;
  cpuPerRejectUs: Spread;
  /** The bare server's CPU per request at the rejection settings. */
  cpuPerBareUs: Spread;
  /** Median CPU µs per accepted order by process role. */
  cpuPerOrderByRole: Record<string, Spread>;
  /**
   * Per pair with a parts' floor: the bare server's CPU per request at the accept settings plus the
   * floor's Redis, Kafka and MySQL µs per order (null when no pair measured it).
   */
  partsFloorUs: Spread | null;
  /** The floor's parts, µs per order: http (the bare server), redis, kafka, mysql. */
  partsFloorByPart: Record<string, Spread>;
  /** Orders per request (Redis round, produce, INSERT) in the floor's measurement. */
  partsBatch: number | null;
  /** The floor's reserves went one script call per batch (results since the API batches its reserves). */
  partsReserveBatched: boolean;
  /** The floor includes the hand-off confirmation script and the restore fence's marks (results since 2026-12-04 21:40). */
  partsConfirmAndMarks: boolean;
  /**
   * Per accept run: orders per produce request of the API's hand-off and messages per order-writer
   * batch (their histograms); null in batches before they were recorded.
   */
  batching: { handOff: Spread; writer: Spread } | null;
  /** Per accept run: the share of its time the API's event loop was busy; null in batches before it was recorded. */
  apiEventLoopBusy: Spread | null;
  /**
   * The load generator's CPU per request (wrk, lib/wrk.ts) in the bare runs at the accept settings
   * and in the accept runs, and the figure taken at the target's rate (the lower median); null in
   * batches before it was measured.
   */
  loadGenUs: { bareAccept: Spread; accept: Spread; atTarget: number } | null;
  /**
   * Orders/s the measured CPU per order allows on all the machine's cores (median), the load
   * generator's CPU per request at the accept run's rate included when measured.
   */
  budgetOrdersPerSecond: number;
  /**
   * CPU µs per order the accept target leaves the pipeline on all the machine's cores: cores ÷ the
   * target's orders/s, less the load generator's CPU per request (the lower of its two medians).
   */
  allowedUsPerOrder: number;
  /** Orders/s the accept target asks for (median bare × ratio). */
  targetOrdersPerSecond: number;
  verdicts: Verdict[];
  checksFailed: string[];
}

const f0 = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a');
const f2 = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : 'n/a');
/** A ratio against its target: when two decimals would round a miss up to the target (0.7994 → "0.80"), three, truncated. */
const fRatio = (n: number, target: number) => (Number.isFinite(n) && n < target && Number(n.toFixed(2)) >= target ? (Math.floor(n * 1000) / 1000).toFixed(3) : f2(n));

/** Orders/s the cores allow at `usPerOrder` of pipeline CPU, with wrk's CPU per request (accept runs) on top when measured. */
function cpuBoundRate(cores: number, usPerOrder: number, loadGen: SeckillSummary['loadGenUs']): number {
  return (cores * 1e6) / (usPerOrder + (loadGen?.accept.median ?? 0));
}

/** Runs grouped by batch, oldest batch first. */
export function batches<T extends { batch: string }>(runs: T[]): T[][] {
  const by = new Map<string, T[]>();
  for (const r of runs) {
    const list = by.get(r.batch) ?? [];
    list.push(r);
    by.set(r.batch, list);
  }
  return [...by.values()];
}

export function seckillSummary(runs: SeckillRun[]): SeckillSummary {
  const first = runs[0];
  if (!first) throw new Error('no seckill runs');
  const pairs = [...new Set(runs.map((r) => r.pair))].sort((a, b) => a - b);
  const of = (pair: number, which: SeckillRun['which'], ceilingOf?: 'reject' | 'accept') =>
    runs.find((r) => r.pair === pair && r.which === which && (ceilingOf === undefined || r.ceilingOf === ceilingOf));
  const rejectRatios: number[] = [];
  const floorRatios: number[] = [];
  const connectedRatios: number[] = [];
  const acceptRatios: number[] = [];
  const acceptFloorRatios: number[] = [];
  for (const p of pairs) {
    const b1 = of(p, 'bare', 'reject');
    const rj = of(p, 'reject');
    if (b1 && rj) rejectRatios.push(rj.rps / b1.rps);
    const fl = of(p, 'reject-floor');
    if (b1 && fl) floorRatios.push(fl.rps / b1.rps);
    const fc = of(p, 'reject-floor-connected');
    if (b1 && fc) connectedRatios.push(fc.rps / b1.rps);
    const b2 = of(p, 'bare', 'accept');
    const ac = of(p, 'accept');
    if (b2 && ac?.accepted) acceptRatios.push(ac.accepted.ordersPerSecond / b2.rps);
    const af = of(p, 'accept-floor');
    if (b2 && af?.accepted) acceptFloorRatios.push(af.accepted.ordersPerSecond / b2.rps);
  }
  const all = (which: SeckillRun['which'], ceilingOf?: 'reject' | 'accept') => runs.filter((r) => r.which === which && (ceilingOf === undefined || r.ceilingOf === ceilingOf));
  const accepts = all('accept');
  const roles = [...new Set(accepts.flatMap((r) => Object.keys(r.cpu.seconds)))];
  const cpuPerOrderByRole: Record<string, Spread> = {};
  for (const role of roles) cpuPerOrderByRole[role] = spread(accepts.map((r) => ((r.cpu.seconds[role] ?? NaN) / r.cpu.units) * 1e6));
  const s = {
    bareReject: spread(all('bare', 'reject').map((r) => r.rps)),
    bareRejectP50: spread(all('bare', 'reject').map((r) => r.latencyMs.p50)),
    bareRejectP99: spread(all('bare', 'reject').map((r) => r.latencyMs.p99)),
    reject: spread(all('reject').map((r) => r.rps)),
    rejectP50: spread(all('reject').map((r) => r.latencyMs.p50)),
    rejectRatio: spread(rejectRatios),
    rejectP99: spread(all('reject').map((r) => r.latencyMs.p99)),
    bareAccept: spread(all('bare', 'accept').map((r) => r.rps)),
    bareAcceptP50: spread(all('bare', 'accept').map((r) => r.latencyMs.p50)),
    bareAcceptP99: spread(all('bare', 'accept').map((r) => r.latencyMs.p99)),
    bareAcceptMean: spread(all('bare', 'accept').map((r) => r.latencyMs.mean)),
    acceptHttp: spread(accepts.map((r) => r.rps)),
    acceptP50: spread(accepts.map((r) => r.latencyMs.p50)),
    acceptP99: spread(accepts.map((r) => r.latencyMs.p99)),
    ordersPerSecond: spread(accepts.map((r) => r.accepted?.ordersPerSecond ?? NaN)),
    acceptRatio: spread(acceptRatios),
    cpuPerOrderUs: spread(accepts.map((r) => r.cpu.usPerUnit)),
    cpuPerRejectUs: spread(all('reject').map((r) => r.cpu.usPerUnit)),
    cpuPerBareUs: spread(all('bare', 'reject').map((r) => r.cpu.usPerUnit)),
  };
  const floorOf = (which: 'reject-floor' | 'reject-floor-connected', ratios: number[]): RejectFloor | null => {
    const floorRuns = all(which);
    return ratios.length > 0
      ? {
          rps: spread(floorRuns.map((r) => r.rps)),
          ratio: spread(ratios),
          p50: spread(floorRuns.map((r) => r.latencyMs.p50)),
          p99: spread(floorRuns.map((r) => r.latencyMs.p99)),
          cpuUs: spread(floorRuns.map((r) => r.cpu.usPerUnit)),
        }
      : null;
  };
  const rejectFloor = floorOf('reject-floor', floorRatios);
  const rejectFloorConnected = floorOf('reject-floor-connected', connectedRatios);
  const acceptFloorRuns = all('accept-floor');
  const acceptFloor =
    acceptFloorRatios.length > 0
      ? {
          ordersPerSecond: spread(acceptFloorRuns.map((r) => r.accepted?.ordersPerSecond ?? NaN)),
          ratio: spread(acceptFloorRatios),
          p50: spread(acceptFloorRuns.map((r) => r.latencyMs.p50)),
          p99: spread(acceptFloorRuns.map((r) => r.latencyMs.p99)),
          cpuUs: spread(acceptFloorRuns.map((r) => r.cpu.usPerUnit)),
          serverUs: spread(acceptFloorRuns.map((r) => ((r.cpu.seconds.api ?? NaN) / r.cpu.units) * 1e6)),
        }
      : null;
  const floors: number[] = [];
  const floorParts: Record<string, number[]> = { http: [], redis: [], kafka: [], mysql: [] };
  for (const p of pairs) {
    const b2 = of(p, 'bare', 'accept');
    const parts = of(p, 'accept')?.parts;
    if (!b2 || !parts) continue;
    const byPart: Record<string, number> = { http: b2.cpu.usPerUnit, ...parts.usPerOrder };
    floors.push(Object.values(byPart).reduce((a, v) => a + v, 0));
    for (const [k, v] of Object.entries(byPart)) (floorParts[k] ??= []).push(v);
  }
  const partsFloorUs = floors.length > 0 ? spread(floors) : null;
  const partsBatch = accepts.find((r) => r.parts)?.parts?.batch ?? null;
  const partsReserveBatched = accepts.find((r) => r.parts)?.parts?.reserve === 'batched';
  const partsConfirmAndMarks = accepts.find((r) => r.parts)?.parts?.confirmAndMarks === true;
  const batched = accepts.flatMap((r) => (r.batches && r.batches.handOff.requests > 0 && r.batches.writer.batches > 0 ? [r.batches] : []));
  const batching = batched.length > 0 ? { handOff: spread(batched.map((b) => b.handOff.orders / b.handOff.requests)), writer: spread(batched.map((b) => b.writer.messages / b.writer.batches)) } : null;
  const busyRuns = accepts.flatMap((r) => (r.apiEventLoopBusy !== undefined ? [r.apiEventLoopBusy] : []));
  const apiEventLoopBusy = busyRuns.length > 0 ? spread(busyRuns) : null;
  const partsFloorByPart: Record<string, Spread> = {};
  if (partsFloorUs) for (const [k, v] of Object.entries(floorParts)) partsFloorByPart[k] = spread(v);
  const cores = first.machine.cores;
  const bareAcceptGen = all('bare', 'accept').filter((r) => r.loadGen);
  const acceptGen = accepts.filter((r) => r.loadGen);
  const bareAcceptGenUs = spread(bareAcceptGen.map((r) => r.loadGen?.usPerRequest ?? NaN));
  const acceptGenUs = spread(acceptGen.map((r) => r.loadGen?.usPerRequest ?? NaN));
  // The target's rate lies between the accept runs' and the bare runs'; wrk's cost per request at
  // either was measured, not at the target's: take the cheaper of the two, in the target's favour.
  const loadGenUs =
    bareAcceptGen.length > 0 && acceptGen.length > 0 ? { bareAccept: bareAcceptGenUs, accept: acceptGenUs, atTarget: Math.min(bareAcceptGenUs.median, acceptGenUs.median) } : null;
  const targetOrdersPerSecond = s.bareAccept.median * TARGETS.acceptRatio;
  const allowedUsPerOrder = (cores * 1e6) / targetOrdersPerSecond - (loadGenUs?.atTarget ?? 0);
  const acceptConnections = accepts[0]?.params.connections ?? NaN;
  const verdicts: Verdict[] = [
    {
      what: `accepted orders into MySQL ≥ ${TARGETS.acceptRatio} of bare node:http (median of per-pair ratios)`,
      ok: s.acceptRatio.median >= TARGETS.acceptRatio,
      figure: `${fRatio(s.acceptRatio.median, TARGETS.acceptRatio)} (${f2(s.acceptRatio.min)}–${f2(s.acceptRatio.max)}): ${f0(s.ordersPerSecond.median)} orders/s against ${f0(s.bareAccept.median)} req/s`,
    },
    {
      what: `accept path p99 ≤ ${TARGETS.acceptP99Ms} ms at ${TARGETS.acceptP99Connections} connections`,
      ok: s.acceptP99.median <= TARGETS.acceptP99Ms && acceptConnections === TARGETS.acceptP99Connections,
      figure: `${f2(s.acceptP99.median)} ms (${f2(s.acceptP99.min)}–${f2(s.acceptP99.max)}) at ${acceptConnections} connections`,
    },
    {
      what: `rejection path ≥ ${TARGETS.rejectRatio} of bare node:http (median of ${rejectRatios.length} ratios, one per round)`,
      ok: s.rejectRatio.median >= TARGETS.rejectRatio,
      figure: `${fRatio(s.rejectRatio.median, TARGETS.rejectRatio)} (${f2(s.rejectRatio.min)}–${f2(s.rejectRatio.max)}): ${f0(s.reject.median)} req/s against ${f0(s.bareReject.median)} req/s`,
    },
  ];
  const checksFailed = runs.flatMap((r) => r.checks.filter((c) => !c.ok).map((c) => `${r.which} pair ${r.pair}: ${c.what}`));
  const acceptPairs = new Set(accepts.map((r) => r.pair)).size;
  return { batch: first.batch, pairs: acceptPairs, rejectRounds: rejectRatios.length, first, ...s, rejectFloor, rejectFloorConnected, acceptFloor, cpuPerOrderByRole, partsFloorUs, partsFloorByPart, partsBatch, partsReserveBatched, partsConfirmAndMarks, batching, apiEventLoopBusy, loadGenUs, budgetOrdersPerSecond: cpuBoundRate(cores, s.cpuPerOrderUs.median, loadGenUs), allowedUsPerOrder, targetOrdersPerSecond, verdicts, checksFailed };
}

/** The CPU budget sentence: what the measured CPU per order allows on this machine's cores. */
export function budgetLine(s: SeckillSummary): string {
  const cores = s.first.machine.cores;
  const reach = s.budgetOrdersPerSecond >= s.targetOrdersPerSecond;
  const gen = s.loadGenUs;
  return (
    `CPU budget: ${cores} cores ÷ ${gen ? '(' : ''}${f0(s.cpuPerOrderUs.median)} µs of CPU per accepted order (all pipeline processes)` +
    (gen ? ` + ${gen.accept.median.toFixed(1)} µs of the load generator's per request, which shares the cores)` : '') +
    ` = at most ${f0(s.budgetOrdersPerSecond)} orders/s; the accept target asks for ${f0(s.targetOrdersPerSecond)} orders/s ` +
    `(${TARGETS.acceptRatio} × bare). ${reach ? 'Within the budget.' : `Out of reach on ${cores} cores at this CPU cost: it must fall below ${f0(s.allowedUsPerOrder)} µs per order.`}` +
    (gen
      ? ` wrk spent ${gen.accept.median.toFixed(1)} (${gen.accept.min.toFixed(1)}–${gen.accept.max.toFixed(1)}) µs of CPU per request in the accept runs and ${gen.bareAccept.median.toFixed(1)} (${gen.bareAccept.min.toFixed(1)}–${gen.bareAccept.max.toFixed(1)}) in the bare runs at ${(1 / TARGETS.acceptRatio).toFixed(0)} × the target's rate; ` +
        `the target's rate lies between the two, and taking the lower in its favour, the target leaves the pipeline ${cores} cores ÷ ${f0(s.targetOrdersPerSecond)} orders/s − ${gen.atTarget.toFixed(1)} µs = ${s.allowedUsPerOrder.toFixed(1)} µs per order.`
      : '')
  );
}

/**
 * The accept target against the parts' floor (test/bench/lib/parts.ts): what the bare server and
 * Redis, Kafka and MariaDB cost per order through their clients alone. Above the CPU per order the
 * target allows, no change to our code reaches it on this machine; below it, the rest of the
 * pipeline's cost is ours to cut.
 */
export function floorLine(s: SeckillSummary): string | null {
  const floor = s.partsFloorUs;
  if (!floor) return null;
  const cores = s.first.machine.cores;
  const allowed = s.allowedUsPerOrder;
  const part = (k: string) => s.partsFloorByPart[k]?.median.toFixed(1) ?? 'n/a';
  const verdict =
    floor.median > allowed
      ? `Out of reach on ${cores} cores whatever our code does: the parts alone cost ${(floor.median - allowed).toFixed(1)} µs per order more than the target allows.`
      : `Within reach of the parts, which take ${((floor.median / allowed) * 100).toFixed(0)} % of it: of the pipeline's ${s.cpuPerOrderUs.median.toFixed(1)} µs per order, ${(s.cpuPerOrderUs.median - floor.median).toFixed(1)} are above the floor (our code and what the floor leaves out), and ${(s.cpuPerOrderUs.median - allowed).toFixed(1)} of them must go.`;
  return (
    `Parts' floor, measured in each pair: the bare server's CPU per request (${part('http')} µs) plus Redis (${s.partsConfirmAndMarks ? 'reserve, hand-off confirmation and claim scripts, one call per batch' : s.partsReserveBatched ? 'reserve and claim scripts, one call per batch' : 'reserve script pipelined, claim script one call per batch'}: ${part('redis')} µs), ` +
    `Kafka (the order produced with acks=all, fetched and committed, its timeout produced; kafkajs alone, ${s.partsBatch ?? 'n/a'} orders per request: ${part('kafka')} µs) and ` +
    `MariaDB (multi-row INSERT IGNORE${s.partsConfirmAndMarks ? ", with the restore fence's mark read and upserted per batch" : ''}: ${part('mysql')} µs), client and server CPU per order with none of our code = ${floor.median.toFixed(1)} (${floor.min.toFixed(1)}–${floor.max.toFixed(1)}) µs per order; ` +
    `the accept target allows ${allowed.toFixed(1)} µs on ${cores} cores${s.loadGenUs ? ' once the load generator has its share' : ''}. ${verdict}` +
    (s.batching
      ? ` Batch sizes in the pipeline (the floor's: ${s.partsBatch ?? 'n/a'} orders per request): ${s.batching.handOff.median.toFixed(0)} (${s.batching.handOff.min.toFixed(0)}–${s.batching.handOff.max.toFixed(0)}) orders per produce request of the API, ${s.batching.writer.median.toFixed(0)} (${s.batching.writer.min.toFixed(0)}–${s.batching.writer.max.toFixed(0)}) per order-writer batch.`
      : '')
  );
}

/**
 * The accept target against the accept floor (test/bench/lib/accept-floor.ts): an order path that does
 * only what every accepted order needs, with the same parts asked the same way, measured in the same
 * pairs. Below the target, an order path that does this much with these parts on node:http does not
 * reach it on this machine (a different design, with fewer round trips per order, is not ruled out);
 * above it, what stands between is our code.
 */
export function acceptFloorLine(s: SeckillSummary): string | null {
  const f = s.acceptFloor;
  if (!f) return null;
  const r = (x: Spread, d = 2) => `${x.median.toFixed(d)} (${x.min.toFixed(d)}–${x.max.toFixed(d)})`;
  const apiShare = s.ordersPerSecond.median / f.ordersPerSecond.median;
  const cores = s.first.machine.cores;
  const floorBound = cpuBoundRate(cores, f.cpuUs.median, s.loadGenUs);
  const budget =
    ` At the floor's CPU per order${s.loadGenUs ? " and the load generator's" : ''} the ${cores} cores allow at most ${f0(floorBound)} orders/s against the target's ${f0(s.targetOrdersPerSecond)}` +
    (floorBound < s.targetOrdersPerSecond
      ? `: out of reach on ${cores} cores at that cost too (the target allows ${s.allowedUsPerOrder.toFixed(1)} µs per order).`
      : '.');
  return (
    `Accept floor, measured in each pair after the API's accept run with its settings: a node:http server and a writer doing only what every accepted order needs ` +
    `(read and parse the body, check two strings; the reserve script per event-loop turn; the order as JSON, produced with acks=all, one request in flight; the hand-off confirmation script; 202; ` +
    `the writer's batches parsed, claimed, inserted with the restore fence's mark, their timeouts produced, offsets committed), with the same Redis scripts, kafkajs and mysql2, none of our routing, checks, metrics or logging. ` +
    `It put ${f0(f.ordersPerSecond.median)} (${f0(f.ordersPerSecond.min)}–${f0(f.ordersPerSecond.max)}) orders/s into MySQL, ${r(f.ratio)} of bare, p99 ${r(f.p99)} ms, at ${r(f.cpuUs, 1)} µs of CPU per order (its server ${f.serverUs.median.toFixed(1)}); ` +
    `the API reached ${(apiShare * 100).toFixed(0)} % of the floor's rate at ${s.cpuPerOrderUs.median.toFixed(1)} µs per order` +
    (f.ratio.median < TARGETS.acceptRatio
      ? `. The floor is below the target itself: on this machine an order path that does this much with these parts on node:http does not reach ${TARGETS.acceptRatio} of bare, and the closest figure reached is the API's ${s.acceptRatio.median.toFixed(2)} against the floor's ${f.ratio.median.toFixed(2)}.`
      : `. The floor reaches the target: what stands between the API and it is our code's cost per order.`) +
    budget
  );
}

/**
 * The rejection target as a CPU budget: the server under test has one core (wrk has the other), so
 * at the target ratio the rejection path may cost at most the bare server's CPU per request ÷ the ratio.
 */
export function rejectBudgetLine(s: SeckillSummary): string {
  const allowed = s.cpuPerBareUs.median / TARGETS.rejectRatio;
  const reach = s.cpuPerRejectUs.median <= allowed;
  return (
    `Rejection budget: the bare server spends ${s.cpuPerBareUs.median.toFixed(1)} µs of CPU per request; at ${TARGETS.rejectRatio} of its rate on the same core ` +
    `the rejection path may spend at most ${allowed.toFixed(1)} µs. It spent ${s.cpuPerRejectUs.median.toFixed(1)} µs (every pipeline process), ` +
    `which allows about ${(s.cpuPerBareUs.median / s.cpuPerRejectUs.median).toFixed(2)} of bare. ${reach ? 'Within the budget.' : `Out of reach at this cost: ${(s.cpuPerRejectUs.median - allowed).toFixed(1)} µs per request too many (where they go: the profile below).`}` +
    (s.rejectFloor
      ? ` The rejection floor, a handler doing only what every rejection needs (read the body, parse it with the API's reader, check two fields, look the buyer up, the same JSON answers, a counter and a histogram), measured in the same rounds: ` +
        `${s.rejectFloor.ratio.median.toFixed(2)} (${s.rejectFloor.ratio.min.toFixed(2)}–${s.rejectFloor.ratio.max.toFixed(2)}) of bare at ${s.rejectFloor.cpuUs.median.toFixed(1)} µs per request (server only)` +
        (s.rejectFloor.ratio.median < TARGETS.rejectRatio ? `, below the target itself: on this machine a node:http handler that does this much does not reach ${TARGETS.rejectRatio} of bare.` : '.')
      : '') +
    (s.rejectFloorConnected
      ? ` The same handler in a process that also holds the API's client connections (Kafka, Redis, MySQL) and sends Redis the sold-out copy's refresh, nothing of it on the request path: ` +
        `${s.rejectFloorConnected.ratio.median.toFixed(2)} (${s.rejectFloorConnected.ratio.min.toFixed(2)}–${s.rejectFloorConnected.ratio.max.toFixed(2)}) of bare at ${s.rejectFloorConnected.cpuUs.median.toFixed(1)} µs per request: ` +
        `what a process that must hold those connections can expect (node's stream code turns megamorphic, docs/order-path.md, "The connected floor").` +
        (s.rejectFloorConnected.ratio.median < TARGETS.rejectRatio ? ` Below the target itself.` : '')
      : '')
  );
}

/**
 * The accept latency target against the CPU budget: with a fixed number of connections each waiting
 * for its answer, the mean latency is connections ÷ throughput (Little's law), so the most orders/s
 * the CPU allows sets the lowest mean latency; the bare server's own tail (p99 ÷ mean at the same
 * settings) shows how far above the mean a p99 lands on this machine.
 */
export function latencyBudgetLine(s: SeckillSummary): string {
  const connections = TARGETS.acceptP99Connections;
  const minMeanMs = (connections / s.budgetOrdersPerSecond) * 1000;
  const tail = s.bareAcceptP99.median / s.bareAcceptMean.median;
  const p99 = minMeanMs * tail;
  // The same sum with the parts' floor in place of the pipeline: the best any code on these parts could do.
  const floorUs = s.partsFloorUs?.median ?? NaN;
  const floorRate = cpuBoundRate(s.first.machine.cores, floorUs, s.loadGenUs);
  const floorP99 = s.partsFloorUs ? (connections / floorRate) * 1000 * tail : null;
  return (
    `Latency budget: at ${connections} connections the mean latency is ${connections} ÷ throughput (Little's law); at the CPU budget's ${f0(s.budgetOrdersPerSecond)} orders/s ` +
    `it is at least ${minMeanMs.toFixed(1)} ms. The bare server's p99 at the same settings is ${tail.toFixed(1)} × its mean, so a p99 near ${p99.toFixed(0)} ms is the best to expect` +
    ` at that rate (target ${TARGETS.acceptP99Ms} ms: ${p99 <= TARGETS.acceptP99Ms ? 'within reach' : 'out of reach at this CPU cost'}).` +
    (floorP99 === null
      ? ''
      : ` At the parts' floor's cost (${floorUs.toFixed(1)} µs per order${s.loadGenUs ? `, wrk's ${s.loadGenUs.accept.median.toFixed(1)} µs per request on top` : ''}) the cores would allow ${f0(floorRate)} orders/s and a p99 near ${floorP99.toFixed(0)} ms: ` +
        (floorP99 <= TARGETS.acceptP99Ms ? 'the target is within reach of the parts, and what stands between is our code\'s cost per order.' : 'out of reach on this machine whatever our code does.')) +
    (s.apiEventLoopBusy === null
      ? ''
      : ` The API's event loop (one thread, its process pinned to one core) was busy ${s.apiEventLoopBusy.median.toFixed(2)} (${s.apiEventLoopBusy.min.toFixed(2)}–${s.apiEventLoopBusy.max.toFixed(2)}) of the accept runs' time` +
        (s.apiEventLoopBusy.median >= 0.75
          ? ': the accepts queue on that thread before the two cores run out, so its CPU per order, more than the pipeline\'s sum, sets the rate and the latency.'
          : '.'))
  );
}

export interface TimeoutsSummary {
  batch: string;
  first: TimeoutsRun;
  rows: TimeoutsRun[];
  verdicts: Verdict[];
  checksFailed: string[];
}

export function timeoutsSummary(runs: TimeoutsRun[]): TimeoutsSummary {
  const first = runs[0];
  if (!first) throw new Error('no timeouts runs');
  const closerRounds = runs.filter((r) => r.which === 'closer');
  const apiRounds = runs.filter((r) => r.which === 'api');
  const p99 = spread(closerRounds.map((r) => r.delayMs.p99));
  const early = runs.reduce((s, r) => s + r.early, 0);
  const orders = closerRounds[0]?.params.orders ?? 0;
  const verdicts: Verdict[] = [
    {
      what: `${f0(TARGETS.closeOrders)} unpaid orders due within one second close with p99 ≤ ${TARGETS.closeP99Ms / 1000} s (worst closer round)`,
      ok: closerRounds.length > 0 && p99.max <= TARGETS.closeP99Ms && orders >= TARGETS.closeOrders,
      figure: closerRounds.length === 0 ? 'no closer round' : `worst round p99 ${(p99.max / 1000).toFixed(3)} s (median ${(p99.median / 1000).toFixed(3)} s, best ${(p99.min / 1000).toFixed(3)} s) over ${closerRounds.length} rounds of ${f0(orders)} orders`,
    },
    ...apiRounds.map((r) => ({
      what: `through the API and order writer (round ${r.round}): p99 ≤ ${TARGETS.closeP99Ms / 1000} s`,
      ok: r.delayMs.p99 <= TARGETS.closeP99Ms,
      figure: `p99 ${(r.delayMs.p99 / 1000).toFixed(3)} s for ${f0(r.orders)} orders due within ${(r.params.dueSpreadMs / 1000).toFixed(2)} s`,
    })),
    { what: 'zero early closes (every round, every mode)', ok: early === 0, figure: `${early} early` },
  ];
  const checksFailed = runs.flatMap((r) => r.checks.filter((c) => !c.ok).map((c) => `${r.which} round ${r.round}: ${c.what}`));
  return { batch: first.batch, first, rows: runs, verdicts, checksFailed };
}

/**
 * The ceiling sentence of a timeouts batch: how fast raw conditional UPDATEs close rows on the same
 * table bounds the close delay from below. Closing the k-th of N orders (dues spread evenly over S
 * seconds) cannot end before k ÷ ceiling s after the first due, so the 99th percentile of the delay
 * is at least 0.99 × (N ÷ ceiling − S).
 */
export function timeoutsBudgetLine(s: TimeoutsSummary): string {
  const rounds = s.rows.filter((r) => r.which === 'closer' && r.ceiling);
  const first = rounds[0];
  if (!first?.ceiling) return 'No ceiling measured in this batch.';
  const ceiling = spread(rounds.map((r) => r.ceiling?.chunkedPerSecond ?? NaN));
  const orders = first.params.orders;
  const spreadS = first.params.dueSpreadMs / 1000;
  const targetS = TARGETS.closeP99Ms / 1000;
  const floorP99 = Math.max(0, 0.99 * (orders / ceiling.max - spreadS));
  const need = closesNeeded(orders, spreadS);
  return (
    `Ceiling: raw conditional UPDATEs close ${f0(ceiling.median)} (${f0(ceiling.min)}–${f0(ceiling.max)}) rows/s on the same table ` +
    `(${first.ceiling.perTransaction} rows per transaction, ${first.ceiling.connections} connections). At the best of them, ${f0(orders)} orders due within ` +
    `${spreadS.toFixed(2)} s take ${(orders / ceiling.max).toFixed(2)} s of UPDATEs alone, so the close delay's p99 is at least ${floorP99.toFixed(2)} s ` +
    `whatever the closer does. ${floorP99 <= targetS ? 'By the UPDATEs\' rate alone the p99 target is within reach.' : `The p99 ≤ ${targetS} s target needs ≥ ${f0(need)} rows/s: out of reach on this machine.`}` +
    closeCpuBudget(rounds, need)
  );
}

/** How late the first order of each round closed (the close-delay curve's 0th percentile), as a clause. */
function startLine(rounds: TimeoutsRun[]): string {
  const starts = rounds.map((r) => r.curve.find(([p]) => p === 0)?.[1]).filter((ms): ms is number => ms !== undefined);
  if (starts.length === 0) return '';
  const s = spread(starts);
  return ` (the first order of a round closed ${(s.min / 1000).toFixed(2)}–${(s.max / 1000).toFixed(2)} s after its due time, and every later one waits behind that start)`;
}

/** The release's own statement in a ceiling's CPU per row: the read back since migration 7, the record's INSERT before. */
export function releaseUs(c: { releaseInsert?: number; releaseRead?: number } | undefined): number {
  return c?.releaseRead ?? c?.releaseInsert ?? NaN;
}

/**
 * The figures of closeCpuBudget: null when no round measured the floor (lines before 2026-12-04).
 * `release` is the release's own MySQL statement as the batch's closer ran it: the record's INSERT
 * until migration 7, the closed rows read back since (`record` says which).
 */
export function closeCpuFloor(rounds: TimeoutsRun[], need: number): { cores: number; allowed: number; record: boolean; update: Spread; release: Spread; floor: Spread; redis: Spread; closer: Spread; spent: Spread } | null {
  const measured = rounds.filter((r) => r.ceiling?.cpuUsPerRow);
  const first = measured[0];
  if (!first) return null;
  const cores = first.machine.cores;
  const perClose = (r: TimeoutsRun, part: string) => (r.cpu?.seconds[part] === undefined ? NaN : ((r.cpu.seconds[part] as number) / r.cpu.units) * 1e6);
  const release = (r: TimeoutsRun) => releaseUs(r.ceiling?.cpuUsPerRow);
  return {
    cores,
    allowed: (cores * 1e6) / need,
    record: first.ceiling?.cpuUsPerRow?.releaseRead === undefined,
    update: spread(measured.map((r) => r.ceiling?.cpuUsPerRow?.update ?? NaN)),
    release: spread(measured.map(release)),
    floor: spread(measured.map((r) => (r.ceiling?.cpuUsPerRow?.update ?? NaN) + release(r))),
    redis: spread(measured.map((r) => perClose(r, 'redis'))),
    closer: spread(measured.map((r) => perClose(r, 'closer'))),
    spent: spread(measured.map((r) => r.cpu?.usPerUnit ?? NaN)),
  };
}

/**
 * The verdict when the median round's CPU per close fits the budget: every round met the target;
 * or the round that missed spent at least a tenth more per close than the batch's other rounds
 * (what spent more in it; every process at once means the machine ran slower then); or the miss
 * lies in when the closing started.
 */
function withinBudget(rounds: TimeoutsRun[], allowed: number): string {
  const head = 'The floor is within the budget, and so is what every process spent per close in the median round';
  const worst = rounds.reduce((a, r) => (r.delayMs.p99 > a.delayMs.p99 ? r : a));
  if (worst.delayMs.p99 <= TARGETS.closeP99Ms) return `${head}; every round met the p99 target.`;
  const others = rounds.filter((r) => r !== worst && r.cpu);
  const othersSpent = spread(others.map((r) => r.cpu?.usPerUnit ?? NaN)).median;
  if (!worst.cpu || others.length === 0 || !(worst.cpu.usPerUnit >= 1.1 * othersSpent)) {
    return `${head}: what the p99 misses is not CPU per close but when the closing starts and how evenly it runs${startLine(rounds)}.`;
  }
  const perClose = (r: TimeoutsRun, part: string) => ((r.cpu?.seconds[part] ?? NaN) / (r.cpu?.units ?? NaN)) * 1e6;
  const parts = Object.keys(worst.cpu.seconds).map((part) => ({ part, worst: perClose(worst, part), others: spread(others.map((r) => perClose(r, part))).median }));
  const all = parts.every((p) => p.worst >= 1.1 * p.others);
  const list = parts.map((p) => `${p.part} ${p.worst.toFixed(1)} against ${p.others.toFixed(1)}`).join(', ');
  return (
    `${head}, but the round that missed (round ${worst.round}, p99 ${(worst.delayMs.p99 / 1000).toFixed(3)} s) spent ${worst.cpu.usPerUnit.toFixed(1)} µs per close` +
    `${worst.cpu.usPerUnit > allowed ? `, above the ${allowed.toFixed(1)} allowed,` : ''} against ${othersSpent.toFixed(1)} in the batch's other rounds (median; by process: ${list})` +
    (all ? ': every process spent at least a tenth more for the same work, so the machine ran slower in that round.' : '.')
  );
}

/** Closes/s the p99 target needs for a burst of `orders` due evenly over `spreadS` seconds. */
export function closesNeeded(orders: number, spreadS: number): number {
  return (0.99 * orders) / (TARGETS.closeP99Ms / 1000 + 0.99 * spreadS);
}

/**
 * The CPU side of the same bound: closing `need` orders/s on the machine's cores leaves cores ÷ need
 * of CPU per close for every process. The MySQL statements of this design's close — the conditional
 * UPDATE and the release's own statement (the read back of the closed rows since migration 7, the
 * release record's INSERT before), measured in the ceiling run as this process + MariaDB — are a
 * floor under it (Redis, Kafka, the commit and the applied mark come on top, so it errs low), and so
 * is the pair of them with the Redis server's share of the releases in the closer rounds (a release
 * reaches Redis in any design). For batches with the record, the line also says what the UPDATE and
 * the Redis server's share would leave without it (what migration 7 then built).
 */
export function closeCpuBudget(rounds: TimeoutsRun[], need: number): string {
  const c = closeCpuFloor(rounds, need);
  if (!c) return '';
  const { cores, allowed, record, update, release, floor, redis, closer, spent } = c;
  const f1 = (n: number) => n.toFixed(1);
  const out = floor.median > allowed;
  const updateAndRedis = update.median + redis.median;
  const withoutRecord = record && Number.isFinite(updateAndRedis)
    ? ` Without the record (a release state on the order row instead, docs/timeouts.md) the UPDATE and the Redis server's share of the releases would take ${f1(updateAndRedis)} of the ${f1(allowed)} µs` +
      (updateAndRedis >= allowed
        ? ': out of reach that way too.'
        : `, leaving ${f1(allowed - updateAndRedis)} µs for everything else${Number.isFinite(closer.median) ? `; the closer's own process alone spent ${f1(closer.median)} µs per close` : ''}.`)
    : '';
  // A release reaches Redis in any design, so the Redis server's share counts against the budget with the writes.
  const withRedis = floor.median + redis.median;
  const verdict = out
    ? `Out of reach on ${cores} cores at this design's cost: those two statements alone cost ${f1(floor.median - allowed)} µs per close more than the target allows.${withoutRecord}`
    : withRedis > allowed
      ? `Out of reach on ${cores} cores at this design's cost: the two statements fit in the budget, but with the Redis server's share of the releases they take ${f1(withRedis)} µs per close, ${f1(withRedis - allowed)} more than the target allows.${withoutRecord}`
      : Number.isFinite(spent.median) && spent.median <= allowed
        ? withinBudget(rounds, allowed)
        : `The floor is within the budget: the closer's cost above it is what must fall.`;
  const releasePart = record ? `the release record's INSERT ${f1(release.median)}` : `the closed rows read back for their releases ${f1(release.median)}`;
  return (
    ` CPU budget: ${f0(need)} closes/s on ${cores} cores leave ${f1(allowed)} µs of CPU per close for every process together. ` +
    `This design's MySQL statements per close cost ${f1(floor.median)} (${f1(floor.min)}–${f1(floor.max)}) µs per order in the ceiling runs ` +
    `(the conditional UPDATE ${f1(update.median)}, ${releasePart}; client + MariaDB)` +
    (Number.isFinite(redis.median) ? `; the Redis server spent ${f1(redis.median)} (${f1(redis.min)}–${f1(redis.max)}) µs per close in the closer rounds (the releases)` : '') +
    (Number.isFinite(spent.median) ? `; the closer spent ${f0(spent.median)} (${f0(spent.min)}–${f0(spent.max)}) µs per close, every process` : '') +
    `. ${verdict}`
  );
}

