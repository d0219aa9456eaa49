// Closing unpaid orders: the one piece of code the timeout closer, its retry worker and the
// compensation scan share, so they cannot disagree on what "closed" means.
//
// A close is ONE MySQL transaction per chunk of orders:
//   UPDATE orders SET status='CLOSED' ...      WHERE status='UNPAID' AND due_at <= now  ← the fence
//   SELECT ... WHERE closed_at = now AND       the rows it closed, read back: the release each owes
//     settled_at IS NULL
//   SELECT status ...                          only for orders not closed: why (metrics), owed releases
// and only after the commit the release is applied to Redis (StockStore.releaseOrders, idempotent by
// order id) and marked on the row (settled_at). A CLOSED row with settled_at NULL owes its release:
// a crash between the commit and Redis leaves it so, and the next close attempt of that order or the
// compensation scan applies it. The close changes no column of a secondary index (settled_at is
// set only by the mark), which is most of why it is cheap (mysql.ts, migration 7). The conditional
// UPDATE is what makes PAID and CLOSED mutually exclusive: the API's pay UPDATE has the mirror
// condition (status='UNPAID'), and InnoDB row locks serialise the two.
import type { Pool, PoolConnection } from '../infra/mysql.ts';
import type { DataPlaneMetrics } from '../metrics/dataplane.ts';
import { recordMarks } from './restore-fence.ts';
import type { StockStore } from './stock.ts';

export interface CloseRequest {
  orderId: string;
  /**
   * The due time the request brought (a timeout or retry message: the writer copied it from the row;
   * the scan: the row's). Only the close-delay histogram uses it, the fence compares the row's own;
   * absent, the row's is read after the close.
   */
  dueAt?: number;
}

/** not_due: the row's due_at is still in the future (a message must never close early; the scan will come back). */
export type CloseOutcome = 'closed' | 'already_paid' | 'already_closed' | 'not_found' | 'not_due';

export interface ReleaseRow {
  orderId: string;
  sale: string;
  skuId: string;
  userId: string;
  quantity: number;
}

export interface CloseResult {
  outcomes: Map<string, CloseOutcome>;
  /** Orders this call closed, with the due time each had (for the close-delay histogram). */
  closed: { orderId: string; dueAt: number; closedAt: number }[];
  /** Releases this call applied to Redis (its own and pending ones it found). */
  released: number;
}

export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

export interface OrderCloserOptions {
  pool: Pool;
  stock: StockStore;
  /** namespace/name of the sale: only its orders are touched. */
  saleKey: string;
  clock?: Clock;
  metrics?: DataPlaneMetrics;
  /** Rows per transaction; bounded so a lock is held briefly and the statements stay small. */
  chunkSize?: number;
  /** Test hook: runs after the MySQL commit and before Redis. Throwing here simulates a crash in between. */
  afterCommit?: (orderIds: string[]) => void | Promise<void>;
  /**
   * Mark releases applied later, in bulk: once no release was applied for `idleMs`, at the latest
   * `maxMs` after the first unmarked one (see `applyReleases`). Absent: mark at once.
   */
  deferMarking?: { idleMs: number; maxMs: number };
}

type OtherRow = { order_id: string; status: 'UNPAID' | 'PAID' | 'CLOSED'; due_at: Date };
type ClosedDbRow = { order_id: string; sku_id: string; user_id: string; quantity: number };
type Lap = (k: keyof OrderCloser['timings']) => void;

// The fence. It locks the rows it closes, in primary-key order (the IN list is a sorted set of
// ranges), so two closers of the same orders wait for each other instead of deadlocking; a row a pay
// holds is waited for and then read as committed. Params: closed_at, order ids, sale, now.
const CLOSE_SQL = `UPDATE orders FORCE INDEX (PRIMARY) SET status = 'CLOSED', closed_at = ? WHERE order_id IN (?) AND sale = ? AND status = 'UNPAID' AND due_at <= ?`;
/** What a close transaction decided: the orders it closed (with their releases) and the others, read. */
interface Fenced {
  closing: ReleaseRow[];
  others: OtherRow[];
  /** The chunk's orders not closed by it. */
  rest: string[];
}

