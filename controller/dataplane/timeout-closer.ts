// The timeout closer: consumes one delay bucket of a sale and closes each order when (never before)
// its due time has passed. Kafka is the timer wheel: a bucket has one fixed delay, so the messages of
// a partition arrive roughly in due order, and the worker only ever waits for the head of a
// partition. While the head is not due the partition is paused and rewound to it (ctx.pauseAt) and a
// timer resumes it at the due time; the handler returns at once, so heartbeats go on, other
// partitions keep flowing and no rebalance is triggered. Offsets are committed only after the closes
// of everything before them are durable in MySQL; a redelivery re-runs idempotent closes.
//
// A close that fails (database down, deadlock) goes to the sale's retry topic with an attempt count
// and a notBefore time; the retry worker consumes it the same pause/resume way and, after
// MAX_RETRIES failed retries, sends it to the dead-letter topic. Malformed messages go to the
// dead-letter topic at once. Nothing is lost in between: the order stays UNPAID in MySQL, where the
// compensation scan finds it.
import type { Batch, BatchContext, ConsumedMessage, KafkaConsumer, KafkaGateway, KafkaProducer, OutgoingMessage } from '../infra/kafka.ts';
import type { Logger } from '../log.ts';
import type { DataPlaneMetrics } from '../metrics/dataplane.ts';
import type { SaleNames } from '../spec/names.ts';
import { systemClock, type Clock, type CloseOutcome, type CloseResult, type OrderCloser } from './close.ts';
import { deadLetter, parseRetryMessage, parseTimeoutMessage, type DeadLetter, type RetryMessage, type TimeoutMessage } from './messages.ts';

/** Retries of a failed close before it goes to the dead-letter topic. */
export const MAX_RETRIES = 3;

/** Backoff before retry `attempt` (1-based): base, 2×base, 4×base ... capped at a minute. */
export function retryBackoffMs(attempt: number, baseMs: number): number {
  return Math.min(60_000, baseMs * 2 ** Math.max(0, attempt - 1));
}

const MAX_TIMER_MS = 3_600_000;

/** Clock difference tolerated between the writer (which fixes due times) and a closer. */
export const DUE_SKEW_MS = 5 * 60_000;

/**
 * MySQL connections of a closer process: two chunks in flight for each of up to 6 partitions
 * (DelayedTopicWorker.onBatch), the retry worker's and the deferred marks'.
 */
export const CLOSER_MYSQL_CONNECTIONS = 16;

/**
 * Bytes per partition a delayed worker fetches at once (kafkajs's default: 1 MB, about 4,000 timeout
 * messages). A burst's first fetch comes when its head falls due and was decoded whole before the
 * first close began (6 MB: 40–110 ms), though only the messages already due are handled from it.
 */
export const DELAYED_FETCH_BYTES = 256 * 1024;

export type DueOf = (m: ConsumedMessage) => number | null;

/**
 * Splits a partition's batch from index `from`: the leading messages that may be handled at `now`
 * (due, or malformed: dueOf → null, handled at once by sending them to the dead-letter topic), at
 * most `limit` of them, and the first message that is not due yet, where the partition must wait
 * (null when the limit ended the scan first). Messages behind a not-yet-due head wait for it even
 * when they are due themselves: order within a partition is what makes the committed offset
 * meaningful, and in one bucket they are due at most a moment later. The limit and the start index
 * keep a batch's chunks one pass over it: a fetch holds thousands of messages per partition.
 */
export function splitDue(messages: ConsumedMessage[], now: number, dueOf: DueOf, limit = Infinity, from = 0): { ready: ConsumedMessage[]; wait: { offset: string; dueAt: number } | null } {
  const ready: ConsumedMessage[] = [];
  for (let i = from; i < messages.length && ready.length < limit; i++) {
    const m = messages[i] as ConsumedMessage;
    const due = dueOf(m);
    if (due !== null && due > now) return { ready, wait: { offset: m.offset, dueAt: due } };
    ready.push(m);
  }
  return { ready, wait: null };
}

const nextOffset = (m: ConsumedMessage) => (BigInt(m.offset) + 1n).toString();

