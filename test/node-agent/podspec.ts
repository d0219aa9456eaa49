// The pure part of the node agent: what a pod spec asks for (which program, which user, which
// environment, which probes) and the pod status a kubelet would report for a given container
// state. No I/O here, so the rules are unit-tested without a cluster.
import type { V1Container, V1ContainerStatus, V1EnvVar, V1Pod, V1PodCondition, V1PodStatus, V1Probe } from '@kubernetes/client-node';

/** The repository of the project's image; any registry prefix, any tag or digest. */
export const PROJECT_IMAGE_REPOSITORY = 'flashsale-operator';
export const SA_MOUNT_PATH = '/var/run/secrets/kubernetes.io/serviceaccount';

/** True when `image` is the project's image (`registry.example.com/x/flashsale-operator:0.1.0`, `flashsale-operator@sha256:…`). */
export function isProjectImage(image: string | undefined): boolean {
  if (!image) return false;
  const noDigest = image.split('@')[0] as string;
  const lastSlash = noDigest.lastIndexOf('/');
  const lastColon = noDigest.lastIndexOf(':');
  // A colon after the last slash is a tag; before it, a registry port.
  const repo = lastColon > lastSlash ? noDigest.slice(0, lastColon) : noDigest;
  return repo.slice(repo.lastIndexOf('/') + 1) === PROJECT_IMAGE_REPOSITORY;
}

export type Resolved<T> = { ok: true; value: T } | { ok: false; reason: string; message: string };

/**
 * The `flashsale` arguments of a container. The image's entrypoint is `flashsale`, so without
 * `command` the args are its arguments. A `command` replaces the entrypoint as in Kubernetes; the
 * agent can only run the project's program, so `command[0]` must name it (`flashsale`, a path
 * ending in `/flashsale`, or `bin/flashsale.js`): its other elements come before `args`. Anything
 * else is refused (RunContainerError) instead of being run as a host command.
 */
export function flashsaleArgs(c: Pick<V1Container, 'command' | 'args'>): Resolved<string[]> {
  const args = c.args ?? [];
  if (!c.command || c.command.length === 0) return { ok: true, value: args };
  const [first, ...rest] = c.command;
  if (first === 'flashsale' || first?.endsWith('/flashsale') || first?.endsWith('bin/flashsale.js')) return { ok: true, value: [...rest, ...args] };
  return { ok: false, reason: 'RunContainerError', message: `exec: "${first}": the node agent runs only the flashsale program (command must start with flashsale)` };
}

/** Kubernetes' `$(VAR)` expansion (`$$(VAR)` escapes): unknown references stay as written. */
export function expand(s: string, vars: ReadonlyMap<string, string>): string {
  return s.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (m, name: string | undefined) => {
    if (m === '$$') return '$';
    return name !== undefined && vars.has(name) ? (vars.get(name) as string) : m;
  });
}

/** What the agent reads from the API to build an environment. `undefined` = the object does not exist. */
export interface EnvSources {
  secret(name: string): Record<string, string> | undefined;
  configMap(name: string): Record<string, string> | undefined;
}

/** A pod field for `fieldRef` (kubelet's supported paths). */
export function podField(pod: V1Pod, path: string, podIP: string, hostIP: string): Resolved<string> {
  const md = pod.metadata ?? {};
  const sel = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(path);
  if (sel) return { ok: true, value: (sel[1] === 'labels' ? md.labels : md.annotations)?.[sel[2] as string] ?? '' };
  const fields: Record<string, string | undefined> = {
    'metadata.name': md.name,
    'metadata.namespace': md.namespace,
    'metadata.uid': md.uid,
    'spec.nodeName': pod.spec?.nodeName,
    'spec.serviceAccountName': pod.spec?.serviceAccountName,
    'status.podIP': podIP,
    'status.podIPs': podIP,
    'status.hostIP': hostIP,
    'status.hostIPs': hostIP,
  };
  if (!(path in fields)) return { ok: false, reason: 'CreateContainerConfigError', message: `unsupported fieldRef path "${path}"` };
  return { ok: true, value: fields[path] ?? '' };
}

/**
 * The container's environment as kubelet builds it: `envFrom` first, then `env` in order (later
 * wins), `$(VAR)` expanded against what came before. A missing Secret/ConfigMap or key that is not
 * optional is a CreateContainerConfigError with kubelet's wording.
 */
