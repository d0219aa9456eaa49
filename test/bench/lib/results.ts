// Raw benchmark results: one JSON line per measured run, appended to test/bench/results/<bench>.jsonl.
// Everything in RESULTS.md and the README's benchmark section is computed from these lines
// (test/bench/report.ts); a line is never edited by hand.
import { randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PartsFloor } from './parts.ts';
import type { GitInfo, Machine, Versions } from './system.ts';

export const RESULTS_DIR = fileURLToPath(new URL('../results/', import.meta.url));

export function resultsFile(bench: string, dir = RESULTS_DIR): string {
  return join(dir, `${bench}.jsonl`);
}

/** Fields every line carries: which invocation (batch) it belongs to, and the environment it ran in. */
export interface RunContext {
  batch: string;
  /** A run with shorter settings than the documented full run (validation only; the report skips it). */
  smoke: boolean;
  git: GitInfo;
  machine: Machine;
  versions: Versions;
  pinning: string;
}

export function newBatchId(): string {
  return `${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}-${randomBytes(2).toString('hex')}`;
}

/** CPU seconds per process role during the measured window, and µs per unit (request or order). */
export interface CpuCost {
  seconds: Record<string, number>;
  total: number;
  units: number;
  usPerUnit: number;
  /** Roles of the pipeline whose process was not found (their CPU is missing from the total). */
  missing: string[];
}

