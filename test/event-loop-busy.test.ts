import assert from 'node:assert/strict';
import { it } from 'node:test';
import { setImmediate as turn } from 'node:timers/promises';
import { Registry } from 'prom-client';
import { dataPlaneMetrics } from '../controller/metrics/dataplane.ts';
import { metricSum } from './bench/lib/api-metrics.ts';

const busySeconds = async (r: Registry) => metricSum(await r.metrics(), 'flashsale_event_loop_busy_seconds_total');

it('flashsale_event_loop_busy_seconds_total counts the time the event loop ran code, never going back', async () => {
  const r = new Registry();
  dataPlaneMetrics(r);
  await turn();
  const before = await busySeconds(r);
  // Keep the thread busy for 50 ms of its own clock: all of it is event-loop time, however loaded the machine.
  const spin = performance.now();
  while (performance.now() - spin < 50);
  const spun = (performance.now() - spin) / 1000;
  await turn();
  const after = await busySeconds(r);
  assert.ok(after - before >= spun, `busy grew by ${after - before} s over a ${spun} s spin`);
  // A second scrape right away adds only what ran in between: the counter is not re-added.
  const again = await busySeconds(r);
  assert.ok(again >= after && again - after < spun, `second scrape ${again} after ${after}`);
});
