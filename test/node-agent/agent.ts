// The node agent: registers a Node, keeps its Lease and Ready condition fresh, binds pending pods
// to itself (there is no scheduler), and runs every pod bound to it through a PodWorker.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KubeConfig, ListWatch, Watch, type V1Pod } from '@kubernetes/client-node';
import { ResilientInformer } from '../../controller/operator/informer.ts';
import { createKubeClient, type KubeClient, type KubeList } from '../../controller/operator/kube.ts';
import type { Logger } from '../../controller/log.ts';
import { EventRecorder } from './events.ts';
import { DEFAULT_POD_CIDR, PodIPs, inCidr } from './ips.ts';
import { PodWorker, caPem, type NodeContext } from './pod.ts';
import { SA_MOUNT_PATH, rfc3339 } from './podspec.ts';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DEFAULT_IGNORE_LABEL = 'nodeagent.flashsale.dev/ignore=true';
const LEASE_SECONDS = 40;
const RENEW_MS = 10_000;
const NODE_STATUS_MS = 60_000;
const RESYNC_MS = 30_000;

export interface AgentOptions {
  kubeconfig: string;
  nodeName: string;
  stateDir: string;
  /** Machine-wide directory of pod-address leases (shared by every agent on the machine). */
  ipDir: string;
  /** Pod addresses (default 10.244.0.0/16), routed to `lo` as local addresses at start. */
  podCidr?: string;
  /** `key=value`: pods of namespaces with this label are never bound ('' = bind everything). */
  ignoreNamespaceLabel: string;
  /** Bind pending pods to this node (false: run only pods already bound to it). */
  bind?: boolean;
  logger: Logger;
  /** Node 24 to run bin/flashsale.js with (default: the agent's own). */
  nodeBin?: string;
}

export class NodeAgent {
  private readonly o: AgentOptions;
  private readonly client: KubeClient;
  private readonly kc: KubeConfig;
  private readonly ctx: NodeContext;
  private readonly workers = new Map<string, PodWorker>();
  private readonly informers: ResilientInformer<V1Pod>[] = [];
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly binding = new Set<string>();
  private readonly nsIgnored = new Map<string, { ignored: boolean; at: number }>();
  private stopping = false;
  private podInformer: ResilientInformer<V1Pod> | undefined;

  constructor(o: AgentOptions) {
    this.o = o;
    this.kc = new KubeConfig();
    this.kc.loadFromFile(o.kubeconfig);
    this.client = createKubeClient(this.kc, { timeoutMs: 20_000 });
    const cluster = this.kc.getCurrentCluster();
    if (!cluster) throw new Error(`${o.kubeconfig}: no current cluster`);
    const server = new URL(cluster.server);
    const pidDir = join(o.stateDir, 'pids');
    mkdirSync(pidDir, { recursive: true });
    this.ctx = {
      nodeName: o.nodeName,
      hostIP: '127.0.0.1',
      client: this.client,
      logger: o.logger,
      events: new EventRecorder(this.client, o.nodeName, o.logger),
      ips: new PodIPs(o.ipDir, o.podCidr ?? DEFAULT_POD_CIDR),
      stateDir: o.stateDir,
      nodeBin: o.nodeBin ?? process.execPath,
      flashsaleJs: join(REPO_ROOT, 'bin', 'flashsale.js'),
      repoRoot: REPO_ROOT,
      apiHost: server.hostname.replace(/^\[|\]$/g, ''),
      apiPort: server.port || '443',
      caPem: caPem(cluster),
      isRoot: process.getuid?.() === 0,
      trackPid: (pid, alive) => (alive ? writeFileSync(join(pidDir, String(pid)), '') : rmSync(join(pidDir, String(pid)), { force: true })),
    };
  }

