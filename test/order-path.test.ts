// The order path end to end against the real Kafka, Redis and MariaDB: HTTP API → Redis reservation
// → orders topic → order writer → MySQL (+ delay topic), the reaper and the dead-letter topic.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Redis as IORedis } from 'ioredis';
import { Registry } from 'prom-client';
import { OrderApi } from '../controller/dataplane/api.ts';
import { parseTimeoutMessage, type DeadLetter, type OrderMessage } from '../controller/dataplane/messages.ts';
import { orderIdGenerator } from '../controller/dataplane/order-id.ts';
import { OrderWriter } from '../controller/dataplane/order-writer.ts';
import { ordersDrained } from '../controller/dataplane/provision.ts';
import { Reaper } from '../controller/dataplane/reaper.ts';
import { StockStore } from '../controller/dataplane/stock.ts';
import type { SaleContext } from '../controller/dataplane/sale-context.ts';
import { BatchingProducer, type ConsumedMessage, type KafkaConsumer, type KafkaGateway, type KafkaProducer } from '../controller/infra/kafka.ts';
import type { Pool } from '../controller/infra/mysql.ts';
import type { Redis } from '../controller/infra/redis.ts';
import { dataPlaneMetrics } from '../controller/metrics/dataplane.ts';
import { loadConfig } from '../controller/config.ts';
import { dropDatabase, eventually, logger, testConfig, testKafka, testRedis, uniqueName } from './support/infra.ts';
import { closeHttpAgent, doubleClick, http, orderRows, pool as makePool, provisionSale, removeSale, saleDoc } from './support/order-path.ts';

const config = testConfig();
let kafka: KafkaGateway;
let redis: Redis;
let db: Pool;
let producer: KafkaProducer;
let ctx: SaleContext;
let api: OrderApi;
let writer: OrderWriter;
let url: string;
const registry = new Registry();
const sales: SaleContext[] = [];
const cleanups: (() => Promise<void>)[] = [];

function collect(groupId: string, topic: string): { received: ConsumedMessage[]; consumer: KafkaConsumer } {
  const received: ConsumedMessage[] = [];
  const consumer = kafka.consumer({ groupId, topics: [topic] });
  void consumer.start(async (batch, bctx) => {
    received.push(...batch.messages);
    const last = batch.messages.at(-1);
    if (last) await bctx.commit((BigInt(last.offset) + 1n).toString());
  });
  cleanups.push(() => consumer.stop());
  return { received, consumer };
}

async function count(sql: string, args: unknown[]): Promise<number> {
  const [rows] = await db.query(sql, args);
  return Number((rows as { n: number }[])[0]?.n ?? 0);
}

before(async () => {
  kafka = testKafka();
  redis = testRedis();
  db = makePool(config);
  ctx = await provisionSale(saleDoc(uniqueName('op'), { startTime: '2020-01-01T00:00:00Z', endTime: '2100-01-01T00:00:00Z' }), { config, kafka, redis, pool: db });
  sales.push(ctx);
  producer = await kafka.producer();
  api = new OrderApi({ sales: [ctx], redis, pool: db, producer: new BatchingProducer(producer), registry, logger });
  url = `${await api.listen(0)}/v1/sales/sale`;
  writer = new OrderWriter({ ctx, kafka, pool: db, registry, logger });
  await writer.start();
});

after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  await writer?.stop();
  await api?.close();
  closeHttpAgent();
  for (const s of sales) await removeSale(s, { kafka, redis });
  await kafka.close();
  redis.disconnect();
  await db.end();
  await dropDatabase(config);
});

