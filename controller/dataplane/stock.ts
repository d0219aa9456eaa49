// Stock of a sale's SKUs in Redis. Every decision that changes stock is one Lua script over the keys
// of one SKU (one hash tag), so it is atomic and also runs on Redis Cluster. ioredis's defineCommand
// sends EVALSHA and reloads the script on NOSCRIPT.
//
// Lifecycle of the units of one order:
//   reserve   stock -= q, holdings[user] += q, reservation record written          (API)
//   claim     reservation record removed, order id added to `claimed`: on its way into MySQL (order writer)
//   release   stock += q, holdings[user] -= q, order id added to `released`         (close, reaper, failed hand-off)
// `claim` and the reservation-release both delete the reservation record first, so for an order
// still in Kafka exactly one of them wins; `released` makes every release idempotent by order id.
// Each of the three also raises the SKU's counter `seq` and returns it: workers remember the highest
// value, and a lower one shows that Redis went back in time (restore-fence.ts).
import { randomUUID } from 'node:crypto';
import type { Redis } from '../infra/redis.ts';
import type { FlashSale } from '../spec/flashsale.ts';
import { saleNames, type NameOptions } from '../spec/names.ts';

// Helpers the batch scripts share. Each redis.call costs Redis more than the work it asks for (a
// command object, argument conversion, dispatch, the reply turned into Lua values: about 0.7 µs,
// from INFO commandstats on 2026-12-05 against ~0.2-0.7 µs for the commands themselves), so the batch
// scripts read and write all of a batch's fields with one variadic command per key instead of a few
// commands per order. Chunks of 1000 arguments keep unpack below Lua's C-stack limit (8000).
const BATCH_HELPERS = `
local function fetch(cmd, key, fields)
  local all = {}
  for i = 1, #fields, 1000 do
    local part = redis.call(cmd, key, unpack(fields, i, math.min(i + 999, #fields)))
    for j = 1, #part do all[#all + 1] = part[j] end
  end
  return all
end
local function store(cmd, key, args)
  local n = 0
  for i = 1, #args, 1000 do n = n + redis.call(cmd, key, unpack(args, i, math.min(i + 999, #args))) end
  return n
end
`;

// KEYS: stock, holdings, lastOrder, reservations, reservationTimes, seq, suspended.
// ARGV: one reservation after another, six values each: userId, quantity, per-user limit, orderId,
// reservation record (JSON), reservedAt. The reserves of one event-loop turn share one call per SKU
// (PerTurn below); they are decided one after another, as separate calls would be, in the order asked,
// on local copies of the stock and the users' holdings, then written with one command per key.
// Returns three values per reservation: code (1 reserved, -1 the SKU has no keys, -2 the user holds
// the limit, -3 sold out, -4 it would have reserved but the sale is suspended), detail (units left
// after it; the user's last order id for -2), the SKU's counter after it (restore-fence.ts; 0 unless
// reserved now).
const RESERVE = `${BATCH_HELPERS}
local out = {}
local n = #ARGV / 6
local stock = redis.call('GET', KEYS[1])
if not stock then
  for j = 1, n do out[3 * j - 2] = -1; out[3 * j - 1] = ''; out[3 * j] = 0 end
  return out
end
stock = tonumber(stock)
local before = stock
local ids, users = {}, {}
for j = 1, n do users[j] = ARGV[6 * j - 5]; ids[j] = ARGV[6 * j - 2] end
-- Keyed by the order id the API chose before calling: when the reply of a first run was lost and
-- the client resent the command, the re-run answers like the first one instead of reserving twice
-- (or answering ALREADY_ORDERED for the buyer's own order, which would then never reach Kafka).
local known = fetch('HMGET', KEYS[4], ids)
local heldBefore = fetch('HMGET', KEYS[2], users)
-- spec.suspend refuses only what would reserve: a re-run, a buyer at the limit and a sold-out SKU
-- get the answers they would get anyway.
local suspended = redis.call('EXISTS', KEYS[7]) == 1
local held, last, reservedNow, changed = {}, {}, {}, {}
local records, times, seqAt = {}, {}, {}
for j = 1, n do
  local a, o = 6 * (j - 1), 3 * (j - 1)
  local user, orderId = ARGV[a + 1], ARGV[a + 4]
  if known[j] or reservedNow[orderId] then
    out[o + 1] = 1; out[o + 2] = tostring(stock); out[o + 3] = 0
  else
    local qty = tonumber(ARGV[a + 2])
    local h = held[user]
    if h == nil then h = tonumber(heldBefore[j] or '0') end
    if h + qty > tonumber(ARGV[a + 3]) then
      out[o + 1] = -2; out[o + 2] = last[user] or redis.call('HGET', KEYS[3], user) or ''; out[o + 3] = 0
    elseif stock < qty then
      out[o + 1] = -3; out[o + 2] = ''; out[o + 3] = 0
    elseif suspended then
      out[o + 1] = -4; out[o + 2] = ''; out[o + 3] = 0
    else
      stock = stock - qty
      if held[user] == nil then changed[#changed + 1] = user end
      held[user] = h + qty
      last[user] = orderId
      reservedNow[orderId] = true
      records[#records + 1] = orderId; records[#records + 1] = ARGV[a + 5]
      times[#times + 1] = ARGV[a + 6]; times[#times + 1] = orderId
      out[o + 1] = 1; out[o + 2] = tostring(stock); seqAt[#seqAt + 1] = o + 3
    end
  end
end
if #seqAt > 0 then
  redis.call('DECRBY', KEYS[1], before - stock)
  local holdings, lastOrders = {}, {}
  for _, user in ipairs(changed) do
    holdings[#holdings + 1] = user; holdings[#holdings + 1] = held[user]
    lastOrders[#lastOrders + 1] = user; lastOrders[#lastOrders + 1] = last[user]
  end
  store('HSET', KEYS[2], holdings)
  store('HSET', KEYS[3], lastOrders)
  store('HSET', KEYS[4], records)
  store('ZADD', KEYS[5], times)
  -- The counter after each reserve, as if each had raised it by one in turn.
  local first = redis.call('INCRBY', KEYS[6], #seqAt) - #seqAt
  for k, at in ipairs(seqAt) do out[at] = first + k end
end
return out
`;

