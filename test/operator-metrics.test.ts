// Operator metric helpers: the phase state set, SKU stock figures, reconcile outcomes, forgetting a sale.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import {
  QueueMetrics, RECONCILE_TIME_BUCKETS, SALE_PHASES, activeWorkers, forgetSale, initControllerMetrics, observeReconcile, operatorMetrics, setLeader, setSalePhase, setSkuStock,
} from '../controller/metrics/operator.ts';
import { ManualClock } from '../controller/operator/clock.ts';
import { WorkQueue } from '../controller/operator/workqueue.ts';

/** `le` bounds of a histogram's buckets in the exposition text, +Inf excluded. */
function bucketsOf(text: string, name: string): number[] {
  const les = [...text.matchAll(new RegExp(`^${name}_bucket\\{[^}]*le="([^"]+)"`, 'gm'))].map((m) => m[1] as string);
  return [...new Set(les)].filter((le) => le !== '+Inf').map(Number);
}

/** The label names of a metric's samples (all of them, sorted). */
async function labelNames(registry: Registry, name: string): Promise<string[]> {
  const metric = registry.getSingleMetric(name);
  assert.ok(metric, `${name} registered`);
  // A histogram's `le` belongs to its buckets, not to the metric's own labels.
  return [...new Set((await metric.get()).values.flatMap((v) => Object.keys(v.labels)))].filter((l) => l !== 'le').sort();
}

