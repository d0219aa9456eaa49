// Reading the API's own counts from its /metrics (Prometheus text).
import { eventually } from '../../support/infra.ts';
import { request } from './http.ts';

/** Sum of the samples of `name` (labelled or not) whose line contains `labels` (all of them when labels is ''). */
export function metricSum(text: string, name: string, labels = ''): number {
  return text
    .split('\n')
    .filter((l) => (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && l.includes(labels))
    .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

/** A histogram's sum and count in a /metrics text, over its series whose labels contain `labels`. */
export function histogramTotals(text: string, name: string, labels = ''): { sum: number; count: number } {
  return { sum: metricSum(text, `${name}_sum`, labels), count: metricSum(text, `${name}_count`, labels) };
}

/** The API's count of purchase requests answered 202 so far. */
export async function acceptedCount(apiUrl: string): Promise<number> {
  return metricSum((await request('GET', `${apiUrl}/metrics`)).text, 'flashsale_api_requests_total', 'outcome="accepted"');
}

/**
 * The API's count of 202 answers once the requests a load generator hung up on are all decided:
 * its count of decided requests unchanged for quietMs. Settling too early can only undercount the
 * 202s, which makes a "rows == 202s" check fail: it cannot hide a lost order.
 */
export async function settledAcceptedCount(apiUrl: string, quietMs: number): Promise<number> {
  const text = await whenQuiet(
    async () => (await request('GET', `${apiUrl}/metrics`)).text,
    (t) => metricSum(t, 'flashsale_api_requests_total'),
    quietMs,
    'the API to finish the requests the load generator hung up on',
  );
  return metricSum(text, 'flashsale_api_requests_total', 'outcome="accepted"');
}

/**
 * The last reading of `read` once `answered(reading)` has not moved for quietMs (a server still
 * answering the requests a load generator hung up on), polled every 100 ms, within quietMs + 60 s.
 */
export async function whenQuiet<T>(read: () => Promise<T>, answered: (reading: T) => number, quietMs: number, what: string): Promise<T> {
  let last = -1;
  let changedAt = performance.now();
  return eventually(
    async () => {
      const reading = await read();
      const n = answered(reading);
      if (n !== last) [last, changedAt] = [n, performance.now()];
      return performance.now() - changedAt >= quietMs ? reading : undefined;
    },
    { timeoutMs: quietMs + 60_000, intervalMs: 100, what },
  );
}
