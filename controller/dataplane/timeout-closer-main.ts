// `flashsale timeout-closer --bucket NAME`: the timeout closer of one bucket of one sale, plus the
// sale's retry worker (retries are few; every closer replica sharing the retry group is enough).
import type { Registry } from 'prom-client';
import type { CommandContext, CommandValues } from '../command.ts';
import { createKafkaGateway, type KafkaGateway } from '../infra/kafka.ts';
import { createPool, type Pool } from '../infra/mysql.ts';
import { createRedis } from '../infra/redis.ts';
import type { Logger } from '../log.ts';
import { createRegistry, dataPlaneMetrics } from '../metrics/dataplane.ts';
import { InvalidSpecError, parseDuration, type FlashSale } from '../spec/flashsale.ts';
import type { SaleNames } from '../spec/names.ts';
import { OrderCloser } from './close.ts';
import { resolveSale } from './sale-source.ts';
import type { StockStore } from './stock.ts';
import { CLOSER_MYSQL_CONNECTIONS, RetryWorker, TimeoutCloser } from './timeout-closer.ts';
import { saleContext } from './sale-context.ts';
import { serveWorkerEndpoints } from './worker-http.ts';

export interface TimeoutWorkersDeps {
  names: SaleNames;
  stock: StockStore;
  kafka: KafkaGateway;
  pool: Pool;
  registry: Registry;
  logger: Logger;
  /** Buckets to close; one consumer group each. */
  buckets: string[];
  /** Delay of each bucket (bounds how far ahead a timeout message may be due, see TimeoutCloser). */
  delays?: Map<string, number>;
  retryBaseMs?: number;
}

/** The delay of each timeout bucket of a sale, in ms. */
export function bucketDelays(sale: FlashSale): Map<string, number> {
  return new Map(sale.spec.timeoutBuckets.map((b) => [b.name, parseDuration(b.delay)]));
}

/** Starts the closers of the given buckets and the sale's retry worker over shared connections. */
export async function startTimeoutWorkers(d: TimeoutWorkersDeps): Promise<{ stop(): Promise<void> }> {
  const metrics = dataPlaneMetrics(d.registry);
  const producer = await d.kafka.producer();
  // Marks of applied releases are written after a burst, off the close path (see OrderCloser.applyReleases).
  const closer = new OrderCloser({ pool: d.pool, stock: d.stock, saleKey: d.names.key, metrics, deferMarking: { idleMs: 200, maxMs: 5000 } });
  const common = { kafka: d.kafka, producer, closer, names: d.names, logger: d.logger, metrics, retryBaseMs: d.retryBaseMs };
  const workers = [...d.buckets.map((bucket) => new TimeoutCloser({ ...common, bucket, delayMs: d.delays?.get(bucket) })), new RetryWorker(common)];
  for (const w of workers) await w.start();
  return {
    async stop() {
      await Promise.allSettled(workers.map((w) => w.stop()));
      await closer.flushMarks();
      await producer.disconnect().catch(() => undefined);
    },
  };
}

export async function command(values: CommandValues, ctx: CommandContext): Promise<void> {
  const sale: FlashSale = resolveSale(values);
  const bucket = values.bucket as string | undefined;
  if (!bucket) throw new InvalidSpecError(['timeout-closer needs --bucket NAME']);
  if (!sale.spec.timeoutBuckets.some((b) => b.name === bucket)) {
    throw new InvalidSpecError([`--bucket ${bucket}: no such timeout bucket (defined: ${sale.spec.timeoutBuckets.map((b) => b.name).join(', ')})`]);
  }
  const { config, logger } = ctx;
  const kafka = createKafkaGateway({ brokers: config.kafkaBrokers, clientId: `flashsale-timeout-closer-${sale.metadata.name}-${bucket}`, logger });
  const redis = createRedis(config.redisUrl);
  const pool = createPool(config.mysql, { connectionLimit: CLOSER_MYSQL_CONNECTIONS });
  const registry = createRegistry();
  const sc = saleContext(sale, redis);
  let started = false;
  const { server, url } = await serveWorkerEndpoints(registry, config.httpPort, () => started && redis.status === 'ready', process.env.HTTP_HOST || '0.0.0.0');
  // Kafka not up yet: wait alive and not ready (see order-writer-main.ts).
  if (await kafka.waitForBrokers(ctx.stopping)) {
    const workers = await startTimeoutWorkers({ names: sc.names, stock: sc.stock, kafka, pool, registry, logger, buckets: [bucket], delays: bucketDelays(sale) });
    started = true;
    logger.info({ url, sale: sc.key, bucket }, 'timeout closer running');
    await ctx.stopping;
    await workers.stop();
  }
  server.close();
  await kafka.close();
  redis.disconnect();
  await pool.end();
}
