// One reconcile of one FlashSale: gather (the sale and its children from the informer caches, lag)
// → decide (pure, decide.ts) → act (provision topics/schema/stock, server-side apply of the
// children under one field manager) → write status only if it changed. A round with nothing to
// change makes no write at all, to the API or elsewhere, and no read of the API either.
import type { V1Deployment, V1PodDisruptionBudget, V1Service } from '@kubernetes/client-node';
import type { MysqlConfig } from '../config.ts';
import { deleteSaleData, ensureSchema, ensureStock, ensureTopics, NotSupportedError, ordersDrained, RebuildBlockedError, REBUILD_GRACE_MS, soldUnits, type SuspensionOutcome, type TopicsOutcome } from '../dataplane/provision.ts';
import { StockStore } from '../dataplane/stock.ts';
import type { KafkaGateway } from '../infra/kafka.ts';
import { latestSchemaVersion, schemaVersion, type Pool } from '../infra/mysql.ts';
import type { Redis } from '../infra/redis.ts';
import type { Logger } from '../log.ts';
import type { LagSnapshot } from '../metrics/lag.ts';
import { forgetSale, setSalePhase, setSkuStock, type OperatorMetrics, type SalePhase } from '../metrics/operator.ts';
import type { Condition, FlashSale, FlashSaleStatus } from '../spec/flashsale.ts';
import { saleNames } from '../spec/names.ts';
import type { Clock } from './clock.ts';
import type { EventSink } from './events.ts';
import { buildStatus, decide, FINALIZER, FORCE_DELETE_ANNOTATION, jsonEqual, PAUSE_ANNOTATION, PAUSED_CONDITION, pausedStatus, planChildren, recommendations, type Children, type LagObservation, type RawSale, type Step } from './decide.ts';
import { APPLY_PATCH, applyQuery, isConflict, isNotFound, paths, type KubeClient } from './kube.ts';
import type { Stabilizer } from './scaling.ts';
import type { Child, WorkerEnv } from './workloads.ts';

/** What the reconciler reads: the informers' caches (never a GET per reconcile). */
export interface ReconcileCache {
  sale(namespace: string, name: string): RawSale | undefined;
  /** Deployments / Services / PodDisruptionBudgets of the namespace whose controller owner reference is the sale `uid`. */
  deployments(namespace: string, uid: string): V1Deployment[];
  services(namespace: string, uid: string): V1Service[];
  disruptionBudgets(namespace: string, uid: string): V1PodDisruptionBudget[];
}

export interface ReconcilerDeps {
  client: KubeClient;
  cache: ReconcileCache;
  kafka: Pick<KafkaGateway, 'admin'>;
  redis: Redis;
  pool: Pool;
  mysql: MysqlConfig;
  env: WorkerEnv;
  lag: { snapshot(flashsale: string): LagSnapshot };
  stabilizer: Stabilizer;
  clock: Clock;
  metrics?: OperatorMetrics;
  logger: Logger;
  /** Where Events go (an EventRecorder: queued, sent by a loop of its own). */
  events: EventSink;
  /** Bound of one provisioning step, so an unreachable system fails the round instead of hanging it. */
  stepTimeoutMs: number;
  /** Valid sales are looked at again this often (lag-based scaling, drift repair), plus jitter. */
  requeueAfterMs: number;
  /** Requeues are spread by up to this fraction of requeueAfterMs (default 0.1), so 500 sales do not reconcile in lockstep. */
  requeueJitter?: number;
  random?: () => number;
  /**
   * How long a SKU's keys must have been missing before it is rebuilt from MySQL (besides the orders
   * topic being drained): API replicas may still hold orders reserved before Redis lost the keys in
   * their send buffer or producer retries. Not applied to a sale whose orders topic was never written.
   */
  rebuildGraceMs?: number;
  /**
   * How long a sale's schema and topics, found in place for its current generation, are trusted
   * before they are checked again (default 60 s); a spec change checks them at once.
   */
  externalRecheckMs?: number;
  /** Called with each valid sale being provisioned, and with undefined when a sale is gone. */
  onSale?: (key: string, sale: FlashSale | undefined) => void;
}

