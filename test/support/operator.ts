// Runs the real operator process (`bin/flashsale.js operator`) against the test apiserver, with
// short intervals so tests see lag scaling and leader election quickly.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Config } from '../../controller/config.ts';
import { eventually } from './infra.ts';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface OperatorProcess {
  proc: ChildProcess;
  /** http://127.0.0.1:PORT of its /metrics, /healthz, /readyz. */
  url: string;
  logs(): string;
  /** The value of a metric line (first sample matching `name{labels}`), or undefined. */
  metric(name: string, labels?: string): Promise<number | undefined>;
  /** Sum of every sample of `name` whose labels include all of `labels` (any order); undefined when none. */
  metricSum(name: string, labels?: Record<string, string>): Promise<number | undefined>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export async function startOperator(opts: { kubeconfigYaml: string; config: Config; namespace: string; identity: string; leaseName?: string; env?: Record<string, string>; /** How long it may take to serve its endpoint (default 20 s; a loaded machine needs more). */ startTimeoutMs?: number }): Promise<OperatorProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'operator-'));
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(kubeconfig, opts.kubeconfigYaml, { mode: 0o600 });
  const m = opts.config.mysql;
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    HOME: dir,
    KUBECONFIG: kubeconfig,
    KAFKA_BROKERS: opts.config.kafkaBrokers.join(','),
    REDIS_URL: opts.config.redisUrl,
    MYSQL_URL: `mysql://${m.user}${m.password ? `:${m.password}` : ''}@${m.host}:${m.port}/${m.database}`,
    HTTP_PORT: '0',
    HTTP_HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
    POD_NAME: opts.identity,
    POD_NAMESPACE: opts.namespace,
    WORKER_IMAGE: 'flashsale-operator:test',
    // As the chart passes them (image.pullPolicy, imagePullSecrets): the apiserver stores both.
    WORKER_IMAGE_PULL_POLICY: 'IfNotPresent',
    WORKER_IMAGE_PULL_SECRETS: 'regcred',
    SCALE_INTERVAL: '1s',
    LAG_INTERVAL: '1s',
    STEP_TIMEOUT: '8s',
    LEASE_DURATION: '4s',
    LEASE_RENEW_DEADLINE: '3s',
    LEASE_RETRY_PERIOD: '1s',
    ...(opts.env ?? {}),
  };
  const proc = spawn(process.execPath, [join(repo, 'bin/flashsale.js'), 'operator', '--namespace', opts.namespace, '--lease-name', opts.leaseName ?? `op-${opts.namespace}`], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const url = await eventually(
    () => {
      if (proc.exitCode !== null) throw new Error(`operator exited ${proc.exitCode}: ${out}`);
      return /"url":"(http:\/\/[^"]+)"/.exec(out)?.[1];
    },
    { timeoutMs: opts.startTimeoutMs ?? 20_000, what: 'operator HTTP endpoint' },
  ).catch((err: unknown) => {
    proc.kill('SIGKILL'); // never leave a half-started operator behind
    throw err;
  });
  return {
    proc,
    url,
    logs: () => out,
    async metric(name, labels = '') {
      const text = await (await fetch(`${url}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}` : ''}`) && !l.startsWith('#'));
      return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : undefined;
    },
    async metricSum(name, labels = {}) {
      const text = await (await fetch(`${url}/metrics`)).text();
      let sum: number | undefined;
      for (const line of text.split('\n')) {
        const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
        if (!m || m[1] !== name) continue;
        const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
        if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum = (sum ?? 0) + Number(m[3]);
      }
      return sum;
    },
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 10_000))]);
      if (code === 'timeout') {
        proc.kill('SIGKILL');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
      return proc.exitCode;
    },
  };
}
