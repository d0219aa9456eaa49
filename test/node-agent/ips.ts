// Pod addresses on the loopback network: Linux routes all of 127.0.0.0/8 to `lo`, so every pod
// gets its own 127.0.x.y and several replicas listen on the same container port. Leases are
// files in a machine-wide directory (one file per address, holding the agent's pid and the pod's
// uid), so two agents on one machine (cluster:up's and a test's own) never hand out one address
// twice; an address whose agent is dead is reclaimed.
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** 127.0.0.2 … 127.0.255.254, never 127.0.0.1 (the host) nor .0/.255. */
export function addressAt(i: number): string {
  const n = i + 2; // skip 127.0.0.0 and 127.0.0.1
  return `127.0.${Math.floor(n / 256)}.${n % 256}`;
}
const SIZE = 256 * 256 - 2;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class PodIPs {
  private readonly dir: string;
  private readonly pid: number;
  private next = 0;

  constructor(dir: string, pid = process.pid) {
    this.dir = dir;
    this.pid = pid;
    mkdirSync(dir, { recursive: true });
  }

  private owner(ip: string): { pid: number; uid: string } | undefined {
    try {
      const [pid, uid] = readFileSync(join(this.dir, ip), 'utf8').trim().split(' ');
      return { pid: Number(pid), uid: uid ?? '' };
    } catch {
      return undefined;
    }
  }

  private take(ip: string, uid: string, reclaim: boolean): boolean {
    try {
      writeFileSync(join(this.dir, ip), `${this.pid} ${uid}\n`, { flag: reclaim ? 'w' : 'wx' });
      return true;
    } catch {
      return false;
    }
  }

  /** The pod's address: `preferred` (its status.podIP after an agent restart) when free or its own, else the next free one. */
  allocate(uid: string, preferred?: string): string {
    if (preferred && /^127\.0\.\d+\.\d+$/.test(preferred) && preferred !== '127.0.0.1') {
      const o = this.owner(preferred);
      if (!o ? this.take(preferred, uid, false) : (o.uid === uid || !alive(o.pid)) && this.take(preferred, uid, true)) return preferred;
    }
    for (let tries = 0; tries < SIZE; tries++) {
      const i = this.next;
      this.next = (this.next + 1) % SIZE;
      const n = i + 2;
      if (n % 256 === 0 || n % 256 === 255) continue;
      const ip = addressAt(i);
      if (this.take(ip, uid, false)) return ip;
      const o = this.owner(ip);
      if (o && (o.uid === uid || !alive(o.pid)) && this.take(ip, uid, true)) return ip;
    }
    throw new Error('no free pod address in 127.0.0.0/16');
  }

  /** Gives the address back if this agent holds it for that pod. */
  release(ip: string, uid: string): void {
    const o = this.owner(ip);
    if (o && o.pid === this.pid && o.uid === uid) rmSync(join(this.dir, ip), { force: true });
  }

  /** Addresses this process holds (for tests). */
  held(): string[] {
    return readdirSync(this.dir).filter((ip) => this.owner(ip)?.pid === this.pid);
  }
}
