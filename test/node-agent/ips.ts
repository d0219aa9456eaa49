// Pod addresses: every pod gets its own address from the pod CIDR, which the agent routes to `lo`
// as local addresses (`ip route replace local 10.244.0.0/16 dev lo`, the "AnyIP" route), so a
// process can bind any of them and several replicas listen on the same container port. (127/8
// would route the same way, but the apiserver refuses loopback addresses in EndpointSlices.) Leases are
// files in a machine-wide directory (one file per address, holding the agent's pid and the pod's
// uid), so two agents on one machine (cluster:up's and a test's own) never hand out one address
// twice; an address whose agent is dead is reclaimed.
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The default pod network: kind's/flannel's 10.244.0.0/16, routed to `lo` as local addresses. */
export const DEFAULT_POD_CIDR = '10.244.0.0/16';

const toInt = (ip: string) => ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);
const toIp = (n: number) => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');

/** Parses an IPv4 CIDR (prefix 8–30); throws on anything else. */
export function parseCidr(cidr: string): { first: number; size: number } {
  const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(cidr);
  const bits = Number(m?.[2]);
  if (!m || bits < 8 || bits > 30 || m[1]!.split('.').some((o) => Number(o) > 255)) throw new Error(`invalid pod CIDR "${cidr}" (IPv4, prefix /8 to /30)`);
  const size = 2 ** (32 - bits);
  return { first: Math.floor(toInt(m[1]!) / size) * size, size };
}

export function inCidr(ip: string, cidr: string): boolean {
  const { first, size } = parseCidr(cidr);
  return /^\d+\.\d+\.\d+\.\d+$/.test(ip) && toInt(ip) >= first && toInt(ip) < first + size;
}

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
  private readonly cidr: string;
  private readonly first: number;
  private readonly size: number;
  private next = 0;

  constructor(dir: string, cidr = DEFAULT_POD_CIDR, pid = process.pid) {
    this.dir = dir;
    this.pid = pid;
    this.cidr = cidr;
    ({ first: this.first, size: this.size } = parseCidr(cidr));
    mkdirSync(dir, { recursive: true });
  }

  /** The i-th usable address: skips the network address, .1 (the gateway by convention; 127.0.0.1 is the host) and the broadcast address. */
  addressAt(i: number): string {
    return toIp(this.first + 2 + (i % (this.size - 3)));
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
    if (preferred && inCidr(preferred, this.cidr) && toInt(preferred) >= this.first + 2 && toInt(preferred) < this.first + this.size - 1) {
      const o = this.owner(preferred);
      if (!o ? this.take(preferred, uid, false) : (o.uid === uid || !alive(o.pid)) && this.take(preferred, uid, true)) return preferred;
    }
    const usable = this.size - 3;
    for (let tries = 0; tries < usable; tries++) {
      const ip = this.addressAt(this.next);
      this.next = (this.next + 1) % usable;
      if (this.take(ip, uid, false)) return ip;
      const o = this.owner(ip);
      if (o && (o.uid === uid || !alive(o.pid)) && this.take(ip, uid, true)) return ip;
    }
    throw new Error(`no free pod address in ${this.cidr}`);
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
