// `node test/bench/lib/accept-floor.ts server|writer <config.json>`: the accept path's floor as a
// running pipeline, the accept counterpart of the rejection floor (rejection-floor.ts). Where the
// parts' floor (parts.ts) adds up what Redis, Kafka and MariaDB cost per order when asked in
// batches, this runs an order path end to end under the same wrk load as the API, doing only what
// every accepted order needs, with the same parts asked the same way:
//   server (pinned like the API): read the body (taken from node:http's parser as the API takes it,
//   controller/dataplane/api-request.ts), JSON.parse it, check two strings; the reserve
//   script, one call per event-loop turn (the API's batching); a time-ordered order id (the API's
//   generator: InnoDB's clustered index wants them); the order as JSON; one produce
//   request in flight (acks=all, idempotent), orders gathered while it is in flight or for 2 ms when
//   idle (the API's BatchingProducer); the hand-off confirmation script, one call per produce
//   request; 202 with the order id.
//   writer (floating, like the order writer): a consumer group's batches, JSON.parse per order, the
//   claim script, the restore fence's mark read and upsert and one multi-row INSERT IGNORE per batch,
//   each order's timeout message produced (the order's bytes as they came), offsets committed.
// Left out, as our code's cost: routing, validation beyond the two strings, the sale window, the
// sold-out copy, the restore fence's checks, metrics, logging, the gateway's limits and retries,
// the order writer's dead letters and checks. bench:seckill runs it in each pair after the API's
// accept run: the orders/s it reaches is what an order path that does this much with these parts
// on node:http reaches on this machine, so a target above it is out of reach for this design.
import { produceGroupingInstalled } from '../../../controller/infra/kafka.ts';
import kafkajs from 'kafkajs';
import { readFileSync } from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import { ApiRequest, DEFAULT_MAX_BODY_BYTES as MAX_BODY } from '../../../controller/dataplane/api-request.ts';
import { orderIdGenerator } from '../../../controller/dataplane/order-id.ts';
import { reserveKeys, StockStore } from '../../../controller/dataplane/stock.ts';
import type { MysqlConfig } from '../../../controller/config.ts';
import { createPool } from '../../../controller/infra/mysql.ts';
import { createRedis } from '../../../controller/infra/redis.ts';
import { bucketOf, parseDuration, type FlashSale } from '../../../controller/spec/flashsale.ts';
import { saleNames } from '../../../controller/spec/names.ts';
import { chunks, type Scripts } from './parts.ts';

export interface AcceptFloorConfig {
  /** The server's port (POST: an order; GET: its counts as JSON). */
  port: number;
  /** The writer's port (GET: its count as JSON). */
  writerPort: number;
  sale: FlashSale;
  skuId: string;
  redisUrl: string;
  brokers: string[];
  ordersTopic: string;
  delayTopic: string;
  groupId: string;
  mysql: MysqlConfig;
  /** Tables made LIKE orders and sku_marks by the benchmark. */
  table: string;
  marksTable: string;
}

export interface AcceptFloorServerCounts {
  /** Reserves the script granted. */
  reserved: number;
  /** 202 answers. */
  accepted: number;
  /** Requests answered in any way. */
  answered: number;
  /** Reserves not answered 202 (a failed produce or confirmation, or a reaped reservation). */
  failed: number;
}

// The API's chunk sizes (stock.ts).
const RESERVE_CHUNK = 256;
const CONFIRM_CHUNK = 1000;
const LINGER_MS = 2;

