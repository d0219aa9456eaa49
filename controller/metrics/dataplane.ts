// Metrics of the data plane, one definition each, shared by every worker (and by `flashsale run`,
// where all workers share one process and one registry). Names follow Prometheus conventions:
// base units in the name, `_total` on counters; `flashsale` is the sale's namespace/name.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { FastCounter, FastGauge, FastHistogram } from './hot-path.ts';
import { oncePerRegistry } from './registry.ts';

export function createRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}

const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096];

export type DataPlaneMetrics = ReturnType<typeof dataPlaneMetrics>;

/** The data-plane metrics registered on `registry` (created once per registry). */
export const dataPlaneMetrics = oncePerRegistry(build);

function build(registry: Registry) {
  const registers = [registry];
  // Seconds of event-loop time Node has counted busy so far, read at each scrape.
  let busyCounted = 0;
  return {
    // A worker's JavaScript runs on one thread: its rate is the share of one core that thread is
    // busy, and near 1 requests queue in the worker whatever the machine's other cores have left
    // (issue 14: the API at 0.8 under the accept load, docs/order-path.md).
    eventLoopBusy: new Counter({
      name: 'flashsale_event_loop_busy_seconds_total',
      help: 'Time the process\'s event loop spent running code rather than waiting for I/O or timers (Node\'s event loop utilization); its rate is the busy share of the worker\'s JavaScript thread.',
      registers,
      collect() {
        // Node's figure only grows; a counter takes what it grew by since the last scrape.
        const busy = performance.eventLoopUtilization().active / 1000;
        if (busy > busyCounted) {
          this.inc(busy - busyCounted);
          busyCounted = busy;
        }
      },
    }),
    apiRequests: new FastCounter({
      name: 'flashsale_api_requests_total',
      help: 'Purchase requests decided by the API, by outcome (accepted, sold_out, already_ordered, not_started, ended, suspended, sale_not_found, sku_not_found, invalid, unavailable).',
      labelNames: ['flashsale', 'outcome'] as const,
      registers,
    }),
    apiRequestDuration: new FastHistogram({
      name: 'flashsale_api_request_duration_seconds',
      help: 'Time to answer an API request, by route.',
      labelNames: ['flashsale', 'route'] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    }),
    // Orders per produce request and per writer batch: the per-request costs of Kafka, MySQL and
    // Redis are shared by a batch, so small batches under load cost CPU per order (issue 14).
    handOffBatch: new Histogram({
      name: 'flashsale_api_handoff_batch_orders',
      help: 'Orders of the sale per produce request of the API\'s hand-off to Kafka.',
      labelNames: ['flashsale'] as const,
      buckets: BATCH_BUCKETS,
      registers,
    }),
    writerBatch: new Histogram({
      name: 'flashsale_order_writer_batch_orders',
      help: 'Messages per batch handled by the order writer (one partition\'s fetched messages).',
      labelNames: ['flashsale'] as const,
      buckets: BATCH_BUCKETS,
      registers,
    }),
    ordersWritten: new Counter({
      name: 'flashsale_orders_written_total',
      help: 'Orders inserted into MySQL by the order writer (redeliveries not counted).',
      labelNames: ['flashsale'] as const,
      registers,
    }),
    deadLetters: new Counter({
      name: 'flashsale_dead_letters_total',
      help: 'Messages sent to the dead-letter topic, by source topic role (orders, timeouts, retry) and reason.',
      labelNames: ['flashsale', 'source', 'reason'] as const,
      registers,
    }),
    // Set from every reserve's answer: a hot-path gauge (hot-path.ts).
    stockRemaining: new FastGauge({
      name: 'flashsale_stock_remaining',
      help: 'Units of a SKU not yet reserved, as last read from Redis.',
      labelNames: ['flashsale', 'sku'] as const,
      registers,
    }),
    reservationsReaped: new Counter({
      name: 'flashsale_reservations_reaped_total',
      help: 'Reservations returned to stock because their order never reached Kafka/MySQL.',
      labelNames: ['flashsale'] as const,
      registers,
    }),
    closes: new Counter({
      name: 'flashsale_timeout_closes_total',
      help: 'Timeout messages handled by the timeout closer, by outcome (closed, already_paid, already_closed, not_found, failed).',
      labelNames: ['flashsale', 'bucket', 'outcome'] as const,
      registers,
    }),
    closeDelay: new Histogram({
      name: 'flashsale_timeout_close_delay_seconds',
      help: 'Close time minus due time of closed orders (never negative: nothing closes early).',
      labelNames: ['flashsale', 'bucket'] as const,
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300],
      registers,
    }),
    closeRetries: new Counter({
      name: 'flashsale_timeout_retries_total',
      help: 'Failed closes sent to the retry topic.',
      labelNames: ['flashsale'] as const,
      registers,
    }),
    compensationCloses: new Counter({
      name: 'flashsale_compensation_closes_total',
      help: 'Overdue unpaid orders closed by the compensation scan (their timeout message was lost or late).',
      labelNames: ['flashsale'] as const,
      registers,
    }),
    releasesApplied: new Counter({
      name: 'flashsale_stock_releases_applied_total',
      help: 'Stock releases applied to Redis, by who applied them (closer, compensator).',
      labelNames: ['flashsale', 'source'] as const,
      registers,
    }),
    releasesPending: new Gauge({
      name: 'flashsale_stock_releases_pending',
      help: 'Orders closed in MySQL whose stock release Redis has not confirmed yet (settled_at NULL).',
      labelNames: ['flashsale'] as const,
      registers,
    }),
  };
}
