// The compensation scan: the safety net under the timeout closer. Periodically it
//   1. closes orders still UNPAID more than `grace` past their due time (their timeout message was
//      lost, never produced, or is stuck behind a failure), with the same close code as the closer;
//   2. applies the releases of orders closed in MySQL but not yet confirmed back in Redis (settled_at
//      NULL: a crash between the commit and Redis, or Redis without the SKU's keys at the time).
// Both walk an index in bounded chunks with keyset pagination, so a scan never loads the table.
// A Redis lease keeps replicas from scanning at the same time; it only saves work: the conditional
// UPDATE and the idempotent release are the fences, so two scanners at once still close each order once.
import { RedisLease } from '../infra/lock.ts';
import type { Pool } from '../infra/mysql.ts';
import type { Redis } from '../infra/redis.ts';
import type { Logger } from '../log.ts';
import type { DataPlaneMetrics } from '../metrics/dataplane.ts';
import { systemClock, type Clock, type OrderCloser, type ReleaseRow } from './close.ts';
import { readMarks } from './restore-fence.ts';
import type { StockStore } from './stock.ts';

export interface CompensatorOptions {
  pool: Pool;
  redis: Redis;
  closer: OrderCloser;
  saleKey: string;
  lockKey: string;
  intervalMs: number;
  graceMs: number;
  logger: Logger;
  clock?: Clock;
  metrics?: DataPlaneMetrics;
  /** Rows per chunk (one SELECT + one close transaction). */
  chunkSize?: number;
  /** Lease of the scan lock; renewed after every chunk, which takes a small fraction of it. */
  leaseMs?: number;
  /** false runs without the lock (tests prove the fence holds without it). */
  useLock?: boolean;
  /** With the sale's stock, each scan also checks that Redis did not go back in time (restore-fence.ts). */
  stock?: StockStore;
}

export interface ScanResult {
  /** False when another replica held the lock (nothing was scanned). */
  ran: boolean;
  /** SKUs fenced because their Redis counter was below the recorded mark (absent when none). */
  fenced?: string[];
  closed: number;
  applied: number;
  pending: number;
}

export class Compensator {
  private readonly o: Required<Omit<CompensatorOptions, 'metrics' | 'stock'>> & { metrics: DataPlaneMetrics | undefined; stock: StockStore | undefined };
  private readonly lease: RedisLease;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private stopped = false;

  constructor(o: CompensatorOptions) {
    this.o = { ...o, clock: o.clock ?? systemClock, chunkSize: o.chunkSize ?? 500, leaseMs: o.leaseMs ?? 30_000, useLock: o.useLock ?? true, metrics: o.metrics, stock: o.stock };
    this.lease = new RedisLease(o.redis, o.lockKey, this.o.leaseMs);
  }

  /** Scans every interval until stop(); a failed scan is logged and the next one tries again. */
  start(): void {
    this.stopped = false;
    const tick = () => {
      if (this.stopped) return;
      this.running = this.scanOnce()
        .then((r) => {
          if (r.ran && (r.closed > 0 || r.applied > 0)) this.o.logger.info(r, 'compensation scan');
        })
        .catch((err: unknown) => this.o.logger.error({ err: String(err) }, 'compensation scan failed'))
        .finally(() => {
          if (!this.stopped) this.timer = setTimeout(tick, this.o.intervalMs);
        });
    };
    tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }

  async scanOnce(): Promise<ScanResult> {
    const result: ScanResult = { ran: false, closed: 0, applied: 0, pending: 0 };
    if (this.o.useLock && !(await this.lease.acquire())) return result;
    result.ran = true;
    try {
      const fenced = await this.fenceRestored();
      if (fenced.length > 0) result.fenced = fenced;
      await this.closeOverdue(result);
      await this.applyPending(result);
      result.pending = await this.pendingCount();
      this.o.metrics?.releasesPending.set({ flashsale: this.o.saleKey }, result.pending);
      return result;
    } finally {
      if (this.o.useLock) await this.lease.release().catch(() => undefined);
    }
  }

  /**
   * A SKU whose Redis counter is below the mark MySQL recorded went back in time (restored from an
   * older snapshot, keys present but stale): fence it so the rebuild from MySQL replaces it.
   */
  private async fenceRestored(): Promise<string[]> {
    const stock = this.o.stock;
    if (!stock) return [];
    const fenced: string[] = [];
    // Marks first: every mark was a value Redis had produced before, so a healthy counter is at least as high.
    for (const [skuId, mark] of await readMarks(this.o.pool, this.o.saleKey)) {
      if ((await stock.level(skuId)) === null) continue; // lost, not stale: the rebuild is on its way
      const seq = await stock.seq(skuId);
      if (seq >= mark) continue;
      this.o.logger.error({ sale: this.o.saleKey, sku: skuId, seq, mark }, 'Redis went back in time for this SKU (restored from an older snapshot?): fencing it until the rebuild from MySQL');
      await stock.fence(skuId);
      fenced.push(skuId);
    }
    return fenced;
  }