export interface DelayedTopicWorkerOptions {
  kafka: KafkaGateway;
  groupId: string;
  topic: string;
  dueOf: DueOf;
  /** Handles due messages; throws only when nothing may be committed (e.g. Kafka refused a produce). */
  handle: (messages: ConsumedMessage[]) => Promise<void>;
  logger: Logger;
  clock?: Clock;
  /** Messages per handle() call and per commit. */
  chunkSize?: number;
  /** How long a partition rests after handle() threw before the chunk is tried again. */
  failurePauseMs?: number;
  partitionsConsumedConcurrently?: number;
  sessionTimeoutMs?: number;
}

/**
 * A partition's batches in hand. kafkajs fetches the next batches only when every partition's batch
 * handler has returned, and the fetch and its decoding then run while no close does (both measured:
 * docs/timeouts.md, "Fetching while closing"). So the handler returns as soon as its batch is
 * accepted: the batch is handled here, in order behind the partition's earlier ones, while kafkajs
 * fetches the next; at most one more batch per partition waits behind the one being handled.
 */
interface Lane {
  /** Settles once the lane's latest accepted batch was gone through (its last chunk started, or a pause or failure found). */
  tail: Promise<void>;
  /** The latest chunk's outcome once committed: false after a failure, and nothing later is committed. */
  last: Promise<boolean>;
  /** The epoch `last` belongs to. */
  lastEpoch: number;
  /** Bumped by every pause and rebalance: batches accepted before it lie beyond the rewound position and are dropped. */
  epoch: number;
  /** Paused (waiting for a due time, resting after a failure): batches still delivered are dropped. */
  paused: boolean;
}

/** A consumer that handles each message of a topic only once its due time has passed. */
export class DelayedTopicWorker {
  private readonly o: DelayedTopicWorkerOptions;
  private readonly clock: Clock;
  private consumer: KafkaConsumer | undefined;
  private readonly timers = new Map<string, { timer: NodeJS.Timeout; topic: string; partition: number; until: number }>();
  private readonly lanes = new Map<string, Lane>();
  /** Group joins seen (1 after start); a test reads it to prove waiting causes no rebalance. */
  joins = 0;
  private stopped = false;
  /** Counters for benchmarks: batches delivered, handle() calls, messages handled, ms inside handle(), pauses. */
  readonly stats = { batches: 0, chunks: 0, messages: 0, handleMs: 0, pauses: 0 };

  constructor(o: DelayedTopicWorkerOptions) {
    this.o = o;
    this.clock = o.clock ?? systemClock;
  }

