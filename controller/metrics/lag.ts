// Consumer lag of every consumer group of the sales we watch, from Kafka admin offsets.
//
// One admin round per interval collects all groups (not one per scrape); the result is kept in
// memory as a snapshot and copied into gauges at the end of the round, so a scrape only reads
// memory. Names follow kafka-lag-exporter, so existing dashboards work, with `flashsale` and
// `role` labels added to tie each group to its sale.
//
// Policies (documented in docs/observability.md):
// - lag = high watermark − max(committed, log start), clamped at 0. Messages below the log start
//   were deleted by retention and will never be read, so they are not lag.
// - A partition the group never committed is lag = high − low: everything retained is unread,
//   because every consumer of this project starts a new group from the earliest offset.
// - Time lag: each partition keeps a bounded table of (high watermark, time seen) points;
//   the time the watermark passed the committed offset is interpolated from it, and lag seconds =
//   now − that time. A committed offset older than the table gives a lower bound (now − oldest).
// - Delay topics split the lag: messages whose Kafka timestamp (= order createdAt) is older than
//   now − bucket delay are due. Kafka's time index gives the first offset at or after that
//   instant; unread messages before it are overdue, the rest scheduled.
import { Gauge, Counter, type Registry } from 'prom-client';
import type { GroupOffset, KafkaAdmin, PartitionOffsets } from '../infra/kafka.ts';
import type { Logger } from '../log.ts';
import { parseDuration, type FlashSale } from '../spec/flashsale.ts';
import { saleNames, type NameOptions } from '../spec/names.ts';
import { oncePerRegistry } from './registry.ts';

export type GroupRole = 'order-writer' | 'timeout-closer' | 'retry';

/** One consumer group on one topic, as derived from a sale. */
export interface LagTarget {
  group: string;
  topic: string;
  role: GroupRole;
  /** namespace/name of the sale. */
  flashsale: string;
  /** Timeout bucket, for timeout-closer groups. */
  bucket?: string;
  /** Bucket delay in ms: set for delay topics, whose lag is split into scheduled and overdue. */
  delayMs?: number;
}

export interface PartitionLag {
  partition: number;
  high: number;
  low: number;
  /** Next offset the group will read, or null when it never committed on this partition. */
  committed: number | null;
  lag: number;
  lagSeconds: number;
  /** Unread messages already due (delay topics); equals lag on other topics. */
  overdue: number;
  /** Unread messages not yet due (delay topics); 0 on other topics. */
  scheduled: number;
}

export interface GroupLag extends LagTarget {
  partitions: PartitionLag[];
  /** Sum over partitions. */
  lag: number;
  maxLag: number;
  maxLagSeconds: number;
  /** Work due now: the scaler's input. For delay topics only overdue messages, elsewhere the whole lag. */
  overdue: number;
  scheduled: number;
}

export interface LagSnapshot {
  /** Clock time of the round that produced this snapshot (0 before the first round). */
  at: number;
  groups: GroupLag[];
}

/** The groups of a sale whose lag we watch: the order writer, one timeout closer per bucket, the retry consumer. */
export function saleLagTargets(sale: FlashSale, nameOptions: NameOptions = {}): LagTarget[] {
  const n = saleNames(sale.metadata, nameOptions);
  return [
    { group: n.groups.orderWriter, topic: n.topics.orders, role: 'order-writer', flashsale: n.key },
    ...sale.spec.timeoutBuckets.map(
      (b): LagTarget => ({
        group: n.groups.timeoutCloser(b.name),
        topic: n.topics.delay(b.name),
        role: 'timeout-closer',
        flashsale: n.key,
        bucket: b.name,
        delayMs: parseDuration(b.delay),
      }),
    ),
    { group: n.groups.retry, topic: n.topics.retry, role: 'retry', flashsale: n.key },
  ];
}

interface Point {
  offset: number;
  time: number;
}

/**
 * Recorded (high watermark, time) points of one partition, bounded in size. A watermark that stays
 * put keeps two points, the first and the last time it was seen: the first dates the messages
 * below it, the last says no message above it existed yet (without it, a burst after a quiet
 * spell would be spread back over the whole quiet spell and look old).
 */
