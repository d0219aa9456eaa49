// Every worker entry point ends after SIGTERM, whenever it arrives: right after the stop handler is
// installed (startup still under way: Kafka, Redis, MySQL connecting), and once the worker is ready.
// A stop that hangs (here: a Kafka that never answers) ends at the shutdown deadline, logged, instead
// of running until Kubernetes' SIGKILL (a closer once ran 58 minutes after its SIGTERM).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import type { Config } from '../controller/config.ts';
import type { KafkaGateway } from '../controller/infra/kafka.ts';
import type { SaleContext } from '../controller/dataplane/sale-context.ts';
import { validateFlashSale } from '../controller/spec/flashsale.ts';
import { deleteRedisKeys, deleteTopics, dropDatabase, eventually, testConfig, testKafka, testRedis, uniqueName } from './support/infra.ts';
import { pool as makePool, provisionSale } from './support/order-path.ts';
import { V8_FLAGS } from '../controller/runtime.ts';

const repo = new URL('..', import.meta.url).pathname;
const namespace = uniqueName('stop');
const sale = validateFlashSale({
  apiVersion: 'flashsale.dev/v1alpha1', kind: 'FlashSale', metadata: { name: 'shop', namespace },
  spec: { skus: [{ id: 'gadget', stock: 5, timeoutBucket: 'quick' }], timeoutBuckets: [{ name: 'quick', delay: '10m' }], kafka: { partitions: 1 } },
});
const DEADLINE_MS = 8000;

let config: Config;
let kafka: KafkaGateway;
let dir: string;
let provisioned: SaleContext | undefined;
const children: ChildProcess[] = [];

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

