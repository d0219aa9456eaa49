// Operator metric helpers: the phase state set, SKU stock figures, reconcile outcomes, forgetting a sale.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { SALE_PHASES, forgetSale, observeReconcile, operatorMetrics, setSalePhase, setSkuStock } from '../controller/metrics/operator.ts';

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
});