export class OrderCloser {
  private readonly pool: Pool;
  private readonly stock: StockStore;
  private readonly saleKey: string;
  private readonly clock: Clock;
  private readonly metrics: DataPlaneMetrics | undefined;
  private readonly afterCommit: OrderCloserOptions['afterCommit'];
  readonly chunkSize: number;
  /** Milliseconds spent per step, summed over chunks (benchmarks print it). */
  readonly timings = { connect: 0, update: 0, read: 0, commit: 0, redis: 0, markApplied: 0 };
  /** Chunks closed by fenceLocked (another close of the same millisecond owed releases among them). */
  lockedChunks = 0;
  private readonly deferMarking: OrderCloserOptions['deferMarking'];
  private unmarked: string[] = [];
  private firstUnmarkedAt = 0;
  private markTimer: NodeJS.Timeout | undefined;
  private marking: Promise<void> = Promise.resolve();
  /** Highest counters seen per SKU, not yet recorded (deferred with the settled_at marks). */
  private unrecorded = new Map<string, number>();

  constructor(o: OrderCloserOptions) {
    this.pool = o.pool;
    this.stock = o.stock;
    this.saleKey = o.saleKey;
    this.clock = o.clock ?? systemClock;
    this.metrics = o.metrics;
    this.afterCommit = o.afterCommit;
    this.chunkSize = o.chunkSize ?? 500;
    this.deferMarking = o.deferMarking;
  }

  /**
   * Closes the orders that are UNPAID and due at the clock's now, in chunks; applies their releases
   * to Redis; finishes pending releases of orders found already closed. Throws on any MySQL/Redis
   * failure (the caller retries: every step is idempotent).
   */
  async close(requests: CloseRequest[], source: 'closer' | 'compensator'): Promise<CloseResult> {
    const result: CloseResult = { outcomes: new Map(), closed: [], released: 0 };
    const dueOf = new Map<string, number | undefined>();
    for (const r of requests) if (!dueOf.has(r.orderId)) dueOf.set(r.orderId, r.dueAt);
    const ids = [...dueOf.keys()];
    for (let i = 0; i < ids.length; i += this.chunkSize) {
      await this.closeChunk(ids.slice(i, i + this.chunkSize), dueOf, source, result);
    }
    return result;
  }

  private async closeChunk(ids: string[], dueOf: Map<string, number | undefined>, source: 'closer' | 'compensator', result: CloseResult): Promise<void> {
    const now = this.clock.now();
    const sorted = [...ids].sort();
    const tm = this.timings;
    let t = performance.now();
    const lap = (k: keyof typeof tm) => {
      const n = performance.now();
      tm[k] += n - t;
      t = n;
    };
    const conn = await this.pool.getConnection();
    lap('connect');
    let fenced: Fenced | undefined;
    try {
      fenced = await this.transaction(conn, lap, () => this.fence(conn, sorted, now, lap));
      if (!fenced) {
        this.lockedChunks++;
        fenced = (await this.transaction(conn, lap, () => this.fenceLocked(conn, sorted, now, lap))) as Fenced;
      }
    } finally {
      conn.release();
    }
    const { closing, others, rest } = fenced;
    const alreadyClosed: string[] = [];
    const found = new Map(others.map((r) => [r.order_id, r]));
    for (const r of closing) result.outcomes.set(r.orderId, 'closed');
    // Only the orders not closed here are looked at: in a burst, none.
    for (const id of rest) {
      const row = found.get(id);
      if (!row) result.outcomes.set(id, 'not_found');
      else if (row.status === 'PAID') result.outcomes.set(id, 'already_paid');
      else if (row.status === 'CLOSED') {
        result.outcomes.set(id, 'already_closed');
        alreadyClosed.push(id);
      }
      // UNPAID and due is a row that was not there when the fence ran (written since): not found then.
      else result.outcomes.set(id, row.due_at.getTime() > now ? 'not_due' : 'not_found');
    }
    // The due time the request brought (the writer copied it from the row); read only if it had none.
    const missing = closing.filter((r) => dueOf.get(r.orderId) === undefined).map((r) => r.orderId);
    const dueAt = missing.length > 0 ? await this.dueTimes(missing) : new Map<string, number>();
    for (const r of closing) result.closed.push({ orderId: r.orderId, dueAt: dueOf.get(r.orderId) ?? dueAt.get(r.orderId) ?? now, closedAt: now });
    if (closing.length > 0 && this.afterCommit) await this.afterCommit(closing.map((r) => r.orderId));
    const toApply = alreadyClosed.length > 0 ? [...closing, ...(await this.pendingReleases(alreadyClosed))] : closing;
    result.released += await this.applyReleases(toApply, source);
  }

  /**
   * Runs `work` in one READ COMMITTED transaction: no gap locks, so closers of different partitions
   * (disjoint order ids) never deadlock on index ranges; the UPDATE's row locks are all the fence
   * needs. Committed when `work` returns a value; rolled back when it returns undefined or throws.
   */
  private async transaction<T>(conn: PoolConnection, lap: Lap, work: () => Promise<T | undefined>): Promise<T | undefined> {
    // SET TRANSACTION holds for the next transaction only.
    await conn.query('SET TRANSACTION ISOLATION LEVEL READ COMMITTED');
    await conn.beginTransaction();
    try {
      const done = await work();
      if (done === undefined) {
        await conn.rollback();
        return undefined;
      }
      await conn.commit();
      lap('commit');
      return done;
    } catch (err) {
      await conn.rollback().catch(() => undefined);
      throw err;
    }
  }

