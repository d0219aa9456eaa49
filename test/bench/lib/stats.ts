// Summaries computed from raw results: median and spread (min–max) across runs, percentiles of samples.

export interface Spread {
  n: number;
  median: number;
  min: number;
  max: number;
}

/** Median and min–max of the finite values (NaN everywhere when there are none). */
export function spread(values: number[]): Spread {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return { n: 0, median: NaN, min: NaN, max: NaN };
  const mid = Math.floor(v.length / 2);
  const median = v.length % 2 === 1 ? (v[mid] as number) : ((v[mid - 1] as number) + (v[mid] as number)) / 2;
  return { n: v.length, median, min: v[0] as number, max: v.at(-1) as number };
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  if (p <= 0) return sorted[0] as number;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}
