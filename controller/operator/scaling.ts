// Lag-based scaling: desired = ceil(lag ÷ lagThreshold), clamped to [minReplicas, maxReplicas] and
// to the partition count (a consumer group cannot use more members than partitions). Scaling up
// is immediate; scaling down follows the highest recommendation of the stabilization window, so a
// backlog that drains in bursts does not make the Deployment flap.
import type { Clock } from './clock.ts';

export interface ScalingBounds {
  minReplicas: number;
  maxReplicas: number;
  lagThreshold: number;
}

export function recommendReplicas(lag: number, bounds: ScalingBounds, partitions: number): number {
  const wanted = Math.ceil(Math.max(0, lag) / Math.max(1, bounds.lagThreshold));
  const clamped = Math.min(Math.max(wanted, bounds.minReplicas), bounds.maxReplicas);
  return Math.min(clamped, Math.max(1, partitions));
}

export class Stabilizer {
  private readonly history = new Map<string, { at: number; replicas: number }[]>();
  private readonly windowMs: number;
  private readonly clock: Clock;

  constructor(windowMs: number, clock: Clock) {
    this.windowMs = windowMs;
    this.clock = clock;
  }

  /**
   * The replica count to apply for `key`, given this round's recommendation and the current
   * count (undefined when the workload does not exist yet).
   */
  stabilize(key: string, recommendation: number, current: number | undefined): number {
    const now = this.clock.now();
    let h = this.history.get(key);
    if (!h) {
      // A fresh operator (restart, new leader) has no history: count the current size as a
      // recommendation made now, so it does not scale down the moment it starts.
      h = current === undefined ? [] : [{ at: now, replicas: current }];
      this.history.set(key, h);
    }
    h.push({ at: now, replicas: recommendation });
    while (h.length > 0 && (h[0]?.at ?? now) < now - this.windowMs) h.shift();
    if (current === undefined || recommendation >= current) return recommendation;
    const highest = Math.max(...h.map((x) => x.replicas));
    return Math.min(current, Math.max(recommendation, highest));
  }

  forget(prefix: string): void {
    for (const k of this.history.keys()) if (k.startsWith(prefix)) this.history.delete(k);
  }
}
