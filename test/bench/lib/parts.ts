// The parts' floor of the accept path: the work every accepted order needs from Redis, Kafka and
// MariaDB, asked of them through the same client libraries with none of our code in between, as CPU
// of the client (this process) and of the server per order. Added to the bare node:http server's CPU
// per request it is the least an order can cost on this stack: when the machine's cores divided by
// it fall short of the accept target's rate, no change to our code reaches the target here.
//
// Per order, as the pipeline does it: the reserve script (one call per batch, as the API gathers the
// reserves of one event-loop turn); the hand-off confirmation script (one call per batch: no 202 for
// a reservation the reaper returned, issue 13); the claim script (one call per batch); the order
// produced with acks=all by an idempotent producer (one request per batch, key = the SKU, so one
// partition as in the accept runs); fetched and committed by a consumer group; its timeout message
// produced (key = order id); one row of a multi-row INSERT IGNORE into a table like `orders`, with
// the restore fence's read and upsert of the SKU's mark around it (one each per batch, as the
// writer does; restore-fence.ts). Left out, so the floor is if anything low: HTTP request parsing
// beyond the bare server's, message encoding, parsing and checks.
// The gateway's module replaces kafkajs's request-queue timer loop, its produce request encoder and
// its grouping of messages per partition on load (every pipeline process has them), so the floor's
// kafkajs clients run as the pipeline's do; the grouping needs the gateway loaded before kafkajs.
import { produceGroupingInstalled } from '../../../controller/infra/kafka.ts';
import kafkajs from 'kafkajs';
import type { Pool } from 'mysql2/promise';
import { reserveKeys, StockStore } from '../../../controller/dataplane/stock.ts';
import type { Redis } from '../../../controller/infra/redis.ts';
import type { FlashSale } from '../../../controller/spec/flashsale.ts';
import { saleNames } from '../../../controller/spec/names.ts';
import { eventually } from '../../support/infra.ts';
import { cpuSeconds } from './system.ts';

export type Part = 'redis' | 'kafka' | 'mysql';

export interface PartsFloor {
  orders: number;
  /** Orders per reserve and claim call, per produce request, and per INSERT statement. */
  batch: number;
  /** How the reserves were sent: one script call per batch (since the API batches its reserves); absent in older results: one call per order, pipelined. */
  reserve?: 'batched';
  /** The hand-off confirmation script and the restore fence's marks are in (absent in results before 2026-12-04 21:40). */
  confirmAndMarks?: true;
  /** CPU µs per order of each part, client and server together. */
  usPerOrder: Record<Part, number>;
  /** CPU seconds of each part, the client (this process) and the server apart. */
  seconds: Record<Part, { client: number; server: number }>;
}

export interface PartsOptions {
  orders: number;
  batch: number;
  /** Distinguishes the ids of one measurement from another's (order ids, users, topics, table). */
  tag: string;
  /** A SKU of the sale with stock for `orders` more units, used by nothing else. */
  sale: FlashSale;
  skuId: string;
  redis: Redis;
  brokers: string[];
  partitions: number;
  pool: Pool;
  servers: Record<Part, number[]>;
}

const sum = (pids: number[]) => pids.reduce((s, p) => s + cpuSeconds(p), 0);

async function measured(server: number[], work: () => Promise<void>): Promise<{ client: number; server: number }> {
  const c0 = cpuSeconds(process.pid);
  const s0 = sum(server);
  await work();
  return { client: cpuSeconds(process.pid) - c0, server: sum(server) - s0 };
}

export function chunks<T>(all: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < all.length; i += size) out.push(all.slice(i, i + size));
  return out;
}

/** The pipeline's Redis scripts as StockStore defines them on a client. */
export type Scripts = { fsReserve(...a: (string | number)[]): Promise<(number | string)[]>; fsConfirm(...a: string[]): Promise<number[]>; fsClaim(...a: string[]): Promise<number[]> };

