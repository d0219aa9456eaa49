// Leader election on a coordination.k8s.io/v1 Lease, following client-go's leaderelection:
// the leader renews the Lease every retry period; a candidate takes it over once it has seen the
// same record unchanged for a whole lease duration (measured on its own monotonic clock, so clock
// skew between nodes and wall-clock jumps do not matter); the leader gives up when it cannot renew
// within the renew deadline, and releases the Lease on shutdown so a successor need not wait.
//
// Under a sick apiserver the deadline is what keeps two leaders apart: a candidate takes over
// `leaseDuration` after it last saw the leader's renewal, and the leader stops `renewDeadline`
// (shorter) after it *sent* its last successful renewal. So the leader's deadline is a timer of its
// own, not the answer of a request: every lease request is aborted when the time left before the
// deadline runs out, and leadership is dropped when the deadline passes even if a request hangs.
import type { Logger } from '../log.ts';
import type { Clock, Timer } from './clock.ts';

export interface LeaseSpec {
  holderIdentity?: string | null;
  leaseDurationSeconds?: number;
  acquireTime?: string | null;
  renewTime?: string | null;
  leaseTransitions?: number;
}

/** The Lease's storage. `signal` aborts the request (the leader's time is up). */
export interface LeaseStore {
  /** The Lease, or null when it does not exist. */
  get(signal?: AbortSignal): Promise<{ spec: LeaseSpec; resourceVersion: string } | null>;
  /** Creates the Lease; rejects when it already exists. */
  create(spec: LeaseSpec, signal?: AbortSignal): Promise<void>;
  /** Replaces the Lease's spec; rejects on a resourceVersion conflict. */
  update(spec: LeaseSpec, resourceVersion: string, signal?: AbortSignal): Promise<void>;
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
  /** Called once, synchronously, the moment leadership is lost (deadline passed, or another holder seen). */
  onStoppedLeading: () => void;
}

export class LeaderElector {
  private readonly o: LeaderElectionOptions;
  /** The last Lease record seen and when it was first seen (monotonic ms). */
  private observed: { key: string; at: number } | undefined;
  /** Monotonic time at which the last successful renewal was *sent* (conservative: the apiserver saw it later). */
  private lastRenew = 0;
  private leading = false;
  /** This process wrote the current record (created, acquired or renewed it) and has not lost it since. */
  private holds = false;
  private stopped = false;
  private timer: Timer | undefined;
  private deadline: Timer | undefined;
  private inflight: AbortController | undefined;

  constructor(options: LeaderElectionOptions) {
    if (options.renewDeadlineMs >= options.leaseDurationMs) throw new Error('renew deadline must be shorter than the lease duration');
    if (options.retryPeriodMs >= options.renewDeadlineMs) throw new Error('retry period must be shorter than the renew deadline');
    this.o = options;
  }

  isLeader(): boolean {
    return this.leading;
  }

  /**
   * One round: acquire or renew. Returns true when this candidate holds the Lease afterwards.
   * `signal` aborts its requests; an aborted round rejects.
   */
  async tryAcquireOrRenew(signal?: AbortSignal): Promise<boolean> {
    const { store, identity, clock } = this.o;
    const mono = clock.monotonic();
    const wall = clock.now();
    const desired: LeaseSpec = {
      holderIdentity: identity,
      leaseDurationSeconds: Math.ceil(this.o.leaseDurationMs / 1000),
      acquireTime: microTime(wall),
      renewTime: microTime(wall),
      leaseTransitions: 0,
    };
    const current = await store.get(signal);
    if (!current) {
      await store.create(desired, signal);
      this.observe(desired, mono);
      this.holds = true;
      return true;
    }
    const rec = current.spec;
    this.observe(rec, mono);
    const holder = rec.holderIdentity ?? '';
    // Ours only if this process wrote it: a restarted process with the same identity (the pod name)
    // finds its predecessor's record and must wait for it to expire like any candidate, so a standby
    // that has been watching longer takes over (controller-runtime gets the same by a fresh UUID in
    // the identity); renewing it at once would hand the lease to a process that never held it.
    const mine = holder === identity && this.holds;
    const expired = !holder || (this.observed?.at ?? mono) + (rec.leaseDurationSeconds ?? 0) * 1000 <= mono;
    if (!mine && !expired) return false;
    const next: LeaseSpec = mine
      ? { ...rec, renewTime: desired.renewTime, leaseDurationSeconds: desired.leaseDurationSeconds }
      : { ...desired, leaseTransitions: (rec.leaseTransitions ?? 0) + 1 };
    await store.update(next, current.resourceVersion, signal);
    this.observe(next, mono);
    this.holds = true;
    return true;
  }

