// The invariant checker of issue 13: run with the system quiet, over everything the API
// acknowledged (202) and every payment a payer saw succeed (200 PAID). It reads the truth from
// MySQL (orders), Redis (the SKU keys of stock.ts) and the dead-letter topic, and
// returns one line per violation, naming the offending ids.
//
// Rules (issue 13, "The checker"):
//   R1 every 202 order id is in MySQL exactly once (with the user, SKU and quantity it was accepted for)
//   R2 units in UNPAID + PAID ≤ stock, per SKU
//   R3 no user above perUserLimit (UNPAID + PAID units) per SKU
//   R4 no CLOSED order with closed_at < due_at (never an early close): every order closed by the
//      closer or the scan and every acknowledged order; a late order the writer recorded CLOSED on
//      arrival after its reservation was reaped (never UNPAID, not acknowledged, written with its
//      release settled: settled_at = closed_at) is not a close
//   R5 every CLOSED order released to Redis exactly once: its id is in the SKU's `released` set, its
//      release is marked applied (settled_at), and Redis remaining = stock − units held by UNPAID/PAID
//      − units still reserved in flight (a double release shows as remaining too high, a lost one
//      as too low); each user's Redis holding = their UNPAID/PAID units + in-flight units
//   R6 no order both paid and closed: every order a payer got 200 PAID for is PAID
//   R7 every dead-lettered message accounted for: an order message whose id the API acknowledged must
//      still be in MySQL (else it is a lost 202); a timeout/retry dead letter's order must have been
//      finished since (PAID or CLOSED), not left UNPAID past its due time; unparseable records are listed.
import type { Pool } from 'mysql2/promise';
import type { KafkaGateway } from '../../controller/infra/kafka.ts';
import type { Redis } from '../../controller/infra/redis.ts';
import type { DeadLetter } from '../../controller/dataplane/messages.ts';
import type { FlashSale } from '../../controller/spec/flashsale.ts';
import { saleNames } from '../../controller/spec/names.ts';
import { uniqueName } from './infra.ts';

export interface AcknowledgedOrder {
  userId: string;
  skuId: string;
  quantity: number;
}

export interface CheckInput {
  pool: Pool;
  redis: Redis;
  sale: FlashSale;
  /** Every order the API answered 202 for. */
  acknowledged: Map<string, AcknowledgedOrder>;
  /** Orders a payer got 200 PAID for. */
  paid: Set<string>;
  /** Dead letters to account for; read from the sale's dead-letter topic when `kafka` is given instead. */
  deadLetters?: DeadLetter[];
  kafka?: KafkaGateway;
  /** Current time (for "overdue"); default Date.now. */
  now?: number;
}

export interface CheckResult {
  violations: string[];
  /** Figures for reports: rows by status, units, dead letters read. */
  summary: { rows: number; unpaid: number; paid: number; closed: number; acknowledged: number; deadLetters: number; releasesPending: number; inFlight: number };
}

interface OrderRow {
  order_id: string;
  sku_id: string;
  user_id: string;
  quantity: number;
  status: 'UNPAID' | 'PAID' | 'CLOSED';
  due_at: Date;
  closed_at: Date | null;
  settled_at: Date | null;
}

const SHOW = 20;
function ids(list: string[]): string {
  return list.length <= SHOW ? list.join(', ') : `${list.slice(0, SHOW).join(', ')} … (+${list.length - SHOW} more)`;
}