// KEYS: stock, holdings, lastOrder, reservations, reservationTimes, released, seeded, seq
// ARGV: orderId, userId, quantity. Gives back a reservation only while its record still exists, i.e.
// not yet claimed (failed hand-off, reaper).
// Returns {code, seq}: code 1 released now (seq: the SKU's counter after it, see restore-fence.ts),
// 2 the writer claimed the reservation, 3 released before, -1 the SKU has no keys; seq 0 unless code 1.
const RELEASE = `
-- A SKU whose keys Redis lost gets its units back from the rebuild (which counts CLOSED orders as
-- returned); INCRBY here would create a stock key the API could sell from before the rebuild.
if redis.call('EXISTS', KEYS[7]) == 0 then return {-1, 0} end
if redis.call('HDEL', KEYS[4], ARGV[1]) == 0 then
  if redis.call('SISMEMBER', KEYS[6], ARGV[1]) == 1 then return {3, 0} end
  return {2, 0}
end
redis.call('ZREM', KEYS[5], ARGV[1])
if redis.call('SADD', KEYS[6], ARGV[1]) == 0 then return {3, 0} end
local qty = tonumber(ARGV[3])
redis.call('INCRBY', KEYS[1], qty)
if redis.call('HINCRBY', KEYS[2], ARGV[2], -qty) <= 0 then redis.call('HDEL', KEYS[2], ARGV[2]) end
if redis.call('HGET', KEYS[3], ARGV[2]) == ARGV[1] then redis.call('HDEL', KEYS[3], ARGV[2]) end
return {1, redis.call('INCR', KEYS[8])}
`;

// KEYS: as RELEASE. ARGV: closed orders, three values each: orderId, userId, quantity. Idempotent by
// `released`: an order released before (or earlier in the same call) gives nothing back. The closer
// releases a chunk of closed orders per SKU in one call, with one command per key (BATCH_HELPERS).
// Returns two values per order: code (1 released now, 3 released before, -1 the SKU has no keys) and
// the SKU's counter after it (0 unless code 1).
const RELEASE_ORDERS = `${BATCH_HELPERS}
local out = {}
local n = #ARGV / 3
-- As in RELEASE: a SKU without keys waits for the rebuild.
if redis.call('EXISTS', KEYS[7]) == 0 then
  for j = 1, n do out[2 * j - 1] = -1; out[2 * j] = 0 end
  return out
end
local ids, users = {}, {}
for j = 1, n do ids[j] = ARGV[3 * j - 2]; users[j] = ARGV[3 * j - 1] end
-- SMISMEMBER needs Redis 6.2; an older Redis answers one SISMEMBER per order.
local ok, before = pcall(fetch, 'SMISMEMBER', KEYS[6], ids)
if not ok then
  before = {}
  for j = 1, n do before[j] = redis.call('SISMEMBER', KEYS[6], ids[j]) end
end
local distinct, releasedBy, released, seqAt, releasedUsers, take = {}, {}, {}, {}, {}, {}
local seen, total = {}, 0
for j = 1, n do
  local id, user = ids[j], users[j]
  if not seen[id] then seen[id] = true; distinct[#distinct + 1] = id end
  if before[j] == 1 or releasedBy[id] then
    out[2 * j - 1] = 3; out[2 * j] = 0
  else
    local qty = tonumber(ARGV[3 * j])
    releasedBy[id] = user
    released[#released + 1] = id
    total = total + qty
    if take[user] == nil then take[user] = 0; releasedUsers[#releasedUsers + 1] = user end
    take[user] = take[user] + qty
    out[2 * j - 1] = 1; seqAt[#seqAt + 1] = 2 * j
  end
end
-- Whatever the outcome, the order is no reservation any more (as RELEASE does).
store('HDEL', KEYS[4], distinct)
store('ZREM', KEYS[5], distinct)
if #released > 0 then
  store('SADD', KEYS[6], released)
  redis.call('INCRBY', KEYS[1], total)
  local held = fetch('HMGET', KEYS[2], releasedUsers)
  local last = fetch('HMGET', KEYS[3], releasedUsers)
  local keep, drop, dropLast = {}, {}, {}
  for i, user in ipairs(releasedUsers) do
    local left = tonumber(held[i] or '0') - take[user]
    if left > 0 then keep[#keep + 1] = user; keep[#keep + 1] = left else drop[#drop + 1] = user end
    if last[i] and releasedBy[last[i]] == user then dropLast[#dropLast + 1] = user end
  end
  store('HSET', KEYS[2], keep)
  store('HDEL', KEYS[2], drop)
  store('HDEL', KEYS[3], dropLast)
  local first = redis.call('INCRBY', KEYS[8], #seqAt) - #seqAt
  for k, at in ipairs(seqAt) do out[at] = first + k end
end
return out
`;