export function containerEnv(pod: V1Pod, c: V1Container, src: EnvSources, podIP: string, hostIP: string): Resolved<Map<string, string>> {
  const ns = pod.metadata?.namespace ?? '';
  const out = new Map<string, string>();
  const fail = (message: string): Resolved<Map<string, string>> => ({ ok: false, reason: 'CreateContainerConfigError', message });
  for (const from of c.envFrom ?? []) {
    const prefix = from.prefix ?? '';
    if (from.secretRef) {
      const data = src.secret(from.secretRef.name ?? '');
      if (!data) {
        if (from.secretRef.optional) continue;
        return fail(`secret "${from.secretRef.name}" not found`);
      }
      for (const [k, v] of Object.entries(data)) out.set(prefix + k, v);
    } else if (from.configMapRef) {
      const data = src.configMap(from.configMapRef.name ?? '');
      if (!data) {
        if (from.configMapRef.optional) continue;
        return fail(`configmap "${from.configMapRef.name}" not found`);
      }
      for (const [k, v] of Object.entries(data)) out.set(prefix + k, v);
    }
  }
  for (const e of c.env ?? []) {
    const r = envValue(pod, e, src, ns, podIP, hostIP, out);
    if (!r.ok) return r;
    if (r.value !== undefined) out.set(e.name, r.value);
  }
  return { ok: true, value: out };
}

function envValue(pod: V1Pod, e: V1EnvVar, src: EnvSources, ns: string, podIP: string, hostIP: string, soFar: ReadonlyMap<string, string>): Resolved<string | undefined> {
  const fail = (message: string): Resolved<string | undefined> => ({ ok: false, reason: 'CreateContainerConfigError', message });
  const vf = e.valueFrom;
  if (!vf) return { ok: true, value: expand(e.value ?? '', soFar) };
  if (vf.secretKeyRef) {
    const { name = '', key, optional } = vf.secretKeyRef;
    const data = src.secret(name);
    if (!data) return optional ? { ok: true, value: undefined } : fail(`secret "${name}" not found`);
    if (!(key in data)) return optional ? { ok: true, value: undefined } : fail(`couldn't find key ${key} in Secret ${ns}/${name}`);
    return { ok: true, value: data[key] };
  }
  if (vf.configMapKeyRef) {
    const { name = '', key, optional } = vf.configMapKeyRef;
    const data = src.configMap(name);
    if (!data) return optional ? { ok: true, value: undefined } : fail(`configmap "${name}" not found`);
    if (!(key in data)) return optional ? { ok: true, value: undefined } : fail(`couldn't find key ${key} in ConfigMap ${ns}/${name}`);
    return { ok: true, value: data[key] };
  }
  if (vf.fieldRef) return podField(pod, vf.fieldRef.fieldPath, podIP, hostIP);
  return fail(`env ${e.name}: only value, secretKeyRef, configMapKeyRef and fieldRef are supported by the node agent`);
}

/** uid/gid the container runs as: container securityContext over the pod's, else the image's USER (10001:10001). */
export const IMAGE_USER = { uid: 10001, gid: 10001 };
export function runAs(pod: V1Pod, c: V1Container): Resolved<{ uid: number; gid: number }> {
  const psc = pod.spec?.securityContext ?? {};
  const csc = c.securityContext ?? {};
  const uid = csc.runAsUser ?? psc.runAsUser ?? IMAGE_USER.uid;
  const gid = csc.runAsGroup ?? psc.runAsGroup ?? (csc.runAsUser ?? psc.runAsUser) ?? IMAGE_USER.gid;
  const nonRoot = csc.runAsNonRoot ?? psc.runAsNonRoot;
  if (nonRoot && uid === 0) return { ok: false, reason: 'CreateContainerConfigError', message: 'container has runAsNonRoot and image will run as root' };
  return { ok: true, value: { uid, gid } };
}

/** Whether the ServiceAccount token is mounted: the pod's setting, else the ServiceAccount's, else yes. */
export function automountToken(pod: V1Pod, serviceAccount: { automountServiceAccountToken?: boolean } | undefined): boolean {
  return pod.spec?.automountServiceAccountToken ?? serviceAccount?.automountServiceAccountToken ?? true;
}

export interface HttpProbe {
  path: string;
  port: number;
  host: string | undefined;
  scheme: string;
  initialDelayMs: number;
  periodMs: number;
  timeoutMs: number;
  failureThreshold: number;
  successThreshold: number;
}

/** An httpGet probe with Kubernetes' defaults; the port may name a container port. */
export function httpProbe(p: V1Probe | undefined, c: V1Container): Resolved<HttpProbe | undefined> {
  if (!p) return { ok: true, value: undefined };
  if (!p.httpGet) return { ok: false, reason: 'CreateContainerConfigError', message: 'the node agent supports only httpGet probes' };
  const raw = p.httpGet.port as unknown;
  const port = typeof raw === 'number' ? raw : /^\d+$/.test(String(raw)) ? Number(raw) : c.ports?.find((x) => x.name === raw)?.containerPort;
  if (port === undefined) return { ok: false, reason: 'CreateContainerConfigError', message: `probe port "${String(raw)}" is not a port of container ${c.name}` };
  return {
    ok: true,
    value: {
      path: p.httpGet.path ?? '/',
      port,
      host: p.httpGet.host,
      scheme: (p.httpGet.scheme ?? 'HTTP').toLowerCase(),
      initialDelayMs: (p.initialDelaySeconds ?? 0) * 1000,
      periodMs: (p.periodSeconds ?? 10) * 1000,
      timeoutMs: (p.timeoutSeconds ?? 1) * 1000,
      failureThreshold: p.failureThreshold ?? 3,
      successThreshold: p.successThreshold ?? 1,
    },
  };
}

