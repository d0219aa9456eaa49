// The one gateway to Kafka. Business code sees only the interfaces below; kafkajs (pinned at 2.2.4,
// in maintenance mode) stays inside this file so the client can be replaced without touching callers.
import { createRequire } from 'node:module';
// Before kafkajs: it replaces a module of kafkajs's producer before kafkajs loads (kafkajs-produce.ts).
import { createKeyPartitioner, installProduceEncoder, KAFKAJS_2_2_4 } from './kafkajs-produce.ts';
import kafkajs from 'kafkajs';
import type { Consumer as KjsConsumer, EachBatchPayload, Kafka as KjsKafka, Producer as KjsProducer } from 'kafkajs';
import type { Logger } from '../log.ts';
// The benchmark's parts' floor checks that its kafkajs clients group messages as the pipeline's do.
export { produceGroupingInstalled } from './kafkajs-produce.ts';

const { Kafka, logLevel: KjsLogLevel, CompressionTypes, Partitioners, ConfigResourceTypes } = kafkajs;

/** What the idle-loop fix below touches of kafkajs's per-connection request queue. */
export interface KjsRequestQueue {
  pending: unknown[];
  throttledUntil: number;
  throttleCheckTimeoutId: NodeJS.Timeout | null;
  checkPendingRequests(): void;
  scheduleCheckPendingRequests(): void;
}

/**
 * kafkajs 2.2.4 re-arms a timer for every connection's request queue after each check, even with
 * nothing waiting, at a negative delay (Node runs it after 1 ms and warns TimeoutNegativeWarning):
 * each broker connection of every process wakes its event loop about a thousand times a second
 * (tulios/kafkajs#1556, #1604, #1704, #1751; the fixes are unmerged). Measured here: an idle order
 * writer woke 1,570 times a second and used 7 % of a core. Replaced by the behaviour those fixes
 * propose: a check is scheduled only while requests wait (in-flight limit or client-side
 * throttling) or a throttle is to end; a fulfilled or timed-out request and every push check the
 * queue anyway. Applied to kafkajs 2.2.4 only (the pinned version; test/kafkajs-request-queue.test.ts
 * checks that the fix is in effect).
 */
const requireKafkajs = createRequire(import.meta.url);
export const kafkajsRequestQueue: { prototype: KjsRequestQueue } = requireKafkajs('kafkajs/src/network/requestQueue/index.js');
const CHECK_PENDING_REQUESTS_MS = 10; // kafkajs's CHECK_PENDING_REQUESTS_INTERVAL
if (KAFKAJS_2_2_4) {
  kafkajsRequestQueue.prototype.scheduleCheckPendingRequests = function (this: KjsRequestQueue) {
    if (this.throttleCheckTimeoutId) return;
    const untilUnthrottled = this.throttledUntil - Date.now();
    let delay: number;
    if (this.pending.length > 0) delay = untilUnthrottled > 0 ? untilUnthrottled : CHECK_PENDING_REQUESTS_MS;
    else if (untilUnthrottled > 0) delay = untilUnthrottled;
    else return;
    this.throttleCheckTimeoutId = setTimeout(() => {
      this.throttleCheckTimeoutId = null;
      this.checkPendingRequests();
    }, delay);
  };
  // kafkajs's record encoding allocates per varint and per record; same bytes, one buffer (kafkajs-produce.ts).
  installProduceEncoder();
  installBusyFetch();
}

/** Fetch settings of a consumer while it is busy (ConsumerOptions.busyFetch). */
export interface BusyFetch {
  /** The broker answers once this many bytes are there… */
  minBytes: number;
  /** …or after this long. */
  maxWaitMs: number;
}

/** What the busy fetch below touches of kafkajs's ConsumerGroup (one per consumer.run). */
interface KjsConsumerGroup {
  groupId: string;
  minBytes: number;
  maxWaitTime: number;
  fetch(nodeId: string): Promise<{ messages: { value: Buffer | null }[] }[]>;
}

/** busyFetch per group id (the consumers of one group in a process share their settings). */
const busyFetches = new Map<string, BusyFetch>();
/** Per consumer group instance: its configured (idle) settings and whether its last fetch brought a busy share. */
const fetchStates = new WeakMap<KjsConsumerGroup, { idle: { minBytes: number; maxWaitTime: number }; busy: boolean }>();
/** Per group id with busyFetch: the settings of its latest fetches, oldest first (at most 64). */
const recentFetches = new Map<string, { minBytes: number; maxWaitMs: number }[]>();

/**
 * kafkajs asks every fetch with the same minBytes and maxWaitTime. Under load a consumer whose fetch
 * is answered as soon as one message is there handles many small batches, and each batch costs the
 * order writer a fixed set of round trips (MySQL, Redis, a produce, a commit; about 2.7 ms of CPU
 * across the processes, docs/order-path.md). With busyFetch, a fetch that follows one that brought
 * at least a quarter of busyFetch.minBytes asks the broker to wait for busyFetch.minBytes or its
 * maxWaitMs; any other fetch is asked as configured, so an idle consumer polls no more often than
 * before (a 25-ms wait for every poll cost an idle consumer 2.3 % of a core more, and the broker as
 * much). kafkajs reads both settings from its ConsumerGroup at each fetch, so they are set there.
 */
function installBusyFetch(): void {
  const proto = (requireKafkajs('kafkajs/src/consumer/consumerGroup.js') as { prototype: KjsConsumerGroup }).prototype;
  const fetch = proto.fetch;
  proto.fetch = async function (this: KjsConsumerGroup, nodeId: string) {
    const busy = busyFetches.get(this.groupId);
    if (!busy) return fetch.call(this, nodeId);
    let state = fetchStates.get(this);
    if (!state) fetchStates.set(this, (state = { idle: { minBytes: this.minBytes, maxWaitTime: this.maxWaitTime }, busy: false }));
    this.minBytes = state.busy ? busy.minBytes : state.idle.minBytes;
    this.maxWaitTime = state.busy ? busy.maxWaitMs : state.idle.maxWaitTime;
    let recent = recentFetches.get(this.groupId);
    if (!recent) recentFetches.set(this.groupId, (recent = []));
    if (recent.push({ minBytes: this.minBytes, maxWaitMs: this.maxWaitTime }) > 64) recent.shift();
    const batches = await fetch.call(this, nodeId);
    let bytes = 0;
    for (const b of batches) for (const m of b.messages) bytes += m.value?.length ?? 0;
    state.busy = bytes * 4 >= busy.minBytes;
    return batches;
  };
}

/** The settings the latest fetches (at most 64) of a group with busyFetch were asked with, oldest first (tests, diagnostics). */
export function recentFetchSettings(groupId: string): { minBytes: number; maxWaitMs: number }[] {
  return [...(recentFetches.get(groupId) ?? [])];
}

/** kafkajs's DefaultPartitioner with its murmur2 in 32-bit arithmetic (kafkajs-produce.ts); kafkajs's own for keyless messages. */
const keyPartitioner = createKeyPartitioner(Partitioners.DefaultPartitioner);

export interface OutgoingMessage {
  key?: string | null;
  value: string | Buffer;
  headers?: Record<string, string>;
  /** Message timestamp (epoch ms); defaults to the send time. */
  timestamp?: number;
}

export interface ConsumedMessage {
  topic: string;
  partition: number;
  offset: string;
  key: string | null;
  value: Buffer | null;
  headers: Record<string, string>;
  /** Broker/producer timestamp in ms; informative only, never used for due times. */
  timestamp: number;
}

