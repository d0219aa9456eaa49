// Part of the Kafka gateway (kafka.ts installs it; nothing else imports it but its tests): a leaner encoder for
// kafkajs 2.2.4's produce requests. kafkajs encodes every record into a new zero-filled 512-byte
// Buffer, every varint into a Buffer.from([...]) of its own (six per record), the timestamp delta
// through BigInt-backed longs, and then copies the records into a batch that grows by doubling. On
// this machine that is most of the 15–20 µs of client CPU kafkajs spends per produced record, and
// every accepted order is produced twice (the API's hand-off, the writer's timeout message).
//
// This writes the same bytes (test/kafkajs-produce.test.ts compares them with kafkajs's own encoder
// on generated requests) into one buffer sized up front. It handles what the gateway sends —
// uncompressed batches, string or Buffer keys and values, no headers, integer timestamps — and
// leaves every other request to kafkajs's encoder unchanged.
//
// It also replaces kafkajs's grouping of a produce's messages per partition (below), which kafka.ts
// needs in place before kafkajs loads: so kafka.ts imports this module before kafkajs.
import { createRequire, Module } from 'node:module';
import type { ICustomPartitioner } from 'kafkajs';

const requireKafkajs = createRequire(import.meta.url);
/** The patches of the gateway (here and in kafka.ts) are for the pinned kafkajs only. */
export const KAFKAJS_2_2_4 = (requireKafkajs('kafkajs/package.json') as { version: string }).version === '2.2.4';

interface KjsLong {
  getHighBits(): number;
  getLowBits(): number;
}
interface KjsEncoder {
  buf: Buffer;
  offset: number;
}
/** A message as kafkajs's producer hands it to the request (after partitioning). */
export interface KjsProduceMessage {
  key?: unknown;
  value?: unknown;
  headers?: unknown;
  timestamp?: unknown;
}
/** The arguments kafkajs's broker passes to a produce request (v3 and later). */
export interface KjsProduceArgs {
  acks: number;
  timeout: number;
  compression?: number;
  transactionalId?: string | null;
  producerId?: unknown;
  producerEpoch?: number;
  topicData: { topic: string; partitions: { partition: number; firstSequence?: number; messages: KjsProduceMessage[] }[] }[];
}
interface KjsProduceRequest {
  request: { apiVersion: number; encode: () => Promise<KjsEncoder> };
  response: unknown;
}
type KjsProduceVersion = (args: KjsProduceArgs) => KjsProduceRequest;

const Encoder = requireKafkajs('kafkajs/src/protocol/encoder.js') as new (initialSize?: number) => KjsEncoder;
const Long = requireKafkajs('kafkajs/src/utils/long.js') as { fromValue(v: unknown): KjsLong; fromInt(v: number): KjsLong };

/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), eight bytes a step through eight tables
 * ("slicing-by-8"). kafkajs's takes one table lookup per byte (2.2 ns a byte here) and its optimised
 * code deoptimised dozens of times in an API process under load (--trace-deopt, 2026-12-05);
 * test/kafkajs-produce.test.ts compares the two on generated buffers.
 */
const CRC_TABLES = ((): Int32Array => {
  const t = new Int32Array(8 * 256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c;
  }
  for (let i = 0; i < 256; i++) {
    for (let s = 1; s < 8; s++) {
      const prev = t[(s - 1) * 256 + i] as number;
      t[s * 256 + i] = (prev >>> 8) ^ (t[prev & 0xff] as number);
    }
  }
  return t;
})();
export function crc32C(buf: Uint8Array): number {
  const t = CRC_TABLES;
  let crc = -1;
  let i = 0;
  const end8 = buf.length - (buf.length % 8);
  for (; i < end8; i += 8) {
    crc ^= (buf[i] as number) | ((buf[i + 1] as number) << 8) | ((buf[i + 2] as number) << 16) | ((buf[i + 3] as number) << 24);
    crc =
      (t[1792 + (crc & 0xff)] as number) ^
      (t[1536 + ((crc >>> 8) & 0xff)] as number) ^
      (t[1280 + ((crc >>> 16) & 0xff)] as number) ^
      (t[1024 + (crc >>> 24)] as number) ^
      (t[768 + (buf[i + 4] as number)] as number) ^
      (t[512 + (buf[i + 5] as number)] as number) ^
      (t[256 + (buf[i + 6] as number)] as number) ^
      (t[buf[i + 7] as number] as number);
  }
  for (; i < buf.length; i++) crc = (t[(crc ^ (buf[i] as number)) & 0xff] as number) ^ (crc >>> 8);
  return (crc ^ -1) >>> 0;
}
const produceRequests = requireKafkajs('kafkajs/src/protocol/requests/produce/index.js') as { protocol: (o: { version: number }) => KjsProduceVersion };

