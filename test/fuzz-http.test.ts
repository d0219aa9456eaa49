// Property-based fuzzing of the HTTP API (fast-check) from docs/openapi.yaml, against a real
// `flashsale api` process on real Redis and Kafka: thousands of generated requests — valid and
// invalid bodies, wrong types, huge fields, bad JSON, random bytes, unicode, wrong methods and
// paths. For every request: no 5xx but the documented 503, the answer is documented (status and
// body validate), a purchase body is refused with 400 exactly when the document says it is invalid,
// and a request not answered 202 changes nothing in Redis (compared key by key with DUMP). At the
// end: the process is alive, /healthz is 200, the orders topic holds exactly the 202 orders, and
// Redis holds exactly their units. FUZZ_SEED replays a run, FUZZ_RUNS sets its size.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { Agent, request } from 'node:http';
import { connect } from 'node:net';
import { after, before, it } from 'node:test';
import fc from 'fast-check';
import { parseOrderMessage } from '../controller/dataplane/messages.ts';
import type { SaleContext } from '../controller/dataplane/sale-context.ts';
import type { KafkaGateway } from '../controller/infra/kafka.ts';
import type { Pool } from '../controller/infra/mysql.ts';
import type { Redis } from '../controller/infra/redis.ts';
import { dropDatabase, eventually, testConfig, testKafka, testRedis, uniqueName } from './support/infra.ts';
import { checkAnswer, validateAt } from './support/openapi.ts';
import { pool as makePool, provisionSale, removeSale, saleDoc } from './support/order-path.ts';
import { spawnWorker } from './support/scenarios.ts';
import { readTopic } from './support/timeouts.ts';

const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : Math.floor(Math.random() * 2 ** 31);
const RUNS = Number(process.env.FUZZ_RUNS ?? 2000);
const PER_USER_LIMIT = 3;
const MAX_BODY = 1024;

const config = testConfig();
const sale = saleDoc(uniqueName('fzh'), {
  perUserLimit: PER_USER_LIMIT,
  skus: [
    { id: 'hot', stock: 40, timeoutBucket: 'short' },
    { id: 'few', stock: 3, timeoutBucket: 'short' },
    { id: 'plenty', stock: 1_000_000, timeoutBucket: 'long' },
  ],
});
let kafka: KafkaGateway;
let redis: Redis;
let db: Pool;
let ctx: SaleContext;
let child: ChildProcess;
let base: string;
const agent = new Agent({ keepAlive: true, maxSockets: 16 });

before(async () => {
  kafka = testKafka();
  redis = testRedis();
  db = makePool(config);
  // MariaDB may refuse a connect for a few seconds on a loaded machine (connectTimeout 5 s in
  // migrate): provisioning is retried until a deadline, it is not what this test is about.
  ctx = await eventually(() => provisionSale(sale, { config, kafka, redis, pool: db }), { timeoutMs: 60_000, intervalMs: 1000, what: 'the sale provisioned' });
  child = spawnWorker('api', sale, config, { env: { LOG_LEVEL: 'info' }, stdout: true });
  let out = '';
  const errors: string[] = [];
  child.stderr?.on('data', (d: Buffer) => errors.push(d.toString()));
  base = await new Promise<string>((resolve, reject) => {
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /"url":"(http:\/\/[^"]+)"[^\n]*api listening/.exec(out);
      if (m) resolve(m[1] as string);
    });
    child.once('exit', (code) => reject(new Error(`flashsale api exited with ${code} before listening:\n${out}\n${errors.join('')}`)));
  });
  // Only errors and warnings matter from here on (a 503 is logged as a warning).
  child.stdout?.on('data', (d: Buffer) => {
    for (const line of d.toString().split('\n')) if (/"level":(4|5|6)0/.test(line)) process.stderr.write(`[api] ${line.slice(0, 500)}\n`);
  });
});

after(async () => {
  if (child && child.exitCode === null && child.signalCode === null) {
    child.kill('SIGTERM');
    await once(child, 'exit');
  }
  agent.destroy();
  if (ctx) await removeSale(ctx, { kafka, redis });
  await kafka?.close();
  redis?.disconnect();
  await db?.end();
  await dropDatabase(config);
});

interface Req {
  method: string;
  path: string;
  body: Buffer | null;
  contentType?: string;
}

interface Res {
  status: number;
  contentType: string | undefined;
  text: string;
}

