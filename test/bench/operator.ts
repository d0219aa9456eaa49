// npm run bench:operator [-- --sales 500 --idle-seconds 300 --smoke --report --profile]
//
// The operator at scale on the real control plane (infra/cluster.sh): N FlashSales (partitions 1,
// one bucket) applied at once, with the operator as a child process. Measured:
//   - time from the apply until each sale is Ready (p50/p99/max), target: all within 120 s;
//   - operator CPU (utime+stime from /proc/<pid>/stat) and RSS while they become Ready and while idle;
//   - apiserver requests per second per sale while idle for `--idle-seconds` (default 300), target
//     ≤ 0.05: the delta of the apiserver's apiserver_request_total over the idle window, minus the
//     same rate measured right after with the operator stopped (the control plane's own traffic:
//     controller manager, this program's node lease). The control plane runs with priority and
//     fairness off, so there is no per-client counter; on a control plane shared with other tests
//     their traffic lands in both windows, so run it on a quiet one (KUBECONFIG of its own);
//   - memory with 100, 250 and 500 sales (a fresh operator watching 1, 2 or 3 namespaces holding
//     100, 150 and 250 sales; the lowest heap used of 15 readings), target: at most linear (the
//     500-sale figure at most 25 % above the straight line through the other two).
// Workers need not run: the sales' namespaces carry the node agent's ignore label, every worker has
// 0 replicas except the compensator (always 1), and this program plays the kubelet for those pods
// only (binds them to a Node of its own and reports them Running and Ready), so a sale can be Ready.
// --profile runs the first operator under V8's sampling profiler and prints where its CPU goes in
// the idle window, step by step (test/bench/lib/profile.ts); such a run is recorded as a smoke run
// (the profiler slows the operator).
// Exits non-zero when a target is missed. One JSON line per run is appended to
// test/bench/results/operator.jsonl; the block `operator` of test/bench/RESULTS.md and of the
// README is rendered from those lines (`--report` renders only).
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync, appendFileSync, existsSync, mkdirSync, openSync, closeSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import https from 'node:https';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import type { KubeConfig } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { createKubeClient, paths, type KubeClient, type KubeList } from '../../controller/operator/kube.ts';
import { testCluster, type TestCluster } from '../support/cluster.ts';
import { deleteRedisKeys, deleteTopics, dropDatabase, testConfig, testKafka, testRedis, runId } from '../support/infra.ts';
import { kubectlFor } from '../support/kubectl.ts';
import type { Config } from '../../controller/config.ts';
import { replaceBlock } from './lib/blocks.ts';
import { attribute, OPERATOR_STEPS, type CpuProfile } from './lib/profile.ts';
import { percentile } from './lib/stats.ts';
import { controlPlanePids, cpuSeconds, CpuMeter, gitInfo, infraPids, machine } from './lib/system.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const RESULTS = join(root, 'test/bench/results/operator.jsonl');
const TARGET = { readySeconds: 120, idlePerSale: 0.05, linearTolerance: 0.25 };
// Operator settings a run may change from the benchmark's environment, e.g.
// `KUBE_API_QPS=100 npm run bench:operator`; recorded with the results.
const SETTINGS = Object.fromEntries(['OPERATOR_WORKERS', 'KUBE_API_QPS', 'KUBE_API_BURST'].flatMap((k) => (process.env[k] ? [[k, process.env[k] as string]] : [])));

const { values: args } = parseArgs({
  options: {
    sales: { type: 'string', default: '500' },
    'idle-seconds': { type: 'string', default: '300' },
    smoke: { type: 'boolean', default: false },
    report: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
  },
});

interface OperatorRun {
  bench: 'operator';
  timestamp: string;
  smoke: boolean;
  git: { commit: string; dirty: boolean };
  machine: { cores: number; model: string; loadavg1: number };
  /** When machine.loadavg1 was read: as the sales were applied (absent in older lines: after the ready phase). */
  loadavgWhen?: 'apply';
  /** CPU time ÷ wall time of each process from the apply to the last Ready (absent in older lines). */
  readyPhaseCores?: Record<string, number>;
  /**
   * What the apiserver served from the apply to the last Ready, the 15 verb/resource pairs it spent
   * the most handler time on (absent in older lines): requests and seconds (apiserver_request_duration_seconds_sum).
   */
  readyPhaseRequests?: Record<string, { count: number; seconds: number }>;
  sales: number;
  apply: { seconds: number };
  ready: { all: boolean; readyCount: number; p50: number; p99: number; max: number; boundSeconds: number };
  /** The operator's own account of the ready phase: reconciles done, mean seconds each, workers (the cause when Ready is slow). */
  reconciles: { count: number; meanSeconds: number; workers: number; byResult: Record<string, number>; steps?: Record<string, { seconds: number; count: number }> };
  /** Operator settings taken from the benchmark's own environment (absent: the operator's defaults). */
  settings?: Record<string, string>;
  cpu: { readyPhaseSeconds: number; idleSeconds: number; idleCpuSeconds: number; idleCpuPercent: number };
  rssMiB: { afterReady: number; afterIdle: number };
  /** null when the sales were not all Ready within the bound: the operator was still provisioning, so an idle window would measure work, not idling. */
  idle: null | {
    seconds: number;
    /** apiserver_request_total delta while the operator idled, and per second. */
    apiserverRequests: number;
    apiserverPerSecond: number;
    /** The same without the operator (baseline window right after). */
    baselineSeconds: number;
    baselinePerSecond: number;
    /** (idle − baseline) per second, per sale: the operator's idle cost. */
    operatorPerSecond: number;
    operatorPerSalePerSecond: number;
    /** Requests per second by verb and resource, idle window minus baseline window (> 0 only). */
    byVerbResource: Record<string, number>;
    /** Cores used by each process in the idle window, and in the baseline window (no operator); absent before 2026-12-03 17:00. */
    cores?: Record<string, number>;
    baselineCores?: Record<string, number>;
  };
  memory: { sales: number; rssMiB: number; heapUsedMiB: number }[];
  /** Straight line through the first two memory points, at the third; on RSS in older lines, on the lowest heap used since `basis: 'heap'`. */
  linear: { basis?: 'heap'; predicted500: number; measured500: number; deviation: number };
  verdicts: { what: string; ok: boolean }[];
}

