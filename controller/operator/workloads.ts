// The Deployments, the Service and the PodDisruptionBudget of a sale's data plane, built as plain
// objects from the spec (pure functions), and the comparison that decides whether they need to be
// applied again.
// They are written with server-side apply under one field manager: the operator owns exactly the
// fields it sets, so others' fields (a `kubectl rollout restart` annotation, a sidecar…) survive.
// `spec.replicas` is one of its fields: an HPA on a sale's Deployment would be undone (docs/operator.md).
import { createHash } from 'node:crypto';
import type { V1Deployment, V1EnvVar, V1ObjectMeta, V1OwnerReference, V1PodDisruptionBudget, V1PodSpec, V1ResourceRequirements, V1Service, V1Toleration, V1TopologySpreadConstraint } from '@kubernetes/client-node';
import { API_VERSION, compareQuantities, KIND, type FlashSale, type PlacementSpec, type WorkerResources } from '../spec/flashsale.ts';
import { saleNames } from '../spec/names.ts';

export type Role = 'api' | 'order-writer' | 'timeout-closer' | 'compensator';

/** The kinds of object the operator creates for a sale (each owned by it). */
export type Child = V1Deployment | V1Service | V1PodDisruptionBudget;

export const MANAGED_BY = 'flashsale-operator';
export const LABEL_SALE = 'flashsale.dev/sale';
export const LABEL_ROLE = 'flashsale.dev/role';
export const LABEL_BUCKET = 'flashsale.dev/bucket';
/**
 * How long a stopping API pod keeps answering (DRAIN_DELAY_MS): the time for its removal from the
 * Service's endpoints to reach kube-proxy and load balancers, under the 20-s shutdown deadline and
 * the pod's 30-s grace period.
 */
export const API_DRAIN_DELAY_MS = 5000;
/** Port every worker serves /healthz, /readyz and /metrics (and the API its routes) on. */
export const WORKER_PORT = 8080;

export interface SecretRef {
  name: string;
  key: string;
}

/** What the operator hands every worker: image, connection settings (plain or from Secrets), log level. */
export interface WorkerEnv {
  image: string;
  /** The container's imagePullPolicy; unset: Kubernetes' default for the image's tag. */
  imagePullPolicy?: ImagePullPolicy;
  /** Names of Secrets in the sale's namespace the kubelet pulls the image with (a private registry). */
  imagePullSecrets?: string[];
  kafkaBrokers: string[];
  redisUrl: string;
  mysqlUrl: string;
  redisSecret?: SecretRef;
  mysqlSecret?: SecretRef;
  logLevel: string;
}

export const IMAGE_PULL_POLICIES = ['Always', 'IfNotPresent', 'Never'] as const;
export type ImagePullPolicy = (typeof IMAGE_PULL_POLICIES)[number];

/** Parses `secret-name/key` (the format of WORKER_REDIS_URL_SECRET / WORKER_MYSQL_URL_SECRET). */
export function parseSecretRef(raw: string): SecretRef | undefined {
  const m = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)\/([-._a-zA-Z0-9]+)$/.exec(raw);
  return m ? { name: m[1] as string, key: m[3] as string } : undefined;
}

export interface WorkloadPlan {
  name: string;
  role: Role;
  bucket?: string;
  args: string[];
  replicas: number;
  resources: V1ResourceRequirements;
}

/**
 * A worker's resources: the spec's `workers.<role>.resources` as written, which replaces the default
 * as a whole (merging would leave a default request above a limit the user lowered), or the default:
 * requests only, so a worker is never throttled or OOM-killed by a limit nobody chose. The API asks
 * for more: it decides every purchase.
 */
function workerResources(role: Role, spec: WorkerResources | undefined): V1ResourceRequirements {
  if (spec) {
    const strings = (q: WorkerResources['requests']) => (q ? Object.fromEntries(Object.entries(q).map(([k, v]) => [k, String(v)])) : undefined);
    const requests = strings(spec.requests);
    const limits = strings(spec.limits);
    return { ...(requests ? { requests } : {}), ...(limits ? { limits } : {}) };
  }
  return role === 'api' ? { requests: { cpu: '250m', memory: '256Mi' } } : { requests: { cpu: '100m', memory: '128Mi' } };
}