  /** Between chunks: keep the lease, or stop when another replica has it now. */
  private async keepLease(): Promise<boolean> {
    if (!this.o.useLock) return !this.stopped;
    return !this.stopped && (await this.lease.renew());
  }

  private async closeOverdue(result: ScanResult): Promise<void> {
    const cutoff = new Date(this.o.clock.now() - this.o.graceMs);
    await this.settlePaid(cutoff);
    await this.walkUnsettled<{ order_id: string; due_at: Date }>('UNPAID', cutoff, 'order_id, due_at', async (list) => {
      const closed = await this.o.closer.close(list.map((r) => ({ orderId: r.order_id, dueAt: r.due_at.getTime() })), 'compensator');
      result.closed += closed.closed.length;
      result.applied += closed.released;
      if (closed.closed.length > 0) this.o.metrics?.compensationCloses.inc({ flashsale: this.o.saleKey }, closed.closed.length);
    });
  }

  /**
   * Paid orders the API of a previous release paid without settled_at (during a rollout to
   * migration 7) would stay in the scan's range for good: settled here, a bounded number per scan.
   */
  private async settlePaid(cutoff: Date): Promise<void> {
    await this.o.pool.query(
      `UPDATE orders FORCE INDEX (orders_settled_due) SET settled_at = COALESCE(paid_at, created_at)
       WHERE settled_at IS NULL AND due_at <= ? AND status = 'PAID' AND sale = ? LIMIT ?`,
      [cutoff, this.o.saleKey, this.o.chunkSize],
    );
  }

  /**
   * Releases owed: CLOSED orders whose units Redis has not confirmed back (settled_at NULL). A
   * closed order was due when it closed, so the range ends at the scan's now (an order closed by a
   * closer whose clock runs ahead of this one is found by a later scan).
   */
  private async applyPending(result: ScanResult): Promise<void> {
    type Owed = { order_id: string; sku_id: string; user_id: string; quantity: number; due_at: Date };
    await this.walkUnsettled<Owed>('CLOSED', new Date(this.o.clock.now()), 'order_id, sku_id, user_id, quantity, due_at', async (list) => {
      const releases: ReleaseRow[] = list.map((r) => ({ orderId: r.order_id, sale: this.o.saleKey, skuId: r.sku_id, userId: r.user_id, quantity: r.quantity }));
      result.applied += await this.o.closer.applyReleases(releases, 'compensator');
    });
  }

  /**
   * Walks the sale's unsettled orders (settled_at NULL) of one status due by `until`, in chunks, and
   * hands each chunk to `visit`. Keyset on (due_at, order_id), the order of the (settled_at, due_at)
   * index under settled_at NULL (InnoDB appends the primary key), so a row the visit leaves as it
   * was (paid meanwhile, a release Redis could not take yet) is not read again in this scan. The
   * index holds no status: the other status's rows in the range are passed over.
   */
  private async walkUnsettled<R extends { order_id: string; due_at: Date }>(status: 'UNPAID' | 'CLOSED', until: Date, columns: string, visit: (rows: R[]) => Promise<void>): Promise<void> {
    let after: { dueAt: Date; orderId: string } | null = null;
    while (true) {
      const [rows] = await this.o.pool.query(
        `SELECT ${columns} FROM orders FORCE INDEX (orders_settled_due)
         WHERE settled_at IS NULL AND due_at <= ? AND status = ? AND sale = ?
           ${after ? 'AND (due_at > ? OR (due_at = ? AND order_id > ?))' : ''}
         ORDER BY due_at, order_id LIMIT ?`,
        after ? [until, status, this.o.saleKey, after.dueAt, after.dueAt, after.orderId, this.o.chunkSize] : [until, status, this.o.saleKey, this.o.chunkSize],
      );
      const list = rows as R[];
      if (list.length === 0) return;
      await visit(list);
      const last = list[list.length - 1] as R;
      after = { dueAt: last.due_at, orderId: last.order_id };
      if (list.length < this.o.chunkSize || !(await this.keepLease())) return;
    }
  }

  private async pendingCount(): Promise<number> {
    const [rows] = await this.o.pool.query(
      "SELECT COUNT(*) AS n FROM orders FORCE INDEX (orders_settled_due) WHERE settled_at IS NULL AND due_at <= ? AND status = 'CLOSED' AND sale = ?",
      [new Date(this.o.clock.now()), this.o.saleKey],
    );
    return Number((rows as { n: number | string }[])[0]?.n ?? 0);
  }
}
