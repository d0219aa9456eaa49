// `flashsale order-writer`: consumes one sale's orders topic into MySQL (see order-writer.ts), and
// runs the sale's reaper: every replica may, since a reservation is returned at most once.
import type { CommandContext, CommandValues } from '../command.ts';
import { createKafkaGateway } from '../infra/kafka.ts';
import { createPool } from '../infra/mysql.ts';
import { createRedis } from '../infra/redis.ts';
import { createRegistry } from '../metrics/dataplane.ts';
import { OrderWriter } from './order-writer.ts';
import { Reaper } from './reaper.ts';
import { saleContext } from './sale-context.ts';
import { resolveSale } from './sale-source.ts';
import { serveWorkerEndpoints } from './worker-http.ts';

export async function command(values: CommandValues, ctx: CommandContext): Promise<void> {
  const sale = resolveSale(values);
  const { config, logger } = ctx;
  const kafka = createKafkaGateway({ brokers: config.kafkaBrokers, clientId: `flashsale-order-writer-${sale.metadata.name}`, logger });
  const redis = createRedis(config.redisUrl);
  const pool = createPool(config.mysql);
  const registry = createRegistry();
  const saleCtx = saleContext(sale, redis);
  const writer = new OrderWriter({ ctx: saleCtx, kafka, pool, registry, logger });
  const reaper = new Reaper({ sales: [saleCtx], registry, logger: logger.child({ worker: 'reaper' }), kafka });
  let started = false;
  const { server, url } = await serveWorkerEndpoints(registry, config.httpPort, () => started && redis.status === 'ready', process.env.HTTP_HOST || '0.0.0.0');
  // Kafka not up yet (a cluster restarting, Kafka last): wait alive and not ready, then start at
  // once when it answers, instead of failing and waiting out the kubelet's restart back-off.
  if (await kafka.waitForBrokers(ctx.stopping)) {
    await writer.start();
    reaper.start();
    started = true;
    logger.info({ url, sale: `${sale.metadata.namespace}/${sale.metadata.name}` }, 'order writer running');
    await ctx.stopping;
    await reaper.stop();
    await writer.stop();
  }
  server.close();
  await kafka.close();
  redis.disconnect();
  await pool.end();
}
