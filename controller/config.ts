// Process configuration from the environment. Every component reads the same names; a bad value
// stops the process at start with one line that names the variable.
import { levels } from 'pino';

export interface Config {
  kafkaBrokers: string[];
  redisUrl: string;
  mysql: MysqlConfig;
  httpPort: number;
  logLevel: string;
}

export interface MysqlConfig {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/**
 * How long a stop may take after SIGTERM/SIGINT: 20 s by default, under Kubernetes' 30 s grace period.
 * A stop can hang for reasons outside our code (kafkajs's disconnect during a group join, a broker
 * that stopped answering); the process then exits anyway instead of waiting for the SIGKILL.
 */
export function shutdownDeadlineMs(raw: string | undefined): number {
  const ms = raw === undefined || raw === '' ? 20_000 : Number(raw);
  if (!Number.isInteger(ms) || ms < 1) throw new ConfigError(`SHUTDOWN_DEADLINE_MS must be a positive integer (milliseconds), got "${raw}"`);
  return ms;
}

/**
 * DRAIN_DELAY_MS: how long `flashsale api` keeps answering after SIGTERM (not ready, closing every
 * connection it answers on) before it stops accepting. 0 (the default) stops at once, as a
 * standalone run or a test wants; the operator sets 5000 on the API's pods, the usual time for a
 * pod's removal from the endpoints to reach every load balancer.
 */
export function drainDelayMs(raw: string | undefined, deadlineMs: number): number {
  const ms = raw === undefined || raw === '' ? 0 : Number(raw);
  // The shutdown deadline counts from the signal: a delay that long would end every stop in exit 1.
  if (!Number.isInteger(ms) || ms < 0 || ms >= deadlineMs) throw new ConfigError(`DRAIN_DELAY_MS must be an integer from 0 to below SHUTDOWN_DEADLINE_MS (${deadlineMs}) (milliseconds), got "${raw}"`);
  return ms;
}

export const configDefaults = {
  KAFKA_BROKERS: '127.0.0.1:9092',
  REDIS_URL: 'redis://127.0.0.1:6379',
  MYSQL_URL: 'mysql://root@127.0.0.1:3306/flashsale',
  HTTP_PORT: '8080',
  LOG_LEVEL: 'info',
} as const;

type Env = Record<string, string | undefined>;

function value(env: Env, name: keyof typeof configDefaults): string {
  const v = env[name];
  return v === undefined || v === '' ? configDefaults[name] : v;
}

function fail(name: string, raw: string, why: string): never {
  throw new ConfigError(`invalid ${name}=${JSON.stringify(raw)}: ${why}`);
}

export function parseBrokers(raw: string): string[] {
  const brokers = raw.split(',').map((b) => b.trim()).filter(Boolean);
  if (brokers.length === 0) fail('KAFKA_BROKERS', raw, 'expected host:port[,host:port...]');
  for (const b of brokers) {
    const m = /^([^:\s]+):(\d{1,5})$/.exec(b);
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) fail('KAFKA_BROKERS', raw, `"${b}" is not host:port`);
  }
  return brokers;
}

export function parseMysqlUrl(raw: string): MysqlConfig {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    fail('MYSQL_URL', raw, 'not a URL; expected mysql://user[:password]@host[:port]/database');
  }
  if (url.protocol !== 'mysql:') fail('MYSQL_URL', raw, `scheme must be mysql://, got ${url.protocol}//`);
  if (!url.hostname) fail('MYSQL_URL', raw, 'missing host');
  const database = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (!/^[A-Za-z0-9_$]{1,64}$/.test(database)) fail('MYSQL_URL', raw, 'missing or invalid database name in the path');
  const port = url.port ? Number(url.port) : 3306;
  if (!(port >= 1 && port <= 65535)) fail('MYSQL_URL', raw, 'port out of range');
  return {
    host: url.hostname,
    port,
    user: decodeURIComponent(url.username) || 'root',
    password: decodeURIComponent(url.password),
    database,
  };
}

export function loadConfig(env: Env = process.env): Config {
  const redisUrl = value(env, 'REDIS_URL');
  try {
    const u = new URL(redisUrl);
    if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new Error();
  } catch {
    fail('REDIS_URL', redisUrl, 'expected redis://[user:password@]host[:port][/db]');
  }
  const portRaw = value(env, 'HTTP_PORT');
  const httpPort = /^\d{1,5}$/.test(portRaw) ? Number(portRaw) : NaN;
  if (!(httpPort >= 0 && httpPort <= 65535)) fail('HTTP_PORT', portRaw, 'expected an integer 0..65535');
  const logLevel = value(env, 'LOG_LEVEL');
  if (!(logLevel in levels.values) && logLevel !== 'silent') {
    fail('LOG_LEVEL', logLevel, `expected one of ${Object.keys(levels.values).join(', ')}, silent`);
  }
  return {
    kafkaBrokers: parseBrokers(value(env, 'KAFKA_BROKERS')),
    redisUrl,
    mysql: parseMysqlUrl(value(env, 'MYSQL_URL')),
    httpPort,
    logLevel,
  };
}
