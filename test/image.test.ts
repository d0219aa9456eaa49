// The container image's runtime stage, proven without a Docker engine: this test assembles the
// same production tree the Dockerfile builds — compile in a clean copy of the sources the build
// stage copies, `npm pack`, unpack into an empty folder, `npm ci --omit=dev` against the lockfile —
// then runs `flashsale --help` and a real `flashsale api` from it against the real Redis, Kafka and
// MariaDB. A runtime dependency missing from package.json fails here, as it would in the image.
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { createPool, type Pool } from '../controller/infra/mysql.ts';
import { ensureSchema, ensureStock, ensureTopics } from '../controller/dataplane/provision.ts';
import { saleContext } from '../controller/dataplane/sale-context.ts';
import { validateFlashSale } from '../controller/spec/flashsale.ts';
import { saleNames } from '../controller/spec/names.ts';
import { deleteRedisKeys, deleteTopics, dropDatabase, eventually, testConfig, testKafka, testRedis, uniqueName } from './support/infra.ts';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../', import.meta.url));
// The build stage's COPY lines (see Dockerfile): nothing else reaches the compiler or the package.
const buildInputs = ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'bin', 'controller', 'crds'];
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  version: string;
  dependencies: Record<string, string>;
};
// Node 24 first on PATH, as in the image, so the `#!/usr/bin/env node` of bin/flashsale.js finds it.
const childEnv = { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}`, NODE_OPTIONS: '' };

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('container image runtime stage (production tree)', () => {
  let work: string;
  let tarball: string;
  let app: string;

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'flashsale-image-'));
    // Build stage: a clean copy of the inputs (so no stale dist/ or stray file can leak into the
    // package), compiled with the project's dev dependencies, then packed.
    const build = join(work, 'build');
    mkdirSync(build);
    // .dockerignore keeps controller/**/*.test.ts out of the build context; so does this copy.
    for (const input of buildInputs) cpSync(join(root, input), join(build, input), { recursive: true, filter: (src) => !src.endsWith('.test.ts') });
    symlinkSync(join(root, 'node_modules'), join(build, 'node_modules'), 'dir');
    await run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: build, env: childEnv });
    const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: build, env: childEnv });
    const [packed] = JSON.parse(stdout) as { filename: string }[];
    tarball = join(work, packed!.filename);

    // Runtime stage: the package unpacked into an empty folder, production dependencies from the lockfile.
    app = join(work, 'app');
    mkdirSync(app);
    await run('tar', ['-xzf', tarball, '--strip-components=1', '-C', app]);
    cpSync(join(root, 'package-lock.json'), join(app, 'package-lock.json'));
    await run('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline'], { cwd: app, env: childEnv, timeout: 300_000 });
  });

  after(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('mirrors the Dockerfile: same build inputs, production install, non-root, flashsale entrypoint', () => {
    const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');
    const [buildStage, runtimeStage] = dockerfile.split(/^FROM .*$/m).slice(1);
    assert.ok(buildStage && runtimeStage, 'two stages');
    const copied = [...buildStage.matchAll(/^COPY (?!--)(.+) \S+$/gm)].flatMap((m) => m[1]!.split(/\s+/));
    assert.deepEqual(copied.sort(), [...buildInputs].sort());
    assert.match(runtimeStage, /npm ci --omit=dev/);
    assert.match(runtimeStage, /^USER [1-9]\d*:[1-9]\d*$/m);
    assert.match(runtimeStage, /^ENTRYPOINT \["flashsale"\]$/m);
    // .dockerignore is an allow-list of exactly those inputs.
    const ignore = readFileSync(join(root, '.dockerignore'), 'utf8').split('\n').filter((l) => l && !l.startsWith('#'));
    assert.equal(ignore[0], '*');
    assert.deepEqual(ignore.filter((l) => l.startsWith('!')).map((l) => l.slice(1).replace(/\/$/, '')).sort(), [...buildInputs].sort());
  });

  it('packs only the compiled program, its entry point, the CRD and the package metadata', async () => {
    const { stdout } = await run('tar', ['-tzf', tarball]);
    const files = stdout.split('\n').filter(Boolean).map((f) => f.replace(/^package\//, ''));
    const allowed = (f: string) =>
      // dist/package.json: the operator imports package.json (its version), so tsc emits a copy.
      ['package.json', 'README.md', 'LICENSE', 'bin/flashsale.js', 'dist/package.json'].includes(f) ||
      (f.startsWith('dist/controller/') && /\.js(\.map)?$/.test(f)) ||
      /^crds\/[\w.-]+\.yaml$/.test(f);
    assert.deepEqual(files.filter((f) => !allowed(f)), [], 'unexpected files in the package');
    assert.ok(files.includes('dist/controller/cli.js'));
    assert.ok(files.includes('crds/flashsale.yaml'));
    for (const f of files) {
      assert.ok(!/(^|\/)(test|\.cache|node_modules)\//.test(f) && !/\.test\.js/.test(f), `${f} is test or cache content`);
      assert.ok(!/\.ts$/.test(f), `${f} is a TypeScript source`);
      assert.ok(!/(^|\/)\.env|\.pem$|\.key$|id_rsa|\.npmrc$/.test(f), `${f} looks like a secret`);
    }
    // Every source module of the program is compiled into the package.
    const sources = walk(join(root, 'controller'))
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && !f.endsWith('/spec/generate.ts'))
      .map((f) => `dist/${relative(root, f).replace(/\.ts$/, '.js')}`);
    assert.deepEqual(sources.filter((f) => !files.includes(f)), [], 'sources missing from dist/');
  });

  it('installs the production dependencies and nothing else', () => {
    const installed = (path: string) => existsSync(join(app, path));
    for (const dep of Object.keys(pkg.dependencies)) assert.ok(installed(`node_modules/${dep}`), `${dep} is installed`);
    // The lockfile marks every package only the dev dependencies need; none may be in the tree.
    const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
    const devOnly = Object.entries(lock.packages).filter(([path, p]) => path !== '' && p.dev).map(([path]) => path);
    assert.ok(devOnly.includes('node_modules/typescript') && devOnly.includes('node_modules/node'));
    assert.deepEqual(devOnly.filter(installed), [], 'dev-only packages in the production tree');
  });

  it('loads every compiled module with production dependencies only', async () => {
    // Importing each module resolves every import it makes: a dev-only or undeclared dependency
    // (or an import of a file that was not compiled) fails here rather than in a pod.
    const modules = walk(join(app, 'dist')).filter((f) => f.endsWith('.js'));
    assert.ok(modules.length > 10);
    const script = `for (const m of ${JSON.stringify(modules)}) await import(m);`;
    await run(process.execPath, ['--input-type=module', '-e', script], { cwd: app, env: childEnv });
  });

  it('runs `flashsale --help` through the package entry point', async () => {
    const { stdout } = await run(join(app, 'bin/flashsale.js'), ['--help'], { cwd: app, env: childEnv });
    for (const command of ['run', 'operator', 'api', 'order-writer', 'timeout-closer', 'compensator']) {
      assert.match(stdout, new RegExp(`^  ${command}\\s`, 'm'), `--help lists ${command}`);
    }
    await assert.rejects(run(join(app, 'bin/flashsale.js'), ['no-such-command'], { cwd: app, env: childEnv }), (err: { code: number }) => err.code === 2);
  });

  describe('a real `flashsale api` from the production tree', () => {
    const config = testConfig();
    const namespace = uniqueName('img');
    const sale = validateFlashSale({
      apiVersion: 'flashsale.dev/v1alpha1',
      kind: 'FlashSale',
      metadata: { name: 'image-check', namespace },
      spec: {
        skus: [{ id: 'mug', stock: 5, timeoutBucket: '5m' }],
        timeoutBuckets: [{ name: '5m', delay: '5m' }],
        kafka: { partitions: 1, replicationFactor: 1 },
      },
    });
    const kafka = testKafka();
    const redis = testRedis();
    let pool: Pool;
    let api: ChildProcess | undefined;
    let output = '';
    let base: string;

    before(async () => {
      await ensureSchema(config.mysql);
      pool = createPool(config.mysql);
      await ensureTopics(await kafka.admin(), sale);
      const ctx = saleContext(sale, redis);
      await ensureStock(ctx.stock, pool, sale, ctx.key);

      const saleFile = join(work, 'sale.yaml');
      writeFileSync(saleFile, stringify(sale));
      const port = await freePort();
      base = `http://127.0.0.1:${port}`;
      const { host, port: dbPort, user, password, database } = config.mysql;
      const auth = password ? `${encodeURIComponent(user)}:${encodeURIComponent(password)}` : encodeURIComponent(user);
      api = spawn(join(app, 'bin/flashsale.js'), ['api', '-f', saleFile], {
        cwd: app,
        env: {
          ...childEnv,
          HTTP_HOST: '127.0.0.1',
          HTTP_PORT: String(port),
          KAFKA_BROKERS: config.kafkaBrokers.join(','),
          REDIS_URL: config.redisUrl,
          MYSQL_URL: `mysql://${auth}@${host}:${dbPort}/${database}`,
          LOG_LEVEL: 'warn',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      api.stdout!.on('data', (c: Buffer) => (output += c.toString()));
      api.stderr!.on('data', (c: Buffer) => (output += c.toString()));
      // A start failure (a missing module, a bad setting) ends the wait at once with the output.
      const exitedEarly = new Promise<never>((_, reject) => api!.once('exit', (code) => reject(new Error(`flashsale api exited (${code}): ${output}`))));
      exitedEarly.catch(() => {});
      await Promise.race([
        exitedEarly,
        eventually(async () => (await fetch(`${base}/readyz`).catch(() => undefined))?.status === 200, { timeoutMs: 30_000, what: 'flashsale api ready' }),
      ]);
    });

    after(async () => {
      if (api && api.exitCode === null) api.kill('SIGKILL');
      await deleteTopics(kafka, `flashsale.${namespace}.`);
      await deleteRedisKeys(redis, saleNames(sale.metadata).redis.patterns);
      await kafka.close();
      redis.disconnect();
      await pool?.end();
      await dropDatabase(config);
    });

    it('takes an order (Redis reservation, Kafka hand-off) and answers for it (MySQL, Redis)', async () => {
      const placed = await fetch(`${base}/v1/sales/image-check/orders`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ userId: 'u-1', skuId: 'mug', quantity: 1 }),
      });
      const body = (await placed.json()) as { orderId: string; status: string };
      assert.equal(placed.status, 202, JSON.stringify(body));
      assert.equal(body.status, 'QUEUED');

      const order = await fetch(`${base}/v1/sales/image-check/orders/${body.orderId}`);
      assert.equal(order.status, 200);
      assert.equal(((await order.json()) as { orderId?: string }).orderId, body.orderId);

      const level = (await (await fetch(`${base}/v1/sales/image-check`)).json()) as { skus: { id: string; remaining: number }[] };
      assert.deepEqual(level.skus, [{ id: 'mug', stock: 5, remaining: 4, suspended: false }]);

      const bad = await fetch(`${base}/v1/sales/image-check/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"userId":' });
      assert.equal(bad.status, 400);

      const metrics = await (await fetch(`${base}/metrics`)).text();
      assert.match(metrics, /^flashsale_/m);
    });

    it('stops cleanly on SIGTERM', async () => {
      const exited = new Promise<number | null>((resolve) => api!.once('exit', (code) => resolve(code)));
      api!.kill('SIGTERM');
      assert.equal(await exited, 0, output);
    });
  });
});
