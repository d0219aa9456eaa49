// What a benchmark needs to know about the machine and the running systems: CPU time of every
// process of the pipeline (from /proc/<pid>/stat), the versions the systems report themselves,
// the git commit, and which cores to pin the load generator and the server under test to.
import { execFileSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import type { Config } from '../../../controller/config.ts';
import type { Pool } from '../../../controller/infra/mysql.ts';
import type { Redis } from '../../../controller/infra/redis.ts';
import { V8_FLAGS } from '../../../controller/runtime.ts';

/** Clock ticks per second of utime/stime in /proc/<pid>/stat (USER_HZ, 100 on Linux unless told otherwise). */
export const TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** utime + stime of a process (all its threads), in seconds; NaN when it is gone or unreadable. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces: fields are counted after its closing paren.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS;
  } catch {
    return NaN;
  }
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
  } catch {
    return '';
  }
}

function comm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

function allPids(): number[] {
  return readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number);
}

/** Pids of the processes holding a TCP socket that listens on `port` (from /proc/net/tcp{,6} and /proc/<pid>/fd). */
export function pidsListeningOn(port: number): number[] {
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is HEXIP:HEXPORT, st 0A is LISTEN, inode is field 10.
      if (f.length > 9 && f[3] === '0A' && parseInt(f[1]?.split(':')[1] ?? '', 16) === port) inodes.add(f[9] as string);
    }
  }
  if (inodes.size === 0) return [];
  const found: number[] = [];
  for (const pid of allPids()) {
    try {
      for (const fd of readdirSync(`/proc/${pid}/fd`)) {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m && inodes.has(m[1] as string)) {
          found.push(pid);
          break;
        }
      }
    } catch {
      // gone, or not ours to read
    }
  }
  return found;
}

/** The ports of Redis, MariaDB and (the first) Kafka broker the configuration points at. */
export function pipelinePorts(config: Config): { redis: number; mariadb: number; kafka: number } {
  return {
    redis: Number(new URL(config.redisUrl).port || 6379),
    mariadb: config.mysql.port,
    kafka: Number(config.kafkaBrokers[0]?.split(':').at(-1) ?? 9092),
  };
}

/**
 * The shared systems of the pipeline: the processes listening on their ports (so a throwaway
 * broker or Redis of another test is not counted), else found by process name.
 */
export function infraPids(ports: { redis: number; mariadb: number; kafka: number } = { redis: 6379, mariadb: 3306, kafka: 9092 }): { redis: number[]; mariadb: number[]; kafka: number[] } {
  const byPort = { redis: pidsListeningOn(ports.redis), mariadb: pidsListeningOn(ports.mariadb), kafka: pidsListeningOn(ports.kafka) };
  const byName = { redis: [] as number[], mariadb: [] as number[], kafka: [] as number[] };
  for (const pid of allPids()) {
    const c = comm(pid);
    if (c === 'redis-server') byName.redis.push(pid);
    else if (c === 'mariadbd' || c === 'mysqld') byName.mariadb.push(pid);
    else if (c === 'java' && / kafka\.Kafka( |$)/.test(` ${cmdline(pid)}`)) byName.kafka.push(pid);
  }
  return {
    redis: byPort.redis.length ? byPort.redis : byName.redis,
    mariadb: byPort.mariadb.length ? byPort.mariadb : byName.mariadb,
    kafka: byPort.kafka.length ? byPort.kafka : byName.kafka,
  };
}

/**
 * Pids of the test control plane by role, from the executable's name: the apiserver, the controller
 * manager and the launcher that embeds etcd (infra/cluster.sh).
 */
export function controlPlanePids(): { apiserver: number[]; 'controller-manager': number[]; etcd: number[] } {
  const out = { apiserver: [] as number[], 'controller-manager': [] as number[], etcd: [] as number[] };
  for (const pid of allPids()) {
    const exe = (cmdline(pid).split(' ')[0] ?? '').split('/').at(-1);
    if (exe === 'kube-apiserver') out.apiserver.push(pid);
    else if (exe === 'kube-controller-manager') out['controller-manager'].push(pid);
    else if (exe === 'kube-testcluster') out.etcd.push(pid);
  }
  return out;
}

/** A set of named processes whose CPU time is read before and after a measured run. */
export class CpuMeter {
  private readonly roles = new Map<string, number[]>();
  private start = new Map<string, number>();

  constructor(roles: Record<string, number[]>) {
    for (const [role, pids] of Object.entries(roles)) this.roles.set(role, pids);
  }

  private read(): Map<string, number> {
    const m = new Map<string, number>();
    for (const [role, pids] of this.roles) m.set(role, pids.reduce((s, p) => s + cpuSeconds(p), 0));
    return m;
  }

  begin(): void {
    this.start = this.read();
  }

  /** CPU seconds per role since begin(); NaN for a role whose process ended in between. */
  end(): Record<string, number> {
    const now = this.read();
    const out: Record<string, number> = {};
    for (const [role, v] of now) out[role] = v - (this.start.get(role) ?? NaN);
    return out;
  }
}

/** Roles of the pipeline that were not found: printed so that a CPU sum that misses a process says so. */
export function missingRoles(roles: Record<string, number[]>): string[] {
  return Object.entries(roles).filter(([, pids]) => pids.length === 0).map(([r]) => r);
}

