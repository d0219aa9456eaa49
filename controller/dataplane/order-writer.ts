// The order writer: consumes a sale's orders topic in batches and writes the orders to MySQL.
//
// Per batch, in this order (each step is safe to repeat, so a crash anywhere only means the batch
// comes again):
//   1. parse; malformed or foreign messages are set aside for the dead-letter topic (never block);
//   2. claim the reservations in Redis, one script call per SKU (see stock.ts): an order whose
//      reservation the reaper already returned is written CLOSED, so nothing vanishes silently;
//   3. one multi-row INSERT IGNORE per chunk: a redelivered order changes nothing (the order id is
//      the primary key);
//   4. publish one TimeoutMessage per UNPAID order to its bucket's delay topic, and the dead
//      letters, with acks=all;
//   5. commit the offsets.
// Publishing (4) before committing offsets (5) is what guarantees that no order sits UNPAID in
// MySQL with no timeout message anywhere: until the offsets are committed, a crash redelivers the
// batch and step 4 runs again. The price is a duplicate timeout message after a crash between 4
// and 5, which the timeout closer absorbs (its close is conditional on UNPAID). The compensation
// scan remains the backstop for anything else.
import type { Registry } from 'prom-client';
import type { Batch, BatchContext, KafkaConsumer, KafkaGateway, KafkaProducer, OutgoingMessage } from '../infra/kafka.ts';
import type { Pool } from '../infra/mysql.ts';
import type { Logger } from '../log.ts';
import { dataPlaneMetrics } from '../metrics/dataplane.ts';
import { deadLetter, MalformedMessageError, parseOrderMessage, type OrderMessage, type TimeoutMessage } from './messages.ts';
import { readMarks, recordMarks } from './restore-fence.ts';
import type { SaleContext } from './sale-context.ts';
import type { ClaimResult } from './stock.ts';

export interface OrderWriterOptions {
  ctx: SaleContext;
  kafka: KafkaGateway;
  pool: Pool;
  registry: Registry;
  logger: Logger;
  clock?: () => number;
  /** Partitions handled at once by this member (each batch is one partition). */
  partitionsConsumedConcurrently?: number;
  sessionTimeoutMs?: number;
  /** Rows per INSERT statement. */
  insertChunk?: number;
  /** Test hook, called after a batch's rows are in MySQL and before anything is published or committed. */
  afterInsert?: (batch: Batch) => Promise<void> | void;
}

export interface WrittenRow {
  order: OrderMessage;
  status: 'UNPAID' | 'CLOSED';
  dueAt: number;
  bucket: string;
  /** The order message's bytes when they already make its timeout message (see handleBatch). */
  timeoutValue: Buffer | null;
}

interface ParsedOrder {
  order: OrderMessage;
  placement: Placement;
  timeoutValue: Buffer | null;
}

// INSERT IGNORE skips rows whose order id is already there, and its affected-row count is the number
// of new rows (ON DUPLICATE KEY UPDATE counts matched duplicates too under mysql2's FOUND_ROWS flag).
// It would also turn out-of-range values into warnings, so every value is checked before (see
// placeOrder) and such a message goes to the dead-letter topic instead.
// An order the reaper returned is written CLOSED with its release settled (settled_at): its units are
// back already, so the scan owes Redis nothing for it.
const INSERT_SQL = 'INSERT IGNORE INTO orders (order_id, sale, sku_id, user_id, quantity, status, created_at, due_at, closed_at, settled_at) VALUES ?';

const MAX_QUANTITY = 0xffff_ffff; // INT UNSIGNED
const MIN_TIME = Date.UTC(2000, 0, 1);
const MAX_TIME = Date.UTC(9999, 0, 1); // DATETIME ends at 9999-12-31
/** The CRD's longest bucket delay. */
const MAX_DELAY_MS = 72 * 3_600_000;
/** Where an order's timeout goes: its bucket and due time. */
export interface Placement {
  bucket: string;
  dueAt: number;
}

/**
 * The order's bucket and due time: from the message (fixed by the API that accepted it), else from
 * this writer's spec (messages of older APIs). Throws MalformedMessageError for what cannot be written.
 */
export function placeOrder(o: OrderMessage, ctx: Pick<SaleContext, 'key' | 'skus'>): Placement {
  if (o.sale !== ctx.key) throw new MalformedMessageError(`sale ${o.sale} is not ${ctx.key}`);
  let placement: Placement;
  if (o.bucket !== undefined && o.dueAt !== undefined) placement = { bucket: o.bucket, dueAt: o.dueAt };
  else {
    const sku = ctx.skus.get(o.skuId);
    if (!sku) throw new MalformedMessageError(`unknown SKU ${o.skuId}`);
    placement = { bucket: sku.bucket, dueAt: o.createdAt + sku.delayMs };
  }
  // What the column types cannot hold; the parser already bounds the string lengths to the columns'.
  if (o.quantity > MAX_QUANTITY) throw new MalformedMessageError(`field quantity: at most ${MAX_QUANTITY}`);
  if (o.createdAt < MIN_TIME || placement.dueAt >= MAX_TIME) throw new MalformedMessageError('field createdAt: outside the years 2000 to 9998');
  // A createdAt far in the future is written as accepted (the buyer has a 202): its timeout message
  // cannot hold the delay partition, the closer bounds the wait by the bucket's delay (DUE_SKEW_MS).
  if (placement.dueAt - o.createdAt > MAX_DELAY_MS) throw new MalformedMessageError(`field dueAt: more than ${MAX_DELAY_MS / 3_600_000} h after createdAt`);
  return placement;
}

