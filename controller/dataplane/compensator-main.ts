// `flashsale compensator`: the periodic, locked compensation scan of one sale (see compensator.ts).
import type { Registry } from 'prom-client';
import type { CommandContext, CommandValues } from '../command.ts';
import { createPool, type Pool } from '../infra/mysql.ts';
import { createRedis, type Redis } from '../infra/redis.ts';
import type { Logger } from '../log.ts';
import { createRegistry, dataPlaneMetrics } from '../metrics/dataplane.ts';
import { parseDuration, type FlashSale } from '../spec/flashsale.ts';
import type { SaleNames } from '../spec/names.ts';
import { OrderCloser } from './close.ts';
import { Compensator } from './compensator.ts';
import { saleContext } from './sale-context.ts';
import { resolveSale } from './sale-source.ts';
import type { StockStore } from './stock.ts';
import { serveWorkerEndpoints } from './worker-http.ts';

export interface CompensatorDeps {
  sale: FlashSale;
  names: SaleNames;
  stock: StockStore;
  pool: Pool;
  redis: Redis;
  registry: Registry;
  logger: Logger;
}

/** Starts the periodic scan with the interval and grace of the sale's spec. */
export function startCompensator(d: CompensatorDeps): Compensator {
  const metrics = dataPlaneMetrics(d.registry);
  const closer = new OrderCloser({ pool: d.pool, stock: d.stock, saleKey: d.names.key, metrics });
  const compensator = new Compensator({
    pool: d.pool,
    redis: d.redis,
    closer,
    saleKey: d.names.key,
    lockKey: d.names.redis.compensationLock,
    intervalMs: parseDuration(d.sale.spec.compensation.interval),
    graceMs: parseDuration(d.sale.spec.compensation.grace),
    logger: d.logger.child({ component: 'compensator', sale: d.names.key }),
    metrics,
    stock: d.stock,
  });
  compensator.start();
  return compensator;
}

export async function command(values: CommandValues, ctx: CommandContext): Promise<void> {
  const sale = resolveSale(values);
  const { config, logger } = ctx;
  const redis = createRedis(config.redisUrl);
  const pool = createPool(config.mysql, { connectionLimit: 4 });
  const registry = createRegistry();
  const sc = saleContext(sale, redis);
  const { server, url } = await serveWorkerEndpoints(registry, config.httpPort, () => redis.status === 'ready', process.env.HTTP_HOST || '0.0.0.0');
  const compensator = startCompensator({ sale, names: sc.names, stock: sc.stock, pool, redis, registry, logger });
  logger.info({ url, sale: sc.key, interval: sale.spec.compensation.interval, grace: sale.spec.compensation.grace }, 'compensator running');
  await ctx.stopping;
  await compensator.stop();
  server.close();
  redis.disconnect();
  await pool.end();
}