export async function checkInvariants(input: CheckInput): Promise<CheckResult> {
  const { pool, redis, sale, acknowledged, paid } = input;
  const names = saleNames(sale.metadata);
  const now = input.now ?? Date.now();
  const violations: string[] = [];

  const [orderRows] = await pool.query('SELECT order_id, sku_id, user_id, quantity, status, due_at, closed_at, settled_at FROM orders WHERE sale = ?', [names.key]);
  const rows = orderRows as OrderRow[];
  const byId = new Map<string, OrderRow[]>();
  for (const r of rows) byId.set(r.order_id, [...(byId.get(r.order_id) ?? []), r]);

  // R1
  const missing: string[] = [];
  const twice: string[] = [];
  const mismatched: string[] = [];
  for (const [id, o] of acknowledged) {
    const found = byId.get(id) ?? [];
    if (found.length === 0) missing.push(id);
    else if (found.length > 1) twice.push(id);
    else {
      const r = found[0] as OrderRow;
      if (r.user_id !== o.userId || r.sku_id !== o.skuId || Number(r.quantity) !== o.quantity) mismatched.push(`${id} (acknowledged ${o.userId}/${o.skuId}×${o.quantity}, MySQL ${r.user_id}/${r.sku_id}×${r.quantity})`);
    }
  }
  if (missing.length) violations.push(`R1 lost 202 orders: ${missing.length} acknowledged order(s) not in MySQL: ${ids(missing)}`);
  if (twice.length) violations.push(`R1 orders in MySQL more than once: ${ids(twice)}`);
  if (mismatched.length) violations.push(`R1 orders in MySQL differ from what was acknowledged: ${ids(mismatched)}`);

  // R2, R3, R5 per SKU
  const held = (r: OrderRow) => r.status === 'UNPAID' || r.status === 'PAID';
  let inFlightTotal = 0;
  for (const sku of sale.spec.skus) {
    const skuRows = rows.filter((r) => r.sku_id === sku.id);
    const heldUnits = skuRows.filter(held).reduce((s, r) => s + Number(r.quantity), 0);
    if (heldUnits > sku.stock) violations.push(`R2 oversold ${sku.id}: ${heldUnits} units UNPAID/PAID > stock ${sku.stock}`);
    const perUser = new Map<string, { units: number; orders: string[] }>();
    for (const r of skuRows.filter(held)) {
      const u = perUser.get(r.user_id) ?? { units: 0, orders: [] };
      u.units += Number(r.quantity);
      u.orders.push(r.order_id);
      perUser.set(r.user_id, u);
    }
    const over = [...perUser].filter(([, u]) => u.units > sale.spec.perUserLimit);
    if (over.length) violations.push(`R3 ${sku.id}: users above the limit ${sale.spec.perUserLimit}: ${ids(over.map(([user, u]) => `${user}=${u.units} (${u.orders.join(' ')})`))}`);

    const k = names.redis.sku(sku.id);
    const [stockRaw, seededRaw, holdings, reservations, releasedIds] = await Promise.all([
      redis.get(k.stock),
      redis.get(k.seeded),
      redis.hgetall(k.holdings),
      redis.hgetall(k.reservations),
      redis.smembers(k.released),
    ]);
    if (stockRaw === null || seededRaw === null) {
      violations.push(`R5 ${sku.id}: no stock in Redis (stock=${stockRaw}, seeded=${seededRaw}); the sale cannot sell and its releases cannot be checked`);
      continue;
    }
    const inFlight = new Map<string, number>();
    for (const [, json] of Object.entries(reservations)) {
      try {
        const r = JSON.parse(json) as { userId: string; quantity: number };
        inFlight.set(r.userId, (inFlight.get(r.userId) ?? 0) + Number(r.quantity));
      } catch {
        violations.push(`R5 ${sku.id}: unreadable reservation record ${json.slice(0, 80)}`);
      }
    }
    const inFlightUnits = [...inFlight.values()].reduce((a, b) => a + b, 0);
    inFlightTotal += inFlightUnits;
    const remaining = Number(stockRaw);
    const expected = sku.stock - heldUnits - inFlightUnits;
    if (remaining !== expected) {
      violations.push(`R5 ${sku.id}: Redis remaining ${remaining} ≠ stock ${sku.stock} − UNPAID/PAID ${heldUnits} − in flight ${inFlightUnits} = ${expected} (${remaining > expected ? 'units given back twice or never taken' : 'releases lost'})`);
    }
    const released = new Set(releasedIds);
    const closed = skuRows.filter((r) => r.status === 'CLOSED');
    const notReleased = closed.filter((r) => !released.has(r.order_id)).map((r) => r.order_id);
    if (notReleased.length) violations.push(`R5 ${sku.id}: CLOSED orders whose units never came back (not in the released set): ${ids(notReleased)}`);
    const releasedButHeld = skuRows.filter((r) => held(r) && released.has(r.order_id)).map((r) => `${r.order_id}(${r.status})`);
    if (releasedButHeld.length) violations.push(`R5 ${sku.id}: orders released to Redis but still UNPAID/PAID in MySQL: ${ids(releasedButHeld)}`);
    const unapplied = closed.filter((r) => r.settled_at === null).map((r) => r.order_id);
    if (unapplied.length) violations.push(`R5 ${sku.id}: CLOSED orders whose release is not marked applied (settled_at NULL): ${ids(unapplied)}`);
    const badHoldings: string[] = [];
    const users = new Set([...Object.keys(holdings), ...perUser.keys(), ...inFlight.keys()]);
    for (const u of users) {
      const want = (perUser.get(u)?.units ?? 0) + (inFlight.get(u) ?? 0);
      const got = Number(holdings[u] ?? 0);
      if (want !== got) badHoldings.push(`${u}: Redis ${got}, MySQL+in flight ${want}`);
    }
    if (badHoldings.length) violations.push(`R5 ${sku.id}: user holdings in Redis differ from MySQL: ${ids(badHoldings)}`);
  }
  const unknownSku = rows.filter((r) => !sale.spec.skus.some((s) => s.id === r.sku_id)).map((r) => r.order_id);
  if (unknownSku.length) violations.push(`R2 orders of SKUs not in the sale: ${ids(unknownSku)}`);

  // R4
  // An order the writer recorded CLOSED on arrival because the reaper had returned its units (written
  // with its release settled, settled_at = closed_at: it was never UNPAID, and the API did not
  // acknowledge it) is a late order kept for the record, not a close; every other CLOSED row — a
  // close by the closer or the scan (its release marked later, or not yet) or any acknowledged
  // order — must not be before its due time. (A close marked within the millisecond it was made
  // would pass for a late order too unless acknowledged: the rule sees early closes of acknowledged
  // orders always, of others unless marked that fast.)
  const lateOnArrival = (r: OrderRow) => !acknowledged.has(r.order_id) && r.settled_at !== null && r.closed_at !== null && r.settled_at.getTime() === r.closed_at.getTime();
  const early = rows.filter((r) => r.status === 'CLOSED' && !lateOnArrival(r) && (r.closed_at === null || r.closed_at.getTime() < r.due_at.getTime()));
  if (early.length) violations.push(`R4 closed before due: ${ids(early.map((r) => `${r.order_id} (closed ${r.closed_at?.toISOString() ?? 'null'} < due ${r.due_at.toISOString()}${acknowledged.has(r.order_id) ? ', acknowledged 202' : ''})`))}`);

  // R6
  const paidNotPaid = [...paid].filter((id) => byId.get(id)?.[0]?.status !== 'PAID');
  if (paidNotPaid.length) violations.push(`R6 paid (200 PAID) but not PAID in MySQL: ${ids(paidNotPaid.map((id) => `${id}=${byId.get(id)?.[0]?.status ?? 'missing'}`))}`);

  // R7
  const deadLetters = input.deadLetters ?? (input.kafka ? await readDeadLetters(input.kafka, names.topics.deadLetter) : []);
  const unexplained: string[] = [];
  for (const d of deadLetters) {
    let orderId: string | undefined;
    try {
      orderId = d.value && d.valueEncoding === 'utf8' ? (JSON.parse(d.value) as { orderId?: string }).orderId : undefined;
    } catch {
      orderId = undefined;
    }
    const where = `${d.source}@${d.topic}/${d.partition}/${d.offset} "${d.reason}"`;
    if (!orderId) {
      // Not an order at all (poison bytes): accounted for only if no acknowledged order could be in it.
      unexplained.push(`${where}: no order id in the record`);
      continue;
    }
    const row = byId.get(orderId)?.[0];
    if (d.source === 'orders') {
      if (acknowledged.has(orderId) && !row) unexplained.push(`${where}: acknowledged order ${orderId} dead-lettered and not in MySQL`);
    } else if (!row) {
      unexplained.push(`${where}: order ${orderId} not in MySQL`);
    } else if (row.status === 'UNPAID' && row.due_at.getTime() <= now) {
      unexplained.push(`${where}: order ${orderId} still UNPAID past its due time`);
    }
  }
  if (unexplained.length) violations.push(`R7 dead letters not accounted for: ${ids(unexplained)}`);

  const count = (s: string) => rows.filter((r) => r.status === s).length;
  return {
    violations,
    summary: {
      rows: rows.length,
      unpaid: count('UNPAID'),
      paid: count('PAID'),
      closed: count('CLOSED'),
      acknowledged: acknowledged.size,
      deadLetters: deadLetters.length,
      releasesPending: rows.filter((r) => r.status === 'CLOSED' && r.settled_at === null).length,
      inFlight: inFlightTotal,
    },
  };
}

