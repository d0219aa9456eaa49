// docs/openapi.yaml against the implementation (real Kafka, Redis, MariaDB): every route and
// status the document lists is reached and its body validates against the documented schema, every
// `error` value of the document is produced, undocumented paths are 404 with a JSON body, other
// methods 405, and GET /openapi.json serves the document itself. The order-path tests check their
// answers through the same checker (test/support/order-path.ts `http`).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { OrderApi } from '../controller/dataplane/api.ts';
import { openapiDocument } from '../controller/dataplane/openapi-document.ts';
import { orderIdGenerator } from '../controller/dataplane/order-id.ts';
import { OrderWriter } from '../controller/dataplane/order-writer.ts';
import { saleContext, type SaleContext } from '../controller/dataplane/sale-context.ts';
import { BatchingProducer, type KafkaGateway, type KafkaProducer } from '../controller/infra/kafka.ts';
import type { Pool } from '../controller/infra/mysql.ts';
import type { Redis } from '../controller/infra/redis.ts';
import { dropDatabase, eventually, logger, testConfig, testKafka, testRedis, uniqueName } from './support/infra.ts';
import { checkAnswer, documentedErrors, documentedOperations, openapi, responseSchemaPointers, validateAt } from './support/openapi.ts';
import { documentModulePath, readOpenApi, renderDocumentModule } from './support/openapi-gen.ts';
import { answered, closeHttpAgent, http, provisionSale, removeSale, saleDoc, pool as makePool } from './support/order-path.ts';