/** A message as kafkajs's producer partitions it. */
interface KjsPartitionedMessage extends KjsProduceMessage {
  partition?: number | null;
}
interface KjsGroupingArgs {
  topic: string;
  partitionMetadata: unknown[];
  messages: KjsPartitionedMessage[];
  partitioner: (a: { topic: string; partitionMetadata: unknown[]; message: KjsPartitionedMessage }) => number;
}

/**
 * kafkajs's groupMessagesPerPartition with the same answer — the messages of each partition, in the
 * order given, under the partition number — in one pass. kafkajs's own copies the partition's array
 * and builds an object for every message (`[...current, message]` inside a reduce): quadratic in the
 * messages of one partition, and the API's hand-off and the writer's timeout messages each send one
 * SKU's messages to one partition, 150 and 430 a request under the seckill benchmark's load.
 * Measured alone: 0.50 µs per message at 150 a request and 0.9–1.1 at 430, against 0.01 here; and
 * a seventh of the API's allocations per accepted order (heap sampling, 2026-12-05).
 */
export function groupMessagesPerPartition({ topic, partitionMetadata, messages, partitioner }: KjsGroupingArgs): Record<number, KjsPartitionedMessage[]> {
  const grouped: Record<number, KjsPartitionedMessage[]> = {};
  if (partitionMetadata.length === 0) return grouped;
  for (const message of messages) {
    const partition = partitioner({ topic, partitionMetadata, message });
    const list = grouped[partition];
    if (list) list.push(message);
    else grouped[partition] = [message];
  }
  return grouped;
}

// kafkajs's producer takes the grouping with require() when it loads and keeps it, so the module is
// replaced in require's cache before that (kafkajs 2.2.4, the pinned version, only). A process
// that loaded kafkajs's producer before this module keeps kafkajs's grouping: see produceGroupingInstalled.
const GROUPING = 'kafkajs/src/producer/groupMessagesPerPartition.js';
const SEND_MESSAGES = 'kafkajs/src/producer/sendMessages.js';
const groupingSeeded = ((): boolean => {
  if (!KAFKAJS_2_2_4) return false;
  const cache = requireKafkajs.cache;
  const path = requireKafkajs.resolve(GROUPING);
  if (cache[requireKafkajs.resolve(SEND_MESSAGES)] || cache[path]) return false;
  const m = new Module(path);
  m.filename = path;
  m.loaded = true;
  m.exports = groupMessagesPerPartition;
  cache[path] = m;
  return true;
})();

/** Whether kafkajs's producer groups messages with groupMessagesPerPartition above (false: kafkajs's own). */
export function produceGroupingInstalled(): boolean {
  return groupingSeeded && requireKafkajs(GROUPING) === groupMessagesPerPartition;
}

