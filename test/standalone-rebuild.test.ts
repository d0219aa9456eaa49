// `flashsale run`'s periodic stock check (standalone.ts startStock) rebuilds a SKU whose Redis keys
// went missing (lost, or fenced: restore-fence.ts) from MySQL. Its API runs in the same process: an
// order reserved just before the keys went missing may still be in the API's send when the check
// runs, in neither the orders topic nor MySQL. Rebuilt at once, the SKU sold that unit a second time
// (two orders held for a stock of 1). The check now also waits for the rebuild grace, as the operator
// does. Real Redis, Kafka, MySQL, the real order writer, stock check and API; the in-flight hand-off
// is the API's own two steps done by the test with time between them: the reserve (stock.reserve,
// the same script) and the send of its order message to the orders topic.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import type { Config } from '../controller/config.ts';
import type { OrderMessage } from '../controller/dataplane/messages.ts';
import { orderIdGenerator } from '../controller/dataplane/order-id.ts';
import { soldUnits } from '../controller/dataplane/provision.ts';
import { saleContext } from '../controller/dataplane/sale-context.ts';
import { provisionAll, startApi, startOrderWriters, startStock, type RunningWorker, type StandaloneEnv } from '../controller/dataplane/standalone.ts';
import type { KafkaGateway, KafkaProducer } from '../controller/infra/kafka.ts';
import { createPool, type Pool } from '../controller/infra/mysql.ts';
import type { Redis } from '../controller/infra/redis.ts';
import { createRegistry } from '../controller/metrics/dataplane.ts';
import { validateFlashSale } from '../controller/spec/flashsale.ts';
import { saleNames } from '../controller/spec/names.ts';
import { deleteRedisKeys, deleteTopics, dropDatabase, eventually, testConfig, testKafka, testRedis, uniqueName } from './support/infra.ts';

const namespace = uniqueName('rebuild');
const sale = validateFlashSale({
  apiVersion: 'flashsale.dev/v1alpha1', kind: 'FlashSale', metadata: { name: 'shop', namespace },
  spec: { skus: [{ id: 'gadget', stock: 1, timeoutBucket: 'slow' }, { id: 'book', stock: 10, timeoutBucket: 'slow' }], timeoutBuckets: [{ name: 'slow', delay: '10m' }], kafka: { partitions: 1 } },
});
const names = saleNames(sale.metadata);

let config: Config;
let kafka: KafkaGateway;
let redis: Redis;
let pool: Pool;
let producer: KafkaProducer;
let env: StandaloneEnv;
const running: RunningWorker[] = [];
let logText = '';
const logLines = new Set<() => void>();

/** Resolves with the first log line matching `re` (already written or to come), within 60 s. */
function logLine(re: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const line = logText.split('\n').find((l) => re.test(l));
      if (!line) return;
      clearTimeout(timer);
      logLines.delete(check);
      resolve(line);
    };
    const timer = setTimeout(() => { logLines.delete(check); reject(new Error(`no log line ${re} in 60 s:\n${logText.slice(-3000)}`)); }, 60_000);
    logLines.add(check);
    check();
  });
}

async function orderStatus(orderId: string): Promise<string | undefined> {
  const [rows] = await pool.query('SELECT status FROM orders WHERE order_id = ?', [orderId]);
  return (rows as { status: string }[])[0]?.status;
}

before(async () => {
  config = testConfig({ httpPort: 0 });
  kafka = testKafka();
  redis = testRedis();
  pool = createPool(config.mysql);
  producer = await kafka.producer();
  const sink = new Writable({ write(chunk: Buffer, _enc, cb) { logText += chunk.toString(); for (const l of logLines) l(); cb(); } });
  env = { sales: [saleContext(sale, redis)], config, logger: pino({ level: 'info' }, sink), kafka, redis, pool, registry: createRegistry(), host: '127.0.0.1', rebuildGraceMs: 3000 };
  await provisionAll([sale], env);
  for (const start of [startOrderWriters, startStock, startApi]) {
    const w = await start(env);
    running.push(...(Array.isArray(w) ? w : [w]));
  }
});

