// Payment of an order: a conditional update, UNPAID → PAID only. It can never resurrect a CLOSED
// order, and the timeout close is conditional on UNPAID too, so exactly one of them wins.
import type { Pool } from '../infra/mysql.ts';

/** True when this call paid the order; false when it is not UNPAID (already paid, closed, or not written yet). */
export async function payOrder(pool: Pool, saleKey: string, orderId: string, at: Date): Promise<boolean> {
  // A paid order owes nothing more: settled_at takes it out of what the compensation scan walks.
  const [result] = await pool.query("UPDATE orders SET status = 'PAID', paid_at = ?, settled_at = ? WHERE order_id = ? AND sale = ? AND status = 'UNPAID'", [at, at, orderId, saleKey]);
  return (result as { affectedRows: number }).affectedRows === 1;
}