export class WatermarkHistory {
  private points: Point[] = [];
  private readonly maxPoints: number;

  constructor(maxPoints = 64) {
    if (maxPoints < 3) throw new Error('WatermarkHistory needs at least 3 points');
    this.maxPoints = maxPoints;
  }

  record(offset: number, time: number): void {
    const last = this.points.at(-1);
    const before = this.points.at(-2);
    if (last && offset < last.offset) this.points = []; // topic recreated: the old history means nothing
    else if (last && before && offset === last.offset && offset === before.offset) {
      last.time = time; // still flat: move the "last seen" point
      return;
    }
    this.points.push({ offset, time });
    if (this.points.length > this.maxPoints) this.thin();
  }

  /**
   * Halves the resolution of the middle instead of dropping the oldest point, so the table keeps
   * spanning from its first point (lag of a long-stuck consumer stays measurable) at lower precision.
   */
  private thin(): void {
    const last = this.points.length - 1;
    this.points = this.points.filter((_, i) => i === 0 || i === last || i % 2 === 0);
  }

  /** Estimated time at which the high watermark reached `offset` (the moment that message was written). */
  timeAt(offset: number): number | undefined {
    const pts = this.points;
    const first = pts[0];
    if (!first) return undefined;
    if (offset <= first.offset) return first.time; // older than the table: lower bound of the age
    for (let i = 1; i < pts.length; i++) {
      const b = pts[i] as Point;
      if (offset <= b.offset) {
        const a = pts[i - 1] as Point;
        return a.time + ((offset - a.offset) / (b.offset - a.offset)) * (b.time - a.time);
      }
    }
    return pts.at(-1)?.time;
  }

  /** Seconds `committed` is behind, measured against `now`. */
  lagSeconds(committed: number, now: number): number {
    const newest = this.points.at(-1);
    if (!newest || committed >= newest.offset) return 0;
    // The first unread message is `committed`; it was written after the watermark passed `committed`.
    const t = this.timeAt(committed + 1);
    return t === undefined ? 0 : Math.max(0, (now - t) / 1000);
  }

  size(): number {
    return this.points.length;
  }
}

/**
 * Lag of one partition. `dueBoundary` (delay topics) is the first offset whose message is not due yet.
 */
export function partitionLag(input: {
  partition: number;
  high: number;
  low: number;
  committed: number | null;
  dueBoundary?: number;
  history?: WatermarkHistory;
  now: number;
}): PartitionLag {
  const { partition, high, low, committed, dueBoundary, history, now } = input;
  // Policy: never committed = read from the earliest retained offset; below the log start = deleted.
  const position = Math.max(committed ?? low, low);
  const lag = Math.max(0, high - position);
  const overdue = dueBoundary === undefined ? lag : Math.min(lag, Math.max(0, dueBoundary - position));
  return {
    partition,
    high,
    low,
    committed,
    lag,
    lagSeconds: lag === 0 || !history ? 0 : history.lagSeconds(position, now),
    overdue,
    scheduled: lag - overdue,
  };
}

export type LagAdmin = Pick<KafkaAdmin, 'groupsOffsets' | 'topicsOffsets' | 'topicOffsetsAt'>;

/**
 * How long a group that had read everything is not asked again while its topic's high watermarks
 * stay where they were (see LagCollector.round). Its committed offsets can then only move backwards
 * by hand (kafka-consumer-groups --reset-offsets): such lag shows within this long.
 */
export const QUIET_GROUP_RECHECK_MS = 60_000;

/** A group's committed offsets as last asked, while it had nothing unread. */
interface QuietGroup {
  /** The topic's high watermarks then, by partition ("p:high,..."). */
  highs: string;
  committed: GroupOffset[];
  askedAt: number;
}

const highsOf = (offsets: PartitionOffsets[]): string => offsets.map((p) => `${p.partition}:${p.high}`).join(',');

