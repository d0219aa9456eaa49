// The observability proof against a real Prometheus (Debian's `prometheus` 2.42 package) on loopback.
//
// Targets scraped every second:
// - `flashsale run` (standalone, child process) for sale "shop": API, order writer, reaper and the
//   lag collector in one process, under a small bounded load;
// - the real operator (`flashsale operator`, child process) against the real control plane
//   (test/support/cluster.ts), managing sale "stalled": it provisions it, applies its Deployments,
//   reports its phase and stock, and exports its consumer lag;
// - `flashsale api` and `flashsale order-writer` for "stalled" as their own child processes, so the
//   test can stop and restart the writer: the sale's namespace is labelled for the node agent to
//   ignore, so the operator's Deployments run no pods there (and no closer consumes bucket "fast").
// The rules are the shipped file with every `for:` shortened to 2s (expressions untouched), so the
// chosen alerts go pending → firing within the test. Every PromQL expression of the dashboard and
// every alert rule is evaluated through the HTTP API.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse, stringify } from 'yaml';
import type { Config } from '../controller/config.ts';
import type { TimeoutMessage } from '../controller/dataplane/messages.ts';
import type { KafkaGateway, KafkaProducer } from '../controller/infra/kafka.ts';
import { createKubeClient, paths, type KubeClient, type KubeList } from '../controller/operator/kube.ts';
import { validateFlashSale, type FlashSale } from '../controller/spec/flashsale.ts';
import { saleNames } from '../controller/spec/names.ts';
import { deleteRedisKeys, deleteTopics, dropDatabase, eventually, testConfig, testKafka, testRedis, uniqueName } from './support/infra.ts';
import { createNamespace, deleteNamespace, testCluster, type TestCluster } from './support/cluster.ts';
import { kubectlFor, type Kubectl } from './support/kubectl.ts';
import { startOperator, type OperatorProcess } from './support/operator.ts';

const repo = new URL('..', import.meta.url).pathname;
const rulesFile = join(repo, 'charts/flashsale-operator/files/prometheus-rules.yaml');
const dashboardFile = join(repo, 'charts/flashsale-operator/files/dashboard.json');

const namespace = uniqueName('prom');
const sale = (name: string, spec: object): FlashSale => validateFlashSale({ apiVersion: 'flashsale.dev/v1alpha1', kind: 'FlashSale', metadata: { name, namespace }, spec });
// "shop": a 20-unit gadget closing unpaid orders after 2 s, a book with a long window.
const shop = sale('shop', {
  skus: [
    { id: 'gadget', stock: 20, timeoutBucket: 'quick' },
    { id: 'book', stock: 1000, timeoutBucket: 'slow' },
  ],
  timeoutBuckets: [
    { name: 'quick', delay: '2s' },
    { name: 'slow', delay: '10m' },
  ],
  kafka: { partitions: 2 },
  compensation: { interval: '2s', grace: '2s' },
});
// "stalled": its writer is stopped on purpose; bucket "fast" gets hand-made timeout messages and no closer.
const stalled = sale('stalled', {
  skus: [
    { id: 'widget', stock: 1000, timeoutBucket: 'long' },
    { id: 'voucher', stock: 10, timeoutBucket: 'fast' },
  ],
  timeoutBuckets: [
    { name: 'long', delay: '10m' },
    { name: 'fast', delay: '15s' },
  ],
  kafka: { partitions: 3 },
});
const shopNames = saleNames(shop.metadata);
const stalledNames = saleNames(stalled.metadata);

let config: Config;
let kafka: KafkaGateway;
let producer: KafkaProducer;
let dir: string;
const children: ChildProcess[] = [];
let writer: ChildProcess | undefined;
let prometheus: ChildProcess;
let promUrl: string;
let apiUrl: string;
let cluster: TestCluster;
let kubectl: Kubectl;
let kube: KubeClient;
let operator: OperatorProcess;
let writerPort: number;
let stalledApiPort: number;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

