// `flashsale run -f FILE`: everything for the FlashSales in FILE in one process. Provisioning goes
// through provision.ts (the operator calls the same functions); then each entry of `workerStarters`
// starts one worker over the shared connections. A new worker (timeout closers, compensator, lag
// collector) is one more entry in that list.
import type { Registry } from 'prom-client';
import type { CommandContext, CommandValues } from '../command.ts';
import type { Config } from '../config.ts';
import { BatchingProducer, createKafkaGateway, type KafkaGateway } from '../infra/kafka.ts';
import { createPool, type Pool } from '../infra/mysql.ts';
import { createRedis, type Redis } from '../infra/redis.ts';
import type { Logger } from '../log.ts';
import { createRegistry } from '../metrics/dataplane.ts';
import { LagCollector } from '../metrics/lag.ts';
import { InvalidSpecError, loadFlashSales, type FlashSale } from '../spec/flashsale.ts';
import { observeHandOffBatches, OrderApi } from './api.ts';
import { startCompensator } from './compensator-main.ts';
import { OrderWriter } from './order-writer.ts';
import { ensureSchema, ensureStock, ensureTopics, ordersDrained, REBUILD_GRACE_MS, RebuildBlockedError } from './provision.ts';
import { Reaper } from './reaper.ts';
import { saleContext, type SaleContext } from './sale-context.ts';
import { bucketDelays, startTimeoutWorkers } from './timeout-closer-main.ts';

/** What every worker of the standalone process shares. */
export interface StandaloneEnv {
  sales: SaleContext[];
  config: Config;
  logger: Logger;
  kafka: KafkaGateway;
  redis: Redis;
  pool: Pool;
  registry: Registry;
  /** Where the API listens; 127.0.0.1 for a local run. */
  host: string;
  /** How long a SKU's keys must have been missing before the periodic check rebuilds it (default REBUILD_GRACE_MS). */
  rebuildGraceMs?: number;
}

export interface RunningWorker {
  name: string;
  /** Printed at start (e.g. the API's URL). */
  url?: string;
  stop(): Promise<void>;
}

export type WorkerStarter = (env: StandaloneEnv) => Promise<RunningWorker | RunningWorker[]>;

export const startApi: WorkerStarter = async (env) => {
  const producer = new BatchingProducer(await env.kafka.producer(), { onBatch: observeHandOffBatches(env.registry, env.sales) });
  const api = new OrderApi({ sales: env.sales, redis: env.redis, pool: env.pool, producer, registry: env.registry, logger: env.logger.child({ worker: 'api' }) });
  const url = await api.listen(env.config.httpPort, env.host);
  return {
    name: 'api',
    url,
    async stop() {
      await api.close();
      await producer.close();
    },
  };
};

export const startOrderWriters: WorkerStarter = async (env) =>
  Promise.all(
    env.sales.map(async (ctx) => {
      const writer = new OrderWriter({ ctx, kafka: env.kafka, pool: env.pool, registry: env.registry, logger: env.logger });
      await writer.start();
      return { name: `order-writer ${ctx.key}`, stop: () => writer.stop() };
    }),
  );

export const startReaper: WorkerStarter = async (env) => {
  const reaper = new Reaper({ sales: env.sales, registry: env.registry, logger: env.logger.child({ worker: 'reaper' }), kafka: env.kafka });
  reaper.start();
  return { name: 'reaper', stop: () => reaper.stop() };
};

/** Consumer lag and the delay-topic split of every sale, on the same /metrics (as the operator exports them). */
export const startLagCollector: WorkerStarter = async (env) => {
  const collector = new LagCollector({ kafka: env.kafka, registry: env.registry, intervalMs: 2000, logger: env.logger.child({ worker: 'lag' }) });
  collector.setSales(env.sales.map((s) => s.sale));
  collector.start();
  return { name: 'lag collector', stop: () => collector.stop() };
};

/** The timeout closers of every bucket of every sale, each sale with its retry worker. */
export const startTimeoutClosers: WorkerStarter = async (env) =>
  Promise.all(
    env.sales.map(async (ctx) => {
      const buckets = ctx.sale.spec.timeoutBuckets.map((b) => b.name);
      const w = await startTimeoutWorkers({ names: ctx.names, stock: ctx.stock, kafka: env.kafka, pool: env.pool, registry: env.registry, logger: env.logger, buckets, delays: bucketDelays(ctx.sale) });
      return { name: `timeout closers ${ctx.key} (${buckets.join(', ')})`, stop: () => w.stop() };
    }),
  );

/** The compensation scan of every sale (interval and grace from its spec). */
export const startCompensators: WorkerStarter = async (env) =>
  env.sales.map((ctx) => {
    const c = startCompensator({ sale: ctx.sale, names: ctx.names, stock: ctx.stock, pool: env.pool, redis: env.redis, registry: env.registry, logger: env.logger });
    return { name: `compensator ${ctx.key}`, stop: () => c.stop() };
  });

/**
 * Stock of every sale, provisioned after the order writers started: a SKU whose Redis keys are
 * missing while orders of an earlier run are still in the orders topic is rebuilt from MySQL only
 * once the writers have written them (provision.ts, RebuildBlockedError), so this waits for them.
 */