describe('order API', () => {
  it('accepts an order (202), writes it UNPAID with its due time, and answers a retry with ALREADY_ORDERED and the same id', { timeout: 60_000 }, async () => {
    const first = await http('POST', `${url}/orders`, { userId: 'alice', skuId: 'plenty' });
    assert.equal(first.status, 202);
    assert.equal(first.body.status, 'QUEUED');
    const orderId = first.body.orderId as string;
    assert.match(orderId, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const again = await http('POST', `${url}/orders`, { userId: 'alice', skuId: 'plenty', quantity: 1 });
    assert.deepEqual([again.status, again.body], [409, { error: 'ALREADY_ORDERED', orderId }]);
    const got = await eventually(async () => {
      const r = await http('GET', `${url}/orders/${orderId}`);
      return r.body.status === 'UNPAID' ? r : undefined;
    }, { what: 'order UNPAID in MySQL' });
    assert.equal(got.status, 200);
    assert.equal(got.body.userId, 'alice');
    assert.equal(got.body.skuId, 'plenty');
    assert.equal(got.body.quantity, 1);
    // SKU plenty is in the 30m bucket.
    assert.equal(Date.parse(got.body.dueAt as string) - Date.parse(got.body.createdAt as string), 30 * 60_000);
  });

  it('answers SOLD_OUT once the stock is gone and reports stock and remaining per SKU', { timeout: 60_000 }, async () => {
    const a = await http('POST', `${url}/orders`, { userId: 'bob', skuId: 'one' });
    assert.equal(a.status, 202);
    const b = await http('POST', `${url}/orders`, { userId: 'carol', skuId: 'one' });
    assert.deepEqual([b.status, b.body], [409, { error: 'SOLD_OUT' }]);
    const sale = await http('GET', url);
    assert.equal(sale.status, 200);
    assert.equal(sale.body.name, 'sale');
    const skus = sale.body.skus as { id: string; stock: number; remaining: number }[];
    assert.deepEqual(skus.find((s) => s.id === 'one'), { id: 'one', stock: 1, remaining: 0, suspended: false });
    assert.deepEqual(skus.find((s) => s.id === 'hot'), { id: 'hot', stock: 100, remaining: 100, suspended: false });
  });

  it('answers rejections of a sold-out SKU from a short-lived copy: a retry still learns its order id, returned stock sells again once a refresh after the TTL saw it', { timeout: 60_000 }, async () => {
    let now = Date.now();
    const p = await kafka.producer();
    const local = new OrderApi({ sales: [ctx], redis, pool: db, producer: new BatchingProducer(p), registry: new Registry(), logger, clock: () => now, soldOutTtlMs: 1000 });
    const base = `${await local.listen(0)}/v1/sales/sale/orders`;
    try {
      const bobsOrder = (await ctx.stock.inFlight('one')).find((r) => r.userId === 'bob')?.orderId
        ?? ((await orderRows(db, ctx.key, 'one')).find((r) => r.user_id === 'bob')?.order_id as string);
      assert.ok(bobsOrder);
      assert.deepEqual((await http('POST', base, { userId: 'carol', skuId: 'one' })).body, { error: 'SOLD_OUT' });
      await local.settled();
      // Redis changes under the copy: bob's order is closed and its unit given back.
      assert.equal(await ctx.stock.releaseOrder({ orderId: bobsOrder, userId: 'bob', skuId: 'one', quantity: 1 }), true);
      await db.query("UPDATE orders SET status = 'CLOSED', closed_at = UTC_TIMESTAMP(3) WHERE order_id = ?", [bobsOrder]);
      now += 999;
      assert.deepEqual((await http('POST', base, { userId: 'dan', skuId: 'one' })).body, { error: 'SOLD_OUT' }, 'within the TTL: from the copy');
      assert.deepEqual((await http('POST', base, { userId: 'bob', skuId: 'one' })).body, { error: 'ALREADY_ORDERED', orderId: bobsOrder }, 'the limit is checked first, as in Redis');
      now += 2;
      // Past the TTL the first request starts a refresh and is still answered from the copy.
      assert.deepEqual((await http('POST', base, { userId: 'dan', skuId: 'one' })).body, { error: 'SOLD_OUT' }, 'past the TTL: from the copy while it is refreshed');
      await local.settled();
      const dan = await http('POST', base, { userId: 'dan', skuId: 'one' });
      assert.equal(dan.status, 202, 'the refresh saw stock and dropped the copy: Redis decides again, the returned unit sells');
      assert.deepEqual((await http('POST', base, { userId: 'carol', skuId: 'one' })).body, { error: 'SOLD_OUT' });
      assert.deepEqual(await ctx.stock.level('one'), { stock: 1, remaining: 0 });
      // A refresh copies the holders again only when the SKU's counter moved.
      const snap = await ctx.stock.soldOutSnapshot('one', 1000);
      assert.ok(snap && snap !== 'unchanged' && snap.holders.get('dan')?.orderId === dan.body.orderId, 'the copy holds dan and his order id');
      assert.equal(await ctx.stock.soldOutSnapshot('one', 1000, snap.seq), 'unchanged', 'same counter: nothing copied');
      const again = await ctx.stock.soldOutSnapshot('one', 1000, `${snap.seq}0`);
      assert.ok(again && again !== 'unchanged' && again.holders.size === snap.holders.size, 'another counter: copied again');
    } finally {
      await local.close();
      await p.disconnect();
    }
  });

  it('rejects bad requests with 400 INVALID_REQUEST and a message, reserving nothing', { timeout: 60_000 }, async () => {
    const cases: [string, unknown][] = [
      ['not json', '{"userId": '],
      ['array', '[1]'],
      ['missing userId', { skuId: 'hot' }],
      ['missing skuId', { userId: 'dave' }],
      ['empty userId', { userId: '', skuId: 'hot' }],
      ['over-long userId', { userId: 'u'.repeat(129), skuId: 'hot' }],
      ['over-long skuId', { userId: 'dave', skuId: 's'.repeat(65) }],
      ['quantity 0', { userId: 'dave', skuId: 'hot', quantity: 0 }],
      ['fractional quantity', { userId: 'dave', skuId: 'hot', quantity: 1.5 }],
      ['quantity above the per-user limit', { userId: 'dave', skuId: 'hot', quantity: 2 }],
      ['unknown field', { userId: 'dave', skuId: 'hot', price: 0 }],
      ['body over the size limit', { userId: 'dave', skuId: 'hot', pad: 'x'.repeat(2000) }],
    ];
    for (const [what, body] of cases) {
      const r = await http('POST', `${url}/orders`, body);
      assert.equal(r.status, 400, what);
      assert.equal(r.body.error, 'INVALID_REQUEST', what);
      assert.equal(typeof r.body.message, 'string', what);
      assert.ok((r.body.message as string).length > 0, what);
    }
    assert.equal(await ctx.stock.holding('hot', 'dave'), 0);
    assert.deepEqual(await ctx.stock.level('hot'), { stock: 100, remaining: 100 });
  });

  // The purchase route takes its body from node:http's parser, not from the request stream
  // (controller/dataplane/api-request.ts): every way a body can arrive must reach it whole.
  it('reads a purchase body however it arrives: after 100 Continue, byte by byte, in several chunks, pipelined, empty, too long', { timeout: 60_000 }, async () => {
    const { hostname, port } = new URL(url);
    const path = new URL(url).pathname + '/orders';
    const head = (extra: string, length?: number) => `POST ${path} HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n${length === undefined ? '' : `content-length: ${length}\r\n`}${extra}`;
    const chunked = (...pieces: string[]) => `${pieces.map((p) => `${Buffer.byteLength(p).toString(16)}\r\n${p}\r\n`).join('')}0\r\n\r\n`;
    /** Writes `steps` on one connection ('after-continue' waits for the server's 100 Continue) and returns every answer's status and body. */
    const exchange = (steps: (string | 'after-continue')[]): Promise<{ status: number; body: unknown }[]> =>
      new Promise((resolve, reject) => {
        const socket = connect(Number(port), hostname);
        socket.setNoDelay(true);
        let text = '';
        let continued: (() => void) | undefined;
        socket.on('data', (d: Buffer) => {
          text += d.toString('latin1');
          if (continued && text.includes('HTTP/1.1 100 Continue\r\n\r\n')) continued();
        });
        socket.on('error', reject);
        socket.on('close', () => {
          const answers = text.replace('HTTP/1.1 100 Continue\r\n\r\n', '').split(/(?=HTTP\/1\.1 \d{3} )/).filter(Boolean);
          resolve(answers.map((a) => ({ status: Number(a.slice(9, 12)), body: JSON.parse(a.slice(a.indexOf('\r\n\r\n') + 4)) as unknown })));
        });
        socket.setTimeout(30_000, () => socket.destroy(new Error('no answer within 30 s')));
        void (async () => {
          for (const step of steps) {
            if (step === 'after-continue') await new Promise<void>((ok) => (continued = ok));
            else socket.write(step);
          }
        })();
      });
    const unknownSku = '{"userId":"pieces","skuId":"tablet"}';
    const notFound = { status: 404, body: { error: 'SKU_NOT_FOUND' } };
    // Headers first, the body only once the handler has run and asked for it.
    assert.deepEqual(await exchange([head('expect: 100-continue\r\nconnection: close\r\n\r\n', unknownSku.length), 'after-continue', unknownSku]), [notFound]);
    // One byte per write.
    assert.deepEqual(await exchange([head('connection: close\r\n\r\n', unknownSku.length), ...unknownSku]), [notFound]);
    // Chunked: one chunk per field, each its own piece of the body.
    assert.deepEqual(await exchange([head('transfer-encoding: chunked\r\nconnection: close\r\n\r\n') + chunked('{"userId":"pieces",', '"skuId":', '"tablet"}')]), [notFound]);
    // Two purchases pipelined in one write, each answered in turn; the second one buys.
    const buys = '{"userId":"pipelined","skuId":"plenty"}';
    const [first, second] = await exchange([head('\r\n', unknownSku.length) + unknownSku + head('connection: close\r\n\r\n', buys.length) + buys]);
    assert.deepEqual(first, notFound);
    assert.equal(second?.status, 202, JSON.stringify(second));
    assert.equal(await ctx.stock.holding('plenty', 'pipelined'), 1);
    // No body at all, and a chunked body over the limit (no length declared up front).
    assert.equal((await exchange([head('connection: close\r\n\r\n', 0)]))[0]?.status, 400);
    const [long] = await exchange([head('transfer-encoding: chunked\r\n\r\n') + chunked(...Array.from({ length: 5 }, () => 'x'.repeat(300)))]);
    assert.deepEqual(long, { status: 400, body: { error: 'INVALID_REQUEST', message: 'body larger than 1024 bytes' } });
  });

  it('answers 404 SALE_NOT_FOUND, SKU_NOT_FOUND and ORDER_NOT_FOUND, 404/405 for other paths', { timeout: 60_000 }, async () => {
    const base = url.replace(/\/sale$/, '');
    assert.deepEqual(await http('POST', `${base}/nope/orders`, { userId: 'x', skuId: 'hot' }).then((r) => [r.status, r.body]), [404, { error: 'SALE_NOT_FOUND' }]);
    assert.deepEqual(await http('GET', `${base}/nope`).then((r) => [r.status, r.body]), [404, { error: 'SALE_NOT_FOUND' }]);
    assert.deepEqual(await http('POST', `${url}/orders`, { userId: 'x', skuId: 'tablet' }).then((r) => [r.status, r.body]), [404, { error: 'SKU_NOT_FOUND' }]);
    const unknownId = orderIdGenerator()();
    assert.deepEqual(await http('GET', `${url}/orders/${unknownId}`).then((r) => [r.status, r.body]), [404, { error: 'ORDER_NOT_FOUND' }]);
    assert.equal((await http('GET', `${url}/orders/not-an-id`)).status, 404);
    assert.deepEqual(await http('POST', `${url}/orders/${unknownId}/pay`).then((r) => [r.status, r.body]), [404, { error: 'ORDER_NOT_FOUND' }]);
    assert.equal((await http('GET', `${url}/orders`)).status, 405);
    assert.equal((await http('GET', `${url.replace(/\/v1.*$/, '')}/elsewhere`)).status, 404);
  });

  it('answers 403 SALE_NOT_STARTED before startTime and SALE_ENDED from endTime (injected clock)', { timeout: 60_000 }, async () => {
    let now = Date.parse('2019-12-31T23:59:59Z');
    const p = await kafka.producer();
    const timed = new OrderApi({ sales: [ctx], redis, pool: db, producer: new BatchingProducer(p), registry: new Registry(), logger, clock: () => now });
    const base = `${await timed.listen(0)}/v1/sales/sale`;
    try {
      assert.deepEqual(await http('POST', `${base}/orders`, { userId: 'early', skuId: 'hot' }).then((r) => [r.status, r.body]), [403, { error: 'SALE_NOT_STARTED' }]);
      now = Date.parse('2100-01-01T00:00:00Z');
      assert.deepEqual(await http('POST', `${base}/orders`, { userId: 'late', skuId: 'hot' }).then((r) => [r.status, r.body]), [403, { error: 'SALE_ENDED' }]);
      now = Date.parse('2099-12-31T23:59:59Z');
      assert.equal((await http('POST', `${base}/orders`, { userId: 'just-in-time', skuId: 'plenty' })).status, 202);
      assert.equal(await ctx.stock.holding('hot', 'early'), 0);
    } finally {
      await timed.close();
      await p.disconnect();
    }
  });

  it('pays UNPAID → PAID idempotently and never resurrects a CLOSED order (409 ORDER_CLOSED)', { timeout: 60_000 }, async () => {
    const placed = await http('POST', `${url}/orders`, { userId: 'erin', skuId: 'plenty' });
    const orderId = placed.body.orderId as string;
    await eventually(async () => (await count('SELECT COUNT(*) AS n FROM orders WHERE order_id = ?', [orderId])) === 1, { what: 'row' });
    assert.deepEqual(await http('POST', `${url}/orders/${orderId}/pay`).then((r) => [r.status, r.body]), [200, { status: 'PAID' }]);
    assert.deepEqual(await http('POST', `${url}/orders/${orderId}/pay`).then((r) => [r.status, r.body]), [200, { status: 'PAID' }]);
    assert.equal((await http('GET', `${url}/orders/${orderId}`)).body.status, 'PAID');

    const other = (await http('POST', `${url}/orders`, { userId: 'frank', skuId: 'plenty' })).body.orderId as string;
    await eventually(async () => (await count('SELECT COUNT(*) AS n FROM orders WHERE order_id = ?', [other])) === 1, { what: 'row' });
    // What the timeout closer does: a conditional close.
    await db.query("UPDATE orders SET status = 'CLOSED', closed_at = UTC_TIMESTAMP(3) WHERE order_id = ? AND status = 'UNPAID'", [other]);
    assert.deepEqual(await http('POST', `${url}/orders/${other}/pay`).then((r) => [r.status, r.body]), [409, { error: 'ORDER_CLOSED' }]);
    assert.equal((await http('GET', `${url}/orders/${other}`)).body.status, 'CLOSED');
  });

  it('serves /healthz, /readyz and /metrics with outcome counters', { timeout: 60_000 }, async () => {
    const root = url.replace(/\/v1.*$/, '');
    assert.equal((await http('GET', `${root}/healthz`)).status, 200);
    assert.equal((await http('GET', `${root}/readyz`)).status, 200);
    const metrics = await http('GET', `${root}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(metrics.text, new RegExp(`flashsale_api_requests_total\\{flashsale="${ctx.key}",outcome="accepted"\\} [1-9]`));
    assert.match(metrics.text, new RegExp(`flashsale_api_requests_total\\{flashsale="${ctx.key}",outcome="sold_out"\\} [1-9]`));
    assert.match(metrics.text, /flashsale_api_request_duration_seconds_bucket\{/);
    assert.match(metrics.text, new RegExp(`flashsale_orders_written_total\\{flashsale="${ctx.key}"\\} [1-9]`));
    assert.match(metrics.text, new RegExp(`flashsale_order_writer_batch_orders_count\\{flashsale="${ctx.key}"\\} [1-9]`));
  });

  it('gives the reservation back and answers 503 UNAVAILABLE when the hand-off to Kafka fails; readyz is 503 for 5 s', { timeout: 60_000 }, async () => {
    const dead = await kafka.producer();
    await dead.disconnect();
    let now = Date.now();
    const failing = new OrderApi({ sales: [ctx], redis, pool: db, producer: new BatchingProducer(dead), registry: new Registry(), logger, clock: () => now });
    const root = await failing.listen(0);
    try {
      const before = await ctx.stock.level('hot');
      const r = await http('POST', `${root}/v1/sales/sale/orders`, { userId: 'gina', skuId: 'hot' });
      assert.deepEqual([r.status, r.body], [503, { error: 'UNAVAILABLE' }]);
      assert.deepEqual(await ctx.stock.level('hot'), before, 'stock back');
      assert.equal(await ctx.stock.holding('hot', 'gina'), 0, 'user slot freed');
      assert.equal((await ctx.stock.inFlight('hot')).filter((x) => x.userId === 'gina').length, 0, 'no reservation left');
      assert.equal((await http('GET', `${root}/readyz`)).status, 503);
      now += 5001;
      assert.equal((await http('GET', `${root}/readyz`)).status, 200, 'an unready replica gets no traffic: readiness comes back by itself');
    } finally {
      await failing.close();
    }
    // Nothing was lost for the buyer: the same user can buy through a healthy API.
    assert.equal((await http('POST', `${url}/orders`, { userId: 'gina', skuId: 'hot' })).status, 202);
    await eventually(async () => (await orderRows(db, ctx.key, 'hot')).some((r) => r.user_id === 'gina'), { what: "gina's order" });
  });
});

describe('double clicks', () => {
  it('two identical purchases in flight at once make one order; the other click learns its id', { timeout: 60_000 }, async () => {
    const clicked = await Promise.all(Array.from({ length: 100 }, (_, i) => doubleClick('POST', `${url}/orders`, { userId: `clicker-${i}`, skuId: 'plenty' })));
    for (const [i, c] of clicked.entries()) {
      assert.ok(c.overlapped, `pair ${i}: both requests in flight at once`);
      const statuses = c.replies.map((r) => r.status).sort();
      assert.deepEqual(statuses, [202, 409], `pair ${i}: exactly one order`);
      const won = c.replies.find((r) => r.status === 202) as (typeof c.replies)[0];
      const lost = c.replies.find((r) => r.status === 409) as (typeof c.replies)[0];
      assert.deepEqual(lost.body, { error: 'ALREADY_ORDERED', orderId: won.body.orderId }, `pair ${i}`);
      assert.equal(await ctx.stock.holding('plenty', `clicker-${i}`), 1);
    }
  });
});

describe('2,000 concurrent buyers for 100 units', () => {
  it('sells exactly 100, nobody twice, remaining 0', { timeout: 120_000 }, async () => {
    const s = await provisionSale(saleDoc(uniqueName('rush')), { config, kafka, redis, pool: db });
    sales.push(s);
    const p = await kafka.producer();
    const rushApi = new OrderApi({ sales: [s], redis, pool: db, producer: new BatchingProducer(p), registry: new Registry(), logger });
    const w = new OrderWriter({ ctx: s, kafka, pool: db, registry: new Registry(), logger });
    await w.start();
    const base = `${await rushApi.listen(0)}/v1/sales/sale`;
    try {
      // 2,000 buyers; 200 of them press the button twice at the same moment: each pair is in flight
      // at once on two connections (doubleClick proves the overlap), amid the other 1,800 requests.
      const buyers = Array.from({ length: 2000 }, (_, i) => `buyer-${i}`);
      const pairs = buyers.slice(0, 200).map((userId) => doubleClick('POST', `${base}/orders`, { userId, skuId: 'hot' }));
      const singles = buyers.slice(200).map((userId) => http('POST', `${base}/orders`, { userId, skuId: 'hot' }));
      const clicked = await Promise.all(pairs);
      const replies = [...(await Promise.all(singles)), ...clicked.flatMap((c) => c.replies)];
      for (const [i, c] of clicked.entries()) {
        assert.ok(c.overlapped, `pair ${i}: both requests in flight at once`);
        const [x, y] = c.replies;
        assert.ok(!(x.status === 202 && y.status === 202), `pair ${i}: one order per double click`);
        const won = [x, y].find((r) => r.status === 202);
        const other = won === x ? y : x;
        if (won && other.body.error === 'ALREADY_ORDERED') assert.equal(other.body.orderId, won.body.orderId, `pair ${i}: the second click learns the first click's order`);
      }
      const accepted = replies.filter((r) => r.status === 202);
      const soldOut = replies.filter((r) => r.status === 409 && r.body.error === 'SOLD_OUT');
      const already = replies.filter((r) => r.status === 409 && r.body.error === 'ALREADY_ORDERED');
      assert.equal(accepted.length, 100);
      assert.equal(accepted.length + soldOut.length + already.length, replies.length, 'only 202 and 409 answers');
      // Wait until the writer has committed everything in the orders topic (offsets are committed
      // after MySQL), so a row written late would be seen, not just the first 100.
      const admin = await kafka.admin();
      await eventually(() => ordersDrained(admin, s.sale), { what: 'the writer drained the orders topic', timeoutMs: 60_000 });
      const rows = await orderRows(db, s.key, 'hot');
      assert.equal(rows.length, 100);
      assert.equal(new Set(rows.map((r) => r.user_id)).size, 100, 'nobody twice');
      assert.deepEqual(new Set(rows.map((r) => r.order_id)), new Set(accepted.map((r) => r.body.orderId)));
      assert.ok(rows.every((r) => r.status === 'UNPAID'));
      assert.deepEqual(await s.stock.level('hot'), { stock: 100, remaining: 0 });
      assert.deepEqual(await s.stock.inFlight('hot'), []);
    } finally {
      await rushApi.close();
      await w.stop();
      await p.disconnect();
    }
  });
});