// ---------------------------------------------------------------------------------------------

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until `check` is truthy or the deadline passes (then returns undefined). */
async function until<T>(check: () => Promise<T | undefined | false>, timeoutMs: number, everyMs = 1000): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check().catch(() => undefined);
    if (v) return v;
    if (Date.now() >= deadline) return undefined;
    await sleep(everyMs);
  }
}

function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Prometheus text → samples. */
function samples(text: string): { name: string; labels: Record<string, string>; value: number }[] {
  const out: { name: string; labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1] as string, x[2] as string]));
    out.push({ name: m[1] as string, labels, value: Number(m[3]) });
  }
  return out;
}

interface ApiCounts {
  total: number;
  byVerbResource: Record<string, number>;
  /** Seconds the apiserver spent serving each verb and resource (apiserver_request_duration_seconds_sum; watches left out). */
  secondsByVerbResource: Record<string, number>;
}

interface OperatorProcess {
  proc: ChildProcess;
  url: string;
  stop(): Promise<void>;
}

/**
 * The operator as a child process (`bin/flashsale.js operator`), its output in a log file under
 * .cache (kept for a look afterwards). A loaded machine can take a while to start it: up to 2 min.
 */
async function spawnOperator(o: { kubeconfigYaml: string; config: Config; namespaces: string[]; identity: string; leaseName: string; env: Record<string, string>; logFile: string; nodeArgs?: string[] }): Promise<OperatorProcess> {
  const kubeconfig = `${o.logFile}.kubeconfig`;
  writeFileSync(kubeconfig, o.kubeconfigYaml, { mode: 0o600 });
  const m = o.config.mysql;
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '', HOME: dirname(o.logFile), KUBECONFIG: kubeconfig,
    KAFKA_BROKERS: o.config.kafkaBrokers.join(','), REDIS_URL: o.config.redisUrl,
    MYSQL_URL: `mysql://${m.user}${m.password ? `:${m.password}` : ''}@${m.host}:${m.port}/${m.database}`,
    HTTP_PORT: '0', HTTP_HOST: '127.0.0.1', POD_NAME: o.identity, POD_NAMESPACE: o.namespaces[0] as string, WORKER_IMAGE: 'flashsale-operator:bench',
    ...o.env,
  };
  const fd = openSync(o.logFile, 'a');
  const proc = spawn(process.execPath, [...(o.nodeArgs ?? []), join(root, 'bin/flashsale.js'), 'operator', ...o.namespaces.flatMap((n) => ['--namespace', n]), '--lease-name', o.leaseName], { env, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    const t = setTimeout(() => proc.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(t);
  };
  const url = await until(async () => {
    if (proc.exitCode !== null) throw new Error('exited');
    return /"url":"(http:\/\/[^"]+)"/.exec(readFileSync(o.logFile, 'utf8'))?.[1];
  }, 120_000, 500);
  if (!url) {
    await stop();
    throw new Error(`the operator did not serve its endpoint within 120 s (log: ${o.logFile})`);
  }
  return { proc, url, stop };
}

/** Sum of an operator metric's samples (all label sets). */
async function opMetric(op: OperatorProcess, name: string): Promise<number | undefined> {
  const s = samples(await (await fetch(`${op.url}/metrics`)).text()).filter((x) => x.name === name);
  return s.length ? s.reduce((a, x) => a + x.value, 0) : undefined;
}

