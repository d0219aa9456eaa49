// The chaos run of issue 13: `npm run chaos -- --minutes N [--seed S] [--mode separate|run] [--out FILE]`.
// Buyers, payers and due timeouts (a 3 s bucket) run continuously against the real worker processes
// while a scheduler injects the faults of rig.ts at random — seeded, the seed printed, so the order
// of faults is reproducible — then the system is made quiet and the invariant checker runs. Prints
// the faults injected, the orders acknowledged and the violations; writes a JSON result (rendered
// into test/bench/RESULTS.md by render.ts); exits 1 on any violation. Bounded in time and count,
// stops by itself, binds loopback only.
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { afterAttempts, inject, mulberry, runFaults, separateFaults, startInfra, startRig, type FaultKind, type Mode } from './rig.ts';

export interface ChaosResult {
  at: string;
  commit: string;
  seed: number;
  mode: Mode;
  minutes: number;
  faults: { kind: FaultKind; at: number; what: string }[];
  faultsByKind: Record<string, number>;
  attempts: number;
  answers: Record<string, number>;
  acknowledged: number;
  paid: number;
  summary: Record<string, number>;
  violations: string[];
  /** Faults the harness could not complete (the run fails, the check still ran). */
  faultErrors: string[];
  /** True when the buyers used up their budget before the minutes were over (later faults ran without load). */
  loadEndedEarly?: boolean;
  error?: string;
  durationS: number;
}

export const defaultOut = fileURLToPath(new URL('./results.jsonl', import.meta.url));

export async function runChaos(opts: { minutes: number; seed: number; mode?: Mode; faults?: FaultKind[]; log?: (line: string) => void }): Promise<ChaosResult> {
  const log = opts.log ?? ((l: string) => process.stdout.write(`${l}\n`));
  const mode = opts.mode ?? 'separate';
  const kinds = opts.faults ?? (mode === 'run' ? runFaults : separateFaults);
  const rnd = mulberry(opts.seed);
  const t0 = Date.now();
  let deadline: number;
  log(`chaos: seed ${opts.seed}, mode ${mode}, ${opts.minutes} min, faults from [${kinds.join(', ')}]`);
  const infra = await startInfra();
  const result: ChaosResult = {
    at: new Date().toISOString(), commit: gitCommit(), seed: opts.seed, mode, minutes: opts.minutes, faults: [], faultsByKind: {},
    attempts: 0, answers: {}, acknowledged: 0, paid: 0, summary: {}, violations: [], faultErrors: [], durationS: 0,
  };
  try {
    const rig = await startRig(infra, { mode, seed: opts.seed });
    // The minutes count from here: the broker's start (20–30 s) is not chaos time.
    deadline = Date.now() + opts.minutes * 60_000;
    log(`[${Math.round((Date.now() - t0) / 1000)}s] workers ready, storm starts`);
    try {
      // The budget bounds the run by count as well as by time (buyers answer ~15 requests/s on 2 cores).
      // 1,000 users so the limit does not turn the storm into rejections only; a rejected buyer waits
      // 20 ms before the next try.
      rig.startStorm({ buyers: 4, maxOrders: Math.ceil(opts.minutes * 3000) + 300, payEvery: 4, users: 1000, pauseAfterRejectMs: 20 });
      while (Date.now() < deadline) {
        // Faults at random points of the load (20–80 purchase attempts apart), in seeded order.
        await afterAttempts(rig, 20 + Math.floor(rnd() * 60), Math.max(30_000, deadline - Date.now() + 30_000)).catch(() => undefined);
        if (Date.now() >= deadline) break;
        const kind = kinds[Math.floor(rnd() * kinds.length)] as FaultKind;
        const at = Math.round((Date.now() - t0) / 1000);
        log(`[${at}s] injecting ${kind}`);
        let what: string;
        try {
          what = await inject(rig, kind);
        } catch (err) {
          // A fault that could not be completed is reported (and fails the run), but the check still
          // runs: what was acknowledged so far must hold whatever the harness did.
          what = `FAULT NOT COMPLETED: ${(err as Error).message}`;
          result.faultErrors.push(`${kind} at ${at}s: ${(err as Error).message}`);
        }
        result.faults.push({ kind, at, what });
        result.faultsByKind[kind] = (result.faultsByKind[kind] ?? 0) + 1;
        log(`[${Math.round((Date.now() - t0) / 1000)}s] healed: ${what}`);
      }
      result.loadEndedEarly = rig.stormOver();
      if (rig.stormOver()) log('chaos: note: the storm used up its budget before the time was up');
      log('chaos: stopping the storm, waiting for the system to be quiet, then checking');
      const check = await rig.quietAndCheck(180_000);
      result.violations = check.violations;
      result.summary = check.summary;
      result.attempts = rig.attempts();
      result.answers = Object.fromEntries([...rig.answers].map(([k, v]) => [String(k), v]));
      result.acknowledged = rig.acknowledged.size;
      result.paid = rig.paid.size;
    } finally {
      await rig.close();
    }
  } catch (err) {
    result.error = (err as Error).stack ?? String(err);
    result.violations.push(`run failed before the check completed: ${(err as Error).message}`);
  } finally {
    await infra.close();
  }
  result.durationS = Math.round((Date.now() - t0) / 1000);
  log(`chaos: seed ${result.seed}; faults injected ${result.faults.length} ${JSON.stringify(result.faultsByKind)}; attempts ${result.attempts}; answers ${JSON.stringify(result.answers)}; orders acknowledged ${result.acknowledged}; paid ${result.paid}; rows ${JSON.stringify(result.summary)}`);
  log(`chaos: violations ${result.violations.length}${result.violations.length ? `\n  ${result.violations.join('\n  ')}` : ''}`);
  if (result.faultErrors.length) log(`chaos: faults not completed ${result.faultErrors.length}\n  ${result.faultErrors.join('\n  ')}`);
  return result;
}

function gitCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', timeout: 5000 }).trim();
  } catch {
    return 'unknown';
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { minutes: { type: 'string', default: '1' }, seed: { type: 'string' }, mode: { type: 'string', default: 'separate' }, out: { type: 'string', default: defaultOut } }, strict: true });
  const minutes = Number(values.minutes);
  if (!(minutes > 0 && minutes <= 60)) throw new Error('--minutes must be a number in (0, 60]');
  const seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31);
  if (!Number.isInteger(seed)) throw new Error('--seed must be an integer');
  if (values.mode !== 'separate' && values.mode !== 'run') throw new Error('--mode must be separate or run');
  const result = await runChaos({ minutes, seed, mode: values.mode });
  mkdirSync(dirname(values.out), { recursive: true });
  appendFileSync(values.out, `${JSON.stringify(result)}\n`);
  process.stdout.write(`chaos: result appended to ${values.out}\n`);
  process.exitCode = result.violations.length > 0 || result.faultErrors.length > 0 ? 1 : 0;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  // A hard stop in case something hangs: the run is bounded whatever happens.
  const minutesArg = process.argv.indexOf('--minutes');
  const limitMs = ((minutesArg > 0 ? Number(process.argv[minutesArg + 1]) : 1) + 8) * 60_000;
  setTimeout(() => {
    process.stderr.write(`chaos: hard time limit reached (${limitMs / 60_000} min), exiting\n`);
    process.exit(2);
  }, limitMs).unref();
  main().then(
    () => setTimeout(() => process.exit(), 1000).unref(),
    (err: unknown) => {
      process.stderr.write(`chaos: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(2);
    },
  );
}
