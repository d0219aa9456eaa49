// Detecting a Redis that went back in time (restored from an older snapshot: keys present, stale).
//
// Every reserve, claim and release raises the SKU's counter in Redis (names.ts `seq`) inside its
// script, and returns the new value. Workers remember what they saw: the order writer and the
// closers record the highest value in MySQL (sku_marks), the API in memory; a rebuild records the
// epoch it starts (provision.ts), so the next one starts above it. Redis never lowers the
// counter itself, so a value at or below one seen before can only mean Redis lost what happened
// since (a restore, or a loss the rebuild did not finish yet). The checks:
//   API            a reserve returns a counter ≤ the highest this process saw for the SKU
//   order writer   a claim returns a counter ≤ the SKU's mark (read before the claim), or an order
//                  that Redis neither reserved, claimed nor released and that is not in MySQL
//   compensator    the counter in Redis is below the SKU's mark
// On detection the SKU is fenced: all its keys are deleted at once, so the API answers 503 and
// releases stay owed, exactly as after a loss; the rebuild from MySQL (provision.ts, after the order
// writer drained) then restores the truth and sets the counter above the mark.
import type { Pool } from '../infra/mysql.ts';

/** Highest counter value recorded per SKU of a sale (0 for a SKU never recorded). */
export async function readMarks(pool: Pool, saleKey: string, skuIds?: string[]): Promise<Map<string, number>> {
  const [rows] = skuIds
    ? skuIds.length === 0
      ? [[]]
      : await pool.query('SELECT sku_id, seq FROM sku_marks WHERE sale = ? AND sku_id IN (?)', [saleKey, skuIds])
    : await pool.query('SELECT sku_id, seq FROM sku_marks WHERE sale = ?', [saleKey]);
  return new Map((rows as { sku_id: string; seq: string | number }[]).map((r) => [r.sku_id, Number(r.seq)]));
}

/** Raises the recorded marks to the given values (never lowers them). */
export async function recordMarks(pool: Pool, saleKey: string, marks: Map<string, number>, now = new Date()): Promise<void> {
  const rows = [...marks].filter(([, seq]) => seq > 0).map(([sku, seq]) => [saleKey, sku, seq, now]);
  if (rows.length === 0) return;
  await pool.query('INSERT INTO sku_marks (sale, sku_id, seq, updated_at) VALUES ? ON DUPLICATE KEY UPDATE seq = GREATEST(seq, VALUES(seq)), updated_at = VALUES(updated_at)', [rows]);
}