/** GET of a non-JSON path of the apiserver (its /metrics is several MB: too big for kubectl's output buffer here). */
async function rawGet(kc: KubeConfig, path: string): Promise<string> {
  const server = new URL(kc.getCurrentCluster()?.server ?? '');
  const opts: https.RequestOptions = { method: 'GET', headers: {} };
  await kc.applyToHTTPSOptions(opts);
  return new Promise((resolve, reject) => {
    const req = https.request({ ...opts, hostname: server.hostname, port: server.port, path, timeout: 60_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => (res.statusCode === 200 ? resolve(Buffer.concat(chunks).toString('utf8')) : reject(new Error(`GET ${path}: ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path}: timed out`)));
    req.on('error', reject);
    req.end();
  });
}

async function apiserverCounts(kc: KubeConfig): Promise<ApiCounts> {
  const s = samples(await rawGet(kc, '/metrics'));
  let total = 0;
  const byVerbResource: Record<string, number> = {};
  const secondsByVerbResource: Record<string, number> = {};
  const key = (x: (typeof s)[number]) => `${x.labels.verb} ${x.labels.resource}${x.labels.subresource ? `/${x.labels.subresource}` : ''}`;
  for (const x of s) {
    if (x.name === 'apiserver_request_total') {
      total += x.value;
      const k = key(x);
      byVerbResource[k] = (byVerbResource[k] ?? 0) + x.value;
    } else if (x.name === 'apiserver_request_duration_seconds_sum' && x.labels.verb !== 'WATCH' && x.labels.verb !== 'CONNECT') {
      const k = key(x);
      secondsByVerbResource[k] = (secondsByVerbResource[k] ?? 0) + x.value;
    }
  }
  return { total, byVerbResource, secondsByVerbResource };
}

type Sale = { metadata: { name: string; namespace: string }; status?: { conditions?: { type: string; status: string }[] } };
const isReady = (s: Sale) => s.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;

/** Plays the kubelet for the sales' pods: binds them to `node` and reports them Running and Ready. */
class FakeKubelet {
  private readonly done = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private leaseTimer: NodeJS.Timeout | undefined;
  private busy = false;
  private paused = false;
  private readonly client: KubeClient;
  private readonly node: string;
  private readonly namespaces: string[];
  constructor(client: KubeClient, node: string, namespaces: string[]) {
    this.client = client;
    this.node = node;
    this.namespaces = namespaces;
  }

  async start(): Promise<void> {
    const now = new Date().toISOString();
    await this.client.request('POST', '/api/v1/nodes', {
      apiVersion: 'v1', kind: 'Node',
      metadata: { name: this.node, labels: { 'kubernetes.io/hostname': this.node, 'flashsale.dev/bench': 'operator' } },
    }).catch((e: Error) => (/409|AlreadyExists/.test(e.message) ? undefined : Promise.reject(e)));
    await this.client.request('PATCH', `/api/v1/nodes/${this.node}/status`, {
      status: {
        conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'bench:operator plays the kubelet', lastHeartbeatTime: now, lastTransitionTime: now }],
        allocatable: { cpu: '1000', memory: '4000Gi', pods: '10000' },
        capacity: { cpu: '1000', memory: '4000Gi', pods: '10000' },
      },
    }, 'application/merge-patch+json');
    const renew = async () => {
      const t = new Date().toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
      const path = `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${this.node}`;
      await this.client.request('PATCH', path, { spec: { renewTime: t } }, 'application/merge-patch+json').catch(() =>
        this.client.request('POST', '/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases', {
          apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: this.node }, spec: { holderIdentity: this.node, leaseDurationSeconds: 40, renewTime: t },
        }),
      ).catch(() => {});
    };
    await renew();
    this.leaseTimer = setInterval(() => void renew(), 10_000);
    this.timer = setInterval(() => void this.round(), 1000);
  }

  /** Stops looking for new pods (every pod runs): the idle windows then hold only the node lease. */
  pause(on: boolean): void {
    this.paused = on;
  }

  private async round(): Promise<void> {
    if (this.busy || this.paused) return;
    this.busy = true;
    try {
      for (const ns of this.namespaces) {
        // resourceVersion=0: served from the apiserver's watch cache, not read from etcd (see listSales).
        const pods = await this.client.request<KubeList<{ metadata: { name: string; uid: string }; spec: { nodeName?: string; containers: { name: string; image: string }[] }; status?: { phase?: string } }>>('GET', `/api/v1/namespaces/${ns}/pods?resourceVersion=0`);
        const todo = pods.items.filter((p) => !this.done.has(p.metadata.uid));
        await Promise.all(todo.map((p) => this.runPod(ns, p).catch(() => {})));
      }
    } catch {
      // next round
    } finally {
      this.busy = false;
    }
  }

  private async runPod(ns: string, p: { metadata: { name: string; uid: string }; spec: { nodeName?: string; containers: { name: string; image: string }[] } }): Promise<void> {
    if (!p.spec.nodeName) {
      await this.client.request('POST', `/api/v1/namespaces/${ns}/pods/${p.metadata.name}/binding`, {
        apiVersion: 'v1', kind: 'Binding', metadata: { name: p.metadata.name }, target: { apiVersion: 'v1', kind: 'Node', name: this.node },
      });
    } else if (p.spec.nodeName !== this.node) return;
    const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    await this.client.request('PATCH', `/api/v1/namespaces/${ns}/pods/${p.metadata.name}/status`, {
      status: {
        phase: 'Running', hostIP: '127.0.0.1', podIP: '127.0.0.1', startTime: now,
        conditions: ['PodScheduled', 'Initialized', 'ContainersReady', 'Ready'].map((type) => ({ type, status: 'True', lastTransitionTime: now })),
        containerStatuses: p.spec.containers.map((c) => ({ name: c.name, image: c.image, imageID: '', ready: true, started: true, restartCount: 0, state: { running: { startedAt: now } } })),
      },
    }, 'application/merge-patch+json');
    this.done.add(p.metadata.uid);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    clearInterval(this.leaseTimer);
    await this.client.request('DELETE', `/api/v1/nodes/${this.node}`).catch(() => {});
    await this.client.request('DELETE', `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${this.node}`).catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------------

function saleDoc(name: string, namespace: string) {
  return {
    apiVersion: 'flashsale.dev/v1alpha1', kind: 'FlashSale', metadata: { name, namespace },
    spec: {
      skus: [{ id: 'sku-1', stock: 100, timeoutBucket: '15m' }],
      timeoutBuckets: [{ name: '15m', delay: '15m' }],
      kafka: { partitions: 1, replicationFactor: 1 },
      // Only the compensator (always one replica) has a pod: the benchmark plays its kubelet.
      workers: { api: { replicas: 0 }, orderWriter: { minReplicas: 0, maxReplicas: 1 }, timeoutCloser: { minReplicas: 0, maxReplicas: 1 } },
    },
  };
}

/**
 * Every sale, from the apiserver's watch cache (resourceVersion=0): polled every second while 500
 * sales are provisioned, a quorum LIST from etcd cost the apiserver about 37 s of handler time in
 * the 13:12 run (and the pod polls of the fake kubelet 25 s) — the benchmark's load, not the operator's.
 */
async function listSales(client: KubeClient, namespaces: string[]): Promise<Sale[]> {
  const lists = await Promise.all(namespaces.map((ns) => client.request<KubeList<Sale>>('GET', `${paths.flashsales(ns)}?resourceVersion=0`)));
  return lists.flatMap((l) => l.items);
}

function fmt(n: number, digits = 1): string {
  return Number.isFinite(n) ? n.toFixed(digits) : '–';
}

function render(runs: OperatorRun[]): string {
  // Every run (smoke runs marked): a full run may stop after the ready phase, and then the idle and
  // memory figures come from the latest run that measured them.
  const rows = runs.slice(-6);
  if (rows.length === 0) return '## Operator at scale (`npm run bench:operator`)\n\nNo run recorded yet.';
  const last = (rows.filter((r) => !r.smoke).at(-1) ?? rows.at(-1)) as OperatorRun;
  const measured = rows.filter((r) => r.idle && r.memory.length === 3).at(-1);
  const lines = [
    '## Operator at scale (`npm run bench:operator`)',
    '',
    `${last.sales} FlashSales (partitions 1, one bucket; fewer in smoke runs) applied at once on the real control plane, the operator as a child process; targets: all Ready within ${TARGET.readySeconds} s, idle apiserver requests ≤ ${TARGET.idlePerSale}/s per sale, memory linear in the number of sales. Idle requests/s per sale = (apiserver_request_total rate while the operator idles − the rate right after with the operator stopped) ÷ sales; the control plane runs without priority and fairness, so there is no per-client counter.${last.smoke ? ' **Smoke run** (shorter settings): no full run recorded yet.' : ''}`,
    '',
    '| run | commit | sales | all Ready | Ready p50 / p99 / max (s) | CPU to Ready (s) | idle CPU | apiserver req/s idle with / without operator | idle requests/s per sale | RSS after Ready / idle (MiB) | targets |',
    '| --- | --- | ---: | :---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |',
    ...rows.map(
      (r) =>
        `| ${r.timestamp.slice(0, 16)}${r.smoke ? ' (smoke)' : ''} | ${r.git.commit.slice(0, 7)}${r.git.dirty ? '+' : ''} | ${r.sales} | ${r.ready.all ? 'yes' : `no (${r.ready.readyCount})`} | ${fmt(r.ready.p50)} / ${fmt(r.ready.p99)} / ${fmt(r.ready.max)} | ${fmt(r.cpu.readyPhaseSeconds)} | ${fmt(r.cpu.idleCpuPercent, 2)} % | ${r.idle ? `${fmt(r.idle.apiserverPerSecond, 2)} / ${fmt(r.idle.baselinePerSecond, 2)}` : 'not measured'} | ${r.idle ? fmt(r.idle.operatorPerSalePerSecond, 4) : '–'} | ${fmt(r.rssMiB.afterReady, 0)} / ${fmt(r.rssMiB.afterIdle, 0)} | ${r.verdicts.every((v) => v.ok) ? 'met' : `missed: ${r.verdicts.filter((v) => !v.ok).map((v) => v.what).join('; ')}`} |`,
    ),
    '',
    ...rows.filter((r) => r.reconciles).map((r) => `Run ${r.timestamp.slice(0, 16)}${r.settings && Object.keys(r.settings).length ? ` (${Object.entries(r.settings).map(([k, v]) => `${k}=${v}`).join(', ')})` : ''}: load average ${fmt(r.machine.loadavg1, 1)}${r.readyPhaseCores ? `; cores used from the apply to the last Ready: ${Object.entries(r.readyPhaseCores).map(([k, v]) => `${k} ${fmt(v, 2)}`).join(', ')} (all ${fmt(Object.values(r.readyPhaseCores).reduce((a, b) => a + b, 0), 2)} of ${r.machine.cores})` : ''}${r.loadavgWhen === 'apply' ? ' as the sales were applied' : ' (read after the ready phase)'}; ${r.reconciles.count} reconciles in the ready phase, ${fmt(r.reconciles.meanSeconds, 2)} s each on average with ${r.reconciles.workers} workers (${Object.entries(r.reconciles.byResult).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${v}`).join(', ')}); operator CPU ${fmt(r.cpu.readyPhaseSeconds)} s${r.reconciles.steps && Object.keys(r.reconciles.steps).length ? `; time by step (s, calls): ${Object.entries(r.reconciles.steps).map(([k, v]) => `${k} ${fmt(v.seconds, 1)} (${v.count})`).join(', ')}` : ''}${r.readyPhaseRequests ? `; the apiserver's handler time by request (s, requests): ${Object.entries(r.readyPhaseRequests).map(([k, v]) => `${k} ${fmt(v.seconds, 1)} (${v.count})`).join(', ')}` : ''}${r.idle?.cores ? `; cores used while idle: ${Object.entries(r.idle.cores).map(([k, v]) => `${k} ${fmt(v, 3)}`).join(', ')}${r.idle.baselineCores ? ` (without the operator: ${Object.entries(r.idle.baselineCores).map(([k, v]) => `${k} ${fmt(v, 3)}`).join(', ')})` : ''}` : ''}.`),
    '',
    measured
      ? `Memory of a fresh operator by sales watched (run ${measured.timestamp.slice(0, 16)}, ${measured.sales} sales): ${measured.memory.map((m) => `${m.sales} sales: RSS ${fmt(m.rssMiB, 0)} MiB, heap ${fmt(m.heapUsedMiB, 0)} MiB`).join('; ')}; the straight line through the first two predicts ${fmt(measured.linear.predicted500, 0)} MiB ${measured.linear.basis === 'heap' ? 'heap used (lowest of 15 readings)' : 'RSS'} at ${measured.memory.at(-1)?.sales}, measured ${fmt(measured.linear.measured500, 0)} (${fmt(measured.linear.deviation * 100, 0)} % off).`
      : 'Memory by sales watched: not measured yet.',
    '',
    `The operator's idle requests by verb and resource (per second, idle window minus baseline${measured ? `, run ${measured.timestamp.slice(0, 16)}` : ''}): ${Object.entries(measured?.idle?.byVerbResource ?? {}).sort((a, b) => b[1] - a[1]).slice(0, 8).map(([k, v]) => `${k} ${fmt(v, 3)}`).join(', ') || 'none above 0.001/s'}.`,
  ];
  return lines.join('\n');
}