// KEYS: reservations, reservationTimes, released, claimed, seq, seeded; ARGV: order ids.
// Returns per order: 1 claimed now, 2 claimed before (redelivery), 0 reaped (stock already returned),
// 3 unknown (Redis neither reserved, claimed nor released it: Redis lost or went back, unless the
// order is in MySQL already); then the SKU's counter after this claim (see restore-fence.ts), 0 when
// the SKU has no keys (lost: every order counts as claimed before, the rebuild counts them).
// An id twice in one call answers the second time as a separate call after the first would.
const CLAIM = `${BATCH_HELPERS}
local out = {}
if redis.call('EXISTS', KEYS[6]) == 0 then
  for i = 1, #ARGV do out[i] = 2 end
  out[#ARGV + 1] = 0
  return out
end
local records = fetch('HMGET', KEYS[1], ARGV)
local first, claimedNow = {}, {}
for i, id in ipairs(ARGV) do
  local f = first[id]
  if f then
    if out[f] == 1 then out[i] = 2 else out[i] = out[f] end
  else
    first[id] = i
    if records[i] then
      out[i] = 1; claimedNow[#claimedNow + 1] = id
    elseif redis.call('SISMEMBER', KEYS[3], id) == 1 then
      out[i] = 0
    elseif redis.call('SISMEMBER', KEYS[4], id) == 1 then
      out[i] = 2
    else
      out[i] = 3
    end
  end
end
if #claimedNow > 0 then
  store('HDEL', KEYS[1], claimedNow)
  store('ZREM', KEYS[2], claimedNow)
  store('SADD', KEYS[4], claimedNow)
end
out[#ARGV + 1] = redis.call('INCR', KEYS[5])
return out
`;

// KEYS: stock, seeded; ARGV: stock. Seeds once; later calls change nothing.
const SEED = `
if redis.call('SET', KEYS[2], ARGV[1], 'NX') then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
return 0
`;

// KEYS: stock, seeded; ARGV: new stock. Returns {1, 0} changed, {0, 0} unchanged, {-1, 0} not seeded,
// {-2, sold} refused because the new stock is below what is already sold.
const ADJUST = `
local seeded = redis.call('GET', KEYS[2])
if not seeded then return {-1, 0} end
local diff = tonumber(ARGV[1]) - tonumber(seeded)
if diff == 0 then return {0, 0} end
local remaining = tonumber(redis.call('GET', KEYS[1]) or '0')
if remaining + diff < 0 then return {-2, tonumber(seeded) - remaining} end
redis.call('INCRBY', KEYS[1], diff)
redis.call('SET', KEYS[2], ARGV[1])
return {1, 0}
`;

// A rebuild writes what MySQL knows (holders and closed order ids, possibly hundreds of thousands)
// into staging keys in chunks, then one script moves them into place and sets the stock last. Until
// then the SKU has no stock key, so no buyer can reserve from a half-built SKU, and no release can
// apply (the release script needs the seeded key). Staging keys carry the rebuild's own token and a
// TTL, so concurrent or crashed rebuilds never mix or leave garbage.
// KEYS: seeded, staged holdings, staged last orders, staged released; ARGV: ttl s, kind, items...
// kind 'holders': (user, units, last order) triples; kind 'closed': order ids.
const REBUILD_STAGE = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if ARGV[2] == 'holders' then
  for i = 3, #ARGV, 3 do
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 2])
  end
else
  for i = 3, #ARGV do redis.call('SADD', KEYS[4], ARGV[i]) end
