// A per-key deduplicating work queue (client-go's workqueue semantics): a key is queued at most
// once; a key being processed that is added again is re-queued when its worker calls done(), so
// one sale is never reconciled by two workers at once and no change is lost. Failures back off
// exponentially per key; a success forgets the key's failures.
import { systemClock, type Clock, type Timer } from './clock.ts';

export interface BackoffOptions {
  baseDelayMs: number;
  maxDelayMs: number;
}

/** Per-key exponential backoff: base·2^failures, capped. */
export class ExponentialBackoff {
  private readonly failures = new Map<string, number>();
  private readonly opts: BackoffOptions;

  constructor(opts: Partial<BackoffOptions> = {}) {
    this.opts = { baseDelayMs: opts.baseDelayMs ?? 500, maxDelayMs: opts.maxDelayMs ?? 300_000 };
  }

  /** The delay before the next retry of `key`; counts one more failure. */
  next(key: string): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    // 2^n overflows to Infinity for large n; the cap keeps it finite.
    return Math.min(this.opts.baseDelayMs * 2 ** n, this.opts.maxDelayMs);
  }

  failuresOf(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  forget(key: string): void {
    this.failures.delete(key);
  }
}

/**
 * Overall retry rate (client-go's BucketRateLimiter): a token bucket of `qps` refilled tokens and
 * `burst` capacity. Reserving past the bucket returns how long to wait, so a storm of failing
 * sales cannot hammer Kafka, Redis or the apiserver however short their own backoff is.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;
  private readonly qps: number;
  private readonly burst: number;
  private readonly clock: Clock;

  constructor(qps: number, burst: number, clock: Clock) {
    this.qps = qps;
    this.burst = burst;
    this.clock = clock;
    this.tokens = burst;
    this.last = clock.now();
  }

  /** Takes one token; returns the delay (ms) until it is really available (0 when it is now). */
  reserve(): number {
    const now = this.clock.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.qps);
    this.last = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens / this.qps) * 1000);
  }
}

/** Observers of the queue (client-go's queueMetrics): controller/metrics/operator.ts QueueMetrics implements them. */
export interface WorkQueueMetrics {
  /** `key` became dirty (counted once until it is got). */
  add(key: string): void;
  /** A worker took `key`. */
  get(key: string): void;
  /** The worker finished `key`. */
  done(key: string): void;
  /** A failed key was re-added with backoff. */
  retry(): void;
  shutdown(): void;
}

export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly delayed = new Map<string, { at: number; timer: Timer }>();
  private readonly waiters: ((key: string | undefined) => void)[] = [];
  private readonly clock: Clock;
  readonly backoff: ExponentialBackoff;
  private readonly bucket: TokenBucket;
  private readonly metrics: WorkQueueMetrics | undefined;
  private closed = false;

  constructor(opts: { clock?: Clock; backoff?: Partial<BackoffOptions>; qps?: number; burst?: number; metrics?: WorkQueueMetrics } = {}) {
    this.clock = opts.clock ?? systemClock;
    this.backoff = new ExponentialBackoff(opts.backoff);
    this.bucket = new TokenBucket(opts.qps ?? 10, opts.burst ?? 100, this.clock);
    this.metrics = opts.metrics;
  }

  add(key: string): void {
    if (this.closed || this.dirty.has(key)) return;
    this.metrics?.add(key);
    this.dirty.add(key);
    if (this.processing.has(key)) return;
    this.push(key);
  }

  /** Hands a dirty key to a waiting worker, or queues it. */
  private push(key: string): void {
    const waiter = this.waiters.shift();
    if (waiter) {
      this.dirty.delete(key);
      this.processing.add(key);
      this.metrics?.get(key);
      waiter(key);
    } else {
      this.queue.push(key);
    }
  }

  /** Adds `key` after `ms`; an earlier pending add of the same key wins over a later one. */
  addAfter(key: string, ms: number): void {
    if (this.closed) return;
    if (ms <= 0) return this.add(key);
    const at = this.clock.now() + ms;
    const pending = this.delayed.get(key);
    if (pending && pending.at <= at) return;
    pending?.timer.cancel();
    const timer = this.clock.setTimer(() => {
      this.delayed.delete(key);
      this.add(key);
    }, ms);
    this.delayed.set(key, { at, timer });
  }

  /** Re-adds a key that failed, after the longer of its exponential backoff and the overall rate limit. Returns the delay. */
  addRateLimited(key: string): number {
    const delay = Math.max(this.backoff.next(key), this.bucket.reserve());
    this.metrics?.retry();
    this.addAfter(key, delay);
    return delay;
  }

  forget(key: string): void {
    this.backoff.forget(key);
  }

  /** The next key to process, waiting for one; undefined once the queue is shut down. */
  get(): Promise<string | undefined> {
    const key = this.queue.shift();
    if (key !== undefined) {
      this.dirty.delete(key);
      this.processing.add(key);
      this.metrics?.get(key);
      return Promise.resolve(key);
    }
    if (this.closed) return Promise.resolve(undefined);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  done(key: string): void {
    this.metrics?.done(key);
    this.processing.delete(key);
    // Added again while it was processed: already counted as an add then, so not counted again.
    if (this.dirty.has(key) && !this.closed) this.push(key);
  }

  /** Keys waiting to be processed (not counting delayed ones). */
  len(): number {
    return this.queue.length;
  }

  delayedLen(): number {
    return this.delayed.size;
  }

  shutdown(): void {
    this.closed = true;
    this.metrics?.shutdown();
    for (const { timer } of this.delayed.values()) timer.cancel();
    this.delayed.clear();
    for (const w of this.waiters.splice(0)) w(undefined);
  }
}
