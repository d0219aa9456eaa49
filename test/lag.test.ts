// Consumer-lag collector: the interpolation and the delay split as pure functions, then the whole
// collector against the real broker (topics, groups and timestamps of its own sale).
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { ensureTopics } from '../controller/dataplane/provision.ts';
import type { KafkaGateway } from '../controller/infra/kafka.ts';
import { LagCollector, mapLimit, QUIET_GROUP_RECHECK_MS, WatermarkHistory, partitionLag, saleLagTargets, type GroupLag, type LagAdmin } from '../controller/metrics/lag.ts';
import { validateFlashSale } from '../controller/spec/flashsale.ts';
import { saleNames } from '../controller/spec/names.ts';
import { deleteTopics, eventually, testKafka, uniqueName } from './support/infra.ts';

describe('WatermarkHistory', () => {
  it('interpolates the time the watermark passed an offset between recorded points', () => {
    const h = new WatermarkHistory();
    h.record(100, 10_000);
    h.record(300, 20_000); // 200 messages in 10 s
    h.record(300, 25_000); // unchanged watermark: first and last time seen
    h.record(300, 27_000);
    assert.equal(h.size(), 3);
    assert.equal(h.timeAt(200), 15_000);
    assert.equal(h.timeAt(300), 20_000, 'the watermark reached 300 when first seen');
    // committed 199: message 199 is unread; the watermark passed 200 at 15 s → 30 s behind at 45 s.
    assert.equal(h.lagSeconds(199, 45_000), 30);
    assert.equal(h.lagSeconds(300, 45_000), 0, 'caught up');
  });

  it('does not spread a burst after a quiet spell over the quiet spell', () => {
    const h = new WatermarkHistory();
    h.record(100, 0);
    h.record(100, 50_000); // nothing produced for 50 s
    h.record(130, 60_000); // 30 messages between 50 s and 60 s
    h.record(130, 61_000);
    // Message 100 was written after 50 s: at 61 s it is at most 11 s old, not ~60 s.
    const lag = h.lagSeconds(100, 61_000);
    assert.ok(lag > 10 && lag <= 11, `lag ${lag}`);
    assert.equal(h.lagSeconds(99, 61_000), 61, 'a message below the flat stretch dates from before it (lower bound: the table starts at 0 s)');
  });

  it('gives a lower bound for offsets older than the table', () => {
    const h = new WatermarkHistory();
    h.record(500, 60_000);
    assert.equal(h.lagSeconds(0, 90_000), 30, 'behind at least since the first observation');
  });

  it('stays bounded and keeps its oldest point when thinning', () => {
    const h = new WatermarkHistory(8);
    for (let i = 1; i <= 100; i++) h.record(i * 10, i * 1000);
    assert.ok(h.size() <= 8, `size ${h.size()}`);
    assert.equal(h.timeAt(10), 1000, 'oldest point kept');
    assert.equal(h.timeAt(1000), 100_000, 'newest point kept');
    // Linear production: interpolation over the thinned table is still exact.
    assert.ok(Math.abs((h.timeAt(555) ?? 0) - 55_500) < 1e-6, String(h.timeAt(555)));
  });

  it('forgets its history when the watermark goes back (topic recreated)', () => {
    const h = new WatermarkHistory();
    h.record(1000, 1000);
    h.record(2000, 2000);
    h.record(5, 3000);
    assert.equal(h.size(), 1);
    assert.equal(h.timeAt(5), 3000);
  });
});