function childEnv(port: number, logLevel: string): NodeJS.ProcessEnv {
  const { host, port: dbPort, user, database } = config.mysql;
  return { ...process.env, HTTP_PORT: String(port), HTTP_HOST: '127.0.0.1', LOG_LEVEL: logLevel, MYSQL_URL: `mysql://${user}@${host}:${dbPort}/${database}` };
}

/** Starts `flashsale ARGS`; resolves when a stdout/stderr line matches `ready`. */
function flashsale(args: string[], port: number, ready: RegExp, logLevel = 'warn'): Promise<ChildProcess> {
  const child = spawn(process.execPath, [join(repo, 'bin/flashsale.js'), ...args], { env: childEnv(port, logLevel), stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`flashsale ${args.join(' ')} not ready in 60 s:\n${output}`)), 60_000);
    const onData = (d: Buffer) => {
      output += d.toString();
      if (ready.test(output)) {
        clearTimeout(timer);
        resolve(child);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`flashsale ${args.join(' ')} exited with ${code}:\n${output}`));
    });
  });
}

async function stop(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

interface PromSeries {
  metric: Record<string, string>;
  value: [number, string];
}

async function query(expr: string): Promise<PromSeries[]> {
  const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
  const body = (await res.json()) as { status: string; error?: string; data?: { resultType: string; result: PromSeries[] } };
  if (body.status !== 'success') throw new Error(`query failed: ${expr}\n${body.error}`);
  assert.equal(body.data?.resultType, 'vector', expr);
  return body.data?.result ?? [];
}

async function value(expr: string): Promise<number | undefined> {
  const r = await query(expr);
  return r.length === 0 ? undefined : Number(r[0]?.value[1]);
}

async function alerts(): Promise<{ labels: Record<string, string>; state: string }[]> {
  const body = (await (await fetch(`${promUrl}/api/v1/alerts`)).json()) as { data: { alerts: { labels: Record<string, string>; state: string }[] } };
  return body.data.alerts;
}

async function post(path: string, body: unknown, base = apiUrl): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

/** The operator's lag rounds and its log lines about lag: why a lag check did not see what it waited for. */
async function withLagDiagnostics<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    const metrics = await fetch(`${operator.url}/metrics`).then((r) => r.text()).catch((e: Error) => `metrics unavailable: ${e.message}`);
    const rounds = metrics.split('\n').filter((l) => l.startsWith('flashsale_lag_collection')).join('\n');
    const logs = operator.logs().split('\n').filter((l) => /lag|kafka/i.test(l)).slice(-20).join('\n');
    throw new Error(`${(err as Error).message}\noperator lag rounds:\n${rounds}\noperator log (lag/kafka, last 20):\n${logs}`, { cause: err });
  }
}

async function getOrder(orderId: string): Promise<{ status: string }> {
  const res = await fetch(`${apiUrl}/v1/sales/shop/orders/${orderId}`);
  assert.equal(res.status, 200, `order ${orderId}`);
  return (await res.json()) as { status: string };
}

/** Places orders of SKU widget of "stalled" through its own API process. */
async function stalledOrders(count: number, prefix: string): Promise<void> {
  for (let i = 0; i < count; i++) {
    const r = await post('/v1/sales/stalled/orders', { userId: `${prefix}${i}`, skuId: 'widget' }, `http://127.0.0.1:${stalledApiPort}`);
    assert.equal(r.status, 202, JSON.stringify(r.json));
  }
}

/** The shipped rules with every `for:` set to 2s; expressions untouched. */
function testRules(): string {
  const doc = parse(readFileSync(rulesFile, 'utf8')) as { groups: { rules: { for?: string }[] }[] };
  for (const g of doc.groups) for (const r of g.rules) if (r.for) r.for = '2s';
  const file = join(dir, 'rules.yaml');
  writeFileSync(file, stringify(doc));
  return file;
}

