// A sale for the timeout tests: its own database, topics and Redis keys, and helpers that place
// UNPAID orders the way the API + order writer leave them (stock reserved and claimed in Redis,
// row in MySQL, timeout message on the bucket's delay topic).
import { after } from 'node:test';
import type { Registry } from 'prom-client';
import type { Config } from '../../controller/config.ts';
import { OrderCloser, type Clock } from '../../controller/dataplane/close.ts';
import type { TimeoutMessage } from '../../controller/dataplane/messages.ts';
import { orderIdGenerator } from '../../controller/dataplane/order-id.ts';
import { ensureSchema, ensureStock, ensureTopics } from '../../controller/dataplane/provision.ts';
import { StockStore } from '../../controller/dataplane/stock.ts';
import { createPool, type Pool } from '../../controller/infra/mysql.ts';
import type { ConsumedMessage, KafkaGateway, KafkaProducer } from '../../controller/infra/kafka.ts';
import type { Redis } from '../../controller/infra/redis.ts';
import { createRegistry, dataPlaneMetrics, type DataPlaneMetrics } from '../../controller/metrics/dataplane.ts';
import { validateFlashSale, type FlashSale } from '../../controller/spec/flashsale.ts';
import { saleNames, type SaleNames } from '../../controller/spec/names.ts';
import { deleteRedisKeys, deleteTopics, dropDatabase, eventually, logger, testConfig, testKafka, testRedis, uniqueName } from './infra.ts';

export interface PlacedOrder {
  orderId: string;
  skuId: string;
  userId: string;
  quantity: number;
  createdAt: number;
  dueAt: number;
  bucket: string;
}

export interface SaleFixture {
  config: Config;
  sale: FlashSale;
  names: SaleNames;
  kafka: KafkaGateway;
  producer: KafkaProducer;
  redis: Redis;
  pool: Pool;
  stock: StockStore;
  registry: Registry;
  metrics: DataPlaneMetrics;
  closer(opts?: { clock?: Clock; afterCommit?: (ids: string[]) => void | Promise<void>; pool?: Pool; chunkSize?: number; deferMarking?: { idleMs: number; maxMs: number } }): OrderCloser;
  place(skuId: string, count: number, opts: { dueAt: number | ((i: number) => number); createdAt?: number; produce?: boolean; quantity?: (i: number) => number }): Promise<PlacedOrder[]>;
  produceTimeouts(orders: PlacedOrder[]): Promise<void>;
  statuses(): Promise<Map<string, { status: string; dueAt: number; closedAt: number | null }>>;
  count(sql: string, params?: unknown[]): Promise<number>;
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  /**
   * Waits (with a deadline) until Redis has applied the release of every CLOSED order of the SKU.
   * A close commits in MySQL before its release reaches Redis, so a test that saw the rows CLOSED
   * must wait for this before it reads the stock.
   */
  releasesApplied(skuId: string): Promise<void>;
  cleanup(): Promise<void>;
}

export interface SaleSetup {
  skus: { id: string; stock: number; timeoutBucket: string }[];
  buckets: { name: string; delay: string }[];
  partitions?: number;
}

export function saleDoc(namespace: string, setup: SaleSetup, extra: Record<string, unknown> = {}) {
  return {
    apiVersion: 'flashsale.dev/v1alpha1',
    kind: 'FlashSale',
    metadata: { name: 'sale', namespace },
    spec: { perUserLimit: 5, skus: setup.skus, timeoutBuckets: setup.buckets, kafka: { partitions: setup.partitions ?? 3, replicationFactor: 1 }, ...extra },
  };
}

