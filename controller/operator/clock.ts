// Time as a dependency: the work queue, leader election and scaling stabilization ask this clock,
// so their timing rules are tested by moving a manual clock instead of sleeping.

export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** Wall-clock time (Unix ms): for timestamps written into objects. */
  now(): number;
  /** Monotonic ms from an arbitrary origin: for measuring durations (lease timing); never jumps with the wall clock. */
  monotonic(): number;
  setTimer(fn: () => void, ms: number): Timer;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  monotonic: () => performance.now(),
  setTimer(fn, ms) {
    const t = setTimeout(fn, Math.max(0, ms));
    return { cancel: () => clearTimeout(t) };
  },
};

/** A clock tests move by hand; timers fire (in due order) when `advance` passes their time. */
export class ManualClock implements Clock {
  private t: number;
  private timers: { at: number; fn: () => void; seq: number; cancelled: boolean }[] = [];
  private seq = 0;

  constructor(start = 1_700_000_000_000) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  /** The same time as now(): a manual clock only moves forward, by advance(). */
  monotonic(): number {
    return this.t;
  }

  setTimer(fn: () => void, ms: number): Timer {
    const entry = { at: this.t + Math.max(0, ms), fn, seq: this.seq++, cancelled: false };
    this.timers.push(entry);
    return { cancel: () => (entry.cancelled = true) };
  }

  advance(ms: number): void {
    const until = this.t + ms;
    for (;;) {
      const due = this.timers.filter((x) => !x.cancelled && x.at <= until).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!due) break;
      this.timers = this.timers.filter((x) => x !== due);
      this.t = Math.max(this.t, due.at);
      due.fn();
    }
    this.t = until;
  }

  pendingTimers(): number {
    return this.timers.filter((x) => !x.cancelled).length;
  }
}