  async start(): Promise<void> {
    const consumer = this.o.kafka.consumer({
      groupId: this.o.groupId,
      topics: [this.o.topic],
      // Partitions of a burst close in parallel (each chunk is one short transaction); the spec's default is 6 partitions.
      partitionsConsumedConcurrently: this.o.partitionsConsumedConcurrently ?? 6,
      // The handler never blocks, so heartbeats are always on time; a short session lets a
      // replacement take over a crashed closer's partitions within seconds, not Kafka's default 30 s.
      sessionTimeoutMs: this.o.sessionTimeoutMs ?? 10_000,
      maxWaitMs: 50,
      maxBytesPerPartition: DELAYED_FETCH_BYTES,
    });
    this.consumer = consumer;
    consumer.onRebalance(() => {
      this.joins++;
      // Pauses survive a rebalance inside kafkajs but our timers belong to the old assignment: drop
      // them and resume; the partitions restart from committed offsets and re-pause where needed.
      for (const [key, t] of this.timers) {
        clearTimeout(t.timer);
        this.timers.delete(key);
        consumer.resume(t.topic, t.partition);
      }
      // Batches in hand were fetched for the old assignment: dropped (their chunks in flight finish,
      // but are not committed: a new owner may have committed further already).
      for (const lane of this.lanes.values()) {
        lane.epoch++;
        lane.paused = false;
      }
    });
    await consumer.start((batch, ctx) => this.onBatch(batch, ctx));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t.timer);
    this.timers.clear();
    // The chunks in flight finish and commit while the consumer is still in the group; paused, it
    // does not fetch again meanwhile (each batch would be dropped and fetched again at once).
    for (const a of this.consumer?.assignments() ?? []) this.consumer?.pause(a.topic, a.partition);
    await this.drained();
    await this.consumer?.stop();
  }

  /** Settles once every batch accepted so far was handled and its chunks committed (or given up). */
  async drained(): Promise<void> {
    for (const lane of this.lanes.values()) {
      await lane.tail;
      await lane.last;
    }
  }

  /** Partitions waiting for a due time (or a failure pause), with the epoch ms they resume at. */
  waiting(): { topic: string; partition: number; until: number }[] {
    return [...this.timers.values()].map(({ topic, partition, until }) => ({ topic, partition, until }));
  }

  private lane(batch: Batch): Lane {
    const key = `${batch.topic}:${batch.partition}`;
    let lane = this.lanes.get(key);
    if (!lane) this.lanes.set(key, (lane = { tail: Promise.resolve(), last: Promise.resolve(true), lastEpoch: 0, epoch: 0, paused: false }));
    return lane;
  }

  private pauseUntil(batch: Batch, ctx: BatchContext, lane: Lane, offset: string, until: number): void {
    ctx.pauseAt(offset);
    lane.epoch++;
    lane.paused = true;
    this.stats.pauses++;
    // A batch still running while stop() disconnects must not leave a timer (up to an hour) behind:
    // it kept a stopped closer's process alive after SIGTERM.
    if (this.stopped) return;
    const key = `${batch.topic}:${batch.partition}`;
    const old = this.timers.get(key);
    if (old) clearTimeout(old.timer);
    // setTimeout may fire a millisecond early by the wall clock; the resumed batch re-checks and
    // re-pauses. Long waits are cut into hours: Node fires a timeout above 2^31-1 ms at once.
    const timer = setTimeout(() => {
      this.timers.delete(key);
      lane.paused = false;
      this.consumer?.resume(batch.topic, batch.partition);
    }, Math.min(MAX_TIMER_MS, Math.max(0, until - this.clock.now())));
    // The consumer keeps the process alive while it runs; a pause timer alone must not.
    timer.unref();
    this.timers.set(key, { timer, topic: batch.topic, partition: batch.partition, until });
  }

  /** kafkajs's batch handler: accepts the batch into its partition's lane and returns (see Lane). */
  private async onBatch(batch: Batch, ctx: BatchContext): Promise<void> {
    this.stats.batches++;
    const lane = this.lane(batch);
    const last = batch.messages[batch.messages.length - 1];
    if (!last || this.stopped || lane.paused || !ctx.isActive()) return;
    // The fetch position moves past this batch now; nothing is committed before it is handled.
    ctx.advance(nextOffset(last));
    const epoch = lane.epoch;
    const joins = this.joins;
    const before = lane.tail;
    lane.tail = before.then(() => this.handleBatch(batch, ctx, lane, epoch, joins));
    // This batch waits behind the one being handled; holding this call holds kafkajs's next fetch.
    await before;
  }

  /** Handles a batch in chunks; never throws (a failed chunk rests the partition). */
  private async handleBatch(batch: Batch, ctx: BatchContext, lane: Lane, epoch: number, joins: number): Promise<void> {
    const chunkSize = this.o.chunkSize ?? 500;
    const live = () => lane.epoch === epoch && !this.stopped && ctx.isActive();
    if (!live()) return;
    // Two chunks of a partition in flight: the next chunk is handled while the previous one finishes
    // (its Redis releases, its offset commit), across batches too. Offsets are still committed in
    // order, each only after its own chunk and every chunk before it were handled; after a failure
    // nothing later is committed. A chunk left from before a pause is waited for, not built upon.
    if (lane.lastEpoch !== epoch) {
      await lane.last;
      lane.last = Promise.resolve(true);
      lane.lastEpoch = epoch;
    }
    let previous = lane.last;
    let next = 0;
    try {
      while (next < batch.messages.length && live()) {
        const { ready: chunk, wait } = splitDue(batch.messages, this.clock.now(), this.o.dueOf, chunkSize, next);
        if (chunk.length === 0) {
          if ((await previous) && wait && live()) this.pauseUntil(batch, ctx, lane, wait.offset, wait.dueAt);
          return;
        }
        const handled = this.handleChunk(chunk);
        if (!(await previous)) {
          // The previous chunk paused the partition at its own first offset: this one is read again.
          await handled;
          return;
        }
        previous = handled.then((ok) => (ok ? this.commitChunk(batch, ctx, chunk, joins) : this.restAfterFailure(batch, ctx, lane, chunk)));
        lane.last = previous;
        next += chunk.length;
      }
    } catch (err) {
      // Not expected (the steps above catch their own errors); the batch is read again after the rest.
      this.o.logger.error({ err: String(err), topic: batch.topic, partition: batch.partition }, 'batch handling failed');
      this.pauseUntil(batch, ctx, lane, (batch.messages[next] as ConsumedMessage).offset, this.clock.now() + (this.o.failurePauseMs ?? 1000));
    }
  }

  /** Handles one chunk; false when it failed (logged), never throws. */
  private async handleChunk(chunk: ConsumedMessage[]): Promise<boolean> {
    const t0 = performance.now();
    try {
      await this.o.handle(chunk);
      this.stats.chunks++;
      this.stats.messages += chunk.length;
      this.stats.handleMs += performance.now() - t0;
      return true;
    } catch (err) {
      this.o.logger.error({ err: String(err), topic: (chunk[0] as ConsumedMessage).topic, partition: (chunk[0] as ConsumedMessage).partition }, 'could not handle messages; pausing the partition');
      return false;
    }
  }

  /** Never throw or sleep in the batch handler: rest the partition and come back to the same chunk. */
  private restAfterFailure(batch: Batch, ctx: BatchContext, lane: Lane, chunk: ConsumedMessage[]): boolean {
    this.pauseUntil(batch, ctx, lane, (chunk[0] as ConsumedMessage).offset, this.clock.now() + (this.o.failurePauseMs ?? 1000));
    return false;
  }

  private async commitChunk(batch: Batch, ctx: BatchContext, chunk: ConsumedMessage[], joins: number): Promise<boolean> {
    // Handled under an earlier assignment: the partition's new owner may have committed further.
    if (joins !== this.joins) return false;
    try {
      await ctx.commitHandled(nextOffset(chunk[chunk.length - 1] as ConsumedMessage));
      return true;
    } catch (err) {
      // Usually a rebalance: the new owner redelivers from the last commit and the closes are idempotent.
      this.o.logger.warn({ err: String(err), topic: batch.topic, partition: batch.partition }, 'offset commit failed');
      return false;
    }
  }
}