export interface LagCollectorOptions {
  /** Source of the admin client (a KafkaGateway fits). */
  kafka: { admin(): Promise<LagAdmin> };
  registry?: Registry;
  /** Epoch ms; injected so tests control time. */
  clock?: () => number;
  intervalMs?: number;
  /** Points kept per partition for the time-lag interpolation. */
  historyPoints?: number;
  /** Names of the sales' topics and groups (tests use their own prefix). */
  nameOptions?: NameOptions;
  logger?: Logger;
  /**
   * Admin requests of a round in flight at once (default 8). A round asks a few questions per sale;
   * with 500 sales thousands at once queued inside kafkajs behind its metadata lock (lock timeouts)
   * and ahead of the reconciler's own requests on the same client.
   */
  concurrency?: number;
}

/** Runs `fn` over `items` with at most `limit` calls in flight; results in input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const lane = async () => {
    for (let i = next++; i < items.length; i = next++) out[i] = await fn(items[i] as T);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, lane));
  return out;
}

const kafkaLabels = ['group', 'topic', 'partition', 'flashsale', 'role'] as const;
const groupLabels = ['group', 'flashsale', 'role'] as const;
const delayLabels = ['flashsale', 'bucket', 'group', 'topic'] as const;

/** The lag metrics, defined once, registered on `registry` (created once per registry). */
export const lagMetrics = oncePerRegistry(build);

function build(registry: Registry) {
  const registers = [registry];
  return {
    lag: new Gauge({ name: 'kafka_consumergroup_group_lag', help: 'Messages of a partition the group has not consumed: high watermark minus committed offset, clamped at 0 (never committed: high minus log start).', labelNames: kafkaLabels, registers }),
    lagSeconds: new Gauge({ name: 'kafka_consumergroup_group_lag_seconds', help: 'Estimated age of the oldest unconsumed message of a partition, interpolated from recorded high watermarks.', labelNames: kafkaLabels, registers }),
    maxLag: new Gauge({ name: 'kafka_consumergroup_group_max_lag', help: 'Largest partition lag of the group.', labelNames: groupLabels, registers }),
    maxLagSeconds: new Gauge({ name: 'kafka_consumergroup_group_max_lag_seconds', help: 'Largest partition time lag of the group.', labelNames: groupLabels, registers }),
    sumLag: new Gauge({ name: 'kafka_consumergroup_group_sum_lag', help: 'Sum of the partition lags of the group.', labelNames: groupLabels, registers }),
    scheduled: new Gauge({ name: 'flashsale_timeouts_scheduled', help: 'Unread timeout messages of a bucket that are not due yet (scheduled work, not backlog).', labelNames: delayLabels, registers }),
    overdue: new Gauge({ name: 'flashsale_timeouts_overdue', help: 'Unread timeout messages of a bucket that are already due but not closed.', labelNames: delayLabels, registers }),
    rounds: new Counter({ name: 'flashsale_lag_collections_total', help: 'Lag collection rounds, by result (ok, error).', labelNames: ['result'] as const, registers }),
    lastRound: new Gauge({ name: 'flashsale_lag_collection_timestamp_seconds', help: 'When the last lag collection round finished (Unix time).', registers }),
    roundDuration: new Gauge({ name: 'flashsale_lag_collection_duration_seconds', help: 'Duration of the last lag collection round.', registers }),
  };
}

type LagMetrics = ReturnType<typeof lagMetrics>;

export class LagCollector {
  private readonly kafka: LagCollectorOptions['kafka'];
  private readonly clock: () => number;
  private readonly intervalMs: number;
  private readonly concurrency: number;
  private readonly historyPoints: number;
  private readonly nameOptions: NameOptions;
  private readonly logger: Logger | undefined;
  private readonly metrics: LagMetrics | undefined;
  private targets: LagTarget[] = [];
  private readonly histories = new Map<string, WatermarkHistory>();
  private current: LagSnapshot = { at: 0, groups: [] };
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<LagSnapshot> | undefined;
  private loop = 0;
  /** By group and topic: groups that had read everything when last asked (see round). */
  private readonly quiet = new Map<string, QuietGroup>();

  constructor(options: LagCollectorOptions) {
    this.kafka = options.kafka;
    this.clock = options.clock ?? Date.now;
    this.intervalMs = options.intervalMs ?? 5000;
    this.concurrency = options.concurrency ?? 8;
    this.historyPoints = options.historyPoints ?? 64;
    this.nameOptions = options.nameOptions ?? {};
    this.logger = options.logger;
    this.metrics = options.registry ? lagMetrics(options.registry) : undefined;
  }

