// `flashsale api`: the HTTP API of one sale (a Deployment per sale in Kubernetes).
import type { CommandContext, CommandValues } from '../command.ts';
import { drainDelayMs, shutdownDeadlineMs } from '../config.ts';
import { BatchingProducer, createKafkaGateway, type KafkaProducer } from '../infra/kafka.ts';
import { createPool } from '../infra/mysql.ts';
import { createRedis } from '../infra/redis.ts';
import { createRegistry } from '../metrics/dataplane.ts';
import { observeHandOffBatches, OrderApi } from './api.ts';
import { saleContext } from './sale-context.ts';
import { resolveSale } from './sale-source.ts';

export async function command(values: CommandValues, ctx: CommandContext): Promise<void> {
  const sale = resolveSale(values);
  const { config, logger } = ctx;
  const delayMs = drainDelayMs(process.env.DRAIN_DELAY_MS, shutdownDeadlineMs(process.env.SHUTDOWN_DEADLINE_MS));
  const kafka = createKafkaGateway({ brokers: config.kafkaBrokers, clientId: `flashsale-api-${sale.metadata.name}`, logger });
  const redis = createRedis(config.redisUrl);
  const pool = createPool(config.mysql);
  const registry = createRegistry();
  const sales = [saleContext(sale, redis)];
  // Listening before Kafka is reached: while it is not (a cluster restarting, Kafka last) the API is
  // live and not ready, and it serves as soon as Kafka answers, without a restart and the kubelet's
  // back-off. Until then a hand-off fails at once (503, the reservation given back), never waits.
  let kafkaProducer: KafkaProducer | undefined;
  const handOff: KafkaProducer = {
    send: (batches) => (kafkaProducer ? kafkaProducer.send(batches) : Promise.reject(new Error('Kafka not reached yet'))),
    disconnect: async () => kafkaProducer?.disconnect(),
  };
  const producer = new BatchingProducer(handOff, { onBatch: observeHandOffBatches(registry, sales) });
  const api = new OrderApi({ sales, redis, pool, producer, registry, logger, handOffReady: () => kafkaProducer !== undefined });
  const url = await api.listen(config.httpPort, process.env.HTTP_HOST || '0.0.0.0');
  if (await kafka.waitForBrokers(ctx.stopping)) {
    kafkaProducer = await kafka.producer();
    logger.info({ url, sale: `${sale.metadata.namespace}/${sale.metadata.name}` }, 'api listening');
  }
  await ctx.stopping;
  api.drain();
  // Endpoints and load balancers learn of a stopping pod a moment after it was told to stop: keep
  // answering meanwhile (not ready, every answer closing its connection), then stop accepting.
  if (delayMs > 0) {
    logger.info({ drainDelayMs: delayMs }, 'draining: not ready, still answering');
    await new Promise((resolve) => setTimeout(resolve, delayMs));
  }
  await api.close();
  await producer.close();
  await kafka.close();
  redis.disconnect();
  await pool.end();
}
