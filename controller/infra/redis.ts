// Redis connections. Scripts are loaded with EVALSHA and reloaded on NOSCRIPT by ioredis's
// defineCommand; auto-pipelining folds concurrent requests into one round trip.
import { Redis } from 'ioredis';

export type { Redis };

export function createRedis(url: string, options: { lazyConnect?: boolean } = {}): Redis {
  return new Redis(url, {
    enableAutoPipelining: true,
    lazyConnect: options.lazyConnect ?? false,
    // Fail requests fast while Redis is away instead of queueing them for ever.
    maxRetriesPerRequest: 2,
    connectTimeout: 3000,
    retryStrategy: (times) => Math.min(times * 200, 2000),
  });
}