interface Worker {
  child: ChildProcess;
  httpPort: number;
  output: () => string;
  /** Resolves when the output matches (rejects after 90 s or when the process exits first). */
  waitFor: (re: RegExp) => Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

async function startWorker(args: string[], env: Record<string, string> = {}): Promise<Worker> {
  const { host, port, user, database } = config.mysql;
  const httpPort = await freePort();
  const child = spawn(process.execPath, [join(repo, 'bin/flashsale.js'), ...args, '-f', join(dir, 'sale.yaml')], {
    env: { ...process.env, HTTP_PORT: String(httpPort), HTTP_HOST: '127.0.0.1', LOG_LEVEL: 'info', SHUTDOWN_DEADLINE_MS: String(DEADLINE_MS), MYSQL_URL: `mysql://${user}@${host}:${port}/${database}`, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  const listeners = new Set<() => void>();
  const onData = (d: Buffer) => {
    out += d.toString();
    for (const l of listeners) l();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
  return {
    child,
    httpPort,
    output: () => out,
    exited,
    waitFor: (re) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (!re.test(out)) return;
          done();
          resolve();
        };
        const timer = setTimeout(() => { done(); reject(new Error(`no ${re} in 90 s:\n${out}`)); }, 90_000);
        const done = () => { clearTimeout(timer); listeners.delete(check); };
        listeners.add(check);
        void exited.then(() => { if (!re.test(out)) { done(); reject(new Error(`exited before ${re}:\n${out}`)); } });
        check();
      }),
  };
}

/** Sends SIGTERM and waits for the exit; fails (and SIGKILLs) when it takes longer than the deadline plus slack. */
async function terminate(w: Worker): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  w.child.kill('SIGTERM');
  // The worker's own deadline bounds the stop; the margin covers a loaded machine.
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<'hung'>((r) => { timer = setTimeout(() => r('hung'), DEADLINE_MS + 30_000); });
  const result = await Promise.race([w.exited, limit]);
  clearTimeout(timer);
  if (result === 'hung') {
    w.child.kill('SIGKILL');
    assert.fail(`still running ${DEADLINE_MS + 30_000} ms after SIGTERM:\n${w.output().slice(-3000)}`);
  }
  return result;
}

const workers: { name: string; args: string[]; ready: RegExp }[] = [
  { name: 'api', args: ['api'], ready: /api listening/ },
  { name: 'order-writer', args: ['order-writer'], ready: /order writer running/ },
  { name: 'timeout-closer', args: ['timeout-closer', '--bucket', 'quick'], ready: /timeout closer running/ },
  { name: 'compensator', args: ['compensator'], ready: /compensator running/ },
];

before(async () => {
  config = testConfig();
  kafka = testKafka();
  dir = mkdtempSync(join(tmpdir(), 'fs-stop-'));
  writeFileSync(join(dir, 'sale.yaml'), stringify({ apiVersion: sale.apiVersion, kind: sale.kind, metadata: sale.metadata, spec: sale.spec }));
  // Topics, schema and seeded stock: the API's drain test buys.
  const redis = testRedis();
  const db = makePool(config);
  try {
    provisioned = await provisionSale(sale, { config, kafka, redis, pool: db });
  } finally {
    redis.disconnect();
    await db.end();
  }
});

after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await deleteTopics(kafka, `flashsale.${namespace}.`).catch(() => undefined);
  if (provisioned) {
    const redis = testRedis();
    await deleteRedisKeys(redis, provisioned.names.redis.patterns).catch(() => undefined);
    redis.disconnect();
  }
  await kafka.close();
  if (config) await dropDatabase(config);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('SIGTERM ends every worker within the shutdown deadline', () => {
  for (const w of workers) {
    it(`${w.name}: SIGTERM during startup (handler installed, not ready yet)`, async () => {
      const p = await startWorker(w.args);
      await p.waitFor(/"msg":"starting"/);
      // The program sets its V8 flags itself (controller/runtime.ts), whatever started it.
      assert.ok(p.output().includes(`"v8Flags":${JSON.stringify(V8_FLAGS)}`), `starts with its V8 flags:\n${p.output().slice(-2000)}`);
      const r = await terminate(p);
      assert.equal(r.signal, null, `ended by its own exit, not by the signal's default action:\n${p.output().slice(-2000)}`);
      assert.equal(r.code, 0, `clean stop:\n${p.output().slice(-2000)}`);
    });

    it(`${w.name}: SIGTERM right after it is ready`, async () => {
      const p = await startWorker(w.args);
      await p.waitFor(w.ready);
      const r = await terminate(p);
      assert.deepEqual(r, { code: 0, signal: null }, p.output().slice(-2000));
    });
  }

  it('api: after SIGTERM it answers not ready and keeps answering, closing each connection it answers on, for DRAIN_DELAY_MS; then it stops', async () => {
    // A drain delay far longer than the steps below take on any machine; the test ends it with a
    // second signal (exit now), and a second worker with a short delay shows the stop after it.
    const p = await startWorker(['api'], { SHUTDOWN_DEADLINE_MS: '600000', DRAIN_DELAY_MS: '590000' });
    await p.waitFor(/api listening/);
    const url = /"url":"(http:\/\/[^"]+)"/.exec(p.output())?.[1] as string;
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const ask = (method: string, path: string, body?: object) =>
      new Promise<{ status: number; connection: string | undefined; text: string }>((resolve, reject) => {
        const req = request(`${url}${path}`, { method, agent, headers: body ? { 'content-type': 'application/json' } : {} }, (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, text }));
        });
        req.on('error', reject);
        req.end(body ? JSON.stringify(body) : undefined);
      });
    const buy = (userId: string) => ask('POST', '/v1/sales/shop/orders', { userId, skuId: 'gadget' });
    try {
      const first = await buy('u-before');
      assert.deepEqual([first.status, first.connection], [202, 'keep-alive'], first.text);
      assert.equal((await ask('GET', '/readyz')).status, 200);
      p.child.kill('SIGTERM');
      await p.waitFor(/draining: not ready, still answering/);
      // Not ready (the Service drops it), yet a purchase on the kept-alive connection is answered
      // in full, and the answer closes that connection: the client's next request goes elsewhere.
      const during = await buy('u-during');
      assert.deepEqual([during.status, during.connection], [202, 'close'], during.text);
      const ready = await ask('GET', '/readyz');
      assert.deepEqual([ready.status, ready.connection], [503, 'close']);
      const again = await buy('u-during');
      assert.deepEqual([again.status, JSON.parse(again.text).error], [409, 'ALREADY_ORDERED'], 'the same answers as before the signal');
      assert.equal(p.child.exitCode, null, 'still running inside the drain delay');
    } finally {
      agent.destroy();
    }
    p.child.kill('SIGTERM');
    assert.deepEqual(await p.exited, { code: 1, signal: null }, 'a second signal exits at once');
    assert.match(p.output(), /second stop signal: exiting now/);

    const short = await startWorker(['api'], { DRAIN_DELAY_MS: '100' });
    await short.waitFor(/api listening/);
    assert.deepEqual(await terminate(short), { code: 0, signal: null }, short.output().slice(-2000));
    assert.match(short.output(), /draining: not ready, still answering/);
  });

  it('api: a DRAIN_DELAY_MS the shutdown deadline would cut short is refused at start, naming both', async () => {
    const p = await startWorker(['api'], { DRAIN_DELAY_MS: String(DEADLINE_MS) });
    assert.deepEqual(await p.exited, { code: 1, signal: null });
    assert.match(p.output(), /DRAIN_DELAY_MS must be an integer from 0 to below SHUTDOWN_DEADLINE_MS \(8000\)/);
  });

  // Every worker that needs Kafka waits for it alive and not ready, and starts as soon as it answers
  // (a cluster restarting with Kafka last); a stop during the wait ends it cleanly. Before, the start
  // failed and the process stayed up doing nothing (the order writer with /healthz 200). The
  // compensator uses no Kafka (MySQL and Redis only) and runs through the outage.
  for (const w of workers.filter((x) => x.name !== 'compensator')) {
    it(`${w.name}: Kafka not answering at start: alive and not ready, running once Kafka answers; a stop while waiting exits 0`, async () => {
      const port = await freePort();
      const p = await startWorker(w.args, { KAFKA_BROKERS: `127.0.0.1:${port}` });
      await p.waitFor(/"msg":"waiting for Kafka"/);
      // Its endpoints listen while it waits: live for the kubelet, not ready for traffic.
      const status = async (path: string) => (await fetch(`http://127.0.0.1:${p.httpPort}${path}`)).status;
      assert.deepEqual([await status('/healthz'), await status('/readyz')], [200, 503]);
      const buy = () => fetch(`http://127.0.0.1:${p.httpPort}/v1/sales/shop/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userId: 'u-after-wait', skuId: 'gadget' }) });
      if (w.name === 'api') {
        // A purchase that reaches it anyway is refused at once, its reservation given back (the
        // same buyer buys below, with a limit of one unit).
        const early = await buy();
        assert.deepEqual([early.status, await early.json()], [503, { error: 'UNAVAILABLE' }]);
      }
      // Kafka appears: a forwarder on the port the worker was given, to the real broker.
      const [brokerHost, brokerPort] = (config.kafkaBrokers[0] as string).split(':') as [string, string];
      const forwarder = createServer((c) => {
        const u = connect(Number(brokerPort), brokerHost);
        c.pipe(u).pipe(c);
        c.on('error', () => u.destroy());
        u.on('error', () => c.destroy());
      });
      await new Promise<void>((r) => forwarder.listen(port, '127.0.0.1', () => r()));
      try {
        await p.waitFor(w.ready);
        assert.equal(p.child.exitCode, null);
        await eventually(async () => (await status('/readyz')) === 200, { what: `${w.name} ready once Kafka answers` });
        // The API sells once it is ready: its hand-off reaches the broker.
        if (w.name === 'api') {
          const r = await buy();
          assert.equal(r.status, 202, await r.text());
        }
      } finally {
        forwarder.close();
      }
      assert.deepEqual(await terminate(p), { code: 0, signal: null }, p.output().slice(-2000));

      const waiting = await startWorker(w.args, { KAFKA_BROKERS: `127.0.0.1:${await freePort()}` });
      await waiting.waitFor(/"msg":"waiting for Kafka"/);
      assert.deepEqual(await terminate(waiting), { code: 0, signal: null }, waiting.output().slice(-2000));
    });
  }

  it('a stop that hangs (Kafka never answers) ends at the deadline, logged, with exit code 1', async () => {
    // A listener that accepts connections and never answers: kafkajs's connect waits on it.
    const silent = createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    try {
      const p = await startWorker(['timeout-closer', '--bucket', 'quick'], { KAFKA_BROKERS: `127.0.0.1:${(silent.address() as { port: number }).port}` });
      await p.waitFor(/"msg":"starting"/);
      const r = await terminate(p);
      assert.deepEqual(r, { code: 1, signal: null }, p.output().slice(-2000));
      assert.match(p.output(), /stop did not complete within the shutdown deadline/);
    } finally {
      silent.close();
    }
  });
});
