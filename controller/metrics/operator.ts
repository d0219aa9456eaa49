// Metrics of the operator itself, one definition each; the controller imports these and sets them.
// Names follow Prometheus conventions (base units, `_total` counters); `flashsale` = namespace/name.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { oncePerRegistry } from './registry.ts';

/** Every phase a FlashSale can be in (the CRD's status.phase enum). */
export const SALE_PHASES = ['Pending', 'Provisioning', 'Ready', 'Degraded', 'Invalid', 'Deleting'] as const;
export type SalePhase = (typeof SALE_PHASES)[number];

/** Outcomes of one reconcile: success, error (retried with backoff), invalid (spec refused), requeue (waiting on something). */
export type ReconcileResult = 'success' | 'error' | 'invalid' | 'requeue';

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
  };
  return metrics;
}

/** Records one reconcile of `seconds` with its result. */
export function observeReconcile(m: OperatorMetrics, result: ReconcileResult, seconds: number): void {
  m.reconciles.inc({ result });
  m.reconcileDuration.observe({ result }, seconds);
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
  for (const g of [m.salePhase, m.skuStock, m.skuRemaining, m.skuSold] as Gauge<'flashsale' | 'phase' | 'sku'>[]) {
    // remove() needs the exact label set; the gauge's current values list the ones that exist.
    for (const { labels } of (await g.get()).values) {
      if (labels.flashsale === flashsale) g.remove(labels as Record<string, string>);
    }
  }
}
