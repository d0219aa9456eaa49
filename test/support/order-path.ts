// Shared fixtures of the order-path tests: a sale of their own (unique namespace ⇒ own topics,
// groups and Redis keys), provisioned through provision.ts, and a small HTTP client.
import { Agent, request } from 'node:http';
import type { Config } from '../../controller/config.ts';
import type { KafkaGateway } from '../../controller/infra/kafka.ts';
import { createPool, type Pool } from '../../controller/infra/mysql.ts';
import type { Redis } from '../../controller/infra/redis.ts';
import { ensureSchema, ensureStock, ensureTopics } from '../../controller/dataplane/provision.ts';
import { saleContext, type SaleContext } from '../../controller/dataplane/sale-context.ts';
import { validateFlashSale, type FlashSale } from '../../controller/spec/flashsale.ts';
import { deleteRedisKeys, deleteTopics } from './infra.ts';
import { checkAnswer } from './openapi.ts';

export function saleDoc(namespace: string, spec: Record<string, unknown> = {}, name = 'sale'): FlashSale {
  return validateFlashSale({
    apiVersion: 'flashsale.dev/v1alpha1',
    kind: 'FlashSale',
    metadata: { name, namespace },
    spec: {
      perUserLimit: 1,
      skus: [
        { id: 'hot', stock: 100, timeoutBucket: 'short' },
        { id: 'one', stock: 1, timeoutBucket: 'short' },
        { id: 'plenty', stock: 100000, timeoutBucket: 'long' },
      ],
      timeoutBuckets: [
        { name: 'short', delay: '1m' },
        { name: 'long', delay: '30m' },
      ],
      kafka: { partitions: 3, replicationFactor: 1 },
      ...spec,
    },
  });
}

/** Schema, topics and stock through the same functions `flashsale run` and the operator use. */
export async function provisionSale(sale: FlashSale, deps: { config: Config; kafka: KafkaGateway; redis: Redis; pool: Pool }): Promise<SaleContext> {
  await ensureSchema(deps.config.mysql);
  const ctx = saleContext(sale, deps.redis);
  await ensureTopics(await deps.kafka.admin(), sale);
  await ensureStock(ctx.stock, deps.pool, sale, ctx.key);
  return ctx;
}

export async function removeSale(ctx: SaleContext, deps: { kafka: KafkaGateway; redis: Redis }): Promise<void> {
  await deleteTopics(deps.kafka, `flashsale.${ctx.sale.metadata.namespace}.`);
  await deleteRedisKeys(deps.redis, ctx.names.redis.patterns);
}

export function pool(config: Config): Pool {
  return createPool(config.mysql, { connectionLimit: 5 });
}

export interface Reply {
  status: number;
  body: Record<string, unknown>;
  text: string;
}

const agent = new Agent({ keepAlive: true, maxSockets: 64 });

/** Keys ("METHOD template status error") of every checked answer, for the OpenAPI coverage test. */
export const answered = new Set<string>();

/**
 * One HTTP request over a keep-alive pool (bounded sockets, so thousands of calls queue client-side).
 * Every answer is checked against docs/openapi.yaml: an undocumented status or a body that does not
 * match the documented schema rejects, so every test using this helper also checks the document.
 */
export function http(method: string, url: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const req = request(url, { method, agent, headers: { ...(payload !== undefined ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) } : {}), ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: Record<string, unknown> = {};
        try {
          parsed = JSON.parse(text) as Record<string, unknown>;
        } catch {
          // Not JSON (e.g. /metrics): callers use `text`.
        }
        const { problem, key } = checkAnswer(method, new URL(url).pathname, { status: res.statusCode ?? 0, contentType: res.headers['content-type'], text });
        answered.add(key);
        if (problem) reject(new Error(`answer not as documented in docs/openapi.yaml: ${problem}`));
        else resolve({ status: res.statusCode ?? 0, body: parsed, text });
      });
    });
    req.on('error', reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

/**
 * A "double click": the same request twice, truly at once. Each goes on its own new connection;
 * both send their headers and all but the last byte of the body, and only when both are flushed to
 * the socket are the two last bytes written, in the same turn of the event loop. The server cannot
 * answer either before its body is complete, so both are in flight together; `overlapped` reports
 * it (no answer arrived before both bodies were complete).
 */
export async function doubleClick(method: string, url: string, body: unknown): Promise<{ replies: [Reply, Reply]; overlapped: boolean }> {
  const payload = Buffer.from(JSON.stringify(body));
  const head = payload.subarray(0, payload.length - 1);
  const tail = payload.subarray(payload.length - 1);
  let ended = 0;
  let early = false;
  const start = () => {
    const req = request(url, { method, agent: false, headers: { 'content-type': 'application/json', 'content-length': String(payload.length) } });
    const reply = new Promise<Reply>((resolve, reject) => {
      req.on('response', (res) => {
        if (ended < 2) early = true;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const { problem, key } = checkAnswer(method, new URL(url).pathname, { status: res.statusCode ?? 0, contentType: res.headers['content-type'], text });
          answered.add(key);
          if (problem) return reject(new Error(`answer not as documented in docs/openapi.yaml: ${problem}`));
          let parsed: Record<string, unknown> = {};
          try {
            parsed = JSON.parse(text) as Record<string, unknown>;
          } catch {
            // checked above: documented answers of this route are JSON
          }
          resolve({ status: res.statusCode ?? 0, body: parsed, text });
        });
      });
      req.on('error', reject);
    });
    const flushed = new Promise<void>((resolve, reject) => req.write(head, (err) => (err ? reject(err) : resolve())));
    return { req, reply, flushed };
  };
  const a = start();
  const b = start();
  await Promise.all([a.flushed, b.flushed]);
  for (const x of [a, b]) {
    x.req.end(tail);
    ended++;
  }
  return { replies: await Promise.all([a.reply, b.reply]), overlapped: !early };
}

export function closeHttpAgent(): void {
  agent.destroy();
}

/** Rows of a SKU in MySQL. */
export async function orderRows(db: Pool, sale: string, skuId: string): Promise<{ order_id: string; user_id: string; quantity: number; status: string }[]> {
  const [rows] = await db.query('SELECT order_id, user_id, quantity, status FROM orders WHERE sale = ? AND sku_id = ?', [sale, skuId]);
  return rows as { order_id: string; user_id: string; quantity: number; status: string }[];
}