export interface TimeoutCloserOptions {
  kafka: KafkaGateway;
  producer: KafkaProducer;
  closer: OrderCloser;
  names: SaleNames;
  bucket: string;
  logger: Logger;
  metrics?: DataPlaneMetrics;
  clock?: Clock;
  /** Backoff base of the first retry (then doubled per attempt). */
  retryBaseMs?: number;
  /**
   * The bucket's delay. A timeout message due more than this (plus DUE_SKEW_MS) after now cannot
   * come from a writer of this bucket (poison: a clock far ahead, a forged message); it would hold
   * the head of its partition until then, so it goes to the dead-letter topic at once. The order
   * row stays UNPAID with its due time and the compensation scan closes it when due. Unset: no bound.
   */
  delayMs?: number;
  chunkSize?: number;
  partitionsConsumedConcurrently?: number;
  sessionTimeoutMs?: number;
}

type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

/**
 * Parses a message once: the due-time split and the handler both need it. The result rides on the
 * message object under the parser's own symbol; a WeakMap keyed by message did the same at ~0.5 µs
 * per message more on the closer's thread in a burst (its lookups, and its entries' cost in every
 * garbage collection; CPU profile, 2026-12-07).
 */
function parser<T>(parse: (raw: Buffer | null) => T): (m: ConsumedMessage) => Parsed<T> {
  const slot = Symbol('parsed');
  return (m) => {
    const carrier = m as ConsumedMessage & { [slot]?: Parsed<T> };
    let p = carrier[slot];
    if (!p) {
      try {
        p = { ok: true, value: parse(m.value) };
      } catch (err) {
        p = { ok: false, reason: (err as Error).message };
      }
      carrier[slot] = p;
    }
    return p;
  };
}

/** What the closer and the retry worker share: recording outcomes, producing retries and dead letters. */
class CloseHandling {
  private readonly o: TimeoutCloserOptions;
  private readonly clock: Clock;

  constructor(o: TimeoutCloserOptions) {
    this.o = o;
    this.clock = o.clock ?? systemClock;
  }

  get saleKey() {
    return this.o.names.key;
  }

