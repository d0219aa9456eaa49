// Issue 13, scenario 9: Kafka down for longer than the reaper's bound while the API still holds
// queued sends. No order the API answered 202 may be written CLOSED before its due time (and the
// whole checker must pass).
//
// Real `flashsale api` and `flashsale order-writer` processes reach a throw-away broker through a
// fault proxy (its advertised listener), so "Kafka down" is the proxy holding every byte (a black
// hole: a hung broker or a partition), instant to heal, so the API's producer still holds its sends
// when Kafka is back. The reaper's bound is not configurable by env (DEFAULT_REAP_AFTER_MS, 5 min), so
// the reaper under test runs in this process, built from controller/dataplane/reaper.ts with a 2 s
// bound, a 100 ms interval and the same Kafka view (through the proxy) as the writer: what an order
// writer replica configured with a short bound does. The bound only has to exceed the API's
// hand-off time (docs/order-path.md); this scenario is the case where a Kafka outage makes the
// hand-off longer than the bound.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { createRegistry } from '../controller/metrics/dataplane.ts';
import { Reaper } from '../controller/dataplane/reaper.ts';
import { saleContext } from '../controller/dataplane/sale-context.ts';
import { ensureStock, ensureTopics } from '../controller/dataplane/provision.ts';
import { createKafkaGateway, type KafkaGateway } from '../controller/infra/kafka.ts';
import { createPool, type Pool } from '../controller/infra/mysql.ts';
import { createRedis, type Redis } from '../controller/infra/redis.ts';
import { validateFlashSale } from '../controller/spec/flashsale.ts';
import { checkInvariants, waitQuiet, type AcknowledgedOrder } from './support/checker.ts';
import { logger, uniqueName } from './support/infra.ts';
import { createLogger } from '../controller/log.ts';
import { saleFile, when, worker, type Worker } from './support/faults/processes.ts';
import { startInfra, type Infra } from './chaos/rig.ts';

const BOUND_MS = 2000;
let infra: Infra;
let kafka: KafkaGateway;
let redis: Redis;
let pool: Pool;
const workers: Worker[] = [];
let reaper: Reaper | undefined;

before(async () => {
  infra = await startInfra();
  kafka = createKafkaGateway({ brokers: [infra.kafkaProxy.address], clientId: `s9-${uniqueName()}`, logger });
  redis = createRedis(infra.redis.url);
  pool = createPool(infra.config.mysql, { connectionLimit: 4 });
}, { timeout: 180_000 });

after(async () => {
  await reaper?.stop();
  for (const w of workers) await w.stop();
  await kafka?.close().catch(() => undefined);
  redis?.disconnect();
  await pool?.end();
  await infra?.close();
});

async function purchase(url: string, userId: string): Promise<{ status: number; orderId?: string }> {
  try {
    const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userId, skuId: 'item' }), signal: AbortSignal.timeout(120_000) });
    const body = (await r.json()) as { orderId?: string };
    return { status: r.status, orderId: body.orderId };
  } catch {
    return { status: 0 };
  }
}