describe('the document', () => {
  it('the compiled copy the API serves is the YAML (`npm run gen:openapi` after editing docs/openapi.yaml)', () => {
    assert.equal(readFileSync(documentModulePath, 'utf8'), renderDocumentModule(readOpenApi()));
    assert.deepEqual(openapiDocument, readOpenApi());
  });

  it('is OpenAPI 3.1, every $ref resolves, every response schema compiles', () => {
    assert.equal(openapi.openapi, '3.1.0');
    const refs: string[] = [];
    const walk = (v: unknown): void => {
      if (Array.isArray(v)) v.forEach(walk);
      else if (v && typeof v === 'object') {
        for (const [k, x] of Object.entries(v)) {
          if (k === '$ref' && typeof x === 'string') refs.push(x);
          else walk(x);
        }
      }
    };
    walk(openapi);
    assert.ok(refs.length > 20);
    for (const ref of refs) {
      assert.match(ref, /^#\//, ref);
      let target: unknown = openapi;
      for (const seg of ref.slice(2).split('/')) target = (target as Record<string, unknown>)?.[seg.replace(/~1/g, '/').replace(/~0/g, '~')];
      assert.ok(target && typeof target === 'object', `unresolved ${ref}`);
    }
    const ops = documentedOperations();
    assert.ok(ops.length >= 15, `${ops.length} operations`);
    // Compiling checks the schemas (an unknown keyword value or an unresolvable $ref throws).
    const pointers = responseSchemaPointers();
    assert.ok(pointers.length >= 15);
    for (const p of pointers) assert.equal(typeof validateAt(p, Symbol('nothing valid')), 'string', p);
    assert.equal(validateAt('/components/schemas/OrderRequest', { userId: 'u', skuId: 's' }), null);
  });

  it('the checker rejects what the document does not allow (it can fail)', () => {
    const ok = (m: string, p: string, status: number, text: string, ct = 'application/json') => checkAnswer(m, p, { status, contentType: ct, text }).problem;
    assert.equal(ok('POST', '/v1/sales/s/orders', 409, '{"error":"SOLD_OUT"}'), null);
    assert.notEqual(ok('POST', '/v1/sales/s/orders', 409, '{"error":"SOLD"}'), null, 'error value not in the enum');
    assert.notEqual(ok('POST', '/v1/sales/s/orders', 409, '{"error":"SOLD_OUT","extra":1}'), null, 'extra field');
    assert.notEqual(ok('POST', '/v1/sales/s/orders', 500, '{"error":"INTERNAL"}'), null, 'undocumented status');
    assert.notEqual(ok('POST', '/v1/sales/s/orders', 400, '{"error":"INVALID_REQUEST"}'), null, 'message missing');
    assert.notEqual(ok('POST', '/v1/sales/s/orders', 202, '{"orderId":"x","status":"QUEUED"}'), null, 'order id not a UUIDv7');
    assert.notEqual(ok('GET', '/nowhere', 200, '{}'), null, 'undocumented path answered 200');
    assert.notEqual(ok('GET', '/nowhere', 404, 'Not Found', 'text/plain'), null, 'undocumented path without the JSON body');
    assert.notEqual(ok('DELETE', '/v1/sales/s', 404, '{"error":"NOT_FOUND"}'), null, 'other method must be 405');
    assert.notEqual(ok('GET', '/healthz', 200, '{"status":"ok"}', 'text/html'), null, 'content type');
    assert.equal(ok('GET', '/metrics', 200, '# HELP x\n', 'text/plain; version=0.0.4; charset=utf-8'), null);
  });
});

describe('the implementation against the document', () => {
  const config = testConfig();
  let kafka: KafkaGateway;
  let redis: Redis;
  let db: Pool;
  let ctx: SaleContext;
  let producer: KafkaProducer;
  let dead: KafkaProducer;
  let api: OrderApi;
  let failing: OrderApi;
  let writer: OrderWriter;
  let root: string;
  let failingRoot: string;
  let now = Date.now();
  const namespace = uniqueName('oa');

  before(async () => {
    kafka = testKafka();
    redis = testRedis();
    db = makePool(config);
    ctx = await provisionSale(saleDoc(namespace, { startTime: '2020-01-01T00:00:00Z', endTime: '2100-01-01T00:00:00Z', perUserLimit: 2 }), { config, kafka, redis, pool: db });
    producer = await kafka.producer();
    api = new OrderApi({ sales: [ctx], redis, pool: db, producer: new BatchingProducer(producer), registry: new Registry(), logger, clock: () => now });
    root = await api.listen(0);
    writer = new OrderWriter({ ctx, kafka, pool: db, registry: new Registry(), logger });
    await writer.start();
    // A second API whose producer is disconnected (every hand-off fails), also serving a sale that
    // was never provisioned in Redis (no stock keys: remaining null, purchases 503).
    dead = await kafka.producer();
    await dead.disconnect();
    const ghost = saleContext(saleDoc(namespace, {}, 'ghost'), redis);
    failing = new OrderApi({ sales: [ctx, ghost], redis, pool: db, producer: new BatchingProducer(dead), registry: new Registry(), logger, clock: () => now });
    failingRoot = await failing.listen(0);
  });

  after(async () => {
    await writer?.stop();
    await api?.close();
    await failing?.close();
    closeHttpAgent();
    await producer?.disconnect();
    if (ctx) await removeSale(ctx, { kafka, redis });
    await kafka?.close();
    redis?.disconnect();
    await db?.end();
    await dropDatabase(config);
  });

  const sale = () => `${root}/v1/sales/sale`;
  const unpaid = (orderId: string) => eventually(async () => (await http('GET', `${sale()}/orders/${orderId}`)).body.status === 'UNPAID', { what: `${orderId} UNPAID`, timeoutMs: 30_000 });

  it('reaches every documented status and error, each body valid against its schema', { timeout: 60_000 }, async () => {
    const expect = async (method: string, url: string, status: number, body?: unknown, error?: string) => {
      const r = await http(method, url, body);
      assert.equal(r.status, status, `${method} ${url}: ${r.text}`);
      if (error) assert.equal(r.body.error, error, `${method} ${url}`);
      return r;
    };
    // Purchases.
    const placed = await expect('POST', `${sale()}/orders`, 202, { userId: 'alice', skuId: 'plenty', quantity: 2 });
    const alices = placed.body.orderId as string;
    const retry = await expect('POST', `${sale()}/orders`, 409, { userId: 'alice', skuId: 'plenty' }, 'ALREADY_ORDERED');
    assert.equal(retry.body.orderId, alices);
    await expect('POST', `${sale()}/orders`, 202, { userId: 'bob', skuId: 'one' });
    await expect('POST', `${sale()}/orders`, 409, { userId: 'carol', skuId: 'one' }, 'SOLD_OUT');
    await expect('POST', `${sale()}/orders`, 400, '{"userId":', 'INVALID_REQUEST');
    await expect('POST', `${sale()}/orders`, 400, { userId: 'dave', skuId: 'hot', quantity: 3 }, 'INVALID_REQUEST');
    await expect('POST', `${sale()}/orders`, 404, { userId: 'dave', skuId: 'tablet' }, 'SKU_NOT_FOUND');
    await expect('POST', `${root}/v1/sales/nope/orders`, 404, { userId: 'dave', skuId: 'hot' }, 'SALE_NOT_FOUND');
    await expect('GET', `${sale()}/orders`, 405, undefined, 'METHOD_NOT_ALLOWED');
    const saved = now;
    now = Date.parse('2019-12-31T23:59:59.999Z');
    await expect('POST', `${sale()}/orders`, 403, { userId: 'dave', skuId: 'hot' }, 'SALE_NOT_STARTED');
    now = Date.parse('2100-01-01T00:00:00Z');
    await expect('POST', `${sale()}/orders`, 403, { userId: 'dave', skuId: 'hot' }, 'SALE_ENDED');
    now = saved;
    // spec.suspend (the operator's switch, set here as the operator sets it): only what would reserve is refused.
    await ctx.stock.setSuspended('hot', true);
    await ctx.stock.setSuspended('plenty', true);
    await expect('POST', `${sale()}/orders`, 403, { userId: 'dave', skuId: 'hot' }, 'SALE_SUSPENDED');
    assert.equal((await expect('POST', `${sale()}/orders`, 409, { userId: 'alice', skuId: 'plenty' }, 'ALREADY_ORDERED')).body.orderId, alices);
    assert.deepEqual(((await expect('GET', sale(), 200)).body.skus as { id: string; suspended: boolean }[]).filter((k) => k.suspended).map((k) => k.id).sort(), ['hot', 'plenty']);
    await ctx.stock.setSuspended('hot', false);
    await ctx.stock.setSuspended('plenty', false);
    // 503: the hand-off fails (stock given back), and a SKU with no stock in Redis.
    await expect('POST', `${failingRoot}/v1/sales/sale/orders`, 503, { userId: 'erin', skuId: 'hot' }, 'UNAVAILABLE');
    await expect('POST', `${failingRoot}/v1/sales/ghost/orders`, 503, { userId: 'erin', skuId: 'hot' }, 'UNAVAILABLE');
    assert.equal(await ctx.stock.holding('hot', 'erin'), 0);

    // Orders: QUEUED (reserved, not in MySQL), UNPAID, PAID, CLOSED.
    const queued = orderIdGenerator()();
    assert.equal((await ctx.stock.reserve({ orderId: queued, userId: 'frank', skuId: 'hot', quantity: 1, reservedAt: now }, 2)).outcome, 'reserved');
    assert.equal((await expect('GET', `${sale()}/orders/${queued}`, 200)).body.status, 'QUEUED');
    await expect('POST', `${sale()}/orders/${queued}/pay`, 409, undefined, 'ORDER_QUEUED');
    await unpaid(alices);
    await expect('POST', `${sale()}/orders/${alices}/pay`, 200);
    await expect('POST', `${sale()}/orders/${alices}/pay`, 200);
    assert.equal((await expect('GET', `${sale()}/orders/${alices}`, 200)).body.status, 'PAID');
    const gina = (await expect('POST', `${sale()}/orders`, 202, { userId: 'gina', skuId: 'plenty' })).body.orderId as string;
    await unpaid(gina);
    await db.query("UPDATE orders SET status = 'CLOSED', closed_at = UTC_TIMESTAMP(3) WHERE order_id = ? AND status = 'UNPAID'", [gina]);
    await expect('POST', `${sale()}/orders/${gina}/pay`, 409, undefined, 'ORDER_CLOSED');
    assert.equal((await expect('GET', `${sale()}/orders/${gina}`, 200)).body.status, 'CLOSED');
    const unknown = orderIdGenerator()();
    await expect('GET', `${sale()}/orders/${unknown}`, 404, undefined, 'ORDER_NOT_FOUND');
    await expect('GET', `${sale()}/orders/not-an-id`, 404, undefined, 'ORDER_NOT_FOUND');
    await expect('GET', `${root}/v1/sales/nope/orders/${unknown}`, 404, undefined, 'SALE_NOT_FOUND');
    await expect('POST', `${sale()}/orders/${unknown}/pay`, 404, undefined, 'ORDER_NOT_FOUND');
    await expect('POST', `${root}/v1/sales/nope/orders/${unknown}/pay`, 404, undefined, 'SALE_NOT_FOUND');
    await expect('DELETE', `${sale()}/orders/${unknown}`, 405, undefined, 'METHOD_NOT_ALLOWED');
    await expect('GET', `${sale()}/orders/${unknown}/pay`, 405, undefined, 'METHOD_NOT_ALLOWED');

    // The sale.
    const s = await expect('GET', sale(), 200);
    assert.deepEqual((s.body.skus as { id: string }[]).map((k) => k.id).sort(), ['hot', 'one', 'plenty']);
    const ghost = await expect('GET', `${failingRoot}/v1/sales/ghost`, 200);
    assert.ok((ghost.body.skus as { remaining: unknown }[]).every((k) => k.remaining === null), 'remaining null without stock in Redis');
    await expect('GET', `${root}/v1/sales/nope`, 404, undefined, 'SALE_NOT_FOUND');
    await expect('PUT', sale(), 405, undefined, 'METHOD_NOT_ALLOWED');

    // Probes, metrics, the document.
    await expect('GET', `${root}/healthz`, 200);
    await expect('GET', `${root}/readyz`, 200);
    await expect('GET', `${failingRoot}/readyz`, 503);
    assert.match((await expect('GET', `${root}/metrics`, 200)).text, /flashsale_api_requests_total/);
    assert.deepEqual((await expect('GET', `${root}/openapi.json`, 200)).body, openapi);
    for (const p of ['/healthz', '/readyz', '/metrics', '/openapi.json']) await expect('POST', `${root}${p}`, 405, undefined, 'METHOD_NOT_ALLOWED');
    await expect('POST', sale(), 405, undefined, 'METHOD_NOT_ALLOWED');
    await expect('PATCH', `${sale()}/orders/${unknown}/pay`, 405, undefined, 'METHOD_NOT_ALLOWED');

    // Undocumented paths: 404 with a JSON body.
    for (const p of ['/', '/v1', '/v1/sales', '/v1/sales/', '/v1/sales/sale/', '/v1/sales/sale/items', '/v1/sales/sale/orders/x/pay/now', '/v1/sales/sale/orders/x/refund', '/healthz/', '/openapi.yaml', '/v2/sales/sale']) {
      await expect('GET', `${root}${p}`, 404, undefined, 'NOT_FOUND');
      await expect('POST', `${root}${p}`, 404, '{}', 'NOT_FOUND');
    }

    // Coverage: every documented status, and every `error` value of its schema, was answered.
    const missing: string[] = [];
    for (const [key, errors] of documentedErrors()) {
      if (errors.length === 0) {
        if (!answered.has(key)) missing.push(key);
      } else for (const e of errors) if (!answered.has(`${key} ${e}`)) missing.push(`${key} ${e}`);
    }
    for (const template of Object.keys(openapi.paths as object)) if (!answered.has(`${template} other method 405`)) missing.push(`${template} other method 405`);
    if (!answered.has('undocumented path 404')) missing.push('undocumented path 404');
    assert.deepEqual(missing, [], 'documented but never answered');
  });
});