after(async () => {
  for (const w of running.reverse()) await w.stop().catch(() => undefined);
  await producer?.disconnect();
  await deleteTopics(kafka, `flashsale.${namespace}.`).catch(() => undefined);
  await deleteRedisKeys(redis, names.redis.patterns);
  redis.disconnect();
  await kafka.close();
  await pool.end();
  if (config) await dropDatabase(config);
});

describe('flashsale run: the periodic rebuild and an order still being handed to Kafka', () => {
  it('never sells the unit of an in-flight order a second time', async () => {
    const url = running.find((w) => w.url)?.url as string;
    const buy = async (userId: string) => {
      const res = await fetch(`${url}/v1/sales/shop/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userId, skuId: 'gadget' }) });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    const stock = env.sales[0]!.stock;
    // The API's first step for buyer x: the last unit is reserved. Its send has not completed yet.
    const now = Date.now();
    const orderId = orderIdGenerator()();
    assert.deepEqual(await stock.reserve({ orderId, userId: 'x', skuId: 'gadget', quantity: 1, reservedAt: now }, 1), { outcome: 'reserved', remaining: 0, seq: (await stock.seq('gadget')) });
    // Redis loses the SKU (or a worker fences it) while that send is under way.
    await stock.fence('gadget');
    // The next periodic check: before the fix it rebuilt from MySQL at once (remaining 1); now it waits.
    const line = await logLine(/stock rebuilt from MySQL|stock rebuild waiting/);
    // Buyer y comes in now.
    const y = await buy('y');
    // x's send completes: the order reaches Kafka and the writer.
    const message: OrderMessage = { v: 1, orderId, sale: names.key, skuId: 'gadget', userId: 'x', quantity: 1, createdAt: now, bucket: 'slow', dueAt: now + 600_000 };
    await producer.send([{ topic: names.topics.orders, messages: [{ key: 'gadget', value: JSON.stringify(message), timestamp: now }] }]);
    await eventually(async () => (await orderStatus(orderId)) === 'UNPAID', { what: "x's order written UNPAID", timeoutMs: 60_000 });
    if (y.status === 202) await eventually(async () => (await orderStatus(String(y.body.orderId))) !== undefined, { what: "y's order written", timeoutMs: 60_000 });
    // The SKU is rebuilt (after the grace, from a MySQL that has x's order): nothing left to sell.
    await eventually(async () => (await stock.level('gadget')) !== null, { what: 'gadget rebuilt', timeoutMs: 60_000 });
    const z = await buy('z');
    const sold = (await soldUnits(pool, names.key)).get('gadget');
    assert.equal(sold, 1, `units held in MySQL for a stock of 1 (y answered ${y.status} ${JSON.stringify(y.body)}, check said: ${line})`);
    assert.deepEqual({ status: z.status, body: z.body }, { status: 409, body: { error: 'SOLD_OUT' } });
    assert.deepEqual(await stock.level('gadget'), { stock: 1, remaining: 0 });
  });
});

describe('GET of an order the writer has claimed but not yet committed', () => {
  it('answers the order (not 404) once its row is in MySQL', async () => {
    const url = running.find((w) => w.url)?.url as string;
    const stock = env.sales[0]!.stock;
    const now = Date.now();
    const orderId = orderIdGenerator()();
    // The API's reserve, then the writer's first step (the claim), before its INSERT.
    assert.equal((await stock.reserve({ orderId, userId: 'w', skuId: 'book', quantity: 1, reservedAt: now }, 1)).outcome, 'reserved');
    assert.deepEqual(await stock.claim('book', [orderId]), ['claimed']);
    const answer = fetch(`${url}/v1/sales/shop/orders/${orderId}`).then(async (r) => ({ status: r.status, body: (await r.json()) as Record<string, unknown> }));
    // The order message reaches the writer, which writes the row (the claim is answered 'claimed before').
    const message: OrderMessage = { v: 1, orderId, sale: names.key, skuId: 'book', userId: 'w', quantity: 1, createdAt: now, bucket: 'slow', dueAt: now + 600_000 };
    await producer.send([{ topic: names.topics.orders, messages: [{ key: 'book', value: JSON.stringify(message), timestamp: now }] }]);
    const got = await answer;
    assert.equal(got.status, 200, JSON.stringify(got.body));
    assert.equal(got.body.status, 'UNPAID');
    assert.equal(got.body.orderId, orderId);
  });
});