/** Restart back-off: 1 s doubling to 30 s. */
export function backoffMs(consecutiveFailures: number): number {
  return Math.min(1000 * 2 ** Math.max(0, consecutiveFailures - 1), 30_000);
}

/** The exit code kubelet reports for a process ended by a signal. */
export function exitCode(code: number | null, signal: NodeJS.Signals | null, signals: Record<string, number>): number {
  if (code !== null) return code;
  return 128 + (signal ? (signals[signal] ?? 0) : 0);
}

/** RFC 3339 with seconds, as the API server stores times (so a re-read status compares equal). */
export function rfc3339(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

/** What the agent knows about one container. */
export interface ContainerView {
  name: string;
  image: string;
  containerID?: string;
  restartCount: number;
  ready: boolean;
  state: V1ContainerStatus['state'];
  lastState?: V1ContainerStatus['lastState'];
  /** Ran at least once (in this or an earlier agent): the pod left Pending. */
  everStarted: boolean;
}

export interface PodView {
  restartPolicy: string;
  podIP?: string;
  hostIP: string;
  startTime: string;
  containers: ContainerView[];
}

/** The part of `status` the agent owns, built like kubelet's (phase, conditions, containerStatuses, IPs). */
export function podStatus(view: PodView, previous: V1PodStatus | undefined, nowMs: number): V1PodStatus {
  const cs = view.containers;
  const terminated = cs.filter((c) => c.state?.terminated);
  let phase: string;
  if (cs.some((c) => !c.everStarted)) phase = 'Pending';
  else if (view.restartPolicy !== 'Always' && terminated.length === cs.length) {
    phase = terminated.every((c) => c.state?.terminated?.exitCode === 0) ? 'Succeeded' : 'Failed';
  } else phase = 'Running';
  const allReady = cs.length > 0 && cs.every((c) => c.ready);
  const notReady = cs.filter((c) => !c.ready).map((c) => c.name);
  const unready = { reason: 'ContainersNotReady', message: `containers with unready status: [${notReady.join(' ')}]` };
  const terminal = phase === 'Succeeded' || phase === 'Failed';
  const conds: V1PodCondition[] = [
    { type: 'PodReadyToStartContainers', status: view.podIP ? 'True' : 'False' },
    { type: 'Initialized', status: 'True' },
    allReady ? { type: 'Ready', status: 'True' } : { type: 'Ready', status: 'False', ...(terminal ? { reason: 'PodCompleted' } : unready) },
    allReady ? { type: 'ContainersReady', status: 'True' } : { type: 'ContainersReady', status: 'False', ...(terminal ? { reason: 'PodCompleted' } : unready) },
    { type: 'PodScheduled', status: 'True' },
  ];
  const now = rfc3339(nowMs);
  for (const c of conds) {
    const prev = previous?.conditions?.find((p) => p.type === c.type);
    (c as { lastTransitionTime?: unknown }).lastTransitionTime = prev && prev.status === c.status && prev.lastTransitionTime ? rfc3339(new Date(prev.lastTransitionTime).getTime()) : now;
  }
  return {
    phase,
    conditions: conds,
    hostIP: view.hostIP,
    hostIPs: [{ ip: view.hostIP }],
    ...(view.podIP ? { podIP: view.podIP, podIPs: [{ ip: view.podIP }] } : {}),
    startTime: view.startTime as unknown as Date,
    containerStatuses: cs.map((c) => ({
      name: c.name,
      image: c.image,
      imageID: `${c.image.split(/[:@]/)[0]}@process`,
      ...(c.containerID ? { containerID: c.containerID } : {}),
      ready: c.ready,
      started: Boolean(c.state?.running),
      restartCount: c.restartCount,
      state: c.state ?? {},
      lastState: c.lastState ?? {},
    })),
  } as V1PodStatus;
}

/** Deep equality of JSON values, ignoring `undefined`/`null` members and key order. */
export function sameJson(a: unknown, b: unknown): boolean {
  const norm = (v: unknown): unknown => {
    if (v instanceof Date) return v.toISOString();
    if (Array.isArray(v)) return v.map(norm);
    if (v && typeof v === 'object') {
      const o: Record<string, unknown> = {};
      for (const k of Object.keys(v).sort()) {
        const x = (v as Record<string, unknown>)[k];
        if (x !== undefined && x !== null) o[k] = norm(x);
      }
      return o;
    }
    return v;
  };
  return JSON.stringify(norm(a)) === JSON.stringify(norm(b));
}