async function scenario9(t: { diagnostic(m: string): void }, reaperKafka: KafkaGateway): Promise<void> {
  const sale = validateFlashSale({
    apiVersion: 'flashsale.dev/v1alpha1',
    kind: 'FlashSale',
    metadata: { name: 'down', namespace: uniqueName('s9') },
    spec: { perUserLimit: 1, skus: [{ id: 'item', stock: 500, timeoutBucket: 'b' }], timeoutBuckets: [{ name: 'b', delay: '10m' }], kafka: { partitions: 2, replicationFactor: 1 } },
  });
  const ctx = saleContext(sale, redis);
  await ensureTopics(await kafka.admin(), sale);
  await ensureStock(ctx.stock, pool, sale, ctx.key);
  const file = saleFile(sale);
  const { config } = infra;
  const env = { KAFKA_BROKERS: infra.kafkaProxy.address, REDIS_URL: infra.redis.url, MYSQL_URL: `mysql://${config.mysql.user}@${config.mysql.host}:${config.mysql.port}/${config.mysql.database}` };
  const api = await worker({ role: 'api', file, env });
  const writer = await worker({ role: 'order-writer', file, env });
  workers.push(api, writer);
  await Promise.all([api.start(), writer.start()]);
  // The reaper's failed passes while Kafka is down are expected; keep them out of the test output.
  await reaper?.stop();
  reaper = new Reaper({ sales: [ctx], registry: createRegistry(), logger: createLogger('fatal', 'reaper'), kafka: reaperKafka, olderThanMs: BOUND_MS, intervalMs: 100 });
  reaper.start();
  const url = `${api.url}/v1/sales/${sale.metadata.name}/orders`;

  const acknowledged = new Map<string, AcknowledgedOrder>();
  const record = (userId: string, r: { status: number; orderId?: string }) => {
    if (r.status === 202 && r.orderId) acknowledged.set(r.orderId, { userId, skuId: 'item', quantity: 1 });
  };
  // Before the outage: orders flow.
  for (let i = 0; i < 20; i++) record(`before-${i}`, await purchase(url, `before-${i}`));
  assert.equal(acknowledged.size, 20);
  // The writer has written and committed them all, so nothing older holds the reaper back.
  await waitQuiet({ pool, redis, kafka, sale, timeoutMs: 60_000, noInFlight: true });

  // Kafka down as a black hole (a hung broker or a partition): connections open, nothing answers.
  // Refused connections would make the producer fail within its retries and the API answer 503 at
  // once; a black hole keeps the sends queued (request timeout 30 s), which is this scenario.
  infra.kafkaProxy.stall(true);
  const reservations = ctx.names.redis.sku('item').reservations;
  const during = Array.from({ length: 30 }, (_, i) => purchase(url, `during-${i}`).then((r) => record(`during-${i}`, r)));
  let seen = 0;
  await when(async () => (seen = await redis.hlen(reservations)) === 30, { what: '30 reservations waiting for Kafka', timeoutMs: 30_000 }).catch((err: unknown) => {
    throw new Error(`${(err as Error).message} (saw ${seen}; answers so far ${acknowledged.size - 20} × 202)`, { cause: err });
  });
  const reservedBy = Date.now();
  // The outage lasts longer than the reaper's bound: that is the fault itself, not a synchronisation.
  await when(() => Date.now() > reservedBy + BOUND_MS + 1000, { what: 'the outage to outlast the reaper bound', timeoutMs: 10_000 });
  infra.kafkaProxy.stall(false);
  await Promise.all(during);
  const answers = { acknowledged: acknowledged.size - 20 };
  t.diagnostic(`after the outage: ${answers.acknowledged} of 30 queued purchases answered 202, proxy ${JSON.stringify(infra.kafkaProxy.stats())}`);

  await waitQuiet({ pool, redis, kafka, sale, timeoutMs: 120_000, noInFlight: true });
  const [rows] = await pool.query('SELECT order_id, status, due_at, closed_at FROM orders WHERE sale = ?', [ctx.key]);
  const early = (rows as { order_id: string; status: string; due_at: Date; closed_at: Date | null }[]).filter((r) => r.status === 'CLOSED' && acknowledged.has(r.order_id) && (r.closed_at?.getTime() ?? 0) < r.due_at.getTime());
  t.diagnostic(`rows ${(rows as unknown[]).length}, closed early though acknowledged: ${early.length}`);
  assert.deepEqual(early.map((r) => r.order_id), [], 'acknowledged orders written CLOSED before their due time');
  const result = await checkInvariants({ pool, redis, sale, acknowledged, paid: new Set(), kafka });
  assert.deepEqual(result.violations, []);
  await reaper.stop();
  for (const w of [api, writer]) await w.stop();
}

it('Kafka down (a black hole for every client) past the reaper bound with sends queued in the API: no 202 order is written CLOSED before its due time', { timeout: 300_000 }, (t) => scenario9(t, kafka));

it('the api and writer cut off from Kafka (a black hole) past the reaper bound while the reaper (another writer replica) still reaches it: no 202 order is written CLOSED before its due time', { timeout: 300_000 }, async (t) => {
  const direct = createKafkaGateway({ brokers: [infra.broker.directAddress], clientId: `s9-direct-${uniqueName()}`, logger });
  try {
    await scenario9(t, direct);
  } finally {
    await reaper?.stop();
    await direct.close().catch(() => undefined);
  }
});