export interface TopicSpec {
  topic: string;
  partitions: number;
  replicationFactor: number;
  configs?: Record<string, string>;
}

export interface TopicDescription {
  topic: string;
  partitions: number;
}

export interface PartitionOffsets {
  partition: number;
  /** High watermark: offset of the next message to be written. */
  high: string;
  low: string;
}

export interface GroupOffset {
  topic: string;
  partition: number;
  /** Next offset the group will read, or null when the group never committed on that partition. */
  offset: string | null;
}

export interface KafkaAdmin {
  /** Creates the topics that do not exist yet; existing topics are left as they are. */
  createTopics(topics: TopicSpec[]): Promise<void>;
  /** Raises a topic's partition count to `count` (Kafka cannot lower it). */
  createPartitions(topic: string, count: number): Promise<void>;
  /** Descriptions of the named topics that exist; missing topics are omitted. */
  describeTopics(topics: string[]): Promise<TopicDescription[]>;
  listTopics(): Promise<string[]>;
  deleteTopics(topics: string[]): Promise<void>;
  listGroups(): Promise<string[]>;
  groupOffsets(groupId: string, topics: string[]): Promise<GroupOffset[]>;
  /** groupOffsets of many groups, in input order: one topic listing for all, at most 8 requests in flight. */
  groupsOffsets(requests: { groupId: string; topics: string[] }[]): Promise<GroupOffset[][]>;
  topicOffsets(topic: string): Promise<PartitionOffsets[]>;
  /**
   * Watermarks of many topics: one topic listing and two ListOffsets requests per broker for all of
   * them (topicOffsets is three requests per topic). Topics that do not exist are absent.
   */
  topicsOffsets(topics: string[]): Promise<Map<string, PartitionOffsets[]>>;
  /**
   * Per partition, the first offset whose message timestamp is >= timestampMs (Kafka's time index);
   * the high watermark when every message is older.
   */
  topicOffsetsAt(topic: string, timestampMs: number): Promise<{ partition: number; offset: string }[]>;
}

export interface KafkaProducer {
  /**
   * Sends with acks=all through the idempotent producer; resolves once every message is acknowledged.
   * Any number of messages: they go in as many produce requests as the topics' max.message.bytes
   * require (order kept per topic). A message that alone exceeds its topic's limit is refused with
   * MessageTooLargeError before anything is sent (callers bound what they build, see deadLetter).
   */
  send(batches: { topic: string; messages: OutgoingMessage[] }[]): Promise<void>;
  disconnect(): Promise<void>;
}

export interface Batch {
  topic: string;
  partition: number;
  highWatermark: string;
  messages: ConsumedMessage[];
}

export interface BatchContext {
  /** Marks everything before `nextOffset` handled and commits it (the offset of the next message to read). */
  commit(nextOffset: string): Promise<void>;
  /**
   * Moves the partition's fetch position to `nextOffset` without committing anything, so kafkajs
   * fetches the next batch while this one is still being handled (by a handler that returns first).
   */
  advance(nextOffset: string): void;
  /** Commits `nextOffset` without moving the fetch position (for a batch handled after advance()). */
  commitHandled(nextOffset: string): Promise<void>;
  /** Pauses this batch's partition and rewinds it to `offset`, so that message comes again after resume. */
  pauseAt(offset: string): void;
  heartbeat(): Promise<void>;
  /** False once the consumer is stopping or the partition was revoked/paused: stop handling the batch. */
  isActive(): boolean;
}

export type BatchHandler = (batch: Batch, ctx: BatchContext) => Promise<void>;

export interface ConsumerOptions {
  groupId: string;
  topics: string[];
  /** A group without committed offsets starts here. Default: earliest, so nothing produced before the first join is skipped. */
  fromBeginning?: boolean;
  sessionTimeoutMs?: number;
  maxBytesPerPartition?: number;
  maxWaitMs?: number;
  /** While busy (the last fetch brought a quarter of its minBytes or more), fetch with these settings instead (see installBusyFetch). */
  busyFetch?: BusyFetch;
  partitionsConsumedConcurrently?: number;
}

export interface KafkaConsumer {
  start(handler: BatchHandler): Promise<void>;
  pause(topic: string, partition: number): void;
  resume(topic: string, partition: number): void;
  seek(topic: string, partition: number, offset: string): void;
  /** Partitions currently assigned to this member. */
  assignments(): { topic: string; partition: number }[];
  onRebalance(listener: () => void): void;
  stop(): Promise<void>;
}

export interface KafkaGateway {
  /**
   * Resolves true once a broker answers, trying again with backoff (1 s doubling to 10 s) while
   * none does; false as soon as `stop` settles. A consumer worker waits here, alive and not ready,
   * instead of failing its start when Kafka is not up yet.
   */
  waitForBrokers(stop: Promise<unknown>): Promise<boolean>;
  admin(): Promise<KafkaAdmin>;
  producer(): Promise<KafkaProducer>;
  consumer(options: ConsumerOptions): KafkaConsumer;
  close(): Promise<void>;
}

export interface KafkaGatewayOptions {
  brokers: string[];
  clientId: string;
  logger: Logger;
  /** Connection and request timeouts are kept short so a dead broker is reported quickly. */
  connectionTimeoutMs?: number;
  requestTimeoutMs?: number;
  retries?: number;
  /** Builds the kafkajs client (tests inject a fake one to produce broker answers on demand). */
  client?: (config: ConstructorParameters<typeof Kafka>[0]) => KjsKafka;
  /** Clock (epoch ms) for the deadline of the wait for new topics' leaders; tests inject one. */
  now?: () => number;
}

/** A message larger than its topic accepts: it can never be produced, retrying cannot help. */
export class MessageTooLargeError extends Error {
  override name = 'MessageTooLargeError';
  readonly topic: string;
  readonly bytes: number;
  readonly limit: number;
  constructor(topic: string, bytes: number, limit: number) {
    super(`a message of about ${bytes} bytes exceeds the ${limit}-byte budget of topic ${topic} (max.message.bytes minus a safety margin)`);
    this.topic = topic;
    this.bytes = bytes;
    this.limit = limit;
  }
}

/** Kafka's default message.max.bytes, used when the topic's limit cannot be read. */
export const DEFAULT_MAX_MESSAGE_BYTES = 1_048_588;

/** Bytes a message takes in a record batch, over-estimated (record header, varints, headers). */
export function recordBytes(m: OutgoingMessage): number {
  let n = 64 + (typeof m.value === 'string' ? Buffer.byteLength(m.value) : m.value.length);
  if (m.key) n += Buffer.byteLength(m.key);
  for (const [k, v] of Object.entries(m.headers ?? {})) n += 16 + Buffer.byteLength(k) + Buffer.byteLength(v);
  return n;
}

/**
 * What one produce request may carry for a topic whose max.message.bytes is `limit`. The broker
 * checks each partition's record batch against it; a request is budgeted as if all its messages of
 * a topic went to one partition, with a margin for the batch header and the estimate.
 */
export function requestBudget(limit: number): number {
  return Math.floor(limit * 0.9) - 1024;
}

/**
 * Splits batches into produce requests that each stay within every topic's budget, keeping the
 * order of each topic's messages. Throws MessageTooLargeError for a message that fits no request.
 */
