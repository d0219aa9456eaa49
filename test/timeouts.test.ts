// The timeout closer against the real Kafka, Redis and MariaDB: on time and never early, exactly
// one release, pay-vs-close races, buckets per SKU, malformed messages, waiting without stalling.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DelayedTopicWorker, splitDue, retryBackoffMs, RetryWorker, TimeoutCloser } from '../controller/dataplane/timeout-closer.ts';
import type { BatchContext, BatchHandler, ConsumedMessage, KafkaConsumer, KafkaGateway } from '../controller/infra/kafka.ts';
import type { OrderCloser } from '../controller/dataplane/close.ts';
import { Compensator } from '../controller/dataplane/compensator.ts';
import { eventually } from './support/infra.ts';
import { logger, readTopic, sleepUntil, trackedFixtures, type SaleFixture } from './support/timeouts.ts';
import { payOrder } from '../controller/dataplane/payment.ts';

const fixture = trackedFixtures();

async function startClosers(f: SaleFixture, buckets: string[], o: { closer?: OrderCloser; sessionTimeoutMs?: number; retryBaseMs?: number } = {}) {
  const closer = o.closer ?? f.closer();
  const common = { kafka: f.kafka, producer: f.producer, closer, names: f.names, logger, metrics: f.metrics, retryBaseMs: o.retryBaseMs ?? 200, sessionTimeoutMs: o.sessionTimeoutMs };
  const closers = buckets.map((bucket) => new TimeoutCloser({ ...common, bucket }));
  const retry = new RetryWorker(common);
  for (const w of [...closers, retry]) await w.start();
  return {
    closers,
    retry,
    stop: async () => {
      for (const w of [...closers, retry]) await w.stop();
    },
  };
}

const msg = (offset: number, value: unknown): ConsumedMessage => ({
  topic: 't', partition: 0, offset: String(offset), key: null, headers: {}, timestamp: 0,
  value: Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)),
});

describe('due-time split (pure)', () => {
  const dueOf = (m: ConsumedMessage) => {
    try {
      return (JSON.parse(m.value?.toString() ?? '') as { dueAt: number }).dueAt;
    } catch {
      return null;
    }
  };

  it('handles the due prefix and waits at the first message not yet due', () => {
    const r = splitDue([msg(0, { dueAt: 100 }), msg(1, 'garbage'), msg(2, { dueAt: 1000 }), msg(3, { dueAt: 50 })], 500, dueOf);
    assert.deepEqual(r.ready.map((m) => m.offset), ['0', '1']);
    assert.deepEqual(r.wait, { offset: '2', dueAt: 1000 });
  });

  it('a message due exactly now is due; one millisecond later is not', () => {
    assert.equal(splitDue([msg(0, { dueAt: 500 })], 500, dueOf).ready.length, 1);
    assert.deepEqual(splitDue([msg(0, { dueAt: 501 })], 500, dueOf).wait, { offset: '0', dueAt: 501 });
  });

  it('takes at most `limit` messages from index `from`; the wait is found by the pass that reaches it', () => {
    const batch = [msg(0, { dueAt: 100 }), msg(1, { dueAt: 200 }), msg(2, { dueAt: 300 }), msg(3, { dueAt: 1000 })];
    const first = splitDue(batch, 500, dueOf, 2);
    assert.deepEqual(first.ready.map((m) => m.offset), ['0', '1']);
    assert.equal(first.wait, null);
    const second = splitDue(batch, 500, dueOf, 2, 2);
    assert.deepEqual(second.ready.map((m) => m.offset), ['2']);
    assert.deepEqual(second.wait, { offset: '3', dueAt: 1000 });
    assert.deepEqual(splitDue(batch, 500, dueOf, 2, 3), { ready: [], wait: { offset: '3', dueAt: 1000 } });
    assert.deepEqual(splitDue(batch, 500, dueOf, 2, 4), { ready: [], wait: null });
  });

  it('backs off exponentially, capped', () => {
    assert.deepEqual([1, 2, 3].map((a) => retryBackoffMs(a, 1000)), [1000, 2000, 4000]);
    assert.equal(retryBackoffMs(30, 1000), 60_000);
  });
});

