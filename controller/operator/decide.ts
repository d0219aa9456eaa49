// The pure part of reconciliation: from the FlashSale and what was observed (children, lag, the
// outcome of each provisioning step) to what should exist and what status to report. No I/O here,
// so every rule is unit-tested with plain objects.
import type { V1Deployment, V1PodDisruptionBudget, V1Service } from '@kubernetes/client-node';
import { InvalidSpecError, validateFlashSale, type Condition, type FlashSale, type FlashSaleStatus } from '../spec/flashsale.ts';
import { saleNames } from '../spec/names.ts';
import { recommendReplicas } from './scaling.ts';
import { applyConfiguration, desiredDeployment, desiredDisruptionBudget, desiredService, needsApply, plannedWorkloads, type Child, type WorkerEnv } from './workloads.ts';

export const FINALIZER = 'flashsale.dev/cleanup';
export const FORCE_DELETE_ANNOTATION = 'flashsale.dev/force-delete';
/** "true": the operator changes nothing of the sale (Strimzi's strimzi.io/pause-reconciliation). */
export const PAUSE_ANNOTATION = 'flashsale.dev/pause-reconciliation';
/** The condition a paused sale carries; removed when the annotation goes. */
export const PAUSED_CONDITION = 'ReconciliationPaused';
export const CONDITION_TYPES = ['TopicsReady', 'StockReady', 'SchemaReady', 'WorkloadsReady', 'Ready'] as const;
export type ConditionType = (typeof CONDITION_TYPES)[number];

/** A FlashSale as read from the API: the spec is not trusted until validated. */
export interface RawSale {
  apiVersion?: string;
  kind?: string;
  metadata: FlashSale['metadata'];
  spec?: unknown;
  status?: FlashSaleStatus;
}

export type Decision =
  | { action: 'ignore' }
  | { action: 'invalid'; problems: string[] }
  | { action: 'finalize'; cleanup: 'delete-data' | 'retain' | 'force'; sale?: FlashSale }
  /** PAUSE_ANNOTATION: report it and touch nothing; `sale` when the spec is valid (for its metrics). */
  | { action: 'paused'; sale?: FlashSale; deleting: boolean }
  | { action: 'provision'; sale: FlashSale; addFinalizer: boolean };

/** What to do with this FlashSale, from its metadata and spec alone. */
export function decide(raw: RawSale): Decision {
  const meta = raw.metadata;
  const finalizers = meta.finalizers ?? [];
  let sale: FlashSale | undefined;
  let problems: string[] = [];
  try {
    sale = validateFlashSale(raw, meta.namespace);
    // validateFlashSale keeps metadata as given; keep the status too for comparisons.
  } catch (err) {
    if (!(err instanceof InvalidSpecError)) throw err;
    problems = err.problems;
  }
  const paused = meta.annotations?.[PAUSE_ANNOTATION] === 'true';
  if (meta.deletionTimestamp) {
    if (!finalizers.includes(FINALIZER)) return { action: 'ignore' };
    // Force-delete only drops the finalizer (no data touched), so it is honoured while paused.
    if (meta.annotations?.[FORCE_DELETE_ANNOTATION] === 'true') return { action: 'finalize', cleanup: 'force' };
    if (paused) return { action: 'paused', sale, deleting: true };
    // An invalid spec was never provisioned by this operator version: nothing to clean up.
    if (!sale) return { action: 'finalize', cleanup: 'retain' };
    return sale.spec.deletionPolicy === 'Delete' ? { action: 'finalize', cleanup: 'delete-data', sale } : { action: 'finalize', cleanup: 'retain', sale };
  }
  if (paused) return { action: 'paused', sale, deleting: false };
  if (!sale) return { action: 'invalid', problems };
  return { action: 'provision', sale, addFinalizer: !finalizers.includes(FINALIZER) };
}

/** Consumer lag of one group as the lag source observed it. */
export interface LagObservation {
  group: string;
  topic: string;
  /** Messages not yet consumed. */
  lag: number;
  /** The part of `lag` that is due now (all of it, except on delay topics). */
  overdue: number;
}

/**
 * Lag-based recommendations, by workload name: the orders topic's lag for the order writer and
 * each delay topic's OVERDUE lag for its timeout closer (messages not yet due are scheduled work,
 * not backlog).
 */