export function splitForLimits(
  batches: { topic: string; messages: OutgoingMessage[] }[],
  budgetOf: (topic: string) => number,
): { topic: string; messages: OutgoingMessage[] }[][] {
  for (const b of batches) {
    const budget = budgetOf(b.topic);
    for (const m of b.messages) {
      const n = recordBytes(m);
      if (n > budget) throw new MessageTooLargeError(b.topic, n, budget);
    }
  }
  const requests: { topic: string; messages: OutgoingMessage[] }[][] = [];
  let current = new Map<string, { messages: OutgoingMessage[]; bytes: number }>();
  const flush = () => {
    if (current.size > 0) requests.push([...current].map(([topic, v]) => ({ topic, messages: v.messages })));
    current = new Map();
  };
  for (const b of batches) {
    const budget = budgetOf(b.topic);
    for (const m of b.messages) {
      const n = recordBytes(m);
      let slot = current.get(b.topic);
      if (slot && slot.bytes + n > budget) {
        flush();
        slot = undefined;
      }
      if (!slot) current.set(b.topic, (slot = { messages: [], bytes: 0 }));
      slot.messages.push(m);
      slot.bytes += n;
    }
  }
  flush();
  return requests;
}

function isTooLarge(err: unknown): boolean {
  return errorTypes(err).some((t) => t === 'MESSAGE_TOO_LARGE' || t === 'RECORD_LIST_TOO_LARGE');
}

/** Errors after which the broker refuses every later request of this idempotent producer id. */
const PRODUCER_STATE_LOST = ['OUT_OF_ORDER_SEQUENCE_NUMBER', 'UNKNOWN_PRODUCER_ID', 'INVALID_PRODUCER_EPOCH', 'DUPLICATE_SEQUENCE_NUMBER'];

function errorTypes(err: unknown): string[] {
  const out: string[] = [];
  for (let e = err as { type?: string; cause?: unknown; originalError?: unknown } | undefined, i = 0; e && i < 5; i++) {
    if (e.type) out.push(e.type);
    e = (e.originalError ?? e.cause) as typeof e;
  }
  return out;
}

/** What kafkajs's retrier gives up on at once (and its consumer then never restarts after). */
function stopsConsumer(err: unknown): boolean {
  const e = err as { retriable?: boolean; name?: string } | undefined;
  return e?.retriable === false || ['RangeError', 'ReferenceError', 'SyntaxError', 'TypeError'].includes(e?.name ?? '');
}

export function isProducerStateLost(err: unknown): boolean {
  return errorTypes(err).some((t) => PRODUCER_STATE_LOST.includes(t));
}

function headersOf(raw: Record<string, unknown> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw ?? {})) {
    if (v === undefined || v === null) continue;
    out[k] = Buffer.isBuffer(v) ? v.toString('utf8') : Array.isArray(v) ? String(v[0]) : String(v);
  }
  return out;
}

/** Marks the gateway's own "does not exist" answer, which is not kafkajs's UNKNOWN_TOPIC_OR_PARTITION. */
const MISSING_HERE = Symbol('missing-here');

/** kafkajs's UNKNOWN_TOPIC_OR_PARTITION, wrapped or not (retries exceeded, a refresh inside another request). */
function topicGone(err: unknown): boolean {
  for (let e = err as Record<PropertyKey, unknown> | undefined, i = 0; e && typeof e === 'object' && i < 5; i++, e = (e.cause ?? e.originalError) as typeof e) {
    if (e[MISSING_HERE]) return false;
    if (e.type === 'UNKNOWN_TOPIC_OR_PARTITION') return true;
  }
  return false;
}

/** Group-coordinator errors that pass once the coordinator has loaded or been found again. */
const COORDINATOR_MOVING = new Set(['NOT_COORDINATOR_FOR_GROUP', 'COORDINATOR_LOAD_IN_PROGRESS', 'COORDINATOR_NOT_AVAILABLE']);

/** What topicsOffsets uses of kafkajs 2.2.4's Cluster (src/cluster/index.js), which its admin does not expose. */
interface KjsCluster {
  addMultipleTargetTopics(topics: string[]): Promise<void>;
  refreshMetadataIfNecessary(): Promise<void>;
  findTopicPartitionMetadata(topic: string): { partitionId: number }[];
  fetchTopicsOffset(topics: { topic: string; fromBeginning: boolean; partitions: { partition: number }[] }[]): Promise<{ topic: string; partitions: { partition: number; offset: string }[] }[]>;
}

/**
 * Runs `make` (kafka.admin()) and returns what it made with the Cluster kafkajs created for it: the
 * client keeps its cluster factory under a private symbol, wrapped here for the synchronous call.
 * kafkajs's admin asks offsets one topic at a time (fetchTopicOffsets: two ListOffsets per topic);
 * its cluster asks for any number of topics in one request per broker. Undefined when the client is
 * not kafkajs 2.2.4 (a test double): callers then ask topic by topic.
 */
function withCluster<T>(kafka: object, make: () => T): { made: T; cluster: KjsCluster | undefined } {
  const key = KAFKAJS_2_2_4 ? Object.getOwnPropertySymbols(kafka).find((s) => s.description === 'private:Kafka:createCluster') : undefined;
  const k = kafka as Record<symbol, unknown>;
  const original = key === undefined ? undefined : k[key];
  if (key === undefined || typeof original !== 'function') return { made: make(), cluster: undefined };
  let cluster: KjsCluster | undefined;
  k[key] = (...args: unknown[]) => (cluster = (original as (...a: unknown[]) => KjsCluster)(...args));
  try {
    return { made: make(), cluster };
  } finally {
    k[key] = original;
  }
}