function send(r: Req): Promise<Res> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (r.body) headers['content-length'] = String(r.body.length);
    if (r.contentType) headers['content-type'] = r.contentType;
    // The path is sent as generated (no URL normalisation of `..` or `//` on the client side).
    const { hostname, port } = new URL(base);
    const req = request({ hostname, port, path: r.path, method: r.method, agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, contentType: res.headers['content-type'], text: Buffer.concat(chunks).toString('utf8') }));
    });
    req.setTimeout(30_000, () => req.destroy(new Error(`no answer within 30 s: ${r.method} ${r.path}`)));
    req.on('error', reject);
    req.end(r.body ?? undefined);
  });
}

/**
 * Every key of the sale in Redis with its content: a rejected request must leave this unchanged.
 * Content, not DUMP: a hash in hashtable encoding serialises in dict order, which incremental
 * rehashing changes without any write.
 */
async function redisState(): Promise<Map<string, string>> {
  const keys: string[] = [];
  for (const pattern of ctx.names.redis.patterns) {
    let cursor = '0';
    do {
      const [next, found] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      keys.push(...found);
    } while (cursor !== '0');
  }
  keys.sort();
  const types = await Promise.all(keys.map((k) => redis.type(k)));
  const contents = await Promise.all(keys.map(async (k, i): Promise<unknown> => {
    switch (types[i]) {
      case 'string': return redis.get(k);
      case 'hash': return Object.entries(await redis.hgetall(k)).sort();
      case 'set': return (await redis.smembers(k)).sort();
      case 'zset': return redis.zrange(k, 0, -1, 'WITHSCORES');
      case 'list': return redis.lrange(k, 0, -1);
      default: return types[i];
    }
  }));
  return new Map(keys.map((k, i) => [k, `${types[i]} ${JSON.stringify(contents[i])}`]));
}

function diff(a: Map<string, string>, b: Map<string, string>): string[] {
  const out: string[] = [];
  for (const k of new Set([...a.keys(), ...b.keys()])) if (a.get(k) !== b.get(k)) out.push(k);
  return out;
}

// ---- generators ---------------------------------------------------------------------------------

