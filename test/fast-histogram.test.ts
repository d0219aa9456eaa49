import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Histogram, Registry } from 'prom-client';
import { FastHistogram } from '../controller/metrics/fast-histogram.ts';

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