export function createKafkaGateway(options: KafkaGatewayOptions): KafkaGateway {
  const log = options.logger.child({ component: 'kafka' });
  const kafka: KjsKafka = (options.client ?? ((config) => new Kafka(config)))({
    clientId: options.clientId,
    brokers: options.brokers,
    connectionTimeout: options.connectionTimeoutMs ?? 3000,
    requestTimeout: options.requestTimeoutMs ?? 30000,
    retry: { retries: options.retries ?? 5, initialRetryTime: 200, maxRetryTime: 5000 },
    logLevel: KjsLogLevel.WARN,
    logCreator: () => ({ namespace, level, log: entry }) => {
      const { message, ...rest } = entry;
      let fn: 'error' | 'warn' | 'debug' = level <= KjsLogLevel.ERROR ? 'error' : level === KjsLogLevel.WARN ? 'warn' : 'debug';
      // Bounded retries are deliberate: a dead broker must surface as an error (503, retry topic)
      // rather than block a request for ever; idempotence still deduplicates within a session.
      if (message.startsWith('Limiting retries for the idempotent producer')) fn = 'debug';
      log[fn]({ namespace, ...rest }, message);
    },
  });

  let adminPromise: Promise<KafkaAdmin> | undefined;
  const closers = new Set<() => Promise<void>>();

  async function makeAdmin(): Promise<KafkaAdmin> {
    // The Cluster behind each kafkajs admin, for topicsOffsets (see withCluster).
    const clusters = new WeakMap<object, KjsCluster>();
    const newAdmin = () => {
      const { made, cluster } = withCluster(kafka, () => kafka.admin());
      if (cluster) clusters.set(made, cluster);
      return made;
    };
    let admin = newAdmin();
    await admin.connect();
    closers.add(() => admin.disconnect());
    // kafkajs's admin reads partition leaders from a metadata cache that it refreshes only every
    // 5 minutes or when it is asked about a topic it has never seen. A refresh that raced a topic's
    // creation caches the topic without usable partitions; every offsets question about it then
    // fails inside kafkajs with a TypeError ("Cannot destructure property 'partitions' of
    // 'low.pop(...)'"), for minutes: 500 sales created at once hit it dozens of times. Such a
    // question is asked again on a new admin (fresh metadata); renewals are at most one a second.
    let renewedAt = 0;
    let renewal: Promise<void> | undefined;
    const renew = (stale: typeof admin, why: string): Promise<void> => {
      if (admin !== stale) return renewal ?? Promise.resolve();
      if (renewal) return renewal;
      const wait = Math.max(0, renewedAt + 1000 - Date.now());
      renewal = (async () => {
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        const next = newAdmin();
        await next.connect();
        admin = next;
        renewedAt = Date.now();
        // At most one a second, and each one a sign of something outside (a deleted topic, a stale cache): worth a line.
        log.info({ clientId: options.clientId, why }, 'kafkajs admin renewed');
        // Questions still running on the old admin finish first.
        setTimeout(() => void stale.disconnect().catch(() => undefined), 30_000).unref();
      })().finally(() => {
        renewal = undefined;
      });
      return renewal;
    };
    // The TypeError has a second, passing cause: a topic new to this admin whose question joined a
    // metadata refresh already under way without it (kafkajs shares one refresh between callers).
    // Asked again on the same admin, the next refresh includes it. A fresh admin asks about every
    // topic anew, so renewing on the first TypeError fed itself: 20-30 renewals a minute at 500 idle
    // sales, each followed by a refresh per topic. Renewed only when the same admin fails twice.
    const freshOffsets = async <T>(ask: (a: typeof admin) => Promise<T>): Promise<T> => {
      await renewal;
      const used = admin;
      try {
        return await ask(used);
      } catch (err) {
        if (!(err instanceof TypeError)) throw err;
      }
      try {
        return await ask(used);
      } catch (err) {
        if (!(err instanceof TypeError)) throw err;
        await renew(used, 'stale metadata cache (TypeError twice)');
        return ask(admin);
      }
    };
    // Not an answer yet, poll again: the broker has not propagated the new topic, or kafkajs read
    // a partition-less cache entry (a TypeError, see renew above), or it gave up retrying one.
    const notYet = (err: unknown): boolean => {
      const type = (err as { type?: string } | undefined)?.type;
      return ['UNKNOWN_TOPIC_OR_PARTITION', 'LEADER_NOT_AVAILABLE', 'NOT_LEADER_FOR_PARTITION'].includes(type ?? '')
        || Boolean((err as Error | undefined)?.name?.includes('NumberOfRetriesExceeded'))
        || err instanceof TypeError;
    };
    // Until every partition of a caller's topics has a leader (a produce right after creation then
    // succeeds). With 500 sales created at once, each caller polling on its own (8 reconcile workers,
    // 8 loops, 4 offsets probes each) was much of the broker's work: one loop polls for every caller,
    // one metadata request for all topics being waited on, and each caller is answered when its own
    // topics are ready, or fails at its own deadline.
    interface LeaderWaiter {
      topics: string[];
      /** Topics not yet seen with leaders that answer. */
      left: Set<string>;
      /** The CreateTopics request that made them: its topics appear in the broker's metadata together. */
      batch: number;
      since: number;
      deadline: number;
      timeoutMs: number;
      resolve: () => void;
      reject: (err: unknown) => void;
    }
    const now = options.now ?? Date.now;
    const waiters = new Set<LeaderWaiter>();
    let polling = false;
    let pollDelay = 50;
    let hurry = false;
    let wake: (() => void) | undefined;
    // A batch whose topics are still unknown after this long is polled caller by caller, so one topic
    // that never appears (deleted meanwhile) cannot hold the other callers of its batch.
    const SPLIT_BATCH_AFTER_MS = 2000;
    const pollRound = async (pending: LeaderWaiter[]): Promise<void> => {
      const leadered = new Set<string>();
      const failed = new Map<string, unknown>();
      const ask = async (group: LeaderWaiter[]): Promise<boolean> => {
        const names = [...new Set(group.flatMap((w) => [...w.left]))];
        try {
          const md = await admin.fetchTopicMetadata({ topics: names });
          for (const t of md.topics) if (t.partitions.length > 0 && t.partitions.every((p) => p.leader >= 0)) leadered.add(t.name);
          return true;
        } catch (err) {
          if (!notYet(err)) for (const n of names) failed.set(n, err);
          return false;
        }
      };
      // kafkajs fails a whole metadata request for one topic the broker does not know yet: then each
      // group is asked on its own (a batch while it is young, a caller after that).
      if (!(await ask(pending))) {
        const groups = new Map<unknown, LeaderWaiter[]>();
        for (const w of pending) {
          const key = now() - w.since < SPLIT_BATCH_AFTER_MS ? `batch ${w.batch}` : w;
          groups.set(key, [...(groups.get(key) ?? []), w]);
        }
        if (groups.size > 1) {
          failed.clear();
          await Promise.all([...groups.values()].map(ask));
        }
      }
      // The leader in the metadata may not serve the partition yet: ask it for the offsets, once per topic.
      const ready = new Set<string>();
      await Promise.all(
        [...leadered].map(async (t) => {
          try {
            await freshOffsets((a) => a.fetchTopicOffsets(t));
            ready.add(t);
          } catch (err) {
            if (!notYet(err)) failed.set(t, err);
          }
        }),
      );
      for (const w of pending) {
        for (const t of ready) w.left.delete(t);
        const err = w.topics.map((t) => failed.get(t)).find((e) => e !== undefined);
        if (err !== undefined) w.reject(err);
        else if (w.left.size === 0) w.resolve();
        else if (now() > w.deadline) w.reject(new Error(`topics ${[...w.left].join(', ')} have no leader ${w.timeoutMs} ms after creation`));
        else continue;
        waiters.delete(w);
      }
    };
    const pollLeaders = async (): Promise<void> => {
      polling = true;
      try {
        while (waiters.size > 0) {
          // Polled every 250 ms at most: a new topic usually has its leaders within a few hundred ms,
          // and a wait rounded up to the next 1 s poll added most of a sale's topic step. New callers
          // are polled for at once (after the current tick, so one batch's callers share the poll).
          await new Promise<void>((r) => {
            const go = () => {
              clearTimeout(timer);
              wake = undefined;
              r();
            };
            const timer = setTimeout(go, hurry ? 0 : pollDelay);
            wake = go;
          });
          const delay = hurry ? 50 : pollDelay;
          hurry = false;
          const pending = [...waiters];
          try {
            await pollRound(pending);
          } catch (err) {
            // A bug here must not leave callers waiting for ever.
            for (const w of pending) {
              w.reject(err);
              waiters.delete(w);
            }
          }
          pollDelay = Math.min(250, delay * 2);
        }
      } finally {
        polling = false;
      }
    };
    const waitForLeaders = (topics: string[], batch: number, timeoutMs = 60_000): Promise<void> =>
      new Promise<void>((resolve, reject) => {
        const since = now();
        waiters.add({ topics, left: new Set(topics), batch, since, deadline: since + timeoutMs, timeoutMs, resolve, reject });
        hurry = true;
        wake?.();
        if (!polling) void pollLeaders();
      });
    // Listing the topics fetches the metadata of every topic of the cluster: with 500 sales (2,000
    // topics) and the lag collector asking about each topic and group every few seconds, one listing
    // per question was most of the operator's and the broker's work. Concurrent questions share one
    // listing; one started before this admin's last create or delete is not joined (it may not show it).
    let changes = 0;
    let listing: { changes: number; topics: Promise<Set<string>> } | undefined;
    const topicSet = (): Promise<Set<string>> => {
      if (listing && listing.changes === changes) return listing.topics;
      const current = {
        changes,
        topics: admin.listTopics().then((t) => new Set(t)),
      };
      current.topics
        .finally(() => {
          if (listing === current) listing = undefined;
        })
        .catch(() => undefined);
      listing = current;
      return current.topics;
    };
    const changed = () => {
      changes++;
    };
    const existing = async (topics: string[]) => {
      const all = await topicSet();
      return topics.filter((t) => all.has(t));
    };
    // kafkajs puts a topic asked about in the client's metadata target list while it retries; every
    // other metadata refresh of this admin (createTopics' included) then fails with
    // UNKNOWN_TOPIC_OR_PARTITION. The lag collector asks for offsets of topics the reconciler has not
    // created yet, so a missing topic is refused here, before kafkajs sees it.
    const mustExist = async (topic: string) => {
      if ((await existing([topic])).length === 0) {
        throw Object.assign(new Error(`topic ${topic} does not exist`), { type: 'UNKNOWN_TOPIC_OR_PARTITION', [MISSING_HERE]: true });
      }
    };
    // kafkajs keeps every topic this admin was ever asked about in its metadata target list and
    // asks for all of them in each metadata refresh (its own deletes take theirs out). When another
    // client deletes one of them (an operator replica, someone with kafka-topics.sh, a test), every
    // later refresh fails with UNKNOWN_TOPIC_OR_PARTITION, and with it every request of this admin,
    // other topics' included, for good (measured: offsets, creates and group offsets all failed).
    // Such a failure is answered by a new admin, whose list is empty, and the question asked once
    // more from the start (existence checks included); renewals are at most one a second.
    const recovering = async <T>(body: () => Promise<T>): Promise<T> => {
      const used = admin;
      try {
        return await body();
      } catch (err) {
        if (!topicGone(err)) throw err;
        changed();
        await renew(used, `UNKNOWN_TOPIC_OR_PARTITION: ${(err as Error).message}`);
        return body();
      }
    };
    // CreateTopics requests are coalesced: with 500 sales created at once, each reconcile worker sent
    // its own request for its sale's 4 topics. Calls that come while a request is in flight (or in the
    // same tick) go together in the next one. At most 200 topics and 4,000 partitions per request: the
    // KRaft controller commits one request's records as one batch and must answer within the request's
    // timeout (5 s), and a refused request should cost its callers a bounded retry, so a request stays
    // far below both while 200 topics (50 sales) is already a few requests for a 500-sale burst.
    const MAX_TOPICS_PER_CREATE = 200;
    const MAX_PARTITIONS_PER_CREATE = 4000;
    interface CreateCall {
      specs: TopicSpec[];
      /** With the id of the request that created the topics (see LeaderWaiter.batch). */
      resolve: (batch: number) => void;
      reject: (err: unknown) => void;
    }
    const createQueue: CreateCall[] = [];
    let creating = false;
    let createScheduled = false;
    let batches = 0;
    const requestCreate = async (specs: TopicSpec[]): Promise<void> => {
      try {
        await admin.createTopics({
          // Waited for below: kafkajs's own wait gives up with UNKNOWN_TOPIC_OR_PARTITION when a
          // busy KRaft broker takes a few seconds to propagate the new topics' metadata.
          waitForLeaders: false,
          topics: specs.map((t) => ({
            topic: t.topic,
            numPartitions: t.partitions,
            replicationFactor: t.replicationFactor,
            configEntries: Object.entries(t.configs ?? {}).map(([name, value]) => ({ name, value })),
          })),
        });
      } finally {
        changed();
      }
    };
    /**
     * The failed topics of a refused request, when the error names them: kafkajs rejects the whole
     * request with a KafkaJSAggregateError of one KafkaJSCreateTopicError (type, topic) per failed
     * topic, and the broker created every topic not listed. TOPIC_ALREADY_EXISTS is success: another
     * replica may have created the topic a moment ago. Undefined when the error names no topic.
     */
    const failedTopics = (err: unknown, asked: Set<string>): Map<string, unknown> | undefined => {
      const e = err as { name?: string; type?: string; errors?: unknown } | undefined;
      if (e?.type === 'TOPIC_ALREADY_EXISTS') return new Map();
      if (e?.name !== 'KafkaJSAggregateError' || !Array.isArray(e.errors) || e.errors.length === 0) return undefined;
      const errors = e.errors as { topic?: unknown; type?: string }[];
      if (!errors.every((x) => typeof x?.topic === 'string' && asked.has(x.topic))) return undefined;
      return new Map(errors.filter((x) => x.type !== 'TOPIC_ALREADY_EXISTS').map((x) => [x.topic as string, x]));
    };
    /** An error of the connection or the broker, not of any topic: asking again topic by topic cannot help. */
    const requestWide = (err: unknown): boolean => {
      const names = ['KafkaJSConnectionError', 'KafkaJSConnectionClosedError', 'KafkaJSRequestTimeoutError', 'KafkaJSBrokerNotFound', 'KafkaJSNoBrokerAvailableError', 'KafkaJSNumberOfRetriesExceeded'];
      // A protocol error outside the aggregate came from the metadata refresh or the controller lookup.
      for (let e = err as { name?: string; type?: string; cause?: unknown } | undefined, i = 0; e && i < 5; i++, e = e.cause as typeof e) {
        if (names.includes(e.name ?? '') || e.type) return true;
      }
      return false;
    };
    /** Settles each call from its own topics' fate; false when the error cannot be told apart by topic. */
    const settle = (calls: CreateCall[], batch: number, err: unknown): boolean => {
      const failed = failedTopics(err, new Set(calls.flatMap((c) => c.specs.map((s) => s.topic))));
      if (!failed) return false;
      for (const c of calls) {
        const mine = c.specs.flatMap((s) => (failed.has(s.topic) ? [failed.get(s.topic)] : []));
        if (mine.length === 0) c.resolve(batch);
        else if (mine.length === 1) c.reject(mine[0]);
        else {
          const message = `Topic creation errors: ${mine.map((m) => `${(m as { topic?: string }).topic}: ${(m as Error).message}`).join('; ')}`;
          c.reject(Object.assign(new Error(message), { name: 'KafkaJSAggregateError', errors: mine }));
        }
      }
      return true;
    };
    const sendCreate = async (calls: CreateCall[]): Promise<void> => {
      const batch = ++batches;
      const specs = new Map<string, TopicSpec>();
      for (const c of calls) for (const s of c.specs) if (!specs.has(s.topic)) specs.set(s.topic, s);
      try {
        await requestCreate([...specs.values()]);
        for (const c of calls) c.resolve(batch);
        return;
      } catch (err) {
        if (settle(calls, batch, err)) return;
        if (calls.length === 1 || requestWide(err)) {
          for (const c of calls) c.reject(err);
          return;
        }
        log.warn({ callers: calls.length, err: String(err) }, 'coalesced topic creation failed for no named topic; asking again caller by caller');
      }
      // Which topic the request failed for is unknown (a client-side check of one topic's settings
      // refuses the whole request): each caller's topics in a request of its own, as before coalescing.
      await Promise.all(
        calls.map(async (c) => {
          const own = ++batches;
          try {
            await requestCreate(c.specs);
            c.resolve(own);
          } catch (err) {
            if (!settle([c], own, err)) c.reject(err);
          }
        }),
      );
    };
    const flushCreates = async (): Promise<void> => {
      if (creating || createQueue.length === 0) return;
      creating = true;
      const calls: CreateCall[] = [];
      let topicCount = 0;
      let partitionCount = 0;
      for (let next = createQueue[0]; next; next = createQueue[0]) {
        const p = next.specs.reduce((n, s) => n + s.partitions, 0);
        // A single call above the bounds still goes (alone), as it did before coalescing.
        if (calls.length > 0 && (topicCount + next.specs.length > MAX_TOPICS_PER_CREATE || partitionCount + p > MAX_PARTITIONS_PER_CREATE)) break;
        calls.push(next);
        createQueue.shift();
        topicCount += next.specs.length;
        partitionCount += p;
      }
      try {
        await sendCreate(calls);
      } catch (err) {
        for (const c of calls) c.reject(err);
      } finally {
        creating = false;
        scheduleCreate();
      }
    };
    function scheduleCreate(): void {
      if (creating || createScheduled || createQueue.length === 0) return;
      createScheduled = true;
      // After the current tick: the callers that resolved from one shared topic listing come together.
      setImmediate(() => {
        createScheduled = false;
        void flushCreates();
      });
    }
    /** Creates the topics in the next coalesced request; rejects with this caller's own error. */
    const createCoalesced = (specs: TopicSpec[]): Promise<number> =>
      new Promise<number>((resolve, reject) => {
        createQueue.push({ specs, resolve, reject });
        scheduleCreate();
      });
    const groupOffsets = async (groupId: string, topics: string[], known?: Set<string>): Promise<GroupOffset[]> => {
      const present = known ? topics.filter((t) => known.has(t)) : await existing(topics);
      if (present.length === 0) return [];
      // kafkajs asks the group's coordinator once, without retrying: a broker that has just started
      // (or moved the coordinator) answers NOT_COORDINATOR_FOR_GROUP or COORDINATOR_LOAD_IN_PROGRESS
      // for a moment. Asked again, up to 5 times, 100 ms doubling between tries.
      let res;
      for (let attempt = 0; ; attempt++) {
        try {
          res = await admin.fetchOffsets({ groupId, topics: present });
          break;
        } catch (err) {
          if (attempt >= 4 || !COORDINATOR_MOVING.has((err as { type?: string } | undefined)?.type ?? '')) throw err;
          await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
        }
      }
      return res.flatMap((t) =>
        t.partitions.map((p) => ({ topic: t.topic, partition: p.partition, offset: p.offset === '-1' ? null : p.offset })),
      );
    };
    // In chunks of 8: a bound on requests in flight, as the lag collector keeps for its own.
    const inChunks = async <A, R>(items: A[], fn: (a: A) => Promise<R>): Promise<R[]> => {
      const out: R[] = [];
      for (let i = 0; i < items.length; i += 8) out.push(...(await Promise.all(items.slice(i, i + 8).map(fn))));
      return out;
    };
    const watermarks = (high: { partition: number; offset: string }[], low: { partition: number; offset: string }[]): PartitionOffsets[] | undefined => {
      const lows = new Map(low.map((p) => [p.partition, p.offset]));
      const out: PartitionOffsets[] = [];
      for (const p of high) {
        const l = lows.get(p.partition);
        if (l === undefined) return undefined;
        out.push({ partition: p.partition, high: p.offset, low: l });
      }
      return out;
    };
    const topicsOffsets = async (topics: string[]): Promise<Map<string, PartitionOffsets[]>> => {
      const present = await existing([...new Set(topics)]);
      const out = new Map<string, PartitionOffsets[]>();
      if (present.length === 0) return out;
      const used = admin;
      const cluster = clusters.get(used);
      if (cluster) {
        try {
          // The admin's own cluster, so its metadata and connections are shared with every other
          // question, and a topic deleted by another client surfaces as UNKNOWN_TOPIC_OR_PARTITION
          // for recovering() to answer, as for the one-topic calls.
          await cluster.addMultipleTargetTopics(present);
          await cluster.refreshMetadataIfNecessary();
          const ask = (fromBeginning: boolean) =>
            cluster.fetchTopicsOffset(present.map((topic) => ({ topic, fromBeginning, partitions: cluster.findTopicPartitionMetadata(topic).map((p) => ({ partition: p.partitionId })) })));
          const [high, low] = await Promise.all([ask(false), ask(true)]);
          const lows = new Map(low.map((t) => [t.topic, t.partitions]));
          for (const t of high) {
            const w = t.partitions.length > 0 ? watermarks(t.partitions, lows.get(t.topic) ?? []) : undefined;
            if (w) out.set(t.topic, w);
          }
        } catch (err) {
          if (topicGone(err)) throw err;
          // One partition's error fails kafkajs's whole ListOffsets answer (a leader moving, a topic
          // just created): the topics are asked one by one below, with kafkajs's retries.
          log.debug({ err: String(err), topics: present.length }, 'offsets of many topics at once failed; asking topic by topic');
          out.clear();
        }
      }
      // What the one request did not answer (no cluster, an error, a topic without cached partitions).
      const rest = present.filter((t) => !out.has(t));
      await inChunks(rest, async (topic) => {
        try {
          const res = await freshOffsets((a) => a.fetchTopicOffsets(topic));
          out.set(topic, res.map((p) => ({ partition: p.partition, high: p.high, low: p.low })));
        } catch (err) {
          if (topicGone(err)) throw err;
          log.debug({ err: String(err), topic }, 'no offsets for topic');
        }
      });
      return out;
    };
    return {
      createTopics: (topics) =>
        recovering(async () => {
          const present = new Set(await existing(topics.map((t) => t.topic)));
          const missing = topics.filter((t) => !present.has(t.topic));
          if (missing.length === 0) return;
          const batch = await createCoalesced(missing);
          await waitForLeaders(missing.map((t) => t.topic), batch);
        }),
      createPartitions: (topic, count) =>
        recovering(async () => {
          await admin.createPartitions({ topicPartitions: [{ topic, count }], validateOnly: false });
        }),
      describeTopics: (topics) =>
        recovering(async () => {
          const present = await existing(topics);
          if (present.length === 0) return [];
          const md = await admin.fetchTopicMetadata({ topics: present });
          return md.topics.map((t) => ({ topic: t.name, partitions: t.partitions.length }));
        }),
      listTopics: () => recovering(async () => [...(await topicSet())]),
      deleteTopics: (topics) =>
        recovering(async () => {
          const present = await existing(topics);
          if (present.length === 0) return;
          try {
            await admin.deleteTopics({ topics: present });
          } finally {
            changed();
          }
        }),
      listGroups: () => recovering(async () => (await admin.listGroups()).groups.map((g) => g.groupId)),
      groupOffsets: (groupId, topics) => recovering(() => groupOffsets(groupId, topics)),
      groupsOffsets: (requests) =>
        recovering(async () => {
          const known = await topicSet();
          return inChunks(requests, (r) => groupOffsets(r.groupId, r.topics, known));
        }),
      topicsOffsets: (topics) => recovering(() => topicsOffsets(topics)),
      topicOffsets: (topic) =>
        recovering(async () => {
          await mustExist(topic);
          const res = await freshOffsets((a) => a.fetchTopicOffsets(topic));
          return res.map((p) => ({ partition: p.partition, high: p.high, low: p.low }));
        }),
      topicOffsetsAt: (topic, timestampMs) =>
        recovering(async () => {
          await mustExist(topic);
          const res = await freshOffsets((a) => a.fetchTopicOffsetsByTimestamp(topic, timestampMs));
          return res.map((p) => ({ partition: p.partition, offset: p.offset }));
        }),
    };

  }

  return {
    async waitForBrokers(stop) {
      let stopped = false;
      void stop.then(() => (stopped = true), () => (stopped = true));
      for (let attempt = 1, delayMs = 1000; !stopped; attempt++, delayMs = Math.min(delayMs * 2, 10_000)) {
        // A fresh kafkajs admin: connect() reaches a seed broker (with kafkajs's own retries) or fails.
        const probe = kafka.admin();
        try {
          await probe.connect();
          if (attempt > 1) log.info({ attempts: attempt }, 'Kafka answers');
          return !stopped;
        } catch (err) {
          if (stopped) break;
          log.warn({ attempt, retryInMs: delayMs, err: String(err) }, 'waiting for Kafka');
        } finally {
          await probe.disconnect().catch(() => undefined);
        }
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([new Promise((r) => (timer = setTimeout(r, delayMs))), stop.catch(() => undefined)]);
        clearTimeout(timer);
      }
      return false;
    },

    admin() {
      adminPromise ??= makeAdmin().catch((err: unknown) => {
        adminPromise = undefined;
        throw err;
      });
      return adminPromise;
    },

    async producer() {
      // Each topic's max.message.bytes, read once (a topic may set its own below the broker's).
      const limits = new Map<string, number>();
      const limitOf = async (topic: string): Promise<number> => {
        let limit = limits.get(topic);
        if (limit !== undefined) return limit;
        limit = DEFAULT_MAX_MESSAGE_BYTES;
        try {
          const admin = kafka.admin();
          await admin.connect();
          try {
            const res = await admin.describeConfigs({ includeSynonyms: false, resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: ['max.message.bytes'] }] });
            const v = Number(res.resources[0]?.configEntries.find((e) => e.configName === 'max.message.bytes')?.configValue);
            if (Number.isSafeInteger(v) && v > 0) limit = v;
          } finally {
            await admin.disconnect();
          }
          limits.set(topic, limit);
        } catch (err) {
          // Not cached: the next send asks again. The default is Kafka's own.
          log.warn({ topic, err: String(err) }, 'could not read max.message.bytes; assuming the default');
        }
        return limit;
      };
      const makeProducer = (): KjsProducer =>
        kafka.producer({
          idempotent: true,
          maxInFlightRequests: 1,
          allowAutoTopicCreation: false,
          createPartitioner: keyPartitioner,
        });
      let producer = makeProducer();
      await producer.connect();
      // After any failed request a new producer (new id, sequences from 0) replaces this one, like the
      // Java client's epoch bump (see exclusive below for why). A broker that lost this producer id's
      // sequence state (it restarted, the state expired) refuses every later request of it with the
      // same non-retriable error, which kafkajs never recovers from: that request is sent once more
      // through the replacement; after any other failure the caller decides.
      // The current producer's connection; a failed connect is tried again by the next send.
      let ready: Promise<void> = Promise.resolve();
      // After disconnect() a send fails as kafkajs's own disconnected producer does; nothing renews it.
      let disconnected = false;
      const renew = (failed: KjsProducer, err: unknown): Promise<void> => {
        if (producer === failed && !disconnected) {
          const next = makeProducer();
          producer = next;
          failed.disconnect().catch(() => undefined);
          log.warn({ clientId: options.clientId, err: String(err) }, isProducerStateLost(err) ? 'idempotent producer state lost on the broker; continuing with a new producer id' : 'a produce request failed (the broker may have written it); continuing with a new producer id');
          ready = next.connect();
        }
        return ready;
      };
      const connected = async (): Promise<KjsProducer> => {
        if (disconnected) throw new Error('the producer is disconnected');
        const used = producer;
        try {
          await ready;
        } catch {
          if (used === producer) ready = used.connect();
          await ready;
        }
        return used;
      };
      // One sendBatch at a time on this producer, and a failed one replaced before the next starts.
      // kafkajs takes a failed request's sequence numbers back; if the broker did write it (the reply
      // was lost: a broker killed mid-request), the next request reuses them, and when it holds as
      // many messages the broker takes it for a retry of the written one: acknowledged, never
      // written (scenario 10, broker-restart: a 202 order missing from MySQL). A request of another
      // caller taking those numbers during kafkajs's own retry backoff is the same loss.
      let queue: Promise<unknown> = Promise.resolve();
      const exclusive = <T>(fn: () => Promise<T>): Promise<T> => {
        const run = queue.then(fn, fn);
        queue = run.catch(() => undefined);
        return run;
      };
      const close = async () => {
        disconnected = true;
        const current = producer;
        await current.disconnect();
        // A replacement's connect may still be under way (renew does not wait for it): disconnect
        // again once it has settled, or its connection outlives the producer and the process.
        await ready.then(() => current.disconnect(), () => undefined);
      };
      closers.add(close);
      return {
        async send(batches) {
          const nonEmpty = batches.filter((b) => b.messages.length > 0);
          if (nonEmpty.length === 0) return;
          const budgets = new Map<string, number>();
          for (const b of nonEmpty) if (!budgets.has(b.topic)) budgets.set(b.topic, requestBudget(await limitOf(b.topic)));
          const sendOne = async (request: { topic: string; messages: OutgoingMessage[] }[], renewed = false): Promise<void> => {
            try {
              await exclusive(async () => {
                const used = await connected();
                try {
                  await used.sendBatch({
                    acks: -1,
                    compression: CompressionTypes.None,
                    topicMessages: request.map((b) => ({
                      topic: b.topic,
                      messages: b.messages.map((m) => ({
                        key: m.key ?? null,
                        value: m.value,
                        headers: m.headers,
                        timestamp: m.timestamp === undefined ? undefined : String(m.timestamp),
                      })),
                    })),
                  });
                } catch (err) {
                  // Whatever the error, the broker may have written the request: a new producer id
                  // (sequences from 0) for the next one. Not awaited: the next send waits for its
                  // connect in connected(), which also tries a failed connect once more.
                  renew(used, err).catch(() => undefined);
                  throw err;
                }
              });
            } catch (err) {
              if (isProducerStateLost(err) && !renewed) return sendOne(request, true);
              // The estimate fell short (or the limit was lowered since it was read): halve and go on.
              // A refused request wrote nothing, so sending its halves duplicates nothing.
              const count = request.reduce((n, b) => n + b.messages.length, 0);
              if (!isTooLarge(err) || count < 2) throw err;
              limits.clear();
              log.warn({ messages: count }, 'produce request too large for the broker; splitting it');
              const halves = request.flatMap((b) => {
                const mid = Math.ceil(b.messages.length / 2);
                return [{ topic: b.topic, messages: b.messages.slice(0, mid) }, { topic: b.topic, messages: b.messages.slice(mid) }];
              });
              await sendOne(halves.filter((b, i) => i % 2 === 0 && b.messages.length > 0));
              await sendOne(halves.filter((b, i) => i % 2 === 1 && b.messages.length > 0));
            }
          };
          for (const request of splitForLimits(nonEmpty, (t) => budgets.get(t) ?? requestBudget(DEFAULT_MAX_MESSAGE_BYTES))) await sendOne(request);
        },
        async disconnect() {
          closers.delete(close);
          await close();
        },
      };
    },

    consumer(opts) {
      if (opts.busyFetch) busyFetches.set(opts.groupId, opts.busyFetch);
      const consumer: KjsConsumer = kafka.consumer({
        groupId: opts.groupId,
        sessionTimeout: opts.sessionTimeoutMs ?? 30000,
        heartbeatInterval: Math.min(3000, Math.floor((opts.sessionTimeoutMs ?? 30000) / 5)),
        maxBytesPerPartition: opts.maxBytesPerPartition ?? 1048576,
        maxWaitTimeInMs: opts.maxWaitMs ?? 100,
        allowAutoTopicCreation: false,
        // A crashed consumer restarts itself instead of leaving the process alive but idle.
        retry: { retries: 10, restartOnFailure: async () => true },
      });
      let assigned: { topic: string; partition: number }[] = [];
      const rebalanceListeners: (() => void)[] = [];
      consumer.on(consumer.events.GROUP_JOIN, (e) => {
        assigned = Object.entries(e.payload.memberAssignment).flatMap(([topic, ps]) =>
          (ps as number[]).map((partition) => ({ topic, partition })),
        );
        for (const l of rebalanceListeners) l();
      });
      let stopped = false;
      let rerun: (() => Promise<void>) | undefined;
      let rerunTimer: NodeJS.Timeout | undefined;
      consumer.on(consumer.events.CRASH, (e) => {
        log.error({ groupId: opts.groupId, err: String(e.payload.error), restart: e.payload.restart }, 'consumer crashed');
        // kafkajs restarts only after errors it deems retriable; after any other it has stopped
        // for good and the process would live on without consuming. Run it again, after a pause.
        if (e.payload.restart || stopped || !rerun) return;
        const again = rerun;
        clearTimeout(rerunTimer);
        // Tried again with backoff until it runs (a broker still down fails the connect, and then no
        // crash would come to trigger another try).
        const attempt = (delayMs: number) => {
          rerunTimer = setTimeout(() => {
            if (stopped) return;
            log.warn({ groupId: opts.groupId }, 'running the stopped consumer again');
            again().catch((err: unknown) => {
              log.error({ groupId: opts.groupId, err: String(err), retryInMs: Math.min(delayMs * 2, 60_000) }, 'running the consumer again failed');
              attempt(Math.min(delayMs * 2, 60_000));
            });
          }, delayMs);
        };
        attempt(5000);
      });
      const stop = async () => {
        if (stopped) return;
        stopped = true;
        clearTimeout(rerunTimer);
        closers.delete(stop);
        await consumer.disconnect();
      };
      closers.add(stop);
      return {
        async start(handler) {
          await consumer.connect();
          await consumer.subscribe({ topics: opts.topics, fromBeginning: opts.fromBeginning ?? true });
          const run = () => consumer.run({
            autoCommit: false,
            eachBatchAutoResolve: false,
            partitionsConsumedConcurrently: opts.partitionsConsumedConcurrently ?? 1,
            eachBatch: async (payload: EachBatchPayload) => {
              const { batch } = payload;
              let pausedHere = false;
              // resolveOffset moves the in-memory fetch position; commitOffsets makes it durable.
              const advance = (nextOffset: string) => payload.resolveOffset((BigInt(nextOffset) - 1n).toString());
              const commitHandled = async (nextOffset: string) => {
                await consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: nextOffset }]);
              };
              try {
                await handler(
                  {
                    topic: batch.topic,
                    partition: batch.partition,
                    highWatermark: batch.highWatermark,
                    messages: batch.messages.map((m) => ({
                      topic: batch.topic,
                      partition: batch.partition,
                      offset: m.offset,
                      key: m.key ? m.key.toString('utf8') : null,
                      value: m.value,
                      headers: headersOf(m.headers as Record<string, unknown>),
                      timestamp: Number(m.timestamp),
                    })),
                  },
                  {
                    async commit(nextOffset) {
                      advance(nextOffset);
                      await commitHandled(nextOffset);
                    },
                    advance,
                    commitHandled,
                    pauseAt(offset) {
                      pausedHere = true;
                      consumer.pause([{ topic: batch.topic, partitions: [batch.partition] }]);
                      consumer.seek({ topic: batch.topic, partition: batch.partition, offset });
                    },
                    heartbeat: () => payload.heartbeat(),
                    isActive: () => !pausedHere && payload.isRunning() && !payload.isStale(),
                  },
                );
              } catch (err) {
                // The batch is not committed and comes again either way. kafkajs retries a
                // retriable error with backoff and then restarts the consumer, but a non-retriable
                // one (a Kafka error so classified, a TypeError) would stop the consumer for good.
                if (!stopsConsumer(err)) throw err;
                throw Object.assign(new Error(`batch of ${batch.topic}[${batch.partition}] failed: ${(err as Error)?.message ?? String(err)}`, { cause: err }), { retriable: true });
              }
            },
          });
          rerun = async () => {
            await consumer.connect();
            await run();
          };
          await run();
        },
        pause(topic, partition) {
          consumer.pause([{ topic, partitions: [partition] }]);
        },
        resume(topic, partition) {
          consumer.resume([{ topic, partitions: [partition] }]);
        },
        seek(topic, partition, offset) {
          consumer.seek({ topic, partition, offset });
        },
        assignments: () => assigned,
        onRebalance(listener) {
          rebalanceListeners.push(listener);
        },
        stop,
      };
    },

    async close() {
      const all = [...closers];
      closers.clear();
      await Promise.allSettled(all.map((c) => c()));
      adminPromise = undefined;
    },
  };
}

