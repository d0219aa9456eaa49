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
}

/** delay topic of the SKU's bucket, key = order id: close this order at dueAt unless paid. */
export interface TimeoutMessage extends OrderMessage {
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
  at: number;
}

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

function str(o: Json, k: string, max = 128): string {
  const v = o[k];
  if (typeof v !== 'string' || v.length === 0 || v.length > max) throw new MalformedMessageError(`field ${k}: expected a non-empty string of at most ${max} characters`);
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

/** The fields every message about one order carries. */
function orderFields(o: Json): OrderMessage {
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
  return orderFields(object(raw));
}

export function parseTimeoutMessage(raw: Buffer | string | null): TimeoutMessage {
  const o = object(raw);
  return { ...orderFields(o), dueAt: int(o, 'dueAt', 0), bucket: str(o, 'bucket', 32) };
}

export function parseRetryMessage(raw: Buffer | string | null): RetryMessage {
  const o = object(raw);
  const base = parseTimeoutMessage(raw);
  return { ...base, attempt: int(o, 'attempt', 1), notBefore: int(o, 'notBefore', 0), error: typeof o.error === 'string' ? o.error : '' };
}

export function deadLetter(source: DeadLetter['source'], reason: string, m: { topic: string; partition: number; offset: string; key: string | null; value: Buffer | null }, now = Date.now()): DeadLetter {
  let value: string | null = null;
  let valueEncoding: DeadLetter['valueEncoding'] = 'utf8';
  if (m.value) {
    const text = m.value.toString('utf8');
    if (Buffer.from(text, 'utf8').equals(m.value)) value = text;
    else {
      value = m.value.toString('base64');
      valueEncoding = 'base64';
    }
  }
  return { v: 1, source, reason, topic: m.topic, partition: m.partition, offset: m.offset, key: m.key, value, valueEncoding, at: now };
}