describe('batches and chunks in flight (a fake consumer, no Kafka, no sleeping)', () => {
  // The batch handler of a DelayedTopicWorker driven by hand: chunks of two, a message due when its
  // value's dueAt is at or before the clock's 1000, each handle() settled by the test in the order it
  // chooses.
  async function harness() {
    let handler: BatchHandler | undefined;
    const consumer: KafkaConsumer = {
      start: async (h) => {
        handler = h;
      },
      pause: () => undefined,
      resume: () => undefined,
      seek: () => undefined,
      assignments: () => [],
      onRebalance: () => undefined,
      stop: async () => undefined,
    };
    const inFlight: { offsets: string[]; settle: (ok: boolean) => void }[] = [];
    const waiters: { n: number; resolve: () => void }[] = [];
    const worker = new DelayedTopicWorker({
      kafka: { consumer: () => consumer } as unknown as KafkaGateway,
      groupId: 'g',
      topic: 't',
      dueOf: (m) => (JSON.parse(String(m.value)) as { dueAt: number }).dueAt,
      clock: { now: () => 1000 },
      chunkSize: 2,
      logger,
      handle: (messages) =>
        new Promise<void>((resolve, reject) => {
          inFlight.push({ offsets: messages.map((m) => m.offset), settle: (ok) => (ok ? resolve() : reject(new Error('database down'))) });
          for (const w of waiters.filter((w) => inFlight.length >= w.n)) w.resolve();
        }),
    });
    await worker.start();
    const commits: string[] = [];
    const pauses: string[] = [];
    const advances: string[] = [];
    let paused = false;
    const ctx: BatchContext = {
      commit: async () => assert.fail('a delayed worker commits with commitHandled, which leaves the fetch position alone'),
      commitHandled: async (o) => void commits.push(o),
      advance: (o) => void advances.push(o),
      pauseAt: (o) => {
        paused = true;
        pauses.push(o);
      },
      heartbeat: async () => undefined,
      isActive: () => !paused,
    };
    /** A batch of the given offsets, each due at 0 unless listed in `later` (due at 2000, after the clock). */
    const batch = (offsets: number[], later: number[] = []) =>
      (handler as BatchHandler)({ topic: 't', partition: 0, highWatermark: '99', messages: offsets.map((i) => msg(i, { dueAt: later.includes(i) ? 2000 : 0 })) }, ctx);
    const handles = (n: number) => (inFlight.length >= n ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ n, resolve })));
    return { worker, inFlight, handles, batch, commits, pauses, advances };
  }

  it('handles the next chunk before the previous one is done', { timeout: 10_000 }, async () => {
    const h = await harness();
    await h.batch([0, 1, 2, 3]);
    await h.handles(2);
    assert.deepEqual(h.inFlight.map((c) => c.offsets), [['0', '1'], ['2', '3']], 'both chunks handled at once');
    for (const c of h.inFlight) c.settle(true);
    await h.worker.drained();
    assert.deepEqual(h.commits, ['2', '4']);
    await h.worker.stop();
  });

  // Each case settles the second chunk first, then the first: commits stay in order, and nothing
  // after a failed chunk is committed even when a later chunk succeeded.
  const cases: { name: string; first: boolean; second: boolean; commits: string[]; pauses: string[] }[] = [
    { name: 'both handled: the second chunk committed after the first', first: true, second: true, commits: ['2', '4'], pauses: [] },
    { name: 'the first failed: nothing committed, the partition rests at the first', first: false, second: true, commits: [], pauses: ['0'] },
    { name: 'the second failed: the first committed, the partition rests at the second', first: true, second: false, commits: ['2'], pauses: ['2'] },
  ];
  for (const c of cases) {
    it(c.name, { timeout: 10_000 }, async () => {
      const h = await harness();
      await h.batch([0, 1, 2, 3]);
      await h.handles(2);
      h.inFlight[1]?.settle(c.second);
      h.inFlight[0]?.settle(c.first);
      await h.worker.drained();
      assert.deepEqual(h.commits, c.commits);
      assert.deepEqual(h.pauses, c.pauses);
      await h.worker.stop();
    });
  }

  it('returns before the batch is handled, so the next is fetched meanwhile; one more waits, commits stay in order', { timeout: 10_000 }, async () => {
    const h = await harness();
    await h.batch([0, 1, 2, 3]);
    assert.deepEqual(h.advances, ['4'], 'the fetch position moved past the first batch before any chunk settled');
    let secondAccepted = false;
    const second = h.batch([4, 5, 6, 7]).then(() => (secondAccepted = true));
    await h.handles(2);
    assert.deepEqual(h.advances, ['4', '8']);
    assert.equal(secondAccepted, false, 'the second batch waits while the first is handled: that holds the next fetch');
    h.inFlight[0]?.settle(true);
    await second;
    await h.handles(3);
    assert.deepEqual(h.inFlight.map((c) => c.offsets), [['0', '1'], ['2', '3'], ['4', '5']], 'chunks across the two batches, at most two unsettled');
    for (let i = 1; i < 4; i++) {
      await h.handles(i + 1);
      h.inFlight[i]?.settle(true);
    }
    await h.worker.drained();
    assert.deepEqual(h.commits, ['2', '4', '6', '8']);
    await h.worker.stop();
  });

  it('a pause for a due time drops the batch accepted behind it; that batch is read again after the resume', { timeout: 10_000 }, async () => {
    const h = await harness();
    await h.batch([0, 1, 2, 3], [2, 3]);
    const second = h.batch([4, 5]);
    await h.handles(1);
    h.inFlight[0]?.settle(true);
    await second;
    await h.worker.drained();
    assert.deepEqual(h.inFlight.map((c) => c.offsets), [['0', '1']], 'nothing of the second batch handled');
    assert.deepEqual(h.commits, ['2']);
    assert.deepEqual(h.pauses, ['2'], 'rewound to the first message not due');
    assert.deepEqual(h.worker.waiting().map((w) => w.until), [2000]);
    await h.worker.stop();
  });
});

