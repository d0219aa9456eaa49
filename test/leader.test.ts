// Leader election under a sick apiserver. Unit part (injected clock): every lease request is
// aborted when the time left before the renew deadline runs out, leadership is dropped at the
// deadline even while a request hangs, and lease timing is monotonic.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../controller/operator/clock.ts';
import { LeaderElector, type LeaseSpec, type LeaseStore } from '../controller/operator/leader.ts';

/** A Lease store in memory whose requests can be made to hang until aborted (a black-holed apiserver). */
class SickLeaseStore implements LeaseStore {
  lease: { spec: LeaseSpec; resourceVersion: string } | null = null;
  hang = false;
  private rv = 0;
  /** Every request: when it was sent, and when (clock time) its signal aborted it. */
  requests: { verb: string; sentAt: number; abortedAt?: number; signalled: boolean }[] = [];
  private readonly clock: ManualClock;
  constructor(clock: ManualClock) {
    this.clock = clock;
  }

  private call<T>(verb: string, signal: AbortSignal | undefined, fn: () => T): Promise<T> {
    const rec: { verb: string; sentAt: number; abortedAt?: number; signalled: boolean } = { verb, sentAt: this.clock.now(), signalled: !!signal };
    this.requests.push(rec);
    if (!this.hang) return Promise.resolve().then(fn);
    return new Promise<T>((_resolve, reject) => {
      signal?.addEventListener('abort', () => {
        rec.abortedAt = this.clock.now();
        reject(new Error('aborted'));
      });
    });
  }
  get(signal?: AbortSignal) {
    return this.call('get', signal, () => (this.lease ? structuredClone(this.lease) : null));
  }
  create(spec: LeaseSpec, signal?: AbortSignal) {
    return this.call('create', signal, () => {
      if (this.lease) throw new Error('AlreadyExists');
      this.lease = { spec, resourceVersion: String(++this.rv) };
    });
  }
  update(spec: LeaseSpec, resourceVersion: string, signal?: AbortSignal) {
    return this.call('update', signal, () => {
      if (this.lease?.resourceVersion !== resourceVersion) throw new Error('Conflict');
      this.lease = { spec, resourceVersion: String(++this.rv) };
    });
  }
}

/** Lets the elector's promise chains run after the clock fired its timers. */
const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};

const timing = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 };

describe('leader election: deadlines on an injected clock', () => {
  it('drops leadership at the renew deadline while the renewal hangs, and aborts the hanging request then', async () => {
    const clock = new ManualClock();
    const store = new SickLeaseStore(clock);
    const events: { what: string; at: number }[] = [];
    const a = new LeaderElector({
      store, identity: 'a', clock, ...timing,
      onStartedLeading: () => events.push({ what: '+', at: clock.now() }),
      onStoppedLeading: () => events.push({ what: '-', at: clock.now() }),
    });
    const t0 = clock.now();
    a.start();
    await settle();
    assert.equal(a.isLeader(), true);
    clock.advance(2_000); // a renewal round, answered
    await settle();
    const lastRenewSent = clock.now();
    assert.equal(store.lease?.spec.renewTime?.slice(0, 19), new Date(lastRenewSent).toISOString().slice(0, 19));
    store.hang = true; // from now on the apiserver never answers
    // Up to one millisecond before the deadline the replica still leads...
    clock.advance(timing.renewDeadlineMs - 1);
    await settle();
    assert.equal(a.isLeader(), true, 'still leading before the deadline');
    assert.deepEqual(events.map((e) => e.what), ['+']);
    // ...and at the deadline it stops, though every request since is still hanging.
    clock.advance(1);
    await settle();
    assert.equal(a.isLeader(), false);
    assert.deepEqual(events, [{ what: '+', at: t0 }, { what: '-', at: lastRenewSent + timing.renewDeadlineMs }]);
    const hung = store.requests.filter((r) => r.sentAt > lastRenewSent);
    assert.ok(hung.length >= 1, 'renewals were attempted while the apiserver hung');
    for (const r of hung) {
      assert.ok(r.signalled, 'every lease request carries an abort signal');
      assert.ok(r.abortedAt !== undefined && r.abortedAt <= lastRenewSent + timing.renewDeadlineMs, `request sent at +${r.sentAt - lastRenewSent} ms aborted by the deadline`);
    }
    await a.stop();
  });

  it('bounds each round by the time left before the deadline, not by a fixed timeout', async () => {
    const clock = new ManualClock();
    const store = new SickLeaseStore(clock);
    const a = new LeaderElector({ store, identity: 'a', clock, ...timing, onStartedLeading: () => {}, onStoppedLeading: () => {} });
    a.start();
    await settle();
    const renewedAt = clock.now();
    store.hang = true;
    clock.advance(timing.retryPeriodMs); // the next round starts 2 s after the renewal: 8 s are left
    await settle();
    const round = store.requests.at(-1);
    assert.equal(round?.sentAt, renewedAt + timing.retryPeriodMs);
    clock.advance(timing.renewDeadlineMs - timing.retryPeriodMs - 1);
    await settle();
    assert.equal(round?.abortedAt, undefined, 'not aborted before the deadline');
    clock.advance(1);
    await settle();
    assert.equal(round?.abortedAt, renewedAt + timing.renewDeadlineMs, 'aborted exactly when the time left ran out');
    await a.stop();
  });

  it('a candidate takes over only a whole lease duration after it last saw the record change, on the monotonic clock', async () => {
    // A clock whose wall time jumps an hour ahead (NTP step, VM resume) while monotonic time does not.
    class JumpingClock extends ManualClock {
      jump = 0;
      override now() {
        return super.now() + this.jump;
      }
    }
    const clock = new JumpingClock();
    const store = new SickLeaseStore(clock);
    const a = new LeaderElector({ store, identity: 'a', clock, ...timing, onStartedLeading: () => {}, onStoppedLeading: () => {} });
    const b = new LeaderElector({ store, identity: 'b', clock, ...timing, onStartedLeading: () => {}, onStoppedLeading: () => {} });
    assert.equal(await a.tryAcquireOrRenew(), true);
    assert.equal(await b.tryAcquireOrRenew(), false);
    clock.jump = 3_600_000;
    assert.equal(await b.tryAcquireOrRenew(), false, 'a wall-clock jump does not expire the lease');
    clock.advance(timing.leaseDurationMs - 1);
    assert.equal(await b.tryAcquireOrRenew(), false, 'not before a whole lease duration');
    clock.advance(1);
    assert.equal(await b.tryAcquireOrRenew(), true, 'takes over once the record stayed unchanged for the lease duration');
    assert.equal(store.lease?.spec.holderIdentity, 'b');
  });

  it('a leader that learns another replica holds the lease stops at once', async () => {
    const clock = new ManualClock();
    const store = new SickLeaseStore(clock);
    const events: string[] = [];
    const a = new LeaderElector({ store, identity: 'a', clock, ...timing, onStartedLeading: () => events.push('+'), onStoppedLeading: () => events.push('-') });
    a.start();
    await settle();
    // Someone else wrote the Lease (e.g. a took too long and b took over).
    store.lease = { spec: { ...store.lease?.spec, holderIdentity: 'b', renewTime: 'x' }, resourceVersion: '99' };
    clock.advance(timing.retryPeriodMs);
    await settle();
    assert.deepEqual(events, ['+', '-']);
    await a.stop();
  });
});
