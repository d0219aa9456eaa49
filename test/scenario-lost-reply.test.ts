// Issue 13, scenario 5: the reserve script's reply is lost after it ran. A TCP proxy between a real
// api process and Redis forwards the EVALSHA, lets Redis run it, drops the reply and cuts the
// connection; ioredis reconnects and resends the unanswered command, so the script runs twice.
// The second run must answer like the first (keyed by the order id the API chose before calling):
// no second reservation (perUserLimit 2, quantity 1), no ALREADY_ORDERED for the buyer's own order
// that would then never reach Kafka (quantity 2 = the limit). Then the invariant checker.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { assertInvariants, type AcknowledgedOrder } from './support/checker.ts';
import { respHas, startProxy, type Proxy } from './support/faults/proxy.ts';
import { eventually, testConfig, uniqueName } from './support/infra.ts';
import { http, saleDoc } from './support/order-path.ts';
import { ordersDrained } from '../controller/dataplane/provision.ts';
import { useSale } from './support/scenarios.ts';

const config = testConfig();
const sale = saleDoc(uniqueName('lostreply'), {
  perUserLimit: 2,
  skus: [{ id: 'sku', stock: 10, timeoutBucket: 'long' }],
  timeoutBuckets: [{ name: 'long', delay: '30m' }],
});
let proxy: Proxy;
const fixture = useSale(sale, {
  config,
  async setUp() {
    const target = new URL(config.redisUrl);
    proxy = await startProxy({ target: `${target.hostname}:${target.port || 6379}` });
  },
  tearDown: async () => {
    await proxy?.close();
  },
});
const { workers } = fixture;

it('a reserve whose reply was lost runs again on the resend and answers as the first run did: one reservation, 202, the order in MySQL', { timeout: 180_000 }, async () => {
  const { kafka, redis, db, ctx } = fixture;
  const redisUrl = `redis://127.0.0.1:${proxy.port}`;
  await workers.start('order-writer', sale, config);
  const api = await workers.start('api', sale, config, { redisUrl });
  const acknowledged = new Map<string, AcknowledgedOrder>();

  for (const [userId, quantity] of [['double-reserve', 1], ['vanishing', 2]] as const) {
    // ioredis sends EVAL the first time on a connection, EVALSHA after.
    const dropped = proxy.dropNextReply((b) => respHas('eval')(b) && respHas(userId)(b));
    const r = await http('POST', `${api.url}/v1/sales/sale/orders`, { userId, skuId: 'sku', quantity });
    await dropped;
    assert.equal(r.status, 202, `${userId}: ${r.text}`);
    acknowledged.set(r.body.orderId as string, { userId, skuId: 'sku', quantity });
    assert.equal(await ctx.stock.holding('sku', userId), quantity, `${userId}: reserved once`);
  }
  assert.equal(proxy.stats().droppedReplies, 2, 'both replies were dropped after Redis ran the script');

  const admin = await kafka.admin();
  await eventually(() => ordersDrained(admin, sale), { timeoutMs: 60_000, what: 'the writer drained the orders topic' });
  await eventually(async () => (await ctx.stock.inFlight('sku')).length === 0, { what: 'both reservations claimed' });
  const [rows] = await db.query('SELECT order_id, user_id, quantity, status FROM orders WHERE sale = ?', [ctx.key]);
  assert.deepEqual(
    new Map((rows as { order_id: string; user_id: string; quantity: number; status: string }[]).map((x) => [x.order_id, `${x.user_id}/${x.quantity}/${x.status}`])),
    new Map([...acknowledged].map(([id, o]) => [id, `${o.userId}/${o.quantity}/UNPAID`])),
  );
  assert.deepEqual(await ctx.stock.level('sku'), { stock: 10, remaining: 7 });
  await assertInvariants({ pool: db, redis, sale, acknowledged, paid: new Set(), kafka });
});
