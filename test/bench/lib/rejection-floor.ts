// `node test/bench/lib/rejection-floor.ts <port> <holders.json> [--connected]`: the rejection path's
// floor on node:http, the rejection counterpart of the accept path's parts' floor (parts.ts). It does
// only what every rejection has to do, and answers what the API answers: read the body (taken from
// node:http's parser as the API takes it, controller/dataplane/api-request.ts), parse it (the
// usual body with the API's own reader, scanOrderBody, anything else with JSON.parse), check that
// userId and skuId are strings, look the buyer up among the SKU's holders, answer 409 with
// ALREADY_ORDERED and the order id or SOLD_OUT, count the answer and time it into a histogram. No
// routing, no sale window, no validation beyond the two types. bench:seckill measures it in the same
// rounds as the bare server and the API: what it reaches is the most any handler on node:http that
// parses the body can expect on this machine.
//
// --connected: the same handler in a process that also holds the client connections every API
// replica holds, opened by the project's own adapters from the API's environment (a Kafka producer,
// Redis, a MySQL pool with one connection used), and that sends Redis what an API answering from its
// sold-out copy sends, one MULTI every 250 ms. Nothing of that is on the request path. What it costs
// the handler: node's stream code (Readable.read, push, resume) then sees the client sockets' maps
// beside the HTTP server's, and V8 turns those property loads megamorphic (docs/order-path.md,
// "The connected floor").
import { createServer, type ServerResponse } from 'node:http';
import { readFileSync } from 'node:fs';
import { loadConfig } from '../../../controller/config.ts';
import { ApiRequest, DEFAULT_MAX_BODY_BYTES as MAX_BODY } from '../../../controller/dataplane/api-request.ts';
import { scanOrderBody } from '../../../controller/dataplane/order-body.ts';
import { createKafkaGateway } from '../../../controller/infra/kafka.ts';
import { createPool } from '../../../controller/infra/mysql.ts';
import { createRedis } from '../../../controller/infra/redis.ts';
import { createLogger } from '../../../controller/log.ts';

const [port, holdersFile, mode] = process.argv.slice(2);
if (!port || !holdersFile || (mode !== undefined && mode !== '--connected')) throw new Error('usage: rejection-floor.ts <port> <holders.json> [--connected]');
if (mode === '--connected') await connect();
const holders = new Map(Object.entries(JSON.parse(readFileSync(holdersFile, 'utf8')) as Record<string, string>));
const bounds = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const buckets = new Float64Array(bounds.length + 1);
const answered = { sold_out: 0, already_ordered: 0 };

function send(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

createServer({ IncomingMessage: ApiRequest }, (req, res) => {
  const started = performance.now();
  req.takeBody(MAX_BODY, (raw) => {
    if (raw === null) return send(res, 400, '{"error":"INVALID_REQUEST"}');
    let body: { userId?: unknown; skuId?: unknown };
    try {
      body = scanOrderBody(raw) ?? (JSON.parse(raw) as typeof body);
    } catch {
      return send(res, 400, '{"error":"INVALID_REQUEST"}');
    }
    if (typeof body?.userId !== 'string' || typeof body.skuId !== 'string') return send(res, 400, '{"error":"INVALID_REQUEST"}');
    const orderId = holders.get(body.userId);
    if (orderId !== undefined) {
      answered.already_ordered++;
      send(res, 409, `{"error":"ALREADY_ORDERED","orderId":${JSON.stringify(orderId)}}`);
    } else {
      answered.sold_out++;
      send(res, 409, '{"error":"SOLD_OUT"}');
    }
    const seconds = (performance.now() - started) / 1000;
    let i = 0;
    while (i < bounds.length && seconds > (bounds[i] as number)) i++;
    (buckets[i] as number) += 1;
  });
}).listen(Number(port), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));

/** Opens the API's client connections (see the head of this file); they stay open until the process ends. */
async function connect(): Promise<void> {
  const config = loadConfig();
  const kafka = createKafkaGateway({ brokers: config.kafkaBrokers, clientId: 'bench-rejection-floor', logger: createLogger(config.logLevel, 'rejection-floor') });
  await kafka.producer();
  const redis = createRedis(config.redisUrl);
  const pool = createPool(config.mysql);
  await pool.query('SELECT 1');
  // The sold-out copy's refresh (stock.ts, soldOutSnapshot): the same three reads, on keys of no sale.
  const refresh = () => redis.multi().get('bench:floor:stock').hlen('bench:floor:holdings').get('bench:floor:seq').exec();
  await refresh();
  setInterval(() => void refresh().catch(() => undefined), 250);
}