  record(result: CloseResult, bucketOf: (orderId: string) => string): void {
    const m = this.o.metrics;
    if (!m) return;
    // Counted per (bucket, outcome) and observed through a bucket's child: prom-client hashes the
    // labels on every call that passes them (~0.4 µs per close in a burst, CPU profile 2026-12-07).
    const counts = new Map<string, { bucket: string; outcome: CloseOutcome; n: number }>();
    for (const [orderId, outcome] of result.outcomes) {
      const bucket = bucketOf(orderId);
      const key = `${bucket}\n${outcome}`;
      const c = counts.get(key);
      if (c) c.n++;
      else counts.set(key, { bucket, outcome, n: 1 });
    }
    for (const c of counts.values()) m.closes.inc({ flashsale: this.saleKey, bucket: c.bucket, outcome: c.outcome }, c.n);
    let bucket: string | undefined;
    let delays: ReturnType<typeof m.closeDelay.labels> | undefined;
    for (const c of result.closed) {
      const b = bucketOf(c.orderId);
      if (b !== bucket || !delays) {
        bucket = b;
        delays = m.closeDelay.labels({ flashsale: this.saleKey, bucket: b });
      }
      delays.observe(Math.max(0, c.closedAt - c.dueAt) / 1000);
    }
  }

  retryMessage(t: TimeoutMessage, attempt: number, error: string): OutgoingMessage {
    const now = this.clock.now();
    const { v: _v, ...rest } = t;
    const msg: RetryMessage = { v: 1, ...rest, attempt, notBefore: now + retryBackoffMs(attempt, this.o.retryBaseMs ?? 1000), error };
    return { key: t.orderId, value: JSON.stringify(msg) };
  }

  deadLetterMessage(source: DeadLetter['source'], reason: string, m: ConsumedMessage, metricReason: string): OutgoingMessage {
    this.o.metrics?.deadLetters.inc({ flashsale: this.saleKey, source, reason: metricReason });
    const letter = deadLetter(source, reason, m, this.clock.now());
    return { key: letter.key, value: JSON.stringify(letter) };
  }

  async send(retries: OutgoingMessage[], deadLetters: OutgoingMessage[]): Promise<void> {
    if (retries.length === 0 && deadLetters.length === 0) return;
    const n = this.o.names;
    await this.o.producer.send([
      { topic: n.topics.retry, messages: retries },
      { topic: n.topics.deadLetter, messages: deadLetters },
    ]);
    if (retries.length > 0) this.o.metrics?.closeRetries.inc({ flashsale: this.saleKey }, retries.length);
  }
}

/** What the closer and the retry worker configure alike on their DelayedTopicWorker. */
function consumerSettings(o: Omit<TimeoutCloserOptions, 'bucket'>) {
  return { kafka: o.kafka, clock: o.clock, chunkSize: o.chunkSize, partitionsConsumedConcurrently: o.partitionsConsumedConcurrently, sessionTimeoutMs: o.sessionTimeoutMs };
}

/** Closes the orders of one bucket of one sale as their timeout messages fall due. */
export class TimeoutCloser {
  readonly worker: DelayedTopicWorker;
  private readonly handling: CloseHandling;
  private readonly o: TimeoutCloserOptions;

  constructor(o: TimeoutCloserOptions) {
    this.o = o;
    this.handling = new CloseHandling(o);
    const parse = parser(parseTimeoutMessage);
    const clock = o.clock ?? systemClock;
    const horizon = o.delayMs === undefined ? Infinity : o.delayMs + DUE_SKEW_MS;
    const beyond = (t: TimeoutMessage, now: number) => t.dueAt > now + horizon;
    this.worker = new DelayedTopicWorker({
      ...consumerSettings(o),
      groupId: o.names.groups.timeoutCloser(o.bucket),
      topic: o.names.topics.delay(o.bucket),
      logger: o.logger.child({ component: 'timeout-closer', bucket: o.bucket }),
      dueOf: (m) => {
        const p = parse(m);
        // null: handle now (poison goes to the dead-letter topic instead of holding the partition).
        return p.ok && !beyond(p.value, clock.now()) ? p.value.dueAt : null;
      },
      handle: async (messages) => {
        const valid: TimeoutMessage[] = [];
        const dead: OutgoingMessage[] = [];
        const now = clock.now();
        for (const m of messages) {
          const p = parse(m);
          if (!p.ok) dead.push(this.handling.deadLetterMessage('timeouts', `malformed timeout message: ${p.reason}`, m, 'malformed'));
          else if (beyond(p.value, now)) {
            const reason = `timeout message due ${new Date(p.value.dueAt).toISOString()}, more than the bucket's delay (${o.delayMs} ms) plus ${DUE_SKEW_MS} ms from now: poison; the compensation scan closes the order when it is due`;
            dead.push(this.handling.deadLetterMessage('timeouts', reason, m, 'due_beyond_delay'));
          } else valid.push(p.value);
        }
        const retries: OutgoingMessage[] = [];
        if (valid.length > 0) {
          try {
            const result = await o.closer.close(valid, 'closer');
            this.handling.record(result, () => o.bucket);
          } catch (err) {
            const error = String((err as Error).message ?? err);
            o.logger.warn({ err: error, orders: valid.length, bucket: o.bucket }, 'close failed; sending to the retry topic');
            o.metrics?.closes.inc({ flashsale: o.names.key, bucket: o.bucket, outcome: 'failed' }, valid.length);
            for (const t of valid) retries.push(this.handling.retryMessage(t, 1, error));
          }
        }
        await this.handling.send(retries, dead);
      },
    });
  }