describe('partitionLag', () => {
  const now = 1_000_000;
  it('is high minus committed, clamped at 0', () => {
    assert.equal(partitionLag({ partition: 0, high: 50, low: 0, committed: 20, now }).lag, 30);
    assert.equal(partitionLag({ partition: 0, high: 50, low: 0, committed: 50, now }).lag, 0);
    assert.equal(partitionLag({ partition: 0, high: 50, low: 0, committed: 70, now }).lag, 0, 'a committed offset past the watermark is not negative lag');
  });

  it('counts everything retained as unread when the group never committed', () => {
    const p = partitionLag({ partition: 1, high: 50, low: 10, committed: null, now });
    assert.equal(p.lag, 40);
    assert.equal(p.committed, null);
  });

  it('does not count messages deleted by retention', () => {
    assert.equal(partitionLag({ partition: 0, high: 50, low: 30, committed: 5, now }).lag, 20);
  });

  it('splits a delay topic into overdue (before the due boundary) and scheduled', () => {
    const p = partitionLag({ partition: 0, high: 100, low: 0, committed: 40, dueBoundary: 70, now });
    assert.deepEqual([p.lag, p.overdue, p.scheduled], [60, 30, 30]);
    const none = partitionLag({ partition: 0, high: 100, low: 0, committed: 80, dueBoundary: 70, now });
    assert.deepEqual([none.lag, none.overdue, none.scheduled], [20, 0, 20], 'reader past the boundary: nothing overdue');
    const all = partitionLag({ partition: 0, high: 100, low: 0, committed: 40, dueBoundary: 100, now });
    assert.deepEqual([all.overdue, all.scheduled], [60, 0]);
  });

  it('treats all lag of a topic without delay as overdue', () => {
    const p = partitionLag({ partition: 0, high: 10, low: 0, committed: 4, now });
    assert.deepEqual([p.overdue, p.scheduled], [6, 0]);
  });

  it('uses the history for the time lag', () => {
    const history = new WatermarkHistory();
    history.record(0, now - 20_000);
    history.record(100, now - 10_000);
    const p = partitionLag({ partition: 0, high: 100, low: 0, committed: 49, history, now });
    assert.equal(p.lagSeconds, 15);
  });
});

/** The real admin, each request recorded in `calls` as "method topic-or-group". */
/** The real admin, counted: one line per question (topicsOffsets with its topics) and per group asked. */
function countedAdmin(real: LagAdmin, calls: string[]): LagAdmin {
  return {
    groupsOffsets: (requests) => (calls.push(...requests.map((r) => `groupOffsets ${r.groupId}`)), real.groupsOffsets(requests)),
    topicsOffsets: (topics) => (calls.push(`topicsOffsets ${[...topics].sort().join(' ')}`), real.topicsOffsets(topics)),
    topicOffsetsAt: (t, ts) => (calls.push(`topicOffsetsAt ${t}`), real.topicOffsetsAt(t, ts)),
  };
}

