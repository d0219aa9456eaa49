// Order ids: UUIDv7 (RFC 9562) made with node:crypto. The 48-bit millisecond timestamp makes them
// time-ordered (MySQL's primary key grows at the end, ids sort by creation); the 12-bit rand_a
// field is used as a counter so ids of one process stay strictly increasing within a millisecond,
// and 62 random bits keep processes apart. The id is the idempotency key down to MySQL.
import { randomFillSync } from 'node:crypto';

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
// Random bytes are fetched in blocks: one syscall per 512 ids instead of one per id.
const pool = Buffer.alloc(8 * 512);
let poolAt = pool.length;

export interface OrderIdGenerator {
  (): string;
}

/** A monotonic UUIDv7 generator; `clock` (epoch ms) is injectable for tests. */
export function orderIdGenerator(clock: () => number = Date.now): OrderIdGenerator {
  let lastMs = -1;
  let counter = 0;
  return () => {
    let ms = clock();
    if (ms <= lastMs) {
      // Same millisecond (or the clock stepped back): keep counting on the last timestamp.
      ms = lastMs;
      counter++;
      if (counter > 0xfff) {
        ms = lastMs + 1;
        counter = 0;
      }
    } else {
      counter = 0;
    }
    lastMs = ms;
    if (poolAt >= pool.length) {
      randomFillSync(pool);
      poolAt = 0;
    }
    // Read in place: a subarray() per id was a Buffer object per order.
    const at = poolAt;
    poolAt += 8;
    const t = ms.toString(16).padStart(12, '0');
    const randA = (0x7000 | counter).toString(16);
    const variant = HEX[((pool[at] as number) & 0x3f) | 0x80] as string;
    return `${t.slice(0, 8)}-${t.slice(8, 12)}-${randA}-${variant}${HEX[pool[at + 1] as number]}-${HEX[pool[at + 2] as number]}${HEX[pool[at + 3] as number]}${HEX[pool[at + 4] as number]}${HEX[pool[at + 5] as number]}${HEX[pool[at + 6] as number]}${HEX[pool[at + 7] as number]}`;
  };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function isOrderId(s: string): boolean {
  return s.length === 36 && UUID.test(s);
}