export function recommendations(sale: FlashSale, lag: LagObservation[], partitions: number): Record<string, number> {
  const n = saleNames(sale.metadata);
  const w = sale.spec.workers;
  const byGroup = new Map(lag.map((l) => [l.group, l]));
  const out: Record<string, number> = {};
  out[n.workloads.orderWriter] = recommendReplicas(byGroup.get(n.groups.orderWriter)?.overdue ?? 0, w.orderWriter, partitions);
  for (const b of sale.spec.timeoutBuckets) {
    out[n.workloads.timeoutCloser(b.name)] = recommendReplicas(byGroup.get(n.groups.timeoutCloser(b.name))?.overdue ?? 0, w.timeoutCloser, partitions);
  }
  return out;
}

export interface ChildPlan {
  /** Apply configurations (server-side apply) to send; `existing` is undefined for a child that does not exist yet. */
  apply: { existing?: Child; desired: Child }[];
  delete: Child[];
}

/** The sale's children as the caches hold them, by kind. */
export interface Children {
  deployments: V1Deployment[];
  services: V1Service[];
  disruptionBudgets: V1PodDisruptionBudget[];
}

/** Which Deployments, Services and PodDisruptionBudgets to apply or delete so the sale's data plane matches its spec. */
export function planChildren(sale: FlashSale, env: WorkerEnv, replicas: Record<string, number>, existing: Children): ChildPlan {
  const plan: ChildPlan = { apply: [], delete: [] };
  const wanted = plannedWorkloads(sale, replicas).map((p) => desiredDeployment(sale, p, env));
  const compare = (desired: Child[], actual: Child[]) => {
    const byName = new Map(actual.map((a) => [a.metadata?.name, a]));
    for (const d of desired) {
      const a = byName.get(d.metadata?.name);
      if (!a || needsApply(a, d)) plan.apply.push({ existing: a, desired: applyConfiguration(d) });
    }
    const names = new Set(desired.map((d) => d.metadata?.name));
    for (const a of actual) if (!names.has(a.metadata?.name)) plan.delete.push(a);
  };
  compare(wanted, existing.deployments);
  compare([desiredService(sale)], existing.services);
  compare([desiredDisruptionBudget(sale)], existing.disruptionBudgets);
  return plan;
}

/** The outcome of one step: done (with what it reports) or failed (reason + message). */
export type Step<T> = { ok: true; value: T } | { ok: false; reason: string; message: string };

export interface StatusInput {
  generation: number;
  now: string;
  invalid?: string[];
  deleting?: { reason: string; message: string };
  topics?: Step<{ name: string; partitions: number; purpose: string }[]>;
  schema?: Step<{ version: number }>;
  stock?: Step<{ id: string; stock: number; remaining: number }[]>;
  /** The switches as the stock step left them this round (spec.suspend; the SKUs whose switch is set); undefined when it could not. */
  suspension?: { sale: boolean; skus: string[] };
  /** The Deployments as observed after acting; `failed` when applying them failed. */
  workloads?: { deployments: V1Deployment[]; failed?: { reason: string; message: string }; blocked?: string };
}

/**
 * Sets a condition the way apimachinery's meta.SetStatusCondition does: lastTransitionTime moves
 * only when the status changes, so an unchanged condition compares equal to the stored one.
 */
export function setCondition(conditions: Condition[], next: Omit<Condition, 'lastTransitionTime'>, now: string): Condition[] {
  const prev = conditions.find((c) => c.type === next.type);
  const c: Condition = {
    type: next.type,
    status: next.status,
    reason: next.reason,
    message: next.message,
    lastTransitionTime: prev && prev.status === next.status && prev.lastTransitionTime ? prev.lastTransitionTime : now,
    observedGeneration: next.observedGeneration,
  };
  return prev ? conditions.map((x) => (x.type === next.type ? c : x)) : [...conditions, c];
}

/**
 * A Deployment's rollout as `kubectl rollout status` judges it: done once the controller observed
 * the latest generation and every replica is updated and available; stuck once the Deployment
 * controller reports `Progressing=False` with `ProgressDeadlineExceeded`.
 */
