// V8 settings of every flashsale process, applied by the program itself (cli.ts) so the image's
// entrypoint, `npx flashsale` and the benchmarks' servers all run with the same ones: its flags and
// the held tick-object maps.
import { createHook } from 'node:async_hooks';
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

/** One tick object, held for the process's life: see holdTickObjectMaps. */
let heldTickObject: object | undefined;

/**
 * Keeps the maps (V8's hidden classes) of `process.nextTick`'s tick objects alive for good.
 *
 * Why: nextTick builds each tick object with a literal whose first keys are computed (symbols). V8
 * holds that literal's maps only weakly, and its feedback for a computed key goes from monomorphic
 * straight to megamorphic the first time it sees another map (Runtime_DefineKeyedOwnPropertyInLiteral),
 * with no way back. A process that idles (no tick object alive) through a few full GCs, which the
 * memory reducer runs on an idle heap, loses the maps; the next tick object gets new ones, and from
 * then on every nextTick (four per HTTP request) defines its properties through V8's runtime. Measured
 * on the API (docs/order-path.md, "Half of the launches"): ~25 % more CPU per request for the
 * process's life, in a share of launches that depended on when those GCs fell. One live tick object
 * keeps its map and, through the maps' back pointers, the whole chain, so the feedback stays
 * monomorphic: test/runtime.test.ts checks both sides on this Node.
 *
 * The hook is enabled only around one nextTick at start-up, and without promise tracking
 * (`trackPromises: false`): a hook that tracks promises installs V8 promise hooks, which invalidate
 * V8's PromiseHook protector for the process's life even after the hook is disabled, and optimized
 * code then takes the slower, hook-checking path on every await (+7.6 % per await step in a scratch
 * loop on Node 24.21). The pinned Node 24.21 has the option; an older Node ignores it and loses the
 * protector as before, which test/runtime.test.ts then reports. Idempotent.
 */
export function holdTickObjectMaps(): void {
  if (heldTickObject !== undefined) return;
  const hook = createHook({
    init(_asyncId, type, _triggerAsyncId, resource) {
      if (type === 'TickObject' && heldTickObject === undefined) heldTickObject = resource;
    },
    trackPromises: false,
  });
  hook.enable();
  try {
    process.nextTick(() => {});
  } finally {
    hook.disable();
  }
  if (heldTickObject === undefined) throw new Error('holdTickObjectMaps: nextTick made no TickObject (has Node changed its async hooks?)');
}

/** Everything every flashsale process sets up for V8 at start: the flags, then the held tick maps. */
export function applyRuntimeSettings(): readonly string[] {
  const flags = applyV8Flags();
  holdTickObjectMaps();
  return flags;
}