describe('LagCollector against the real broker', () => {
  let kafka: KafkaGateway;
  const namespace = uniqueName('lag');
  const sale = validateFlashSale({
    apiVersion: 'flashsale.dev/v1alpha1',
    kind: 'FlashSale',
    metadata: { name: 'lagsale', namespace },
    spec: {
      skus: [{ id: 'a', stock: 10, timeoutBucket: 'fast' }],
      timeoutBuckets: [{ name: 'fast', delay: '5s' }],
      kafka: { partitions: 2 },
    },
  });
  const n = saleNames(sale.metadata);
  let nowMs = Date.now();
  const clock = () => nowMs;

  before(async () => {
    kafka = testKafka();
    await ensureTopics(await kafka.admin(), sale);
  });
  after(async () => {
    await deleteTopics(kafka, `flashsale.${namespace}.`);
    await kafka.close();
  });

  const groupOf = (groups: GroupLag[], role: string) => {
    const g = groups.find((x) => x.role === role);
    assert.ok(g, `group of role ${role}`);
    return g;
  };

  it('derives one target per consumer group of the sale', () => {
    const targets = saleLagTargets(sale);
    assert.deepEqual(
      targets.map((t) => [t.role, t.group, t.topic, t.bucket, t.delayMs]),
      [
        ['order-writer', n.groups.orderWriter, n.topics.orders, undefined, undefined],
        ['timeout-closer', n.groups.timeoutCloser('fast'), n.topics.delay('fast'), 'fast', 5000],
        ['retry', n.groups.retry, n.topics.retry, undefined, undefined],
      ],
    );
  });

  it('measures lag per partition, its fall to 0 after commits, and the delay split, served from memory', { timeout: 60_000 }, async () => {
    const registry = new Registry();
    const collector = new LagCollector({ kafka, clock, registry });
    collector.setSales([sale]);
    const producer = await kafka.producer();
    const t0 = Date.now();
    nowMs = t0;
    await producer.send([
      { topic: n.topics.orders, messages: Array.from({ length: 10 }, (_, i) => ({ key: `sku-${i}`, value: `o${i}` })) },
      {
        topic: n.topics.delay('fast'),
        messages: [
          // four orders created a minute ago (due), three just now (due in 5 s)
          ...Array.from({ length: 4 }, (_, i) => ({ key: `old-${i}`, value: 'x', timestamp: t0 - 60_000 })),
          ...Array.from({ length: 3 }, (_, i) => ({ key: `new-${i}`, value: 'x', timestamp: t0 })),
        ],
      },
    ]);

    let snap = await collector.collectOnce();
    const writer = groupOf(snap.groups, 'order-writer');
    assert.equal(writer.lag, 10, 'never-committed group: everything retained is unread');
    assert.equal(writer.partitions.length, 2);
    assert.equal(writer.partitions.reduce((s, p) => s + p.high, 0), 10);
    assert.equal(writer.flashsale, `${namespace}/lagsale`);
    const closer = groupOf(snap.groups, 'timeout-closer');
    assert.deepEqual([closer.lag, closer.overdue, closer.scheduled], [7, 4, 3]);
    assert.equal(groupOf(snap.groups, 'retry').lag, 0);

    // The scrape reads the gauges the round filled, without asking Kafka.
    const text = await registry.metrics();
    const line = (name: string, labels: string) => {
      const found = text.split('\n').find((l) => l.startsWith(`${name}{`) && labels.split(',').every((kv) => l.includes(kv)));
      assert.ok(found, `${name} with ${labels} in\n${text}`);
      return Number(found.split(' ').at(-1));
    };
    assert.equal(line('kafka_consumergroup_group_sum_lag', `group="${n.groups.orderWriter}",role="order-writer"`), 10);
    assert.equal(line('kafka_consumergroup_group_max_lag', `group="${n.groups.orderWriter}"`), Math.max(...writer.partitions.map((p) => p.lag)));
    for (const p of writer.partitions) {
      assert.equal(line('kafka_consumergroup_group_lag', `group="${n.groups.orderWriter}",partition="${p.partition}"`), p.lag);
    }
    assert.equal(line('flashsale_timeouts_overdue', `bucket="fast",flashsale="${namespace}/lagsale"`), 4);
    assert.equal(line('flashsale_timeouts_scheduled', `bucket="fast"`), 3);

    // Time lag: 30 s later on the injected clock the unread orders are ~30 s old.
    nowMs = t0 + 30_000;
    snap = await collector.collectOnce();
    assert.equal(groupOf(snap.groups, 'order-writer').maxLagSeconds, 30);

    // The writer commits everything: per-partition lag goes back to 0.
    const admin = await kafka.admin();
    const consumer = kafka.consumer({ groupId: n.groups.orderWriter, topics: [n.topics.orders] });
    let read = 0;
    await consumer.start(async (batch, ctx) => {
      read += batch.messages.length;
      const last = batch.messages.at(-1);
      if (last) await ctx.commit((BigInt(last.offset) + 1n).toString());
    });
    await eventually(() => read >= 10, { what: 'the writer group read the 10 orders' });
    await consumer.stop();
    assert.equal(read, 10);
    assert.equal((await admin.groupOffsets(n.groups.orderWriter, [n.topics.orders])).length, 2);
    snap = await collector.collectOnce();
    const caughtUp = groupOf(snap.groups, 'order-writer');
    assert.deepEqual(caughtUp.partitions.map((p) => [p.lag, p.lagSeconds]), [[0, 0], [0, 0]]);
    const after0 = await registry.metrics();
    assert.match(after0, new RegExp(`kafka_consumergroup_group_sum_lag\\{group="${n.groups.orderWriter.replace(/\./g, '\\.')}"[^}]*\\} 0\\n`));

    // Time passes on the injected clock: the scheduled timeouts fall due.
    nowMs = t0 + 6_000 + 30_000;
    snap = await collector.collectOnce();
    const due = groupOf(snap.groups, 'timeout-closer');
    assert.deepEqual([due.lag, due.overdue, due.scheduled], [7, 7, 0]);

    // A removed sale leaves the snapshot and the metrics.
    collector.setSales([]);
    snap = await collector.collectOnce();
    assert.equal(snap.groups.length, 0);
    assert.doesNotMatch(await registry.metrics(), new RegExp(namespace));
    await producer.disconnect();
  });

  it('rounds on its own interval and stops cleanly', { timeout: 60_000 }, async () => {
    const registry = new Registry();
    const collector = new LagCollector({ kafka, registry, intervalMs: 50 });
    collector.setSales([sale]);
    collector.start();
    await eventually(() => collector.snapshot().at > 0, { intervalMs: 20, timeoutMs: 20_000, what: 'a first round' });
    await collector.stop();
    assert.ok(collector.snapshot().at > 0, 'a round happened');
    assert.equal(collector.snapshot(`${namespace}/lagsale`).groups.length, 3);
    assert.equal(collector.snapshot('other/sale').groups.length, 0);
    assert.match(await registry.metrics(), /flashsale_lag_collections_total\{result="ok"\} [1-9]/);
  });
  it('makes one fixed set of admin requests per round, and none per scrape', { timeout: 60_000 }, async () => {
    const calls: string[] = [];
    const real = await kafka.admin();
    // The real admin, counted: which requests a round makes, and that scrapes make none.
    const counted = countedAdmin(real, calls);
    const registry = new Registry();
    const collector = new LagCollector({ kafka: { admin: async () => counted }, registry });
    collector.setSales([sale]);
    await collector.collectOnce();
    // orders, delay.fast, retry: one watermark question for the three topics, an offsets request per
    // group (a new collector knows none), one time-index lookup (the delay topic has unread timeouts).
    const watermarks = `topicsOffsets ${[n.topics.delay('fast'), n.topics.orders, n.topics.retry].sort().join(' ')}`;
    assert.deepEqual(calls.sort(), [
      `groupOffsets ${n.groups.orderWriter}`,
      `groupOffsets ${n.groups.retry}`,
      `groupOffsets ${n.groups.timeoutCloser('fast')}`,
      `topicOffsetsAt ${n.topics.delay('fast')}`,
      watermarks,
    ].sort());
    calls.length = 0;
    for (let i = 0; i < 20; i++) assert.match(await registry.metrics(), /kafka_consumergroup_group_sum_lag/);
    assert.deepEqual([...calls], [], 'scrapes are served from memory');
    // Concurrent callers share one round.
    await Promise.all([collector.collectOnce(), collector.collectOnce(), collector.collectOnce()]);
    assert.deepEqual(calls.filter((c) => c.startsWith('topicsOffsets')), [watermarks]);
  });

  it('asks a group that had read everything again only when its topic moved, or after QUIET_GROUP_RECHECK_MS', { timeout: 60_000 }, async () => {
    const quiet = validateFlashSale({ ...sale, metadata: { name: 'lagquiet', namespace }, spec: { skus: [{ id: 'a', stock: 1, timeoutBucket: 'fast' }], timeoutBuckets: [{ name: 'fast', delay: '5s' }], kafka: { partitions: 2 } } });
    const nq = saleNames(quiet.metadata);
    await ensureTopics(await kafka.admin(), quiet);
    const calls: string[] = [];
    const counted = countedAdmin(await kafka.admin(), calls);
    let now = Date.now();
    const collector = new LagCollector({ kafka: { admin: async () => counted }, clock: () => now });
    collector.setSales([quiet]);
    const groups = (list: string[]) => list.filter((c) => c.startsWith('groupOffsets')).sort();
    const all = [nq.groups.orderWriter, nq.groups.retry, nq.groups.timeoutCloser('fast')].map((g) => `groupOffsets ${g}`).sort();
    await collector.collectOnce();
    assert.deepEqual(groups(calls), all, 'a new collector asks every group');
    calls.length = 0;
    now += 5_000;
    let snap = await collector.collectOnce();
    assert.deepEqual(groups(calls), [], 'nothing written, nothing unread: no group asked');
    assert.equal(calls.filter((c) => c.startsWith('topicsOffsets')).length, 1, 'the watermarks are asked every round');
    assert.deepEqual(snap.groups.map((g) => g.lag), [0, 0, 0]);

    // An order arrives: its topic moved, so its group is asked (and shows the lag); the others are not.
    const producer = await kafka.producer();
    await producer.send([{ topic: nq.topics.orders, messages: [{ key: 'a', value: 'o' }] }]);
    await producer.disconnect();
    calls.length = 0;
    now += 5_000;
    snap = await collector.collectOnce();
    assert.deepEqual(groups(calls), [`groupOffsets ${nq.groups.orderWriter}`]);
    assert.equal(groupOf(snap.groups, 'order-writer').lag, 1);
    // Unread, the group is asked every round.
    calls.length = 0;
    now += 5_000;
    await collector.collectOnce();
    assert.deepEqual(groups(calls), [`groupOffsets ${nq.groups.orderWriter}`]);

    // The quiet groups are asked again once QUIET_GROUP_RECHECK_MS has passed since they were asked.
    calls.length = 0;
    now += QUIET_GROUP_RECHECK_MS;
    await collector.collectOnce();
    assert.deepEqual(groups(calls), all);
  });

  it('skips the due-boundary lookup of a delay topic its group has read to the end', { timeout: 60_000 }, async () => {
    // A second sale of the namespace, never written to: its closer group has nothing unread.
    const idle = validateFlashSale({ ...sale, metadata: { name: 'lagidle', namespace }, spec: { skus: [{ id: 'a', stock: 1, timeoutBucket: 'fast' }], timeoutBuckets: [{ name: 'fast', delay: '5s' }], kafka: { partitions: 2 } } });
    const ni = saleNames(idle.metadata);
    await ensureTopics(await kafka.admin(), idle);
    const calls: string[] = [];
    const real = await kafka.admin();
    const counted = countedAdmin(real, calls);
    const collector = new LagCollector({ kafka: { admin: async () => counted } });
    collector.setSales([sale, idle]);
    const snap = await collector.collectOnce();
    // The first sale's delay topic holds 7 unread timeouts (the test above): asked; the idle one: not.
    assert.deepEqual(calls.filter((c) => c.startsWith('topicOffsetsAt')), [`topicOffsetsAt ${n.topics.delay('fast')}`]);
    assert.ok(calls.some((c) => c.startsWith('topicsOffsets') && c.split(' ').includes(ni.topics.delay('fast'))), 'the idle delay topic is still measured');
    const idleCloser = snap.groups.find((g) => g.flashsale === `${namespace}/lagidle` && g.role === 'timeout-closer');
    assert.deepEqual([idleCloser?.lag, idleCloser?.overdue, idleCloser?.scheduled], [0, 0, 0]);
    const busyCloser = snap.groups.find((g) => g.flashsale === `${namespace}/lagsale` && g.role === 'timeout-closer');
    assert.equal(busyCloser?.lag, 7);
  });

  it('runs a single loop across stop and start (leadership changes)', { timeout: 60_000 }, async () => {
    let rounds = 0;
    let open: () => void = () => undefined;
    const gate = new Promise<void>((r) => (open = r));
    const real = await kafka.admin();
    const collector = new LagCollector({
      kafka: {
        admin: async () => {
          rounds++;
          await gate; // the first round hangs until released: stop and start happen meanwhile
          return real;
        },
      },
      intervalMs: 200,
    });
    collector.setSales([sale]);
    collector.start();
    await eventually(() => rounds > 0, { intervalMs: 5, what: 'the first round' });
    void collector.stop(); // not awaited: the first loop's round is still running
    collector.start();
    const opened = performance.now();
    open();
    await eventually(() => rounds >= 5, { intervalMs: 20, timeoutMs: 30_000, what: 'rounds of the new loop' });
    const elapsed = performance.now() - opened;
    await collector.stop();
    // One loop waits 200 ms after each round before the next, so it makes at most elapsed/200 + 1
    // rounds after the first; two loops would make about twice that. A slow machine only makes fewer,
    // so this bound holds however loaded it is (no lower bound on the rate).
    const after = rounds;
    assert.ok(after - 1 <= elapsed / 200 + 1, `${after - 1} rounds in ${Math.round(elapsed)} ms: more than one loop`);
    // Absence can only be watched for a while: three intervals with no round after stop.
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(rounds, after, 'no round after stop');
  });
});

describe('mapLimit (the lag round\'s bound on admin requests in flight)', () => {
  it('keeps at most `limit` calls in flight and returns results in input order', async () => {
    let inFlight = 0;
    let most = 0;
    const gates: (() => void)[] = [];
    const done = mapLimit(Array.from({ length: 50 }, (_, i) => i), 8, async (i) => {
      inFlight++;
      most = Math.max(most, inFlight);
      await new Promise<void>((r) => gates.push(r));
      inFlight--;
      return i * 2;
    });
    // Release calls one by one as they arrive (each release lets the next call start).
    for (let released = 0; released < 50; released++) {
      for (let turns = 0; gates.length === 0; turns++) {
        if (turns > 1000) throw new Error(`no call waiting after ${released} releases`);
        await new Promise((r) => setImmediate(r));
      }
      (gates.shift() as () => void)();
    }
    const out = await done;
    assert.equal(most, 8);
    assert.deepEqual(out, Array.from({ length: 50 }, (_, i) => i * 2));
  });
});