  start(): Promise<void> {
    return this.worker.start();
  }

  stop(): Promise<void> {
    return this.worker.stop();
  }
}

/** Retries failed closes of a sale (every bucket) from its retry topic, honouring notBefore. */
export class RetryWorker {
  readonly worker: DelayedTopicWorker;
  private readonly handling: CloseHandling;

  constructor(o: Omit<TimeoutCloserOptions, 'bucket'>) {
    const full = { ...o, bucket: '' };
    this.handling = new CloseHandling(full);
    const parse = parser(parseRetryMessage);
    const clock = o.clock ?? systemClock;
    // A retry waits at most the capped backoff (retryBackoffMs); a later notBefore is poison.
    const beyond = (r: RetryMessage, now: number) => r.notBefore > now + 60_000 + DUE_SKEW_MS;
    this.worker = new DelayedTopicWorker({
      ...consumerSettings(o),
      groupId: o.names.groups.retry,
      topic: o.names.topics.retry,
      logger: o.logger.child({ component: 'close-retry' }),
      dueOf: (m) => {
        const p = parse(m);
        return p.ok && !beyond(p.value, clock.now()) ? p.value.notBefore : null;
      },
      handle: async (messages) => {
        const valid: { msg: RetryMessage; raw: ConsumedMessage }[] = [];
        const dead: OutgoingMessage[] = [];
        const now = clock.now();
        for (const m of messages) {
          const p = parse(m);
          if (!p.ok) dead.push(this.handling.deadLetterMessage('retry', `malformed retry message: ${p.reason}`, m, 'malformed'));
          else if (beyond(p.value, now)) {
            dead.push(this.handling.deadLetterMessage('retry', `retry message not before ${new Date(p.value.notBefore).toISOString()}, beyond the longest backoff: poison; the compensation scan closes the order when it is due`, m, 'due_beyond_delay'));
          } else valid.push({ msg: p.value, raw: m });
        }
        const retries: OutgoingMessage[] = [];
        if (valid.length > 0) {
          const bucketOf = new Map(valid.map((v) => [v.msg.orderId, v.msg.bucket]));
          try {
            const result = await o.closer.close(valid.map((v) => v.msg), 'closer');
            this.handling.record(result, (id) => bucketOf.get(id) ?? '');
          } catch (err) {
            const error = String((err as Error).message ?? err);
            o.logger.warn({ err: error, orders: valid.length }, 'retried close failed');
            for (const { msg, raw } of valid) {
              o.metrics?.closes.inc({ flashsale: o.names.key, bucket: msg.bucket, outcome: 'failed' });
              // msg.attempt retries have now been made (the first failure published attempt 1).
              if (msg.attempt >= MAX_RETRIES) {
                dead.push(this.handling.deadLetterMessage('retry', `close failed after ${msg.attempt} retries: ${error}`, raw, 'retries_exhausted'));
              } else {
                const { attempt: _a, notBefore: _n, error: _e, ...t } = msg;
                retries.push(this.handling.retryMessage(t, msg.attempt + 1, error));
              }
            }
          }
        }
        await this.handling.send(retries, dead);
      },
    });
  }

  start(): Promise<void> {
    return this.worker.start();
  }

  stop(): Promise<void> {
    return this.worker.stop();
  }
}