  /** Kills process groups a previous agent with this state dir left behind (it crashed or was SIGKILLed). */
  private killLeftovers(): void {
    const pidDir = join(this.o.stateDir, 'pids');
    for (const f of readdirSync(pidDir)) {
      const pid = Number(f);
      let cmdline = '';
      try {
        cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      } catch {
        /* gone */
      }
      if (pid > 1 && cmdline.includes('flashsale')) {
        this.o.logger.warn({ pid }, 'killing a process group left by a previous agent');
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      rmSync(join(pidDir, f), { force: true });
    }
  }

  /** Makes every address of the pod CIDR local (bindable, reachable on this machine): the AnyIP route. */
  private routePodNetwork(): void {
    const cidr = this.o.podCidr ?? DEFAULT_POD_CIDR;
    if (inCidr('127.0.0.1', cidr)) return; // already local
    try {
      execFileSync('ip', ['route', 'replace', 'local', cidr, 'dev', 'lo'], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 10_000, env: { PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin:/usr/bin:/bin` } });
    } catch (err) {
      throw new Error(`cannot route the pod network ${cidr} to lo (needs root and iproute2 — apt-get install iproute2 — to run: ip route replace local ${cidr} dev lo): ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}`, { cause: err });
    }
  }

  async start(): Promise<void> {
    this.killLeftovers();
    this.routePodNetwork();
    if (this.ctx.isRoot) mkdirSync(SA_MOUNT_PATH, { recursive: true });
    await this.registerNode();
    await this.renewLease();
    this.every(RENEW_MS, () => this.renewLease());
    // A Node deleted behind our back is registered again.
    this.every(NODE_STATUS_MS, () => this.writeNodeStatus(true).catch((err: unknown) => ((err as { status?: number }).status === 404 ? this.registerNode() : Promise.reject(err))));
    this.every(RESYNC_MS, async () => this.resync());

    const node = encodeURIComponent(this.o.nodeName);
    this.podInformer = this.informer(`spec.nodeName=${node}`, (pod, verb) => this.onPod(pod, verb));
    const pending = this.informer('spec.nodeName=,status.phase!=Succeeded,status.phase!=Failed', (pod, verb) => {
      if (verb !== 'delete') void this.bind(pod);
    });
    this.informers.push(this.podInformer);
    if (this.o.bind !== false) this.informers.push(pending);
    await Promise.all(this.informers.map((i) => i.start()));
    this.o.logger.info({ node: this.o.nodeName, stateDir: this.o.stateDir, apiserver: `${this.ctx.apiHost}:${this.ctx.apiPort}` }, 'node agent ready');
  }

  private informer(fieldSelector: string, onChange: (pod: V1Pod, verb: 'add' | 'update' | 'delete') => void): ResilientInformer<V1Pod> {
    const path = '/api/v1/pods';
    const list = () => this.client.request<KubeList<V1Pod>>('GET', `${path}?fieldSelector=${encodeURIComponent(fieldSelector)}`);
    return new ResilientInformer<V1Pod>({
      kc: this.kc,
      client: this.client,
      path,
      logger: this.o.logger,
      onChange,
      make: () => new ListWatch<V1Pod>(path, new Watch(this.kc), list as never, false, undefined, fieldSelector),
    });
  }

  private every(ms: number, fn: () => Promise<void>): void {
    const t = setInterval(() => {
      if (!this.stopping) fn().catch((err: unknown) => this.o.logger.warn({ err: String(err) }, 'periodic task failed'));
    }, ms);
    this.timers.push(t);
  }

  private onPod(pod: V1Pod, verb: 'add' | 'update' | 'delete'): void {
    if (this.stopping) return;
    const uid = pod.metadata?.uid ?? '';
    let w = this.workers.get(uid);
    if (verb === 'delete') {
      w?.vanished();
      return;
    }
    if (!w) {
      const phase = pod.status?.phase;
      if ((phase === 'Succeeded' || phase === 'Failed') && !pod.metadata?.deletionTimestamp) return;
      try {
        w = new PodWorker(pod, this.ctx);
      } catch (err) {
        this.o.logger.error({ err: String(err), pod: `${pod.metadata?.namespace}/${pod.metadata?.name}` }, 'cannot run pod');
        this.ctx.events.record(pod, 'Warning', 'FailedCreatePodSandBox', `node agent: ${String((err as Error).message ?? err)}`);
        return;
      }
      this.workers.set(uid, w);
      const worker = w;
      void worker.done.then(() => {
        if (this.workers.get(uid) === worker) this.workers.delete(uid);
        this.ctx.events.forget(uid);
      });
    }
    try {
      w.update(pod);
    } catch (err) {
      this.o.logger.error({ err: String(err) }, 'pod update failed');
    }
  }

  /** Pods the cache no longer has (a missed delete) are stopped; bounded by the number of workers. */
  private async resync(): Promise<void> {
    if (!this.podInformer) return;
    const live = new Set(this.podInformer.list().map((p) => p.metadata?.uid));
    for (const [uid, w] of this.workers) if (!live.has(uid)) w.vanished();
  }

  private async ignored(ns: string): Promise<boolean> {
    const [key, value] = this.o.ignoreNamespaceLabel.split('=');
    if (!key) return false;
    const cached = this.nsIgnored.get(ns);
    if (cached && Date.now() - cached.at < 10_000) return cached.ignored;
    const n = await this.client.request<{ metadata?: { labels?: Record<string, string> } }>('GET', `/api/v1/namespaces/${ns}`);
    const ignored = n.metadata?.labels?.[key] === (value ?? 'true');
    this.nsIgnored.set(ns, { ignored, at: Date.now() });
    return ignored;
  }

  /** Binds a pending pod to this node (the Binding subresource, as a scheduler does). */
  private async bind(pod: V1Pod): Promise<void> {
    const uid = pod.metadata?.uid ?? '';
    const ns = pod.metadata?.namespace ?? '';
    if (this.stopping || pod.spec?.nodeName || pod.metadata?.deletionTimestamp || (pod.spec?.schedulingGates?.length ?? 0) > 0 || this.binding.has(uid)) return;
    this.binding.add(uid);
    try {
      if (await this.ignored(ns)) return;
      await this.client.request('POST', `/api/v1/namespaces/${ns}/pods/${pod.metadata?.name}/binding`, {
        apiVersion: 'v1',
        kind: 'Binding',
        metadata: { name: pod.metadata?.name, namespace: ns, uid },
        target: { apiVersion: 'v1', kind: 'Node', name: this.o.nodeName },
      });
      this.ctx.events.record(pod, 'Normal', 'Scheduled', `Successfully assigned ${ns}/${pod.metadata?.name} to ${this.o.nodeName}`);
    } catch (err) {
      const status = (err as { status?: number }).status;
      if (status !== 409 && status !== 404) this.o.logger.warn({ err: String(err), pod: `${ns}/${pod.metadata?.name}` }, 'binding failed');
    } finally {
      this.binding.delete(uid);
    }
  }

  private nodeStatus(ready: boolean): Record<string, unknown> {
    const now = rfc3339(Date.now());
    const cond = (type: string, status: string, reason: string, message: string) => ({ type, status, reason, message, lastHeartbeatTime: now, lastTransitionTime: this.transitions.get(`${type}=${status}`) ?? now });
    const conditions = [
      cond('MemoryPressure', 'False', 'KubeletHasSufficientMemory', 'node agent has sufficient memory available'),
      cond('DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'node agent has no disk pressure'),
      cond('PIDPressure', 'False', 'KubeletHasSufficientPID', 'node agent has sufficient PID available'),
      ready ? cond('Ready', 'True', 'KubeletReady', 'flashsale node agent is posting ready status') : cond('Ready', 'False', 'KubeletNotReady', 'flashsale node agent stopped'),
    ];
    for (const c of conditions) if (!this.transitions.has(`${c.type}=${c.status}`)) this.transitions.set(`${c.type}=${c.status}`, now);
    if (!ready) this.transitions.delete('Ready=True');
    const resources = { cpu: String(cpus().length), memory: `${Math.floor(totalmem() / 1024)}Ki`, pods: '1000', 'ephemeral-storage': '10Gi' };
    return {
      conditions,
      addresses: [
        { type: 'InternalIP', address: '127.0.0.1' },
        { type: 'Hostname', address: this.o.nodeName },
      ],
      capacity: resources,
      allocatable: resources,
      daemonEndpoints: { kubeletEndpoint: { Port: 0 } },
      nodeInfo: {
        machineID: '', systemUUID: '', bootID: '', kernelVersion: release(), osImage: 'flashsale node agent', containerRuntimeVersion: 'process://node-' + process.version,
        kubeletVersion: 'flashsale-node-agent', kubeProxyVersion: '', operatingSystem: 'linux', architecture: process.arch === 'x64' ? 'amd64' : process.arch,
      },
    };
  }
  private readonly transitions = new Map<string, string>();

  private async registerNode(): Promise<void> {
    const name = this.o.nodeName;
    try {
      await this.client.request('POST', '/api/v1/nodes', {
        apiVersion: 'v1',
        kind: 'Node',
        metadata: { name, labels: { 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': process.arch === 'x64' ? 'amd64' : process.arch, 'node.flashsale.dev/agent': 'process' } },
        spec: {},
      });
    } catch (err) {
      if ((err as { status?: number }).status !== 409) throw err;
    }
    await this.writeNodeStatus(true);
  }

  private async writeNodeStatus(ready: boolean): Promise<void> {
    await this.client.request('PATCH', `/api/v1/nodes/${this.o.nodeName}/status`, { status: this.nodeStatus(ready) }, 'application/merge-patch+json');
  }

  private async renewLease(): Promise<void> {
    const ns = 'kube-node-lease';
    const spec = { holderIdentity: this.o.nodeName, leaseDurationSeconds: LEASE_SECONDS, renewTime: new Date().toISOString().replace(/\.(\d{3})Z$/, '.$1000Z') };
    try {
      await this.client.request('PATCH', `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases/${this.o.nodeName}`, { spec }, 'application/merge-patch+json');
    } catch (err) {
      if ((err as { status?: number }).status !== 404) throw err;
      await this.client.request('POST', `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases`, {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name: this.o.nodeName, namespace: ns, ownerReferences: await this.nodeOwner() },
        spec,
      });
    }
  }

  private async nodeOwner(): Promise<unknown[]> {
    const n = await this.client.request<{ metadata: { uid: string } }>('GET', `/api/v1/nodes/${this.o.nodeName}`);
    return [{ apiVersion: 'v1', kind: 'Node', name: this.o.nodeName, uid: n.metadata.uid }];
  }

  /** Pids of the running containers by pod (namespace/name → container → pid), for tests. */
  pids(): Record<string, Record<string, number | undefined>> {
    return Object.fromEntries([...this.workers.values()].map((w) => [`${w.pod.metadata?.namespace}/${w.pod.metadata?.name}`, w.pids()]));
  }

  /** Stops every container (SIGTERM, SIGKILL after `graceMs`) and marks the node NotReady; pods stay bound. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    await Promise.all(this.informers.map((i) => i.stop().catch(() => undefined)));
    await Promise.all([...this.workers.values()].map((w) => w.shutdown(graceMs)));
    for (const w of this.workers.values()) w.release();
    this.workers.clear();
    await this.writeNodeStatus(false).catch((err: unknown) => this.o.logger.warn({ err: String(err) }, 'could not mark the node NotReady'));
    this.o.logger.info({ node: this.o.nodeName }, 'node agent stopped');
  }
}
