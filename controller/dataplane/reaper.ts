// The reaper returns stock held by reservations that never became orders: the API process died (or
// Kafka refused the order and Redis was away too) between the Redis reservation and the Kafka
// hand-off. A reservation is reaped only while it is unclaimed (see stock.ts), so an order that is
// still in Kafka is either claimed by the writer or reaped here, never both; if it arrives after
// being reaped the writer records it CLOSED.
//
// The bound (olderThanMs) is measured against the order writer's progress, not the wall clock: a
// reservation is reaped only when the writer has consumed everything appended to the orders topic
// until olderThanMs after it was made. A writer that lags (or is down) therefore never makes the
// reaper cancel accepted orders that are merely waiting in Kafka; the bound only has to exceed the
// API's hand-off time (the producer's retries).
import type { Registry } from 'prom-client';
import type { KafkaAdmin, KafkaGateway } from '../infra/kafka.ts';
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
  /** With Kafka, the bound counts from the writer's progress (see above); without, from the clock. */
  kafka?: KafkaGateway;
}

/**
 * How far the order writer has got, as a time: the latest moment T such that every message
 * appended to the orders topic before T has been committed by the writer's group. Each sample
 * reads the high watermarks (at time t) and then the committed offsets; a partition whose committed
 * offset reached the watermarks of a sample is drained past that sample's t.
 */
export class WriterProgress {
  private readonly samples: { at: number; highs: Map<number, bigint> }[] = [];
  private readonly ctx: SaleContext;
  private readonly clock: () => number;

  constructor(ctx: SaleContext, clock: () => number) {
    this.ctx = ctx;
    this.clock = clock;
  }

  async drainedPast(admin: KafkaAdmin): Promise<number> {
    const topic = this.ctx.names.topics.orders;
    const at = this.clock();
    const marks = await admin.topicOffsets(topic);
    const committed = new Map((await admin.groupOffsets(this.ctx.names.groups.orderWriter, [topic])).map((c) => [c.partition, c.offset]));
    this.samples.push({ at, highs: new Map(marks.map((m) => [m.partition, BigInt(m.high)])) });
    if (this.samples.length > 64) this.samples.splice(0, this.samples.length - 64);
    let past = Infinity;
    for (const m of marks) {
      const done = BigInt(committed.get(m.partition) ?? m.low);
      let p = -Infinity;
      for (const s of this.samples) if ((s.highs.get(m.partition) ?? 0n) <= done) p = Math.max(p, s.at);
      past = Math.min(past, p);
    }
    return past;
  }
}

export const DEFAULT_REAP_AFTER_MS = 5 * 60_000;

export class Reaper {
  private readonly opts: ReaperOptions;
  private readonly clock: () => number;
  private readonly olderThanMs: number;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private readonly metrics: ReturnType<typeof dataPlaneMetrics>;
  private readonly progress = new Map<string, WriterProgress>();

  constructor(opts: ReaperOptions) {
    this.opts = opts;
    this.clock = opts.clock ?? Date.now;
    this.olderThanMs = opts.olderThanMs ?? DEFAULT_REAP_AFTER_MS;
    this.metrics = dataPlaneMetrics(opts.registry);
  }

  /** One pass over every SKU of every sale; returns how many reservations were returned. */
  async tick(): Promise<number> {
    const admin = this.opts.kafka ? await this.opts.kafka.admin() : undefined;
    let reaped = 0;
    for (const ctx of this.opts.sales) {
      let writerAt = this.clock();
      if (admin) {
        let p = this.progress.get(ctx.key);
        if (!p) this.progress.set(ctx.key, (p = new WriterProgress(ctx, this.clock)));
        writerAt = Math.min(writerAt, await p.drainedPast(admin));
      }
      const cutoff = writerAt - this.olderThanMs;
      if (!Number.isFinite(cutoff)) continue;
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
