// One pod on the node: its address, its ServiceAccount token, its containers as process groups,
// their probes, restarts with back-off, termination with the grace period, and the status a
// kubelet would write (only when it changed).
import { spawn, type ChildProcess } from 'node:child_process';
import { chownSync, closeSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import type { V1Container, V1ContainerState, V1Pod, V1PodStatus } from '@kubernetes/client-node';
import type { KubeClient } from '../../controller/operator/kube.ts';
import type { Logger } from '../../controller/log.ts';
import type { EventRecorder } from './events.ts';
import type { PodIPs } from './ips.ts';
import {
  SA_MOUNT_PATH, automountToken, backoffMs, containerEnv, expand, exitCode, flashsaleArgs, httpProbe, isProjectImage, podStatus, rfc3339, runAs, sameJson,
  type ContainerView, type EnvSources, type HttpProbe,
} from './podspec.ts';

export interface NodeContext {
  nodeName: string;
  hostIP: string;
  client: KubeClient;
  logger: Logger;
  events: EventRecorder;
  ips: PodIPs;
  stateDir: string;
  /** Node 24 and bin/flashsale.js of this checkout. */
  nodeBin: string;
  flashsaleJs: string;
  repoRoot: string;
  apiHost: string;
  apiPort: string;
  caPem: string;
  isRoot: boolean;
  /** Records a child's pid so a later agent can kill what a crashed one left behind. */
  trackPid(pid: number, alive: boolean): void;
}

const TOKEN_SECONDS = 3600;
const RAN_LONG_ENOUGH_MS = 60_000; // a container that ran this long starts its back-off afresh

type Secretish = { data?: Record<string, string> };

class ContainerRun {
  readonly spec: V1Container;
  proc: ChildProcess | undefined;
  pid: number | undefined;
  restartCount = 0;
  everStarted = false;
  ready = false;
  state: V1ContainerState = { waiting: { reason: 'ContainerCreating' } };
  lastState: V1ContainerState | undefined;
  failures = 0;
  startedAtMs = 0;
  killReason: string | undefined;
  timers = new Set<NodeJS.Timeout>();
  exited: Promise<void> = Promise.resolve();
  /** Set when the spec can never run (image, command): no retry. */
  fatal = false;

  constructor(spec: V1Container) {
    this.spec = spec;
  }

  timer(fn: () => void, ms: number): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  clearTimers(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}

export class PodWorker {
  pod: V1Pod;
  readonly uid: string;
  private readonly ctx: NodeContext;
  private readonly log: Logger;
  private readonly containers: ContainerRun[];
  private ip: string | undefined;
  private readonly startTime: string;
  private started = false;
  private terminating = false;
  private finished = false;
  /** Agent shutdown: the pod's status is left as it was (the next agent restarts its containers). */
  private quiet = false;
  private tokenTimer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  private dirty = false;
  private writeRetry: NodeJS.Timeout | undefined;
  readonly podDir: string;
  readonly logDir: string;
  /** Resolves once the pod's processes are gone and it was deleted (or vanished). */
  readonly done: Promise<void>;
  private resolveDone!: () => void;

  constructor(pod: V1Pod, ctx: NodeContext) {
    this.pod = pod;
    this.ctx = ctx;
    this.uid = pod.metadata?.uid ?? '';
    const ns = pod.metadata?.namespace ?? '';
    const name = pod.metadata?.name ?? '';
    this.log = ctx.logger.child({ pod: `${ns}/${name}` });
    this.podDir = join(ctx.stateDir, 'pods', this.uid);
    this.logDir = join(ctx.stateDir, 'logs', `${ns}_${name}_${this.uid}`);
    this.done = new Promise((r) => (this.resolveDone = r));
    const prev = new Map((pod.status?.containerStatuses ?? []).map((s) => [s.name, s]));
    this.startTime = pod.status?.startTime ? rfc3339(new Date(pod.status.startTime).getTime()) : rfc3339(Date.now());
    this.containers = (pod.spec?.containers ?? []).map((c) => {
      const run = new ContainerRun(c);
      const p = prev.get(c.name);
      if (p) {
        // A previous agent ran this pod: its processes are gone (the new agent killed any left over).
        run.restartCount = p.restartCount ?? 0;
        run.lastState = p.lastState;
        if (p.state?.running || p.state?.terminated || p.lastState?.terminated || (p.restartCount ?? 0) > 0) {
          run.everStarted = true;
          if (p.state?.running) {
            run.lastState = { terminated: { exitCode: 255, reason: 'Unknown', message: 'the node agent restarted; the previous process is gone', startedAt: p.state.running.startedAt, finishedAt: new Date() } };
            run.restartCount++;
          }
        }
      }
      return run;
    });
  }

  private get ns(): string {
    return this.pod.metadata?.namespace ?? '';
  }
  private get name(): string {
    return this.pod.metadata?.name ?? '';
  }

  private event(type: 'Normal' | 'Warning', reason: string, message: string, container?: string): void {
    this.ctx.events.record(this.pod, type, reason, message, container ? `spec.containers{${container}}` : undefined);
  }

  /** The latest object from the informer. */
  update(pod: V1Pod): void {
    if (this.finished) return;
    // Watch events may trail our own status write (whose answer we already hold): never go back.
    const rv = (p: V1Pod) => Number(p.metadata?.resourceVersion);
    if (!(rv(pod) < rv(this.pod))) this.pod = pod;
    if (pod.metadata?.deletionTimestamp) {
      void this.terminate((pod.metadata.deletionGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30) * 1000, true);
      return;
    }
    if (!this.started) {
      this.started = true;
      void this.begin().catch((err: unknown) => this.log.error({ err: String(err) }, 'pod start failed'));
    }
  }

  /** The pod left the API without us (deleted with grace 0 by someone, or its namespace went). */
  vanished(): void {
    void this.terminate(Math.min((this.pod.spec?.terminationGracePeriodSeconds ?? 30) * 1000, 10_000), false);
  }

  /** Agent shutdown: stop the processes, leave the pod in the API. */
  async shutdown(graceMs: number): Promise<void> {
    this.finished = true;
    this.terminating = true;
    this.quiet = true;
    if (this.tokenTimer) clearTimeout(this.tokenTimer);
    await Promise.all(this.containers.map((c) => this.kill(c, graceMs, 'agent stopping')));
  }

  private async begin(): Promise<void> {
    mkdirSync(this.logDir, { recursive: true });
    const home = join(this.podDir, 'home');
    mkdirSync(home, { recursive: true });
    this.ip = this.ctx.ips.allocate(this.uid, this.pod.status?.podIP);
    void this.annotateLogs();
    if ((this.pod.spec?.initContainers?.length ?? 0) > 0) {
      this.event('Warning', 'Failed', 'the flashsale node agent does not run init containers: they are skipped');
    }
    for (const c of this.containers) {
      if (!isProjectImage(c.spec.image)) {
        c.fatal = true;
        const msg = `image "${c.spec.image}" is not supported by the flashsale node agent: it runs only the project's image (repository flashsale-operator, any registry and tag)`;
        c.state = { waiting: { reason: 'ErrImagePull', message: msg } };
        this.event('Warning', 'Failed', `Failed to pull image "${c.spec.image}": ${msg}`, c.spec.name);
      }
    }
    // Written (or at least tried) before any process starts: the pod's address is in the API first.
    await this.flush();
    for (const c of this.containers) if (!c.fatal) void this.startContainer(c);
  }

  private async annotateLogs(): Promise<void> {
    const key = 'nodeagent.flashsale.dev/logs';
    if (this.pod.metadata?.annotations?.[key] === this.logDir) return;
    try {
      await this.ctx.client.request('PATCH', `/api/v1/namespaces/${this.ns}/pods/${this.name}`, { metadata: { annotations: { [key]: this.logDir } } }, 'application/merge-patch+json');
    } catch (err) {
      this.log.debug({ err: String(err) }, 'log annotation not written');
    }
  }

  private async get<T>(path: string): Promise<T | undefined> {
    try {
      return await this.ctx.client.request<T>('GET', path);
    } catch (err) {
      if ((err as { status?: number }).status === 404) return undefined;
      throw err;
    }
  }

  /** Reads every Secret/ConfigMap the container's env refers to (fresh on each start, as kubelet). */
  private async envSources(c: V1Container): Promise<EnvSources> {
    const secrets = new Map<string, Record<string, string> | undefined>();
    const maps = new Map<string, Record<string, string> | undefined>();
    for (const e of c.env ?? []) {
      if (e.valueFrom?.secretKeyRef?.name) secrets.set(e.valueFrom.secretKeyRef.name, undefined);
      if (e.valueFrom?.configMapKeyRef?.name) maps.set(e.valueFrom.configMapKeyRef.name, undefined);
    }
    for (const f of c.envFrom ?? []) {
      if (f.secretRef?.name) secrets.set(f.secretRef.name, undefined);
      if (f.configMapRef?.name) maps.set(f.configMapRef.name, undefined);
    }
    for (const name of secrets.keys()) {
      const s = await this.get<Secretish>(`/api/v1/namespaces/${this.ns}/secrets/${name}`);
      secrets.set(name, s ? Object.fromEntries(Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')])) : undefined);
    }
    for (const name of maps.keys()) {
      const m = await this.get<Secretish>(`/api/v1/namespaces/${this.ns}/configmaps/${name}`);
      maps.set(name, m ? { ...(m.data ?? {}) } : undefined);
    }
    return { secret: (n) => secrets.get(n), configMap: (n) => maps.get(n) };
  }

  /** Mints (or refreshes) the pod's bound ServiceAccount token into its directory; false when not mounted. */
  private async ensureToken(): Promise<boolean> {
    const sa = this.pod.spec?.serviceAccountName || 'default';
    const account = await this.get<{ automountServiceAccountToken?: boolean }>(`/api/v1/namespaces/${this.ns}/serviceaccounts/${sa}`);
    if (!automountToken(this.pod, account)) return false;
    if (!account) throw new Error(`serviceaccount "${sa}" not found`);
    const tr = await this.ctx.client.request<{ status: { token: string; expirationTimestamp: string } }>('POST', `/api/v1/namespaces/${this.ns}/serviceaccounts/${sa}/token`, {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: { expirationSeconds: TOKEN_SECONDS, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: this.name, uid: this.uid } },
    });
    const dir = join(this.podDir, 'serviceaccount');
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    // Atomic replace: the process may be reading the token while it is refreshed.
    for (const [file, content] of [['token', tr.status.token], ['ca.crt', this.ctx.caPem], ['namespace', this.ns]] as const) {
      writeFileSync(join(dir, `.${file}.tmp`), content, { mode: 0o644 });
      renameSync(join(dir, `.${file}.tmp`), join(dir, file));
    }
    const ttl = new Date(tr.status.expirationTimestamp).getTime() - Date.now();
    if (this.tokenTimer) clearTimeout(this.tokenTimer);
    // Refresh at 80% of the lifetime, as kubelet does.
    this.tokenTimer = setTimeout(() => {
      if (!this.terminating) this.ensureToken().catch((err: unknown) => this.log.warn({ err: String(err) }, 'token refresh failed'));
    }, Math.max(10_000, ttl * 0.8));
    return true;
  }

  private async startContainer(c: ContainerRun): Promise<void> {
    if (this.terminating || c.proc) return;
    const spec = c.spec;
    const retry = (reason: string, message: string, eventReason = 'Failed') => {
      c.state = { waiting: { reason, message } };
      c.failures++;
      this.event('Warning', eventReason, `Error: ${message}`, spec.name);
      this.markDirty();
      c.timer(() => void this.startContainer(c), backoffMs(c.failures));
    };
    const args = flashsaleArgs(spec);
    if (!args.ok) {
      c.fatal = true;
      c.state = { waiting: { reason: args.reason, message: args.message } };
      this.event('Warning', 'Failed', `Error: ${args.message}`, spec.name);
      return this.markDirty();
    }
    const user = runAs(this.pod, spec);
    if (!user.ok) return retry(user.reason, user.message);
    const probes = [httpProbe(spec.readinessProbe, spec), httpProbe(spec.livenessProbe, spec)];
    for (const p of probes) if (!p.ok) return retry(p.reason, p.message);
    let env;
    let withToken: boolean;
    try {
      withToken = await this.ensureToken();
    } catch (err) {
      return retry('ContainerCreating', `MountVolume.SetUp failed for the service account token: ${String((err as Error).message ?? err)}`, 'FailedMount');
    }
    if (withToken && !this.ctx.isRoot) return retry('CreateContainerError', 'the node agent must run as root to mount the service account token');
    try {
      env = containerEnv(this.pod, spec, await this.envSources(spec), this.ip ?? '', this.ctx.hostIP);
    } catch (err) {
      return retry('CreateContainerConfigError', String((err as Error).message ?? err));
    }
    if (!env.ok) return retry(env.reason, env.message);
    if (this.terminating || c.proc) return;

    const vars = env.value;
    const argv = args.value.map((a) => expand(a, vars));
    const processEnv: Record<string, string> = {
      PATH: `${join(this.ctx.nodeBin, '..')}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
      HOSTNAME: this.name,
      HOME: join(this.podDir, 'home'),
      KUBERNETES_SERVICE_HOST: this.ctx.apiHost,
      KUBERNETES_SERVICE_PORT: this.ctx.apiPort,
      KUBERNETES_SERVICE_PORT_HTTPS: this.ctx.apiPort,
      KUBERNETES_PORT: `tcp://${this.ctx.apiHost}:${this.ctx.apiPort}`,
      ...Object.fromEntries(vars),
    };
    const { uid, gid } = user.value;
    const program = [this.ctx.nodeBin, this.ctx.flashsaleJs, ...argv];
    let cmd: string[];
    if (!this.ctx.isRoot) cmd = program;
    else {
      chownSync(join(this.podDir, 'home'), uid, gid);
      const drop = ['setpriv', '--reuid', String(uid), '--regid', String(gid), '--clear-groups', '--', ...program];
      // A private mount namespace per pod shows its own token directory at the in-cluster path.
      cmd = withToken
        ? ['unshare', '--mount', '--propagation', 'private', '--', '/bin/sh', '-c', 'mount --bind "$1" "$2" && shift 2 && exec "$@"', 'pod', join(this.podDir, 'serviceaccount'), SA_MOUNT_PATH, ...drop]
        : drop;
    }
    const logFile = join(this.logDir, spec.name, `${c.restartCount}.log`);
    mkdirSync(join(this.logDir, spec.name), { recursive: true });
    const fd = openSync(logFile, 'a');
    let proc: ChildProcess;
    try {
      proc = spawn(cmd[0] as string, cmd.slice(1), { env: processEnv, cwd: this.ctx.repoRoot, detached: true, stdio: ['ignore', fd, fd] });
    } finally {
      closeSync(fd);
    }
    const startedAt = Date.now();
    c.proc = proc;
    c.pid = proc.pid;
    c.startedAtMs = startedAt;
    c.killReason = undefined;
    c.ready = false;
    c.everStarted = true;
    c.state = { running: { startedAt: rfc3339(startedAt) as unknown as Date } };
    if (proc.pid) this.ctx.trackPid(proc.pid, true);
    c.exited = new Promise((resolve) => {
      proc.once('error', (err) => {
        this.log.error({ err: err.message, container: spec.name }, 'spawn failed');
      });
      proc.once('close', (code, signal) => {
        if (proc.pid) this.ctx.trackPid(proc.pid, false);
        this.onExit(c, code, signal, startedAt);
        resolve();
      });
    });
    this.log.info({ container: spec.name, pid: proc.pid, ip: this.ip, uid, log: logFile }, 'container started');
    this.event('Normal', 'Pulled', `Container image "${spec.image}" already present on machine`, spec.name);
    this.event('Normal', 'Created', `Created container: ${spec.name}`, spec.name);
    this.event('Normal', 'Started', `Started container ${spec.name}`, spec.name);
    this.markDirty();
    this.startProbes(c, probes[0]?.ok ? probes[0].value : undefined, probes[1]?.ok ? probes[1].value : undefined);
  }

  private onExit(c: ContainerRun, code: number | null, signal: NodeJS.Signals | null, startedAt: number): void {
    c.clearTimers();
    c.proc = undefined;
    c.ready = false;
    const finishedAt = Date.now();
    const exit = exitCode(code, signal, constants.signals as unknown as Record<string, number>);
    const terminated = {
      exitCode: exit,
      ...(signal ? { signal: (constants.signals as unknown as Record<string, number>)[signal] } : {}),
      reason: exit === 0 ? 'Completed' : 'Error',
      ...(c.killReason ? { message: c.killReason } : {}),
      startedAt: rfc3339(startedAt) as unknown as Date,
      finishedAt: rfc3339(finishedAt) as unknown as Date,
      containerID: `process://${c.pid}`,
    };
    this.log.info({ container: c.spec.name, exitCode: exit, signal }, 'container exited');
    const policy = this.pod.spec?.restartPolicy ?? 'Always';
    if (this.terminating || (policy === 'Never') || (policy === 'OnFailure' && exit === 0)) {
      c.state = { terminated };
      return this.markDirty();
    }
    c.failures = finishedAt - startedAt >= RAN_LONG_ENOUGH_MS ? 1 : c.failures + 1;
    const delay = backoffMs(c.failures);
    c.lastState = { terminated };
    c.state = { waiting: { reason: 'CrashLoopBackOff', message: `back-off ${Math.round(delay / 1000)}s restarting failed container=${c.spec.name} pod=${this.name}_${this.ns}(${this.uid})` } };
    this.event('Warning', 'BackOff', 'Back-off restarting failed container', c.spec.name);
    this.markDirty();
    c.timer(() => {
      c.restartCount++;
      void this.startContainer(c);
    }, delay);
  }

  private startProbes(c: ContainerRun, readiness: HttpProbe | undefined, liveness: HttpProbe | undefined): void {
    const proc = c.proc;
    if (!readiness) c.ready = true;
    const loop = (p: HttpProbe, kind: 'Readiness' | 'Liveness') => {
      let ok = 0;
      let bad = 0;
      const tick = async () => {
        if (c.proc !== proc || this.terminating) return;
        const result = await this.probe(p);
        if (c.proc !== proc || this.terminating) return;
        if (result === true) {
          ok++;
          bad = 0;
        } else {
          bad++;
          ok = 0;
          this.event('Warning', 'Unhealthy', `${kind} probe failed: ${result}`, c.spec.name);
        }
        if (kind === 'Readiness') {
          const ready = ok >= p.successThreshold ? true : bad >= p.failureThreshold ? false : c.ready;
          if (ready !== c.ready) {
            c.ready = ready;
            this.markDirty();
          }
        } else if (bad >= p.failureThreshold) {
          this.event('Normal', 'Killing', `Container ${c.spec.name} failed liveness probe, will be restarted`, c.spec.name);
          void this.kill(c, (this.pod.spec?.terminationGracePeriodSeconds ?? 30) * 1000, 'liveness probe failed');
          return;
        }
        c.timer(() => void tick(), p.periodMs);
      };
      c.timer(() => void tick(), p.initialDelayMs);
    };
    if (readiness) loop(readiness, 'Readiness');
    if (liveness) loop(liveness, 'Liveness');
  }

  /** One HTTP probe: true, or why it failed (kubelet's wording). */
  private async probe(p: HttpProbe): Promise<true | string> {
    const url = `${p.scheme}://${p.host ?? this.ip}:${p.port}${p.path}`;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(p.timeoutMs), headers: { 'user-agent': 'kube-probe/flashsale-node-agent' } });
      await res.arrayBuffer().catch(() => undefined);
      return res.status >= 200 && res.status < 400 ? true : `HTTP probe failed with statuscode: ${res.status}`;
    } catch (err) {
      const cause = (err as { cause?: { message?: string } }).cause?.message ?? (err as Error).message;
      return `Get "${url}": ${cause}`;
    }
  }

  /** SIGTERM to the process group, SIGKILL after the grace period; resolves when it exited. */
  private async kill(c: ContainerRun, graceMs: number, reason: string): Promise<void> {
    c.clearTimers();
    const proc = c.proc;
    if (!proc || !c.pid) return;
    c.killReason = reason;
    const pgid = c.pid;
    const signal = (s: NodeJS.Signals) => {
      try {
        process.kill(-pgid, s);
      } catch {
        /* already gone */
      }
    };
    signal('SIGTERM');
    const hard = setTimeout(() => signal('SIGKILL'), graceMs);
    await c.exited;
    clearTimeout(hard);
    signal('SIGKILL'); // anything the process left in its group
  }

  private async terminate(graceMs: number, deleteFromApi: boolean): Promise<void> {
    if (this.terminating && !this.finished) return;
    if (this.finished) return;
    this.terminating = true;
    if (this.tokenTimer) clearTimeout(this.tokenTimer);
    for (const c of this.containers) {
      c.clearTimers();
      if (c.proc) this.event('Normal', 'Killing', `Stopping container ${c.spec.name}`, c.spec.name);
    }
    await Promise.all(this.containers.map((c) => this.kill(c, graceMs, 'pod deleted')));
    this.finished = true;
    if (deleteFromApi) {
      await this.flush();
      // As kubelet: once the processes are gone, the pod object is removed for good.
      try {
        await this.ctx.client.request('DELETE', `/api/v1/namespaces/${this.ns}/pods/${this.name}`, { apiVersion: 'v1', kind: 'DeleteOptions', gracePeriodSeconds: 0, preconditions: { uid: this.uid } });
      } catch (err) {
        const status = (err as { status?: number }).status;
        if (status !== 404 && status !== 409) this.log.warn({ err: String(err) }, 'final pod delete failed');
      }
    }
    this.cleanup();
  }

  private cleanup(): void {
    if (this.writeRetry) clearTimeout(this.writeRetry);
    if (this.ip) this.ctx.ips.release(this.ip, this.uid);
    rmSync(this.podDir, { recursive: true, force: true });
    this.resolveDone();
  }

  /** Releases the address and the pod dir after an agent shutdown (the pod stays in the API). */
  release(): void {
    this.cleanup();
  }

  private view(): ContainerView[] {
    return this.containers.map((c) => ({
      name: c.spec.name,
      image: c.spec.image ?? '',
      ...(c.pid ? { containerID: `process://${c.pid}` } : {}),
      restartCount: c.restartCount,
      ready: c.ready && Boolean(c.proc),
      state: c.state,
      ...(c.lastState ? { lastState: c.lastState } : {}),
      everStarted: c.everStarted,
    }));
  }

  private markDirty(): void {
    if (this.quiet) return;
    this.dirty = true;
    this.writing = this.writing.then(() => this.writeStatus());
  }

  private async flush(): Promise<void> {
    this.markDirty();
    await this.writing;
  }

  private async writeStatus(): Promise<void> {
    if (!this.dirty) return;
    this.dirty = false;
    const desired = podStatus({ restartPolicy: this.pod.spec?.restartPolicy ?? 'Always', podIP: this.ip, hostIP: this.ctx.hostIP, startTime: this.startTime, containers: this.view() }, this.pod.status, Date.now());
    const current = this.pod.status ?? {};
    const mine = Object.fromEntries(Object.keys(desired).map((k) => [k, (current as Record<string, unknown>)[k]]));
    if (sameJson(mine, desired)) return;
    try {
      const updated = await this.ctx.client.request<V1Pod>('PATCH', `/api/v1/namespaces/${this.ns}/pods/${this.name}/status`, { metadata: { uid: this.uid }, status: desired as V1PodStatus }, 'application/merge-patch+json');
      if (updated.metadata?.resourceVersion) this.pod = updated;
    } catch (err) {
      const status = (err as { status?: number }).status;
      if (status === 404 || status === 409) return; // gone (or replaced by a pod of the same name)
      this.log.warn({ err: String(err) }, 'status write failed; retrying');
      if (this.writeRetry) clearTimeout(this.writeRetry);
      this.writeRetry = setTimeout(() => this.markDirty(), 1000);
    }
  }

  /** For tests and the agent: the process ids of the running containers. */
  pids(): Record<string, number | undefined> {
    return Object.fromEntries(this.containers.map((c) => [c.spec.name, c.proc ? c.pid : undefined]));
  }
}

/** The CA in PEM from a kubeconfig cluster entry (inline data or file). */
export function caPem(cluster: { caData?: string; caFile?: string } | null): string {
  if (cluster?.caData) return Buffer.from(cluster.caData, 'base64').toString('utf8');
  if (cluster?.caFile) return readFileSync(cluster.caFile, 'utf8');
  return '';
}