/** The README's short form: the latest full run and the latest run that measured idle and memory. */
function renderReadme(runs: OperatorRun[]): string {
  const full = runs.filter((x) => !x.smoke).at(-1);
  const measured = runs.filter((x) => x.idle && x.memory.length === 3).at(-1);
  const shown = [...new Set([full, measured].filter((x): x is OperatorRun => !!x))];
  if (shown.length === 0) return '`npm run bench:operator` (500 FlashSales on the real control plane): no run recorded yet.';
  return [
    `\`npm run bench:operator\` (targets: 500 FlashSales all Ready within ${TARGET.readySeconds} s, idle ≤ ${TARGET.idlePerSale} apiserver requests/s per sale, memory linear):`,
    '',
    '| run | sales | all Ready | Ready p50 / p99 (s) | mean reconcile (s) | idle requests/s per sale | RSS by sales watched (MiB) | targets |',
    '| --- | ---: | :---: | ---: | ---: | ---: | ---: | :---: |',
    ...shown.map(
      (r) =>
        `| ${r.timestamp.slice(0, 16)}${r.smoke ? ' (smoke)' : ''} | ${r.sales} | ${r.ready.all ? 'yes' : `no (${r.ready.readyCount})`} | ${fmt(r.ready.p50)} / ${fmt(r.ready.p99)} | ${r.reconciles ? fmt(r.reconciles.meanSeconds, 2) : '–'} | ${r.idle ? fmt(r.idle.operatorPerSalePerSecond, 4) : 'not measured'} | ${r.memory.length ? r.memory.map((m) => `${m.sales}: ${fmt(m.rssMiB, 0)}`).join(', ') : 'not measured'} | ${r.verdicts.every((v) => v.ok) ? 'met' : `missed: ${r.verdicts.filter((v) => !v.ok).map((v) => v.what).join('; ')}`} |`,
    ),
    '',
    'Why and every run: [test/bench/RESULTS.md](test/bench/RESULTS.md#operator-at-scale-npm-run-benchoperator).',
  ].join('\n');
}

