// The body of POST /v1/sales/{sale}/orders: read, checked and turned into a purchase, or refused
// with the reason the buyer gets in the 400 (docs/openapi.yaml).
import { codePoints } from './messages.ts';

/** A body the API refuses with 400 INVALID_REQUEST; the message is the reason given. */
export class BadRequest extends Error {}

export interface OrderBody {
  userId: string;
  skuId: string;
  quantity: number;
}

/**
 * A user or SKU id: 1..max characters counted in code points (as docs/openapi.yaml's JSON Schema and
 * MySQL's VARCHAR count them), well-formed Unicode. A lone surrogate is refused: Redis and MySQL
 * store UTF-8, where every lone surrogate becomes U+FFFD, so two distinct ids would merge.
 */
function isId(v: unknown, max: number): v is string {
  if (typeof v !== 'string' || v.length === 0) return false;
  if (v.length > max && (v.length > 2 * max || codePoints(v) > max)) return false;
  return v.isWellFormed();
}

const USER_ID_OPEN = '{"userId":"';
const USER_ID_AT = USER_ID_OPEN.length;
const SKU_ID_SEP = '","skuId":"';

/**
 * The body as clients write it, `{"userId":"…","skuId":"…"}` with no space, no escape and no other
 * field, read without JSON.parse; undefined for any other body, which JSON.parse then reads. For the
 * bodies it reads, the result is what JSON.parse gives: between the quotes of a JSON string, any
 * character other than `"`, `\` and U+0000..U+001F stands for itself.
 *
 * Why: most requests of a flash sale are rejections answered without Redis, and there JSON.parse was
 * the largest single cost of our own. It puts the keys and every value of up to 10 characters into
 * V8's string table, a hash lookup each, slower the more code the process has loaded; on this 2-core
 * machine it cost ~1 µs of the ~18 µs a rejection takes (docs/order-path.md).
 */
export function scanOrderBody(raw: string): { userId: string; skuId: string } | undefined {
  const end = raw.length - 2;
  // '"' closes the skuId and '}' the object, at the very end.
  if (raw.charCodeAt(end) !== 34 || raw.charCodeAt(end + 1) !== 125 || !raw.startsWith(USER_ID_OPEN)) return undefined;
  const userEnd = raw.indexOf('"', USER_ID_AT);
  if (!raw.startsWith(SKU_ID_SEP, userEnd)) return undefined;
  const skuAt = userEnd + SKU_ID_SEP.length;
  // The skuId's closing quote is the first after its opening one, and nothing is escaped or raw control.
  if (raw.indexOf('"', skuAt) !== end) return undefined;
  for (let i = USER_ID_AT; i < end; i++) {
    const c = raw.charCodeAt(i);
    if (c < 32 || c === 92) return undefined;
  }
  return { userId: raw.slice(USER_ID_AT, userEnd), skuId: raw.slice(skuAt, end) };
}

/** The purchase a body asks for, or BadRequest with the reason. */
export function readOrderBody(raw: string, perUserLimit: number): OrderBody {
  const usual = scanOrderBody(raw);
  let o: Record<string, unknown>;
  if (usual !== undefined) {
    o = usual;
  } else {
    let body: unknown;
    try {
      body = JSON.parse(raw);
    } catch {
      throw new BadRequest('body is not valid JSON');
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new BadRequest('body must be a JSON object');
    o = body as Record<string, unknown>;
    for (const k in o) if (k !== 'userId' && k !== 'skuId' && k !== 'quantity') throw new BadRequest(`unknown field "${k}"`);
  }
  const { userId, skuId } = o;
  if (!isId(userId, 128)) throw new BadRequest('userId: required string of 1 to 128 characters, well-formed Unicode');
  if (!isId(skuId, 64)) throw new BadRequest('skuId: required string of 1 to 64 characters, well-formed Unicode');
  const quantity = o.quantity === undefined ? 1 : o.quantity;
  if (typeof quantity !== 'number' || !Number.isInteger(quantity) || quantity < 1 || quantity > perUserLimit) {
    throw new BadRequest(`quantity: must be an integer from 1 to ${perUserLimit} (the per-user limit)`);
  }
  return { userId, skuId, quantity };
}
