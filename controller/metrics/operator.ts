// Metrics of the operator itself, one definition each; the controller imports these and sets them.
// Names follow Prometheus conventions (base units, `_total` counters); `flashsale` = namespace/name.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { oncePerRegistry } from './registry.ts';

/** Every phase a FlashSale can be in (the CRD's status.phase enum). */
export const SALE_PHASES = ['Pending', 'Provisioning', 'Ready', 'Suspended', 'Degraded', 'Invalid', 'Deleting'] as const;
export type SalePhase = (typeof SALE_PHASES)[number];

/** Outcomes of one reconcile: success, error (retried with backoff), invalid (spec refused), requeue (waiting on something). */
export type ReconcileResult = 'success' | 'error' | 'invalid' | 'requeue';

/** The `controller` label of the controller-runtime metrics and the `name` of the work queue. */
export const CONTROLLER_NAME = 'flashsale';

/** controller-runtime's reconcile_time_seconds buckets (pkg/internal/controller/metrics), so Go-operator dashboards read ours alike. */
export const RECONCILE_TIME_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5,
  5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60,
];

/** client-go's work-queue latency buckets: prometheus.ExponentialBuckets(10e-9, 10, 12), 10 ns to 1000 s. */
export const WORKQUEUE_BUCKETS = Array.from({ length: 12 }, (_, i) => Number((1e-8 * 10 ** i).toPrecision(1)));

/** The operator metrics registered on `registry` (created once per registry). */
export const operatorMetrics = oncePerRegistry(build);

export type OperatorMetrics = ReturnType<typeof operatorMetrics>;

