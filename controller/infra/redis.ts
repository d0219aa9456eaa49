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

/** Deletes every key matching the patterns, with SCAN (never KEYS) and UNLINK. */
export async function deleteKeysMatching(redis: Redis, patterns: string[]): Promise<void> {
  for (const match of patterns) {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', match, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await redis.unlink(...keys);
    } while (cursor !== '0');
  }
}