/** Percent-encodes the UTF-8 bytes of s (encodeURIComponent throws on a lone surrogate). */
const enc = (s: string) => [...Buffer.from(s, 'utf8')].map((b) => (/[A-Za-z0-9\-_.~]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`)).join('');

const uuid7 = fc.uuid({ version: 7 });
const weird = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.constantFrom('', ' ', 'hot ', 'HOT', 'höt', 'hot\u0000', '\ud800', '\udfff', 'a\u200bb', '%', '../', '{hot}', '*', '\n'),
);
const userId = fc.oneof(
  { weight: 5, arbitrary: fc.constantFrom('ann', 'bob', 'cat', 'dan', 'eve', 'Ann', 'ann ', 'änn') },
  { weight: 3, arbitrary: weird },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 120, maxLength: 140 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', minLength: 60, maxLength: 140 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 100, maxLength: 300 }) },
);
const skuId = fc.oneof({ weight: 6, arbitrary: fc.constantFrom('hot', 'few', 'plenty') }, { weight: 2, arbitrary: weird }, { weight: 1, arbitrary: fc.string({ minLength: 60, maxLength: 70 }) });
const quantity = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: -1, max: PER_USER_LIMIT + 1 }) },
  { weight: 1, arbitrary: fc.constantFrom(1.5, 0.999, 2 ** 53, -0, 1e308, '1', null, true, [1], { n: 1 }) },
  { weight: 1, arbitrary: fc.double() },
);
const anyJson = fc.jsonValue({ maxDepth: 3 });
/** An order body as an object: mostly close to valid, with wrong types, extras and omissions. */
const orderObject = fc.record(
  {
    userId: fc.oneof({ weight: 8, arbitrary: userId }, { weight: 1, arbitrary: anyJson }),
    skuId: fc.oneof({ weight: 8, arbitrary: skuId }, { weight: 1, arbitrary: anyJson }),
    quantity: quantity as fc.Arbitrary<unknown>,
    extra: anyJson,
  },
  { requiredKeys: [] },
);
const orderBody: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ userId, skuId, quantity: fc.option(fc.integer({ min: 1, max: PER_USER_LIMIT }), { nil: undefined }) }).map((o) => Buffer.from(JSON.stringify(o))) },
  { weight: 4, arbitrary: orderObject.map((o) => Buffer.from(JSON.stringify(o))) },
  { weight: 1, arbitrary: anyJson.map((v) => Buffer.from(JSON.stringify(v))) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 200 }).map((s) => Buffer.from(s)) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)) },
  { weight: 1, arbitrary: fc.constantFrom('', '{', '{"userId":"a","skuId":"hot"', 'null', '[]', '"x"', '{"userId":"a","skuId":"hot"} trailing', '\ufeff{"userId":"a","skuId":"hot"}', '{"userId":"a","skuId":"hot","__proto__":{"quantity":1}}', '{"userId":"a","skuId":"hot","userId":"b"}', '{"userId":"a","skuId":"hot","quantity":1e0}', '{"userId":"\\ud800","skuId":"hot"}').map((s) => Buffer.from(s)) },
  // Around the 1 KiB limit: padding inside a field, so only the size decides.
  { weight: 2, arbitrary: fc.tuple(userId, fc.integer({ min: 900, max: 1100 })).map(([u, n]) => Buffer.from(JSON.stringify({ userId: u, skuId: 'plenty', quantity: 1 }).replace('"quantity"', `${' '.repeat(Math.max(0, n - 60))}"quantity"`))) },
  { weight: 1, arbitrary: fc.integer({ min: 1025, max: 20_000 }).map((n) => Buffer.from(JSON.stringify({ userId: 'x'.repeat(n), skuId: 'hot' }))) },
);
const segment = fc.oneof(fc.constantFrom('sale', 'sale', 'sale', 'nope', 'SALE', 'sale%20', '%E2%82%AC', '%ZZ', '%00', '%ED%A0%80', '%C0%AF', '..', '.', ''), weird.map((s) => enc(s)));
const orderIdSeg = fc.oneof(uuid7, weird.map((s) => enc(s)), fc.constantFrom('', 'not-an-id', '00000000-0000-7000-8000-000000000000'));
const path: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: segment.map((s) => `/v1/sales/${s}/orders`) },
  { weight: 2, arbitrary: fc.tuple(segment, orderIdSeg).map(([s, o]) => `/v1/sales/${s}/orders/${o}`) },
  { weight: 2, arbitrary: fc.tuple(segment, orderIdSeg).map(([s, o]) => `/v1/sales/${s}/orders/${o}/pay`) },
  { weight: 1, arbitrary: segment.map((s) => `/v1/sales/${s}`) },
  { weight: 1, arbitrary: fc.constantFrom('/healthz', '/readyz', '/metrics', '/openapi.json', '/', '/v1', '/v1/sales', '/v1/sales/', '/healthz/', '//v1/sales/sale/orders', '/v1//sales/sale') },
  { weight: 1, arbitrary: fc.array(weird.map((s) => enc(s)), { maxLength: 8 }).map((segs) => `/${segs.join('/')}`) },
  { weight: 1, arbitrary: fc.string({ minLength: 2000, maxLength: 6000 }).map((s) => `/v1/sales/${enc(s)}/orders`) },
).chain((p) => fc.oneof({ weight: 5, arbitrary: fc.constant(p) }, { weight: 1, arbitrary: weird.map((q) => `${p}?${enc(q)}=1`) }));
const method = fc.oneof({ weight: 8, arbitrary: fc.constantFrom('POST', 'GET') }, { weight: 2, arbitrary: fc.constantFrom('PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'TRACE', 'PROPFIND') });
const contentType = fc.option(fc.constantFrom('application/json', 'text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=latin1'), { nil: undefined });
const anyRequest: fc.Arbitrary<Req> = fc.record({ method, path, body: fc.option(orderBody, { nil: null, freq: 3 }), contentType })
  .map((r) => (r.method === 'GET' || r.method === 'HEAD' ? { ...r, body: null } : r));
const requestArb: fc.Arbitrary<Req> = fc.oneof(
  // Purchases of the real sale: the body decides.
  { weight: 12, arbitrary: fc.record({ method: fc.constant('POST'), path: fc.constant('/v1/sales/sale/orders'), body: orderBody, contentType }) },
  // Lookups and payments of the real sale.
  { weight: 2, arbitrary: fc.tuple(orderIdSeg, fc.boolean()).map(([o, pay]): Req => (pay ? { method: 'POST', path: `/v1/sales/sale/orders/${o}/pay`, body: null } : { method: 'GET', path: `/v1/sales/sale/orders/${o}`, body: null })) },
  // Lookups and payments of orders this run placed (resolved when sent: `@order:<n>` is the n-th 202).
  { weight: 2, arbitrary: fc.tuple(fc.nat(), fc.boolean()).map(([n, pay]): Req => ({ method: pay ? 'POST' : 'GET', path: `@order:${n}:${pay ? 'pay' : 'get'}`, body: null })) },
  // Anything: methods, paths, bodies.
  { weight: 6, arbitrary: anyRequest },
);

// ---- the oracle ---------------------------------------------------------------------------------

/** What the document says of a purchase body: valid (any decision but 400 may follow) or invalid (400). */
function bodyIsValid(body: Buffer | null): boolean {
  if (!body || body.length > MAX_BODY) return false;
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch {
    return false;
  }
  if (validateAt('/components/schemas/OrderRequest', value) !== null) return false;
  const q = (value as { quantity?: number }).quantity ?? 1;
  return q <= PER_USER_LIMIT;
}

interface Accepted {
  orderId: string;
  userId: string;
  skuId: string;
  quantity: number;
}

it(`fuzzes the HTTP API from its OpenAPI document (seed ${SEED}, ${RUNS} requests)`, { timeout: 480_000 }, async (t) => {
  t.diagnostic(`FUZZ_SEED=${SEED} FUZZ_RUNS=${RUNS}`);
  const accepted: Accepted[] = [];
  const statuses = new Map<number, number>();
  let state = await redisState();
  let ran = 0;
  const history: string[] = [];
  const property = fc.asyncProperty(requestArb, async (generated) => {
    ran++;
    let r = generated;
    const placed = /^@order:(\d+):(pay|get)$/.exec(r.path);
    if (placed) {
      const order = accepted[Number(placed[1]) % Math.max(1, accepted.length)];
      const id = order?.orderId ?? '01a2a000-0000-7000-8000-000000000000';
      r = { ...r, path: `/v1/sales/sale/orders/${id}${placed[2] === 'pay' ? '/pay' : ''}` };
    }
    const res = await send(r);
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    const where = `${r.method} ${r.path.slice(0, 200)} body=${r.body ? JSON.stringify(r.body.toString('utf8').slice(0, 300)) : '-'} → ${res.status} ${res.text.slice(0, 300)}`;
    assert.ok(res.status < 500 || res.status === 503, `5xx other than 503: ${where}`);
    const { problem } = checkAnswer(r.method, r.path, res);
    assert.equal(problem, null, `not as documented: ${problem}`);
    const purchase = r.method === 'POST' && r.path.split('?')[0] === '/v1/sales/sale/orders';
    if (purchase) {
      if (bodyIsValid(r.body)) assert.notEqual(res.status, 400, `a body valid by the document refused: ${where}`);
      else assert.equal(res.status, 400, `a body invalid by the document not refused with 400: ${where}`);
    }
    const now = await redisState();
    const changed = diff(state, now);
    if (res.status === 202) {
      assert.ok(purchase, `202 outside a purchase: ${where}`);
      const body = JSON.parse(r.body!.toString('utf8')) as { userId: string; skuId: string; quantity?: number };
      accepted.push({ orderId: (JSON.parse(res.text) as { orderId: string }).orderId, userId: body.userId, skuId: body.skuId, quantity: body.quantity ?? 1 });
      assert.ok(changed.length > 0, `202 changed nothing in Redis: ${where}`);
    } else {
      if (changed.length > 0) {
        const detail = await Promise.all(changed.map(async (k) => `${k}: ${JSON.stringify(await redis.call('TYPE', k))} ${JSON.stringify(await redis.hgetall(k).catch(() => null))}`));
        assert.deepEqual(changed, [], `a request answered ${res.status} changed Redis: ${where}\nprevious: ${history.slice(-3).join('\n')}\n${detail.join('\n')}`);
      }
    }
    state = now;
    history.push(`${res.status} ${res.text.slice(0, 120)} ← ${where.slice(0, 200)} [${r.body?.length ?? 0} bytes]`);
  });
  const details = await fc.check(property, { seed: SEED, numRuns: RUNS, endOnFailure: true });
  if (details.failed) {
    // The counterexample may hold a 20 kB body: the assertion message already says what matters.
    const cause = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
    assert.fail(`property failed after ${details.numRuns} requests (FUZZ_SEED=${SEED}, path ${details.counterexamplePath}): ${cause.slice(0, 2000)}`);
  }
  t.diagnostic(`${ran} requests; statuses ${JSON.stringify(Object.fromEntries([...statuses].sort()))}; ${accepted.length} accepted`);
  // Bounded by count, not by time: a slow machine takes longer, it never runs fewer.
  assert.equal(ran, RUNS, 'every generated request ran');
  assert.ok(accepted.length > 0 && (statuses.get(400) ?? 0) > 0 && (statuses.get(404) ?? 0) > 0 && (statuses.get(409) ?? 0) > 0, 'the generators reach accepts and the main rejections');

  // The process survived and serves.
  assert.equal(child.exitCode, null, 'the API process is alive');
  assert.equal((await send({ method: 'GET', path: '/healthz', body: null })).status, 200);
  assert.equal((await send({ method: 'GET', path: '/readyz', body: null })).status, 200);

  // Kafka: exactly the 202 orders reached the orders topic, nothing for any other answer.
  const admin = await kafka.admin();
  const offsets = await admin.topicOffsets(ctx.names.topics.orders);
  const inTopic = offsets.reduce((n, p) => n + Number(p.high) - Number(p.low), 0);
  assert.equal(inTopic, accepted.length, 'messages in the orders topic = 202 answers');
  const messages = accepted.length === 0 ? [] : await readTopic(kafka, ctx.names.topics.orders, accepted.length);
  const produced = messages.map((m) => parseOrderMessage(m.value));
  assert.deepEqual(produced.map((m) => m.orderId).sort(), accepted.map((a) => a.orderId).sort());
  for (const m of produced) {
    const a = accepted.find((x) => x.orderId === m.orderId)!;
    assert.deepEqual([m.userId, m.skuId, m.quantity], [a.userId, a.skuId, a.quantity], 'the message carries the accepted body exactly');
  }

  // Redis: remaining = stock − accepted units per SKU; every user holds exactly their accepted units.
  for (const s of sale.spec.skus) {
    const units = accepted.filter((a) => a.skuId === s.id).reduce((n, a) => n + a.quantity, 0);
    assert.deepEqual(await ctx.stock.level(s.id), { stock: s.stock, remaining: s.stock - units }, s.id);
    const users = new Map<string, number>();
    for (const a of accepted.filter((x) => x.skuId === s.id)) users.set(a.userId, (users.get(a.userId) ?? 0) + a.quantity);
    for (const [u, n] of users) {
      assert.equal(await ctx.stock.holding(s.id, u), n, `${s.id} holding of ${JSON.stringify(u)}`);
      assert.ok(n <= PER_USER_LIMIT, `${JSON.stringify(u)} above the limit on ${s.id}`);
    }
  }
});

/** Sends raw bytes on a new connection; resolves with everything the server answered before closing. */
function sendRaw(bytes: Buffer): Promise<string> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.end(bytes));
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' || err.code === 'EPIPE' ? undefined : reject(err)));
    socket.setTimeout(30_000, () => socket.destroy(new Error('no answer within 30 s to a raw request')));
  });
}

const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH', 'PROPFIND', 'PROPPATCH', 'MKCOL', 'COPY', 'MOVE', 'LOCK', 'UNLOCK', 'BIND', 'REBIND', 'UNBIND', 'ACL', 'REPORT', 'MKACTIVITY', 'CHECKOUT', 'MERGE', 'M-SEARCH', 'NOTIFY', 'SUBSCRIBE', 'UNSUBSCRIBE', 'PURGE', 'MKCALENDAR', 'LINK', 'UNLINK', 'SOURCE', 'QUERY', 'PRI', 'DESCRIBE', 'ANNOUNCE', 'SETUP', 'PLAY', 'PAUSE', 'TEARDOWN', 'GET_PARAMETER', 'SET_PARAMETER', 'REDIRECT', 'RECORD', 'FLUSH']);
const body = '{"userId":"raw","skuId":"plenty"}';
const rawRequest: fc.Arbitrary<Buffer> = fc.oneof(
  fc.uint8Array({ minLength: 1, maxLength: 200 }).map((a) => Buffer.concat([Buffer.from(a), Buffer.from('\r\n\r\n')])),
  fc.stringMatching(/^[A-Z]{1,12}$/).filter((m) => !KNOWN_METHODS.has(m)).map((m) => Buffer.from(`${m} /v1/sales/sale/orders HTTP/1.1\r\nHost: x\r\ncontent-length: ${body.length}\r\n\r\n${body}`)),
  fc.integer({ min: 17_000, max: 40_000 }).map((n) => Buffer.from(`POST /v1/sales/sale/orders HTTP/1.1\r\nHost: x\r\nX-Pad: ${'a'.repeat(n)}\r\ncontent-length: ${body.length}\r\n\r\n${body}`)),
  fc.constantFrom('abc', '-1', '1, 2', '99999999999999999999', ' ').map((cl) => Buffer.from(`POST /v1/sales/sale/orders HTTP/1.1\r\nHost: x\r\ncontent-length: ${cl}\r\n\r\n${body}`)),
  fc.constant(Buffer.from(`POST /v1/sales/sale/orders HTTP/1.1\r\nHost: x\r\ncontent-length: ${body.length}\r\ntransfer-encoding: chunked\r\n\r\n${body}`)),
  fc.constant(Buffer.from(`POST /v1/sales/sale/orders HTTP/1.1\r\nHost: x\r\nX-\u0001: y\r\ncontent-length: ${body.length}\r\n\r\n${body}`)),
  fc.constant(Buffer.from(`POST /v1/sales/sale/orders HTTP/9.9\r\nHost: x\r\ncontent-length: ${body.length}\r\n\r\n${body}`)),
  fc.constant(Buffer.from(`POST /v1/sales/sale/orders HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n${body}\r\n0\r\n\r\n`)),
);

it(`answers malformed HTTP (raw bytes, unknown methods, huge headers, bad framing) in JSON and changes nothing (seed ${SEED})`, { timeout: 120_000 }, async (t) => {
  const before = await redisState();
  const admin = await kafka.admin();
  const count = async () => (await admin.topicOffsets(ctx.names.topics.orders)).reduce((n, p) => n + Number(p.high), 0);
  const producedBefore = await count();
  const statuses = new Map<number, number>();
  const details = await fc.check(
    fc.asyncProperty(rawRequest, async (raw) => {
      const answer = await sendRaw(raw);
      const where = `${JSON.stringify(raw.toString('latin1').slice(0, 120))} → ${JSON.stringify(answer.slice(0, 300))}`;
      // Nothing but empty lines is no request at all: a server ignores empty lines before a
      // request-line (RFC 9112 §2.2), so node:http closes the connection without an answer.
      if (/^[\r\n]+$/.test(raw.toString('latin1'))) {
        assert.equal(answer, '', `no request, no answer: ${where}`);
        return;
      }
      const m = /^HTTP\/1\.1 (\d{3}) [^\r]*\r\n([\s\S]*?)\r\n\r\n([\s\S]*)$/.exec(answer);
      assert.ok(m, `an HTTP answer: ${where}`);
      const status = Number(m[1]);
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      assert.ok(status >= 400 && status < 500, `a 4xx: ${where}`);
      assert.match(m[2] as string, /content-type: application\/json/i, `a JSON answer: ${where}`);
      const json = JSON.parse(m[3] as string) as { error?: unknown };
      assert.equal(typeof json.error, 'string', where);
      if (['BAD_REQUEST', 'HEADERS_TOO_LARGE', 'REQUEST_TIMEOUT'].includes(json.error as string)) {
        assert.equal(validateAt('/components/responses/MalformedRequest/content/application~1json/schema', json), null, where);
      }
    }),
    { seed: SEED, numRuns: Math.min(RUNS, 300), endOnFailure: true },
  );
  if (details.failed) {
    const cause = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
    assert.fail(`property failed (FUZZ_SEED=${SEED}): ${cause.slice(0, 2000)}`);
  }
  t.diagnostic(`raw statuses ${JSON.stringify(Object.fromEntries([...statuses].sort()))}`);
  assert.ok((statuses.get(400) ?? 0) > 0 && (statuses.get(431) ?? 0) > 0, 'the generators reach 400 and 431');
  assert.deepEqual(diff(before, await redisState()), [], 'malformed requests changed nothing in Redis');
  assert.equal(await count(), producedBefore, 'nothing produced to the orders topic');
  assert.equal(child.exitCode, null, 'the API process is alive');
  assert.equal((await send({ method: 'GET', path: '/healthz', body: null })).status, 200);
});