/** A failed round that should be retried with backoff (after its status was written). */
export class RetryableError extends Error {
  override name = 'RetryableError';
}

export interface ReconcileOutcome {
  result: 'success' | 'invalid' | 'requeue';
  requeueAfterMs?: number;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms}ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

function isMysqlError(err: unknown): boolean {
  const e = err as Record<string, unknown>;
  return typeof e === 'object' && e !== null && ('sqlState' in e || 'sqlMessage' in e || 'fatal' in e);
}

/** Typed errors → condition reasons. */
export function reasonOf(err: unknown, system: 'kafka' | 'redis' | 'mysql' | 'stock'): string {
  if (err instanceof NotSupportedError) return 'NotSupported';
  if (err instanceof RebuildBlockedError) return err.reason;
  if (system === 'kafka') return 'KafkaUnavailable';
  if (system === 'mysql') return 'MySQLUnavailable';
  if (system === 'redis') return 'RedisUnavailable';
  return isMysqlError(err) ? 'MySQLUnavailable' : 'RedisUnavailable';
}

const UNAVAILABLE = new Set(['KafkaUnavailable', 'RedisUnavailable', 'MySQLUnavailable', 'ApplyFailed']);

export class Reconciler {
  private readonly d: ReconcilerDeps;
  /** When this leader first saw a sale's stock keys missing (see rebuildGraceMs). */
  private readonly stockMissingSince = new Map<string, number>();
  /** Per sale: the generation whose schema and topics were last found in place, and when. */
  private readonly verified = new Map<string, { generation: number; at: number; schema: { version: number }; topics: TopicsOutcome['topics'] }>();

  constructor(deps: ReconcilerDeps) {
    this.d = deps;
  }

  async reconcile(key: string): Promise<ReconcileOutcome> {
    const [namespace, name] = key.split('/') as [string, string];
    const raw = this.d.cache.sale(namespace, name);
    if (!raw) {
      this.forget(key);
      return { result: 'success' };
    }
    const decision = decide(raw);
    if (decision.action !== 'paused' && decision.action !== 'ignore') {
      // The status this round writes drops the condition (buildStatus).
      if ((raw.status?.conditions ?? []).some((c) => c.type === PAUSED_CONDITION)) this.event(raw, 'Normal', 'ReconciliationResumed', `${PAUSE_ANNOTATION} removed: the operator reconciles this sale again`);
      if (this.d.metrics) this.d.metrics.salePaused.set({ flashsale: key }, 0);
    }
    switch (decision.action) {
      case 'ignore':
        return { result: 'success' };
      case 'invalid': {
        const status = buildStatus(raw.status, { generation: raw.metadata.generation ?? 0, now: this.now(), invalid: decision.problems });
        await this.writeStatus(raw, status);
        return { result: 'invalid' };
      }
      case 'paused':
        return this.paused(raw, key, decision.sale, decision.deleting);
      case 'finalize':
        return this.finalize(raw, key, decision.cleanup, decision.sale);
      case 'provision':
        return this.provision(raw, key, decision.sale, decision.addFinalizer);
    }
  }

  /**
   * PAUSE_ANNOTATION: no topic, key, table, child, replica count or finalizer is touched; only the
   * status says so. The sale's lag and phase metrics go on (reads). No requeue: removing the
   * annotation is an update the informer delivers.
   */
  private async paused(raw: RawSale, key: string, sale: FlashSale | undefined, deleting: boolean): Promise<ReconcileOutcome> {
    if (sale) this.d.onSale?.(key, sale);
    const wasPaused = (raw.status?.conditions ?? []).some((c) => c.type === PAUSED_CONDITION);
    const status = pausedStatus(raw.status, raw.metadata.generation ?? 0, this.now(), deleting);
    await this.writeStatus(raw, status);
    if (!wasPaused) this.event(raw, 'Normal', 'ReconciliationPaused', status.conditions?.find((c) => c.type === PAUSED_CONDITION)?.message ?? 'paused');
    if (this.d.metrics) this.d.metrics.salePaused.set({ flashsale: key }, 1);
    return { result: 'success' };
  }