export async function measureParts(o: PartsOptions): Promise<PartsFloor> {
  if (!produceGroupingInstalled()) throw new Error('the parts\' floor: kafkajs was loaded before the Kafka gateway, so its producer groups messages as kafkajs 2.2.4 does and the pipeline\'s do not; import controller/infra/kafka.ts first');
  const now = Date.now();
  const names = saleNames(o.sale.metadata);
  const saleKey = `${o.sale.metadata.namespace}/${o.sale.metadata.name}`;
  // Each part first does a quarter of the work unmeasured: a process's first thousands of calls run
  // before V8 (and the broker's JIT) have compiled them, and the pipeline's processes are warm.
  const order = (id: string) => ({ id, value: JSON.stringify({ v: 1, orderId: id, sale: saleKey, skuId: o.skuId, userId: `user-${id}`, quantity: 1, createdAt: now, bucket: 'long', dueAt: now + 60_000 }) });
  const warm = Array.from({ length: Math.max(1, Math.floor(o.orders / 4)) }, (_, i) => order(`${o.tag}-w${String(i).padStart(8, '0')}`));
  const measuredOrders = Array.from({ length: o.orders }, (_, i) => order(`${o.tag}-${String(i).padStart(8, '0')}`));

  // Redis: the scripts as the API and the writer run them (defined on the client by StockStore).
  new StockStore(o.redis, o.sale);
  const scripts = o.redis as unknown as Scripts;
  const k = names.redis.sku(o.skuId);
  const redisWork = async (list: { id: string }[]) => {
    for (const part of chunks(list, o.batch)) {
      const args: (string | number)[] = [];
      for (const { id } of part) args.push(`user-${id}`, 1, 1, id, `{"orderId":"${id}","userId":"user-${id}","skuId":"${o.skuId}","quantity":1,"reservedAt":${now}}`, now);
      const out = await scripts.fsReserve(...reserveKeys(k), ...args);
      const bad = part.findIndex((_, j) => Number(out[3 * j]) !== 1);
      if (bad >= 0) throw new Error(`parts floor: a reserve did not reserve: ${JSON.stringify(out.slice(3 * bad, 3 * bad + 3))}`);
    }
    for (const part of chunks(list, o.batch)) {
      const kept = await scripts.fsConfirm(k.reservations, k.reservationTimes, k.claimed, k.released, ...part.map((x) => x.id));
      if (kept.some((c) => Number(c) !== 1)) throw new Error('parts floor: a hand-off confirmation did not keep its reservation');
    }
    for (const part of chunks(list, o.batch)) {
      const codes = await scripts.fsClaim(k.reservations, k.reservationTimes, k.released, k.claimed, k.seq, k.seeded, ...part.map((x) => x.id));
      if (codes.slice(0, -1).some((c) => Number(c) !== 1)) throw new Error('parts floor: a claim did not claim');
    }
  };
  await redisWork(warm);
  const redis = await measured(o.servers.redis, () => redisWork(measuredOrders));

  // Kafka: kafkajs alone, set up as the gateway sets it up (idempotent producer, one request in flight, acks=all).
  const client = new kafkajs.Kafka({ brokers: o.brokers, clientId: `bench-parts-${o.tag}`, logLevel: kafkajs.logLevel.NOTHING });
  const admin = client.admin();
  const ordersTopic = `bench-parts-${o.tag}-orders`;
  const delayTopic = `bench-parts-${o.tag}-delay`;
  const producer = client.producer({ idempotent: true, maxInFlightRequests: 1 });
  const consumer = client.consumer({ groupId: `bench-parts-${o.tag}` });
  await admin.connect();
  let kafka: { client: number; server: number };
  try {
    await admin.createTopics({ topics: [ordersTopic, delayTopic].map((topic) => ({ topic, numPartitions: o.partitions, replicationFactor: 1 })), waitForLeaders: true });
    await producer.connect();
    await consumer.connect();
    await consumer.subscribe({ topic: ordersTopic, fromBeginning: true });
    let consumed = 0;
    await consumer.run({
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, resolveOffset, commitOffsetsIfNecessary }) => {
        const last = batch.messages.at(-1);
        consumed += batch.messages.length;
        if (last) resolveOffset(last.offset);
        await commitOffsetsIfNecessary();
      },
    });
    const kafkaWork = async (list: { id: string; value: string }[]) => {
      const until = consumed + list.length;
      for (const part of chunks(list, o.batch)) {
        await producer.sendBatch({ acks: -1, topicMessages: [{ topic: ordersTopic, messages: part.map(({ value }) => ({ key: o.skuId, value })) }] });
      }
      await eventually(() => consumed >= until || undefined, { timeoutMs: 120_000, intervalMs: 20, what: `${until} parts-floor messages consumed` });
      for (const part of chunks(list, o.batch)) {
        await producer.sendBatch({ acks: -1, topicMessages: [{ topic: delayTopic, messages: part.map(({ id, value }) => ({ key: id, value })) }] });
      }
    };
    await kafkaWork(warm);
    kafka = await measured(o.servers.kafka, () => kafkaWork(measuredOrders));
  } finally {
    await consumer.disconnect().catch(() => undefined);
    await producer.disconnect().catch(() => undefined);
    await admin.deleteTopics({ topics: [ordersTopic, delayTopic] }).catch(() => undefined);
    await admin.disconnect().catch(() => undefined);
  }

  // MariaDB: the writer's statements into tables like `orders` and `sku_marks`.
  const table = `parts_${o.tag.replace(/[^a-zA-Z0-9_]/g, '_')}`;
  const marks = `${table}_marks`;
  await o.pool.query(`CREATE TABLE ${table} LIKE orders`);
  await o.pool.query(`CREATE TABLE ${marks} LIKE sku_marks`);
  let mysql: { client: number; server: number };
  try {
    const due = new Date(now + 60_000);
    const created = new Date(now);
    const mysqlWork = async (list: { id: string }[]) => {
      let seq = 0;
      for (const part of chunks(list, o.batch)) {
        await o.pool.query(`SELECT sku_id, seq FROM ${marks} WHERE sale = ? AND sku_id IN (?)`, [saleKey, [o.skuId]]);
        const [res] = await o.pool.query(`INSERT IGNORE INTO ${table} (order_id, sale, sku_id, user_id, quantity, status, created_at, due_at, closed_at) VALUES ?`, [
          part.map(({ id }) => [id, saleKey, o.skuId, `user-${id}`, 1, 'UNPAID', created, due, null]),
        ]);
        if ((res as { affectedRows: number }).affectedRows !== part.length) throw new Error('parts floor: an INSERT did not insert every row');
        seq += part.length;
        await o.pool.query(`INSERT INTO ${marks} (sale, sku_id, seq, updated_at) VALUES ? ON DUPLICATE KEY UPDATE seq = GREATEST(seq, VALUES(seq)), updated_at = VALUES(updated_at)`, [[[saleKey, o.skuId, seq, created]]]);
      }
    };
    await mysqlWork(warm);
    mysql = await measured(o.servers.mysql, () => mysqlWork(measuredOrders));
  } finally {
    await o.pool.query(`DROP TABLE ${table}, ${marks}`);
  }

  const seconds = { redis, kafka, mysql };
  const per = (s: { client: number; server: number }) => ((s.client + s.server) / o.orders) * 1e6;
  return { orders: o.orders, batch: o.batch, reserve: 'batched', confirmAndMarks: true, usPerOrder: { redis: per(redis), kafka: per(kafka), mysql: per(mysql) }, seconds };
}