/** The value of the first sample line `name{labels}` in the exposition text. */
function sample(text: string, name: string, labels: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('operator metrics', () => {
  it('keeps exactly one phase at 1 per sale', async () => {
    const registry = new Registry();
    const m = operatorMetrics(registry);
    assert.equal(operatorMetrics(registry), m, 'defined once per registry');
    setSalePhase(m, 'shop/a', 'Provisioning');
    setSalePhase(m, 'shop/a', 'Ready');
    const values = (await m.salePhase.get()).values.filter((v) => v.labels.flashsale === 'shop/a');
    assert.equal(values.length, SALE_PHASES.length);
    assert.deepEqual(values.filter((v) => v.value === 1).map((v) => v.labels.phase), ['Ready']);
  });

  it('exports reconciles, stock figures, and forgets a deleted sale', async () => {
    const registry = new Registry();
    const m = operatorMetrics(registry);
    observeReconcile(m, 'success', 0.02);
    observeReconcile(m, 'error', 1.5);
    setSkuStock(m, 'shop/a', { id: 'phone', stock: 10, remaining: 4, sold: 6 });
    setSkuStock(m, 'shop/b', { id: 'phone', stock: 5, remaining: 5, sold: 0 });
    setSalePhase(m, 'shop/a', 'Ready');
    m.leader.set(1);
    m.workQueueDepth.set(3);
    let text = await registry.metrics();
    assert.match(text, /flashsale_operator_reconciles_total\{result="success"\} 1/);
    assert.match(text, /flashsale_operator_reconcile_duration_seconds_count\{result="error"\} 1/);
    assert.match(text, /flashsale_sku_sold\{flashsale="shop\/a",sku="phone"\} 6/);
    assert.match(text, /flashsale_operator_leader 1/);
    assert.match(text, /flashsale_operator_workqueue_depth 3/);
    await forgetSale(m, 'shop/a');
    text = await registry.metrics();
    assert.doesNotMatch(text, /shop\/a/);
    assert.match(text, /flashsale_sku_stock\{flashsale="shop\/b",sku="phone"\} 5/);
  });

  it('reports reconciles under controller-runtime names, results, labels and buckets', async () => {
    const registry = new Registry();
    const m = operatorMetrics(registry);
    initControllerMetrics(m, 2);
    let text = await registry.metrics();
    for (const r of ['success', 'error', 'requeue', 'requeue_after']) {
      assert.equal(sample(text, 'controller_runtime_reconcile_total', `controller="flashsale",result="${r}"`), 0, `${r} present at 0 from the start`);
    }
    assert.equal(sample(text, 'controller_runtime_max_concurrent_reconciles', 'controller="flashsale"'), 2);
    activeWorkers(m, 1);
    observeReconcile(m, 'success', 0.02, { requeueAfter: true });
    observeReconcile(m, 'success', 0.03);
    observeReconcile(m, 'invalid', 0.01);
    observeReconcile(m, 'error', 1.5);
    observeReconcile(m, 'requeue', 0.2);
    text = await registry.metrics();
    assert.equal(sample(text, 'controller_runtime_reconcile_total', 'controller="flashsale",result="requeue_after"'), 1);
    assert.equal(sample(text, 'controller_runtime_reconcile_total', 'controller="flashsale",result="success"'), 2, 'an invalid spec reported is a successful reconcile');
    assert.equal(sample(text, 'controller_runtime_reconcile_total', 'controller="flashsale",result="error"'), 1);
    assert.equal(sample(text, 'controller_runtime_reconcile_total', 'controller="flashsale",result="requeue"'), 1);
    assert.equal(sample(text, 'controller_runtime_reconcile_errors_total', 'controller="flashsale"'), 1);
    assert.equal(sample(text, 'controller_runtime_reconcile_time_seconds_count', 'controller="flashsale"'), 5);
    assert.equal(sample(text, 'controller_runtime_active_workers', 'controller="flashsale"'), 1);
    assert.equal(sample(text, 'flashsale_operator_reconciles_total', 'result="success"'), 2, 'our own names stay');
    // controller-runtime's buckets, exactly (pkg/internal/controller/metrics/metrics.go).
    assert.deepEqual(bucketsOf(text, 'controller_runtime_reconcile_time_seconds'), RECONCILE_TIME_BUCKETS);
    assert.equal(RECONCILE_TIME_BUCKETS.length, 40);
    assert.deepEqual([RECONCILE_TIME_BUCKETS[0], RECONCILE_TIME_BUCKETS.at(-1)], [0.005, 60]);
    assert.deepEqual(await labelNames(registry, 'controller_runtime_reconcile_total'), ['controller', 'result']);
    assert.deepEqual(await labelNames(registry, 'controller_runtime_reconcile_time_seconds'), ['controller']);
    assert.deepEqual(await labelNames(registry, 'controller_runtime_reconcile_errors_total'), ['controller']);
  });

  it('reports the work queue under client-go names: adds, depth, latency, work duration, unfinished work, retries', async () => {
    const registry = new Registry();
    const m = operatorMetrics(registry);
    const clock = new ManualClock();
    const q = new WorkQueue({ clock, metrics: new QueueMetrics(m, 'flashsale', () => clock.monotonic()) });
    const labels = 'name="flashsale",controller="flashsale"';
    let text = await registry.metrics();
    assert.equal(sample(text, 'workqueue_depth', `${labels},priority=""`), 0, 'present before the first add');
    q.add('shop/a');
    q.add('shop/b');
    q.add('shop/a'); // deduplicated: not an add
    text = await registry.metrics();
    assert.equal(sample(text, 'workqueue_adds_total', labels), 2);
    assert.equal(sample(text, 'workqueue_depth', `${labels},priority=""`), 2);
    clock.advance(3_000);
    const key = await q.get();
    assert.equal(key, 'shop/a');
    clock.advance(500);
    text = await registry.metrics();
    assert.equal(sample(text, 'workqueue_depth', `${labels},priority=""`), 1);
    assert.equal(sample(text, 'workqueue_queue_duration_seconds_count', labels), 1);
    assert.equal(sample(text, 'workqueue_queue_duration_seconds_sum', labels), 3, 'waited 3 s in the queue');
    assert.equal(sample(text, 'workqueue_unfinished_work_seconds', labels), 0.5, 'in progress for 0.5 s');
    assert.equal(sample(text, 'workqueue_longest_running_processor_seconds', labels), 0.5);
    q.add('shop/a'); // changed while being reconciled: dirty, counted once, re-queued by done()
    clock.advance(1_500);
    q.done('shop/a');
    text = await registry.metrics();
    assert.equal(sample(text, 'workqueue_work_duration_seconds_count', labels), 1);
    assert.equal(sample(text, 'workqueue_work_duration_seconds_sum', labels), 2);
    assert.equal(sample(text, 'workqueue_unfinished_work_seconds', labels), 0, 'nothing in progress');
    assert.equal(sample(text, 'workqueue_adds_total', labels), 3, 're-queued by done() is not a second add');
    assert.equal(sample(text, 'workqueue_depth', `${labels},priority=""`), 2);
    assert.equal(q.len(), 2);
    const k2 = await q.get();
    q.addRateLimited(k2 as string);
    q.done(k2 as string);
    text = await registry.metrics();
    assert.equal(sample(text, 'workqueue_retries_total', labels), 1);
    // client-go's buckets: ExponentialBuckets(10e-9, 10, 12).
    const expected = [1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 1, 10, 100, 1000];
    assert.deepEqual(bucketsOf(text, 'workqueue_queue_duration_seconds'), expected);
    assert.deepEqual(bucketsOf(text, 'workqueue_work_duration_seconds'), expected);
    assert.deepEqual(await labelNames(registry, 'workqueue_depth'), ['controller', 'name', 'priority']);
    for (const n of ['workqueue_adds_total', 'workqueue_retries_total', 'workqueue_unfinished_work_seconds', 'workqueue_longest_running_processor_seconds']) {
      assert.deepEqual(await labelNames(registry, n), ['controller', 'name'], n);
    }
    q.shutdown();
  });

  it('reports leadership as leader_election_master_status{name} and flashsale_operator_leader', async () => {
    const registry = new Registry();
    const m = operatorMetrics(registry);
    setLeader(m, 'flashsale-operator', false);
    let text = await registry.metrics();
    assert.equal(sample(text, 'leader_election_master_status', 'name="flashsale-operator"'), 0);
    setLeader(m, 'flashsale-operator', true);
    text = await registry.metrics();
    assert.equal(sample(text, 'leader_election_master_status', 'name="flashsale-operator"'), 1);
    assert.match(text, /^flashsale_operator_leader 1$/m);
    assert.deepEqual(await labelNames(registry, 'leader_election_master_status'), ['name']);
  });
});