/** The sale's workloads with their replica counts (`scaled` holds the lag-based counts by name). */
export function plannedWorkloads(sale: FlashSale, scaled: Record<string, number>): WorkloadPlan[] {
  const n = saleNames(sale.metadata).workloads;
  const w = sale.spec.workers;
  const plans: WorkloadPlan[] = [
    { name: n.api, role: 'api', args: ['api'], replicas: w.api.replicas, resources: workerResources('api', w.api.resources) },
    { name: n.orderWriter, role: 'order-writer', args: ['order-writer'], replicas: scaled[n.orderWriter] ?? w.orderWriter.minReplicas, resources: workerResources('order-writer', w.orderWriter.resources) },
  ];
  const closerResources = workerResources('timeout-closer', w.timeoutCloser.resources);
  for (const b of sale.spec.timeoutBuckets) {
    const name = n.timeoutCloser(b.name);
    plans.push({ name, role: 'timeout-closer', bucket: b.name, args: ['timeout-closer', '--bucket', b.name], replicas: scaled[name] ?? w.timeoutCloser.minReplicas, resources: closerResources });
  }
  plans.push({ name: n.compensator, role: 'compensator', args: ['compensator'], replicas: 1, resources: workerResources('compensator', w.compensator.resources) });
  return plans;
}

export function ownerReference(sale: FlashSale): V1OwnerReference {
  return { apiVersion: API_VERSION, kind: KIND, name: sale.metadata.name, uid: sale.metadata.uid ?? '', controller: true, blockOwnerDeletion: true };
}

function labels(sale: FlashSale, role: Role, bucket?: string): Record<string, string> {
  return {
    'app.kubernetes.io/name': 'flashsale',
    'app.kubernetes.io/instance': sale.metadata.name,
    'app.kubernetes.io/component': role,
    'app.kubernetes.io/part-of': 'flashsale',
    'app.kubernetes.io/managed-by': MANAGED_BY,
    [LABEL_SALE]: sale.metadata.name,
    [LABEL_ROLE]: role,
    ...(bucket ? { [LABEL_BUCKET]: bucket } : {}),
  };
}

/** What every child of the sale carries: its name, the sale's namespace, its role's labels, the owner reference. */
function childMetadata(sale: FlashSale, name: string, roleLabels: Record<string, string>): V1ObjectMeta {
  return { name, namespace: sale.metadata.namespace, labels: roleLabels, ownerReferences: [ownerReference(sale)] };
}

function selector(sale: FlashSale, role: Role, bucket?: string): Record<string, string> {
  return { [LABEL_SALE]: sale.metadata.name, [LABEL_ROLE]: role, ...(bucket ? { [LABEL_BUCKET]: bucket } : {}) };
}

/**
 * The sale as a worker of `role` reads it from FLASHSALE_SPEC: only what its process needs to start,
 * so an edit that does not concern a worker changes no pod template and rolls no pod. Left out:
 * stock numbers (workers read stock from Redis, where the operator applies a change: `stock: 0` is
 * a placeholder the schema requires), replica counts and scaling bounds, partitions, the deletion
 * policy, and the compensation settings for every role but the compensator.
 */
export function workerSpec(sale: FlashSale, role: Role): FlashSale['spec'] {
  const s = sale.spec;
  const spec: Record<string, unknown> = {
    skus: s.skus.map((k) => ({ id: k.id, stock: 0, timeoutBucket: k.timeoutBucket })),
    timeoutBuckets: s.timeoutBuckets,
    perUserLimit: s.perUserLimit,
  };
  if (s.startTime !== undefined) spec.startTime = s.startTime;
  if (s.endTime !== undefined) spec.endTime = s.endTime;
  if (role === 'compensator') spec.compensation = s.compensation;
  return spec as unknown as FlashSale['spec'];
}

/** FLASHSALE_SPEC of a worker: identity and its part of the spec (see workerSpec), never status. */
export function specForWorkers(sale: FlashSale, role: Role): string {
  return JSON.stringify({ apiVersion: API_VERSION, kind: KIND, metadata: { name: sale.metadata.name, namespace: sale.metadata.namespace }, spec: workerSpec(sale, role) });
}