export interface LatencyMs {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

export interface SeckillRun extends RunContext {
  bench: 'seckill';
  timestamp: string;
  /**
   * bare = node:http ceiling, reject = API rejection path, accept = API accept path, reject-floor =
   * the least any rejection on node:http does (lib/rejection-floor.ts; lines since 2026-12-04 10:00),
   * accept-floor = the least an order path does that makes the API's round trips with the same
   * parts (lib/accept-floor.ts; lines since 2026-12-05 13:16), reject-floor-connected = the rejection
   * floor in a process holding the API's client connections (rejection-floor.ts --connected; lines
   * since 2026-12-06).
   */
  which: 'bare' | 'reject' | 'reject-floor' | 'reject-floor-connected' | 'accept' | 'accept-floor';
  /** The API run a bare run is the ceiling of (same wrk settings). */
  ceilingOf?: 'reject' | 'accept';
  /**
   * The pair (accept runs and their bare run) or, for the rejection comparison, the round: since
   * 2026-12-04 10:00 the bare, floor and API rejection runs of one round are short slices of warm
   * servers (seckill.ts); before, a rejection pair was a bare and an API run of 10 s each.
   */
  pair: number;
  /**
   * warmupSeconds: unmeasured load on the same server just before the run (absent in older lines: none).
   * pipelineWarmupSeconds: unmeasured accept load through the whole pipeline before the batch's first
   * pair (absent in lines before 2026-12-03 17:00: none).
   * sliceWarmupSeconds: rejection rounds, unmeasured load on the server just before each slice
   * (absent before 2026-12-04 10:20: none).
   * launch, launches: rejection rounds, which launch of the three servers the round ran on, of how many
   * (absent before 2026-12-06: one launch for every round).
   */
  params: { seconds: number; connections: number; threads: number; warmupSeconds?: number; pipelineWarmupSeconds?: number; sliceWarmupSeconds?: number; launch?: number; launches?: number };
  requests: number;
  rps: number;
  non2xx: number;
  socketErrors: { connect: number; read: number; write: number; timeout: number };
  latencyMs: LatencyMs;
  curve: [number, number][];
  cpu: CpuCost;
  /**
   * The load generator's own CPU during the run (wrk, all threads, read in its `done` callback from
   * /proc/self/stat) and per request: it shares the machine's cores with what it measures. Absent in
   * lines before 2026-12-04 12:00.
   */
  loadGen?: { cpuSeconds: number; usPerRequest: number };
  /** Accept runs: orders in MySQL from the first request to the last row. */
  accepted?: { orders: number; wrk2xx: number; api202?: number; rows?: number; toLastRowSeconds: number; ordersPerSecond: number };
  /**
   * Accept runs: the parts' floor measured just before the run, in the same pair (test/bench/lib/parts.ts;
   * absent in lines before 2026-12-04).
   */
  parts?: PartsFloor;
  /**
   * Accept runs: the API's produce requests and the order writer's batches during the run (their
   * batching histograms; absent in lines before 2026-12-04 21:30).
   */
  batches?: { handOff: { requests: number; orders: number }; writer: { batches: number; messages: number } };
  /**
   * Accept runs: the share of the run's time the API's event loop was busy (its
   * flashsale_event_loop_busy_seconds_total around the wrk run; absent in lines before 2026-12-05 09:00).
   */
  apiEventLoopBusy?: number;
  checks: { what: string; ok: boolean }[];
}

export interface TimeoutsRun extends RunContext {
  bench: 'timeouts';
  timestamp: string;
  /** closer = rows and messages written by the benchmark; api = orders POSTed to the API and written by the order writer; scan = no delay messages, compensation scan only. */
  which: 'closer' | 'api' | 'scan';
  round: number;
  /**
   * dueInIdOrder: the benchmark's own burst (closer, scan) placed with time-ordered ids, due in the
   * order placed, as the API and writer make them; absent before 2026-12-07 09:10 UTC, when ids were
   * random UUIDs and due times random within the second.
   */
  params: { orders: number; bucket: string; partitions: number; dueSpreadMs: number; dueInIdOrder?: boolean };
  orders: number;
  closed: number;
  early: number;
  closesPerSecond: number;
  delayMs: { p50: number; p90: number; p99: number; max: number };
  /** [percentile, ms] of the close delay. */
  curve: [number, number][];
  /**
   * Measured right after the round on the same table: rows/s closed by raw conditional UPDATEs, one
   * row per statement (updatesPerSecond) and one statement per transaction's chunk (chunkedPerSecond).
   */
  ceiling: {
    updatesPerSecond: number;
    chunkedPerSecond: number;
    rows: number;
    connections: number;
    perTransaction: number;
    /**
     * CPU µs per row, this process + MariaDB, of the chunked UPDATEs and of the release's own MySQL
     * work as the closer does it: until migration 7 (2026-12-07) inserting the rows' release records
     * (`releaseInsert`: a multi-row INSERT … VALUES until 09:40 UTC that day, then INSERT … SELECT …
     * RETURNING from the closed rows), since then reading the closed rows back for their releases
     * (`releaseRead`, a close owes its release while the row's settled_at is NULL). The MySQL work no close can skip.
     * Absent in lines written before it was measured (2026-12-04).
     */
    cpuUsPerRow?: { update: number; releaseInsert?: number; releaseRead?: number };
  } | null;
  /** CPU of the closing (closer process, Redis, MariaDB, Kafka; writer in api rounds) per order closed; absent in lines written before it was measured. */
  cpu?: CpuCost;
  notes: string[];
  checks: { what: string; ok: boolean }[];
}

/**
 * One profiled process of a `bench:seckill -- --profile` batch: its CPU (from the V8 profile, so
 * with the profiler's overhead) charged to the steps of test/bench/lib/profile.ts.
 */
export interface ProfileRun extends RunContext {
  bench: 'profile';
  timestamp: string;
  /** api: one API process (one measured run); bare: the bare node:http server of one run; writer: the order writer over the whole batch. */
  process: 'api' | 'bare' | 'writer';
  which: 'accept' | 'reject' | 'all';
  /** Orders (accept, writer) or requests (reject) the process handled. */
  units: number;
  unit: 'order' | 'request';
  cpuMs: number;
  idleMs: number;
  /** CPU ms per step. */
  steps: Record<string, number>;
  /** The functions with the most self time → CPU ms (absent in older lines). */
  top?: Record<string, number>;
  /** Who sampled: perf's on-CPU samples (lib/perf.ts); absent in older lines, which V8's --cpu-prof sampled. */
  profiler?: 'perf';
}

export type AnyRun = SeckillRun | TimeoutsRun | ProfileRun;

export function appendRun(file: string, run: AnyRun): void {
  mkdirSync(dirname(file), { recursive: true });
  appendFileSync(file, `${JSON.stringify(run)}\n`);
}

export function readRuns<T extends AnyRun>(file: string): T[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l, i) => {
      try {
        return JSON.parse(l) as T;
      } catch {
        throw new Error(`${file}:${i + 1}: not JSON`);
      }
    });
}
