// Redis and data faults: a throw-away redis-server that can be restarted empty, snapshots of a
// sale's keys (DUMP) restored later (RESTORE … REPLACE: Redis "back from an older snapshot"), and a
// consumer group reset to the earliest offsets (full replay).
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { Redis as IORedis } from 'ioredis';
import type { Redis } from '../../../controller/infra/redis.ts';
import type { FlashSale } from '../../../controller/spec/flashsale.ts';
import { saleNames } from '../../../controller/spec/names.ts';
import { track } from './cleanup.ts';
import { freePort } from './proxy.ts';

export interface ThrowawayRedis {
  port: number;
  url: string;
  /** SIGKILL and start again on the same port with nothing in it (no persistence): "Redis restarted empty". */
  restartEmpty(): Promise<void>;
  kill9(): Promise<void>;
  stop(): Promise<void>;
}


export async function startRedis(opts: { port?: number } = {}): Promise<ThrowawayRedis> {
  const port = opts.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'fs-redis-'));
  let child: ChildProcess | undefined;
  const launch = async () => {
    const c = spawn('redis-server', ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: ['ignore', 'ignore', 'ignore'] });
    child = c;
    track(c);
    const deadline = Date.now() + 15_000;
    for (;;) {
      const probe = new IORedis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      probe.on('error', () => undefined);
      const ok = await probe.connect().then(() => probe.ping(), () => '');
      probe.disconnect();
      if (ok === 'PONG') return;
      if (c.exitCode !== null) throw new Error(`redis-server on ${port} exited (${c.exitCode})`);
      if (Date.now() > deadline) throw new Error(`redis-server on ${port} did not answer`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const kill9 = async () => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = once(c, 'exit');
    c.kill('SIGKILL');
    await exited;
  };
  await launch();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    kill9,
    async restartEmpty() {
      await kill9();
      await launch();
    },
    async stop() {
      await kill9();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export type RedisSnapshot = { key: string; dump: Buffer | null; pttl: number }[];

/** Every key of the sale's SKUs (stock.ts layout), for snapshot/restore. */
export function saleKeys(sale: FlashSale): string[] {
  const names = saleNames(sale.metadata);
  return sale.spec.skus.flatMap((s) => Object.values(names.redis.sku(s.id)));
}

/** DUMP of each key (null when absent), taken in one MULTI so the snapshot is consistent. */
export async function snapshot(redis: Redis, keys: string[]): Promise<RedisSnapshot> {
  const multi = redis.multi();
  for (const k of keys) {
    multi.dumpBuffer(k);
    multi.pttl(k);
  }
  const out = (await multi.exec()) ?? [];
  return keys.map((key, i) => ({ key, dump: (out[2 * i]?.[1] as Buffer | null) ?? null, pttl: Number(out[2 * i + 1]?.[1] ?? -1) }));
}

/** Puts the snapshot back (RESTORE … REPLACE); keys absent at snapshot time are deleted. One MULTI. */
export async function restore(redis: Redis, snap: RedisSnapshot): Promise<void> {
  const multi = redis.multi();
  for (const s of snap) {
    if (s.dump === null) multi.del(s.key);
    else multi.restore(s.key, s.pttl > 0 ? s.pttl : 0, s.dump, 'REPLACE');
  }
  const out = (await multi.exec()) ?? [];
  const failed = out.find(([err]) => err);
  if (failed) throw failed[0] as Error;
}

/**
 * Sets a consumer group's committed offsets back to the earliest retained offset of every partition
 * (a full replay). The group's members must be stopped: Kafka refuses to move the offsets of an
 * active group. kafkajs directly because the project's gateway (controller/infra/kafka.ts) has no
 * offset-reset call and a fault tool should not add one to the product.
 */
export async function resetGroupToEarliest(brokers: string[], groupId: string, topic: string): Promise<void> {
  const kafka = new Kafka({ clientId: 'faults-reset', brokers, logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.resetOffsets({ groupId, topic, earliest: true });
  } finally {
    await admin.disconnect();
  }
}