describe('the close fence (injected clock, no Kafka, no sleeping)', () => {
  it('never closes before due_at, never a paid order, and releases once', { timeout: 30_000 }, async () => {
    const f = await fixture({ skus: [{ id: 'sku', stock: 10, timeoutBucket: 'b' }], buckets: [{ name: 'b', delay: '30m' }], partitions: 1 });
    const dueAt = Date.parse('2030-01-01T00:00:00.000Z');
    let now = dueAt - 1;
    const closer = f.closer({ clock: { now: () => now } });
    const [a, b] = await f.place('sku', 2, { dueAt, createdAt: dueAt - 1_800_000, produce: false });
    const ids = [{ orderId: (a as { orderId: string }).orderId }, { orderId: (b as { orderId: string }).orderId }, { orderId: 'no-such-order' }];
    const early = await closer.close(ids, 'closer');
    assert.deepEqual([...early.outcomes.values()].sort(), ['not_due', 'not_due', 'not_found']);
    assert.equal(await f.count(`SELECT COUNT(*) FROM orders WHERE status <> 'UNPAID'`), 0);
    assert.equal((await f.stock.level('sku'))?.remaining, 8);

    await f.pool.query(`UPDATE orders SET status = 'PAID', paid_at = ? WHERE order_id = ? AND status = 'UNPAID'`, [new Date(now), b?.orderId]);
    now = dueAt;
    const due = await closer.close(ids, 'closer');
    assert.equal(due.outcomes.get(a?.orderId as string), 'closed');
    assert.equal(due.outcomes.get(b?.orderId as string), 'already_paid');
    assert.deepEqual(due.closed.map((c) => [c.orderId, c.closedAt - c.dueAt]), [[a?.orderId, 0]]);
    assert.equal(due.released, 1);
    assert.equal((await f.stock.level('sku'))?.remaining, 9, 'the closed unit back, the paid one kept');

    now = dueAt + 60_000;
    const again = await closer.close(ids, 'closer');
    assert.equal(again.outcomes.get(a?.orderId as string), 'already_closed');
    assert.equal(again.released, 0);
    assert.equal((await f.stock.level('sku'))?.remaining, 9);
    const [rows] = await f.pool.query("SELECT order_id, closed_at, settled_at FROM orders WHERE status = 'CLOSED'");
    assert.deepEqual((rows as { order_id: string; closed_at: Date; settled_at: Date | null }[]).map((r) => [r.order_id, r.closed_at.getTime(), r.settled_at?.getTime()]), [[a?.orderId, dueAt, dueAt]], 'closed at its due time, release marked');
  });

  it('two closes at the same instant of chunks that overlap: each order closed and released once', { timeout: 30_000 }, async () => {
    const f = await fixture({ skus: [{ id: 'sku', stock: 10, timeoutBucket: 'b' }], buckets: [{ name: 'b', delay: '30m' }], partitions: 1 });
    const dueAt = Date.parse('2030-01-01T00:00:00.000Z');
    const clock = { now: () => dueAt };
    const [a, b, c, d] = (await f.place('sku', 4, { dueAt, createdAt: dueAt - 1_800_000, produce: false })).map((o) => ({ orderId: o.orderId, dueAt: o.dueAt }));
    if (!a || !b || !c || !d) throw new Error('four orders placed');
    await f.pool.query("UPDATE orders SET status = 'PAID', paid_at = ? WHERE order_id = ?", [new Date(dueAt - 1), d.orderId]);
    // The first close's marks are not written yet (deferred), so its rows still owe their releases.
    const firstCloser = f.closer({ clock, deferMarking: { idleMs: 3_600_000, maxMs: 3_600_000 } });
    const first = await firstCloser.close([a, b], 'closer');
    assert.deepEqual([...first.outcomes.values()], ['closed', 'closed']);
    assert.equal(firstCloser.lockedChunks, 0, 'an ordinary close reads back only its own rows');
    // A scan or a redelivery in the same millisecond: b already carries this very closed_at and owes
    // its release, so reading back "closed now, release owed" would find it too: the second close
    // must tell its own closes from the first's (it rereads the chunk under lock).
    const second = f.closer({ clock });
    const result = await second.close([b, c, d, { orderId: 'no-such-order' }], 'compensator');
    assert.equal(second.lockedChunks, 1);
    assert.deepEqual(Object.fromEntries(result.outcomes), { [b.orderId]: 'already_closed', [c.orderId]: 'closed', [d.orderId]: 'already_paid', 'no-such-order': 'not_found' });
    assert.deepEqual(result.closed, [{ orderId: c.orderId, dueAt, closedAt: dueAt }]);
    const [rows] = await f.pool.query('SELECT order_id, status, closed_at, settled_at FROM orders ORDER BY order_id');
    assert.deepEqual(
      (rows as { order_id: string; status: string; closed_at: Date | null; settled_at: Date | null }[]).map((r) => [r.order_id, r.status, r.closed_at?.getTime() ?? null, r.settled_at !== null]),
      [
        [a.orderId, 'CLOSED', dueAt, false],
        [b.orderId, 'CLOSED', dueAt, true],
        [c.orderId, 'CLOSED', dueAt, true],
        [d.orderId, 'PAID', null, false],
      ].sort(),
      'b and c marked by the second close (b applied before: nothing twice), a still owed by the first',
    );
    assert.equal((await f.stock.level('sku'))?.remaining, 9, 'the three closed units back, each once; the paid one kept');
    assert.equal(await f.redis.scard(f.names.redis.sku('sku').released), 3);
    await firstCloser.flushMarks();
  });
});

