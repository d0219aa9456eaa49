// The one gateway to Kafka. Business code sees only the interfaces below; kafkajs (pinned at 2.2.4,
// in maintenance mode) stays inside this file so the client can be replaced without touching callers.
import kafkajs from 'kafkajs';
import type { Consumer as KjsConsumer, EachBatchPayload, Kafka as KjsKafka, Producer as KjsProducer } from 'kafkajs';
import type { Logger } from '../log.ts';

const { Kafka, logLevel: KjsLogLevel, CompressionTypes, Partitioners } = kafkajs;

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
  topicOffsets(topic: string): Promise<PartitionOffsets[]>;
  /**
   * Per partition, the first offset whose message timestamp is >= timestampMs (Kafka's time index);
   * the high watermark when every message is older.
   */
  topicOffsetsAt(topic: string, timestampMs: number): Promise<{ partition: number; offset: string }[]>;
}

export interface KafkaProducer {
  /** Sends with acks=all through the idempotent producer; resolves once every message is acknowledged. */
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
}

function headersOf(raw: Record<string, unknown> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw ?? {})) {
    if (v === undefined || v === null) continue;
    out[k] = Buffer.isBuffer(v) ? v.toString('utf8') : Array.isArray(v) ? String(v[0]) : String(v);
  }
  return out;
}

export function createKafkaGateway(options: KafkaGatewayOptions): KafkaGateway {
  const log = options.logger.child({ component: 'kafka' });
  const kafka: KjsKafka = new Kafka({
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
    const admin = kafka.admin();
    await admin.connect();
    closers.add(() => admin.disconnect());
    const existing = async (topics: string[]) => {
      const all = new Set(await admin.listTopics());
      return topics.filter((t) => all.has(t));
    };
    return {
      async createTopics(topics) {
        const present = new Set(await existing(topics.map((t) => t.topic)));
        const missing = topics.filter((t) => !present.has(t.topic));
        if (missing.length === 0) return;
        try {
          await admin.createTopics({
            waitForLeaders: true,
            topics: missing.map((t) => ({
              topic: t.topic,
              numPartitions: t.partitions,
              replicationFactor: t.replicationFactor,
              configEntries: Object.entries(t.configs ?? {}).map(([name, value]) => ({ name, value })),
            })),
          });
        } catch (err) {
          // Another replica may have created the same topic a moment ago: that is success.
          if ((err as { type?: string }).type !== 'TOPIC_ALREADY_EXISTS') throw err;
        }
      },
      async createPartitions(topic, count) {
        await admin.createPartitions({ topicPartitions: [{ topic, count }], validateOnly: false });
      },
      async describeTopics(topics) {
        const present = await existing(topics);
        if (present.length === 0) return [];
        const md = await admin.fetchTopicMetadata({ topics: present });
        return md.topics.map((t) => ({ topic: t.name, partitions: t.partitions.length }));
      },
      listTopics: () => admin.listTopics(),
      async deleteTopics(topics) {
        const present = await existing(topics);
        if (present.length > 0) await admin.deleteTopics({ topics: present });
      },
      async listGroups() {
        return (await admin.listGroups()).groups.map((g) => g.groupId);
      },
      async groupOffsets(groupId, topics) {
        const present = await existing(topics);
        if (present.length === 0) return [];
        const res = await admin.fetchOffsets({ groupId, topics: present });
        return res.flatMap((t) =>
          t.partitions.map((p) => ({ topic: t.topic, partition: p.partition, offset: p.offset === '-1' ? null : p.offset })),
        );
      },
      async topicOffsets(topic) {
        const res = await admin.fetchTopicOffsets(topic);
        return res.map((p) => ({ partition: p.partition, high: p.high, low: p.low }));
      },
      async topicOffsetsAt(topic, timestampMs) {
        const res = await admin.fetchTopicOffsetsByTimestamp(topic, timestampMs);
        return res.map((p) => ({ partition: p.partition, offset: p.offset }));
      },
    };
  }

  return {
    admin() {
      adminPromise ??= makeAdmin().catch((err: unknown) => {
        adminPromise = undefined;
        throw err;
      });
      return adminPromise;
    },

    async producer() {
      const producer: KjsProducer = kafka.producer({
        idempotent: true,
        maxInFlightRequests: 1,
        allowAutoTopicCreation: false,
        createPartitioner: Partitioners.DefaultPartitioner,
      });
      await producer.connect();
      const close = () => producer.disconnect();
      closers.add(close);
      return {
        async send(batches) {
          await producer.sendBatch({
            acks: -1,
            compression: CompressionTypes.None,
            topicMessages: batches
              .filter((b) => b.messages.length > 0)
              .map((b) => ({
                topic: b.topic,
                messages: b.messages.map((m) => ({
                  key: m.key ?? null,
                  value: m.value,
                  headers: m.headers,
                  timestamp: m.timestamp === undefined ? undefined : String(m.timestamp),
                })),
              })),
          });
        },
        async disconnect() {
          closers.delete(close);
          await producer.disconnect();
        },
      };
    },

    consumer(opts) {
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
      consumer.on(consumer.events.CRASH, (e) => {
        log.error({ groupId: opts.groupId, err: String(e.payload.error), restart: e.payload.restart }, 'consumer crashed');
      });
      let stopped = false;
      const stop = async () => {
        if (stopped) return;
        stopped = true;
        closers.delete(stop);
        await consumer.disconnect();
      };
      closers.add(stop);
      return {
        async start(handler) {
          await consumer.connect();
          await consumer.subscribe({ topics: opts.topics, fromBeginning: opts.fromBeginning ?? true });
          await consumer.run({
            autoCommit: false,
            eachBatchAutoResolve: false,
            partitionsConsumedConcurrently: opts.partitionsConsumedConcurrently ?? 1,
            eachBatch: async (payload: EachBatchPayload) => {
              const { batch } = payload;
              let pausedHere = false;
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
                    // resolveOffset moves the in-memory fetch position; commitOffsets makes it durable.
                    payload.resolveOffset((BigInt(nextOffset) - 1n).toString());
                    await consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: nextOffset }]);
                  },
                  pauseAt(offset) {
                    pausedHere = true;
                    consumer.pause([{ topic: batch.topic, partitions: [batch.partition] }]);
                    consumer.seek({ topic: batch.topic, partition: batch.partition, offset });
                  },
                  heartbeat: () => payload.heartbeat(),
                  isActive: () => !pausedHere && payload.isRunning() && !payload.isStale(),
                },
              );
            },
          });
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

  constructor(producer: KafkaProducer, options: BatchingProducerOptions = {}) {
    this.producer = producer;
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
