// controller/runtime.ts's held tick maps, checked against this Node's V8. A child process ticks, goes
// idle through full GCs with no tick object alive (what the memory reducer does to an idle server),
// ticks again and prints V8's feedback for process.nextTick (%DebugPrint, --allow-natives-syntax).
// The literal that builds a tick object has one feedback slot per computed key; megamorphic there means
// every nextTick defines its properties through V8's runtime (docs/order-path.md, "Half of the
// launches"). Counts, not time: the outcome depends on how many GCs ran, not on how fast.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const runtimeModule = fileURLToPath(new URL('../controller/runtime.ts', import.meta.url));
/** V8 frees a map only after it went unused through a few full GCs (map retention): 12 is well past it. */
const IDLE_GCS = 12;

/** The states of nextTick's literal feedback slots after the idle GCs, in a child with or without the hold. */
async function literalFeedbackAfterIdleGcs(hold: boolean): Promise<string[]> {
  const script = `
    ${hold ? `(await import(${JSON.stringify(runtimeModule)})).holdTickObjectMaps();` : ''}
    const noop = () => {};
    // Every step runs from setImmediate, so no tick object is on the stack when gc() runs.
    const ticks = (rounds, then) => { for (let i = 0; i < 200; i++) process.nextTick(noop); setImmediate(rounds > 0 ? () => ticks(rounds - 1, then) : then); };
    // A TurboFan job still compiling nextTick in the background holds the maps strongly, and how long
    // it runs depends on the machine's load: seen in 2-4 % of children without this wait.
    const finishBackgroundCompiles = new Function('%FinalizeOptimization()');
    const idleGcs = (n, then) => setImmediate(() => { finishBackgroundCompiles(); globalThis.gc(); n > 1 ? idleGcs(n - 1, then) : then(); });
    const print = new Function('f', 'return %DebugPrint(f)');
    ticks(100, () => idleGcs(${IDLE_GCS}, () => ticks(100, () => print(process.nextTick))));
  `;
  const { stdout } = await run(process.execPath, ['--allow-natives-syntax', '--expose-gc', '--input-type=module', '-e', script], { maxBuffer: 16 << 20 });
  return [...stdout.matchAll(/DefineKeyedOwnPropertyInLiteral (\w+)/g)].map((m) => m[1] as string);
}

describe('held tick-object maps (controller/runtime.ts)', () => {
  it('without the hold, idle GCs turn nextTick megamorphic on this Node (the scenario reproduces the fault)', async () => {
    const states = await literalFeedbackAfterIdleGcs(false);
    assert.ok(states.length >= 4, `nextTick's literal has its computed-key slots: ${states.join(' ')}`);
    // If this fails after a Node upgrade, V8 no longer loses the maps here: holdTickObjectMaps may be
    // unneeded, and docs/order-path.md should say so.
    assert.ok(states.includes('MEGAMORPHIC'), `idle GCs without the hold left nextTick megamorphic: ${states.join(' ')}`);
  });

  it('with the hold, nextTick stays monomorphic through the same idle GCs', async () => {
    const states = await literalFeedbackAfterIdleGcs(true);
    assert.ok(states.length >= 4, `nextTick's literal has its computed-key slots: ${states.join(' ')}`);
    assert.deepEqual(new Set(states), new Set(['MONOMORPHIC']), `every slot monomorphic: ${states.join(' ')}`);
  });
});

/** V8's protector invalidations in a child that runs `setup`, then awaits (--trace-protector-invalidation prints them). */
async function protectorInvalidations(setup: string): Promise<string[]> {
  const script = `${setup}; await Promise.resolve(); await new Promise((r) => setImmediate(r)); console.log('done');`;
  const { stdout } = await run(process.execPath, ['--trace-protector-invalidation', '--input-type=module', '-e', script]);
  assert.match(stdout, /done\n$/);
  return [...stdout.matchAll(/Invalidating protector cell (\w+)/g)].map((m) => m[1] as string);
}

describe('the hold leaves promises alone (controller/runtime.ts)', () => {
  it('an async hook that tracks promises invalidates the PromiseHook protector for good (the check sees it)', async () => {
    const cells = await protectorInvalidations(`const h = (await import('node:async_hooks')).createHook({ init() {} }); h.enable(); process.nextTick(() => {}); h.disable()`);
    assert.ok(cells.includes('PromiseHook'), `invalidated: ${cells.join(' ')}`);
  });

  it('holdTickObjectMaps keeps the PromiseHook protector intact', async () => {
    const cells = await protectorInvalidations(`(await import(${JSON.stringify(runtimeModule)})).holdTickObjectMaps()`);
    assert.ok(!cells.includes('PromiseHook'), `invalidated: ${cells.join(' ')}`);
  });
});