/** checkInvariants, throwing one error that lists every violation (with the offending ids). */
export async function assertInvariants(input: CheckInput): Promise<CheckResult> {
  const result = await checkInvariants(input);
  if (result.violations.length) throw new Error(`${result.violations.length} invariant violation(s):\n  ${result.violations.join('\n  ')}\nsummary ${JSON.stringify(result.summary)}`);
  return result;
}

/** Every record of the dead-letter topic, read from the beginning up to the current high watermarks. */
export async function readDeadLetters(kafka: KafkaGateway, topic: string, timeoutMs = 60_000): Promise<DeadLetter[]> {
  const admin = await kafka.admin();
  const highs = new Map((await admin.topicOffsets(topic)).map((p) => [p.partition, BigInt(p.high)]));
  const lows = new Map((await admin.topicOffsets(topic)).map((p) => [p.partition, BigInt(p.low)]));
  const pending = new Set([...highs].filter(([p, h]) => h > (lows.get(p) ?? 0n)).map(([p]) => p));
  if (pending.size === 0) return [];
  const got: DeadLetter[] = [];
  const consumer = kafka.consumer({ groupId: `checker-${uniqueName()}`, topics: [topic], fromBeginning: true });
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  await consumer.start(async (batch) => {
    for (const m of batch.messages) {
      if (BigInt(m.offset) >= (highs.get(batch.partition) ?? 0n)) continue;
      try {
        got.push(JSON.parse(m.value?.toString('utf8') ?? 'null') as DeadLetter);
      } catch {
        got.push({ v: 1, source: 'orders', reason: 'checker: unreadable dead-letter record', topic, partition: batch.partition, offset: m.offset, key: m.key, value: null, valueEncoding: 'utf8', valueBytes: m.value?.length ?? 0, truncated: false, at: 0 });
      }
    }
    const last = batch.messages.at(-1);
    if (last && BigInt(last.offset) + 1n >= (highs.get(batch.partition) ?? 0n)) pending.delete(batch.partition);
    if (pending.size === 0) done();
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([finished, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`dead letters of ${topic} not read within ${timeoutMs} ms`)), timeoutMs)))]);
  } finally {
    clearTimeout(timer);
    await consumer.stop();
  }
  return got;
}

