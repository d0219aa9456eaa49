// Test access to the real Kafka, Redis and MariaDB started by infra/up.sh. Every test run gets its
// own MySQL database, its own sale namespace (so its own topics, groups and Redis keys), and
// removes them afterwards.
import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';
import { loadConfig, type Config } from '../../controller/config.ts';
import { createKafkaGateway, type KafkaGateway } from '../../controller/infra/kafka.ts';
import { migrate } from '../../controller/infra/mysql.ts';
import { createRedis, deleteKeysMatching, type Redis } from '../../controller/infra/redis.ts';
import { createLogger } from '../../controller/log.ts';

export const runId = `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;

export const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'warn', 'test');

/** A unique, DNS-safe name for this test run: use it as a sale namespace or name suffix. */
export function uniqueName(prefix = 't'): string {
  // 4 random bytes: with 2, the dozen fixtures of one test file shared a database (or namespace)
  // about once in two thousand runs; the likely cause of one fresh-clone run's failure, where a
  // timeout test counted exactly the release records of another fixture of its file.
  return `${prefix}-${runId}-${randomBytes(4).toString('hex')}`.toLowerCase();
}

/** Configuration pointing at a fresh database of its own; call `dropDatabase` when done. */
export function testConfig(overrides: Partial<Config> = {}): Config {
  const base = loadConfig({});
  const database = `fs_test_${uniqueName('db').replace(/-/g, '_')}`;
  return { ...base, mysql: { ...base.mysql, database }, logLevel: 'warn', ...overrides };
}

/**
 * The test's database as a release shipped it: the migrations up to `version` applied (by the
 * project's own runner), the later ones not. Returns a connection using it (the caller ends it), to
 * fill the tables before the test migrates the rest.
 */
export async function databaseAtVersion(config: Config, version: number): Promise<mysql.Connection> {
  await migrate(config.mysql, version);
  const { host, port, user, password, database } = config.mysql;
  return mysql.createConnection({ host, port, user, password, database });
}

export async function dropDatabase(config: Config): Promise<void> {
  const { host, port, user, password, database } = config.mysql;
  if (!database.startsWith('fs_test_')) throw new Error(`refusing to drop ${database}`);
  const conn = await mysql.createConnection({ host, port, user, password });
  try {
    await conn.query(`DROP DATABASE IF EXISTS \`${database}\``);
  } finally {
    await conn.end();
  }
}

export function testKafka(clientId = `test-${runId}`): KafkaGateway {
  return createKafkaGateway({ brokers: loadConfig({}).kafkaBrokers, clientId, logger });
}

export function testRedis(): Redis {
  return createRedis(loadConfig({}).redisUrl);
}

/** Deletes every Redis key matching the patterns (SCAN, never KEYS). */
export const deleteRedisKeys = deleteKeysMatching;

/** Deletes every topic whose name starts with the prefix. */
export async function deleteTopics(kafka: KafkaGateway, prefix: string): Promise<void> {
  const admin = await kafka.admin();
  const topics = (await admin.listTopics()).filter((t) => t.startsWith(prefix));
  await admin.deleteTopics(topics);
}

/**
 * Polls `check` until it returns a truthy value or the deadline passes. The deadline also bounds a
 * check that never settles (a hung query or request): it is abandoned when the time is up.
 */
export async function eventually<T>(check: () => Promise<T | undefined | false | null> | T | undefined | false | null, opts: { timeoutMs?: number; intervalMs?: number; what?: string } = {}): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  const expired = Symbol('expired');
  let last: unknown;
  while (Date.now() < deadline) {
    let timer: NodeJS.Timeout | undefined;
    try {
      const v = await Promise.race([
        Promise.resolve().then(check),
        new Promise<typeof expired>((r) => (timer = setTimeout(() => r(expired), Math.max(0, deadline - Date.now())))),
      ]);
      if (v === expired) break;
      if (v) return v;
    } catch (err) {
      last = err;
    } finally {
      clearTimeout(timer);
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 100));
  }
  throw new Error(`timed out waiting for ${opts.what ?? 'condition'}${last ? `: ${String(last)}` : ''}`);
}