const MAGIC = 2;
const TRANSACTIONAL = 16;
/** Record batch bytes from the partition leader epoch on, before the records: epoch 4, magic 1, crc 4, attributes 2, last offset delta 4, first and max timestamp 16, producer id 8, epoch 2, first sequence 4, record count 4. */
const BATCH_HEADER = 49;
/** Kafka's varints as kafkajs writes them: zigzag, 7 bits a byte. Safe integers only. */
function zigzag(v: number): number {
  return v >= 0 ? v * 2 : -v * 2 - 1;
}
function uvarintSize(u: number): number {
  let n = 1;
  while (u >= 128) {
    u = Math.floor(u / 128);
    n++;
  }
  return n;
}
function writeUvarint(buf: Buffer, at: number, u: number): number {
  while (u >= 128) {
    buf[at++] = (u % 128) | 128;
    u = Math.floor(u / 128);
  }
  buf[at++] = u;
  return at;
}
/** 0 ≤ n < 2^53 as a big-endian int64. */
function writeInt64(buf: Buffer, at: number, n: number): void {
  buf.writeUInt32BE(Math.floor(n / 4294967296), at);
  buf.writeUInt32BE(n % 4294967296, at + 4);
}

/** A key or value as kafkajs writes it: null → length -1, a Buffer as is, anything else as String() in UTF-8. */
function bytesOf(v: unknown): Buffer | string | null {
  if (v === null || v === undefined) return null;
  return Buffer.isBuffer(v) ? v : String(v);
}
function byteSize(v: Buffer | string | null): number {
  return v === null ? -1 : typeof v === 'string' ? Buffer.byteLength(v, 'utf8') : v.length;
}
/** Its varint length, then the bytes (none for null). */
function writeBytes(buf: Buffer, at: number, v: Buffer | string | null, size: number): number {
  at = writeUvarint(buf, at, zigzag(size));
  if (v === null) return at;
  return typeof v === 'string' ? at + buf.write(v, at, 'utf8') : at + v.copy(buf, at);
}
function isHeaderless(h: unknown): boolean {
  return h === undefined || (h !== null && typeof h === 'object' && Object.keys(h).length === 0);
}
/** A timestamp both kafkajs's long conversion and ours read as the same integer. */
function plainTimestamp(t: unknown): boolean {
  if (typeof t === 'number') return Number.isSafeInteger(t) && t >= 0;
  return typeof t === 'string' && /^[0-9]{1,15}$/.test(t);
}

interface PlannedPartition {
  partition: number;
  firstSequence: number;
  keys: (Buffer | string | null)[];
  values: (Buffer | string | null)[];
  keySizes: number[];
  valueSizes: number[];
  deltas: number[];
  bodySizes: number[];
  firstTimestamp: number;
  maxTimestamp: number;
  /** Record batch bytes after the base offset and length fields. */
  batchSize: number;
}

/**
 * The produce request body kafkajs's v3 encoder would write for `args`, or null when the request is
 * outside what this encoder handles (kafkajs's own encoder then runs).
 */
