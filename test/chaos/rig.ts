// The rig of the fault scenarios and the chaos run: a throw-away Kafka broker and a throw-away Redis,
// the shared MariaDB (own database), a fault proxy in front of each, a sale of its own, the real
// worker processes pointed at the proxies, a purchase storm (buyers + payers, bounded), and the
// faults of issue 13 as named functions that inject and heal.
import { randomBytes } from 'node:crypto';
import { Agent, request } from 'node:http';
import type { Config } from '../../controller/config.ts';
import { ensureSchema, ensureStock, ensureTopics, ordersDrained, RebuildBlockedError } from '../../controller/dataplane/provision.ts';
import { StockStore } from '../../controller/dataplane/stock.ts';
import { createKafkaGateway, type KafkaGateway } from '../../controller/infra/kafka.ts';
import { createPool, type Pool } from '../../controller/infra/mysql.ts';
import { createRedis, type Redis } from '../../controller/infra/redis.ts';
import { validateFlashSale, type FlashSale } from '../../controller/spec/flashsale.ts';
import { saleNames } from '../../controller/spec/names.ts';
import { checkInvariants, waitQuiet, type AcknowledgedOrder, type CheckResult } from '../support/checker.ts';
import { dropDatabase, logger, testConfig, uniqueName } from '../support/infra.ts';
import { startBroker, type ThrowawayBroker } from '../support/faults/kafka-broker.ts';
import { saleFile, worker, when, type Worker } from '../support/faults/processes.ts';
import { freePort, startProxy, type Proxy } from '../support/faults/proxy.ts';
import { resetGroupToEarliest, restore, saleKeys, snapshot, startRedis, type RedisSnapshot, type ThrowawayRedis } from '../support/faults/redis.ts';

/** Infrastructure that lives for a whole test file / chaos run (the broker takes ~20–30 s to start). */
export interface Infra {
  broker: ThrowawayBroker;
  kafkaProxy: Proxy;
  redis: ThrowawayRedis;
  redisProxy: Proxy;
  mysqlProxy: Proxy;
  config: Config;
  close(): Promise<void>;
}

export async function startInfra(): Promise<Infra> {
  const config = testConfig();
  const kafkaPort = await freePort();
  // Started together; when one fails the other is stopped, so a failed start leaves no child behind
  // (a leftover redis-server kept the test file's process alive after its before hook failed).
  const [brokerStart, redisStart] = await Promise.allSettled([startBroker({ advertisedPort: kafkaPort }), startRedis()]);
  if (brokerStart.status === 'rejected' || redisStart.status === 'rejected') {
    await Promise.allSettled([brokerStart.status === 'fulfilled' ? brokerStart.value.stop() : undefined, redisStart.status === 'fulfilled' ? redisStart.value.stop() : undefined]);
    throw brokerStart.status === 'rejected' ? brokerStart.reason : (redisStart as PromiseRejectedResult).reason;
  }
  const broker = brokerStart.value;
  const redis = redisStart.value;
  const kafkaProxy = await startProxy({ target: `127.0.0.1:${broker.port}`, listen: kafkaPort });
  const redisProxy = await startProxy({ target: `127.0.0.1:${redis.port}` });
  const mysqlProxy = await startProxy({ target: `${config.mysql.host}:${config.mysql.port}` });
  await ensureSchema(config.mysql);
  return {
    broker, kafkaProxy, redis, redisProxy, mysqlProxy, config,
    async close() {
      await Promise.all([kafkaProxy.close(), redisProxy.close(), mysqlProxy.close()]);
      await Promise.all([broker.stop(), redis.stop()]);
      await dropDatabase(config).catch(() => undefined);
    },
  };
}

export type Mode = 'separate' | 'run';

export interface Rig {
  infra: Infra;
  sale: FlashSale;
  mode: Mode;
  api: Worker;
  workers: Worker[];
  kafka: KafkaGateway;
  redis: Redis;
  pool: Pool;
  stock: StockStore;
  acknowledged: Map<string, AcknowledgedOrder>;
  paid: Set<string>;
  /** Requests answered, by status code. */
  answers: Map<number, number>;
  /** Purchase requests sent but not answered yet. */
  outstanding(): number;
  /** Starts buyers and payers; they stop at `stopStorm` or after `maxOrders` answered purchase requests. */
  startStorm(opts?: { buyers?: number; maxOrders?: number; payEvery?: number; users?: number; pauseAfterRejectMs?: number }): void;
  stopStorm(): Promise<void>;
  attempts(): number;
  /** True once every buyer of the storm has stopped (budget used up or stopStorm). */
  stormOver(): boolean;
  /** True once every purchase request numbered ≤ seq has been answered. */
  answeredUpTo(seq: number): boolean;
  quietAndCheck(timeoutMs?: number): Promise<CheckResult>;
  close(): Promise<void>;
}