  /**
   * The close: the conditional UPDATE (the fence), then the closed rows read back for their
   * releases. undefined when the read back is ambiguous (another close committed some of these
   * orders at the same millisecond and its releases are not marked yet): the caller rolls back and
   * closes the chunk with fenceLocked instead. In a burst every order closes and nothing else is read.
   */
  private async fence(conn: PoolConnection, sorted: string[], now: number, lap: Lap): Promise<Fenced | undefined> {
    const nowDate = new Date(now);
    const [upd] = await conn.query(CLOSE_SQL, [nowDate, sorted, this.saleKey, nowDate]);
    const changed = (upd as { affectedRows: number }).affectedRows;
    lap('update');
    let closing: ReleaseRow[] = [];
    if (changed > 0) {
      // The release each order closed here owes, read from its row (which this transaction holds):
      // closed_at = this close's instant and no release yet. The row is the source, never the
      // message, so a message cannot make a close return other units than the order held.
      const [rows] = await conn.query(
        `SELECT order_id, sku_id, user_id, quantity FROM orders FORCE INDEX (PRIMARY)
         WHERE order_id IN (?) AND sale = ? AND status = 'CLOSED' AND closed_at = ? AND settled_at IS NULL`,
        [sorted, this.saleKey, nowDate],
      );
      closing = (rows as ClosedDbRow[]).map((r) => this.toReleaseRow(r));
      lap('read');
      if (closing.length !== changed) return undefined;
    }
    let others: OtherRow[] = [];
    let rest: string[] = [];
    if (changed < sorted.length) {
      // Why the others were not closed (the outcome metrics), and which were closed before (their
      // release may still be owed). Only read when some were not: in a burst every order closes.
      const closedNow = new Set(closing.map((r) => r.orderId));
      rest = sorted.filter((id) => !closedNow.has(id));
      const [rows] = await conn.query('SELECT order_id, status, due_at FROM orders FORCE INDEX (PRIMARY) WHERE order_id IN (?) AND sale = ?', [rest, this.saleKey]);
      others = rows as OtherRow[];
      lap('read');
    }
    return { closing, others, rest };
  }

  /**
   * The same close with the rows read and locked first (SELECT … FOR UPDATE), so the orders closed are
   * exactly those read UNPAID and due. Dearer than fence (the read before the UPDATE); only taken
   * when fence could not tell its closes from another close's of the same millisecond.
   */
  private async fenceLocked(conn: PoolConnection, sorted: string[], now: number, lap: Lap): Promise<Fenced> {
    const nowDate = new Date(now);
    const [rows] = await conn.query(
      'SELECT order_id, sku_id, user_id, quantity, status, due_at FROM orders FORCE INDEX (PRIMARY) WHERE order_id IN (?) AND sale = ? FOR UPDATE',
      [sorted, this.saleKey],
    );
    const read = rows as (ClosedDbRow & OtherRow)[];
    lap('read');
    const closable = read.filter((r) => r.status === 'UNPAID' && r.due_at.getTime() <= now);
    if (closable.length > 0) {
      const [upd] = await conn.query(CLOSE_SQL, [nowDate, closable.map((r) => r.order_id), this.saleKey, nowDate]);
      // The rows are locked since the read: every one read UNPAID and due is closed here.
      const changed = (upd as { affectedRows: number }).affectedRows;
      if (changed !== closable.length) throw new Error(`close changed ${changed} of ${closable.length} locked orders`);
      lap('update');
    }
    const closedNow = new Set(closable.map((r) => r.order_id));
    return {
      closing: closable.map((r) => this.toReleaseRow(r)),
      others: read.filter((r) => !closedNow.has(r.order_id)),
      rest: sorted.filter((id) => !closedNow.has(id)),
    };
  }

  private toReleaseRow(r: ClosedDbRow): ReleaseRow {
    return { orderId: r.order_id, sale: this.saleKey, skuId: r.sku_id, userId: r.user_id, quantity: r.quantity };
  }

  private async dueTimes(orderIds: string[]): Promise<Map<string, number>> {
    const [rows] = await this.pool.query('SELECT order_id, due_at FROM orders WHERE order_id IN (?)', [orderIds]);
    return new Map((rows as { order_id: string; due_at: Date }[]).map((r) => [r.order_id, r.due_at.getTime()]));
  }

