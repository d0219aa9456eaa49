// Real worker processes for fault tests: `bin/flashsale.js api | order-writer | timeout-closer
// --bucket B | compensator | run -f FILE`, with the environment pointing wherever the test says
// (usually at fault proxies), killed with SIGKILL at chosen points and started again on the same
// HTTP port (so buyers keep their URL).
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import type { FlashSale } from '../../../controller/spec/flashsale.ts';
import { removeAtExit, track } from './cleanup.ts';
import { freePort } from './proxy.ts';

const bin = fileURLToPath(new URL('../../../bin/flashsale.js', import.meta.url));

export type Role = 'api' | 'order-writer' | 'timeout-closer' | 'compensator' | 'run';

export interface WorkerEnv {
  KAFKA_BROKERS: string;
  REDIS_URL: string;
  MYSQL_URL: string;
  [name: string]: string;
}

export interface Worker {
  role: Role;
  /** Name used in logs and kill lists, e.g. 'timeout-closer b2'. */
  name: string;
  /** http://127.0.0.1:PORT (the API's, or the worker's /metrics and probes). Kept across restarts. */
  url: string;
  pid(): number | undefined;
  running(): boolean;
  /** Last lines of its output, for diagnostics. */
  output(): string;
  /** Starts (or starts again) and waits until /readyz answers 200. */
  start(): Promise<void>;
  /** SIGKILL; resolves once the process is gone. */
  kill9(): Promise<void>;
  /** SIGTERM; resolves with the exit code (SIGKILL after a deadline). */
  stop(): Promise<number | null>;
  /** Sum of a metric's samples from /metrics whose labels include `labels`. */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
}


/** Writes the sale as a YAML file for `-f` (the same file every worker reads). */
export function saleFile(sale: FlashSale): string {
  const dir = mkdtempSync(join(tmpdir(), 'fs-sale-'));
  removeAtExit(dir);
  const file = join(dir, 'sale.yaml');
  writeFileSync(file, stringify(sale));
  return file;
}

export interface WorkerOptions {
  role: Role;
  /** The sale's YAML file (saleFile). */
  file: string;
  env: WorkerEnv;
  bucket?: string;
  /** Fixed HTTP port; default a free one, kept across restarts. */
  port?: number;
  readyTimeoutMs?: number;
}

export async function worker(opts: WorkerOptions): Promise<Worker> {
  const port = opts.port ?? (await freePort());
  const url = `http://127.0.0.1:${port}`;
  const args = opts.role === 'timeout-closer' ? ['timeout-closer', '--bucket', opts.bucket ?? '', '-f', opts.file] : [opts.role, '-f', opts.file];
  const name = opts.role === 'timeout-closer' ? `timeout-closer ${opts.bucket}` : opts.role;
  let child: ChildProcess | undefined;
  let tail: string[] = [];
  const keep = (d: Buffer) => {
    tail.push(...d.toString().split('\n').filter(Boolean));
    if (tail.length > 200) tail = tail.slice(-200);
    if (process.env.FAULTS_VERBOSE) process.stderr.write(`[${name} ${child?.pid}] ${d.toString()}`);
  };
  const running = () => !!child && child.exitCode === null && child.signalCode === null;

  const w: Worker = {
    role: opts.role,
    name,
    url,
    pid: () => child?.pid,
    running,
    output: () => tail.join('\n'),
    async start() {
      if (running()) return;
      const c = spawn(process.execPath, [bin, ...args], {
        env: { ...process.env, LOG_LEVEL: 'warn', ...opts.env, HTTP_PORT: String(port), HTTP_HOST: '127.0.0.1' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child = c;
      track(c);
      c.stdout?.on('data', keep);
      c.stderr?.on('data', keep);
      const deadline = Date.now() + (opts.readyTimeoutMs ?? 90_000);
      for (;;) {
        if (!running()) throw new Error(`${name} exited (${c.exitCode ?? c.signalCode}) before it was ready:\n${w.output()}`);
        const ok = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2000) }).then((r) => r.status === 200, () => false);
        if (ok) return;
        if (Date.now() > deadline) throw new Error(`${name} not ready within ${opts.readyTimeoutMs ?? 90_000} ms:\n${w.output()}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async kill9() {
      const c = child;
      if (!c || !running()) return;
      const exited = once(c, 'exit');
      c.kill('SIGKILL');
      await exited;
    },
    async stop() {
      const c = child;
      if (!c || !running()) return c?.exitCode ?? null;
      const exited = once(c, 'exit') as Promise<[number | null]>;
      c.kill('SIGTERM');
      const t = setTimeout(() => c.kill('SIGKILL'), 20_000);
      const [code] = await exited;
      clearTimeout(t);
      return code;
    },
    async metric(metricName, labels = {}) {
      const text = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
      let sum = 0;
      for (const line of text.split('\n')) {
        const m = /^([a-zA-Z_:][\w:]*)(\{([^}]*)\})? ([^ ]+)/.exec(line);
        if (!m || m[1] !== metricName) continue;
        const have = new Map([...(m[3] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
        if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) sum += Number(m[4]);
      }
      return sum;
    },
  };
  return w;
}

/**
 * Waits for an event of the run (a counter reaching a value, N accepted orders …) and then runs the
 * fault: "kill at a chosen point under load", not after a sleep. Polls `reached` with a deadline.
 */
export async function when(reached: () => Promise<boolean> | boolean, opts: { timeoutMs?: number; what: string }): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  for (;;) {
    if (await Promise.resolve(reached()).catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${opts.what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