  private observe(rec: LeaseSpec, at: number): void {
    const key = `${rec.holderIdentity ?? ''}|${rec.renewTime ?? ''}|${rec.leaseTransitions ?? 0}`;
    if (this.observed?.key !== key) this.observed = { key, at };
  }

  /** How long the next round may take: until the renew deadline for a leader, one renew deadline for a candidate. */
  private budgetMs(now: number): number {
    return this.leading ? this.lastRenew + this.o.renewDeadlineMs - now : this.o.renewDeadlineMs;
  }

  /** Drops leadership at once: aborts the lease request in flight and tells the owner. */
  private lose(why: string): void {
    this.holds = false;
    if (!this.leading) return;
    this.leading = false;
    this.deadline?.cancel();
    this.deadline = undefined;
    this.inflight?.abort(new Error(why));
    this.o.logger?.warn({ identity: this.o.identity }, `lost leadership: ${why}`);
    this.o.onStoppedLeading();
  }

  private armDeadline(): void {
    this.deadline?.cancel();
    const check = () => {
      // Timers may fire a fraction of a millisecond early against the monotonic clock (libuv
      // counts whole milliseconds): then wait for the rest instead of dropping the check.
      const left = this.lastRenew + this.o.renewDeadlineMs - this.o.clock.monotonic();
      if (left <= 0) this.lose('could not renew within the renew deadline');
      else this.deadline = this.o.clock.setTimer(check, left);
    };
    this.deadline = this.o.clock.setTimer(check, this.lastRenew + this.o.renewDeadlineMs - this.o.clock.monotonic());
  }

  /** Runs rounds every retry period until stopped; calls the callbacks on changes of leadership. */
  start(): void {
    const round = async () => {
      if (this.stopped) return;
      const { clock } = this.o;
      const started = clock.monotonic();
      const wasLeading = this.leading;
      const budget = this.budgetMs(started);
      let held = false;
      let definite = false;
      if (this.leading && budget <= 0) this.lose('could not renew within the renew deadline');
      if (budget > 0) {
        const abort = new AbortController();
        this.inflight = abort;
        const bound = clock.setTimer(() => abort.abort(new Error(`lease request exceeded its ${budget} ms budget`)), budget);
        try {
          held = await this.tryAcquireOrRenew(abort.signal);
          definite = true;
        } catch (err) {
          this.o.logger?.warn({ err: (err as Error).message }, 'lease round failed');
        } finally {
          bound.cancel();
          if (this.inflight === abort) this.inflight = undefined;
        }
      }
      if (this.stopped) return;
      if (held && (this.leading || !wasLeading)) {
        // Measured from when the round started: the apiserver stored the renewal no earlier.
        this.lastRenew = started;
        if (!this.leading) {
          this.leading = true;
          this.o.logger?.info({ identity: this.o.identity }, 'became leader');
          this.o.onStartedLeading();
        }
        this.armDeadline();
      } else if (definite && !held) {
        // The apiserver answered and someone else holds an unexpired Lease (e.g. our renewal lost a race).
        this.lose('another replica holds the lease');
      }
      this.timer = clock.setTimer(() => void round(), this.o.retryPeriodMs);
    };
    void round();
  }

  /** Stops the rounds; a leader releases the Lease (empty holder) so a successor takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    this.deadline?.cancel();
    this.inflight?.abort(new Error('stopping'));
    this.holds = false;
    if (!this.leading) return;
    this.leading = false;
    const abort = new AbortController();
    const bound = this.o.clock.setTimer(() => abort.abort(new Error('lease release timed out')), this.o.renewDeadlineMs);
    try {
      const cur = await this.o.store.get(abort.signal);
      if (cur && cur.spec.holderIdentity === this.o.identity) {
        const now = microTime(this.o.clock.now());
        await this.o.store.update({ ...cur.spec, holderIdentity: null, leaseDurationSeconds: 1, renewTime: now, acquireTime: now }, cur.resourceVersion, abort.signal);
      }
    } catch (err) {
      this.o.logger?.warn({ err: (err as Error).message }, 'could not release the lease');
    } finally {
      bound.cancel();
    }
  }
}
