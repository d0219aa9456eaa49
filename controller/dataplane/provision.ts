// Provisioning of a sale's external state: Kafka topics, the MySQL schema, Redis stock.
// Standalone mode (`flashsale run`) and the operator call these same functions. Each one checks
// everything it would refuse before it changes anything, so a refused change leaves no partial state.
import type { MysqlConfig } from '../config.ts';
import type { KafkaAdmin, TopicSpec } from '../infra/kafka.ts';
import { latestSchemaVersion, migrate, type Pool } from '../infra/mysql.ts';
import { deleteKeysMatching, type Redis } from '../infra/redis.ts';
import type { FlashSale } from '../spec/flashsale.ts';
import { saleNames, type NameOptions, type TopicPurpose } from '../spec/names.ts';
import { recordMarks } from './restore-fence.ts';
import { rebuiltCounter, type SkuLedger, type StockStore } from './stock.ts';

/** A requested change the external system cannot make (partition decrease, stock cut below sold). */
export class NotSupportedError extends Error {
  override name = 'NotSupportedError';
  readonly reason = 'NotSupported';
}

/**
 * A SKU's Redis keys are missing and orders may still be on their way from Kafka to MySQL: the
 * rebuild would miss them (and sell their units twice), so it waits until the order writer drained.
 */
export class RebuildBlockedError extends Error {
  override name = 'RebuildBlockedError';
  readonly reason = 'WaitingForOrderWriter';
}

/**
 * How long a SKU's keys must have been missing before they are rebuilt from MySQL (besides the orders
 * topic being drained): orders an API reserved before the loss may still sit in its producer. The
 * operator's REBUILD_GRACE default and `flashsale run`'s periodic check.
 */
export const REBUILD_GRACE_MS = 30_000;

/** True when the order writer's group has committed everything in the orders topic. */
export async function ordersDrained(admin: KafkaAdmin, sale: FlashSale, nameOptions: NameOptions = {}): Promise<boolean> {
  const n = saleNames(sale.metadata, nameOptions);
  const [watermarks, committed] = await Promise.all([admin.topicOffsets(n.topics.orders), admin.groupOffsets(n.groups.orderWriter, [n.topics.orders])]);
  const at = new Map(committed.map((c) => [c.partition, c.offset]));
  return watermarks.every((w) => BigInt(at.get(w.partition) ?? w.low) >= BigInt(w.high));
}

export interface PlannedTopic extends TopicSpec {
  purpose: TopicPurpose;
}

export function plannedTopics(sale: FlashSale, nameOptions: NameOptions = {}): PlannedTopic[] {
  const n = saleNames(sale.metadata, nameOptions);
  const { partitions, replicationFactor } = sale.spec.kafka;
  const t = (topic: string, purpose: TopicPurpose): PlannedTopic => ({ topic, partitions, replicationFactor, purpose });
  return [
    t(n.topics.orders, 'orders'),
    ...sale.spec.timeoutBuckets.map((b) => t(n.topics.delay(b.name), 'delay')),
    t(n.topics.retry, 'retry'),
    t(n.topics.deadLetter, 'dead-letter'),
  ];
}

export interface TopicsOutcome {
  topics: { name: string; partitions: number; purpose: TopicPurpose }[];
  created: string[];
  grown: string[];
}

/** Creates missing topics and grows partitions; a partition decrease is refused with nothing touched. */
export async function ensureTopics(admin: KafkaAdmin, sale: FlashSale, nameOptions: NameOptions = {}): Promise<TopicsOutcome> {
  const planned = plannedTopics(sale, nameOptions);
  const existing = new Map((await admin.describeTopics(planned.map((p) => p.topic))).map((d) => [d.topic, d.partitions]));
  const shrinking = planned.filter((p) => (existing.get(p.topic) ?? 0) > p.partitions);
  if (shrinking.length > 0) {
    throw new NotSupportedError(
      `Kafka cannot decrease partitions: ${shrinking.map((p) => `${p.topic} has ${existing.get(p.topic)}, spec asks ${p.partitions}`).join('; ')}`,
    );
  }
  const missing = planned.filter((p) => !existing.has(p.topic));
  const growing = planned.filter((p) => existing.has(p.topic) && (existing.get(p.topic) ?? 0) < p.partitions);
  if (missing.length > 0) await admin.createTopics(missing);
  for (const p of growing) await admin.createPartitions(p.topic, p.partitions);
  return {
    topics: planned.map((p) => ({ name: p.topic, partitions: p.partitions, purpose: p.purpose })),
    created: missing.map((p) => p.topic),
    grown: growing.map((p) => p.topic),
  };
}

/** Creates the database if needed and applies pending migrations. */
export async function ensureSchema(cfg: MysqlConfig): Promise<{ applied: number[]; version: number }> {
  const applied = await migrate(cfg);
  return { applied, version: latestSchemaVersion };
}