  private now(): string {
    return new Date(this.d.clock.now()).toISOString().replace(/\.\d{3}Z$/, 'Z');
  }

  private forget(key: string): void {
    this.verified.delete(key);
    this.d.stabilizer.forget(`${key}/`);
    this.d.onSale?.(key, undefined);
    if (this.d.metrics) void forgetSale(this.d.metrics, key);
  }

  private async finalize(raw: RawSale, key: string, cleanup: 'delete-data' | 'retain' | 'force', sale?: FlashSale): Promise<ReconcileOutcome> {
    if (cleanup === 'force') {
      this.event(raw, 'Warning', 'ForceDeleted', `finalizer removed by the ${FORCE_DELETE_ANNOTATION} annotation; the sale's topics and Redis keys were not cleaned up`);
    } else if (cleanup === 'delete-data' && sale) {
      // Workers stop first: a running api or order writer would write Redis keys (and, with topic
      // auto-creation, topics) back while they are being deleted. Foreground deletion: a Deployment
      // is gone from the API only once its ReplicaSets and pods are; its delete event requeues us.
      const workers = this.d.cache.deployments(raw.metadata.namespace, raw.metadata.uid ?? '');
      if (workers.length > 0) {
        for (const d of workers) {
          if (d.metadata?.deletionTimestamp) continue;
          try {
            await this.d.client.request('DELETE', `${paths.deployment(raw.metadata.namespace, d.metadata?.name ?? '')}?propagationPolicy=Foreground`);
          } catch (err) {
            if (!isNotFound(err)) throw err;
          }
        }
        return { result: 'requeue', requeueAfterMs: 2000 };
      }
      try {
        const admin = await withTimeout(this.d.kafka.admin(), this.d.stepTimeoutMs, 'Kafka');
        await withTimeout(deleteSaleData(admin, this.d.redis, sale), this.d.stepTimeoutMs, 'cleanup');
        // Delay topics of buckets removed from the spec earlier are not in the plan: delete by prefix.
        const prefix = saleNames(sale.metadata).topics.prefix;
        const leftovers = (await withTimeout(admin.listTopics(), this.d.stepTimeoutMs, 'Kafka')).filter((t) => t.startsWith(prefix));
        if (leftovers.length > 0) await withTimeout(admin.deleteTopics(leftovers), this.d.stepTimeoutMs, 'cleanup');
      } catch (err) {
        const reason = /redis|max retries/i.test(String((err as Error).message)) ? 'RedisUnavailable' : 'KafkaUnavailable';
        const message = `cannot delete the sale's data, the finalizer stays until it can (or set annotation flashsale.dev/force-delete: "true"): ${(err as Error).message}`;
        const status = buildStatus(raw.status, { generation: raw.metadata.generation ?? 0, now: this.now(), deleting: { reason, message } });
        if (await this.writeStatus(raw, status)) this.event(raw, 'Warning', reason, message);
        throw new RetryableError(message);
      }
      this.event(raw, 'Normal', 'DataDeleted', "deleted the sale's Kafka topics and Redis keys (orders in MySQL are kept)");
    }
    const finalizers = (raw.metadata.finalizers ?? []).filter((f) => f !== FINALIZER);
    try {
      await this.d.client.request('PATCH', paths.flashsale(raw.metadata.namespace, raw.metadata.name), { metadata: { finalizers, resourceVersion: raw.metadata.resourceVersion } }, 'application/merge-patch+json');
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    this.forget(key);
    return { result: 'success' };
  }

  private async provision(raw: RawSale, key: string, sale: FlashSale, addFinalizer: boolean): Promise<ReconcileOutcome> {
    const { namespace, name } = raw.metadata;
    if (addFinalizer) {
      const updated = await this.d.client.request<RawSale>(
        'PATCH',
        paths.flashsale(namespace, name),
        { metadata: { finalizers: [...(raw.metadata.finalizers ?? []), FINALIZER], resourceVersion: raw.metadata.resourceVersion } },
        'application/merge-patch+json',
      );
      raw = updated;
      sale = { ...sale, metadata: { ...sale.metadata, resourceVersion: updated.metadata.resourceVersion, finalizers: updated.metadata.finalizers } };
    }
    this.d.onSale?.(key, sale);
    const timed = async <T>(what: string, run: () => Promise<T>): Promise<T> => {
      const started = this.d.clock.monotonic();
      try {
        return await run();
      } finally {
        this.d.metrics?.reconcileStepDuration.labels(what).observe((this.d.clock.monotonic() - started) / 1000);
      }
    };
    const step = async <T>(what: string, system: 'kafka' | 'redis' | 'mysql' | 'stock', run: () => Promise<T>): Promise<Step<T>> => {
      try {
        return { ok: true, value: await timed(what, () => withTimeout(run(), this.d.stepTimeoutMs, what)) };
      } catch (err) {
        this.d.logger.warn({ sale: key, step: what, err: (err as Error).message }, 'provisioning step failed');
        return { ok: false, reason: reasonOf(err, system), message: (err as Error).message };
      }
    };
    // Gather + act on the external systems. Each ensure* checks before it changes anything, so a
    // round with nothing to do only reads.
    // One cheap query when the schema is current; the locked migration only when it is not.
    // The schema and the topics are checked again only when the spec changed or `externalRecheckMs`
    // passed: a sale being created is reconciled again for each status change of its Deployments,
    // and with 500 sales those repeated checks (each listing the cluster's topics) were most of the
    // work. The stock is checked every round (a cheap read that notices a Redis that lost the sale).
    const generation = raw.metadata.generation ?? 0;
    const known = this.verified.get(key);
    const fresh = known !== undefined && known.generation === generation && this.d.clock.now() - known.at < (this.d.externalRecheckMs ?? 60_000);
    const schema = fresh
      ? ({ ok: true, value: known.schema } as const)
      : await step('schema', 'mysql', async () => {
          const version = await schemaVersion(this.d.pool).catch(() => 0);
          return { version: version >= latestSchemaVersion ? version : (await ensureSchema(this.d.mysql)).version };
        });
    const topics = fresh ? ({ ok: true, value: known.topics } as const) : await step('topics', 'kafka', async () => (await ensureTopics(await this.d.kafka.admin(), sale)).topics);
    if (!fresh && schema.ok && topics.ok) this.verified.set(key, { generation, at: this.d.clock.now(), schema: schema.value, topics: topics.value });
    else if (!fresh) this.verified.delete(key);
    // spec.suspend as set in Redis this round (even when a later part of the stock step refused).
    let suspension: SuspensionOutcome | undefined;
    const stock = await step('stock', 'stock', async () => {
      const admin = await this.d.kafka.admin();
      const drained = async () => {
        const now = this.d.clock.now();
        const since = this.stockMissingSince.get(key) ?? now;
        this.stockMissingSince.set(key, since);
        const written = (await admin.topicOffsets(saleNames(sale.metadata).topics.orders)).some((p) => BigInt(p.high) > 0n);
        if (written && now - since < (this.d.rebuildGraceMs ?? REBUILD_GRACE_MS)) return false;
        return ordersDrained(admin, sale);
      };
      const out = await ensureStock(new StockStore(this.d.redis, sale), this.d.pool, sale, key, {
        ordersDrained: drained,
        onSuspension: (s) => {
          suspension = s;
          if (s.turnedOn.length > 0) this.event(raw, 'Warning', 'Suspended', `new orders refused (${s.suspended ? 'spec.suspend' : 'spec.skus[].suspend'}) for ${s.turnedOn.join(', ')}`);
          if (s.turnedOff.length > 0) this.event(raw, 'Normal', 'Resumed', `new orders accepted again for ${s.turnedOff.join(', ')}`);
        },
      });
      this.stockMissingSince.delete(key);
      return out.skus;
    });

    // Children from the caches; what this round applies replaces them for the status below.
    const uid = raw.metadata.uid ?? '';
    // The items of a LIST carry no kind (watch events do), so a cached child may have none: each gets
    // its own here, and the act step below finds its list and its path by kind.
    const ofKind = <T extends Child>(kind: string, list: T[]): T[] => list.map((o) => (o.kind ? o : { ...o, kind }));
    const children: Children = {
      deployments: ofKind('Deployment', this.d.cache.deployments(namespace, uid)),
      services: ofKind('Service', this.d.cache.services(namespace, uid)),
      disruptionBudgets: ofKind('PodDisruptionBudget', this.d.cache.disruptionBudgets(namespace, uid)),
    };
    // Where a child of each kind is cached for this round and where the apiserver serves it.
    const kinds = {
      Deployment: { list: children.deployments as Child[], path: paths.deployment },
      Service: { list: children.services as Child[], path: paths.service },
      PodDisruptionBudget: { list: children.disruptionBudgets as Child[], path: paths.disruptionBudget },
    };
    const kindOf = (o: Child) => kinds[o.kind as keyof typeof kinds];

    const lag = this.lagOf(key);
    let failed: { reason: string; message: string } | undefined;
    let blocked: string | undefined;
    if (schema.ok && topics.ok && stock.ok) {
      const recs = recommendations(sale, lag, sale.spec.kafka.partitions);
      const replicas: Record<string, number> = {};
      for (const [workload, rec] of Object.entries(recs)) {
        const current = children.deployments.find((d) => d.metadata?.name === workload)?.spec?.replicas;
        replicas[workload] = this.d.stabilizer.stabilize(`${key}/${workload}`, rec, current);
      }
      const plan = planChildren(sale, this.d.env, replicas, children);
      const itemPath = (o: Child) => kindOf(o).path(namespace, o.metadata?.name ?? '');
      // One Event for the children a round creates (every child of a new sale): an Event is a write
      // the apiserver stores, and 500 sales created at once made 2,500 of them.
      const created: string[] = [];
      try {
        for (const { existing, desired } of plan.apply) {
          // Server-side apply: creates or updates exactly the fields the operator sets.
          const applied = await timed('apply', () => this.d.client.request<Child>('PATCH', itemPath(desired) + applyQuery, desired, APPLY_PATCH));
          const list = kindOf(desired).list;
          const i = list.findIndex((o) => o.metadata?.name === desired.metadata?.name);
          if (i >= 0) list[i] = applied;
          else list.push(applied);
          const before = (existing as V1Deployment | undefined)?.spec?.replicas;
          const after = (desired as V1Deployment).spec?.replicas;
          if (!existing) created.push(`${desired.kind} ${desired.metadata?.name}`);
          else if (desired.kind === 'Deployment' && before !== after) this.event(raw, 'Normal', 'Scaled', `scaled ${desired.metadata?.name} from ${before} to ${after} replicas`);
          else this.event(raw, 'Normal', 'Updated', `updated ${desired.kind} ${desired.metadata?.name}`);
        }
        for (const o of plan.delete) {
          try {
            await this.d.client.request('DELETE', itemPath(o));
          } catch (err) {
            if (!isNotFound(err)) throw err;
          }
          const list = kindOf(o).list;
          list.splice(list.indexOf(o), 1);
          this.event(raw, 'Normal', 'Deleted', `deleted ${o.kind} ${o.metadata?.name} (no longer in the spec)`);
        }
      } catch (err) {
        failed = { reason: isConflict(err) ? 'Conflict' : 'ApplyFailed', message: (err as Error).message };
      }
      if (created.length > 0) this.event(raw, 'Normal', 'Created', `created ${created.join(', ')}`);
    } else {
      blocked = 'workloads wait for topics, schema and stock';
    }

    const status = buildStatus(raw.status, {
      generation: raw.metadata.generation ?? 0,
      now: this.now(),
      schema,
      topics,
      stock,
      suspension: suspension && { sale: suspension.suspended, skus: suspension.skus },
      workloads: { deployments: children.deployments, failed, blocked },
    });
    await timed('status', () => this.writeStatus(raw, status));
    if (this.d.metrics) {
      setSalePhase(this.d.metrics, key, (status.phase ?? 'Pending') as SalePhase);
      // Sold comes from MySQL, not from stock − remaining: the stock-drift alert compares the two.
      // Remaining is a metric only (not status): it changes with every order.
      if (stock.ok) {
        // Bounded like every step: a MySQL that stalls reads held the whole reconcile (and the sale's
        // lag scaling) for as long as the stall lasted. Without an answer the metric falls back to
        // stock − remaining for this round.
        const sold = await timed('sold', () => withTimeout(soldUnits(this.d.pool, key), this.d.stepTimeoutMs, 'sold units').catch(() => null));
        for (const s of stock.value) {
          const units = sold ? (sold.get(s.id) ?? 0) : s.stock - s.remaining;
          setSkuStock(this.d.metrics, key, { id: s.id, stock: s.stock, remaining: s.remaining, sold: units });
        }
      }
    }
    const unavailable = [schema, topics, stock].find((s): s is { ok: false; reason: string; message: string } => !s.ok && UNAVAILABLE.has(s.reason));
    if (unavailable || failed) throw new RetryableError(unavailable?.message ?? failed?.message ?? 'retry');
    const jitter = this.d.requeueJitter ?? 0.1;
    return { result: 'requeue', requeueAfterMs: Math.round(this.d.requeueAfterMs * (1 + jitter * (this.d.random ?? Math.random)())) };
  }

  private lagOf(key: string): LagObservation[] {
    return this.d.lag
      .snapshot(key)
      .groups.map((g) => ({ group: g.group, topic: g.topic, lag: g.lag, overdue: g.overdue }))
      .sort((a, b) => a.group.localeCompare(b.group));
  }

  /** Writes status when it differs from the stored one; emits an Event per condition that turned bad or Ready. */
  private async writeStatus(raw: RawSale, status: FlashSaleStatus): Promise<boolean> {
    if (jsonEqual(raw.status ?? {}, status)) return false;
    const { namespace, name } = raw.metadata;
    await this.d.client.request('PUT', `${paths.flashsale(namespace, name)}/status`, { ...raw, status });
    for (const c of status.conditions ?? []) {
      const before = raw.status?.conditions?.find((p: Condition) => p.type === c.type);
      if (before && before.status === c.status && before.reason === c.reason && before.message === c.message) continue;
      if (c.type === 'Ready' && c.status === 'True') this.event(raw, 'Normal', 'Ready', c.message ?? 'ready');
      else if (c.status === 'False' && !['Progressing', 'Blocked', 'Pending'].includes(c.reason ?? '')) {
        if (c.type === 'Ready' && status.conditions?.some((x) => x.type !== 'Ready' && x.status === 'False' && x.reason === c.reason)) continue;
        this.event(raw, 'Warning', c.reason ?? 'Failed', `${c.type}: ${c.message ?? ''}`);
      }
    }
    return true;
  }

  /** A core/v1 Event on the FlashSale, sent off the reconcile path (events.ts); never fails the round. */
  private event(raw: RawSale, type: 'Normal' | 'Warning', reason: string, message: string): void {
    this.d.events.record(raw, type, reason, message);
  }

}

