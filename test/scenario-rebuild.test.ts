// Issue 13, scenarios 4 and 6: rebuilding a SKU after Redis lost it.
//  4. A close committed in MySQL while the SKU's keys are missing and a rebuild reads the ledger
//     from before that commit: the release found no keys and did nothing, so it must stay owed and
//     be applied once the keys are back (it used to be marked applied and the unit was lost).
//     The interleaving is forced step by step against the real MySQL and Redis.
//  6. A SKU with 200,000 closed orders and 50,000 holders is rebuilt (it used to be one script call
//     with every id as an argument, which failed), and no reader ever sees a half-built SKU.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OrderCloser } from '../controller/dataplane/close.ts';
import { Compensator } from '../controller/dataplane/compensator.ts';
import { orderIdGenerator } from '../controller/dataplane/order-id.ts';
import { ensureStock, skuLedger } from '../controller/dataplane/provision.ts';
import type { SaleContext } from '../controller/dataplane/sale-context.ts';
import { deleteRedisKeys, logger, uniqueName } from './support/infra.ts';
import { provisionSale, removeSale, saleDoc } from './support/order-path.ts';
import { useServices } from './support/scenarios.ts';

const sales: SaleContext[] = [];
const services = useServices(undefined, {
  async tearDown() {
    for (const s of sales) await removeSale(s, { kafka: services.kafka, redis: services.redis });
  },
});

async function newSale(prefix: string, stock: number): Promise<SaleContext> {
  const { config, kafka, redis, db } = services;
  const s = await provisionSale(saleDoc(uniqueName(prefix), { skus: [{ id: 'sku', stock, timeoutBucket: 'short' }], timeoutBuckets: [{ name: 'short', delay: '1s' }] }), { config, kafka, redis, pool: db });
  sales.push(s);
  return s;
}

/** Orders reserved, claimed and written UNPAID, as the API and the writer leave them; the first one due. */
async function placeDue(s: SaleContext, users: string[]): Promise<string[]> {
  const { db } = services;
  const nextId = orderIdGenerator();
  const past = Date.now() - 60_000;
  const ids: string[] = [];
  for (const userId of users) {
    const orderId = nextId();
    assert.equal((await s.stock.reserve({ orderId, userId, skuId: 'sku', quantity: 1, reservedAt: past }, 1)).outcome, 'reserved');
    ids.push(orderId);
  }
  assert.ok((await s.stock.claim('sku', ids)).every((c) => c === 'claimed'));
  await db.query('INSERT INTO orders (order_id, sale, sku_id, user_id, quantity, status, created_at, due_at) VALUES ?', [
    // Only the first order is due; the others are held for another hour.
    ids.map((id, i) => [id, s.key, 'sku', users[i], 1, 'UNPAID', new Date(past), new Date(i === 0 ? past + 1000 : Date.now() + 3_600_000)]),
  ]);
  return ids;
}

function compensator(s: SaleContext, closer: OrderCloser): Compensator {
  const { redis, db } = services;
  return new Compensator({ pool: db, redis, closer, saleKey: s.key, lockKey: s.names.redis.compensationLock, intervalMs: 60_000, graceMs: 0, logger, useLock: false });
}

async function pending(s: SaleContext): Promise<number> {
  const [r] = await services.db.query("SELECT COUNT(*) AS n FROM orders WHERE sale = ? AND status = 'CLOSED' AND settled_at IS NULL", [s.key]);
  return Number((r as { n: number }[])[0]?.n);
}