  /** Replaces the watched sales; groups of removed sales leave the snapshot and the metrics at the next round. */
  setSales(sales: FlashSale[]): void {
    this.setTargets(sales.flatMap((s) => saleLagTargets(s, this.nameOptions)));
  }

  setTargets(targets: LagTarget[]): void {
    this.targets = [...targets];
    const topics = new Set(targets.map((t) => t.topic));
    for (const key of this.histories.keys()) if (!topics.has(key.slice(0, key.lastIndexOf('/')))) this.histories.delete(key);
  }

  /** The last round's result, from memory. */
  snapshot(flashsale?: string): LagSnapshot {
    if (flashsale === undefined) return this.current;
    return { at: this.current.at, groups: this.current.groups.filter((g) => g.flashsale === flashsale) };
  }

  /** Collects now (a round already in progress is joined, not doubled) and then every interval. */
  start(): void {
    if (this.timer) return;
    // Each start owns a loop id: a round of an earlier, stopped loop that finishes late does not
    // reschedule itself next to the new loop (the operator stops and starts on leadership changes).
    const loop = ++this.loop;
    const tick = () => {
      this.collectOnce()
        .catch(() => undefined) // counted and logged in collectOnce; the next tick tries again
        .finally(() => {
          if (this.timer && this.loop === loop) this.timer = setTimeout(tick, this.intervalMs);
        });
    };
    this.timer = setTimeout(tick, 0);
  }

  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.loop++;
    await this.running?.catch(() => undefined);
  }

  /** One admin round for every target; the snapshot and the gauges change only when it succeeds. */
  collectOnce(): Promise<LagSnapshot> {
    this.running ??= this.round().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async round(): Promise<LagSnapshot> {
    const started = this.clock();
    const targets = this.targets;
    try {
      const admin = await this.kafka.admin();
      const now = this.clock();
      const limit = this.concurrency;
      // Every topic's watermarks in one question (a topic that does not exist yet just has no lag).
      const byTopic = await admin.topicsOffsets([...new Set(targets.map((t) => t.topic))]);
      // A group that had read everything when last asked, on a topic whose high watermarks have not
      // moved since, has committed the same offsets: nothing new to read, nothing to commit. At 500
      // idle sales that is nearly every group, an OffsetFetch each per round. Asked again at least
      // every QUIET_GROUP_RECHECK_MS (an offset reset by hand is the only way it can change).
      const quietKey = (t: LagTarget) => `${t.group}\0${t.topic}`;
      const reuse = targets.map((t) => {
        const q = this.quiet.get(quietKey(t));
        const offsets = byTopic.get(t.topic);
        return q && offsets && q.highs === highsOf(offsets) && now - q.askedAt < QUIET_GROUP_RECHECK_MS ? q : undefined;
      });
      const asking = targets.filter((_, i) => !reuse[i]);
      const answers = await admin.groupsOffsets(asking.map((t) => ({ groupId: t.group, topics: [t.topic] })));
      let next = 0;
      const committed = reuse.map((q) => q?.committed ?? answers[next++] ?? []);
      // A delay topic's due boundary (two more requests) only matters when its group has something
      // unread: an idle sale's closers have read everything, so nothing is overdue or scheduled.
      // Each group's committed offsets by partition, read once for the boundary decision and the lag.
      const committedOf = targets.map((_, i) => new Map((committed[i] ?? []).map((c) => [c.partition, c.offset === null ? null : Number(c.offset)])));
      const unread = (t: LagTarget, i: number): boolean => {
        const at = committedOf[i] as Map<number, number | null>;
        return (byTopic.get(t.topic) ?? []).some((p) => Number(p.high) > Math.max(at.get(p.partition) ?? Number(p.low), Number(p.low)));
      };
      const keep = new Set<string>();
      targets.forEach((t, i) => {
        const offsets = byTopic.get(t.topic);
        if (!offsets || unread(t, i)) return;
        const key = quietKey(t);
        keep.add(key);
        this.quiet.set(key, { highs: highsOf(offsets), committed: committed[i] ?? [], askedAt: reuse[i]?.askedAt ?? now });
      });
      for (const key of this.quiet.keys()) if (!keep.has(key)) this.quiet.delete(key);
      const boundaries = await mapLimit(targets.map((t, i) => [t, i] as const), limit, async ([t, i]) =>
        t.delayMs === undefined || !unread(t, i) ? undefined : admin.topicOffsetsAt(t.topic, now - t.delayMs).catch((err: unknown) => this.missing(t.topic, err)),
      );
      for (const [topic, offsets] of byTopic) {
        for (const p of offsets ?? []) this.history(topic, p.partition).record(Number(p.high), now);
      }
      const groups: GroupLag[] = [];
      targets.forEach((target, i) => {
        const offsets = byTopic.get(target.topic);
        if (!offsets) return;
        const committedAt = committedOf[i] as Map<number, number | null>;
        const boundaryOf = new Map((boundaries[i] ?? []).map((b) => [b.partition, Number(b.offset)]));
        const partitions = offsets
          .map((p) =>
            partitionLag({
              partition: p.partition,
              high: Number(p.high),
              low: Number(p.low),
              committed: committedAt.get(p.partition) ?? null,
              dueBoundary: target.delayMs === undefined ? undefined : (boundaryOf.get(p.partition) ?? 0),
              history: this.history(target.topic, p.partition),
              now,
            }),
          )
          .sort((a, b) => a.partition - b.partition);
        const sum = (f: (p: PartitionLag) => number) => partitions.reduce((s, p) => s + f(p), 0);
        groups.push({
          ...target,
          partitions,
          lag: sum((p) => p.lag),
          maxLag: Math.max(0, ...partitions.map((p) => p.lag)),
          maxLagSeconds: Math.max(0, ...partitions.map((p) => p.lagSeconds)),
          overdue: sum((p) => p.overdue),
          scheduled: sum((p) => p.scheduled),
        });
      });
      this.current = { at: now, groups };
      this.publish(groups, (this.clock() - started) / 1000);
      return this.current;
    } catch (err) {
      this.metrics?.rounds.inc({ result: 'error' });
      this.logger?.warn({ err: String(err) }, 'lag collection failed; keeping the previous snapshot');
      throw err;
    }
  }

  private missing(topic: string, err: unknown): undefined {
    this.logger?.debug({ topic, err: String(err) }, 'no offsets for topic (not created yet?)');
    return undefined;
  }

  private history(topic: string, partition: number): WatermarkHistory {
    const key = `${topic}/${partition}`;
    let h = this.histories.get(key);
    if (!h) {
      h = new WatermarkHistory(this.historyPoints);
      this.histories.set(key, h);
    }
    return h;
  }

  /** Resets and refills the gauges synchronously, so a scrape never sees half a round or groups of removed sales. */
  private publish(groups: GroupLag[], durationSeconds: number): void {
    const m = this.metrics;
    if (!m) return;
    for (const g of [m.lag, m.lagSeconds, m.maxLag, m.maxLagSeconds, m.sumLag, m.scheduled, m.overdue]) g.reset();
    for (const g of groups) {
      const gl = { group: g.group, flashsale: g.flashsale, role: g.role };
      for (const p of g.partitions) {
        const pl = { ...gl, topic: g.topic, partition: String(p.partition) };
        m.lag.set(pl, p.lag);
        m.lagSeconds.set(pl, p.lagSeconds);
      }
      m.maxLag.set(gl, g.maxLag);
      m.maxLagSeconds.set(gl, g.maxLagSeconds);
      m.sumLag.set(gl, g.lag);
      if (g.delayMs !== undefined) {
        const dl = { flashsale: g.flashsale, bucket: g.bucket ?? '', group: g.group, topic: g.topic };
        m.scheduled.set(dl, g.scheduled);
        m.overdue.set(dl, g.overdue);
      }
    }
    m.rounds.inc({ result: 'ok' });
    m.lastRound.set(this.clock() / 1000);
    m.roundDuration.set(durationSeconds);
  }
}
