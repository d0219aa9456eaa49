// A lease in Redis: SET key token NX PX. Only the holder of the random token may extend or delete
// it (compare-and-extend / compare-and-delete scripts), so a holder whose lease ran out cannot
// remove the lock of the replica that took over. It is an optimisation (one scanner at a time),
// never a correctness fence: a paused holder may outlive its lease.
import { randomBytes } from 'node:crypto';
import type { Redis } from './redis.ts';

const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`;

type Scripted = Redis & {
  fsLockRelease(key: string, token: string): Promise<number>;
  fsLockRenew(key: string, token: string, ttlMs: number): Promise<number>;
};

function withScripts(redis: Redis): Scripted {
  const r = redis as Scripted;
  if (typeof r.fsLockRelease !== 'function') {
    redis.defineCommand('fsLockRelease', { numberOfKeys: 1, lua: RELEASE });
    redis.defineCommand('fsLockRenew', { numberOfKeys: 1, lua: RENEW });
  }
  return r;
}

export class RedisLease {
  private readonly redis: Scripted;
  readonly key: string;
  readonly ttlMs: number;
  private token: string | null = null;

  constructor(redis: Redis, key: string, ttlMs: number) {
    this.redis = withScripts(redis);
    this.key = key;
    this.ttlMs = ttlMs;
  }

  /** True when this instance now holds the lease. */
  async acquire(): Promise<boolean> {
    const token = randomBytes(16).toString('hex');
    const ok = await this.redis.set(this.key, token, 'PX', this.ttlMs, 'NX');
    this.token = ok === 'OK' ? token : null;
    return this.token !== null;
  }

  /** Extends the lease by ttlMs from now; false when it was lost (expired, taken over). */
  async renew(): Promise<boolean> {
    if (!this.token) return false;
    const ok = (await this.redis.fsLockRenew(this.key, this.token, this.ttlMs)) === 1;
    if (!ok) this.token = null;
    return ok;
  }

  /** Deletes the lock only if it is still ours. */
  async release(): Promise<boolean> {
    if (!this.token) return false;
    const token = this.token;
    this.token = null;
    return (await this.redis.fsLockRelease(this.key, token)) === 1;
  }

  get held(): boolean {
    return this.token !== null;
  }
}
