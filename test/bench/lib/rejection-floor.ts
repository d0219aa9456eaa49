// `node test/bench/lib/rejection-floor.ts <port> <holders.json>`: the rejection path's floor on
// node:http, the rejection counterpart of the accept path's parts' floor (parts.ts). It does only what
// every rejection has to do, and answers what the API answers: read the body, parse it (the usual
// body with the API's own reader, scanOrderBody, anything else with JSON.parse), check that userId
// and skuId are strings, look the buyer up among the SKU's holders, answer 409 with
// ALREADY_ORDERED and the order id or SOLD_OUT, count the answer and time it into a histogram. No
// routing, no sale window, no validation beyond the two types. bench:seckill measures it in the same
// rounds as the bare server and the API: what it reaches is the most any handler on node:http that
// parses the body can expect on this machine.
import { createServer, type ServerResponse } from 'node:http';
import { readFileSync } from 'node:fs';
import { scanOrderBody } from '../../../controller/dataplane/order-body.ts';

const [port, holdersFile] = process.argv.slice(2);
if (!port || !holdersFile) throw new Error('usage: rejection-floor.ts <port> <holders.json>');
const holders = new Map(Object.entries(JSON.parse(readFileSync(holdersFile, 'utf8')) as Record<string, string>));
const bounds = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const buckets = new Float64Array(bounds.length + 1);
const answered = { sold_out: 0, already_ordered: 0 };

function send(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

createServer((req, res) => {
  const started = performance.now();
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const raw = chunks.length === 1 ? (chunks[0] as Buffer).toString('utf8') : Buffer.concat(chunks).toString('utf8');
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