function send(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

async function server(cfg: AcceptFloorConfig): Promise<void> {
  const saleKey = `${cfg.sale.metadata.namespace}/${cfg.sale.metadata.name}`;
  const sku = cfg.sale.spec.skus.find((s) => s.id === cfg.skuId);
  if (!sku) throw new Error(`accept floor: no SKU ${cfg.skuId} in the sale`);
  const delayMs = parseDuration(bucketOf(cfg.sale.spec, cfg.skuId).delay);
  const redis = createRedis(cfg.redisUrl);
  new StockStore(redis, cfg.sale);
  const scripts = redis as unknown as Scripts;
  const k = saleNames(cfg.sale.metadata).redis.sku(cfg.skuId);
  const kafka = new kafkajs.Kafka({ brokers: cfg.brokers, clientId: 'bench-accept-floor', logLevel: kafkajs.logLevel.NOTHING });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const counts: AcceptFloorServerCounts = { reserved: 0, accepted: 0, answered: 0, failed: 0 };
  // Time-ordered ids, as the API's: random ones land all over the table's clustered index, and the
  // writer's INSERTs slow down as the table grows (a first run with UUIDv4 fell behind by its third pair).
  const nextOrderId = orderIdGenerator();
  const answer = (res: ServerResponse, status: number, body: string) => {
    counts.answered++;
    send(res, status, body);
  };

  type Order = { res: ServerResponse; orderId: string; value: string };
  let reserveQueue: { res: ServerResponse; userId: string }[] = [];
  let produceQueue: Order[] = [];
  let inFlight = false;
  let timer: NodeJS.Timeout | undefined;

  const confirm = (orders: Order[]) => {
    for (const part of chunks(orders, CONFIRM_CHUNK)) {
      scripts.fsConfirm(k.reservations, k.reservationTimes, k.claimed, k.released, ...part.map((o) => o.orderId)).then(
        (codes) =>
          part.forEach((o, j) => {
            if (Number(codes[j]) === 0) {
              counts.failed++;
              return answer(o.res, 503, '{"error":"UNAVAILABLE"}');
            }
            counts.accepted++;
            answer(o.res, 202, `{"orderId":"${o.orderId}","status":"QUEUED"}`);
          }),
        () => part.forEach((o) => (counts.failed++, answer(o.res, 503, '{"error":"UNAVAILABLE"}'))),
      );
    }
  };
  const produce = () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    if (inFlight || produceQueue.length === 0) return;
    const orders = produceQueue;
    produceQueue = [];
    inFlight = true;
    const timestamp = String(Date.now());
    producer
      .sendBatch({ acks: -1, topicMessages: [{ topic: cfg.ordersTopic, messages: orders.map((o) => ({ key: cfg.skuId, value: o.value, timestamp })) }] })
      .then(
        () => confirm(orders),
        () => orders.forEach((o) => (counts.failed++, answer(o.res, 503, '{"error":"UNAVAILABLE"}'))),
      )
      .finally(() => {
        inFlight = false;
        if (produceQueue.length > 0) produce();
      });
  };
  const handOff = (o: Order) => {
    produceQueue.push(o);
    if (!inFlight) timer ??= setTimeout(produce, LINGER_MS);
  };
  const reserveTurn = () => {
    const all = reserveQueue;
    reserveQueue = [];
    for (const part of chunks(all, RESERVE_CHUNK)) {
      const now = Date.now();
      const args: (string | number)[] = [];
      const ids: string[] = [];
      for (const p of part) {
        const orderId = nextOrderId();
        ids.push(orderId);
        args.push(p.userId, 1, cfg.sale.spec.perUserLimit, orderId, JSON.stringify({ orderId, userId: p.userId, skuId: cfg.skuId, quantity: 1, reservedAt: now }), now);
      }
      scripts.fsReserve(...reserveKeys(k), ...args).then(
        (out) =>
          part.forEach((p, j) => {
            const code = Number(out[3 * j]);
            if (code === 1) {
              counts.reserved++;
              const orderId = ids[j] as string;
              const value = JSON.stringify({ v: 1, orderId, sale: saleKey, skuId: cfg.skuId, userId: p.userId, quantity: 1, createdAt: now, bucket: sku.timeoutBucket, dueAt: now + delayMs });
              handOff({ res: p.res, orderId, value });
            } else if (code === -2) answer(p.res, 409, `{"error":"ALREADY_ORDERED","orderId":${JSON.stringify(String(out[3 * j + 1]))}}`);
            else answer(p.res, 409, '{"error":"SOLD_OUT"}');
          }),
        () => part.forEach((p) => answer(p.res, 503, '{"error":"UNAVAILABLE"}')),
      );
    }
  };

  createServer({ IncomingMessage: ApiRequest }, (req, res) => {
    if (req.method === 'GET') return send(res, 200, JSON.stringify(counts));
    req.takeBody(MAX_BODY, (raw) => {
      let o: { userId?: unknown; skuId?: unknown };
      try {
        o = JSON.parse(raw ?? '') as typeof o;
      } catch {
        return answer(res, 400, '{"error":"INVALID_REQUEST"}');
      }
      if (typeof o?.userId !== 'string' || o.skuId !== cfg.skuId) return answer(res, 400, '{"error":"INVALID_REQUEST"}');
      reserveQueue.push({ res, userId: o.userId });
      if (reserveQueue.length === 1) setImmediate(reserveTurn);
    });
  }).listen(cfg.port, '127.0.0.1');
}