/**
 * What MySQL knows of a SKU: units held per user in UNPAID/PAID orders and the CLOSED order ids,
 * read in one snapshot (an order closed between two separate reads would count as held and as
 * released, and its units would never come back).
 */
export async function skuLedger(pool: Pool, saleKey: string, skuId: string): Promise<SkuLedger> {
  const conn = await pool.getConnection();
  try {
    await conn.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ');
    await conn.query('START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY');
    const [held] = await conn.query(
      // Order ids are UUIDv7 (time-ordered): MAX is the user's latest order.
      `SELECT user_id, SUM(quantity) AS units, MAX(order_id) AS last_order FROM orders WHERE sale = ? AND sku_id = ? AND status IN ('UNPAID','PAID') GROUP BY user_id`,
      [saleKey, skuId],
    );
    const [closed] = await conn.query(`SELECT order_id FROM orders WHERE sale = ? AND sku_id = ? AND status = 'CLOSED'`, [saleKey, skuId]);
    const [mark] = await conn.query('SELECT seq FROM sku_marks WHERE sale = ? AND sku_id = ?', [saleKey, skuId]);
    await conn.query('COMMIT');
    return {
      mark: Number((mark as { seq: string | number }[])[0]?.seq ?? 0),
      heldByUser: new Map((held as { user_id: string; units: string | number }[]).map((r) => [r.user_id, Number(r.units)])),
      lastOrderByUser: new Map((held as { user_id: string; last_order: string }[]).map((r) => [r.user_id, r.last_order])),
      closedOrderIds: (closed as { order_id: string }[]).map((r) => r.order_id),
    };
  } catch (err) {
    // Never hand an open transaction back to the pool.
    await conn.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    conn.release();
  }
}

/** Units per SKU held by UNPAID or PAID orders in MySQL (what is sold, independent of Redis). */
export async function soldUnits(pool: Pool, saleKey: string): Promise<Map<string, number>> {
  const [rows] = await pool.query(
    `SELECT sku_id, SUM(quantity) AS units FROM orders WHERE sale = ? AND status IN ('UNPAID','PAID') GROUP BY sku_id`,
    [saleKey],
  );
  return new Map((rows as { sku_id: string; units: string | number }[]).map((r) => [r.sku_id, Number(r.units)]));
}

export interface StockOutcome {
  skus: { id: string; stock: number; remaining: number }[];
  seeded: string[];
  rebuilt: string[];
  adjusted: string[];
}

/** The SKUs' switches as this call left them (spec.suspend, spec.skus[].suspend). */
export interface SuspensionOutcome {
  /** spec.suspend: every SKU's switch is set. */
  suspended: boolean;
  /** Every SKU whose switch is set now. */
  skus: string[];
  /** The switches this call set and cleared. */
  turnedOn: string[];
  turnedOff: string[];
}

/**
 * Seeds each SKU once; applies stock changes (a raise adds the difference, a cut below what is sold
 * is refused); rebuilds a SKU whose keys Redis lost from the orders in MySQL instead of re-seeding it.
 *
 * A SKU without keys is either new (never seeded: no order for it can exist, since the API reserves
 * only against seeded keys) or lost (Redis forgot it). MySQL tells them apart: a seeded marker
 * (sku_marks row) is written before the first seeding. A new SKU is seeded at once, so a SKU added
 * mid-sale sells as soon as the API knows it. With `ordersDrained`, a lost SKU is rebuilt only once
 * no order is left between Kafka and MySQL (RebuildBlockedError otherwise, after the new SKUs were
 * seeded); a new sale's empty orders topic counts as drained.
 *
 * spec.suspend and spec.skus[].suspend are applied first, on every SKU, and reported to
 * `onSuspension` before anything below can refuse: the emergency stop takes effect even when the
 * same edit asks for a stock cut that is refused.
 */