describe('scenario 4: a close committed while a rebuild reads the ledger', () => {
  it('the ledger read before the close counts the order as held: its release stays owed and is applied once, after the rebuild', async () => {
    const { redis, db } = services;
    const s = await newSale('race-early', 10);
    const [x] = await placeDue(s, ['ann', 'bob', 'cid']);
    const closer = new OrderCloser({ pool: db, stock: s.stock, saleKey: s.key });
    await deleteRedisKeys(redis, s.names.redis.patterns); // Redis lost the SKU

    const ledger = await skuLedger(db, s.key, 'sku'); // the rebuild reads: x is UNPAID (held)
    assert.equal(ledger.heldByUser.get('ann'), 1);
    const closed = await closer.close([{ orderId: x as string }], 'closer'); // x closes now; its release finds no keys
    assert.equal(closed.outcomes.get(x as string), 'closed');
    assert.equal(closed.released, 0);
    assert.equal(await pending(s), 1, 'the release is still owed (not marked applied)');
    assert.equal(await s.stock.rebuild('sku', 10, ledger), true); // the rebuild writes what it read
    assert.deepEqual(await s.stock.level('sku'), { stock: 10, remaining: 7 });

    const scan = compensator(s, closer);
    assert.equal((await scan.scanOnce()).applied, 1, 'the scan applies the owed release');
    assert.deepEqual(await s.stock.level('sku'), { stock: 10, remaining: 8 }, "ann's unit is back");
    assert.equal(await s.stock.holding('sku', 'ann'), 0);
    assert.equal(await pending(s), 0);
    assert.equal((await scan.scanOnce()).applied, 0, 'and only once');
    assert.deepEqual(await s.stock.level('sku'), { stock: 10, remaining: 8 });
  });

  it('the ledger read after the close counts the order as closed: the owed release is then a no-op, marked applied', async () => {
    const { redis, db } = services;
    const s = await newSale('race-late', 10);
    const [x] = await placeDue(s, ['ann', 'bob', 'cid']);
    const closer = new OrderCloser({ pool: db, stock: s.stock, saleKey: s.key });
    await deleteRedisKeys(redis, s.names.redis.patterns);
    await closer.close([{ orderId: x as string }], 'closer');
    assert.equal(await pending(s), 1);
    const outcome = await ensureStock(s.stock, db, s.sale, s.key);
    assert.deepEqual(outcome.rebuilt, ['sku']);
    assert.deepEqual(await s.stock.level('sku'), { stock: 10, remaining: 8 });
    assert.equal((await compensator(s, closer).scanOnce()).applied, 0, 'not given back twice');
    assert.deepEqual(await s.stock.level('sku'), { stock: 10, remaining: 8 });
    assert.equal(await pending(s), 0, 'marked applied');
  });
});

describe('scenario 6: a large SKU rebuilt after Redis loss', () => {
  it('200,000 closed orders and 50,000 holders: rebuilt in chunks; no reader sees a half-built SKU', { timeout: 600_000 }, async () => {
    const { redis, db } = services;
    const HOLDERS = 50_000;
    const CLOSED = 200_000;
    const STOCK = 60_000;
    const s = await newSale('large', STOCK);
    const nextId = orderIdGenerator();
    const now = new Date();
    const heldIds: string[] = [];
    for (let i = 0; i < HOLDERS + CLOSED; i += 10_000) {
      const rows = [];
      for (let j = i; j < Math.min(i + 10_000, HOLDERS + CLOSED); j++) {
        const id = nextId();
        const held = j < HOLDERS;
        if (held) heldIds.push(id);
        rows.push([id, s.key, 'sku', held ? `holder-${j}` : `closed-${j}`, 1, held ? 'UNPAID' : 'CLOSED', now, now, held ? null : now]);
      }
      await db.query('INSERT INTO orders (order_id, sale, sku_id, user_id, quantity, status, created_at, due_at, closed_at) VALUES ?', [rows]);
    }
    await deleteRedisKeys(redis, s.names.redis.patterns);
    const k = s.names.redis.sku('sku');

    // A reader polls the SKU during the rebuild: whenever the stock is visible, the SKU is complete.
    let rebuilding = true;
    const seen: string[] = [];
    const reader = (async () => {
      while (rebuilding) {
        const r = await redis.multi().get(k.stock).hlen(k.holdings).scard(k.released).hlen(k.lastOrder).exec();
        const [stock, holders, released, last] = (r ?? []).map(([, v]) => v as string | number | null);
        if (stock !== null) seen.push(`${stock}/${holders}/${released}/${last}`);
        else seen.push('absent');
        await new Promise((res) => setImmediate(res));
      }
    })();
    const outcome = await ensureStock(s.stock, db, s.sale, s.key);
    rebuilding = false;
    await reader;
    assert.deepEqual(outcome.rebuilt, ['sku']);
    const complete = `${STOCK - HOLDERS}/${HOLDERS}/${CLOSED}/${HOLDERS}`;
    assert.ok(seen.length > 1, 'the reader ran during the rebuild');
    assert.deepEqual([...new Set(seen.filter((x) => x !== 'absent'))], seen.some((x) => x !== 'absent') ? [complete] : [], 'only ever absent or complete');
    assert.deepEqual(await s.stock.level('sku'), { stock: STOCK, remaining: STOCK - HOLDERS });
    assert.equal(await redis.hlen(k.holdings), HOLDERS);
    assert.equal(await redis.scard(k.released), CLOSED);
    assert.equal(await redis.hget(k.lastOrder, 'holder-7'), heldIds[7]);
    const leftovers: string[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${k.holdings.slice(0, k.holdings.lastIndexOf(':'))}:*:rebuild:*`, 'COUNT', 1000);
      cursor = next;
      leftovers.push(...keys);
    } while (cursor !== '0');
    assert.deepEqual(leftovers, [], 'no staging keys left');
  });
});