export const startStock: WorkerStarter = async (env) => {
  const admin = await env.kafka.admin();
  for (const ctx of env.sales) {
    for (let attempt = 0; ; attempt++) {
      try {
        const stock = await ensureStock(ctx.stock, env.pool, ctx.sale, ctx.key, {
          ordersDrained: () => ordersDrained(admin, ctx.sale),
          onSuspension: ({ skus, turnedOff }) => {
            if (skus.length > 0) env.logger.warn({ sale: ctx.key, skus }, 'new orders suspended (spec.suspend, spec.skus[].suspend)');
            if (turnedOff.length > 0) env.logger.info({ sale: ctx.key, skus: turnedOff }, 'new orders resumed');
          },
        });
        env.logger.info({ sale: ctx.key, seeded: stock.seeded, rebuilt: stock.rebuilt, adjusted: stock.adjusted, skus: stock.skus }, 'stock provisioned');
        break;
      } catch (err) {
        if (!(err instanceof RebuildBlockedError)) throw err;
        if (attempt % 20 === 0) env.logger.warn({ sale: ctx.key }, err.message);
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }
  // What the operator's periodic reconcile does in a cluster: a SKU whose keys went missing later
  // (Redis lost them, or a worker fenced a SKU whose Redis went back in time, restore-fence.ts) is
  // rebuilt from MySQL once the writer drained. Cheap while every SKU is present (one MGET each).
  // Unlike the first provisioning (no API of this process had started), the API now runs: orders it
  // reserved before the keys went missing may still sit in its producer (batching, retries) and are
  // neither in the orders topic nor in MySQL. A rebuild that reads MySQL then would count their units
  // as unsold and sell them twice. So, as the operator does (rebuildGraceMs), the keys must have been
  // missing for REBUILD_GRACE_MS as well as the topic drained.
  const missingSince = new Map<string, number>();
  const blockedLogged = new Set<string>();
  const drainedAfterGrace = (ctx: SaleContext) => async () => {
    const now = Date.now();
    const since = missingSince.get(ctx.key) ?? now;
    missingSince.set(ctx.key, since);
    if (now - since < (env.rebuildGraceMs ?? REBUILD_GRACE_MS)) return false;
    return ordersDrained(admin, ctx.sale);
  };
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  const tick = () => {
    running = (async () => {
      for (const ctx of env.sales) {
        try {
          const out = await ensureStock(ctx.stock, env.pool, ctx.sale, ctx.key, { ordersDrained: drainedAfterGrace(ctx) });
          missingSince.delete(ctx.key);
          blockedLogged.delete(ctx.key);
          if (out.rebuilt.length > 0 || out.seeded.length > 0) env.logger.warn({ sale: ctx.key, rebuilt: out.rebuilt, seeded: out.seeded }, 'stock rebuilt from MySQL');
        } catch (err) {
          if (!(err instanceof RebuildBlockedError)) env.logger.error({ sale: ctx.key, err: String(err) }, 'stock check failed');
          else if (!blockedLogged.has(ctx.key)) {
            blockedLogged.add(ctx.key);
            env.logger.warn({ sale: ctx.key, graceMs: env.rebuildGraceMs ?? REBUILD_GRACE_MS }, `stock rebuild waiting: ${err.message}`);
          }
        }
      }
    })().finally(() => {
      if (!stopped) timer = setTimeout(tick, 5000);
    });
  };
  timer = setTimeout(tick, 5000);
  return [{ name: 'stock check', stop: async () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    await running;
  } }];
};

/** Started in this order, stopped in reverse (the API stops taking orders before the writers stop). */
export const workerStarters: WorkerStarter[] = [startLagCollector, startOrderWriters, startStock, startTimeoutClosers, startCompensators, startReaper, startApi];

/** Provisions the schema and the topics of every sale through provision.ts; stock follows in startStock. */
export async function provisionAll(sales: FlashSale[], env: Pick<StandaloneEnv, 'config' | 'kafka' | 'logger'>): Promise<void> {
  await ensureSchema(env.config.mysql);
  const admin = await env.kafka.admin();
  for (const sale of sales) {
    const topics = await ensureTopics(admin, sale);
    env.logger.info({ sale: `${sale.metadata.namespace}/${sale.metadata.name}`, topicsCreated: topics.created, topicsGrown: topics.grown }, 'topics provisioned');
  }
}

export async function command(values: CommandValues, ctx: CommandContext): Promise<void> {
  const file = values.file as string | undefined;
  if (!file) throw new InvalidSpecError(['run needs -f FILE']);
  const sales = loadFlashSales(file);
  const names = new Set<string>();
  for (const s of sales) {
    if (names.has(s.metadata.name)) throw new InvalidSpecError([`${file}: two FlashSales named "${s.metadata.name}" (the API addresses sales by name)`]);
    names.add(s.metadata.name);
  }
  const { config, logger } = ctx;
  const kafka = createKafkaGateway({ brokers: config.kafkaBrokers, clientId: 'flashsale-run', logger });
  const redis = createRedis(config.redisUrl);
  const pool = createPool(config.mysql, { connectionLimit: 20 });
  const env: StandaloneEnv = {
    sales: sales.map((s) => saleContext(s, redis)),
    config, logger, kafka, redis, pool,
    registry: createRegistry(),
    host: '127.0.0.1',
  };
  const running: RunningWorker[] = [];
  try {
    await provisionAll(sales, env);
    for (const start of workerStarters) {
      const w = await start(env);
      running.push(...(Array.isArray(w) ? w : [w]));
    }
    for (const w of running) if (w.url) process.stdout.write(`${w.name} listening on ${w.url}\n`);
    process.stdout.write(`serving ${env.sales.map((s) => s.key).join(', ')}; POST ${running.find((w) => w.name === 'api')?.url ?? ''}/v1/sales/{sale}/orders\n`);
    await ctx.stopping;
    logger.info('stopping');
  } finally {
    for (const w of running.reverse()) {
      await w.stop().catch((err: unknown) => logger.error({ err: String(err), worker: w.name }, 'stop failed'));
    }
    await kafka.close();
    redis.disconnect();
    await pool.end();
  }
}