export interface BatchingProducerOptions {
  /** How long the first message of an idle batch may wait for company. */
  lingerMs?: number;
  maxBatchMessages?: number;
  /** Told the messages per topic of every produce request (a metric). */
  onBatch?: (messagesByTopic: ReadonlyMap<string, readonly OutgoingMessage[]>) => void;
}

/**
 * kafkajs has no linger: every send is one request. This gathers concurrent sends into one
 * sendBatch while the previous request is in flight (or for lingerMs when idle), so a burst of
 * orders costs a few produce requests instead of one each. Each caller still learns the fate
 * of its own message.
 */
export class BatchingProducer {
  private queue: { topic: string; message: OutgoingMessage; resolve: () => void; reject: (e: unknown) => void }[] = [];
  private inFlight = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly lingerMs: number;
  private readonly maxBatch: number;
  private readonly producer: KafkaProducer;
  private readonly onBatch: BatchingProducerOptions['onBatch'];

  constructor(producer: KafkaProducer, options: BatchingProducerOptions = {}) {
    this.producer = producer;
    this.onBatch = options.onBatch;
    this.lingerMs = options.lingerMs ?? 2;
    this.maxBatch = options.maxBatchMessages ?? 2000;
  }

  send(topic: string, message: OutgoingMessage): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ topic, message, resolve, reject });
      if (this.inFlight) return;
      if (this.queue.length >= this.maxBatch) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), this.lingerMs);
    });
  }

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.inFlight || this.queue.length === 0) return;
    const items = this.queue.splice(0, this.maxBatch);
    const byTopic = new Map<string, OutgoingMessage[]>();
    for (const it of items) {
      const list = byTopic.get(it.topic) ?? [];
      list.push(it.message);
      byTopic.set(it.topic, list);
    }
    this.inFlight = true;
    this.onBatch?.(byTopic);
    this.producer
      .send([...byTopic].map(([topic, messages]) => ({ topic, messages })))
      .then(
        () => items.forEach((it) => it.resolve()),
        (err: unknown) => items.forEach((it) => it.reject(err)),
      )
      .finally(() => {
        this.inFlight = false;
        if (this.queue.length > 0) this.flush();
      });
  }

  async close(): Promise<void> {
    while (this.inFlight || this.queue.length > 0) {
      this.flush();
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}