export async function saleFixture(setup: SaleSetup): Promise<SaleFixture> {
  const namespace = uniqueName('to');
  const sale = validateFlashSale(saleDoc(namespace, setup));
  const names = saleNames(sale.metadata);
  const config = testConfig();
  await ensureSchema(config.mysql);
  const kafka = testKafka();
  const redis = testRedis();
  const pool = createPool(config.mysql, { connectionLimit: 12 });
  const stock = new StockStore(redis, sale);
  await ensureTopics(await kafka.admin(), sale);
  await ensureStock(stock, pool, sale, names.key);
  const producer = await kafka.producer();
  const registry = createRegistry();
  const metrics = dataPlaneMetrics(registry);
  const bucketOf = new Map(setup.skus.map((s) => [s.id, s.timeoutBucket]));
  let user = 0;
  // Ids as the API makes them (UUIDv7, time-ordered): orders placed together sit together in the
  // primary key, as they do in a sale.
  const nextOrderId = orderIdGenerator();

  const f: SaleFixture = {
    config, sale, names, kafka, producer, redis, pool, stock, registry, metrics,
    closer: (o = {}) => new OrderCloser({ pool: o.pool ?? pool, stock, saleKey: names.key, metrics, clock: o.clock, afterCommit: o.afterCommit, chunkSize: o.chunkSize, deferMarking: o.deferMarking }),
    async place(skuId, count, opts) {
      const createdAt = opts.createdAt ?? Date.now();
      const orders: PlacedOrder[] = [];
      for (let i = 0; i < count; i++) {
        const dueAt = typeof opts.dueAt === 'number' ? opts.dueAt : opts.dueAt(i);
        orders.push({ orderId: nextOrderId(), skuId, userId: `user-${++user}`, quantity: opts.quantity?.(i) ?? 1, createdAt, dueAt, bucket: bucketOf.get(skuId) as string });
      }
      const reserved = await Promise.all(orders.map((o) => stock.reserve({ ...o, reservedAt: createdAt }, sale.spec.perUserLimit)));
      if (reserved.some((r) => r.outcome !== 'reserved')) throw new Error(`could not reserve: ${JSON.stringify(reserved.find((r) => r.outcome !== 'reserved'))}`);
      for (let i = 0; i < orders.length; i += 1000) {
        const part = orders.slice(i, i + 1000);
        await stock.claim(skuId, part.map((o) => o.orderId));
        await pool.query('INSERT INTO orders (order_id, sale, sku_id, user_id, quantity, status, created_at, due_at) VALUES ?', [
          part.map((o) => [o.orderId, names.key, o.skuId, o.userId, o.quantity, 'UNPAID', new Date(o.createdAt), new Date(o.dueAt)]),
        ]);
      }
      if (opts.produce ?? true) await f.produceTimeouts(orders);
      return orders;
    },
    async produceTimeouts(orders) {
      const byTopic = new Map<string, TimeoutMessage[]>();
      for (const o of orders) {
        const t = names.topics.delay(o.bucket);
        const list = byTopic.get(t) ?? [];
        list.push({ v: 1, orderId: o.orderId, sale: names.key, skuId: o.skuId, userId: o.userId, quantity: o.quantity, createdAt: o.createdAt, dueAt: o.dueAt, bucket: o.bucket });
        byTopic.set(t, list);
      }
      for (const [topic, list] of byTopic) {
        for (let i = 0; i < list.length; i += 2000) {
          await producer.send([{ topic, messages: list.slice(i, i + 2000).map((m) => ({ key: m.orderId, value: JSON.stringify(m), timestamp: m.createdAt })) }]);
        }
      }
    },
    async statuses() {
      const [rows] = await pool.query('SELECT order_id, status, due_at, closed_at FROM orders WHERE sale = ?', [names.key]);
      return new Map(
        (rows as { order_id: string; status: string; due_at: Date; closed_at: Date | null }[]).map((r) => [
          r.order_id,
          { status: r.status, dueAt: r.due_at.getTime(), closedAt: r.closed_at ? r.closed_at.getTime() : null },
        ]),
      );
    },
    async count(sql, params = []) {
      const [rows] = await pool.query(sql, params);
      return Number(Object.values((rows as Record<string, unknown>[])[0] ?? {})[0] ?? 0);
    },
    async releasesApplied(skuId) {
      const closed = () => f.count(`SELECT COUNT(*) FROM orders WHERE sale = ? AND sku_id = ? AND status = 'CLOSED'`, [names.key, skuId]);
      await eventually(async () => (await redis.scard(names.redis.sku(skuId).released)) === (await closed()), { what: `releases of ${skuId}'s closed orders applied in Redis` });
    },
    async metric(name, labels = {}) {
      const m = registry.getSingleMetric(name);
      if (!m) throw new Error(`no metric ${name}`);
      const data = await m.get();
      return data.values
        .filter((v) => Object.entries(labels).every(([k, want]) => String((v.labels as Record<string, unknown>)[k]) === want))
        .filter((v) => {
          // Histograms report _bucket/_sum/_count series: count observations.
          const series = (v as { metricName?: string }).metricName;
          return series === undefined || series.endsWith('_count');
        })
        .reduce((s, v) => s + v.value, 0);
    },
    async cleanup() {
      await producer.disconnect().catch(() => undefined);
      await deleteTopics(kafka, `flashsale.${namespace}.`).catch(() => undefined);
      await kafka.close();
      await deleteRedisKeys(redis, names.redis.patterns);
      redis.disconnect();
      await pool.end();
      await dropDatabase(config);
    },
  };
  return f;
}

/** Reads a topic from the beginning with a throwaway group until `n` messages arrived. */
export async function readTopic(kafka: KafkaGateway, topic: string, n: number, timeoutMs = 30_000): Promise<ConsumedMessage[]> {
  const got: ConsumedMessage[] = [];
  const consumer = kafka.consumer({ groupId: `reader-${uniqueName()}`, topics: [topic] });
  await consumer.start(async (batch, ctx) => {
    got.push(...batch.messages);
    const last = batch.messages.at(-1);
    if (last) await ctx.commit((BigInt(last.offset) + 1n).toString());
  });
  try {
    await eventually(() => got.length >= n, { timeoutMs, what: `${n} messages on ${topic} (got ${got.length})` });
    return got;
  } finally {
    await consumer.stop();
  }
}

/**
 * Waits until epoch ms `t`. Only for load schedules (e.g. payments sent around a due instant), never
 * as a synchronisation: what a test asserts after it must hold however late it wakes.
 */
export const sleepUntil = (t: number) => new Promise((r) => setTimeout(r, Math.max(0, t - Date.now())));

export { logger };

/** saleFixture for one test file: every fixture it made is cleaned up after the file's tests. */
export function trackedFixtures(): (setup: SaleSetup) => Promise<SaleFixture> {
  const made: SaleFixture[] = [];
  after(async () => {
    for (const f of made) await f.cleanup();
  });
  return async (setup) => {
    const f = await saleFixture(setup);
    made.push(f);
    return f;
  };
}