describe('deferred release marks (settled_at)', () => {
  it('are written after the burst; marks lost in a crash only make the scan re-run a no-op', { timeout: 60_000 }, async () => {
    const f = await fixture({ skus: [{ id: 'sku', stock: 20, timeoutBucket: 'b' }], buckets: [{ name: 'b', delay: '30m' }], partitions: 1 });
    const pending = () => f.count("SELECT COUNT(*) FROM orders WHERE status = 'CLOSED' AND settled_at IS NULL");
    const deferred = f.closer({ deferMarking: { idleMs: 100, maxMs: 1000 } });
    const first = await f.place('sku', 5, { dueAt: Date.now() - 1, produce: false });
    assert.equal((await deferred.close(first, 'closer')).released, 5);
    assert.equal((await f.stock.level('sku'))?.remaining, 20, 'units back at once');
    assert.equal(await pending(), 5, 'marks not written yet');
    await eventually(async () => (await pending()) === 0, { what: 'marks written after the idle time' });

    // A "crashed" closer: its marks are never flushed.
    const crashed = f.closer({ deferMarking: { idleMs: 3_600_000, maxMs: 3_600_000 } });
    const second = await f.place('sku', 5, { dueAt: Date.now() - 1, produce: false });
    await crashed.close(second, 'closer');
    assert.equal(await pending(), 5);
    const scan = new Compensator({ pool: f.pool, redis: f.redis, closer: f.closer(), saleKey: f.names.key, lockKey: f.names.redis.compensationLock, intervalMs: 60_000, graceMs: 0, logger, metrics: f.metrics });
    const r = await scan.scanOnce();
    assert.deepEqual([r.closed, r.applied, r.pending], [0, 0, 0], 'the scan marks them; Redis returns nothing twice');
    assert.equal((await f.stock.level('sku'))?.remaining, 20);
    assert.equal(await f.metric('flashsale_stock_releases_applied_total'), 10);
    await crashed.flushMarks();
  });
});