end
for i = 2, 4 do if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('EXPIRE', KEYS[i], ARGV[1]) end end
return 1
`;

// KEYS: stock, seeded, holdings, last orders, released, staged holdings, staged last orders,
// staged released, seq, claimed; ARGV: stock, remaining, counter (above the SKU's recorded mark).
// Returns 1 rebuilt, 0 the SKU was present (staging dropped).
const REBUILD_FINISH = `
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('DEL', KEYS[6], KEYS[7], KEYS[8])
  return 0
end
for i = 3, 5 do
  redis.call('DEL', KEYS[i])
  if redis.call('EXISTS', KEYS[i + 3]) == 1 then
    redis.call('RENAME', KEYS[i + 3], KEYS[i])
    redis.call('PERSIST', KEYS[i])
  end
end
redis.call('DEL', KEYS[10])
redis.call('SET', KEYS[9], ARGV[3])
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SET', KEYS[1], ARGV[2])
return 1
`;

/**
 * The counter a rebuilt SKU starts from: the next multiple of 2^32 above the recorded mark, an epoch
 * far above any value a worker may have seen but not recorded before Redis lost the SKU (reserves
 * whose claims found the keys missing), so no API replica mistakes the rebuilt SKU for a restore.
 * Exact in doubles far beyond any realistic number of rebuilds.
 */
export function rebuiltCounter(mark: number): number {
  return (Math.floor(mark / 2 ** 32) + 1) * 2 ** 32;
}

/** Items per staging call of a rebuild: bounded so each script call stays small and short. */
export const REBUILD_CHUNK = 5000;

// KEYS: reservations, reservationTimes, claimed, released; ARGV: order ids.
// The API's send succeeded: the order is in Kafka, so the reaper must not return it however long the
// hand-off took (a black-holed broker holds a send for minutes, longer than the reaper's bound).
// Takes the reservation out of the reaper's index while the record still exists. Returns per order:
// 1 the order stands (still reserved, or already claimed by the writer, or Redis lost the SKU: the
// rebuild counts it), 0 the reaper returned it first (the writer will record it CLOSED). Several
// orders per call: the API confirms every order of one produce batch at once. Safe to run twice.
const CONFIRM = `${BATCH_HELPERS}
local out = {}
-- Every id in the reaper's index has its record (they are added and removed together; confirming
-- removes an id from the index alone), so when all of them were there, all of them stand.
local removed = store('ZREM', KEYS[2], ARGV)
if removed == #ARGV then
  for i = 1, #ARGV do out[i] = 1 end
  return out
end
for i, id in ipairs(ARGV) do
  -- Only an order the reaper returned answers 0: no record left, never claimed, released.
  local reaped = redis.call('HEXISTS', KEYS[1], id) == 0 and redis.call('SISMEMBER', KEYS[3], id) == 0
    and redis.call('SISMEMBER', KEYS[4], id) == 1
  if reaped then out[i] = 0 else out[i] = 1 end