export interface QuietInput {
  pool: Pool;
  redis: Redis;
  kafka: KafkaGateway;
  sale: FlashSale;
  /** Give up (throw) after this long. */
  timeoutMs?: number;
  /** Also wait until no reservation is in flight (every accepted order reached MySQL or was reaped). */
  noInFlight?: boolean;
  /** Extra condition, e.g. "the compensator has run since". */
  also?: () => Promise<boolean>;
}

/** What still keeps the system from being quiet; empty when it is. */
export async function notQuiet(q: QuietInput): Promise<string[]> {
  const names = saleNames(q.sale.metadata);
  const why: string[] = [];
  const admin = await q.kafka.admin();
  const highs = await admin.topicOffsets(names.topics.orders);
  const committed = new Map((await admin.groupOffsets(names.groups.orderWriter, [names.topics.orders])).map((c) => [c.partition, c.offset]));
  for (const h of highs) {
    const c = BigInt(committed.get(h.partition) ?? h.low);
    if (c < BigInt(h.high)) why.push(`order writer lag on partition ${h.partition}: ${BigInt(h.high) - c}`);
  }
  const [overdue] = await q.pool.query("SELECT COUNT(*) AS n FROM orders WHERE sale = ? AND status = 'UNPAID' AND due_at <= UTC_TIMESTAMP(3)", [names.key]);
  const n = Number((overdue as { n: number }[])[0]?.n ?? 0);
  if (n > 0) why.push(`${n} UNPAID order(s) overdue`);
  const [pending] = await q.pool.query("SELECT COUNT(*) AS n FROM orders WHERE sale = ? AND status = 'CLOSED' AND settled_at IS NULL", [names.key]);
  const p = Number((pending as { n: number }[])[0]?.n ?? 0);
  if (p > 0) why.push(`${p} release(s) pending`);
  if (q.noInFlight) {
    for (const sku of q.sale.spec.skus) {
      const f = await q.redis.hlen(names.redis.sku(sku.id).reservations);
      if (f > 0) why.push(`${sku.id}: ${f} reservation(s) in flight`);
    }
  }
  if (q.also && !(await q.also())) why.push('extra condition not met');
  return why;
}

/** Waits (with a deadline) until the order writer has no lag, nothing is overdue and unclosed, and no release is pending. */
export async function waitQuiet(q: QuietInput): Promise<void> {
  const deadline = Date.now() + (q.timeoutMs ?? 120_000);
  let last: string[] = ['not checked yet'];
  while (Date.now() < deadline) {
    try {
      last = await notQuiet(q);
      if (last.length === 0) return;
    } catch (err) {
      last = [`check failed: ${String(err)}`];
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`the system did not become quiet within ${q.timeoutMs ?? 120_000} ms: ${last.join('; ')}`);
}