describe('order writer', () => {
  it('redelivery of a whole batch writes no duplicate rows and still publishes every timeout', { timeout: 60_000 }, async () => {
    const s = await provisionSale(saleDoc(uniqueName('redo')), { config, kafka, redis, pool: db });
    sales.push(s);
    const p = await kafka.producer();
    const reg = new Registry();
    const redoApi = new OrderApi({ sales: [s], redis, pool: db, producer: new BatchingProducer(p), registry: reg, logger });
    const base = `${await redoApi.listen(0)}/v1/sales/sale`;
    const ids: string[] = [];
    for (let i = 0; i < 50; i++) {
      const r = await http('POST', `${base}/orders`, { userId: `r-${i}`, skuId: i % 2 ? 'hot' : 'plenty' });
      assert.equal(r.status, 202);
      ids.push(r.body.orderId as string);
    }
    // The first batch "crashes" after its rows are committed: nothing published, offsets not committed.
    let crashed = 0;
    const w = new OrderWriter({
      ctx: s, kafka, pool: db, registry: reg, logger,
      afterInsert: () => {
        if (crashed++ === 0) throw new Error('simulated crash after the DB commit');
      },
    });
    const delays = [collect(`${s.names.groups.orderWriter}.probe-short`, s.names.topics.delay('short')), collect(`${s.names.groups.orderWriter}.probe-long`, s.names.topics.delay('long'))];
    await w.start();
    try {
      await eventually(async () => (await count('SELECT COUNT(*) AS n FROM orders WHERE sale = ?', [s.key])) === 50 && crashed > 1, { what: '50 rows after redelivery', timeoutMs: 60_000 });
      const published = await eventually(() => {
        const all = delays.flatMap((d) => d.received.map((m) => parseTimeoutMessage(m.value)));
        return new Set(all.map((t) => t.orderId)).size === 50 ? all : undefined;
      }, { what: 'a timeout message per order', timeoutMs: 30_000 });
      assert.deepEqual(new Set(published.map((t) => t.orderId)), new Set(ids));
      for (const t of published) {
        assert.equal(t.dueAt - t.createdAt, t.bucket === 'short' ? 60_000 : 30 * 60_000);
        assert.equal(t.bucket, t.skuId === 'hot' ? 'short' : 'long');
      }
      const timestamps = delays.flatMap((d) => d.received.map((m) => [m.key, m.timestamp, parseTimeoutMessage(m.value).createdAt]));
      assert.ok(timestamps.every(([key, ts, createdAt]) => typeof key === 'string' && ts === createdAt), 'key = order id, Kafka timestamp = createdAt');
      assert.equal(await count('SELECT COUNT(DISTINCT order_id) AS n FROM orders WHERE sale = ?', [s.key]), 50);
      // Written counts inserts, not deliveries.
      assert.equal((await dataPlaneMetrics(reg).ordersWritten.get()).values.find((v) => v.labels.flashsale === s.key)?.value, 50);

      // A producer that sends the same messages twice (a retried send) changes nothing either.
      const again: OrderMessage[] = (await orderRows(db, s.key, 'hot')).map((r) => ({ v: 1, orderId: r.order_id, sale: s.key, skuId: 'hot', userId: r.user_id, quantity: 1, createdAt: Date.now() }));
      await p.send([{ topic: s.names.topics.orders, messages: again.map((m) => ({ key: 'hot', value: JSON.stringify(m) })) }]);
      const offsets = await eventually(async () => {
        const admin = await kafka.admin();
        const [committed, high] = await Promise.all([admin.groupOffsets(s.names.groups.orderWriter, [s.names.topics.orders]), admin.topicOffsets(s.names.topics.orders)]);
        const c = new Map(committed.map((o) => [o.partition, o.offset]));
        return high.every((h) => (c.get(h.partition) ?? '0') === h.high) ? high : undefined;
      }, { what: 'writer caught up' });
      assert.ok(offsets.length > 0);
      // Messages without bucket and due time (an older API): the writer composes their timeout
      // messages from its spec (the API's own messages above go out as they came).
      const composed = await eventually(() => {
        const mine = delays[0]?.received.map((m) => parseTimeoutMessage(m.value)).filter((t) => again.some((a) => a.orderId === t.orderId && a.createdAt === t.createdAt));
        return mine && mine.length >= again.length ? mine : undefined;
      }, { what: 'timeout messages of the older-format duplicates', timeoutMs: 30_000 });
      for (const t of composed) assert.deepEqual([t.bucket, t.dueAt - t.createdAt, t.skuId], ['short', 60_000, 'hot']);
      assert.equal(await count('SELECT COUNT(*) AS n FROM orders WHERE sale = ?', [s.key]), 50);
      assert.equal(await count("SELECT COUNT(*) AS n FROM orders WHERE sale = ? AND status = 'UNPAID'", [s.key]), 50);
    } finally {
      await w.stop();
      await redoApi.close();
      await p.disconnect();
    }
  });

  it('sends malformed and foreign messages to the dead-letter topic with the reason and keeps going', { timeout: 60_000 }, async () => {
    const dlq = collect(`${ctx.names.groups.orderWriter}.probe-dlq`, ctx.names.topics.deadLetter);
    const good = (await http('POST', `${url}/orders`, { userId: 'after-poison', skuId: 'plenty' })).body.orderId as string;
    await producer.send([
      {
        topic: ctx.names.topics.orders,
        messages: [
          { key: 'plenty', value: 'not json at all' },
          { key: 'plenty', value: JSON.stringify({ v: 1, orderId: 'x', sale: ctx.key, skuId: 'plenty', userId: 'u', quantity: 0, createdAt: 1 }) },
          { key: 'tablet', value: JSON.stringify({ v: 1, orderId: orderIdGenerator()(), sale: ctx.key, skuId: 'tablet', userId: 'u', quantity: 1, createdAt: 1 }) },
          { key: 'plenty', value: Buffer.from([0xff, 0xfe, 0x00]) },
          { key: 'plenty', value: JSON.stringify({ v: 1, orderId: orderIdGenerator()(), sale: ctx.key, skuId: 'plenty', userId: 'u', quantity: 1, createdAt: 1 }) },
        ],
      },
    ]);
    const letters = await eventually(() => (dlq.received.length >= 5 ? dlq.received.map((m) => JSON.parse(m.value?.toString() ?? '') as DeadLetter) : undefined), { what: '5 dead letters' });
    assert.equal(letters.length, 5);
    assert.ok(letters.some((l) => l.reason.startsWith('field createdAt')), 'a time MySQL cannot store is refused, not written as zero');
    assert.ok(letters.every((l) => l.source === 'orders' && l.topic === ctx.names.topics.orders && l.reason.length > 0));
    assert.ok(letters.some((l) => l.reason.startsWith('not JSON') && l.value === 'not json at all'));
    assert.ok(letters.some((l) => l.reason.startsWith('field quantity')));
    assert.ok(letters.some((l) => l.reason === 'unknown SKU tablet'));
    assert.ok(letters.some((l) => l.valueEncoding === 'base64' && l.value === Buffer.from([0xff, 0xfe, 0x00]).toString('base64')));
    // The partition was not blocked: an order sent before and one after the poison are written.
    const later = (await http('POST', `${url}/orders`, { userId: 'after-poison-2', skuId: 'plenty' })).body.orderId as string;
    await eventually(async () => (await count('SELECT COUNT(*) AS n FROM orders WHERE order_id IN (?, ?)', [good, later])) === 2, { what: 'orders around the poison' });
  });
});