async function writer(cfg: AcceptFloorConfig): Promise<void> {
  const saleKey = `${cfg.sale.metadata.namespace}/${cfg.sale.metadata.name}`;
  const redis = createRedis(cfg.redisUrl);
  new StockStore(redis, cfg.sale);
  const scripts = redis as unknown as Scripts;
  const k = saleNames(cfg.sale.metadata).redis.sku(cfg.skuId);
  const pool = createPool(cfg.mysql);
  const kafka = new kafkajs.Kafka({ brokers: cfg.brokers, clientId: 'bench-accept-floor-writer', logLevel: kafkajs.logLevel.NOTHING });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  const consumer = kafka.consumer({ groupId: cfg.groupId });
  await producer.connect();
  await consumer.connect();
  await consumer.subscribe({ topic: cfg.ordersTopic, fromBeginning: true });
  const counts = { written: 0, batches: 0 };
  let seq = 0;
  await consumer.run({
    eachBatchAutoResolve: false,
    eachBatch: async ({ batch, resolveOffset, commitOffsetsIfNecessary }) => {
      const last = batch.messages.at(-1);
      if (!last) return;
      const orders = batch.messages.map((m) => JSON.parse((m.value as Buffer).toString('utf8')) as { orderId: string; userId: string; quantity: number; createdAt: number; dueAt: number });
      const claimed = await scripts.fsClaim(k.reservations, k.reservationTimes, k.released, k.claimed, k.seq, k.seeded, ...orders.map((o) => o.orderId));
      seq = Math.max(seq, Number(claimed.at(-1)));
      await pool.query(`SELECT sku_id, seq FROM ${cfg.marksTable} WHERE sale = ? AND sku_id IN (?)`, [saleKey, [cfg.skuId]]);
      const [res] = await pool.query(`INSERT IGNORE INTO ${cfg.table} (order_id, sale, sku_id, user_id, quantity, status, created_at, due_at, closed_at) VALUES ?`, [
        orders.map((o) => [o.orderId, saleKey, cfg.skuId, o.userId, o.quantity, 'UNPAID', new Date(o.createdAt), new Date(o.dueAt), null]),
      ]);
      await pool.query(`INSERT INTO ${cfg.marksTable} (sale, sku_id, seq, updated_at) VALUES ? ON DUPLICATE KEY UPDATE seq = GREATEST(seq, VALUES(seq)), updated_at = VALUES(updated_at)`, [[[saleKey, cfg.skuId, seq, new Date()]]]);
      await producer.sendBatch({ acks: -1, topicMessages: [{ topic: cfg.delayTopic, messages: batch.messages.map((m, i) => ({ key: (orders[i] as { orderId: string }).orderId, value: m.value })) }] });
      counts.written += (res as { affectedRows: number }).affectedRows;
      counts.batches++;
      resolveOffset(last.offset);
      await commitOffsetsIfNecessary();
    },
  });
  createServer((_req, res) => send(res, 200, JSON.stringify(counts))).listen(cfg.writerPort, '127.0.0.1');
}

if (import.meta.main) {
  const [mode, file] = process.argv.slice(2);
  if ((mode !== 'server' && mode !== 'writer') || !file) throw new Error('usage: accept-floor.ts server|writer <config.json>');
  if (!produceGroupingInstalled()) throw new Error('accept floor: kafkajs was loaded before the Kafka gateway');
  const cfg = JSON.parse(readFileSync(file, 'utf8')) as AcceptFloorConfig;
  await (mode === 'server' ? server(cfg) : writer(cfg));
  process.on('SIGTERM', () => process.exit(0));
}

/** The floor's topics (6 partitions, as the sale's) and its tables LIKE orders and sku_marks. */
export async function prepareAcceptFloor(cfg: AcceptFloorConfig, pool: { query(sql: string): Promise<unknown> }): Promise<void> {
  const admin = new kafkajs.Kafka({ brokers: cfg.brokers, clientId: 'bench-accept-floor-admin', logLevel: kafkajs.logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    await admin.createTopics({ topics: [cfg.ordersTopic, cfg.delayTopic].map((topic) => ({ topic, numPartitions: 6, replicationFactor: 1 })), waitForLeaders: true });
  } finally {
    await admin.disconnect();
  }
  await pool.query(`CREATE TABLE ${cfg.table} LIKE orders`);
  await pool.query(`CREATE TABLE ${cfg.marksTable} LIKE sku_marks`);
}

export async function removeAcceptFloor(cfg: AcceptFloorConfig, pool: { query(sql: string): Promise<unknown> }): Promise<void> {
  const admin = new kafkajs.Kafka({ brokers: cfg.brokers, clientId: 'bench-accept-floor-admin', logLevel: kafkajs.logLevel.NOTHING }).admin();
  await admin.connect();
  await admin.deleteTopics({ topics: [cfg.ordersTopic, cfg.delayTopic] }).catch(() => undefined);
  await admin.disconnect();
  await pool.query(`DROP TABLE IF EXISTS ${cfg.table}, ${cfg.marksTable}`);
}