export function encodeProduceRequest(args: KjsProduceArgs, now: number = Date.now()): Buffer | null {
  const compression = args.compression ?? 0;
  if (compression !== 0) return null;
  const transactionalId = args.transactionalId ?? null;
  const producer = Long.fromValue(args.producerId ?? Long.fromInt(-1));
  const producerEpoch = args.producerEpoch ?? 0;
  const attributes = transactionalId ? TRANSACTIONAL : 0; // kafkajs: !!transactionalId (an empty id is written, not marked)
  let size = 2 + (transactionalId === null ? 0 : Buffer.byteLength(transactionalId, 'utf8')) + 2 + 4 + 4;
  const topics: { topicBytes: number; partitions: PlannedPartition[] }[] = [];
  for (const t of args.topicData) {
    const topicBytes = Buffer.byteLength(t.topic, 'utf8');
    size += 2 + topicBytes + 4;
    const partitions: PlannedPartition[] = [];
    for (const p of t.partitions) {
      const messages = p.messages;
      const n = messages.length;
      if (n === 0) return null;
      // kafkajs takes the first and the last of the timestamps as sorted by Array#sort's default
      // (string) order, and the deltas from that first one; the same choice here, in one pass.
      let first: unknown;
      let firstText = '';
      let max: unknown;
      let maxText = '';
      for (const m of messages) {
        const ts = m.timestamp;
        if (ts === null || ts === undefined) continue;
        if (!plainTimestamp(ts)) return null;
        const text = String(ts);
        if (first === undefined || text < firstText) {
          first = ts;
          firstText = text;
        }
        if (max === undefined || text >= maxText) {
          max = ts;
          maxText = text;
        }
      }
      if (first === undefined) first = max = now;
      const plan: PlannedPartition = {
        partition: p.partition, firstSequence: p.firstSequence ?? 0,
        keys: new Array(n), values: new Array(n), keySizes: new Array(n), valueSizes: new Array(n), deltas: new Array(n), bodySizes: new Array(n),
        firstTimestamp: Number(first), maxTimestamp: Number(max), batchSize: BATCH_HEADER,
      };
      for (let i = 0; i < n; i++) {
        const m = messages[i] as KjsProduceMessage;
        if (!isHeaderless(m.headers)) return null;
        const delta = ((m.timestamp || now) as number) - (first as number);
        if (!Number.isSafeInteger(delta) || Math.abs(delta) > 2 ** 50) return null;
        const key = bytesOf(m.key);
        const value = bytesOf(m.value);
        const keySize = byteSize(key);
        const valueSize = byteSize(value);
        // attributes 1, timestamp delta, offset delta, key, value, header count 1
        const body = 1 + uvarintSize(zigzag(delta)) + uvarintSize(zigzag(i)) + uvarintSize(zigzag(keySize)) + Math.max(keySize, 0) +
          uvarintSize(zigzag(valueSize)) + Math.max(valueSize, 0) + 1;
        plan.keys[i] = key;
        plan.values[i] = value;
        plan.keySizes[i] = keySize;
        plan.valueSizes[i] = valueSize;
        plan.deltas[i] = delta;
        plan.bodySizes[i] = body;
        plan.batchSize += uvarintSize(zigzag(body)) + body;
      }
      size += 4 + 4 + 8 + 4 + plan.batchSize;
      partitions.push(plan);
    }
    topics.push({ topicBytes, partitions });
  }

  const buf = Buffer.allocUnsafe(size);
  let at = 0;
  if (transactionalId === null) at = buf.writeInt16BE(-1, at);
  else {
    at = buf.writeInt16BE(Buffer.byteLength(transactionalId, 'utf8'), at);
    at += buf.write(transactionalId, at, 'utf8');
  }
  at = buf.writeInt16BE(args.acks, at);
  at = buf.writeInt32BE(args.timeout, at);
  at = buf.writeInt32BE(topics.length, at);
  args.topicData.forEach((t, ti) => {
    const planned = topics[ti] as { topicBytes: number; partitions: PlannedPartition[] };
    at = buf.writeInt16BE(planned.topicBytes, at);
    at += buf.write(t.topic, at, 'utf8');
    at = buf.writeInt32BE(planned.partitions.length, at);
    for (const p of planned.partitions) {
      at = buf.writeInt32BE(p.partition, at);
      at = buf.writeInt32BE(8 + 4 + p.batchSize, at); // the record set: base offset, length, batch
      writeInt64(buf, at, 0); // base offset
      at += 8;
      at = buf.writeInt32BE(p.batchSize, at);
      at = buf.writeInt32BE(0, at); // partition leader epoch
      at = buf.writeInt8(MAGIC, at);
      const crcAt = at;
      at += 4;
      const crcFrom = at;
      at = buf.writeInt16BE(attributes, at);
      const n = p.deltas.length;
      at = buf.writeInt32BE(n - 1, at);
      writeInt64(buf, at, p.firstTimestamp);
      writeInt64(buf, at + 8, p.maxTimestamp);
      at += 16;
      at = buf.writeInt32BE(producer.getHighBits(), at);
      at = buf.writeInt32BE(producer.getLowBits(), at);
      at = buf.writeInt16BE(producerEpoch, at);
      at = buf.writeInt32BE(p.firstSequence, at);
      at = buf.writeInt32BE(n, at);
      for (let i = 0; i < n; i++) {
        at = writeUvarint(buf, at, zigzag(p.bodySizes[i] as number));
        buf[at++] = 0; // record attributes
        at = writeUvarint(buf, at, zigzag(p.deltas[i] as number));
        at = writeUvarint(buf, at, zigzag(i));
        at = writeBytes(buf, at, p.keys[i] as Buffer | string | null, p.keySizes[i] as number);
        at = writeBytes(buf, at, p.values[i] as Buffer | string | null, p.valueSizes[i] as number);
        buf[at++] = 0; // no headers
      }
      buf.writeUInt32BE(crc32C(buf.subarray(crcFrom, at)), crcAt);
    }
  });
  if (at !== size) throw new Error(`produce request encoder: wrote ${at} bytes of ${size}`);
  return buf;
}