/** Kafka's version from the running broker: the kafka_<scala>-<version>.jar its JVM holds open, else its classpath. */
export function kafkaVersion(pid: number | undefined): string {
  if (pid === undefined) return 'unknown (no kafka.Kafka JVM found)';
  const pattern = /kafka_[\d.]+-(\d+\.\d+\.\d+[\w.-]*?)\.jar$/;
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const m = pattern.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) return m[1] as string;
      } catch {
        // fd closed meanwhile
      }
    }
  } catch {
    // not our process: fall through to the classpath
  }
  const cp = /-cp\s+(\S+)/.exec(cmdline(pid));
  if (cp) {
    const dir = (cp[1] as string).split(':')[0]?.replace(/\/\*$/, '') ?? '';
    try {
      for (const f of readdirSync(dir)) {
        const m = pattern.exec(f);
        if (m) return m[1] as string;
      }
    } catch {
      // unreadable classpath
    }
  }
  return 'unknown';
}

export interface Versions {
  node: string;
  /** NODE_OPTIONS the benchmark ran with (its child processes inherit it); absent in older lines. */
  nodeOptions?: string;
  /** V8 flags every Node process of the run was started or set up with (controller/runtime.ts); absent in older lines. */
  v8Flags?: string[];
  /** Whether every Node process of the run held a tick object (holdTickObjectMaps, controller/runtime.ts); absent in older lines. */
  tickMapsHeld?: boolean;
  kafka: string;
  mariadb: string;
  redis: string;
  wrk: string;
}

/** Versions as the running systems report them (nothing hard-coded). */
export async function readVersions(deps: { pool: Pool; redis: Redis; kafkaPid: number | undefined }): Promise<Versions> {
  const [rows] = await deps.pool.query('SELECT VERSION() AS v');
  const info = await deps.redis.info('server');
  let wrk = 'unknown';
  try {
    execFileSync('wrk', ['-v'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    // `wrk -v` prints its version and exits 1.
    const out = `${(err as { stdout?: string }).stdout ?? ''}${(err as { stderr?: string }).stderr ?? ''}`;
    wrk = /^wrk (\S+)/m.exec(out)?.[1] ?? 'unknown';
  }
  return {
    node: process.version,
    nodeOptions: process.env.NODE_OPTIONS ?? '',
    v8Flags: [...V8_FLAGS],
    tickMapsHeld: true,
    kafka: kafkaVersion(deps.kafkaPid),
    mariadb: String((rows as { v: string }[])[0]?.v ?? 'unknown'),
    redis: /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown',
    wrk,
  };
}

export interface GitInfo {
  commit: string;
  /**
   * Code changed in the work tree at the time of the run (others' work in a shared tree included).
   * Results, generated reports and other Markdown do not count: a batch appends to the tracked
   * results, so every batch after the first of a series would otherwise be marked dirty.
   */
  dirty: boolean;
}

/** What gitInfo's dirty flag ignores: files a run writes or that do not change the measured code. */
const NOT_CODE = [':(exclude)test/bench/results', ':(exclude,glob)**/*.md', ':(exclude,glob)test/bench/*.svg'];

export function gitInfo(root: string): GitInfo {
  try {
    const commit = execFileSync('git', ['-C', root, 'rev-parse', 'HEAD'], { encoding: 'utf8' }).trim();
    const status = execFileSync('git', ['-C', root, 'status', '--porcelain', '--untracked-files=no', '--', '.', ...NOT_CODE], { encoding: 'utf8' }).trim();
    return { commit, dirty: status.length > 0 };
  } catch {
    return { commit: 'unknown', dirty: true };
  }
}

export interface Machine {
  cores: number;
  model: string;
  loadavg1: number;
}

export function machine(): Machine {
  return { cores: availableParallelism(), model: cpus()[0]?.model.trim() ?? 'unknown', loadavg1: loadavg()[0] ?? NaN };
}

export interface Pinning {
  /** Core of the load generator, or null when not pinned. */
  loadCore: number | null;
  /** Core of the server under test (bare server or API), or null when not pinned. */
  serverCore: number | null;
  note: string;
}

/** Load generator and server under test on different cores when this process may use two and taskset exists. */
export function choosePinning(disabled = false): Pinning {
  if (disabled) return { loadCore: null, serverCore: null, note: 'not pinned (--no-pin)' };
  let allowed: number[] = [];
  try {
    execFileSync('taskset', ['-V'], { stdio: 'ignore' });
    const out = execFileSync('taskset', ['-cp', String(process.pid)], { encoding: 'utf8' });
    const list = /:\s*(\S+)\s*$/.exec(out.trim())?.[1] ?? '';
    for (const part of list.split(',')) {
      const [a, b] = part.split('-').map(Number);
      if (a === undefined || Number.isNaN(a)) continue;
      for (let c = a; c <= (b ?? a); c++) allowed.push(c);
    }
  } catch {
    return { loadCore: null, serverCore: null, note: 'not pinned: taskset is not available' };
  }
  allowed = [...new Set(allowed)].sort((x, y) => x - y);
  if (allowed.length < 2) return { loadCore: null, serverCore: null, note: `not pinned: this process may use only core(s) ${allowed.join(',') || '?'}` };
  const serverCore = allowed[0] as number;
  const loadCore = allowed[1] as number;
  return { loadCore, serverCore, note: `wrk pinned to core ${loadCore}, server under test to core ${serverCore} (taskset); Kafka, Redis, MariaDB and the order writer float` };
}

/** argv prefixed with `taskset -c <core>` when core is not null. */
export function pinned(core: number | null, argv: string[]): [string, string[]] {
  if (core === null) return [argv[0] as string, argv.slice(1)];
  return ['taskset', ['-c', String(core), ...argv]];
}

/** Stops a child process of the benchmark: SIGTERM, SIGKILL after 15 s. */
export async function stopChild(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  c.kill('SIGTERM');
  const timer = setTimeout(() => c.kill('SIGKILL'), 15_000);
  await once(c, 'exit');
  clearTimeout(timer);
}