describe('reaper', () => {
  it('returns an orphaned reservation older than the bound, leaves young ones, and a late order is written CLOSED', { timeout: 60_000 }, async () => {
    const now = Date.now();
    const next = orderIdGenerator();
    const orphan = { orderId: next(), userId: 'orphan', skuId: 'hot', quantity: 1, reservedAt: now - 10 * 60_000 };
    const young = { orderId: next(), userId: 'young', skuId: 'hot', quantity: 1, reservedAt: now - 60_000 };
    const levelBefore = await ctx.stock.level('hot');
    // The API reserved but died before the hand-off: no message in Kafka.
    assert.equal((await ctx.stock.reserve(orphan, 1)).outcome, 'reserved');
    assert.equal((await ctx.stock.reserve(young, 1)).outcome, 'reserved');
    assert.equal((await http('GET', `${url}/orders/${orphan.orderId}`)).body.status, 'QUEUED');

    const reg = new Registry();
    const reaper = new Reaper({ sales: [ctx], registry: reg, logger, clock: () => now, olderThanMs: 5 * 60_000 });
    assert.equal(await reaper.tick(), 1);
    assert.equal(await reaper.tick(), 0, 'a second pass returns nothing twice');
    assert.equal((await dataPlaneMetrics(reg).reservationsReaped.get()).values[0]?.value, 1);
    assert.equal(await ctx.stock.holding('hot', 'orphan'), 0);
    assert.equal(await ctx.stock.holding('hot', 'young'), 1);
    assert.equal((await ctx.stock.level('hot'))?.remaining, (levelBefore?.remaining ?? 0) - 1, 'only the young reservation still holds a unit');
    assert.equal((await http('GET', `${url}/orders/${orphan.orderId}`)).status, 404);

    // The order shows up after all (a very slow hand-off): recorded CLOSED, stock not returned twice.
    const late: OrderMessage = { v: 1, orderId: orphan.orderId, sale: ctx.key, skuId: 'hot', userId: 'orphan', quantity: 1, createdAt: orphan.reservedAt };
    await producer.send([{ topic: ctx.names.topics.orders, messages: [{ key: 'hot', value: JSON.stringify(late) }] }]);
    const closed = await eventually(async () => {
      const r = await http('GET', `${url}/orders/${orphan.orderId}`);
      return r.status === 200 ? r : undefined;
    }, { what: 'late order row' });
    assert.equal(closed.body.status, 'CLOSED');
    assert.equal((await ctx.stock.level('hot'))?.remaining, (levelBefore?.remaining ?? 0) - 1);
    // Tidy: the young reservation is this test's own.
    assert.equal(await ctx.stock.releaseReservation(young), 'released');
  });

  it('confirms the hand-offs of one turn in one script call per SKU, each order with its own outcome', { timeout: 60_000 }, async () => {
    const next = orderIdGenerator();
    const now = Date.now();
    const order = (userId: string) => ({ orderId: next(), userId, skuId: 'hot', quantity: 1, reservedAt: now });
    const [kept, reaped, claimed] = [order('confirm-kept'), order('confirm-reaped'), order('confirm-claimed')];
    for (const r of [kept, reaped, claimed]) assert.equal((await ctx.stock.reserve(r, 1)).outcome, 'reserved');
    assert.equal(await ctx.stock.releaseReservation(reaped), 'released', 'the reaper returned this one first');
    assert.deepEqual(await ctx.stock.claim('hot', [claimed.orderId]), ['claimed']);
    // Count the script calls: a store on a client of its own without auto-pipelining (ioredis's
    // auto-pipeline calls the command function again, which a counting wrapper would break).
    const plain = new IORedis(loadConfig({}).redisUrl);
    const store = new StockStore(plain, ctx.sale);
    const scripted = plain as unknown as { fsConfirm: (...a: string[]) => Promise<number[]> };
    const original = scripted.fsConfirm;
    let calls = 0;
    scripted.fsConfirm = (...a: string[]) => {
      calls++;
      return original.apply(plain, a);
    };
    try {
      const outcomes = await Promise.all([kept, reaped, claimed, order('confirm-unknown')].map((r) => store.confirmHandOff(r)));
      assert.deepEqual(outcomes, ['kept', 'reaped', 'kept', 'kept']);
      assert.equal(calls, 1, 'four confirmations made in one turn: one script call');
    } finally {
      plain.disconnect();
    }
    // A kept reservation left the reaper's index: the reaper never returns it, however old.
    const reg = new Registry();
    const reaper = new Reaper({ sales: [ctx], registry: reg, logger, clock: () => now + 3_600_000, olderThanMs: 5 * 60_000 });
    await reaper.tick();
    assert.equal(await ctx.stock.holding('hot', 'confirm-kept'), 1);
    assert.equal(await ctx.stock.holding('hot', 'confirm-reaped'), 0);
    // Tidy: give the test's own units back.
    await ctx.stock.releaseOrder(kept);
    await ctx.stock.releaseOrder(claimed);
  });

  it('confirms a whole batch of reserved orders at once and answers a repeated confirmation the same', { timeout: 60_000 }, async () => {
    const next = orderIdGenerator();
    const now = Date.now();
    const orders = Array.from({ length: 1500 }, (_, i) => ({ orderId: next(), userId: `confirm-batch-${i}`, skuId: 'plenty', quantity: 1, reservedAt: now }));
    assert.ok((await Promise.all(orders.map((r) => ctx.stock.reserve(r, 1)))).every((r) => r.outcome === 'reserved'));
    // More than one chunk of the script's variadic commands (1000 ids) and of a confirmation call.
    assert.ok((await Promise.all(orders.map((r) => ctx.stock.confirmHandOff(r)))).every((o) => o === 'kept'));
    assert.equal((await ctx.stock.staleReservations('plenty', now + 1, 10_000)).filter((r) => r.userId.startsWith('confirm-batch-')).length, 0, 'out of the reaper index');
    // Confirmed before (the API's resend after a lost reply), twice in one call, and one reaped by then.
    const reaped = orders[7]!;
    assert.equal(await ctx.stock.releaseReservation(reaped), 'released');
    const again = await Promise.all([orders[0]!, orders[0]!, reaped, orders[1]!].map((r) => ctx.stock.confirmHandOff(r)));
    assert.deepEqual(again, ['kept', 'kept', 'reaped', 'kept']);
    const claims = await ctx.stock.claim('plenty', orders.map((r) => r.orderId));
    assert.equal(claims.filter((c) => c === 'claimed').length, orders.length - 1);
    assert.equal(claims[7], 'reaped');
    for (const r of orders) if (r !== reaped) await ctx.stock.releaseOrder(r);
  });

  it('releases closed orders of several SKUs, one script call per SKU and chunk, each order once', { timeout: 60_000 }, async () => {
    const next = orderIdGenerator();
    const now = Date.now();
    const order = (userId: string, skuId = 'plenty') => ({ orderId: next(), userId, skuId, quantity: 1, reservedAt: now });
    const reserve = async (r: ReturnType<typeof order>, limit: number) => assert.equal((await ctx.stock.reserve(r, limit)).outcome, 'reserved');
    const [t1, t2, t3] = [order('release-two'), order('release-two'), order('release-two')];
    for (const r of [t1, t2, t3]) await reserve(r, 3);
    const single = order('release-single', 'hot');
    await reserve(single, 1);
    const earlier = order('release-earlier');
    await reserve(earlier, 1);
    assert.equal(await ctx.stock.releaseOrderOutcome(earlier), 'released');
    // More than one chunk (RELEASE_CHUNK = 1000) of one SKU.
    const bulk = Array.from({ length: 1200 }, (_, i) => order(`release-bulk-${i}`));
    await Promise.all(bulk.map((r) => reserve(r, 1)));
    const levels = async () => [await ctx.stock.level('plenty'), await ctx.stock.level('hot')];
    const before = await levels();
    const seqBefore = await ctx.stock.seq('plenty');
    const rows = [t1, single, earlier, t3, t1, order('release-ghost', 'ghost'), ...bulk];
    const out = await ctx.stock.releaseOrders(rows);
    assert.deepEqual(out.slice(0, 6).map((o) => o.outcome), ['released', 'released', 'released-before', 'released', 'released-before', 'no-stock-keys']);
    assert.ok(out.slice(6).every((o) => o.outcome === 'released'));
    const after = await levels();
    assert.equal(after[0]!.remaining, before[0]!.remaining + 2 + bulk.length, 'plenty: t1, t3 and the bulk orders back, once each');
    assert.equal(after[1]!.remaining, before[1]!.remaining + 1);
    // Holdings: release-two keeps t2; the single buyer and every bulk buyer hold nothing any more.
    assert.equal(await ctx.stock.holding('plenty', 'release-two'), 1);
    assert.equal(await ctx.stock.holding('hot', 'release-single'), 0);
    assert.equal(await ctx.stock.holding('plenty', 'release-bulk-1100'), 0);
    // The last order id goes with its order (t3 was release-two's last), as one release at a time does it.
    assert.equal(await redis.hget(ctx.names.redis.sku('plenty').lastOrder, 'release-two'), null);
    assert.equal(await redis.hget(ctx.names.redis.sku('hot').lastOrder, 'release-single'), null);
    // Every release applied now has its own counter value above the one before, the last one the SKU's.
    const seqs = out.filter((o, i) => o.outcome === 'released' && rows[i]!.skuId === 'plenty').map((o) => o.seq);
    assert.equal(new Set(seqs).size, seqs.length);
    assert.ok(seqs.every((q) => q > seqBefore));
    assert.equal(Math.max(...seqs), await ctx.stock.seq('plenty'));
    // The same call again (a crash before applied_at was written): nothing comes back twice.
    const again = await ctx.stock.releaseOrders(rows);
    assert.deepEqual(again.map((o) => o.outcome), rows.map((r) => (r.skuId === 'ghost' ? 'no-stock-keys' : 'released-before')));
    assert.deepEqual(await levels(), after);
    await ctx.stock.releaseOrder(t2);
  });

  it('claims a batch in one script call: each order with its own outcome, an id twice as two calls would answer', { timeout: 60_000 }, async () => {
    const next = orderIdGenerator();
    const now = Date.now();
    const order = (userId: string) => ({ orderId: next(), userId, skuId: 'plenty', quantity: 1, reservedAt: now });
    const [a, b, reaped, before, unknown] = [order('claim-a'), order('claim-b'), order('claim-reaped'), order('claim-before'), order('claim-unknown')];
    for (const r of [a, b, reaped, before]) assert.equal((await ctx.stock.reserve(r, 1)).outcome, 'reserved');
    assert.equal(await ctx.stock.releaseReservation(reaped), 'released');
    const first = await ctx.stock.claimWithSeq('plenty', [before.orderId]);
    assert.deepEqual(first.results, ['claimed']);
    const ids = [a.orderId, before.orderId, a.orderId, reaped.orderId, unknown.orderId, b.orderId, unknown.orderId, reaped.orderId];
    const { results, seq } = await ctx.stock.claimWithSeq('plenty', ids);
    assert.deepEqual(results, ['claimed', 'claimed-before', 'claimed-before', 'reaped', 'unknown', 'claimed', 'unknown', 'reaped']);
    assert.equal(seq, first.seq + 1, 'one claim call raises the counter once');
    // Claimed orders left the reservations and the reaper's index; the units stay with their buyers.
    assert.equal(await ctx.stock.reservation('plenty', a.orderId), null);
    assert.ok(await ctx.stock.isClaimed('plenty', b.orderId));
    assert.equal((await ctx.stock.staleReservations('plenty', now + 1, 10_000)).filter((r) => r.userId.startsWith('claim-')).length, 0);
    assert.equal(await ctx.stock.holding('plenty', 'claim-a'), 1);
    // The same call again (a redelivered batch) changes nothing and answers claimed-before.
    const redelivered = await ctx.stock.claim('plenty', [a.orderId, b.orderId]);
    assert.deepEqual(redelivered, ['claimed-before', 'claimed-before']);
    for (const r of [a, b, before]) await ctx.stock.releaseOrder(r);
  });
});
