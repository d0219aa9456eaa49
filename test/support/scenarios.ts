// Helpers of the issue-13 scenario tests (test/scenario-*.test.ts): real `flashsale` worker
// processes started from a spec of the test's choosing, tracked so every test kills what it started.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Config } from '../../controller/config.ts';
import type { SaleContext } from '../../controller/dataplane/sale-context.ts';
import type { KafkaGateway, KafkaProducer } from '../../controller/infra/kafka.ts';
import type { Pool } from '../../controller/infra/mysql.ts';
import type { Redis } from '../../controller/infra/redis.ts';
import type { FlashSale } from '../../controller/spec/flashsale.ts';
import { freePort } from './faults/proxy.ts';
import { dropDatabase, eventually, testConfig, testKafka, testRedis } from './infra.ts';
import { closeHttpAgent, http, pool as makePool, provisionSale, removeSale } from './order-path.ts';

const bin = fileURLToPath(new URL('../../bin/flashsale.js', import.meta.url));

/**
 * Spawns `flashsale <command> [args]` for the sale (FLASHSALE_SPEC) against the shared MySQL and
 * Redis of `config`, on 127.0.0.1, logging warnings only; `env` overrides any of these (HTTP_PORT
 * defaults to 0). Only stderr is piped unless `stdout` is set.
 */
export function spawnWorker(command: string, sale: FlashSale, config: Config, o: { args?: string[]; env?: Record<string, string>; stdout?: boolean } = {}): ChildProcess {
  const { host, port, user, database } = config.mysql;
  return spawn(process.execPath, [bin, command, ...(o.args ?? [])], {
    env: {
      ...process.env,
      FLASHSALE_SPEC: JSON.stringify(sale),
      MYSQL_URL: `mysql://${user}@${host}:${port}/${database}`,
      REDIS_URL: config.redisUrl,
      HTTP_PORT: '0',
      HTTP_HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      ...o.env,
    },
    stdio: ['ignore', o.stdout ? 'pipe' : 'ignore', 'pipe'],
  });
}

export interface Worker {
  child: ChildProcess;
  /** Base URL of its HTTP endpoints (the API's, or /metrics and /healthz of a worker). */
  url: string;
  /** SIGKILL and wait for the exit. */
  kill(): Promise<void>;
  /** SIGTERM and wait for the exit; resolves with the exit code. */
  stop(): Promise<number | null>;
}

export class Workers {
  private readonly all: Worker[] = [];

  /**
   * Starts `flashsale <command> [args]` for the sale (FLASHSALE_SPEC), waits until its /healthz
   * answers. `redisUrl`/`mysqlUrl` default to the shared servers of `config`.
   */
  async start(command: string, sale: FlashSale, config: Config, o: { args?: string[]; redisUrl?: string; mysqlUrl?: string; env?: Record<string, string>; label?: string } = {}): Promise<Worker> {
    const port = await freePort();
    const child = spawnWorker(command, sale, config, {
      args: o.args,
      env: { ...(o.mysqlUrl !== undefined && { MYSQL_URL: o.mysqlUrl }), ...(o.redisUrl !== undefined && { REDIS_URL: o.redisUrl }), HTTP_PORT: String(port), ...o.env },
    });
    const label = o.label ?? command;
    child.stderr?.on('data', (d: Buffer) => process.stderr.write(`[${label} ${child.pid}] ${d.toString()}`));
    const url = `http://127.0.0.1:${port}`;
    const exited = () => child.exitCode !== null || child.signalCode !== null;
    const w: Worker = {
      child,
      url,
      async kill() {
        if (exited()) return;
        const done = once(child, 'exit');
        child.kill('SIGKILL');
        await done;
      },
      async stop() {
        if (exited()) return child.exitCode;
        const done = once(child, 'exit');
        child.kill('SIGTERM');
        const [code] = (await done) as [number | null];
        return code;
      },
    };
    this.all.push(w);
    await eventually(async () => {
      if (exited()) throw new Error(`${label} exited with ${child.exitCode ?? child.signalCode}`);
      return (await http('GET', `${url}/healthz`)).status === 200;
    }, { timeoutMs: 60_000, intervalMs: 100, what: `${label} answering /healthz` });
    return w;
  }

  async killAll(): Promise<void> {
    await Promise.all(this.all.map((w) => w.kill()));
  }
}

function must<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`${what} is not set up (its before hook has not run or failed)`);
  return value;
}

export interface Services {
  readonly config: Config;
  readonly kafka: KafkaGateway;
  readonly redis: Redis;
  readonly db: Pool;
}

/**
 * Kafka, Redis and MySQL clients of a test file (or of the describe it is called in), opened in a
 * before hook; `setUp` runs after they are open. In the after hook `tearDown` runs first, then the
 * clients close and the test database is dropped.
 */
export function useServices(config: Config = testConfig(), o: { setUp?: (s: Services) => Promise<void>; tearDown?: () => Promise<void> } = {}): Services {
  let kafka: KafkaGateway | undefined;
  let redis: Redis | undefined;
  let db: Pool | undefined;
  const s: Services = {
    config,
    get kafka() { return must(kafka, 'kafka'); },
    get redis() { return must(redis, 'redis'); },
    get db() { return must(db, 'db'); },
  };
  before(async () => {
    kafka = testKafka();
    redis = testRedis();
    db = makePool(config);
    await o.setUp?.(s);
  });
  after(async () => {
    await o.tearDown?.();
    await s.kafka.close();
    s.redis.disconnect();
    await s.db.end();
    await dropDatabase(config);
  });
  return s;
}

export interface SaleFixture extends Services {
  readonly sale: FlashSale;
  readonly ctx: SaleContext;
  /** The worker processes of the test, all killed in the after hook. */
  readonly workers: Workers;
  /** Only with `producer: true`. */
  readonly producer: KafkaProducer;
}

/**
 * The set-up of the scenario tests: services (useServices), the sale provisioned (schema, topics,
 * stock) before any worker starts, optionally a Kafka producer, then `setUp`. Torn down in the
 * after hook: workers killed, HTTP agent closed, producer disconnected, `tearDown`, the sale's
 * topics and Redis keys removed, clients closed, database dropped.
 */
export function useSale(sale: FlashSale, o: { config?: Config; producer?: boolean; setUp?: () => Promise<void>; tearDown?: () => Promise<void> } = {}): SaleFixture {
  const workers = new Workers();
  let ctx: SaleContext | undefined;
  let producer: KafkaProducer | undefined;
  const s = useServices(o.config ?? testConfig(), {
    async setUp({ config, kafka, redis, db }) {
      ctx = await provisionSale(sale, { config, kafka, redis, pool: db });
      if (o.producer) producer = await kafka.producer();
      await o.setUp?.();
    },
    async tearDown() {
      await workers.killAll();
      closeHttpAgent();
      await producer?.disconnect();
      await o.tearDown?.();
      if (ctx) await removeSale(ctx, { kafka: s.kafka, redis: s.redis });
    },
  });
  return {
    sale,
    workers,
    get config() { return s.config; },
    get kafka() { return s.kafka; },
    get redis() { return s.redis; },
    get db() { return s.db; },
    get ctx() { return must(ctx, 'the sale'); },
    get producer() { return must(producer, 'the producer'); },
  };
}
