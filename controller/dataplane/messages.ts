// The messages that flow between the workers through Kafka, with parsers that reject anything
// malformed (the caller sends it to the dead-letter topic with the reason).

/** orders topic, key = SKU id: an accepted purchase on its way to MySQL. */
export interface OrderMessage {
  v: 1;
  orderId: string;
  /** namespace/name of the FlashSale. */
  sale: string;
  skuId: string;
  userId: string;
  quantity: number;
  /** Epoch ms when the API reserved the stock. */
  createdAt: number;
  /**
   * The SKU's timeout bucket and due time (createdAt + the bucket's delay) as the accepting API saw
   * its spec. With them the order writer needs nothing from its own spec to write the order and its
   * timeout message, so a writer that does not know a newly added SKU yet still writes it (rollouts
   * of the api and order-writer Deployments are independent). Absent in messages of older APIs.
   */
  bucket?: string;
  dueAt?: number;
}

/** delay topic of the SKU's bucket, key = order id: close this order at dueAt unless paid. */
export interface TimeoutMessage extends Omit<OrderMessage, 'bucket' | 'dueAt'> {
  /** Epoch ms: createdAt + the bucket's delay, fixed by the writer so clocks and topic timestamps do not matter. */
  dueAt: number;
  bucket: string;
}

/** retry topic: a close that failed, to be tried again not before notBefore. */
export interface RetryMessage extends TimeoutMessage {
  /** Failed attempts so far (1 after the first failure). */
  attempt: number;
  notBefore: number;
  error: string;
}

/** dead-letter topic: what could not be handled, with why and where it came from. */
export interface DeadLetter {
  v: 1;
  source: 'orders' | 'timeouts' | 'retry';
  reason: string;
  topic: string;
  partition: number;
  offset: string;
  key: string | null;
  /** The original value, as text when it was UTF-8, else base64. */
  value: string | null;
  valueEncoding: 'utf8' | 'base64';
  /** Size of the original value in bytes. */
  valueBytes: number;
  /** True when `value` holds only the first DEAD_LETTER_VALUE_BYTES of the original (see deadLetter). */
  truncated: boolean;
  at: number;
}

/**
 * Bytes of the original value a dead letter keeps. A poison message may be as large as its topic
 * allows; wrapped in JSON (escaped, or base64) it could exceed the dead-letter topic's limit and then
 * never be produced, blocking the partition it came from. 64 KiB is enough to diagnose it.
 */
export const DEAD_LETTER_VALUE_BYTES = 64 * 1024;

export class MalformedMessageError extends Error {
  override name = 'MalformedMessageError';
}

type Json = Record<string, unknown>;

function object(raw: Buffer | string | null): Json {
  if (raw === null) throw new MalformedMessageError('empty message');
  let value: unknown;
  try {
    value = JSON.parse(typeof raw === 'string' ? raw : raw.toString('utf8'));
  } catch (err) {
    throw new MalformedMessageError(`not JSON: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new MalformedMessageError('not a JSON object');
  return value as Json;
}

/** Length in Unicode code points (a character outside the BMP is two UTF-16 units, one character). */
export function codePoints(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

function str(o: Json, k: string, max = 128): string {
  const v = o[k];
  // Characters are code points, as the API counts them (docs/openapi.yaml) and MySQL's VARCHAR does.
  if (typeof v !== 'string' || v.length === 0 || (v.length > max && (v.length > 2 * max || codePoints(v) > max))) {
    throw new MalformedMessageError(`field ${k}: expected a non-empty string of at most ${max} characters`);
  }
  return v;
}

function int(o: Json, k: string, min: number): number {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw new MalformedMessageError(`field ${k}: expected an integer >= ${min}`);
  return v;
}

function version(o: Json): 1 {
  if (o.v !== 1) throw new MalformedMessageError(`unsupported message version ${JSON.stringify(o.v)}`);
  return 1;
}

const BUCKET_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

function bucketName(o: Json): string {
  const b = str(o, 'bucket', 32);
  // It becomes part of a topic name: the CRD's pattern for bucket names.
  if (!BUCKET_NAME.test(b)) throw new MalformedMessageError('field bucket: not a bucket name (lowercase letters, digits and -)');
  return b;
}

/** The fields every message about one order carries. */
function orderFields(o: Json): Omit<OrderMessage, 'bucket' | 'dueAt'> {
  return {
    v: version(o),
    orderId: str(o, 'orderId', 36),
    sale: str(o, 'sale', 128),
    skuId: str(o, 'skuId', 64),
    userId: str(o, 'userId', 128),
    quantity: int(o, 'quantity', 1),
    createdAt: int(o, 'createdAt', 0),
  };
}

export function parseOrderMessage(raw: Buffer | string | null): OrderMessage {
  const o = object(raw);
  const m: OrderMessage = orderFields(o);
  if (o.bucket !== undefined || o.dueAt !== undefined) {
    m.bucket = bucketName(o);
    m.dueAt = int(o, 'dueAt', 0);
    if (m.dueAt < m.createdAt) throw new MalformedMessageError('field dueAt: before createdAt');
  }
  return m;
}

export function parseTimeoutMessage(raw: Buffer | string | null): TimeoutMessage {
  const o = object(raw);
  return { ...orderFields(o), dueAt: int(o, 'dueAt', 0), bucket: bucketName(o) };
}

export function parseRetryMessage(raw: Buffer | string | null): RetryMessage {
  const o = object(raw);
  const base = parseTimeoutMessage(raw);
  return { ...base, attempt: int(o, 'attempt', 1), notBefore: int(o, 'notBefore', 0), error: typeof o.error === 'string' ? o.error : '' };
}

export function deadLetter(source: DeadLetter['source'], reason: string, m: { topic: string; partition: number; offset: string; key: string | null; value: Buffer | null }, now = Date.now()): DeadLetter {
  let value: string | null = null;
  let valueEncoding: DeadLetter['valueEncoding'] = 'utf8';
  const valueBytes = m.value?.length ?? 0;
  const truncated = valueBytes > DEAD_LETTER_VALUE_BYTES;
  if (m.value) {
    const kept = truncated ? m.value.subarray(0, DEAD_LETTER_VALUE_BYTES) : m.value;
    const text = kept.toString('utf8');
    if (Buffer.from(text, 'utf8').equals(kept)) value = text;
    else {
      value = kept.toString('base64');
      valueEncoding = 'base64';
    }
  }
  // Keys are bounded by the same concern; an order key is a SKU id or an order id.
  const key = m.key !== null && m.key.length > 1024 ? m.key.slice(0, 1024) : m.key;
  return { v: 1, source, reason: reason.slice(0, 1024), topic: m.topic, partition: m.partition, offset: m.offset, key, value, valueEncoding, valueBytes, truncated, at: now };
}
