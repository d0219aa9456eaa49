// Issue 13, scenario 10: each fault of the list during a purchase storm with timeouts due (a 3 s
// bucket), on real worker processes against a throw-away Kafka broker, a throw-away Redis and the
// shared MariaDB, each behind a fault proxy. After the fault is healed and the system is quiet the
// invariant checker (test/support/checker.ts) must find nothing. One fresh sale per fault.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { afterAttempts, inject, runFaults, separateFaults, startInfra, startRig, type FaultKind, type Infra, type Mode } from './chaos/rig.ts';

let infra: Infra;

before(async () => {
  infra = await startInfra();
}, { timeout: 180_000 });

after(async () => {
  await infra?.close();
});

async function scenario(t: { diagnostic(m: string): void }, mode: Mode, fault: FaultKind): Promise<void> {
  const rig = await startRig(infra, { mode, seed: 10 });
  try {
    rig.startStorm({ buyers: 4, maxOrders: 1500, payEvery: 3 });
    await afterAttempts(rig, 60);
    const what = await inject(rig, fault);
    t.diagnostic(what);
    // Load goes on after the fault is healed, with more timeouts falling due.
    await afterAttempts(rig, 60);
    const result = await rig.quietAndCheck(120_000);
    t.diagnostic(`attempts ${rig.attempts()}, answers ${JSON.stringify(Object.fromEntries(rig.answers))}, acknowledged ${rig.acknowledged.size}, paid ${rig.paid.size}, summary ${JSON.stringify(result.summary)}`);
    assert.ok(rig.acknowledged.size > 0, 'the storm got orders accepted');
    assert.deepEqual(result.violations, [], `${fault}: invariant violations:\n${result.violations.join('\n')}`);
  } catch (err) {
    // What the workers said last, to tell a product defect from a slow machine.
    for (const w of rig.workers) t.diagnostic(`${w.name} (running ${w.running()}):\n${w.output().split('\n').slice(-12).join('\n')}`);
    throw err;
  } finally {
    await rig.close();
  }
}

describe('scenario 10: faults during a purchase storm (separate workers)', () => {
  for (const fault of separateFaults) {
    it(`${fault}: the checker passes`, { timeout: 300_000 }, (t) => scenario(t, 'separate', fault));
  }
});

describe('scenario 10: faults during a purchase storm (flashsale run)', () => {
  for (const fault of runFaults.filter((f) => f === 'kill9-run')) {
    it(`${fault}: the checker passes`, { timeout: 300_000 }, (t) => scenario(t, 'run', fault));
  }
});