describe('timeout closer', () => {
  it('closes after the due time and never before; stock and the user slot come back exactly once', { timeout: 60_000 }, async (t) => {
    const f = await fixture({ skus: [{ id: 'phone', stock: 100, timeoutBucket: 'b2' }], buckets: [{ name: 'b2', delay: '3s' }] });
    const w = await startClosers(f, ['b2']);
    const dueAt = Date.now() + 3000;
    const orders = await f.place('phone', 40, { dueAt, quantity: (i) => 1 + (i % 2) });
    const units = orders.reduce((s, o) => s + o.quantity, 0);
    assert.equal((await f.stock.level('phone'))?.remaining, 100 - units);

    // Once the closer holds the messages and waits (an event, not a sleep), look: a state read that
    // completed before dueAt by this clock must show nothing closed and no stock back. A read that
    // completed later proves nothing either way (a loaded machine), so it is only reported.
    const worker = (w.closers[0] as TimeoutCloser).worker;
    await eventually(() => worker.waiting().length > 0, { what: 'the closer waiting for the due time' });
    const early = await Promise.all([f.count(`SELECT COUNT(*) FROM orders WHERE sale = ? AND status <> 'UNPAID'`, [f.names.key]), f.stock.level('phone')]);
    if (Date.now() < dueAt) {
      assert.equal(early[0], 0, 'nothing closed before due');
      assert.equal(early[1]?.remaining, 100 - units, 'no stock back before due');
    } else t.diagnostic('the before-due look completed after dueAt (loaded machine): only the closed_at >= due_at checks below apply');

    await eventually(async () => (await f.count(`SELECT COUNT(*) FROM orders WHERE sale = ? AND status = 'CLOSED'`, [f.names.key])) === 40, { what: 'all closed' });
    for (const [id, s] of await f.statuses()) {
      assert.equal(s.status, 'CLOSED');
      assert.ok((s.closedAt as number) >= s.dueAt, `${id} closed ${s.dueAt - (s.closedAt as number)} ms early`);
    }
    await eventually(async () => (await f.count("SELECT COUNT(*) FROM orders WHERE status = 'CLOSED' AND settled_at IS NOT NULL")) === 40, { what: 'releases applied' });
    assert.equal((await f.stock.level('phone'))?.remaining, 100);
    for (const o of orders) assert.equal(await f.stock.holding('phone', o.userId), 0, `${o.userId} slot freed`);
    assert.equal(await f.metric('flashsale_stock_releases_applied_total'), 40);
    assert.equal(await f.metric('flashsale_timeout_close_delay_seconds'), 40, 'one close-delay observation per close');

    // The same timeout messages again (a producer retry, a redelivery): nothing changes.
    await f.produceTimeouts(orders);
    await eventually(async () => (await f.metric('flashsale_timeout_closes_total', { outcome: 'already_closed' })) === 40, { what: 'duplicates handled' });
    assert.equal((await f.stock.level('phone'))?.remaining, 100, 'released once');
    assert.equal(await f.redis.scard(f.names.redis.sku('phone').released), 40);
    assert.equal(await f.metric('flashsale_stock_releases_applied_total'), 40);

    // The freed slot lets the user buy again.
    const again = await f.stock.reserve({ orderId: 'again-1', userId: orders[0]?.userId as string, skuId: 'phone', quantity: 1, reservedAt: Date.now() }, 1);
    assert.equal(again.outcome, 'reserved');
    await w.stop();
  });

  it('1,000 pay-vs-timeout races at the due instant: PAID xor CLOSED, released units == closed units', { timeout: 120_000 }, async (t) => {
    const f = await fixture({ skus: [{ id: 'sku', stock: 5000, timeoutBucket: 'b1' }], buckets: [{ name: 'b1', delay: '1s' }] });
    const w = await startClosers(f, ['b1']);
    // Placed without timeout messages and due far away, so placing 1,000 orders may take as long as a
    // loaded machine needs; the due instant is fixed only once they are all in place.
    const orders = await f.place('sku', 1000, { dueAt: Date.now() + 3_600_000, quantity: (i) => 1 + (i % 3), produce: false });
    // By construction both sides win some: the first quarter is paid before the due time (the closer
    // must find them PAID), the last quarter is never paid (the closer must close them), the middle
    // half races the closer at the due instant.
    const paidBefore = orders.slice(0, 250);
    const neverPaid = orders.slice(750);
    for (const o of paidBefore) assert.equal(await payOrder(f.pool, f.names.key, o.orderId, new Date()), true);
    const dueAt = Date.now() + 1500;
    await f.pool.query('UPDATE orders SET due_at = ? WHERE sale = ?', [new Date(dueAt), f.names.key]);
    for (const o of orders) o.dueAt = dueAt;
    await f.produceTimeouts(orders);
    // Each racing payment is sent within 600 ms after the due instant (a load schedule, not a
    // synchronisation: whichever side wins, the checks below hold).
    const raced = await Promise.all(
      orders.slice(250, 750).map(async (o) => {
        await sleepUntil(dueAt + Math.floor(Math.random() * 600));
        // The API's own payment code: it wins only while the order is still UNPAID.
        return payOrder(f.pool, f.names.key, o.orderId, new Date());
      }),
    );
    const paidOk = [...paidBefore.map(() => true), ...raced, ...neverPaid.map(() => false)];
    await eventually(async () => (await f.count(`SELECT COUNT(*) FROM orders WHERE sale = ? AND status = 'UNPAID'`, [f.names.key])) === 0, { what: 'every order decided' });
    await eventually(async () => (await f.count("SELECT COUNT(*) FROM orders WHERE status = 'CLOSED' AND settled_at IS NULL")) === 0, { what: 'releases applied' });
    const st = await f.statuses();
    let paidUnits = 0;
    orders.forEach((o, i) => {
      const s = st.get(o.orderId)?.status;
      assert.ok(s === 'PAID' || s === 'CLOSED', `${o.orderId} is ${s}`);
      assert.equal(s === 'PAID', paidOk[i], `${o.orderId}: pay answered ${paidOk[i]} but the order is ${s}`);
      if (s === 'PAID') paidUnits += o.quantity;
    });
    const closed = orders.filter((o) => st.get(o.orderId)?.status === 'CLOSED');
    const released = await f.redis.smembers(f.names.redis.sku('sku').released);
    assert.deepEqual(new Set(released), new Set(closed.map((o) => o.orderId)), 'a release for every closed order and none for a paid one');
    assert.equal((await f.stock.level('sku'))?.remaining, 5000 - paidUnits, 'Redis holds back exactly the paid units');
    assert.equal(await f.redis.scard(f.names.redis.sku('sku').released), closed.length);
    for (const o of paidBefore) assert.equal(st.get(o.orderId)?.status, 'PAID', 'paid before due: never closed');
    for (const o of neverPaid) assert.equal(st.get(o.orderId)?.status, 'CLOSED', 'never paid: closed');
    t.diagnostic(`racing half: ${raced.filter(Boolean).length} paid, ${raced.filter((x) => !x).length} closed`);
    await w.stop();
  });

  it('two SKUs with different buckets in one sale close at their own times', { timeout: 60_000 }, async (t) => {
    const f = await fixture({
      skus: [{ id: 'ebook', stock: 50, timeoutBucket: 'fast' }, { id: 'phone', stock: 50, timeoutBucket: 'slow' }],
      buckets: [{ name: 'fast', delay: '1s' }, { name: 'slow', delay: '10s' }],
    });
    const w = await startClosers(f, ['fast', 'slow']);
    const createdAt = Date.now() + 500;
    const slowDue = createdAt + 10_000;
    const fast = await f.place('ebook', 20, { createdAt, dueAt: createdAt + 1000 });
    const slow = await f.place('phone', 20, { createdAt, dueAt: slowDue });
    const closedOf = async (list: typeof fast) => {
      const st = await f.statuses();
      return list.filter((o) => st.get(o.orderId)?.status === 'CLOSED').length;
    };
    await eventually(async () => (await closedOf(fast)) === 20, { what: 'fast bucket closed' });
    // The fast bucket is not held behind the slow one: its closes (the closer's own timestamps)
    // came before the slow orders fell due. A look that completed before slowDue must also find the
    // slow bucket open; a later look proves nothing (a loaded machine) and is only reported.
    const fastClosed = [...(await f.statuses()).entries()].filter(([id]) => fast.some((o) => o.orderId === id)).map(([, s]) => s.closedAt as number);
    assert.ok(Math.max(...fastClosed) < slowDue, 'fast bucket closed before the slow one fell due');
    const slowOpen = await closedOf(slow);
    if (Date.now() < slowDue) assert.equal(slowOpen, 0, 'slow bucket still open');
    else t.diagnostic('the slow-bucket look completed after its due time (loaded machine)');
    await eventually(async () => (await closedOf(slow)) === 20, { what: 'slow bucket closed' });
    for (const s of (await f.statuses()).values()) assert.ok((s.closedAt as number) >= s.dueAt);
    await f.releasesApplied('ebook');
    await f.releasesApplied('phone');
    assert.equal((await f.stock.level('ebook'))?.remaining, 50);
    assert.equal((await f.stock.level('phone'))?.remaining, 50);
    await w.stop();
  });

  it('sends a malformed timeout message to the dead-letter topic at once and goes on', { timeout: 60_000 }, async () => {
    const f = await fixture({ skus: [{ id: 'sku', stock: 10, timeoutBucket: 'b1' }], buckets: [{ name: 'b1', delay: '1s' }], partitions: 1 });
    const w = await startClosers(f, ['b1']);
    await f.producer.send([{ topic: f.names.topics.delay('b1'), messages: [{ key: 'bad', value: '{"v":1,"orderId":' }] }]);
    const [order] = await f.place('sku', 1, { dueAt: Date.now() });
    await eventually(async () => (await f.statuses()).get(order?.orderId as string)?.status === 'CLOSED', { what: 'the good order behind it closed' });
    const [dl] = await readTopic(f.kafka, f.names.topics.deadLetter, 1);
    const record = JSON.parse(dl?.value?.toString() ?? '{}') as { source: string; reason: string; value: string; offset: string };
    assert.equal(record.source, 'timeouts');
    assert.match(record.reason, /malformed timeout message: not JSON/);
    assert.equal(record.value, '{"v":1,"orderId":');
    assert.equal(record.offset, '0');
    assert.equal(await f.metric('flashsale_dead_letters_total', { source: 'timeouts', reason: 'malformed' }), 1);
    await w.stop();
  });

  it('a rebalance while partitions wait for due times loses nothing and closes nothing early', { timeout: 90_000 }, async () => {
    const f = await fixture({ skus: [{ id: 'sku', stock: 100, timeoutBucket: 'b' }], buckets: [{ name: 'b', delay: '1s' }], partitions: 4 });
    const first = await startClosers(f, ['b']);
    // Due far enough ahead that a rebalance on a loaded machine still ends before it.
    const dueAt = Date.now() + 20_000;
    const orders = await f.place('sku', 40, { dueAt });
    const worker = (first.closers[0] as TimeoutCloser).worker;
    await eventually(() => worker.waiting().length === 4, { what: 'all four partitions waiting' });
    // A second member joins: partitions move, the old timers are dropped, the new owners re-read from the last commit.
    const second = await startClosers(f, ['b']);
    const worker2 = (second.closers[0] as TimeoutCloser).worker;
    await eventually(() => worker.joins >= 2 && worker2.joins >= 1 && worker.waiting().length + worker2.waiting().length === 4, { what: 'both members waiting on their share' });
    assert.ok(worker2.waiting().length > 0, 'the newcomer owns some waiting partitions');
    // Waiting after the rebalance, for this due time: the rebalance happened before it (no wall-clock look needed).
    assert.deepEqual([...worker.waiting(), ...worker2.waiting()].map((x) => x.until), [dueAt, dueAt, dueAt, dueAt]);
    assert.equal(await f.count(`SELECT COUNT(*) FROM orders WHERE sale = ? AND status <> 'UNPAID'`, [f.names.key]), 0, 'nothing closed while waiting');
    await eventually(async () => (await f.count(`SELECT COUNT(*) FROM orders WHERE sale = ? AND status = 'CLOSED'`, [f.names.key])) === orders.length, { what: 'all closed' });
    for (const s of (await f.statuses()).values()) assert.ok((s.closedAt as number) >= s.dueAt, 'never early');
    await f.releasesApplied('sku');
    assert.equal((await f.stock.level('sku'))?.remaining, 100);
    await first.stop();
    await second.stop();
  });

  it('waits without sleeping: a paused partition does not stall the others and causes no rebalance', { timeout: 90_000 }, async (t) => {
    const f = await fixture({ skus: [{ id: 'sku', stock: 100, timeoutBucket: 'b' }], buckets: [{ name: 'b', delay: '1s' }], partitions: 3 });
    // Session timeout 6 s, far order due in 20 s: the wait outlasts sessions, so heartbeats must go on.
    const w = await startClosers(f, ['b'], { sessionTimeoutMs: 6000 });
    const farDue = Date.now() + 20_000;
    const [far] = await f.place('sku', 1, { dueAt: farDue });
    const worker = (w.closers[0] as TimeoutCloser).worker;
    await eventually(() => worker.waiting().length === 1, { what: 'the far partition paused' });
    const pausedPartition = worker.waiting()[0]?.partition;
    const now = await f.place('sku', 30, { dueAt: Date.now() });
    // Where did each message land? Read the delay topic with a separate group.
    const seen = await readTopic(f.kafka, f.names.topics.delay('b'), 31);
    const partitionOf = new Map(seen.map((m) => [m.key, m.partition]));
    assert.equal(partitionOf.get(far?.orderId as string), pausedPartition);
    const behind = now.filter((o) => partitionOf.get(o.orderId) === pausedPartition);
    const free = now.filter((o) => partitionOf.get(o.orderId) !== pausedPartition);
    assert.ok(free.length > 0, 'some orders on other partitions');
    await eventually(async () => {
      const st = await f.statuses();
      return free.every((o) => st.get(o.orderId)?.status === 'CLOSED');
    }, { what: 'orders on the other partitions closed' });
    const st = await f.statuses();
    // Not stalled: the closer's own close times of the free orders come before the far order fell due.
    assert.ok(Math.max(...free.map((o) => st.get(o.orderId)?.closedAt as number)) < farDue, 'they closed while the far order still waited');
    if (Date.now() < farDue) {
      assert.equal(st.get(far?.orderId as string)?.status, 'UNPAID');
      for (const o of behind) assert.equal(st.get(o.orderId)?.status, 'UNPAID', 'orders behind the waiting head wait with it');
    } else t.diagnostic('the look at the waiting partition completed after the far due time (loaded machine)');
    await eventually(async () => (await f.statuses()).get(far?.orderId as string)?.status === 'CLOSED', { timeoutMs: 40_000, what: 'far order closed' });
    const done = await f.statuses();
    assert.ok((done.get(far?.orderId as string)?.closedAt as number) >= farDue);
    for (const o of behind) {
      assert.equal(done.get(o.orderId)?.status, 'CLOSED');
      assert.ok((done.get(o.orderId)?.closedAt as number) >= farDue, 'orders behind the waiting head closed after it');
    }
    assert.equal(worker.joins, 1, 'one group join: no rebalance while waiting');
    await w.stop();
  });
});