export function chaosSale(namespace: string, bucket = '3s'): FlashSale {
  return validateFlashSale({
    apiVersion: 'flashsale.dev/v1alpha1',
    kind: 'FlashSale',
    metadata: { name: 'storm', namespace },
    spec: {
      perUserLimit: 2,
      skus: [
        { id: 'hot', stock: 40, timeoutBucket: 'short' },
        { id: 'warm', stock: 400, timeoutBucket: 'short' },
      ],
      timeoutBuckets: [{ name: 'short', delay: bucket }],
      kafka: { partitions: 2, replicationFactor: 1 },
      compensation: { interval: '2s', grace: '1s' },
    },
  });
}

// Buyers and payers on separate pools: payments waiting on a slow API must not queue purchases behind them.
const buyerAgent = new Agent({ keepAlive: true, maxSockets: 16 });
const payerAgent = new Agent({ keepAlive: true, maxSockets: 16 });

function post(url: string, body?: unknown, agent = buyerAgent): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve) => {
    const payload = body === undefined ? '' : JSON.stringify(body);
    const req = request(url, { method: 'POST', agent, timeout: 30_000, headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        let parsed: Record<string, unknown> = {};
        try {
          parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
        } catch {
          // not JSON
        }
        resolve({ status: res.statusCode ?? 0, body: parsed });
      });
      res.on('error', () => resolve({ status: 0, body: {} }));
    });
    // A refused or cut connection is an answer too (status 0): the API was down, nothing acknowledged.
    req.on('error', () => resolve({ status: 0, body: {} }));
    req.on('timeout', () => req.destroy());
    req.end(payload);
  });
}