export async function ensureStock(
  stock: StockStore,
  pool: Pool,
  sale: FlashSale,
  saleKey: string,
  options: { ordersDrained?: () => Promise<boolean>; onSuspension?: (outcome: SuspensionOutcome) => void } = {},
): Promise<StockOutcome> {
  const levels = await Promise.all(sale.spec.skus.map(async (s) => ({ sku: s, ...(await stock.state(s.id)) })));
  // The switches first, on every SKU (seeded or not): a SKU seeded or rebuilt below is refused from
  // its first reservation, and a refused change further down leaves the switches as asked.
  const suspend = sale.spec.suspend === true;
  const wanted = (sku: (typeof levels)[number]['sku']) => suspend || sku.suspend === true;
  const toggled = (await Promise.all(levels.filter((l) => l.suspended !== wanted(l.sku)).map(async (l) => ((await stock.setSuspended(l.sku.id, wanted(l.sku))) ? [l.sku] : [])))).flat();
  options.onSuspension?.({
    suspended: suspend,
    skus: levels.filter((l) => wanted(l.sku)).map((l) => l.sku.id),
    turnedOn: toggled.filter(wanted).map((k) => k.id),
    turnedOff: toggled.filter((k) => !wanted(k)).map((k) => k.id),
  });
  const missing = levels.filter((l) => !l.level).map((l) => l.sku.id);
  const seededBefore = missing.length > 0 ? await seededSkus(pool, saleKey, missing) : new Set<string>();
  const lost = missing.filter((id) => seededBefore.has(id));
  const blocked = lost.length > 0 && options.ordersDrained !== undefined && !(await options.ordersDrained());
  const cuts = levels.filter(({ sku, level }) => level && sku.stock < level.stock - level.remaining);
  if (cuts.length > 0) {
    throw new NotSupportedError(
      `stock cannot go below what is already sold: ${cuts.map(({ sku, level }) => `${sku.id} has sold ${(level?.stock ?? 0) - (level?.remaining ?? 0)}, spec asks ${sku.stock}`).join('; ')}`,
    );
  }
  const fresh = missing.filter((id) => !seededBefore.has(id));
  // Durable before any key exists: a crash after this line makes the SKU "lost", the safe side.
  if (fresh.length > 0) await markSeeded(pool, saleKey, fresh);
  const outcome: StockOutcome = { skus: [], seeded: [], rebuilt: [], adjusted: [] };
  for (const { sku, level } of levels) {
    if (!level) {
      if (blocked && seededBefore.has(sku.id)) continue;
      const ledger = await skuLedger(pool, saleKey, sku.id);
      const fromOrders = ledger.heldByUser.size > 0 || ledger.closedOrderIds.length > 0;
      // The epoch the rebuild starts is recorded before any key exists, so the next rebuild starts
      // the one above it even when no claim of this epoch was recorded (a second loss before the
      // writer claimed anything): else it would start below counters the API replicas saw, and they
      // would fence every rebuild as a restore.
      const counter = rebuiltCounter(ledger.mark ?? 0);
      await recordMarks(pool, saleKey, new Map([[sku.id, counter]]));
      if (await stock.rebuild(sku.id, sku.stock, ledger, counter)) (fromOrders ? outcome.rebuilt : outcome.seeded).push(sku.id);
    } else if (level.stock !== sku.stock) {
      const r = await stock.adjust(sku.id, sku.stock);
      if (r.outcome === 'below-sold') throw new NotSupportedError(`stock cannot go below what is already sold: ${sku.id} has sold ${r.sold}, spec asks ${sku.stock}`);
      if (r.outcome === 'changed') outcome.adjusted.push(sku.id);
    }
    const now = await stock.level(sku.id);
    outcome.skus.push({ id: sku.id, stock: now?.stock ?? sku.stock, remaining: now?.remaining ?? 0 });
  }
  if (blocked) {
    throw new RebuildBlockedError(`stock of ${lost.join(', ')} is missing in Redis; it is rebuilt from MySQL once the order writer has written every order still in the orders topic`);
  }
  return outcome;
}

/**
 * SKUs of the sale that were seeded before: a sku_marks row exists (the seeded marker, or a counter
 * mark a worker recorded), or MySQL holds an order for it (SKUs seeded before markers existed).
 */
export async function seededSkus(pool: Pool, saleKey: string, skuIds: string[]): Promise<Set<string>> {
  const [marked] = await pool.query('SELECT sku_id FROM sku_marks WHERE sale = ? AND sku_id IN (?)', [saleKey, skuIds]);
  const out = new Set((marked as { sku_id: string }[]).map((r) => r.sku_id));
  const rest = skuIds.filter((id) => !out.has(id));
  if (rest.length > 0) {
    const [ordered] = await pool.query('SELECT DISTINCT sku_id FROM orders WHERE sale = ? AND sku_id IN (?)', [saleKey, rest]);
    for (const r of ordered as { sku_id: string }[]) out.add(r.sku_id);
  }
  return out;
}

/** Records that the SKUs are being seeded (a mark of 0 fences nothing: restore-fence.ts). */
async function markSeeded(pool: Pool, saleKey: string, skuIds: string[]): Promise<void> {
  const now = new Date();
  await pool.query('INSERT IGNORE INTO sku_marks (sale, sku_id, seq, updated_at) VALUES ?', [skuIds.map((id) => [saleKey, id, 0, now])]);
}

/** deletionPolicy: Delete — removes the sale's topics and Redis keys. Orders in MySQL stay. */
export async function deleteSaleData(admin: KafkaAdmin, redis: Redis, sale: FlashSale, nameOptions: NameOptions = {}): Promise<void> {
  await admin.deleteTopics(plannedTopics(sale, nameOptions).map((p) => p.topic));
  await deleteKeysMatching(redis, saleNames(sale.metadata, nameOptions).redis.patterns);
}