function envVars(sale: FlashSale, env: WorkerEnv, role: Role): V1EnvVar[] {
  const fromSecret = (name: string, ref: SecretRef | undefined, plain: string): V1EnvVar =>
    ref ? { name, valueFrom: { secretKeyRef: { name: ref.name, key: ref.key } } } : { name, value: plain };
  return [
    { name: 'FLASHSALE_SPEC', value: specForWorkers(sale, role) },
    { name: 'KAFKA_BROKERS', value: env.kafkaBrokers.join(',') },
    fromSecret('REDIS_URL', env.redisSecret, env.redisUrl),
    fromSecret('MYSQL_URL', env.mysqlSecret, env.mysqlUrl),
    // Bind to the pod's own address: reachable through the Service, never on every interface.
    { name: 'HTTP_HOST', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
    { name: 'HTTP_PORT', value: String(WORKER_PORT) },
    { name: 'LOG_LEVEL', value: env.logLevel },
    // The API keeps answering for 5 s after SIGTERM while its pod leaves the endpoints (config.ts).
    ...(role === 'api' ? [{ name: 'DRAIN_DELAY_MS', value: String(API_DRAIN_DELAY_MS) }] : []),
  ];
}

/**
 * The API's replicas spread over nodes, then zones: the PodDisruptionBudget covers a drain, this
 * covers a node or zone that fails, which would otherwise take every replica of a sale's API with
 * it when the scheduler packed them together. ScheduleAnyway: a preference, so a one-node cluster
 * or a full zone still runs every replica. pod-template-hash: each rollout's new pods spread among
 * themselves, not against the old ones about to go.
 */
function apiSpread(sale: FlashSale): V1TopologySpreadConstraint[] {
  return ['kubernetes.io/hostname', 'topology.kubernetes.io/zone'].map((topologyKey) => ({
    maxSkew: 1,
    topologyKey,
    whenUnsatisfiable: 'ScheduleAnyway',
    labelSelector: { matchLabels: selector(sale, 'api') },
    matchLabelKeys: ['pod-template-hash'],
  }));
}

/** A generated map type's entries without the undefined its index signature allows. */
function definedEntries(m: { [k: string]: string | undefined } | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(m ?? {}).filter((e): e is [string, string] => e[1] !== undefined));
}

function hasEntries(m: object | undefined): boolean {
  return m !== undefined && Object.keys(m).length > 0;
}

/**
 * spec.placement on every worker's pods, only the fields the spec sets, so a sale without it keeps
 * the template (and apply hash) it had. A toleration's empty strings are left out: Kubernetes
 * stores them as absent (omitempty), and an empty key sent on would look like drift every round.
 */
function podPlacement(p: PlacementSpec | undefined): Pick<V1PodSpec, 'nodeSelector' | 'tolerations' | 'priorityClassName'> {
  const tolerations = (p?.tolerations ?? []).map((t) => Object.fromEntries(Object.entries(t).filter(([, v]) => v !== '' && v !== undefined)) as V1Toleration);
  return {
    ...(hasEntries(p?.nodeSelector) ? { nodeSelector: definedEntries(p?.nodeSelector) } : {}),
    ...(tolerations.length > 0 ? { tolerations } : {}),
    ...(p?.priorityClassName ? { priorityClassName: p.priorityClassName } : {}),
  };
}

export function desiredDeployment(sale: FlashSale, plan: WorkloadPlan, env: WorkerEnv): V1Deployment {
  const l = labels(sale, plan.role, plan.bucket);
  const probe = (path: string) => ({ httpGet: { path, port: 'http' }, periodSeconds: 10, timeoutSeconds: 2, failureThreshold: 3 });
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: childMetadata(sale, plan.name, l),
    spec: {
      replicas: plan.replicas,
      // The API keeps every replica serving through a rollout: new pods first (a quarter more, at
      // least one), an old one goes only once a new one is ready. Kubernetes' default would take a
      // quarter of a 4-replica API away at once, in the middle of a sale.
      ...(plan.role === 'api' ? { strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: '25%' } } } : {}),
      selector: { matchLabels: selector(sale, plan.role, plan.bucket) },
      template: {
        // spec.podMetadata first, the operator's labels over it (the CRD refuses those keys anyway).
        metadata: { labels: { ...definedEntries(sale.spec.podMetadata?.labels), ...l }, ...(hasEntries(sale.spec.podMetadata?.annotations) ? { annotations: definedEntries(sale.spec.podMetadata?.annotations) } : {}) },
        spec: {
          automountServiceAccountToken: false,
          ...(env.imagePullSecrets?.length ? { imagePullSecrets: env.imagePullSecrets.map((name) => ({ name })) } : {}),
          ...(plan.role === 'api' ? { topologySpreadConstraints: apiSpread(sale) } : {}),
          ...podPlacement(sale.spec.placement),
          securityContext: { runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, seccompProfile: { type: 'RuntimeDefault' } },
          containers: [
            {
              name: plan.role,
              image: env.image,
              ...(env.imagePullPolicy ? { imagePullPolicy: env.imagePullPolicy } : {}),
              args: plan.args,
              env: envVars(sale, env, plan.role),
              ports: [{ name: 'http', containerPort: WORKER_PORT, protocol: 'TCP' }],
              resources: plan.resources,
              readinessProbe: probe('/readyz'),
              livenessProbe: { ...probe('/healthz'), initialDelaySeconds: 5 },
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                runAsNonRoot: true,
                privileged: false,
                capabilities: { drop: ['ALL'] },
              },
            },
          ],
        },
      },
    },
  };
}

export function desiredService(sale: FlashSale): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: childMetadata(sale, saleNames(sale.metadata).workloads.apiService, labels(sale, 'api')),
    spec: {
      type: 'ClusterIP',
      selector: selector(sale, 'api'),
      ports: [{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }],
    },
  };
}

