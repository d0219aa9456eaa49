// Helpers of the issue-13 scenario tests (test/scenario-*.test.ts): real `flashsale` worker
// processes started from a spec of the test's choosing, tracked so every test kills what it started.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { Config } from '../../controller/config.ts';
import type { FlashSale } from '../../controller/spec/flashsale.ts';
import { freePort } from './faults/proxy.ts';
import { eventually } from './infra.ts';
import { http } from './order-path.ts';

const bin = fileURLToPath(new URL('../../bin/flashsale.js', import.meta.url));

export interface Worker {
  child: ChildProcess;
  /** Base URL of its HTTP endpoints (the API's, or /metrics and /healthz of a worker). */
  url: string;
  /** SIGKILL and wait for the exit. */
  kill(): Promise<void>;
  /** SIGTERM and wait for the exit; resolves with the exit code. */
  stop(): Promise<number | null>;
}

export class Workers {
  private readonly all: Worker[] = [];

  /**
   * Starts `flashsale <command> [args]` for the sale (FLASHSALE_SPEC), waits until its /healthz
   * answers. `redisUrl`/`mysqlUrl` default to the shared servers of `config`.
   */
  async start(command: string, sale: FlashSale, config: Config, o: { args?: string[]; redisUrl?: string; mysqlUrl?: string; env?: Record<string, string>; label?: string } = {}): Promise<Worker> {
    const port = await freePort();
    const { host, port: myPort, user, database } = config.mysql;
    const child = spawn(process.execPath, ['--disable-warning=TimeoutNegativeWarning', bin, command, ...(o.args ?? [])], {
      env: {
        ...process.env,
        FLASHSALE_SPEC: JSON.stringify(sale),
        MYSQL_URL: o.mysqlUrl ?? `mysql://${user}@${host}:${myPort}/${database}`,
        REDIS_URL: o.redisUrl ?? config.redisUrl,
        HTTP_PORT: String(port),
        HTTP_HOST: '127.0.0.1',
        LOG_LEVEL: 'warn',
        ...o.env,
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const label = o.label ?? command;
    child.stderr?.on('data', (d: Buffer) => process.stderr.write(`[${label} ${child.pid}] ${d.toString()}`));
    const url = `http://127.0.0.1:${port}`;
    const exited = () => child.exitCode !== null || child.signalCode !== null;
    const w: Worker = {
      child,
      url,
      async kill() {
        if (exited()) return;
        const done = once(child, 'exit');
        child.kill('SIGKILL');
        await done;
      },
      async stop() {
        if (exited()) return child.exitCode;
        const done = once(child, 'exit');
        child.kill('SIGTERM');
        const [code] = (await done) as [number | null];
        return code;
      },
    };
    this.all.push(w);
    await eventually(async () => {
      if (exited()) throw new Error(`${label} exited with ${child.exitCode ?? child.signalCode}`);
      return (await http('GET', `${url}/healthz`)).status === 200;
    }, { timeoutMs: 60_000, intervalMs: 100, what: `${label} answering /healthz` });
    return w;
  }

  async killAll(): Promise<void> {
    await Promise.all(this.all.map((w) => w.kill()));
  }
}