  private async pendingReleases(orderIds: string[]): Promise<ReleaseRow[]> {
    const [rows] = await this.pool.query(
      "SELECT order_id, sku_id, user_id, quantity FROM orders FORCE INDEX (PRIMARY) WHERE order_id IN (?) AND sale = ? AND status = 'CLOSED' AND settled_at IS NULL",
      [orderIds, this.saleKey],
    );
    return (rows as ClosedDbRow[]).map((r) => this.toReleaseRow(r));
  }

  /**
   * Returns the units of committed releases to Redis and marks them applied. The Redis script is
   * idempotent by order id, so applying a release twice (a closer and the scan at once, a crash
   * before settled_at was set) returns the units once. Returns how many were applied now.
   *
   * settled_at only tells the scan which releases might still be owed, so with `deferMarking` it is
   * written in bulk after a burst instead of on the close path (in a burst it costs as much MySQL
   * time as the close UPDATE). A mark lost in a crash only makes the scan run the idempotent script
   * once more for that order, which returns nothing.
   */
  async applyReleases(rows: ReleaseRow[], source: 'closer' | 'compensator'): Promise<number> {
    if (rows.length === 0) return 0;
    // One script call per SKU and chunk (StockStore.releaseOrders), not one per order.
    const t = performance.now();
    const applied = await this.stock.releaseOrders(rows);
    const outcomes = applied.map((a) => a.outcome);
    const n = outcomes.filter((o) => o === 'released').length;
    this.timings.redis += performance.now() - t;
    // The highest counter each SKU showed, recorded so a Redis that goes back is noticed (restore-fence.ts).
    const seen = new Map<string, number>();
    rows.forEach((r, i) => {
      const seq = applied[i]?.seq ?? 0;
      if (seq > (seen.get(r.skuId) ?? 0)) seen.set(r.skuId, seq);
    });
    const defer = !!this.deferMarking && source === 'closer';
    if (defer) for (const [sku, seq] of seen) this.unrecorded.set(sku, Math.max(seq, this.unrecorded.get(sku) ?? 0));
    else if (seen.size > 0) await recordMarks(this.pool, this.saleKey, seen, new Date(this.clock.now()));
    if (n > 0) this.metrics?.releasesApplied.inc({ flashsale: this.saleKey, source }, n);
    // A release that found the SKU's keys missing did nothing and stays unmarked: a rebuild may be
    // reading the ledger from before this close (then it counts the order as held), so the scan
    // applies it again once the keys are back; `released` makes that a no-op when the rebuild
    // counted the order as closed.
    const ids = rows.filter((_, i) => outcomes[i] !== 'no-stock-keys').map((r) => r.orderId);
    if (ids.length === 0) return n;
    // Deferred, the counter marks go with the settled_at marks (a mark recorded late only detects a
    // restore a little later; the writer and the API record and check too).
    if (defer) this.queueMarks(ids);
    else await this.markApplied(ids);
    return n;
  }

  private async markApplied(ids: string[]): Promise<void> {
    const t = performance.now();
    for (let i = 0; i < ids.length; i += 1000) {
      await this.pool.query(
        "UPDATE orders FORCE INDEX (PRIMARY) SET settled_at = ? WHERE order_id IN (?) AND sale = ? AND status = 'CLOSED' AND settled_at IS NULL",
        [new Date(this.clock.now()), ids.slice(i, i + 1000), this.saleKey],
      );
    }
    this.timings.markApplied += performance.now() - t;
  }

  private queueMarks(ids: string[]): void {
    const d = this.deferMarking as { idleMs: number; maxMs: number };
    const now = Date.now();
    if (this.unmarked.length === 0) this.firstUnmarkedAt = now;
    this.unmarked.push(...ids);
    if (this.markTimer) clearTimeout(this.markTimer);
    this.markTimer = setTimeout(() => void this.flushMarks(), Math.max(0, Math.min(d.idleMs, this.firstUnmarkedAt + d.maxMs - now)));
  }

  /** Writes the deferred settled_at marks now; a failure leaves them to the scan. */
  flushMarks(): Promise<void> {
    if (this.markTimer) clearTimeout(this.markTimer);
    this.markTimer = undefined;
    const ids = this.unmarked;
    this.unmarked = [];
    const seqs = this.unrecorded;
    this.unrecorded = new Map();
    this.marking = this.marking.then(async () => {
      if (ids.length > 0) await this.markApplied(ids).catch(() => undefined);
      if (seqs.size > 0) await recordMarks(this.pool, this.saleKey, seqs, new Date(this.clock.now())).catch(() => undefined);
    });
    return this.marking;
  }
}