export function rolloutState(d: V1Deployment): { state: 'done' | 'progressing' | 'stuck' | 'failing'; message: string } {
  const name = d.metadata?.name ?? '';
  const want = d.spec?.replicas ?? 1;
  const st = d.status ?? {};
  // The ReplicaSet cannot create pods (a PriorityClass that does not exist, a namespace quota or
  // LimitRange, an admission webhook): the Deployment controller copies its ReplicaFailure here.
  // Said at once, with Kubernetes' reason, rather than as a rollout that never ends.
  const failure = (st.conditions ?? []).find((c) => c.type === 'ReplicaFailure' && c.status === 'True');
  if (failure) return { state: 'failing', message: `${name}: ${failure.message ?? failure.reason ?? 'cannot create pods'}` };
  const progressing = (st.conditions ?? []).find((c) => c.type === 'Progressing');
  if (progressing?.status === 'False' && progressing.reason === 'ProgressDeadlineExceeded') {
    return { state: 'stuck', message: `${name}: ${progressing.message ?? 'progress deadline exceeded'}` };
  }
  if ((st.observedGeneration ?? 0) < (d.metadata?.generation ?? 0)) return { state: 'progressing', message: `${name}: waiting for the Deployment controller to observe generation ${d.metadata?.generation}` };
  const updated = st.updatedReplicas ?? 0;
  const total = st.replicas ?? 0;
  const available = st.availableReplicas ?? 0;
  if (updated < want) return { state: 'progressing', message: `${name}: ${updated} of ${want} updated replicas` };
  if (total > updated) return { state: 'progressing', message: `${name}: ${total - updated} old replicas pending termination` };
  if (available < updated) return { state: 'progressing', message: `${name}: ${available} of ${updated} updated replicas available` };
  return { state: 'done', message: `${name}: ${available}/${want}` };
}

/**
 * The status of a paused sale: what was reported before, plus the ReconciliationPaused condition.
 * observedGeneration stays at the last generation acted on, so a spec edited meanwhile shows as not
 * observed.
 */
export function pausedStatus(previous: FlashSaleStatus | undefined, generation: number, now: string, deleting: boolean): FlashSaleStatus {
  const message = `${PAUSE_ANNOTATION} is "true": the operator changes nothing of this sale (topics, stock, schema, Deployments, replicas)${
    deleting ? `; its deletion waits until the annotation is removed (or ${FORCE_DELETE_ANNOTATION}: "true" drops the finalizer without cleanup)` : ''
  }`;
  const conditions = setCondition(previous?.conditions ?? [], { type: PAUSED_CONDITION, status: 'True', reason: 'AnnotationSet', message, observedGeneration: generation }, now);
  return { ...(previous ?? {}), conditions: orderConditions(conditions) };
}