before(async () => {
  assert.ok(spawnSync('prometheus', ['--version']).status === 0, 'prometheus (Debian package) is installed: run infra/tools.sh');
  dir = mkdtempSync(join(tmpdir(), 'fs-prom-'));
  config = testConfig();
  kafka = testKafka();
  producer = await kafka.producer();
  writeFileSync(join(dir, 'shop.yaml'), stringify({ apiVersion: shop.apiVersion, kind: shop.kind, metadata: shop.metadata, spec: shop.spec }));
  writeFileSync(join(dir, 'stalled.yaml'), stringify({ apiVersion: stalled.apiVersion, kind: stalled.kind, metadata: stalled.metadata, spec: stalled.spec }));

  // The standalone run provisions "shop" and the MySQL schema both sales share.
  const runPort = await freePort();
  await flashsale(['run', '-f', join(dir, 'shop.yaml')], runPort, /listening on/);
  apiUrl = `http://127.0.0.1:${runPort}`;

  // "stalled": the operator provisions it from the FlashSale applied to the real apiserver, in a
  // namespace whose pods the node agent leaves alone (the test runs its api and writer itself).
  cluster = await testCluster();
  kubectl = kubectlFor(cluster.kubeconfigYaml);
  kube = createKubeClient(cluster.kc);
  await kubectl.ok(['apply', '--server-side', '--force-conflicts', '-f', join(repo, 'crds/flashsale.yaml')]);
  await kubectl.ok(['wait', '--for=condition=Established', '--timeout=30s', 'crd/flashsales.flashsale.dev']);
  await createNamespace(cluster.kc, namespace);
  await kubectl.ok(['label', 'namespace', namespace, 'nodeagent.flashsale.dev/ignore=true']);
  operator = await startOperator({ kubeconfigYaml: cluster.kubeconfigYaml, config, namespace, identity: `op-${namespace}` });
  await kubectl.ok(['apply', '-n', namespace, '-f', join(dir, 'stalled.yaml')]);
  // Every Deployment applied (api, order writer, compensator, one closer per bucket) and the sale
  // provisioned: topics, stock and schema True; its workloads wait for pods that never run here.
  const expected = 3 + stalled.spec.timeoutBuckets.length;
  await eventually(async () => (await kube.request<KubeList<unknown>>('GET', paths.deployments(namespace))).items.length >= expected, { what: `${expected} Deployments of stalled`, timeoutMs: 60_000 });
  type Status = { status?: { phase?: string; conditions?: { type: string; status: string; reason?: string }[] } };
  const provisioned = (s: Status) => ['TopicsReady', 'StockReady', 'SchemaReady'].every((t) => s.status?.conditions?.some((c) => c.type === t && c.status === 'True'));
  try {
    await eventually(async () => provisioned(await kube.request<Status>('GET', paths.flashsale(namespace, 'stalled'))), { what: 'stalled provisioned', timeoutMs: 60_000 });
  } catch (err) {
    // Say why, so a failure in CI can be diagnosed from its output alone.
    const sale = await kube.request<{ status?: unknown }>('GET', paths.flashsale(namespace, 'stalled')).catch(() => undefined);
    throw new Error(`${(err as Error).message}; status: ${JSON.stringify(sale?.status)}; operator log tail:\n${operator.logs().split('\n').slice(-40).join('\n')}`, { cause: err });
  }
  await flashsale(['api', '-f', join(dir, 'stalled.yaml')], stalledApiPort = await freePort(), /api listening/, 'info');
  writerPort = await freePort();
  writer = await flashsale(['order-writer', '-f', join(dir, 'stalled.yaml')], writerPort, /order writer running/, 'info');

  const promPort = await freePort();
  promUrl = `http://127.0.0.1:${promPort}`;
  const target = (u: string) => u.replace('http://', '');
  writeFileSync(
    join(dir, 'prometheus.yml'),
    stringify({
      global: { scrape_interval: '1s', evaluation_interval: '1s', scrape_timeout: '900ms' },
      rule_files: [testRules()],
      scrape_configs: [
        { job_name: 'flashsale-run', static_configs: [{ targets: [target(apiUrl)] }] },
        { job_name: 'operator', static_configs: [{ targets: [target(operator.url)] }] },
        { job_name: 'stalled-api', static_configs: [{ targets: [`127.0.0.1:${stalledApiPort}`] }] },
        { job_name: 'order-writer', static_configs: [{ targets: [`127.0.0.1:${writerPort}`] }] },
      ],
    }),
  );
  prometheus = spawn('prometheus', [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${promPort}`, '--log.level=warn'], { stdio: 'ignore' });
  children.push(prometheus);
  await eventually(async () => (await fetch(`${promUrl}/-/ready`)).ok, { what: 'prometheus ready', timeoutMs: 30_000 });
});

after(async () => {
  for (const c of children) await stop(c);
  await operator?.stop();
  if (cluster) {
    // No operator any more: release the sale's finalizer so its namespace can go.
    await kube.request('PATCH', paths.flashsale(namespace, 'stalled'), { metadata: { finalizers: null } }, 'application/merge-patch+json').catch(() => undefined);
    await deleteNamespace(cluster.kc, namespace).catch(() => undefined);
  }
  kubectl?.cleanup();
  await producer?.disconnect();
  await deleteTopics(kafka, `flashsale.${namespace}.`).catch(() => undefined);
  const redis = testRedis();
  await deleteRedisKeys(redis, [...shopNames.redis.patterns, ...stalledNames.redis.patterns]);
  redis.disconnect();
  await kafka.close();
  if (config) await dropDatabase(config);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('observability against a real Prometheus', () => {
  it('promtool accepts the shipped rule file', () => {
    const r = spawnSync('promtool', ['check', 'rules', rulesFile], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /SUCCESS: \d+ rules found/);
  });

  it('under load, every dashboard query and every alert rule evaluates and returns series', async (t) => {
    // Load "shop": 40 buyers for 20 gadgets, 10 books, a few bad requests, two payments.
    const gadgetOrders: string[] = [];
    for (let i = 0; i < 40; i++) {
      const r = await post(`/v1/sales/shop/orders`, { userId: `u${i}`, skuId: 'gadget' });
      assert.ok(r.status === 202 || (r.status === 409 && r.json.error === 'SOLD_OUT'), `gadget order: ${r.status} ${JSON.stringify(r.json)}`);
      if (r.status === 202) gadgetOrders.push(String(r.json.orderId));
    }
    // Unpaid gadgets close 2 s after they were placed and their units come back: on a loaded machine
    // the 40 requests can outlast that, and a later buyer rightly gets a returned unit (21 accepted
    // for 20 was seen that way). A unit comes back only after its order's close committed, so every
    // acceptance beyond the stock needs an order already CLOSED: exactly 20 when none closed yet.
    const closedDuringLoop = (await Promise.all(gadgetOrders.map((id) => getOrder(id)))).filter((o) => o.status === 'CLOSED').length;
    t.diagnostic(`gadgets: ${gadgetOrders.length} accepted of 40, ${closedDuringLoop} of them CLOSED right after the loop`);
    assert.ok(gadgetOrders.length >= 20, `every unit sold: ${gadgetOrders.length} accepted`);
    assert.ok(gadgetOrders.length <= 20 + closedDuringLoop, `no more accepted than the stock plus units returned: ${gadgetOrders.length} accepted, ${closedDuringLoop} closed`);
    for (let i = 0; i < 10; i++) assert.equal((await post(`/v1/sales/shop/orders`, { userId: `b${i}`, skuId: 'book' })).status, 202);
    for (let i = 0; i < 3; i++) assert.equal((await post(`/v1/sales/shop/orders`, '{"userId": 42}')).status, 400);
    // A poison message on the orders topic: the writer dead-letters it.
    await producer.send([{ topic: shopNames.topics.orders, messages: [{ key: 'gadget', value: 'not json' }] }]);
    // "stalled": six orders through its API and writer; timeout messages in bucket "fast" (no closer
    // runs for "stalled"), five already due, four not yet.
    await stalledOrders(6, 's');
    const now = Date.now();
    await producer.send([
      {
        topic: stalledNames.topics.delay('fast'),
        messages: [
          ...Array.from({ length: 5 }, (_, i) => timeoutMessage(`due${i}`, now - 60_000)),
          // Placed 45 s ahead (due 60 s after sending): the split must be seen while they are not due,
          // and a loaded machine may take many seconds for an operator round plus a scrape.
          ...Array.from({ length: 4 }, (_, i) => timeoutMessage(`later${i}`, now + 45_000)),
        ],
      },
    ]);
    // Bucket "fast" as the operator exports it, scraped: five overdue, four scheduled (due 60 s after sending).
    const fast = `{flashsale="${stalledNames.key}",bucket="fast"}`;
    await withLagDiagnostics(eventually(async () => (await value(`sum(flashsale_timeouts_overdue${fast})`)) === 5 && (await value(`sum(flashsale_timeouts_scheduled${fast})`)) === 4, { what: '5 overdue / 4 scheduled in bucket fast', timeoutMs: 40_000, intervalMs: 250 }));
    // Unpaid gadgets close after 2 s: wait until Prometheus has seen closes and written orders.
    await eventually(async () => ((await value(`sum(flashsale_timeout_closes_total{flashsale="${shopNames.key}",outcome="closed"})`)) ?? 0) >= 18, { what: 'gadget closes scraped', timeoutMs: 60_000, intervalMs: 500 });
    // Once every accepted gadget is closed, all 20 units are back: none was counted twice.
    await eventually(async () => (await Promise.all(gadgetOrders.map((id) => getOrder(id)))).every((o) => o.status === 'CLOSED'), { what: 'every unpaid gadget closed', timeoutMs: 60_000, intervalMs: 500 });
    const shopState = (await (await fetch(`${apiUrl}/v1/sales/shop`)).json()) as { skus: { id: string; stock: number; remaining: number | null }[] };
    assert.deepEqual(shopState.skus.find((s) => s.id === 'gadget'), { id: 'gadget', stock: 20, remaining: 20, suspended: false });
    await eventually(async () => ((await value(`sum(flashsale_orders_written_total{flashsale="${stalledNames.key}"})`)) ?? 0) >= 6, { what: 'stalled orders written', timeoutMs: 30_000, intervalMs: 500 });
    // The batching histograms of the standalone process: every accepted shop order went through one
    // produce request of the API's hand-off and one batch of the order writer (redeliveries count again).
    const shopAccepted = gadgetOrders.length + 10;
    await eventually(async () => ((await value(`sum(flashsale_api_handoff_batch_orders_sum{flashsale="${shopNames.key}"})`)) ?? 0) >= shopAccepted, { what: `${shopAccepted} orders in hand-off batches scraped`, timeoutMs: 30_000, intervalMs: 500 });
    await eventually(async () => ((await value(`sum(flashsale_order_writer_batch_orders_sum{flashsale="${shopNames.key}"})`)) ?? 0) >= shopAccepted, { what: `${shopAccepted} orders in writer batches scraped`, timeoutMs: 30_000, intervalMs: 500 });
    await eventually(async () => ((await value(`sum(kafka_consumergroup_group_sum_lag{flashsale="${shopNames.key}",role="order-writer"})`)) ?? 1) === 0, { what: 'standalone lag of shop scraped at 0', timeoutMs: 30_000, intervalMs: 500 });

    // The flashsale variable lists both sales (Grafana's label_values, as PromQL).
    const dashboard = JSON.parse(readFileSync(dashboardFile, 'utf8')) as { templating: { list: { name: string; definition?: string }[] }; panels: { id: number; title: string; targets?: { refId: string; expr: string }[] }[] };
    const variable = dashboard.templating.list.find((v) => v.name === 'flashsale')?.definition ?? '';
    const lv = /^label_values\((\w+),\s*(\w+)\)$/.exec(variable);
    assert.ok(lv, `variable query ${variable}`);
    const sales = (await query(`group by (${lv[2]}) (${lv[1]})`)).map((s) => s.metric[lv[2] as string]).sort();
    assert.deepEqual(sales.filter((s) => s?.startsWith(`${namespace}/`)), [shopNames.key, stalledNames.key]);

    // Every panel query with both sales selected, as Grafana sends a multi-value variable: (a|b).
    // The keys have no regex metacharacters, so Grafana's regex escaping changes nothing.
    for (const k of [shopNames.key, stalledNames.key]) assert.match(k, /^[a-z0-9/-]+$/);
    const selected = `(${shopNames.key}|${stalledNames.key})`;
    const targets = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: `panel ${p.id} "${p.title}" ${t.refId}`, expr: t.expr.replaceAll('$flashsale', selected).replaceAll('$__rate_interval', '4s').replaceAll('$__range', '5m') })));
    assert.ok(targets.length >= 30, `${targets.length} dashboard queries`);
    // rate() needs two samples of a counter inside its window: give the scrapes a few seconds.
    let problems: string[] = [];
    await eventually(async () => {
      problems = [];
      for (const t of targets) {
        const result = await query(t.expr).catch((err: Error) => err);
        if (result instanceof Error) problems.push(`${t.panel}: ${result.message}`);
        else if (result.length === 0) problems.push(`${t.panel}: no series for ${t.expr}`);
      }
      return problems.length === 0;
    }, { what: 'every dashboard query returning series', timeoutMs: 30_000, intervalMs: 1000 }).catch(() => undefined);
    assert.deepEqual(problems, [], problems.join('\n'));

    // Every alert rule: loaded, evaluated without error, and every metric it names is scraped.
    const rules = (await (await fetch(`${promUrl}/api/v1/rules`)).json()) as { data: { groups: { rules: { name: string; query: string; health: string; lastError?: string; type: string }[] }[] } };
    const all = rules.data.groups.flatMap((g) => g.rules);
    const shipped = (parse(readFileSync(rulesFile, 'utf8')) as { groups: { rules: unknown[] }[] }).groups.flatMap((g) => g.rules);
    assert.equal(all.length, shipped.length, 'every shipped rule is loaded');
    await eventually(async () => {
      const r = (await (await fetch(`${promUrl}/api/v1/rules`)).json()) as typeof rules;
      return r.data.groups.flatMap((g) => g.rules).every((x) => x.health === 'ok');
    }, { what: 'every rule evaluated with health ok', timeoutMs: 10_000 });
    const scraped = new Set((await query('group by (__name__) ({__name__=~"flashsale_.+|kafka_consumergroup_.+"})')).map((s) => s.metric.__name__));
    for (const r of all) {
      assert.equal(r.type, 'alerting');
      await query(r.query); // parses and evaluates as an instant query too
      for (const name of r.query.match(/\b(flashsale|kafka_consumergroup)_\w+/g) ?? []) {
        assert.ok(scraped.has(name), `${r.name}: metric ${name} has series in Prometheus`);
      }
    }
  });

  it('per-partition lag rises while the writer is stopped, the lag alert fires, and lag returns to 0 when it resumes', async () => {
    const group = stalledNames.groups.orderWriter;
    await stop(writer);
    const sent = 30;
    await stalledOrders(sent, 'late');
    // Scraped per partition, the lag adds up to what was sent while nobody reads.
    await withLagDiagnostics(eventually(async () => (await value(`sum(kafka_consumergroup_group_lag{group="${group}"})`)) === sent, { what: 'lag of the stopped writer', timeoutMs: 20_000, intervalMs: 500 }));
    const partitions = await query(`kafka_consumergroup_group_lag{group="${group}"}`);
    // Orders are keyed by SKU: all thirty wait on the SKU's partition, the other two have none.
    assert.deepEqual(partitions.map((p) => Number(p.value[1])).sort((a, b) => a - b), [0, 0, sent]);
    // The same numbers are on the operator's /metrics, as `curl` shows them.
    const text = await (await fetch(`${operator.url}/metrics`)).text();
    for (const p of partitions) {
      const line = text.split('\n').find((l) => l.startsWith('kafka_consumergroup_group_lag{') && l.includes(`group="${group}"`) && l.includes(`partition="${p.metric.partition}"`));
      assert.ok(line, `partition ${p.metric.partition} in /metrics`);
      assert.ok(line.includes(`role="order-writer"`) && line.includes(`flashsale="${stalledNames.key}"`), line);
      assert.equal(line.slice(line.lastIndexOf(' ') + 1), p.value[1], line);
    }
    // The oldest unwritten order ages past 15 s: FlashSaleConsumerLagHigh goes pending, then firing.
    const lagAlert = await eventually(async () => (await alerts()).find((a) => a.labels.alertname === 'FlashSaleConsumerLagHigh' && a.labels.flashsale === stalledNames.key && a.state === 'firing'), { what: 'FlashSaleConsumerLagHigh firing', timeoutMs: 45_000, intervalMs: 500 });
    assert.equal(lagAlert.labels.group, group);
    assert.ok(!(await alerts()).some((a) => a.labels.alertname === 'FlashSaleConsumerLagHigh' && a.labels.flashsale === shopNames.key), 'the healthy sale does not alert');

    writer = await flashsale(['order-writer', '-f', join(dir, 'stalled.yaml')], writerPort, /order writer running/, 'info');
    await eventually(async () => {
      const r = await query(`kafka_consumergroup_group_lag{group="${group}"}`);
      return r.length === 3 && r.every((p) => p.value[1] === '0');
    }, { what: 'every partition back to 0', timeoutMs: 45_000, intervalMs: 500 });
    const resumed = (await (await fetch(`${operator.url}/metrics`)).text()).split('\n').filter((l) => l.startsWith('kafka_consumergroup_group_lag{') && l.includes(`group="${group}"`));
    assert.deepEqual(resumed.map((l) => l.slice(l.lastIndexOf(' ') + 1)), ['0', '0', '0'], resumed.join('\n'));
    await eventually(async () => !(await alerts()).some((a) => a.labels.alertname === 'FlashSaleConsumerLagHigh' && a.labels.flashsale === stalledNames.key), { what: 'lag alert resolved', timeoutMs: 20_000, intervalMs: 500 });
  });

  it('splits a delay topic into scheduled and overdue, alerts on overdue, and dead letters alert', async () => {
    const sel = `{flashsale="${stalledNames.key}",bucket="fast"}`;
    // The four messages scheduled in the first test (5 overdue / 4 scheduled then) have fallen due.
    // They fall due 60 s after they were sent in the first test.
    await withLagDiagnostics(eventually(async () => (await value(`sum(flashsale_timeouts_overdue${sel})`)) === 9 && (await value(`sum(flashsale_timeouts_scheduled${sel})`)) === 0, { what: 'all nine overdue', timeoutMs: 90_000, intervalMs: 500 }));
    // The writer's own timeouts (bucket "long", 10 minutes) are scheduled, not overdue.
    const long = `{flashsale="${stalledNames.key}",bucket="long"}`;
    assert.equal(await value(`sum(flashsale_timeouts_scheduled${long})`), 36);
    assert.equal(await value(`sum(flashsale_timeouts_overdue${long})`), 0);
    const firing = await eventually(async () => {
      const a = await alerts();
      const overdue = a.find((x) => x.labels.alertname === 'FlashSaleTimeoutsOverdue' && x.labels.flashsale === stalledNames.key && x.state === 'firing');
      const dead = a.find((x) => x.labels.alertname === 'FlashSaleDeadLettersGrowing' && x.labels.flashsale === shopNames.key && x.state === 'firing');
      return overdue && dead ? { overdue, dead } : undefined;
    }, { what: 'overdue and dead-letter alerts firing', timeoutMs: 30_000, intervalMs: 500 });
    assert.equal(firing.overdue.labels.bucket, 'fast');
    assert.equal(firing.dead.labels.source, 'orders');
    assert.ok(!(await alerts()).some((x) => x.labels.alertname === 'FlashSaleTimeoutsOverdue' && x.labels.bucket === 'long'), 'scheduled timeouts do not alert');
  });
});

function timeoutMessage(tag: string, createdAt: number): { key: string; value: string; timestamp: number } {
  const delayMs = 15_000;
  const m: TimeoutMessage = { v: 1, orderId: `${tag}-${randomUUID()}`, sale: stalledNames.key, skuId: 'voucher', userId: tag, quantity: 1, createdAt, dueAt: createdAt + delayMs, bucket: 'fast' };
  return { key: m.orderId, value: JSON.stringify(m), timestamp: createdAt };
}
