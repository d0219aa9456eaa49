import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../controller/config.ts';
import { operatorOptions } from '../controller/operator/main.ts';

const cli = new URL('../bin/flashsale.js', import.meta.url).pathname;

describe('configuration', () => {
  it('has the documented defaults', () => {
    const c = loadConfig({});
    assert.deepEqual(c.kafkaBrokers, ['127.0.0.1:9092']);
    assert.equal(c.redisUrl, 'redis://127.0.0.1:6379');
    assert.deepEqual(c.mysql, { host: '127.0.0.1', port: 3306, user: 'root', password: '', database: 'flashsale' });
    assert.equal(c.httpPort, 8080);
    assert.equal(c.logLevel, 'info');
  });

  it('reads credentials from MYSQL_URL', () => {
    const c = loadConfig({ MYSQL_URL: 'mysql://app:s%40cret@db.internal:3307/shop' });
    assert.deepEqual(c.mysql, { host: 'db.internal', port: 3307, user: 'app', password: 's@cret', database: 'shop' });
  });

  for (const [name, value, message] of [
    ['MYSQL_URL', 'postgres://x/y', 'invalid MYSQL_URL="postgres://x/y": scheme must be mysql://, got postgres://'],
    ['MYSQL_URL', 'mysql://root@localhost', 'invalid MYSQL_URL="mysql://root@localhost": missing or invalid database name in the path'],
    ['KAFKA_BROKERS', 'localhost', 'invalid KAFKA_BROKERS="localhost": "localhost" is not host:port'],
    ['REDIS_URL', 'http://x', 'invalid REDIS_URL="http://x": expected redis://[user:password@]host[:port][/db]'],
    ['HTTP_PORT', '80a', 'invalid HTTP_PORT="80a": expected an integer 0..65535'],
    ['LOG_LEVEL', 'loud', 'invalid LOG_LEVEL="loud": expected one of trace, debug, info, warn, error, fatal, silent'],
  ] as const) {
    it(`rejects a bad ${name} with one line naming it`, () => {
      assert.throws(() => loadConfig({ [name]: value }), (err: unknown) => err instanceof ConfigError && err.message === message);
    });
  }

  it('makes the CLI fail at start with that one line', () => {
    const r = spawnSync(process.execPath, [cli, 'api'], { env: { ...process.env, MYSQL_URL: 'mysql:/nope' }, encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /^flashsale: invalid MYSQL_URL="mysql:\/nope": /);
  });

  it('lists the subcommands in --help and gives usage with exit 2 on unknown input', () => {
    const help = spawnSync(process.execPath, [cli, '--help'], { encoding: 'utf8' });
    assert.equal(help.status, 0);
    for (const c of ['run', 'operator', 'api', 'order-writer', 'timeout-closer', 'compensator']) assert.match(help.stdout, new RegExp(`^  ${c} `, 'm'));
    const unknown = spawnSync(process.execPath, [cli, 'explode'], { encoding: 'utf8' });
    assert.equal(unknown.status, 2);
    assert.match(unknown.stderr, /unknown command "explode"[\s\S]*Usage: flashsale <command>/);
    const badFlag = spawnSync(process.execPath, [cli, 'api', '--frobnicate'], { encoding: 'utf8' });
    assert.equal(badFlag.status, 2);
    assert.match(badFlag.stderr, /Unknown option '--frobnicate'[\s\S]*Usage: flashsale api/);
  });
});

describe('operator settings from the environment (the chart\'s contract)', () => {
  const base = loadConfig({});
  it('defaults to 16 workers and 50 QPS / 100 burst', () => {
    const o = operatorOptions({}, base, {});
    assert.equal(o.workers, 16);
    assert.equal(o.kubeApiQps, 50);
    assert.equal(o.kubeApiBurst, 100);
  });
  it('takes OPERATOR_WORKERS, KUBE_API_QPS and KUBE_API_BURST, and names a bad one', () => {
    const o = operatorOptions({}, base, { OPERATOR_WORKERS: '8', KUBE_API_QPS: '50.5', KUBE_API_BURST: '100' });
    assert.deepEqual([o.workers, o.kubeApiQps, o.kubeApiBurst], [8, 50.5, 100]);
    assert.throws(() => operatorOptions({}, base, { OPERATOR_WORKERS: '0' }), /OPERATOR_WORKERS/);
    assert.throws(() => operatorOptions({}, base, { KUBE_API_QPS: '-1' }), /KUBE_API_QPS/);
    assert.throws(() => operatorOptions({}, base, { KUBE_API_BURST: '2.5' }), /KUBE_API_BURST/);
  });
  it('hands the workers the image pull policy and pull Secrets, and names a bad one', () => {
    const none = operatorOptions({}, base, {}).worker;
    assert.deepEqual([none.imagePullPolicy, none.imagePullSecrets], [undefined, undefined], 'unset: Kubernetes\' defaults, no Secrets');
    const o = operatorOptions({}, base, { WORKER_IMAGE_PULL_POLICY: 'Always', WORKER_IMAGE_PULL_SECRETS: ' regcred, mirror.creds ,regcred,' }).worker;
    assert.deepEqual([o.imagePullPolicy, o.imagePullSecrets], ['Always', ['regcred', 'mirror.creds']]);
    assert.throws(() => operatorOptions({}, base, { WORKER_IMAGE_PULL_POLICY: 'always' }), /WORKER_IMAGE_PULL_POLICY="always": expected one of Always, IfNotPresent, Never/);
    assert.throws(() => operatorOptions({}, base, { WORKER_IMAGE_PULL_SECRETS: 'regcred,Reg_Cred' }), /WORKER_IMAGE_PULL_SECRETS: "Reg_Cred" is not a Secret name/);
  });
});