export class OrderWriter {
  private readonly opts: OrderWriterOptions;
  private readonly clock: () => number;
  private readonly metrics: ReturnType<typeof dataPlaneMetrics>;
  private consumer: KafkaConsumer | undefined;
  private producer: KafkaProducer | undefined;
  private readonly log: Logger;

  constructor(opts: OrderWriterOptions) {
    this.opts = opts;
    this.clock = opts.clock ?? Date.now;
    this.metrics = dataPlaneMetrics(opts.registry);
    this.log = opts.logger.child({ worker: 'order-writer', sale: opts.ctx.key });
  }

  async start(): Promise<void> {
    const { ctx, kafka } = this.opts;
    this.producer = await kafka.producer();
    this.consumer = kafka.consumer({
      groupId: ctx.names.groups.orderWriter,
      topics: [ctx.names.topics.orders],
      partitionsConsumedConcurrently: this.opts.partitionsConsumedConcurrently ?? 3,
      // A crashed writer's partitions wait this long for a new owner; a batch (a few thousand rows)
      // takes well under a second, so 10 s leaves room and halves kafkajs's 30 s default.
      sessionTimeoutMs: this.opts.sessionTimeoutMs ?? 10_000,
      // The broker answers a fetch as soon as one order arrives (min bytes 1), so the wait bounds
      // only how often an idle writer asks: 2 fetches a second instead of the gateway's 10 (idle
      // writer 1.5 % of a core instead of 3 %, measured). A stop or rebalance waits for the fetch
      // under way, at most this long.
      maxWaitMs: 500,
      // Under load, each fetch waits for 64 KiB of orders (~280) or 25 ms: at ~15k orders/s the
      // writer's batches went from ~180 to ~420 orders and the pipeline spent ~10 µs less CPU per
      // order, most of it in the writer, MariaDB and Kafka (docs/order-path.md); an idle writer
      // polls as above (kafka.ts, busyFetch).
      busyFetch: { minBytes: 64 * 1024, maxWaitMs: 25 },
    });
    await this.consumer.start((batch, bctx) => this.handleBatch(batch, bctx));
    this.log.info({ topic: ctx.names.topics.orders }, 'order writer started');
  }

  async stop(): Promise<void> {
    await this.consumer?.stop();
    await this.producer?.disconnect();
    this.consumer = undefined;
    this.producer = undefined;
  }

  async handleBatch(batch: Batch, bctx: BatchContext): Promise<void> {
    const last = batch.messages.at(-1);
    if (!last) return;
    const { ctx } = this.opts;
    this.metrics.writerBatch.labels(ctx.key).observe(batch.messages.length);
    const orders: ParsedOrder[] = [];
    const dead: OutgoingMessage[] = [];
    for (const m of batch.messages) {
      try {
        const order = parseOrderMessage(m.value);
        // An order that carries its bucket and due time (every API since they travel with the order)
        // parses as the very timeout message this writer would compose: its bytes are sent as they
        // came, without a copy, a JSON.stringify and an encoding per order.
        const placed = order.bucket !== undefined && order.dueAt !== undefined;
        orders.push({ order, placement: placeOrder(order, ctx), timeoutValue: placed ? m.value : null });
      } catch (err) {
        if (!(err instanceof MalformedMessageError)) throw err;
        const letter = deadLetter('orders', err.message, m, this.clock());
        dead.push({ key: letter.key, value: JSON.stringify(letter) });
        this.metrics.deadLetters.labels(ctx.key, 'orders', reasonLabel(err.message)).inc();
        this.log.warn({ partition: m.partition, offset: m.offset, reason: err.message }, 'malformed order message → dead-letter topic');
      }
    }
    const { rows, seen } = await this.claim(orders);
    await this.insert(rows);
    // After the rows: a mark is recorded only for what MySQL holds (restore-fence.ts).
    await recordMarks(this.opts.pool, ctx.key, seen, new Date(this.clock()));
    await this.opts.afterInsert?.(batch);
    await bctx.heartbeat();

    const byTopic = new Map<string, OutgoingMessage[]>();
    for (const r of rows) {
      if (r.status !== 'UNPAID') continue;
      let value: Buffer | string | null = r.timeoutValue;
      if (value === null) {
        const { bucket: _b, dueAt: _d, ...order } = r.order;
        const t: TimeoutMessage = { ...order, dueAt: r.dueAt, bucket: r.bucket };
        value = JSON.stringify(t);
      }
      const topic = ctx.names.topics.delay(r.bucket);
      const list = byTopic.get(topic) ?? [];
      list.push({ key: r.order.orderId, value, timestamp: r.order.createdAt });
      byTopic.set(topic, list);
    }
    if (dead.length > 0) byTopic.set(ctx.names.topics.deadLetter, dead);
    if (byTopic.size > 0) {
      if (!this.producer) throw new Error('order writer not started');
      await this.producer.send([...byTopic].map(([topic, messages]) => ({ topic, messages })));
    }
    await bctx.commit((BigInt(last.offset) + 1n).toString());
  }

