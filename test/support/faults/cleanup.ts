// Every child process a fault tool starts (brokers, redis-servers, workers) is tracked here and
// SIGKILLed when the test process ends, also when it is stopped by SIGINT/SIGTERM (a cancelled test
// run must not leave a broker or a worker behind). Temporary directories handed to such processes
// (a sale's YAML file) are removed then too.
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';

const live = new Set<ChildProcess>();
const dirs = new Set<string>();

function killAll(): void {
  for (const c of live) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  live.clear();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs.clear();
}

process.once('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    killAll();
    process.exit(128 + (sig === 'SIGINT' ? 2 : 15));
  });
}

export function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
}

/** Removes `dir` (recursively) when the test process ends: after the processes that read it are killed. */
export function removeAtExit(dir: string): void {
  dirs.add(dir);
}
