import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { FastCounter, FastGauge, FastHistogram } from '../controller/metrics/hot-path.ts';

describe('FastHistogram', () => {
  it('renders exactly what prom-client renders for the same observations', async () => {
    const buckets = [0.001, 0.01, 0.1, 1];
    const a = new Registry();
    const b = new Registry();
    const reference = new Histogram({ name: 'x_seconds', help: 'h', labelNames: ['flashsale', 'route'], buckets, registers: [a] });
    const fast = new FastHistogram({ name: 'x_seconds', help: 'h', labelNames: ['flashsale', 'route'], buckets, registers: [b] });
    const samples: [string, string, number][] = [
      ['ns/s', 'order', 0.0005], ['ns/s', 'order', 0.001], ['ns/s', 'order', 0.05], ['ns/s', 'order', 3],
      ['ns/s', 'pay', 0.2], ['ns/t', 'order', 0.01], ['ns/t', 'order', 0.010001],
    ];
    for (const [sale, route, v] of samples) {
      reference.labels(sale, route).observe(v);
      fast.labels(sale, route).observe(v);
    }
    assert.equal(await b.metrics(), await a.metrics());
  });

  it('keeps one series per label set across labels() calls and resets', async () => {
    const r = new Registry();
    const h = new FastHistogram({ name: 'y_seconds', help: 'h', labelNames: ['l'], buckets: [1], registers: [r] });
    h.labels('a').observe(0.5);
    h.labels('a').observe(2);
    assert.match(await r.metrics(), /y_seconds_bucket\{le="1",l="a"\} 1\ny_seconds_bucket\{le="\+Inf",l="a"\} 2\ny_seconds_sum\{l="a"\} 2.5\ny_seconds_count\{l="a"\} 2/);
    assert.throws(() => h.labels('a', 'b'), /expected 1 label values/);
    h.reset();
    assert.doesNotMatch(await r.metrics(), /y_seconds_count/);
  });
});

describe('FastCounter', () => {
  it('renders exactly what prom-client renders for the same increments', async () => {
    const a = new Registry();
    const b = new Registry();
    const reference = new Counter({ name: 'x_total', help: 'h', labelNames: ['flashsale', 'outcome'], registers: [a] });
    const fast = new FastCounter({ name: 'x_total', help: 'h', labelNames: ['flashsale', 'outcome'], registers: [b] });
    // Before any increment both render only HELP and TYPE.
    assert.equal(await b.metrics(), await a.metrics());
    const steps: [string, string, number | undefined][] = [
      ['ns/s', 'accepted', undefined], ['ns/s', 'accepted', undefined], ['ns/s', 'sold_out', 5], ['ns/t', 'sold_out', 0.5], ['ns/"q"', 'invalid', undefined],
    ];
    for (const [sale, outcome, by] of steps) {
      reference.labels(sale, outcome).inc(by);
      fast.labels(sale, outcome).inc(by);
    }
    assert.equal(await b.metrics(), await a.metrics());
  });

  it('keeps one series per label set, refuses a step down, and resets', async () => {
    const r = new Registry();
    const c = new FastCounter({ name: 'y_total', help: 'h', labelNames: ['l'], registers: [r] });
    const child = c.labels('a');
    child.inc();
    c.labels('a').inc(2);
    assert.match(await r.metrics(), /\ny_total\{l="a"\} 3\n/);
    assert.throws(() => child.inc(-1), /y_total: a counter's step must be a finite number ≥ 0, got -1/);
    assert.throws(() => child.inc(Number.NaN), /got NaN/);
    assert.throws(() => c.labels('a', 'b'), /expected 1 label values/);
    c.reset();
    assert.doesNotMatch(await r.metrics(), /y_total\{/);
  });
});

describe('FastGauge', () => {
  it('renders exactly what prom-client renders for the same values', async () => {
    const a = new Registry();
    const b = new Registry();
    const reference = new Gauge({ name: 'x_units', help: 'h', labelNames: ['flashsale', 'sku'], registers: [a] });
    const fast = new FastGauge({ name: 'x_units', help: 'h', labelNames: ['flashsale', 'sku'], registers: [b] });
    assert.equal(await b.metrics(), await a.metrics());
    // Later values replace earlier ones; negative, fractional, NaN and infinite values render as prom-client renders them.
    const sets: [string, string, number][] = [
      ['ns/s', 'a', 10], ['ns/s', 'a', 9], ['ns/s', 'b', 0], ['ns/t', 'a', -2.5], ['ns/t', 'b', Number.NaN], ['ns/"q"', 'c', Number.POSITIVE_INFINITY], ['ns/s', 'b', 7],
    ];
    for (const [sale, sku, v] of sets) {
      reference.labels(sale, sku).set(v);
      fast.labels(sale, sku).set(v);
    }
    assert.equal(await b.metrics(), await a.metrics());
  });

  it('keeps one series per label set, refuses a value that is not a number, and resets', async () => {
    const r = new Registry();
    const g = new FastGauge({ name: 'y_units', help: 'h', labelNames: ['l'], registers: [r] });
    const child = g.labels('a');
    child.set(5);
    g.labels('a').set(3);
    assert.match(await r.metrics(), /\ny_units\{l="a"\} 3\n/);
    assert.throws(() => child.set('4' as unknown as number), /y_units: a gauge's value must be a number, got string/);
    assert.throws(() => g.labels('a', 'b'), /expected 1 label values/);
    g.reset();
    assert.doesNotMatch(await r.metrics(), /y_units\{/);
  });
});