export async function startRig(infra: Infra, opts: { mode: Mode; bucket?: string; seed?: number } = { mode: 'separate' }): Promise<Rig> {
  const sale = chaosSale(uniqueName('chaos'), opts.bucket);
  const file = saleFile(sale);
  const names = saleNames(sale.metadata);
  const { config } = infra;
  const env = {
    KAFKA_BROKERS: infra.kafkaProxy.address,
    REDIS_URL: `redis://${infra.redisProxy.address}`,
    MYSQL_URL: `mysql://${config.mysql.user}${config.mysql.password ? `:${encodeURIComponent(config.mysql.password)}` : ''}@${infra.mysqlProxy.address}/${config.mysql.database}`,
  };
  // The harness talks to the broker itself (through the advertised proxy port), to Redis and MySQL directly.
  const kafka = createKafkaGateway({ brokers: [infra.kafkaProxy.address], clientId: `rig-${randomBytes(3).toString('hex')}`, logger });
  const redis = createRedis(infra.redis.url);
  // Redis restarts are faults here: reconnecting is expected, not an unhandled error.
  redis.on('error', () => undefined);
  const pool = createPool(config.mysql, { connectionLimit: 4 });
  const stock = new StockStore(redis, sale);
  await ensureTopics(await kafka.admin(), sale);
  await ensureStock(stock, pool, sale, names.key);

  const api = await worker({ role: opts.mode === 'run' ? 'run' : 'api', file, env });
  const workers: Worker[] = [api];
  if (opts.mode === 'separate') {
    workers.push(await worker({ role: 'order-writer', file, env }));
    for (const b of sale.spec.timeoutBuckets) workers.push(await worker({ role: 'timeout-closer', bucket: b.name, file, env }));
    workers.push(await worker({ role: 'compensator', file, env }));
  }
  await Promise.all(workers.map((w) => w.start()));

  const acknowledged = new Map<string, AcknowledgedOrder>();
  const paid = new Set<string>();
  const answers = new Map<number, number>();
  let inFlight = 0;
  let attempts = 0;
  /** Sequence numbers of purchase requests sent and not answered yet. */
  const open = new Set<number>();
  let storm: { stop: boolean; loops: Promise<void>[] } | undefined;
  const rnd = mulberry(opts.seed ?? 1);
  const orderUrl = `${api.url}/v1/sales/${sale.metadata.name}/orders`;

  let answered = 0;
  let users = 120;
  let pauseAfterRejectMs = 0;
  let buyersLeft = 0;
  let lastAcknowledgedAt = 0;
  const maxDelayMs = Math.max(...sale.spec.timeoutBuckets.map((b) => durationMs(b.delay)));
  const buyer = async (maxOrders: number, payEvery: number, s: { stop: boolean }) => {
    // The budget counts requests the API answered: while it is down, refused attempts do not use it up.
    while (!s.stop && answered < maxOrders) {
      attempts++;
      const userId = `u-${Math.floor(rnd() * users)}`;
      const skuId = rnd() < 0.5 ? 'hot' : 'warm';
      inFlight++;
      const seq = attempts;
      open.add(seq);
      const r = await post(orderUrl, { userId, skuId });
      open.delete(seq);
      inFlight--;
      answers.set(r.status, (answers.get(r.status) ?? 0) + 1);
      if (r.status !== 0) answered++;
      if (r.status === 202 && typeof r.body.orderId === 'string') {
        acknowledged.set(r.body.orderId, { userId, skuId, quantity: 1 });
        lastAcknowledgedAt = Date.now();
        // At most 8 payments under way: a payer is a person, not an unbounded retry loop.
        if (rnd() < 1 / payEvery && paying < 8) void payLater(r.body.orderId, s);
      } else if (r.status === 0 || r.status === 503) {
        // Down or unavailable: back off a little so a dead API does not turn into a busy loop.
        await new Promise((res) => setTimeout(res, 100));
      } else if (pauseAfterRejectMs > 0) {
        // A buyer told 409 tries again a little later: rejections answered from the sold-out copy
        // take microseconds and would otherwise use up the storm's budget in seconds.
        await new Promise((res) => setTimeout(res, pauseAfterRejectMs));
      }
    }
  };
  // A payer pays once the order is in MySQL (ORDER_QUEUED → retry); 200 PAID is recorded, 409 ORDER_CLOSED is fine.
  let paying = 0;
  const payLater = async (orderId: string, s: { stop: boolean }) => {
    paying++;
    try {
      for (let i = 0; i < 40 && !s.stop; i++) {
        const r = await post(`${api.url}/v1/sales/${sale.metadata.name}/orders/${orderId}/pay`, undefined, payerAgent);
        if (r.status === 200 && r.body.status === 'PAID') {
          paid.add(orderId);
          return;
        }
        if (r.status === 409 && r.body.error === 'ORDER_CLOSED') return;
        await new Promise((res) => setTimeout(res, 100));
      }
    } finally {
      paying--;
    }
  };

  // The operator's part, as a periodic reconcile: a SKU whose keys are gone (Redis lost them, or a
  // fence deleted stale ones) is rebuilt from MySQL by ensureStock once every purchase request sent
  // before the loss was answered (what the operator's REBUILD_GRACE waits for) and the writer
  // drained the orders topic (ensureStock's own check). One reconcile at a time.
  let operatorOn = true;
  const missingSince = new Map<string, number>();
  const operator = (async () => {
    while (operatorOn) {
      try {
        const levels = await Promise.all(sale.spec.skus.map((sk) => stock.level(sk.id)));
        const missing = sale.spec.skus.filter((_, i) => !levels[i]).map((sk) => sk.id);
        for (const id of missing) if (!missingSince.has(id)) missingSince.set(id, attempts);
        for (const id of [...missingSince.keys()]) if (!missing.includes(id)) missingSince.delete(id);
        if (missing.length > 0 && missing.every((id) => [...open].every((q) => q > (missingSince.get(id) ?? 0)))) {
          await ensureStock(stock, pool, sale, names.key, { ordersDrained: async () => ordersDrained(await kafka.admin(), sale) });
        }
      } catch (err) {
        if (!(err instanceof RebuildBlockedError) && process.env.FAULTS_VERBOSE) process.stderr.write(`[operator] ${String(err)}\n`);
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  })();

  const rig: Rig = {
    infra, sale, mode: opts.mode, api, workers, kafka, redis, pool, stock, acknowledged, paid, answers,
    outstanding: () => inFlight,
    attempts: () => attempts,
    stormOver: () => buyersLeft === 0,
    answeredUpTo: (seq) => [...open].every((s) => s > seq),
    startStorm(o = {}) {
      const s = { stop: false, loops: [] as Promise<void>[] };
      buyersLeft = o.buyers ?? 6;
      users = o.users ?? 120;
      pauseAfterRejectMs = o.pauseAfterRejectMs ?? 0;
      s.loops = Array.from({ length: buyersLeft }, () => buyer(o.maxOrders ?? 400, o.payEvery ?? 3, s).finally(() => buyersLeft--));
      storm = s;
    },
    async stopStorm() {
      if (!storm) return;
      storm.stop = true;
      await Promise.all(storm.loops);
      await when(() => inFlight === 0, { what: 'every purchase request answered', timeoutMs: 60_000 });
    },
    async quietAndCheck(timeoutMs = 120_000) {
      await rig.stopStorm();
      await Promise.all(workers.map((w) => (w.running() ? Promise.resolve() : w.start())));
      // Every acknowledged order must have fallen due (due times are defined by the clock, so this
      // waits on the clock), then quiet: the writer drained, nothing overdue, no release pending.
      const allDue = lastAcknowledgedAt + maxDelayMs + 500;
      await when(() => Date.now() > allDue, { what: 'every acknowledged order past its due time', timeoutMs: maxDelayMs + 60_000 });
      await waitQuiet({ pool, redis, kafka, sale, timeoutMs });
      return checkInvariants({ pool, redis, sale, acknowledged, paid, kafka });
    },
    async close() {
      await rig.stopStorm().catch(() => undefined);
      operatorOn = false;
      await operator;
      await Promise.all(workers.map((w) => w.stop()));
      await kafka.close().catch(() => undefined);
      redis.disconnect();
      await pool.end();
    },
  };
  return rig;
}

/** '3s', '5m', '1h' → ms (the spec's duration format). */
export function durationMs(d: string): number {
  const m = /^(\d+)(s|m|h)$/.exec(d);
  if (!m) throw new Error(`bad duration ${d}`);
  return Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 's' | 'm' | 'h'];
}

/** Small seeded PRNG: the chaos schedule and the buyers are reproducible from the printed seed. */
export function mulberry(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type FaultKind =
  | 'kill9-api'
  | 'kill9-order-writer'
  | 'kill9-timeout-closer'
  | 'kill9-compensator'
  | 'kill9-run'
  | 'broker-restart'
  | 'redis-restarted-empty'
  | 'redis-older-snapshot'
  | 'mysql-unreachable'
  | 'group-reset-earliest';

export const separateFaults: FaultKind[] = ['kill9-api', 'kill9-order-writer', 'kill9-timeout-closer', 'kill9-compensator', 'broker-restart', 'redis-restarted-empty', 'redis-older-snapshot', 'mysql-unreachable', 'group-reset-earliest'];
export const runFaults: FaultKind[] = ['kill9-run', 'broker-restart', 'redis-restarted-empty', 'redis-older-snapshot', 'mysql-unreachable', 'group-reset-earliest'];

const byRole = (rig: Rig, role: Worker['role']) => rig.workers.filter((w) => w.role === role);

/** Waits until `n` more purchase attempts were made: "under load", measured in requests, not time. */
export function afterAttempts(rig: Rig, n: number, timeoutMs = 120_000): Promise<void> {
  const target = rig.attempts() + n;
  // A storm that used up its budget makes no more attempts: waiting for them would only time out.
  return when(() => rig.attempts() >= target || rig.stormOver(), { what: `${n} more purchase attempts`, timeoutMs });
}

/**
 * Injects one fault during the storm and heals it. Every fault happens at an event of the run (a
 * number of purchase attempts), never after a sleep. Returns a one-line description.
 */
export async function inject(rig: Rig, kind: FaultKind): Promise<string> {
  const { infra } = rig;
  switch (kind) {
    case 'kill9-api':
    case 'kill9-order-writer':
    case 'kill9-compensator':
    case 'kill9-run':
    case 'kill9-timeout-closer': {
      const role = kind.slice('kill9-'.length) as Worker['role'];
      const targets = byRole(rig, role);
      if (targets.length === 0) return `${kind}: no ${role} process in this mode`;
      for (const w of targets) await w.kill9();
      try {
        await afterAttempts(rig, 30);
      } finally {
        // Healed whatever happened while waiting: a fault never outlives its injection.
        for (const w of targets) await w.start();
      }
      return `${kind}: SIGKILL, restarted after 30 more purchase attempts`;
    }
    case 'broker-restart': {
      await infra.broker.kill9();
      try {
        // Purchases hang while the broker is gone (each until the producer gives up): a few answered
        // per buyer is enough of an outage.
        await afterAttempts(rig, 8, 180_000);
      } finally {
        await infra.broker.restart();
      }
      return 'broker-restart: SIGKILL of the broker, restarted on the same log directory';
    }
    case 'redis-restarted-empty': {
      const before = rig.attempts();
      await infra.redis.restartEmpty();
      // The operator's part after Redis lost a sale: once every order the API was handing to Kafka
      // is there (every request sent before the loss answered: the operator waits REBUILD_GRACE for
      // this) and the writer drained the topic, rebuild the stock from MySQL (ensureStock).
      await when(() => (rig.attempts() >= before + 20 || rig.stormOver()) && rig.answeredUpTo(before), {
        what: `load after the restart, and every earlier request answered (attempts ${before} → ${rig.attempts()}, ${rig.outstanding()} outstanding, storm over: ${rig.stormOver()})`,
        timeoutMs: 120_000,
      });
      await rebuildLikeOperator(rig);
      return 'redis-restarted-empty: redis-server SIGKILLed and started with nothing; stock rebuilt from MySQL after the writer drained';
    }
    case 'redis-older-snapshot': {
      const snap: RedisSnapshot = await snapshot(rig.redis, saleKeys(rig.sale));
      await afterAttempts(rig, 60);
      const restoredAt = rig.attempts();
      await restore(rig.redis, snap);
      // The operator reconciles the stock again (ensureStock; a no-op while the keys look healthy).
      await when(() => rig.answeredUpTo(restoredAt) && (rig.attempts() >= restoredAt + 20 || rig.stormOver()), { what: 'load after the restore', timeoutMs: 120_000 });
      await rebuildLikeOperator(rig);
      return 'redis-older-snapshot: the sale\'s keys DUMPed, 60 purchase attempts later RESTOREd (REPLACE), then the operator\'s ensureStock';
    }
    case 'mysql-unreachable': {
      // Past the closer's retry budget (attempts after 1 s, 2 s, 4 s): refused for 30 purchase
      // attempts and at least until a retry was dead-lettered or 10 s passed (bounded either way).
      infra.mysqlProxy.refuse(true);
      infra.mysqlProxy.cut();
      try {
        await afterAttempts(rig, 30);
        const until = Date.now() + 10_000;
        await when(() => Date.now() >= until, { what: 'the retry budget to run out', timeoutMs: 15_000 });
      } finally {
        infra.mysqlProxy.refuse(false);
      }
      return 'mysql-unreachable: MariaDB refused and cut for >10 s (past 1+2+4 s of retries)';
    }
    case 'group-reset-earliest': {
      const writers = byRole(rig, rig.mode === 'run' ? 'run' : 'order-writer');
      for (const w of writers) await w.stop();
      try {
      const names = saleNames(rig.sale.metadata);
      // An active group's offsets cannot be moved; the session of the stopped member may linger.
      await when(async () => {
        try {
          await resetGroupToEarliest([infra.kafkaProxy.address], names.groups.orderWriter, names.topics.orders);
          return true;
        } catch {
          return false;
        }
      }, { what: 'the order-writer group reset to earliest', timeoutMs: 60_000 });
      } finally {
        for (const w of writers) await w.start();
      }
      return 'group-reset-earliest: order writer stopped, its group set back to the earliest offsets (full replay), restarted';
    }
  }
}

/** What the operator does after Redis lost a sale: wait until the writer drained, then ensureStock rebuilds from MySQL. */
export async function rebuildLikeOperator(rig: Rig, timeoutMs = 120_000): Promise<void> {
  // The rig's operator loop does the rebuild; this waits until every SKU has its stock again.
  await when(async () => (await Promise.all(rig.sale.spec.skus.map((sk) => rig.stock.level(sk.id)))).every((l) => l !== null), { what: 'the stock rebuilt by the operator loop', timeoutMs });
}
