// Leader election on a coordination.k8s.io/v1 Lease, following client-go's leaderelection:
// the leader renews the Lease every retry period; a candidate takes it over once it has seen the
// same record unchanged for a whole lease duration (measured on its own clock, so clock skew
// between nodes does not matter); the leader gives up when it cannot renew within the renew
// deadline, and releases the Lease on shutdown so a successor need not wait for expiry.
import type { Logger } from '../log.ts';
import type { Clock, Timer } from './clock.ts';

export interface LeaseSpec {
  holderIdentity?: string | null;
  leaseDurationSeconds?: number;
  acquireTime?: string | null;
  renewTime?: string | null;
  leaseTransitions?: number;
}

export interface LeaseStore {
  /** The Lease, or null when it does not exist. */
  get(): Promise<{ spec: LeaseSpec; resourceVersion: string } | null>;
  /** Creates the Lease; rejects when it already exists. */
  create(spec: LeaseSpec): Promise<void>;
  /** Replaces the Lease's spec; rejects on a resourceVersion conflict. */
  update(spec: LeaseSpec, resourceVersion: string): Promise<void>;
}

/** Kubernetes MicroTime: RFC 3339 in UTC with exactly six fractional digits. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export interface LeaderElectionOptions {
  store: LeaseStore;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  clock: Clock;
  logger?: Logger;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
}

export class LeaderElector {
  private readonly o: LeaderElectionOptions;
  private observed: { key: string; at: number } | undefined;
  private lastRenew = 0;
  private leading = false;
  private stopped = false;
  private timer: Timer | undefined;

  constructor(options: LeaderElectionOptions) {
    if (options.renewDeadlineMs >= options.leaseDurationMs) throw new Error('renew deadline must be shorter than the lease duration');
    if (options.retryPeriodMs >= options.renewDeadlineMs) throw new Error('retry period must be shorter than the renew deadline');
    this.o = options;
  }

  isLeader(): boolean {
    return this.leading;
  }

  /** One round: acquire or renew. Returns true when this candidate holds the Lease afterwards. */
  async tryAcquireOrRenew(): Promise<boolean> {
    const { store, identity, clock } = this.o;
    const now = clock.now();
    const desired: LeaseSpec = {
      holderIdentity: identity,
      leaseDurationSeconds: Math.ceil(this.o.leaseDurationMs / 1000),
      acquireTime: microTime(now),
      renewTime: microTime(now),
      leaseTransitions: 0,
    };
    const current = await store.get();
    if (!current) {
      await store.create(desired);
      this.observe(desired, now);
      return true;
    }
    const rec = current.spec;
    this.observe(rec, now);
    const holder = rec.holderIdentity ?? '';
    const mine = holder === identity;
    const expired = !holder || (this.observed?.at ?? now) + (rec.leaseDurationSeconds ?? 0) * 1000 <= now;
    if (!mine && !expired) return false;
    const next: LeaseSpec = mine
      ? { ...rec, renewTime: desired.renewTime, leaseDurationSeconds: desired.leaseDurationSeconds }
      : { ...desired, leaseTransitions: (rec.leaseTransitions ?? 0) + 1 };
    await store.update(next, current.resourceVersion);
    this.observe(next, now);
    return true;
  }

  private observe(rec: LeaseSpec, now: number): void {
    const key = `${rec.holderIdentity ?? ''}|${rec.renewTime ?? ''}|${rec.leaseTransitions ?? 0}`;
    if (this.observed?.key !== key) this.observed = { key, at: now };
  }

  /** Runs rounds every retry period until stopped; calls the callbacks on changes of leadership. */
  start(): void {
    const round = async () => {
      if (this.stopped) return;
      let held = false;
      try {
        held = await this.tryAcquireOrRenew();
      } catch (err) {
        this.o.logger?.warn({ err: (err as Error).message }, 'lease round failed');
      }
      if (this.stopped) return;
      const now = this.o.clock.now();
      if (held) {
        this.lastRenew = now;
        if (!this.leading) {
          this.leading = true;
          this.o.logger?.info({ identity: this.o.identity }, 'became leader');
          this.o.onStartedLeading();
        }
      } else if (this.leading && now - this.lastRenew >= this.o.renewDeadlineMs) {
        this.leading = false;
        this.o.logger?.warn({ identity: this.o.identity }, 'lost leadership: could not renew within the deadline');
        this.o.onStoppedLeading();
      } else if (this.leading && !held) {
        // Someone else holds it now (e.g. our renew lost a race): stop at once.
        const cur = await this.o.store.get().catch(() => null);
        if (cur && cur.spec.holderIdentity && cur.spec.holderIdentity !== this.o.identity) {
          this.leading = false;
          this.o.onStoppedLeading();
        }
      }
      this.timer = this.o.clock.setTimer(() => void round(), this.o.retryPeriodMs);
    };
    void round();
  }

  /** Stops the rounds; a leader releases the Lease (empty holder) so a successor takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    if (!this.leading) return;
    this.leading = false;
    try {
      const cur = await this.o.store.get();
      if (cur && cur.spec.holderIdentity === this.o.identity) {
        const now = microTime(this.o.clock.now());
        await this.o.store.update({ ...cur.spec, holderIdentity: null, leaseDurationSeconds: 1, renewTime: now, acquireTime: now }, cur.resourceVersion);
      }
    } catch (err) {
      this.o.logger?.warn({ err: (err as Error).message }, 'could not release the lease');
    }
  }
}