  /**
   * Claims the reservations per SKU; reaped ones become CLOSED rows. Returns the SKUs' counters seen
   * (to record as marks); a SKU whose Redis went back in time is fenced instead (restore-fence.ts).
   * Its orders are written all the same: the API accepted them.
   */
  private async claim(orders: ParsedOrder[]): Promise<{ rows: WrittenRow[]; seen: Map<string, number> }> {
    const { ctx } = this.opts;
    const bySku = new Map<string, ParsedOrder[]>();
    for (const o of orders) {
      const list = bySku.get(o.order.skuId) ?? [];
      list.push(o);
      bySku.set(o.order.skuId, list);
    }
    const rows: WrittenRow[] = [];
    const seen = new Map<string, number>();
    // Read before the claims: a counter at or below a mark read earlier means Redis went back.
    const marks = bySku.size > 0 ? await readMarks(this.opts.pool, ctx.key, [...bySku.keys()]) : new Map<string, number>();
    await Promise.all(
      [...bySku].map(async ([skuId, list]) => {
        // The SKU's keys are named from the sale and the SKU id alone: no spec entry needed.
        const { results, seq }: { results: ClaimResult[]; seq: number } = await ctx.stock.claimWithSeq(skuId, list.map((o) => o.order.orderId));
        const unknown = list.filter((_, i) => results[i] === 'unknown').map((o) => o.order.orderId);
        // An order Redis never heard of is fine when MySQL has it (a replay after a rebuild).
        const missing = unknown.length > 0 ? await this.notInMysql(unknown) : [];
        const mark = marks.get(skuId) ?? 0;
        if ((seq > 0 && seq <= mark) || missing.length > 0) {
          this.log.error({ sku: skuId, seq, mark, unknownOrders: missing.slice(0, 5) }, 'Redis went back in time for this SKU (restored from an older snapshot?): fencing it until the rebuild from MySQL');
          await ctx.stock.fence(skuId);
        } else if (seq > 0) seen.set(skuId, seq);
        list.forEach(({ order, placement, timeoutValue }, i) => {
          rows.push({ order, status: results[i] === 'reaped' ? 'CLOSED' : 'UNPAID', dueAt: placement.dueAt, bucket: placement.bucket, timeoutValue });
        });
      }),
    );
    return { rows, seen };
  }

  private async notInMysql(orderIds: string[]): Promise<string[]> {
    const [rows] = await this.opts.pool.query('SELECT order_id FROM orders WHERE order_id IN (?)', [orderIds]);
    const found = new Set((rows as { order_id: string }[]).map((r) => r.order_id));
    return orderIds.filter((id) => !found.has(id));
  }

  private async insert(rows: WrittenRow[]): Promise<void> {
    if (rows.length === 0) return;
    const chunk = this.opts.insertChunk ?? 1000;
    const closedAt = new Date(this.clock());
    let inserted = 0;
    for (let i = 0; i < rows.length; i += chunk) {
      const values = rows.slice(i, i + chunk).map((r) => {
        const closed = r.status === 'CLOSED' ? closedAt : null; // closed_at and settled_at
        return [r.order.orderId, r.order.sale, r.order.skuId, r.order.userId, r.order.quantity, r.status, new Date(r.order.createdAt), new Date(r.dueAt), closed, closed];
      });
      inserted += await this.insertChunk(values);
    }
    const closed = rows.filter((r) => r.status === 'CLOSED').length;
    if (closed > 0) this.log.warn({ closed }, 'orders arrived after their reservation was reaped: written CLOSED');
    this.metrics.ordersWritten.labels(this.opts.ctx.key).inc(inserted);
  }

  private async insertChunk(values: unknown[][]): Promise<number> {
    for (let attempt = 1; ; attempt++) {
      try {
        const [res] = await this.opts.pool.query(INSERT_SQL, [values]);
        return (res as { affectedRows: number }).affectedRows;
      } catch (err) {
        // Concurrent batches that redeliver the same ids can deadlock on the key locks; the statement is idempotent.
        const code = (err as { code?: string }).code;
        if (attempt < 5 && (code === 'ER_LOCK_DEADLOCK' || code === 'ER_LOCK_WAIT_TIMEOUT')) continue;
        throw err;
      }
    }
  }
}

/** A bounded metric label from a parser message ("field quantity: …" → "field quantity"). */
function reasonLabel(message: string): string {
  if (message.startsWith('not JSON')) return 'not_json';
  if (message.startsWith('field ')) return message.slice(0, message.indexOf(':')).replace(' ', '_');
  if (message.startsWith('unknown SKU')) return 'unknown_sku';
  if (message.startsWith('sale ')) return 'foreign_sale';
  if (message.startsWith('unsupported message version')) return 'version';
  return message.replace(/[^a-z]+/gi, '_').slice(0, 32);
}
