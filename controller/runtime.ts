// V8 settings of every flashsale process. Two kinds: flags V8 reads as it goes, which the program
// sets on itself (cli.ts), so every way of starting it gets them; and flags V8 reads only once, at
// start, which must be on node's command line: bin/flashsale.js's `#!` line passes them (the image's
// entrypoint and `npx flashsale` run through it), and every launcher of `node bin/flashsale.js`
// (the node agent, the benchmarks, the tests' process helpers) puts NODE_FLAGS before the script.
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

/**
 * --no-maglev: no mid-tier compiler; hot code goes from the baseline tier straight to TurboFan. An
 * API process that idled for a few seconds after start (as before a sale) came out, in about half
 * of its launches, in a state where every process.nextTick built its tick object through V8's
 * runtime (map transitions and migrations on each call) for the rest of its life: ~25 % more CPU
 * per request, 21-23 µs instead of 16-18 on this machine. With --no-maglev on the command line, no
 * launch out of 16 did; the first second of load was ~3 % slower, the rest the same
 * (docs/order-path.md, "Half of the launches"). Set at run time it changes nothing: V8 decides
 * whether Maglev is on when the isolate is created.
 */
export const NODE_FLAGS: readonly string[] = ['--no-maglev'];

/** Applies V8_FLAGS to this process and returns every V8 flag it runs with (logged at start). */
export function applyV8Flags(): readonly string[] {
  for (const flag of V8_FLAGS) setFlagsFromString(flag);
  return [...NODE_FLAGS.filter((f) => process.execArgv.includes(f)), ...V8_FLAGS];
}

/** The NODE_FLAGS this process was started without (a launcher that does not pass them). */
export function missingNodeFlags(): string[] {
  return NODE_FLAGS.filter((f) => !process.execArgv.includes(f));
}