/** The status to report, from the previous one and this round's observations. */
export function buildStatus(previous: FlashSaleStatus | undefined, input: StatusInput): FlashSaleStatus {
  const gen = input.generation;
  // A round that runs is not paused (pausedStatus added the condition).
  let conditions: Condition[] = (previous?.conditions ?? []).filter((c) => c.type !== PAUSED_CONDITION);
  const set = (type: ConditionType, ok: boolean, reason: string, message: string) => {
    conditions = setCondition(conditions, { type, status: ok ? 'True' : 'False', reason, message, observedGeneration: gen }, input.now);
  };
  const status: FlashSaleStatus = { ...(previous ?? {}), observedGeneration: gen };

  if (input.invalid) {
    const message = input.invalid.join('; ');
    for (const t of CONDITION_TYPES) {
      if (t === 'Ready') continue;
      if (!conditions.some((c) => c.type === t)) {
        conditions = setCondition(conditions, { type: t, status: 'Unknown', reason: 'InvalidSpec', message: 'not provisioned: the spec is invalid', observedGeneration: gen }, input.now);
      }
    }
    set('Ready', false, 'InvalidSpec', message);
    return { ...status, phase: 'Invalid', conditions };
  }

  if (input.topics) {
    if (input.topics.ok) {
      status.topics = input.topics.value;
      set('TopicsReady', true, 'TopicsReady', `${input.topics.value.length} topics with ${input.topics.value[0]?.partitions ?? 0} partitions`);
    } else set('TopicsReady', false, input.topics.reason, input.topics.message);
  }
  if (input.schema) {
    if (input.schema.ok) set('SchemaReady', true, 'SchemaReady', `schema at version ${input.schema.value.version}`);
    else set('SchemaReady', false, input.schema.reason, input.schema.message);
  }
  if (input.stock) {
    if (input.stock.ok) {
      // `suspended` only where set: a sale that suspends nothing keeps the status it had.
      const suspendedSkus = new Set(input.suspension?.skus ?? []);
      status.skus = input.stock.value.map((k) => (suspendedSkus.has(k.id) ? { id: k.id, stock: k.stock, suspended: true } : { id: k.id, stock: k.stock }));
      status.skuCount = input.stock.value.length;
      set('StockReady', true, 'StockReady', `${input.stock.value.length} SKUs seeded`);
    } else set('StockReady', false, input.stock.reason, input.stock.message);
  }
  // What Redis enforces, not what the spec asks: true only once every SKU's switch is set.
  if (input.suspension) status.suspended = input.suspension.sale;
  if (input.workloads) {
    const ds = [...input.workloads.deployments].sort((a, b) => (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''));
    status.workloads = ds.map((d) => ({ name: d.metadata?.name ?? '', replicas: d.spec?.replicas ?? 0, readyReplicas: d.status?.readyReplicas ?? 0 }));
    const rollouts = ds.map(rolloutState);
    const failing = rollouts.filter((r) => r.state === 'failing');
    const stuck = rollouts.filter((r) => r.state === 'stuck');
    const waiting = rollouts.filter((r) => r.state === 'progressing');
    if (input.workloads.failed) set('WorkloadsReady', false, input.workloads.failed.reason, input.workloads.failed.message);
    else if (ds.length === 0) set('WorkloadsReady', false, 'Blocked', input.workloads.blocked ?? 'no workloads yet');
    // Kubernetes keeps a ReplicaSet's first refusal in the condition while it goes on failing (the
    // cause may have changed since); its Events have each attempt's.
    else if (failing.length > 0) set('WorkloadsReady', false, 'ReplicaFailure', `pods cannot be created (each ReplicaSet's first refusal; its Events have the latest): ${failing.map((r) => r.message).join('; ')}`);
    else if (stuck.length > 0) set('WorkloadsReady', false, 'ProgressDeadlineExceeded', `rollout stuck: ${stuck.map((r) => r.message).join('; ')}`);
    else if (waiting.length > 0) set('WorkloadsReady', false, 'Progressing', `waiting for rollouts: ${waiting.map((r) => r.message).join(', ')}`);
    else set('WorkloadsReady', true, 'AllReplicasReady', `${ds.length} Deployments rolled out and available`);
  }
  // Per-partition lag and remaining stock change with every order: they are metrics
  // (kafka_consumergroup_*, flashsale_sku_remaining), not status, so selling writes no status.
  delete status.lag;
  delete status.remaining;

  if (input.deleting) {
    set('Ready', false, input.deleting.reason, input.deleting.message);
    return { ...status, phase: 'Deleting', conditions };
  }
  const notReady = CONDITION_TYPES.filter((t) => t !== 'Ready').flatMap((t): Condition[] => {
    const c = conditions.find((x) => x.type === t);
    if (!c) return [{ type: t, status: 'Unknown', reason: 'Pending', message: 'not checked yet' }];
    return c.status === 'True' ? [] : [c];
  });
  if (notReady.length === 0) set('Ready', true, 'Ready', 'topics, stock, schema and workloads are ready');
  else set('Ready', false, notReady[0]?.reason ?? 'Pending', notReady.map((c) => `${c.type}: ${c.message ?? c.reason ?? ''}`).join('; '));
  const failing = notReady.some((c) => c.status === 'False' && !['Progressing', 'Blocked'].includes(c.reason ?? ''));
  // Suspended is Ready with the emergency stop on: every part runs, only new reservations are refused.
  const phase = notReady.length === 0 ? (status.suspended ? 'Suspended' : 'Ready') : failing ? 'Degraded' : 'Provisioning';
  return { ...status, phase, conditions: orderConditions(conditions) };
}

function orderConditions(conditions: Condition[]): Condition[] {
  const rank = (t: string) => {
    const i = (CONDITION_TYPES as readonly string[]).indexOf(t);
    return i < 0 ? CONDITION_TYPES.length : i;
  };
  return [...conditions].sort((a, b) => rank(a.type) - rank(b.type));
}

/** Deep equality of JSON values (key order ignored), for "write status only if it changed". */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => jsonEqual(x, b[i]));
  }
  if (a && b && typeof a === 'object' && typeof b === 'object') {
    const ka = Object.keys(a).filter((k) => (a as Record<string, unknown>)[k] !== undefined);
    const kb = Object.keys(b).filter((k) => (b as Record<string, unknown>)[k] !== undefined);
    return ka.length === kb.length && ka.every((k) => jsonEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
  }
  return false;
}