/**
 * Makes kafkajs's produce requests v3–v7 (the versions that share v3's request body) encode with
 * encodeProduceRequest, falling back to kafkajs's encoder for what it does not handle.
 */
export function installProduceEncoder(): void {
  const original = produceRequests.protocol;
  produceRequests.protocol = ({ version }) => {
    const build = original({ version });
    if (version < 3 || version > 7) return build;
    return (args) => {
      const built = build(args);
      const kafkajsEncode = built.request.encode;
      built.request.encode = async () => {
        const body = encodeProduceRequest(args);
        if (body === null) return kafkajsEncode();
        const encoder = new Encoder(0);
        encoder.buf = body;
        encoder.offset = body.length;
        return encoder;
      };
      return built;
    };
  };
}

const M = 0x5bd1e995;

/**
 * kafkajs's murmur2 (the Java client's, so keys land on the partitions other clients pick), in 32-bit
 * integer arithmetic. kafkajs computes it with its 64-bit longs (BigInt-backed, an object per step)
 * and a Buffer per key; only the low 32 bits ever reach the result, and those are what Math.imul
 * and the 32-bit operators compute. ASCII string keys are read without a Buffer.
 */
export function murmur2(key: unknown): number {
  let data: Buffer | string;
  if (Buffer.isBuffer(key)) data = key;
  else {
    data = String(key);
    // eslint-disable-next-line no-control-regex -- the ASCII range is the point
    if (!/^[\x00-\x7f]*$/.test(data)) data = Buffer.from(data);
  }
  const byte = typeof data === 'string' ? (i: number) => (data as string).charCodeAt(i) : (i: number) => (data as Buffer)[i] as number;
  const length = data.length;
  let h = 0x9747b28c ^ length;
  const body = length & ~3;
  for (let i = 0; i < body; i += 4) {
    let k = byte(i) | (byte(i + 1) << 8) | (byte(i + 2) << 16) | (byte(i + 3) << 24);
    k = Math.imul(k, M);
    k ^= k >>> 24;
    k = Math.imul(k, M);
    h = Math.imul(h, M) ^ k;
  }
  const tail = length & 3;
  if (tail > 0) {
    if (tail === 3) h ^= byte(body + 2) << 16;
    if (tail >= 2) h ^= byte(body + 1) << 8;
    h ^= byte(body);
    h = Math.imul(h, M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

/**
 * kafkajs's DefaultPartitioner with murmur2 above: a message's own partition, else the key's hash
 * modulo the partition count, else kafkajs's own round robin (messages without a key). Same choices
 * as kafkajs's (test/kafkajs-produce.test.ts); kafkajs also filters the partitions per message,
 * which only the keyless case needs.
 */
export function createKeyPartitioner(keyless: ICustomPartitioner): ICustomPartitioner {
  return () => {
    const roundRobin = keyless();
    return (a) => {
      const { message } = a;
      if (message.partition !== null && message.partition !== undefined) return message.partition;
      if (message.key !== null && message.key !== undefined) return (murmur2(message.key) & 0x7fffffff) % a.partitionMetadata.length;
      return roundRobin(a);
    };
  };
}