/**
 * The API's PodDisruptionBudget: a voluntary disruption (a node drain, a cluster upgrade) takes down
 * one API pod at a time and waits for its replacement to be ready, so the sale keeps answering
 * buyers; without it a drain of the node holding both replicas stops the sale. maxUnavailable, not
 * minAvailable: with `workers.api.replicas: 1` a drain still proceeds (a minAvailable of 1 would
 * block it for good). Unhealthy pods may always be evicted, so a crash-looping replica never blocks
 * a drain either. The consumers get none: evicting them at once only delays orders and closes
 * (their work waits in Kafka), and a budget would make a drain rebalance their group once per pod.
 */
export function desiredDisruptionBudget(sale: FlashSale): V1PodDisruptionBudget {
  return {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: childMetadata(sale, saleNames(sale.metadata).workloads.apiDisruptionBudget, labels(sale, 'api')),
    spec: {
      maxUnavailable: 1,
      selector: { matchLabels: selector(sale, 'api') },
      unhealthyPodEvictionPolicy: 'AlwaysAllow',
    },
  };
}

/**
 * True when every field the operator sets in `desired` has the same value in `actual`. Fields the
 * server defaults (or other controllers add) are not compared, so they never cause a write.
 */
export function covers(actual: unknown, desired: unknown, quantities = false): boolean {
  if (desired === undefined) return true;
  // A container's requests and limits come back canonical (1024Mi as 1Gi, 0.5 as 500m): equal
  // amounts, not equal strings, or every round would apply the same resources again.
  if (quantities && (typeof desired === 'string' || typeof desired === 'number') && (typeof actual === 'string' || typeof actual === 'number')) {
    return compareQuantities(actual, desired) === 0;
  }
  if (Array.isArray(desired)) {
    if (!Array.isArray(actual)) return false;
    // Lists keyed by name (containers, env, ports — list-maps for server-side apply): each desired
    // entry must be there; entries other managers added (a sidecar, an env var) are theirs and
    // survive the apply, so they must not make every round apply again.
    const named = desired.length > 0 && desired.every((d) => d !== null && typeof d === 'object' && typeof (d as { name?: unknown }).name === 'string');
    if (named) {
      const byName = new Map(actual.map((a) => [(a as { name?: unknown } | null)?.name, a]));
      return desired.every((d) => covers(byName.get((d as { name: string }).name), d));
    }
    return actual.length === desired.length && desired.every((d, i) => covers(actual[i], d));
  }
  if (desired !== null && typeof desired === 'object') {
    if (actual === null || typeof actual !== 'object' || Array.isArray(actual)) return false;
    return Object.entries(desired).every(([k, v]) => covers((actual as Record<string, unknown>)[k], v, quantities || k === 'requests' || k === 'limits'));
  }
  return actual === desired;
}

/** Annotation holding the hash of the configuration the operator last applied to a child. */
export const APPLIED_HASH_ANNOTATION = 'flashsale.dev/applied-hash';

function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v !== null && typeof v === 'object') {
    return Object.fromEntries(Object.keys(v).sort().filter((k) => (v as Record<string, unknown>)[k] !== undefined).map((k) => [k, canonical((v as Record<string, unknown>)[k])]));
  }
  return v;
}

/** A stable hash of an object's configuration (key order ignored). */
export function configHash(o: unknown): string {
  return createHash('sha256').update(JSON.stringify(canonical(o))).digest('hex').slice(0, 16);
}

/**
 * The apply configuration of a child: `desired` carrying the hash of itself in an annotation, so
 * the next round can tell what the operator last applied without asking the apiserver.
 */
export function applyConfiguration<T extends Child>(desired: T): T {
  const hash = configHash(desired);
  return { ...desired, metadata: { ...desired.metadata, annotations: { ...(desired.metadata?.annotations ?? {}), [APPLIED_HASH_ANNOTATION]: hash } } } as T;
}

/**
 * Whether `desired` must be applied over `existing`: the operator last applied something else
 * (hash annotation differs: covers removed fields too), or a field it sets was changed by someone
 * else (drift). Server defaults and others' fields never cause an apply, so an idle round writes nothing.
 */
export function needsApply(existing: Child, desired: Child): boolean {
  const want = applyConfiguration(desired);
  if (existing.metadata?.annotations?.[APPLIED_HASH_ANNOTATION] !== want.metadata?.annotations?.[APPLIED_HASH_ANNOTATION]) return true;
  return !(
    covers(existing.metadata?.labels, desired.metadata?.labels) &&
    covers(existing.metadata?.ownerReferences, desired.metadata?.ownerReferences) &&
    covers(existing.spec, desired.spec)
  );
}