function writeReports(): void {
  const runs = existsSync(RESULTS) ? readFileSync(RESULTS, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as OperatorRun) : [];
  const results = join(root, 'test/bench/RESULTS.md');
  writeFileSync(results, replaceBlock(readFileSync(results, 'utf8'), 'operator', render(runs), true));
  const readme = join(root, 'README.md');
  writeFileSync(readme, replaceBlock(readFileSync(readme, 'utf8'), 'operator', renderReadme(runs), false));
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  if (args.report) {
    writeReports();
    return 0;
  }
  const total = Number(args.sales);
  const idleSeconds = Number(args['idle-seconds']);
  if (!Number.isInteger(total) || total < 3 || !Number.isFinite(idleSeconds) || idleSeconds < 1) throw new Error('--sales ≥ 3 and --idle-seconds ≥ 1');
  // Three namespaces of 20 %, 30 % and 50 % of the sales: a fresh operator watching the first one,
  // two, or all three gives the memory at 100, 250 and 500 sales.
  const split = [Math.round(total * 0.2), Math.round(total * 0.3)];
  split.push(total - split[0]! - split[1]!);
  const namespaces = split.map((_, i) => `bench-op-${runId}-${i}`.slice(0, 63));
  const cluster: TestCluster = await testCluster();
  const kubectl = kubectlFor(cluster.kubeconfigYaml);
  const admin = createKubeClient(cluster.kc, { qps: 200, burst: 400, timeoutMs: 60_000 });
  const config = testConfig();
  const kafka = testKafka();
  const redis = testRedis();
  const sa = 'bench-operator';
  const node = `bench-node-${runId}`.slice(0, 63);
  const kubelet = new FakeKubelet(admin, node, namespaces);
  let op: OperatorProcess | undefined;
  const log = (msg: string) => process.stderr.write(`[bench:operator] ${new Date().toISOString().slice(11, 19)} ${msg}\n`);
  const verdicts: { what: string; ok: boolean }[] = [];

  let starts = 0;
  // --profile: the first operator (the one measured while idle) writes a .cpuprofile here on exit.
  const profileDir = args.profile ? join(root, `.cache/bench-operator-${runId}-profile`) : undefined;
  const startOp = async (watch: string[]) =>
    spawnOperator({
      nodeArgs: profileDir && starts === 0 ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [],
      kubeconfigYaml: saKubeconfig,
      config,
      namespaces: watch,
      identity: `bench-${runId}`,
      leaseName: `bench-${runId}`,
      logFile: join(root, `.cache/bench-operator-${runId}-${++starts}.log`),
      env: {
        LOG_LEVEL: 'info', // the endpoint's URL is read from the info line
        // Production timing, not the tests' short intervals.
        SCALE_INTERVAL: '15s', LAG_INTERVAL: '5s', STEP_TIMEOUT: '20s', RESYNC_PERIOD: '10m',
        LEASE_DURATION: '15s', LEASE_RENEW_DEADLINE: '10s', LEASE_RETRY_PERIOD: '2s',
        ...SETTINGS,
      },
    });
  let saKubeconfig = '';
  try {
    // An earlier run's cleanup deletes its namespaces without waiting: the controller manager then
    // deletes thousands of objects for minutes. A run started meanwhile shares the machine with that
    // (p99 116 s and 173 s for the same code, back to back): wait until they are gone.
    const waitStarted = Date.now();
    const leftovers = await until(async () => {
      const ns = await admin.request<KubeList<{ metadata: { name: string } }>>('GET', '/api/v1/namespaces?labelSelector=flashsale.dev%2Fbench%3Doperator');
      return ns.items.length === 0 ? 'gone' : undefined;
    }, 900_000, 5000);
    if (!leftovers) throw new Error('namespaces of an earlier run still terminating after 15 min');
    if (Date.now() - waitStarted > 5000) log(`waited ${((Date.now() - waitStarted) / 1000).toFixed(0)} s for an earlier run's namespaces to be deleted`);
    log(`setup: ${namespaces.join(', ')} (${split.join(' + ')} sales), ServiceAccount ${sa}, Node ${node}; load average ${loadavg()[0]?.toFixed(2)}`);
    await kubectl.ok(['apply', '--server-side', '--force-conflicts', '-f', join(root, 'crds/flashsale.yaml')]);
    await kubectl.ok(['wait', '--for=condition=Established', 'crd/flashsales.flashsale.dev', '--timeout=60s'], { timeoutMs: 70_000 });
    const objects = [
      ...namespaces.map((ns) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: { 'nodeagent.flashsale.dev/ignore': 'true', 'flashsale.dev/bench': 'operator' } } })),
      { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: sa, namespace: namespaces[0] } },
      {
        apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: `bench-operator-${runId}` },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
        subjects: [{ kind: 'ServiceAccount', name: sa, namespace: namespaces[0] }],
      },
    ];
    await kubectl.ok(['apply', '-f', '-'], { stdin: objects.map((o) => stringify(o)).join('---\n') });
    const token = (await kubectl.ok(['create', 'token', sa, '-n', namespaces[0] as string, '--duration=6h'])).trim();
    const kcAdmin = cluster.kc;
    const ca = kcAdmin.getCurrentCluster();
    saKubeconfig = stringify({
      apiVersion: 'v1', kind: 'Config', 'current-context': 'bench',
      clusters: [{ name: 'bench', cluster: { server: cluster.server, ...(ca?.caData ? { 'certificate-authority-data': ca.caData } : { 'certificate-authority': ca?.caFile }) } }],
      users: [{ name: sa, user: { token } }],
      contexts: [{ name: 'bench', context: { cluster: 'bench', user: sa } }],
    });
    await kubelet.start();

    // Phase 1: every sale applied at once, the operator watching all three namespaces.
    op = await startOp(namespaces);
    const pid = op.proc.pid as number;
    const leading = op;
    await until(async () => (await opMetric(leading, 'leader_election_master_status')) === 1, 60_000);
    const file = join(root, `.cache/bench-operator-${runId}.yaml`);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, namespaces.flatMap((ns, i) => Array.from({ length: split[i] as number }, (_, j) => stringify(saleDoc(`s-${String(j).padStart(4, '0')}`, ns)))).join('---\n'));
    const cpu0 = cpuSeconds(pid);
    // Who uses the two cores while the sales are provisioned: every process of the control plane,
    // the broker, the databases, the operator, and this benchmark (kubectl, its fake kubelet).
    const meter = new CpuMeter({ operator: [pid], ...controlPlanePids(), ...infraPids(), benchmark: [process.pid] });
    const requests0 = await apiserverCounts(cluster.kc);
    meter.begin();
    // The machine as the sales are applied (load average included: what else was running).
    const atApply = machine();
    const t0 = Date.now();
    await kubectl.ok(['apply', '--server-side', '-f', file], { timeoutMs: 300_000 });
    const applySeconds = (Date.now() - t0) / 1000;
    log(`applied ${total} sales in ${applySeconds.toFixed(1)} s; waiting for Ready (bound ${TARGET.readySeconds * 2} s)`);
    const readyAt = new Map<string, number>();
    const boundSeconds = TARGET.readySeconds * 2;
    await until(async () => {
      for (const s of await listSales(admin, namespaces)) {
        const key = `${s.metadata.namespace}/${s.metadata.name}`;
        if (!readyAt.has(key) && isReady(s)) readyAt.set(key, (Date.now() - t0) / 1000);
      }
      return readyAt.size >= total;
    }, boundSeconds * 1000);
    const readyCpu = cpuSeconds(pid) - cpu0;
    const readyWall = (Date.now() - t0) / 1000;
    const cores = Object.fromEntries(Object.entries(meter.end()).map(([role, sec]) => [role, sec / readyWall]));
    const requests1 = await apiserverCounts(cluster.kc);
    const readyPhaseRequests = Object.fromEntries(
      Object.entries(requests1.secondsByVerbResource)
        .map(([k, sec]) => [k, { count: (requests1.byVerbResource[k] ?? 0) - (requests0.byVerbResource[k] ?? 0), seconds: sec - (requests0.secondsByVerbResource[k] ?? 0) }] as const)
        .sort((a, b) => b[1].seconds - a[1].seconds)
        .slice(0, 15),
    );
    log(`apiserver in the ready phase (handler s / requests): ${Object.entries(readyPhaseRequests).map(([k, v]) => `${k} ${v.seconds.toFixed(1)} / ${v.count}`).join(', ')}; requests in all ${requests1.total - requests0.total}`);
    log(`cores used in the ready phase (${readyWall.toFixed(0)} s): ${Object.entries(cores).map(([r, c]) => `${r} ${c.toFixed(2)}`).join(', ')}; all ${Object.values(cores).reduce((a, b) => a + b, 0).toFixed(2)} of ${atApply.cores}`);
    const times = [...readyAt.values()].sort((a, b) => a - b);
    const ready = { all: readyAt.size === total, readyCount: readyAt.size, p50: percentile(times, 50), p99: percentile(times, 99), max: times.at(-1) ?? NaN, boundSeconds };
    const opSamples = samples(await (await fetch(`${op.url}/metrics`)).text());
    const byResult: Record<string, number> = {};
    for (const x of opSamples) if (x.name === 'controller_runtime_reconcile_total') byResult[x.labels.result as string] = x.value;
    const rtSum = opSamples.find((x) => x.name === 'controller_runtime_reconcile_time_seconds_sum')?.value ?? NaN;
    const rtCount = opSamples.find((x) => x.name === 'controller_runtime_reconcile_time_seconds_count')?.value ?? NaN;
    // Where the reconciles' time went: seconds spent per step (sum over all reconciles) and calls.
    const steps: Record<string, { seconds: number; count: number }> = {};
    for (const x of opSamples) {
      const step = x.labels.step as string | undefined;
      if (!step) continue;
      if (x.name === 'flashsale_operator_reconcile_step_duration_seconds_sum') (steps[step] ??= { seconds: 0, count: 0 }).seconds = x.value;
      if (x.name === 'flashsale_operator_reconcile_step_duration_seconds_count') (steps[step] ??= { seconds: 0, count: 0 }).count = x.value;
    }
    const reconciles = { count: rtCount, meanSeconds: rtSum / rtCount, workers: opSamples.find((x) => x.name === 'controller_runtime_max_concurrent_reconciles')?.value ?? NaN, byResult, steps };
    log(`reconcile time by step (total s / calls): ${Object.entries(steps).map(([k, v]) => `${k} ${fmt(v.seconds, 1)} / ${v.count}`).join(', ') || 'none'}`);
    log(`ready: ${readyAt.size}/${total}, p50 ${fmt(ready.p50)} s, p99 ${fmt(ready.p99)} s, max ${fmt(ready.max)} s, CPU ${fmt(readyCpu)} s; ${reconciles.count} reconciles, ${fmt(reconciles.meanSeconds, 2)} s each, ${reconciles.workers} workers`);
    const rssAfterReady = rssMiB(pid);
    const base = {
      bench: 'operator' as const, smoke: args.smoke || args.profile || total < 500 || idleSeconds < 300, git: gitInfo(root), machine: atApply, loadavgWhen: 'apply' as const, readyPhaseCores: cores, readyPhaseRequests, sales: total,
      apply: { seconds: applySeconds }, ready, reconciles, settings: SETTINGS,
    };
    if (!ready.all) {
      // Still provisioning: an idle window now would measure work. Record what was measured and stop.
      verdicts.push({ what: `all ${total} Ready within ${TARGET.readySeconds} s (${readyAt.size} Ready after ${boundSeconds} s)`, ok: false });
      const line: OperatorRun = {
        ...base, timestamp: new Date().toISOString(),
        cpu: { readyPhaseSeconds: readyCpu, idleSeconds: NaN, idleCpuSeconds: NaN, idleCpuPercent: NaN },
        rssMiB: { afterReady: rssAfterReady, afterIdle: NaN }, idle: null, memory: [], linear: { predicted500: NaN, measured500: NaN, deviation: NaN }, verdicts,
      };
      mkdirSync(dirname(RESULTS), { recursive: true });
      appendFileSync(RESULTS, `${JSON.stringify(line)}\n`);
      writeReports();
      log(`MISSED ${verdicts[0]?.what}; idle and memory not measured (the operator was still provisioning)`);
      return 1;
    }

    // Phase 2: idle. Every pod runs: stop looking for pods, let the last status writes and
    // requeues settle for one scale interval, then count the apiserver's requests.
    kubelet.pause(true);
    await sleep(20_000);
    const c0 = await apiserverCounts(cluster.kc);
    const cpuIdle0 = cpuSeconds(pid);
    const i0 = Date.now();
    const idleFromUs = Number(process.hrtime.bigint() / 1000n);
    // Who uses the cores while the operator idles, and the same right after without it: the broker's
    // difference is the load of the operator's lag rounds on Kafka.
    const roles = { operator: [pid], ...controlPlanePids(), ...infraPids() };
    const idleMeter = new CpuMeter(roles);
    idleMeter.begin();
    log(`idle for ${idleSeconds} s`);
    await sleep(idleSeconds * 1000);
    const idleToUs = Number(process.hrtime.bigint() / 1000n);
    const c1 = await apiserverCounts(cluster.kc);
    const idleWall = (Date.now() - i0) / 1000;
    const idleCores = Object.fromEntries(Object.entries(idleMeter.end()).map(([role, sec]) => [role, sec / idleWall]));
    const idleCpu = cpuSeconds(pid) - cpuIdle0;
    const rssAfterIdle = rssMiB(pid);
    await op.stop();
    op = undefined;
    if (profileDir) printIdleProfile(profileDir, { fromUs: idleFromUs, toUs: idleToUs }, idleWall, log);
    // Baseline: the same window without the operator.
    const baselineSeconds = Math.min(60, idleSeconds);
    await sleep(5_000);
    const b0 = await apiserverCounts(cluster.kc);
    const bt0 = Date.now();
    log(`baseline without the operator for ${baselineSeconds} s`);
    const { operator: _gone, ...withoutOperator } = roles;
    const baseMeter = new CpuMeter(withoutOperator);
    baseMeter.begin();
    await sleep(baselineSeconds * 1000);
    const b1 = await apiserverCounts(cluster.kc);
    const baseWall = (Date.now() - bt0) / 1000;
    const baselineCores = Object.fromEntries(Object.entries(baseMeter.end()).map(([role, sec]) => [role, sec / baseWall]));
    const coresLine = (c: Record<string, number>) => Object.entries(c).map(([r, v]) => `${r} ${v.toFixed(3)}`).join(', ');
    log(`cores used idle: ${coresLine(idleCores)}; without the operator: ${coresLine(baselineCores)}`);
    kubelet.pause(false);
    const byVerbResource: Record<string, number> = {};
    for (const [k, v] of Object.entries(c1.byVerbResource)) {
      const rate = (v - (c0.byVerbResource[k] ?? 0)) / idleWall - ((b1.byVerbResource[k] ?? 0) - (b0.byVerbResource[k] ?? 0)) / baseWall;
      if (rate > 0.001) byVerbResource[k] = rate;
    }
    const apiserverPerSecond = (c1.total - c0.total) / idleWall;
    const baselinePerSecond = (b1.total - b0.total) / baseWall;
    const operatorPerSecond = Math.max(0, apiserverPerSecond - baselinePerSecond);
    const idle = {
      seconds: idleWall, apiserverRequests: c1.total - c0.total, apiserverPerSecond,
      baselineSeconds: baseWall, baselinePerSecond, operatorPerSecond, operatorPerSalePerSecond: operatorPerSecond / total, byVerbResource,
      cores: idleCores, baselineCores,
    };
    log(`idle: apiserver ${fmt(apiserverPerSecond, 2)} req/s with the operator, ${fmt(baselinePerSecond, 2)} without → operator ${fmt(operatorPerSecond, 2)} req/s = ${fmt(idle.operatorPerSalePerSecond, 4)}/s per sale; CPU ${fmt(idleCpu, 2)} s`);

    // Phase 3: memory of a fresh operator watching 1, 2, 3 namespaces.
    const memory: { sales: number; rssMiB: number; heapUsedMiB: number }[] = [];
    for (let n = 1; n <= namespaces.length; n++) {
      const watch = namespaces.slice(0, n);
      const count = split.slice(0, n).reduce((a, b) => a + b, 0);
      op = await startOp(watch);
      const p = op.proc.pid as number;
      const current = op;
      // Every sale reconciled once and the queue empty: the state the operator keeps for `count` sales.
      await until(async () => {
        const done = (await opMetric(current, 'controller_runtime_reconcile_total')) ?? 0;
        const depth = (await opMetric(current, 'workqueue_depth')) ?? 1;
        return done >= count && depth === 0;
      }, 300_000);
      // One reading lands anywhere in the GC cycle (a first run read 542 MiB at 250 sales and 419 at
      // 500): the lowest of 15 readings a second apart is the live state after a collection.
      let heap = Infinity;
      let rss = Infinity;
      for (let i = 0; i < 15; i++) {
        await sleep(1000);
        heap = Math.min(heap, ((await opMetric(op, 'nodejs_heap_size_used_bytes')) ?? NaN) / 2 ** 20);
        rss = Math.min(rss, rssMiB(p));
      }
      memory.push({ sales: count, rssMiB: rss, heapUsedMiB: heap });
      log(`memory: ${count} sales → lowest of 15 readings: RSS ${fmt(rss, 0)} MiB, heap used ${fmt(heap, 0)} MiB`);
      if (n < namespaces.length) {
        await op.stop();
        op = undefined;
      }
    }
    const [m1, m2, m3] = memory as [typeof memory[0], typeof memory[0], typeof memory[0]];
    // Judged on the heap the operator keeps (RSS also holds allocator and JIT slack the kernel may
    // not take back); RSS is reported beside it.
    const slope = (m2.heapUsedMiB - m1.heapUsedMiB) / (m2.sales - m1.sales);
    const predicted500 = m2.heapUsedMiB + slope * (m3.sales - m2.sales);
    const linear = { basis: 'heap' as const, predicted500, measured500: m3.heapUsedMiB, deviation: Math.abs(m3.heapUsedMiB - predicted500) / predicted500 };

    verdicts.push({ what: `all ${total} Ready within ${TARGET.readySeconds} s`, ok: ready.all && ready.max <= TARGET.readySeconds });
    verdicts.push({ what: `idle ≤ ${TARGET.idlePerSale} requests/s per sale`, ok: idle.operatorPerSalePerSecond <= TARGET.idlePerSale });
    // Growing linearly = never faster than the line (a leak or an O(n²) structure shows above it);
    // below the line is the fixed base weighing less as sales grow, not a miss. Until 2026-12-02 04:11
    // the check was two-sided (a run 34 % below the line was recorded as missed).
    verdicts.push({ what: `memory at most linear (the ${m3.sales}-sale heap ≤ the line through the first two + ${TARGET.linearTolerance * 100} %)`, ok: linear.measured500 <= linear.predicted500 * (1 + TARGET.linearTolerance) });
    const line: OperatorRun = {
      ...base, timestamp: new Date().toISOString(),
      cpu: { readyPhaseSeconds: readyCpu, idleSeconds: idleWall, idleCpuSeconds: idleCpu, idleCpuPercent: (idleCpu / idleWall) * 100 },
      rssMiB: { afterReady: rssAfterReady, afterIdle: rssAfterIdle }, idle, memory, linear, verdicts,
    };
    mkdirSync(dirname(RESULTS), { recursive: true });
    appendFileSync(RESULTS, `${JSON.stringify(line)}\n`);
    writeReports();
    for (const v of verdicts) log(`${v.ok ? 'met   ' : 'MISSED'} ${v.what}`);
    return verdicts.every((v) => v.ok) ? 0 : 1;
  } finally {
    log('cleanup');
    // The operator (Retain) removes the finalizers; then everything the benchmark created goes.
    if (!op && saKubeconfig) op = await startOp(namespaces).catch(() => undefined);
    for (const ns of namespaces) await kubectl.run(['delete', 'flashsale', '--all', '-n', ns, '--wait=false'], { timeoutMs: 120_000 });
    await until(async () => (await listSales(admin, namespaces).catch(() => [])).length === 0, 300_000, 2000);
    await op?.stop();
    // Pods bound to the benchmark's Node wait for a kubelet to confirm their deletion: confirm it here.
    await kubectl.run(['delete', 'namespace', ...namespaces, '--wait=false']);
    for (const ns of namespaces) await kubectl.run(['delete', 'pods', '--all', '-n', ns, '--grace-period=0', '--force'], { timeoutMs: 120_000 });
    await kubelet.stop();
    await kubectl.run(['delete', 'clusterrolebinding', `bench-operator-${runId}`, '--ignore-not-found']);
    for (const ns of namespaces) {
      await deleteTopics(kafka, `flashsale.${ns}.`).catch((e: Error) => log(`topics of ${ns}: ${e.message}`));
      await deleteRedisKeys(redis, [`fs:{${ns}/*`, `fs:${ns}/*`]).catch(() => {});
    }
    await dropDatabase(config).catch(() => {});
    await kafka.close().catch(() => {});
    redis.disconnect();
    kubectl.cleanup();
  }
}

/** Where the operator's CPU went in the idle window (samples inside it only), as a step table and the top functions. */
function printIdleProfile(dir: string, window: { fromUs: number; toUs: number }, seconds: number, log: (msg: string) => void): void {
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) {
    log(`no CPU profile in ${dir} (did the operator exit cleanly?)`);
    return;
  }
  const cost = attribute(JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile, OPERATOR_STEPS, window);
  const pct = (ms: number) => `${((ms / 1000 / seconds) * 100).toFixed(2)} %`;
  log(`idle profile (${join(dir, file)}): ${pct(cost.cpuMs)} of a core over ${seconds.toFixed(0)} s under the profiler; by step:`);
  for (const [step, ms] of Object.entries(cost.steps).sort((a, b) => b[1] - a[1])) log(`  ${pct(ms).padStart(8)}  ${step}`);
  log('functions with the most self time:');
  for (const [fn, ms] of Object.entries(cost.top)) log(`  ${pct(ms).padStart(8)}  ${fn}`);
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench:operator failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(2);
  },
);
