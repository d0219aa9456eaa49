// V8 settings of every flashsale process, applied by the program itself (cli.ts) so the image's
// entrypoint, `npx flashsale` and the benchmarks' servers all run with the same ones.
import { setFlagsFromString } from 'node:v8';

/**
 * --no-memory-reducer-favors-memory: V8's memory reducer still collects a heap that went idle, but
 * not in its "reduce memory footprint" mode, which also throws away compiled code. A flash-sale
 * workload idles before the sale and between bursts; measured on node:http servers (docs/order-path.md,
 * "A process that idled"), one such GC left a server answering at ~25 % more CPU per request for
 * minutes afterwards, while a server without it stayed at its fresh cost. V8 reads this flag when the
 * reducer starts a GC, so setting it at startup takes effect (seen with --trace-gc on Node 24.21: no
 * "(reduce)" GC after the idle spell). Node documents flags set after start-up as unsupported in
 * general: on a Node upgrade, check the trace again.
 */
export const V8_FLAGS: readonly string[] = ['--no-memory-reducer-favors-memory'];

/** Applies V8_FLAGS to this process and returns them (logged at start). */
export function applyV8Flags(): readonly string[] {
  for (const flag of V8_FLAGS) setFlagsFromString(flag);
  return V8_FLAGS;
}