function build(registry: Registry) {
  const registers = [registry];
  const metrics = {
    reconciles: new Counter({
      name: 'flashsale_operator_reconciles_total',
      help: 'Reconciles of FlashSale resources, by result (success, error, invalid, requeue).',
      labelNames: ['result'] as const,
      registers,
    }),
    reconcileDuration: new Histogram({
      name: 'flashsale_operator_reconcile_duration_seconds',
      help: 'Duration of one reconcile, by result.',
      labelNames: ['result'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    reconcileStepDuration: new Histogram({
      name: 'flashsale_operator_reconcile_step_duration_seconds',
      help: 'Duration of one step of a reconcile (schema, topics, stock, children, status), to tell which external system a slow reconcile waited on.',
      labelNames: ['step'] as const,
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    workQueueDepth: new Gauge({
      name: 'flashsale_operator_workqueue_depth',
      help: 'FlashSale keys waiting in the work queue (not counting the ones being reconciled).',
      registers,
    }),
    leader: new Gauge({
      name: 'flashsale_operator_leader',
      help: '1 when this replica holds the leader Lease and reconciles, 0 when it stands by.',
      registers,
    }),
    salePhase: new Gauge({
      name: 'flashsale_sale_phase',
      help: 'State set of each FlashSale: 1 for its current status.phase, 0 for the other phases.',
      labelNames: ['flashsale', 'phase'] as const,
      registers,
    }),
    salePaused: new Gauge({
      name: 'flashsale_sale_reconcile_paused',
      help: '1 while the FlashSale has the annotation flashsale.dev/pause-reconciliation: "true" (the operator changes nothing of it), else 0.',
      labelNames: ['flashsale'] as const,
      registers,
    }),
    skuStock: new Gauge({
      name: 'flashsale_sku_stock',
      help: 'Units of a SKU on sale (spec.skus[].stock as applied to Redis).',
      labelNames: ['flashsale', 'sku'] as const,
      registers,
    }),
    skuRemaining: new Gauge({
      name: 'flashsale_sku_remaining',
      help: 'Units of a SKU not yet reserved, as the operator last read from Redis.',
      labelNames: ['flashsale', 'sku'] as const,
      registers,
    }),
    skuSold: new Gauge({
      name: 'flashsale_sku_sold',
      help: 'Units of a SKU held by UNPAID or PAID orders in MySQL. Once quiet, remaining + sold = stock.',
      labelNames: ['flashsale', 'sku'] as const,
      registers,
    }),
    // The same facts under controller-runtime's and client-go's names and labels, so dashboards
    // and alerts written for Go operators work unchanged.
    crReconcileTotal: new Counter({
      name: 'controller_runtime_reconcile_total',
      help: 'Total number of reconciliations per controller',
      labelNames: ['controller', 'result'] as const,
      registers,
    }),
    crReconcileErrors: new Counter({
      name: 'controller_runtime_reconcile_errors_total',
      help: 'Total number of reconciliation errors per controller',
      labelNames: ['controller'] as const,
      registers,
    }),
    crReconcileTime: new Histogram({
      name: 'controller_runtime_reconcile_time_seconds',
      help: 'Length of time per reconciliation per controller',
      labelNames: ['controller'] as const,
      buckets: RECONCILE_TIME_BUCKETS,
      registers,
    }),
    crMaxConcurrentReconciles: new Gauge({
      name: 'controller_runtime_max_concurrent_reconciles',
      help: 'Maximum number of concurrent reconciles per controller',
      labelNames: ['controller'] as const,
      registers,
    }),
    crActiveWorkers: new Gauge({
      name: 'controller_runtime_active_workers',
      help: 'Number of currently used workers per controller',
      labelNames: ['controller'] as const,
      registers,
    }),
    wqDepth: new Gauge({
      name: 'workqueue_depth',
      help: 'Current depth of workqueue by workqueue and priority',
      labelNames: ['name', 'controller', 'priority'] as const,
      registers,
    }),
    wqAdds: new Counter({
      name: 'workqueue_adds_total',
      help: 'Total number of adds handled by workqueue',
      labelNames: ['name', 'controller'] as const,
      registers,
    }),
    wqQueueDuration: new Histogram({
      name: 'workqueue_queue_duration_seconds',
      help: 'How long in seconds an item stays in workqueue before being requested',
      labelNames: ['name', 'controller'] as const,
      buckets: WORKQUEUE_BUCKETS,
      registers,
    }),
    wqWorkDuration: new Histogram({
      name: 'workqueue_work_duration_seconds',
      help: 'How long in seconds processing an item from workqueue takes.',
      labelNames: ['name', 'controller'] as const,
      buckets: WORKQUEUE_BUCKETS,
      registers,
    }),
    wqRetries: new Counter({
      name: 'workqueue_retries_total',
      help: 'Total number of retries handled by workqueue',
      labelNames: ['name', 'controller'] as const,
      registers,
    }),
    wqUnfinished: new Gauge({
      name: 'workqueue_unfinished_work_seconds',
      help:
        "How many seconds of work has been done that is in progress and hasn't been observed by work_duration. " +
        'Large values indicate stuck threads. One can deduce the number of stuck threads by observing the rate at which this increases.',
      labelNames: ['name', 'controller'] as const,
      registers,
      collect() {
        for (const q of queues) this.set(q.labels, q.unfinishedSeconds());
      },
    }),
    wqLongestRunning: new Gauge({
      name: 'workqueue_longest_running_processor_seconds',
      help: 'How many seconds has the longest running processor for workqueue been running.',
      labelNames: ['name', 'controller'] as const,
      registers,
      collect() {
        for (const q of queues) this.set(q.labels, q.longestRunningSeconds());
      },
    }),
    leaderElectionMasterStatus: new Gauge({
      name: 'leader_election_master_status',
      help:
        "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. 'name' is the string used to identify the lease. Please make sure to group by name.",
      labelNames: ['name'] as const,
      registers,
    }),
  };
  // Work queues whose in-flight items the two gauges above read at scrape time.
  const queues = new Set<QueueMetrics>();
  return { ...metrics, queues };
}

/**
 * client-go's work-queue metrics for one queue (the hooks WorkQueue calls): adds and depth on add,
 * queue latency on get, work duration on done, retries on a rate-limited re-add; unfinished work
 * and the longest running processor are computed from the in-flight items when scraped.
 * `now` is a monotonic millisecond clock.
 */
export class QueueMetrics {
  readonly labels: { name: string; controller: string };
  private readonly m: OperatorMetrics;
  private readonly now: () => number;
  private readonly addedAt = new Map<string, number>();
  private readonly startedAt = new Map<string, number>();

  constructor(m: OperatorMetrics, name: string, now: () => number) {
    this.m = m;
    this.now = now;
    this.labels = { name, controller: name };
    m.queues.add(this);
    // Present from the start (as client-go's queue creates them), not only after the first add.
    m.wqDepth.set({ ...this.labels, priority: '' }, 0);
    m.wqAdds.inc(this.labels, 0);
    m.wqRetries.inc(this.labels, 0);
  }

  /** A key became dirty (queued, or queued again while being processed). */
  add(key: string): void {
    this.m.wqAdds.inc(this.labels);
    this.m.wqDepth.inc({ ...this.labels, priority: '' });
    if (!this.addedAt.has(key)) this.addedAt.set(key, this.now());
  }

  /** A worker took the key. */
  get(key: string): void {
    const t = this.now();
    this.m.wqDepth.dec({ ...this.labels, priority: '' });
    this.startedAt.set(key, t);
    const added = this.addedAt.get(key);
    if (added !== undefined) {
      this.m.wqQueueDuration.observe(this.labels, (t - added) / 1000);
      this.addedAt.delete(key);
    }
  }

  /** The worker finished the key. */
  done(key: string): void {
    const started = this.startedAt.get(key);
    if (started !== undefined) {
      this.m.wqWorkDuration.observe(this.labels, (this.now() - started) / 1000);
      this.startedAt.delete(key);
    }
  }

  /** A failed key was re-added with backoff. */
  retry(): void {
    this.m.wqRetries.inc(this.labels);
  }

  /** Forget keys that will never be got (queue shut down). */
  shutdown(): void {
    this.m.queues.delete(this);
  }

  unfinishedSeconds(): number {
    const t = this.now();
    let sum = 0;
    for (const s of this.startedAt.values()) sum += t - s;
    return sum / 1000;
  }

  longestRunningSeconds(): number {
    const t = this.now();
    let max = 0;
    for (const s of this.startedAt.values()) max = Math.max(max, t - s);
    return max / 1000;
  }
}

/** What controller-runtime sets when a controller starts: its worker count, and every reconcile_total series at 0. */
export function initControllerMetrics(m: OperatorMetrics, workers: number): void {
  const controller = CONTROLLER_NAME;
  m.crMaxConcurrentReconciles.set({ controller }, workers);
  m.crActiveWorkers.set({ controller }, 0);
  for (const result of ['success', 'error', 'requeue', 'requeue_after']) m.crReconcileTotal.inc({ controller, result }, 0);
  m.crReconcileErrors.inc({ controller }, 0);
}

/** A worker started (+1) or finished (-1) a reconcile. */
export function activeWorkers(m: OperatorMetrics, delta: 1 | -1): void {
  m.crActiveWorkers.inc({ controller: CONTROLLER_NAME }, delta);
}

/** Leadership under both names: flashsale_operator_leader and leader_election_master_status{name=<lease>}. */
export function setLeader(m: OperatorMetrics, leaseName: string, leading: boolean): void {
  m.leader.set(leading ? 1 : 0);
  m.leaderElectionMasterStatus.set({ name: leaseName }, leading ? 1 : 0);
}

/**
 * Records one reconcile of `seconds` with its result, under our names and controller-runtime's:
 * there the result is error, requeue, requeue_after (a success that asked to be reconciled again
 * after a delay) or success; an invalid spec is a reconcile that succeeded in reporting it.
 */
export function observeReconcile(m: OperatorMetrics, result: ReconcileResult, seconds: number, opts: { requeueAfter?: boolean } = {}): void {
  m.reconciles.inc({ result });
  m.reconcileDuration.observe({ result }, seconds);
  const controller = CONTROLLER_NAME;
  const cr = result === 'error' ? 'error' : result === 'requeue' ? 'requeue' : opts.requeueAfter ? 'requeue_after' : 'success';
  m.crReconcileTotal.inc({ controller, result: cr });
  if (cr === 'error') m.crReconcileErrors.inc({ controller });
  m.crReconcileTime.observe({ controller }, seconds);
}

/** Sets the state set of a sale: its phase 1, every other phase 0 (so `== 1` selects exactly one). */
export function setSalePhase(m: OperatorMetrics, flashsale: string, phase: SalePhase): void {
  for (const p of SALE_PHASES) m.salePhase.set({ flashsale, phase: p }, p === phase ? 1 : 0);
}

/** Stock figures of one SKU. */
export function setSkuStock(m: OperatorMetrics, flashsale: string, sku: { id: string; stock: number; remaining: number; sold: number }): void {
  const labels = { flashsale, sku: sku.id };
  m.skuStock.set(labels, sku.stock);
  m.skuRemaining.set(labels, sku.remaining);
  m.skuSold.set(labels, sku.sold);
}

/** Removes every series of a deleted sale (phase and SKUs), so dashboards and alerts forget it. */
export async function forgetSale(m: OperatorMetrics, flashsale: string): Promise<void> {
  for (const g of [m.salePhase, m.salePaused, m.skuStock, m.skuRemaining, m.skuSold] as Gauge<'flashsale' | 'phase' | 'sku'>[]) {
    // remove() needs the exact label set; the gauge's current values list the ones that exist.
    for (const { labels } of (await g.get()).values) {
      if (labels.flashsale === flashsale) g.remove(labels as Record<string, string>);
    }
  }
}
