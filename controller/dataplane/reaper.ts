// The reaper returns stock held by reservations that never became orders: the API process died (or
// Kafka refused the order and Redis was away too) between the Redis reservation and the Kafka
// hand-off. A reservation is reaped only while it is unclaimed (see stock.ts), so an order that is
// still in Kafka is either claimed by the writer or reaped here, never both; if it arrives after
// being reaped the writer records it CLOSED.
//
// The bound (olderThanMs) must exceed the longest a healthy order can take from reservation to the
// writer's claim: the producer's retries plus the writer's lag. Too short a bound closes live orders
// (their buyer sees CLOSED); too long keeps orphaned units off sale longer.
import type { Registry } from 'prom-client';
import type { Logger } from '../log.ts';
import { dataPlaneMetrics } from '../metrics/dataplane.ts';
import type { SaleContext } from './sale-context.ts';

export interface ReaperOptions {
  sales: SaleContext[];
  registry: Registry;
  logger: Logger;
  clock?: () => number;
  /** Reservations older than this are returned. Default 5 minutes. */
  olderThanMs?: number;
  /** How often to look. Default 30 s. */
  intervalMs?: number;
}

export const DEFAULT_REAP_AFTER_MS = 5 * 60_000;

export class Reaper {
  private readonly opts: ReaperOptions;
  private readonly clock: () => number;
  private readonly olderThanMs: number;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private readonly metrics: ReturnType<typeof dataPlaneMetrics>;

  constructor(opts: ReaperOptions) {
    this.opts = opts;
    this.clock = opts.clock ?? Date.now;
    this.olderThanMs = opts.olderThanMs ?? DEFAULT_REAP_AFTER_MS;
    this.metrics = dataPlaneMetrics(opts.registry);
  }

  /** One pass over every SKU of every sale; returns how many reservations were returned. */
  async tick(): Promise<number> {
    const cutoff = this.clock() - this.olderThanMs;
    let reaped = 0;
    for (const ctx of this.opts.sales) {
      for (const skuId of ctx.skus.keys()) {
        for (;;) {
          const stale = await ctx.stock.staleReservations(skuId, cutoff, 500);
          let now = 0;
          for (const r of stale) {
            if ((await ctx.stock.releaseReservation(r)) === 'released') {
              now++;
              this.opts.logger.warn({ sale: ctx.key, orderId: r.orderId, sku: skuId, reservedAt: r.reservedAt }, 'reaped an orphaned reservation');
            }
          }
          if (now > 0) this.metrics.reservationsReaped.labels(ctx.key).inc(now);
          reaped += now;
          // A full page may hide more; a page the writer claimed from under us ends the loop.
          if (stale.length < 500 || now === 0) break;
        }
      }
    }
    return reaped;
  }

  start(): void {
    const every = this.opts.intervalMs ?? 30_000;
    const loop = () => {
      this.running = this.tick()
        .catch((err: unknown) => this.opts.logger.error({ err: String(err) }, 'reaper pass failed'))
        .finally(() => {
          if (this.timer) this.timer = setTimeout(loop, every);
        });
    };
    this.timer = setTimeout(loop, every);
  }

  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