end
return out
`;

/** Orders per confirmation call: keeps one script run short (Redis runs nothing else meanwhile). */
const CONFIRM_CHUNK = 1000;

/** Closed orders per release call, for the same reason. */
const RELEASE_CHUNK = 1000;

/** Reservations per reserve call, for the same reason (a reserve costs Redis a few µs: 256 ≈ 1-2 ms). */
const RESERVE_CHUNK = 256;

type Scripted = Redis & {
  fsReserve(...args: (string | number)[]): Promise<(number | string)[]>;
  fsRelease(...args: (string | number)[]): Promise<[number, number]>;
  fsReleaseOrders(...args: (string | number)[]): Promise<number[]>;
  fsClaim(...args: string[]): Promise<number[]>;
  fsConfirm(...args: string[]): Promise<number[]>;
  fsSeed(...args: (string | number)[]): Promise<number>;
  fsAdjust(...args: (string | number)[]): Promise<[number, number]>;
  fsRebuildStage(...args: (string | number)[]): Promise<number>;
  fsRebuildFinish(...args: (string | number)[]): Promise<number>;
};

function withScripts(redis: Redis): Scripted {
  const r = redis as Scripted;
  if (typeof r.fsReserve !== 'function') {
    redis.defineCommand('fsReserve', { numberOfKeys: RESERVE_KEYS.length, lua: RESERVE });
    redis.defineCommand('fsRelease', { numberOfKeys: 8, lua: RELEASE });
    redis.defineCommand('fsReleaseOrders', { numberOfKeys: 8, lua: RELEASE_ORDERS });
    redis.defineCommand('fsClaim', { numberOfKeys: 6, lua: CLAIM });
    redis.defineCommand('fsConfirm', { numberOfKeys: 4, lua: CONFIRM });
    redis.defineCommand('fsSeed', { numberOfKeys: 2, lua: SEED });
    redis.defineCommand('fsAdjust', { numberOfKeys: 2, lua: ADJUST });
    redis.defineCommand('fsRebuildStage', { numberOfKeys: 4, lua: REBUILD_STAGE });
    redis.defineCommand('fsRebuildFinish', { numberOfKeys: 10, lua: REBUILD_FINISH });
  }
  return r;
}

export interface Reservation {
  orderId: string;
  userId: string;
  skuId: string;
  quantity: number;
  /** Epoch ms at which the API reserved the stock. */
  reservedAt: number;
}

export type ReserveResult =
  /** seq: the SKU's counter after this reserve (restore-fence.ts); 0 when it answered a re-run of the same order. */
  | { outcome: 'reserved'; remaining: number; seq: number }
  | { outcome: 'sold-out' }
  | { outcome: 'already-ordered'; orderId: string }
  /** spec.suspend: nothing reserved (the operator set the SKU's switch). */
  | { outcome: 'suspended' }
  | { outcome: 'sku-not-found' };

export interface SkuLevel {
  stock: number;
  remaining: number;
}

export type ClaimResult = 'claimed' | 'claimed-before' | 'reaped' | 'unknown';

export type ReservationRelease = 'released' | 'claimed' | 'released-before' | 'no-stock-keys';

/** A closed order's release; seq: the SKU's counter after a release applied now (0 otherwise). */
export interface OrderRelease {
  outcome: 'released' | 'released-before' | 'no-stock-keys';
  seq: number;
}

export type AdjustResult = { outcome: 'changed' | 'unchanged' | 'not-seeded' } | { outcome: 'below-sold'; sold: number };

/** Units a SKU holds in MySQL: UNPAID + PAID orders per user, and the ids of CLOSED orders. */
export interface SkuLedger {
  heldByUser: Map<string, number>;
  /** The latest UNPAID/PAID order id of each user in heldByUser. */
  lastOrderByUser: Map<string, string>;
  closedOrderIds: string[];
  /** The SKU's recorded counter mark (sku_marks, see restore-fence.ts); the rebuild sets the counter above it. */
  mark?: number;
}

/**
 * Gathers the calls made in one event-loop turn per SKU and hands each SKU's, in the order made and
 * at most `chunk` at a time, to `run`, which answers each item of its list (same order). The API's
 * reserves and hand-off confirmations and the closer's releases go through it: per script call Redis pays the dispatch and
 * ioredis a command object and a reply, which cost more than one order's share of the script (a
 * scratch run, 256 reserves in flight: client 10–15 and redis-server 17–19 µs per reserve one call
 * each; 3.5–4 and 10.5–14.6 batched).
 */
class PerTurn<I, O> {
  private pending = new Map<string, { item: I; resolve: (v: O) => void; reject: (e: unknown) => void }[]>();
  private readonly chunk: number;
  private readonly run: (skuId: string, items: I[]) => Promise<O[]>;

  constructor(chunk: number, run: (skuId: string, items: I[]) => Promise<O[]>) {
    this.chunk = chunk;
    this.run = run;
  }

  add(skuId: string, item: I): Promise<O> {
    return new Promise((resolve, reject) => {
      let list = this.pending.get(skuId);
      if (!list) {
        list = [];
        this.pending.set(skuId, list);
        if (this.pending.size === 1) setImmediate(() => this.flush());
      }
      list.push({ item, resolve, reject });
    });
  }

  private flush(): void {
    const all = this.pending;
    this.pending = new Map();
    for (const [skuId, list] of all) {
      for (let i = 0; i < list.length; i += this.chunk) {
        const part = list.slice(i, i + this.chunk);
        this.run(skuId, part.map((p) => p.item)).then(
          (out) => part.forEach((p, j) => p.resolve(out[j] as O)),
          (err: unknown) => part.forEach((p) => p.reject(err)),
        );
      }
    }
  }
}

type SkuKeys = ReturnType<ReturnType<typeof saleNames>['redis']['sku']>;

/** The reserve script's KEYS, in its order: its key count and every caller's arguments come from this one list. */
const RESERVE_KEYS = ['stock', 'holdings', 'lastOrder', 'reservations', 'reservationTimes', 'seq', 'suspended'] as const satisfies readonly (keyof SkuKeys)[];

/** The reserve script's KEYS for one SKU. The benchmark's floors call the script directly with these, so a key added reaches them too. */
export function reserveKeys(k: SkuKeys): string[] {
  return RESERVE_KEYS.map((f) => k[f]);
}

function reserveResult(code: number, detail: string, seq: number): ReserveResult {
  switch (code) {
    case 1:
      return { outcome: 'reserved', remaining: Number(detail), seq };
    case -2:
      return { outcome: 'already-ordered', orderId: detail };
    case -3:
      return { outcome: 'sold-out' };
    case -4:
      return { outcome: 'suspended' };
    default:
      return { outcome: 'sku-not-found' };
  }
}

export class StockStore {
  private readonly redis: Scripted;
  private readonly names: ReturnType<typeof saleNames>;
  /** Reserves of this turn, one script call per SKU (see reserve). */
  private readonly reserves = new PerTurn<(string | number)[], ReserveResult>(RESERVE_CHUNK, async (skuId, reservations) => {
    const k = this.keys(skuId);
    const out = await this.redis.fsReserve(...reserveKeys(k), ...reservations.flat());
    return reservations.map((_, j) => reserveResult(Number(out[3 * j]), String(out[3 * j + 1]), Number(out[3 * j + 2])));
  });
  /** Releases of closed orders asked for in this turn, one script call per SKU (see releaseOrders). */
  private readonly releases = new PerTurn<(string | number)[], OrderRelease>(RELEASE_CHUNK, async (skuId, rows) => {
    const k = this.keys(skuId);
    const codes = await this.redis.fsReleaseOrders(k.stock, k.holdings, k.lastOrder, k.reservations, k.reservationTimes, k.released, k.seeded, k.seq, ...rows.flat());
    return rows.map((_, j) => {
      const code = Number(codes[2 * j]);
      return { outcome: code === 1 ? 'released' : code === 3 ? 'released-before' : 'no-stock-keys', seq: Number(codes[2 * j + 1]) };
    });
  });
  /** Hand-off confirmations of this turn, one script call per SKU (see confirmHandOff). */
  private readonly confirmations = new PerTurn<string, 'kept' | 'reaped'>(CONFIRM_CHUNK, async (skuId, orderIds) => {
    const k = this.keys(skuId);
    const codes = await this.redis.fsConfirm(k.reservations, k.reservationTimes, k.claimed, k.released, ...orderIds);
    return orderIds.map((_, j) => (codes[j] === 0 ? 'reaped' : 'kept'));
  });

  constructor(redis: Redis, sale: Pick<FlashSale, 'metadata'>, nameOptions: NameOptions = {}) {
    this.redis = withScripts(redis);
    this.names = saleNames(sale.metadata, nameOptions);
  }

  /** Key names per SKU, built once: reserve runs for every purchase. Bounded by the SKUs asked about. */
  private readonly keyCache = new Map<string, SkuKeys>();

  private keys(skuId: string) {
    let k = this.keyCache.get(skuId);
    if (!k) {
      k = this.names.redis.sku(skuId);
      // A SKU id comes from a validated request or message; the bound keeps a stream of unknown ids harmless.
      if (this.keyCache.size < 10_000) this.keyCache.set(skuId, k);
    }
    return k;
  }

  /** Seeds a SKU's stock once; returns true when this call seeded it. */
  async seed(skuId: string, stock: number): Promise<boolean> {
    const k = this.keys(skuId);
    return (await this.redis.fsSeed(k.stock, k.seeded, stock)) === 1;
  }

  /** Applies a changed spec stock: a raise adds the difference; a cut is refused below what is sold. */
  async adjust(skuId: string, stock: number): Promise<AdjustResult> {
    const k = this.keys(skuId);
    const [code, sold] = await this.redis.fsAdjust(k.stock, k.seeded, stock);
    if (code === 1) return { outcome: 'changed' };
    if (code === 0) return { outcome: 'unchanged' };
    if (code === -1) return { outcome: 'not-seeded' };
    return { outcome: 'below-sold', sold: Number(sold) };
  }

  /**
   * Rebuilds a SKU whose keys Redis lost from what MySQL holds; false when the SKU was present.
   * Any size: staged in chunks of REBUILD_CHUNK, made visible at once by the last call (see REBUILD_STAGE).
   * `counter` is where the SKU's counter starts; a caller that records it first passes the value it
   * recorded (ensureStock).
   */
  async rebuild(skuId: string, stock: number, ledger: SkuLedger, counter = rebuiltCounter(ledger.mark ?? 0), chunk = REBUILD_CHUNK): Promise<boolean> {
    const k = this.keys(skuId);
    const token = randomUUID();
    const staged = [`${k.holdings}:rebuild:${token}`, `${k.lastOrder}:rebuild:${token}`, `${k.released}:rebuild:${token}`];
    const ttl = 3600;
    let held = 0;
    let triples: (string | number)[] = [];
    const stage = async (kind: 'holders' | 'closed', items: (string | number)[]) => {
      if (items.length === 0) return true;
      return (await this.redis.fsRebuildStage(k.seeded, ...staged, ttl, kind, ...items)) === 1;
    };
    try {
      for (const [user, units] of ledger.heldByUser) {
        held += units;
        // The user's latest order, so a retried purchase still learns its order id after a rebuild.
        triples.push(user, units, ledger.lastOrderByUser.get(user) ?? '');
        if (triples.length >= chunk * 3) {
          if (!(await stage('holders', triples))) return false;
          triples = [];
        }
      }
      if (!(await stage('holders', triples))) return false;
      for (let i = 0; i < ledger.closedOrderIds.length; i += chunk) {
        if (!(await stage('closed', ledger.closedOrderIds.slice(i, i + chunk)))) return false;
      }
      const remaining = Math.max(0, stock - held);
      return (await this.redis.fsRebuildFinish(k.stock, k.seeded, k.holdings, k.lastOrder, k.released, ...staged, k.seq, k.claimed, stock, remaining, counter)) === 1;
    } finally {
      // After success the staging keys were renamed away; after a refusal or an error, drop them now.
      await this.redis.del(...staged).catch(() => undefined);
    }
  }

  /** Seeded stock and remaining units, or null when the SKU has no keys. */
  async level(skuId: string): Promise<SkuLevel | null> {
    return (await this.state(skuId)).level;
  }

  /** level() and whether the SKU's switch refuses new reservations (spec.suspend), in one read. */
  async state(skuId: string): Promise<{ level: SkuLevel | null; suspended: boolean }> {
    const k = this.keys(skuId);
    const [seeded, remaining, suspended] = await this.redis.mget(k.seeded, k.stock, k.suspended);
    return { level: seeded === null || remaining === null ? null : { stock: Number(seeded), remaining: Number(remaining) }, suspended: suspended !== null };
  }

  /**
   * Sets or clears the SKU's switch the reserve script reads (spec.suspend); true when this call
   * changed it. Set before a SKU is seeded, so a SKU added to a suspended sale never sells early.
   */
  async setSuspended(skuId: string, suspended: boolean): Promise<boolean> {
    const k = this.keys(skuId);
    return suspended ? (await this.redis.set(k.suspended, '1', 'NX')) === 'OK' : (await this.redis.del(k.suspended)) === 1;
  }

  /**
   * Reserves for one order. The reserves asked for in one event-loop turn share one script call per
   * SKU (RESERVE_CHUNK at most), run in the order they were asked for.
   */
  reserve(r: Reservation, perUserLimit: number): Promise<ReserveResult> {
    return this.reserves.add(r.skuId, [r.userId, r.quantity, perUserLimit, r.orderId, JSON.stringify(r), r.reservedAt]);
  }

  /**
   * Gives back a reservation that never became an order (failed hand-off, reaper). Only `released`
   * returned units now; `claimed` means the order writer has the order (it reached Kafka).
   */
  async releaseReservation(r: Pick<Reservation, 'orderId' | 'userId' | 'skuId' | 'quantity'>): Promise<ReservationRelease> {
    const [code] = await this.release(r);
    return code === 1 ? 'released' : code === 2 ? 'claimed' : code === 3 ? 'released-before' : 'no-stock-keys';
  }

  /**
   * After a successful hand-off to Kafka: keeps the reaper off the reservation (see CONFIRM).
   * `reaped` means the reaper returned the units before the send completed: the order must not be
   * acknowledged (the writer will record it CLOSED). Calls made in the same turn of the event loop
   * (every order of one produce batch is answered in one turn) share one script call per SKU: one
   * Redis command per batch instead of one per order.
   */
  confirmHandOff(r: Pick<Reservation, 'orderId' | 'skuId'>): Promise<'kept' | 'reaped'> {
    return this.confirmations.add(r.skuId, r.orderId);
  }


  /**
   * Returns the units of a closed order; a second call for the same order is a no-op (false), and so
   * is a call for a SKU whose keys Redis lost (the rebuild from MySQL returns those units).
   */
  async releaseOrder(r: Pick<Reservation, 'orderId' | 'userId' | 'skuId' | 'quantity'>): Promise<boolean> {
    return (await this.releaseOrderOutcome(r)) === 'released';
  }

  /**
   * releaseOrder with its outcome. `no-stock-keys` means nothing happened: the release is still owed
   * (the rebuild may have counted the order as held, from a ledger read before the close committed).
   */
  async releaseOrderOutcome(r: Pick<Reservation, 'orderId' | 'userId' | 'skuId' | 'quantity'>): Promise<OrderRelease['outcome']> {
    return ((await this.releaseOrders([r]))[0] as OrderRelease).outcome;
  }

  /**
   * Releases of closed orders, any SKUs: the releases asked for in one event-loop turn share one
   * script call per SKU and RELEASE_CHUNK orders (see RELEASE_ORDERS). Answers in the order given.
   */
  releaseOrders(rows: readonly Pick<Reservation, 'orderId' | 'userId' | 'skuId' | 'quantity'>[]): Promise<OrderRelease[]> {
    return Promise.all(rows.map((r) => this.releases.add(r.skuId, [r.orderId, r.userId, r.quantity])));
  }

  private release(r: Pick<Reservation, 'orderId' | 'userId' | 'skuId' | 'quantity'>) {
    const k = this.keys(r.skuId);
    return this.redis.fsRelease(k.stock, k.holdings, k.lastOrder, k.reservations, k.reservationTimes, k.released, k.seeded, k.seq, r.orderId, r.userId, r.quantity);
  }

  /** Marks the orders of one SKU as on their way into MySQL (see the file comment). */
  async claim(skuId: string, orderIds: string[]): Promise<ClaimResult[]> {
    return (await this.claimWithSeq(skuId, orderIds)).results;
  }

  /** claim, with the SKU's counter after it (0 when the SKU has no keys; see restore-fence.ts). */
  async claimWithSeq(skuId: string, orderIds: string[]): Promise<{ results: ClaimResult[]; seq: number }> {
    if (orderIds.length === 0) return { results: [], seq: 0 };
    const k = this.keys(skuId);
    const codes = await this.redis.fsClaim(k.reservations, k.reservationTimes, k.released, k.claimed, k.seq, k.seeded, ...orderIds);
    const seq = Number(codes.pop() ?? 0);
    return { results: codes.map((c) => (c === 1 ? 'claimed' : c === 2 ? 'claimed-before' : c === 0 ? 'reaped' : 'unknown')), seq };
  }

  /** The SKU's counter in Redis (0 when absent). */
  async seq(skuId: string): Promise<number> {
    return Number((await this.redis.get(this.keys(skuId).seq)) ?? 0);
  }

  /**
   * Deletes every key of the SKU at once (Redis went back in time, see restore-fence.ts): the API
   * answers 503 and releases stay owed until the rebuild from MySQL, as after a loss.
   */
  async fence(skuId: string): Promise<void> {
    await this.redis.del(...Object.values(this.keys(skuId)));
  }

  /** Reservations of a SKU made before `olderThanMs` (epoch ms) that no writer has claimed. */
  async staleReservations(skuId: string, olderThanMs: number, limit = 500): Promise<Reservation[]> {
    const k = this.keys(skuId);
    const ids = await this.redis.zrangebyscore(k.reservationTimes, '-inf', olderThanMs, 'LIMIT', 0, limit);
    if (ids.length === 0) return [];
    const raw = await this.redis.hmget(k.reservations, ...ids);
    return raw.filter((x): x is string => x !== null).map((x) => JSON.parse(x) as Reservation);
  }

  /** Units the user holds of a SKU (reserved, unpaid or paid). */
  async holding(skuId: string, userId: string): Promise<number> {
    return Number((await this.redis.hget(this.keys(skuId).holdings, userId)) ?? 0);
  }

  /** True when the order writer has claimed the order (on its way into MySQL, or written). */
  async isClaimed(skuId: string, orderId: string): Promise<boolean> {
    return (await this.redis.sismember(this.keys(skuId).claimed, orderId)) === 1;
  }

  /** The unclaimed reservation of an order, or null (claimed by the writer, released, or unknown). */
  async reservation(skuId: string, orderId: string): Promise<Reservation | null> {
    const raw = await this.redis.hget(this.keys(skuId).reservations, orderId);
    return raw === null ? null : (JSON.parse(raw) as Reservation);
  }

  /**
   * The holders of a sold-out SKU (units and last order id per user) with the SKU's counter, read in
   * one MULTI; null when the SKU has stock or more than maxHolders holders. When the counter still
   * equals `knownSeq` nothing was reserved, released or claimed since that copy: 'unchanged', after
   * one small MULTI instead of copying every holder again.
   */
  async soldOutSnapshot(skuId: string, maxHolders: number, knownSeq?: string): Promise<{ holders: Map<string, { units: number; orderId: string }>; seq: string } | 'unchanged' | null> {
    const k = this.keys(skuId);
    const size = await this.redis.multi().get(k.stock).hlen(k.holdings).get(k.seq).exec();
    if (!size || size.some(([err]) => err) || Number(size[0]?.[1] ?? 1) !== 0 || Number(size[1]?.[1] ?? 0) > maxHolders) return null;
    if (knownSeq !== undefined && String(size[2]?.[1] ?? '') === knownSeq) return 'unchanged';
    const res = await this.redis.multi().get(k.stock).hgetall(k.holdings).hgetall(k.lastOrder).get(k.seq).exec();
    if (!res || res.some(([err]) => err) || Number(res[0]?.[1] ?? 1) !== 0) return null;
    const units = res[1]?.[1] as Record<string, string>;
    const orders = res[2]?.[1] as Record<string, string>;
    const out = new Map<string, { units: number; orderId: string }>();
    for (const user in units) out.set(user, { units: Number(units[user]), orderId: orders[user] ?? '' });
    return { holders: out, seq: String(res[3]?.[1] ?? '') };
  }

  /** Reservations not yet claimed by the writer (in flight between API and MySQL). */
  async inFlight(skuId: string): Promise<Reservation[]> {
    const all = await this.redis.hvals(this.keys(skuId).reservations);
    return all.map((x) => JSON.parse(x) as Reservation);
  }
}
