// Metrics for the API's hot path, counted, timed or set on every request. prom-client validates and
// hashes the label set on every inc()/observe()/set() (labels() only binds the call to the label
// object; the gauge sorts the label names each time), which cost a quarter of the rejection path's
// throughput in the seckill benchmark for the histogram, 0.7 µs per request (profile, 2026-12-02)
// for the counter, and 6 % of the API's allocations per accepted order for the stock gauge (heap
// sampling, 2026-12-05). Here a label set is resolved once (labels()) and the child only adds or
// stores. All three register in a prom-client Registry as custom metrics and render the same
// exposition text as prom-client's Histogram, Counter and Gauge (test/hot-path-metrics.test.ts
// compares them).
import type { Registry } from 'prom-client';

export interface HotPathMetricOptions<L extends string> {
  name: string;
  help: string;
  labelNames: readonly L[];
  registers: Registry[];
}

/**
 * What both metrics share: prom-client's custom-metric fields, registration, and one series per
 * label set, found by labels() once (the child returned keeps its series).
 */
abstract class HotPathMetric<L extends string, S> {
  readonly name: string;
  readonly help: string;
  readonly aggregator = 'sum';
  private readonly labelNames: readonly L[];
  protected readonly series = new Map<string, S & { labels: Record<string, string> }>();

  constructor(opts: HotPathMetricOptions<L>) {
    this.name = opts.name;
    this.help = opts.help;
    this.labelNames = opts.labelNames;
    for (const r of opts.registers) r.registerMetric(this as never);
  }

  /** The series of the label values (in labelNames order), made by `fresh` the first time. */
  protected seriesOf(values: string[], fresh: () => S): S & { labels: Record<string, string> } {
    if (values.length !== this.labelNames.length) throw new Error(`${this.name}: expected ${this.labelNames.length} label values`);
    const key = values.join('\u0000');
    let s = this.series.get(key);
    if (!s) {
      s = { ...fresh(), labels: Object.fromEntries(this.labelNames.map((n, i) => [n, values[i] as string])) };
      this.series.set(key, s);
    }
    return s;
  }

  reset(): void {
    this.series.clear();
  }
}

export interface FastHistogramOptions<L extends string> extends HotPathMetricOptions<L> {
  buckets: readonly number[];
}

export class FastHistogram<L extends string = string> extends HotPathMetric<L, { counts: Float64Array; sum: number; count: number }> {
  readonly type = 'histogram';
  private readonly bounds: readonly number[];

  constructor(opts: FastHistogramOptions<L>) {
    super(opts);
    this.bounds = [...opts.buckets].sort((a, b) => a - b);
  }

  /** The series of one label set, in labelNames order; keep the result and call observe() on it. */
  labels(...values: string[]): { observe(value: number): void } {
    const bounds = this.bounds;
    // counts: non-cumulative count per bucket; the last slot is +Inf.
    const series = this.seriesOf(values, () => ({ counts: new Float64Array(bounds.length + 1), sum: 0, count: 0 }));
    return {
      observe(value: number) {
        let i = 0;
        while (i < bounds.length && value > (bounds[i] as number)) i++;
        (series.counts[i] as number) += 1;
        series.sum += value;
        series.count += 1;
      },
    };
  }

  /** prom-client's metric interface: what Registry.metrics() renders. */
  async get() {
    const values: { metricName: string; labels: Record<string, string | number>; value: number }[] = [];
    for (const s of this.series.values()) {
      let cumulative = 0;
      this.bounds.forEach((le, i) => {
        cumulative += s.counts[i] as number;
        values.push({ metricName: `${this.name}_bucket`, labels: { le, ...s.labels }, value: cumulative });
      });
      cumulative += s.counts[this.bounds.length] as number;
      values.push({ metricName: `${this.name}_bucket`, labels: { le: '+Inf', ...s.labels }, value: cumulative });
      values.push({ metricName: `${this.name}_sum`, labels: s.labels, value: s.sum });
      values.push({ metricName: `${this.name}_count`, labels: s.labels, value: s.count });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }
}

/** A metric of one number per series (counter, gauge), rendered as prom-client renders it. */
abstract class ValueMetric<L extends string> extends HotPathMetric<L, { value: number }> {
  abstract readonly type: 'counter' | 'gauge';

  /** prom-client's metric interface: what Registry.metrics() renders. */
  async get() {
    const values = [...this.series.values()].map((s) => ({ labels: s.labels, value: s.value }));
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }
}

/** A labelled counter whose children only add (see the head of this file). */
export class FastCounter<L extends string = string> extends ValueMetric<L> {
  readonly type = 'counter';

  /** The series of one label set, in labelNames order; keep the result and call inc() on it. */
  labels(...values: string[]): { inc(by?: number): void } {
    const series = this.seriesOf(values, () => ({ value: 0 }));
    const name = this.name;
    return {
      inc(by = 1) {
        // A counter only goes up: prom-client throws on a negative or non-finite step too.
        if (!(Number.isFinite(by) && by >= 0)) throw new Error(`${name}: a counter's step must be a finite number ≥ 0, got ${by}`);
        series.value += by;
      },
    };
  }

}

/** A labelled gauge whose children only store the value (see the head of this file). */
export class FastGauge<L extends string = string> extends ValueMetric<L> {
  readonly type = 'gauge';

  /** The series of one label set, in labelNames order; keep the result and call set() on it. */
  labels(...values: string[]): { set(value: number): void } {
    const series = this.seriesOf(values, () => ({ value: 0 }));
    const name = this.name;
    return {
      set(value: number) {
        // prom-client refuses a value that is not a number too.
        if (typeof value !== 'number') throw new TypeError(`${name}: a gauge's value must be a number, got ${typeof value}`);
        series.value = value;
      },
    };
  }

}
