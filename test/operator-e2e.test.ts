// End to end on the real Kubernetes control plane (test/support/cluster.ts: kube-apiserver,
// kube-controller-manager and the node agent): the real operator process (bin/flashsale.js
// operator) driven with the built kubectl, provisioning the real Kafka, Redis and MariaDB. Its
// Deployments become ReplicaSets and pods that the node agent runs as `flashsale <role>` processes,
// Ready through their probes — except in namespaces labelled for the agent to ignore, used by the
// tests that need a sale's consumers NOT to run (lag scaling, an order waiting in Kafka).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, afterEach, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import mysql from 'mysql2/promise';
import { parse, stringify } from 'yaml';
import { createKubeClient, KubeApiError, paths, type KubeClient, type KubeList } from '../controller/operator/kube.ts';
import type { Condition, FlashSaleStatus } from '../controller/spec/flashsale.ts';
import { saleNames } from '../controller/spec/names.ts';
import { createNamespace, deleteNamespace, testCluster, type TestCluster } from './support/cluster.ts';
import { startProxy, type Proxy } from './support/faults/proxy.ts';
import { deleteRedisKeys, deleteTopics, dropDatabase, eventually, testConfig, testKafka, testRedis, uniqueName } from './support/infra.ts';
import { kubectlFor, type Kubectl } from './support/kubectl.ts';
import { startOperator, type OperatorProcess } from './support/operator.ts';

const run = promisify(execFile);
const config = testConfig();
const kafka = testKafka();
const redis = testRedis();

interface Sale {
  metadata: { name: string; namespace: string; uid: string; finalizers?: string[]; generation: number; resourceVersion: string };
  spec: Record<string, unknown>;
  status?: FlashSaleStatus;
}

let cluster: TestCluster;
let kubectl: Kubectl;
let client: KubeClient;
const namespaces: string[] = [];
const operators: OperatorProcess[] = [];
const proxies: Proxy[] = [];
/** Namespaces of the running test, deleted after it. */
const cleanupPending: string[] = [];

/** The node agent skips pods of namespaces with this label (test/node-agent: --ignore-namespace-label). */
const NO_PODS_LABEL = 'nodeagent.flashsale.dev/ignore=true';

/**
 * A namespace of its own for one test. `pods: false` labels it for the node agent to ignore: the
 * operator's Deployments and ReplicaSets exist, their pods stay Pending, nothing consumes the
 * sale's topics (the test plays the consumers itself).
 */
async function ns(opts: { pods: boolean }): Promise<string> {
  const n = uniqueName('op');
  namespaces.push(n);
  cleanupPending.push(n);
  await createNamespace(cluster.kc, n);
  if (!opts.pods) await kubectl.ok(['label', 'namespace', n, NO_PODS_LABEL]);
  // The data-plane pods meet the restricted Pod Security Standard (docs/install.md): the apiserver's
  // PodSecurity admission refuses any pod of these namespaces that does not, and the sale would
  // report ReplicaFailure instead of Ready.
  else await kubectl.ok(['label', 'namespace', n, 'pod-security.kubernetes.io/enforce=restricted', 'pod-security.kubernetes.io/enforce-version=latest']);
  return n;
}

/**
 * The operator under test. Lease timing is the production default (15 s / 10 s / 2 s): on a loaded
 * 2-core machine a renewal can take seconds, and a leader that misses its renew deadline exits. The
 * leader-election test passes its own short timing.
 */
async function operator(namespace: string, extra: { identity?: string; leaseName?: string; env?: Record<string, string>; kubeconfigYaml?: string } = {}) {
  const env = { LEASE_DURATION: '15s', LEASE_RENEW_DEADLINE: '10s', LEASE_RETRY_PERIOD: '2s', ...extra.env };
  const op = await startOperator({ kubeconfigYaml: extra.kubeconfigYaml ?? cluster.kubeconfigYaml, config, namespace, identity: extra.identity ?? `op-${namespace}`, leaseName: extra.leaseName, env });
  operators.push(op);
  return op;
}

type Operator = Awaited<ReturnType<typeof operator>>;

/** Waits until `op` has finished 3 more reconciles of a valid sale (each requeues the next) than now. */
async function moreReconciles(op: Operator, what = '3 more reconciles'): Promise<void> {
  const rounds = async () => (await op.metric('flashsale_operator_reconciles_total', 'result="requeue"')) ?? 0;
  const from = await rounds();
  await eventually(async () => (await rounds()) >= from + 3, { timeoutMs: 20_000, what });
}

/** Each Deployment's generation and pod template: equal before and after means no pod rolled. */
async function podTemplates(namespace: string): Promise<Record<string, string>> {
  return Object.fromEntries((await deployments(namespace)).map((d) => [d.metadata.name, `${d.metadata.generation} ${JSON.stringify(d.spec.template)}`]));
}

/** The namespace's Events, parsed. */
async function saleEvents(namespace: string): Promise<{ reason: string; type: string; message: string }[]> {
  return (JSON.parse(await kubectl.ok(['get', 'events', '-n', namespace, '-o', 'json'])) as { items: { reason: string; type: string; message: string }[] }).items;
}

/** How many applies `op` has sent (its reconcile step `apply`): an apply the apiserver finds unchanged writes nothing, so this counts at the source. */
async function applyCount(op: Operator): Promise<number> {
  return (await op.metric('flashsale_operator_reconcile_step_duration_seconds_count', 'step="apply"')) ?? 0;
}

const saleYaml = (name: string, spec: Record<string, unknown>) => stringify({ apiVersion: 'flashsale.dev/v1alpha1', kind: 'FlashSale', metadata: { name }, spec });

function baseSpec(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    skus: [
      { id: 'phone-x', stock: 100, timeoutBucket: '5m' },
      { id: 'ebook-y', stock: 500, timeoutBucket: '30m' },
    ],
    timeoutBuckets: [
      { name: '5m', delay: '5m' },
      { name: '30m', delay: '30m' },
    ],
    kafka: { partitions: 2, replicationFactor: 1 },
    ...over,
  };
}

async function apply(namespace: string, yaml: string): Promise<void> {
  await kubectl.ok(['apply', '--validate=false', '-n', namespace, '-f', '-'], { stdin: yaml });
}

async function getSale(namespace: string, name: string): Promise<Sale> {
  return client.request<Sale>('GET', paths.flashsale(namespace, name));
}

const cond = (s: Sale, type: string): Condition | undefined => s.status?.conditions?.find((c) => c.type === type);

interface DisruptionBudget {
  metadata: { name: string; ownerReferences?: { uid: string; controller?: boolean }[] };
  spec: { maxUnavailable?: number; selector: { matchLabels: Record<string, string> } };
  status?: { currentHealthy?: number; desiredHealthy?: number; disruptionsAllowed?: number; expectedPods?: number; observedGeneration?: number };
}

async function disruptionBudget(namespace: string, name: string): Promise<DisruptionBudget> {
  return client.request<DisruptionBudget>('GET', paths.disruptionBudget(namespace, name));
}

/** The budget once the disruption controller counted `healthy` API pods of `expected`, with `allowed` disruptions. */
async function budgetCounts(namespace: string, name: string, healthy: number, expected: number, allowed: number, what: string): Promise<DisruptionBudget> {
  return eventually(
    async () => {
      const b = await disruptionBudget(namespace, name);
      return b.status?.currentHealthy === healthy && b.status.expectedPods === expected && b.status.disruptionsAllowed === allowed ? b : undefined;
    },
    { timeoutMs: 120_000, what },
  );
}

interface Deployment {
  metadata: { name: string; generation?: number; annotations?: Record<string, string>; ownerReferences?: { uid: string; controller?: boolean }[]; managedFields?: { manager: string; operation: string; subresource?: string }[] };
  spec: { replicas: number; progressDeadlineSeconds?: number; selector: { matchLabels: Record<string, string> }; template: { metadata?: { annotations?: Record<string, string> }; spec: { imagePullSecrets?: { name: string }[]; containers: { args: string[]; imagePullPolicy?: string; env: { name: string; value?: string }[]; resources?: Record<string, Record<string, string>> }[] } } };
  status?: { readyReplicas?: number; observedGeneration?: number };
}

async function deployments(namespace: string): Promise<Deployment[]> {
  return (await client.request<KubeList<Deployment>>('GET', paths.deployments(namespace))).items;
}

async function waitFor(namespace: string, name: string, check: (s: Sale) => boolean, what: string, timeoutMs = 40_000): Promise<Sale> {
  let last: Sale | undefined;
  try {
    return await eventually(async () => {
      last = await getSale(namespace, name);
      return check(last) ? last : undefined;
    }, { timeoutMs, intervalMs: 200, what });
  } catch (err) {
    // The operator's last lines too, so a failure in CI can be diagnosed from its output alone.
    const op = operators.at(-1);
    const tail = op ? `; operator (exit ${op.proc.exitCode ?? 'running'}) log tail:\n${op.logs().split('\n').slice(-25).join('\n')}` : '';
    throw new Error(`${(err as Error).message}; last status: ${JSON.stringify(last?.status)}${tail}`, { cause: err });
  }
}

/** Ready: provisioned, and every Deployment rolled out with its pods Ready through their probes (node agent). */
async function waitReady(namespace: string, name: string): Promise<Sale> {
  await eventually(async () => (await deployments(namespace)).filter((d) => d.metadata.name.startsWith(`${name}-`)).length >= 5, { timeoutMs: 40_000, what: 'deployments' });
  return waitFor(namespace, name, (s) => s.status?.phase === 'Ready' && s.status.observedGeneration === s.metadata.generation, 'Ready', 180_000);
}

/**
 * Provisioned (topics, stock, schema True for the current generation) and its Deployments applied —
 * for sales in a namespace without pods, whose workloads never become Ready.
 */
async function waitProvisioned(namespace: string, name: string): Promise<Sale> {
  await eventually(async () => (await deployments(namespace)).filter((d) => d.metadata.name.startsWith(`${name}-`)).length >= 5, { timeoutMs: 40_000, what: 'deployments' });
  return waitFor(namespace, name, (s) => s.status?.observedGeneration === s.metadata.generation && ['TopicsReady', 'StockReady', 'SchemaReady'].every((t) => cond(s, t)?.status === 'True') && cond(s, 'WorkloadsReady')?.reason === 'Progressing', 'provisioned');
}

/**
 * Addresses (podIP:8080) of a sale's Ready API pods, read from the pods the Service selects.
 * (Not from EndpointSlices: kube-apiserver refuses loopback addresses in them, and the node
 * agent's pod IPs are 127.0.0.N — the endpointslice controller logs FailedToUpdateEndpointSlices.)
 */
async function endpoints(namespace: string, sale: string): Promise<string[]> {
  const selector = encodeURIComponent(`flashsale.dev/sale=${sale},flashsale.dev/role=api`);
  const pods = await client.request<KubeList<{ status?: { podIP?: string; conditions?: { type: string; status: string }[] } }>>('GET', `/api/v1/namespaces/${namespace}/pods?labelSelector=${selector}`);
  return pods.items.filter((p) => p.status?.podIP && p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')).map((p) => `${p.status?.podIP}:8080`);
}

async function buy(address: string, sale: string, userId: string, skuId: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://${address}/v1/sales/${sale}/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userId, skuId }) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/**
 * kind/name@resourceVersion of every FlashSale, Deployment and Service of the namespace and of the
 * operator's Events (the node agent and kube-controller-manager record their own about pods).
 */
async function objectVersions(namespace: string): Promise<string[]> {
  const out: string[] = [];
  for (const [kind, path] of [['flashsale', paths.flashsales(namespace)], ['deployment', paths.deployments(namespace)], ['service', paths.services(namespace)], ['pdb', paths.disruptionBudgets(namespace)], ['event', paths.events(namespace)]] as const) {
    const list = await client.request<KubeList<{ metadata: { name: string; resourceVersion: string }; source?: { component?: string } }>>('GET', path);
    for (const o of list.items) if (kind !== 'event' || o.source?.component === 'flashsale-operator') out.push(`${kind}/${o.metadata.name}@${o.metadata.resourceVersion}`);
  }
  return out.sort();
}

/** crds/flashsale.yaml without its x-kubernetes-validations (CEL) rules: the CRD as an older release shipped it. */
function crdWithoutRules(): string {
  const strip = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(strip);
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).filter(([k]) => k !== 'x-kubernetes-validations').map(([k, x]) => [k, strip(x)]));
    return v;
  };
  return stringify(strip(parse(readFileSync('crds/flashsale.yaml', 'utf8'))));
}

const jsonEqualArrays = (a: string[], b: string[]) => a.length === b.length && a.every((x, i) => x === b[i]);

async function topicPartitions(topic: string): Promise<number | undefined> {
  const admin = await kafka.admin();
  return (await admin.describeTopics([topic]))[0]?.partitions;
}

async function sql<T>(query: string, params: unknown[] = []): Promise<T> {
  const { host, port, user, password, database } = config.mysql;
  const conn = await mysql.createConnection({ host, port, user, password, database });
  try {
    return (await conn.query(query, params))[0] as T;
  } finally {
    await conn.end();
  }
}

before(async () => {
  cluster = await testCluster();
  kubectl = kubectlFor(cluster.kubeconfigYaml);
  client = createKubeClient(cluster.kc);
  await kubectl.ok(['apply', '--server-side', '--force-conflicts', '-f', 'crds/flashsale.yaml']);
  await kubectl.ok(['wait', '--for=condition=Established', '--timeout=30s', 'crd/flashsales.flashsale.dev']);
});

/** Stops the test's operators and deletes its namespaces, so its pods stop before the next test (2 cores). */
async function cleanupCluster(): Promise<void> {
  await Promise.allSettled(operators.splice(0).map((o) => o.stop('SIGKILL')));
  await Promise.allSettled(proxies.splice(0).map((p) => p.close()));
  for (const n of cleanupPending.splice(0)) {
    // No operator runs any more: release the sales' finalizers so the namespace can go (its pods
    // stop through the namespace controller and the node agent).
    const left = await client.request<KubeList<{ metadata: { name: string } }>>('GET', paths.flashsales(n)).catch(() => ({ items: [] }));
    for (const s of left.items) await client.request('PATCH', paths.flashsale(n, s.metadata.name), { metadata: { finalizers: null } }, 'application/merge-patch+json').catch(() => undefined);
    await deleteNamespace(cluster.kc, n).catch(() => undefined);
  }
}

afterEach(cleanupCluster);

after(async () => {
  await cleanupCluster();
  for (const n of namespaces) {
    await deleteTopics(kafka, `flashsale.${n}.`).catch(() => undefined);
    await deleteRedisKeys(redis, [`fs:{${n}/*`, `fs:${n}/*`]).catch(() => undefined);
  }
  await dropDatabase(config).catch(() => undefined);
  kubectl?.cleanup();
  await kafka.close();
  redis.disconnect();
});

describe('operator end to end', () => {
  it('kubectl apply examples/flashsale.yaml → Ready: topics, stock, orders table, owned Deployments + Service; a second reconcile writes nothing', async () => {
    const namespace = await ns({ pods: true });
    const op = await operator(namespace);
    await kubectl.ok(['apply', '--validate=false', '-n', namespace, '-f', 'examples/flashsale.yaml']);
    const sale = await waitReady(namespace, 'singles-day');
    for (const t of ['TopicsReady', 'StockReady', 'SchemaReady', 'WorkloadsReady', 'Ready']) {
      const c = cond(sale, t);
      assert.equal(c?.status, 'True', `${t}: ${JSON.stringify(c)}`);
      assert.ok(c?.lastTransitionTime && c.reason && c.observedGeneration === sale.metadata.generation, JSON.stringify(c));
    }
    assert.deepEqual(sale.metadata.finalizers, ['flashsale.dev/cleanup']);
    assert.equal(sale.status?.skuCount, 2);
    // Remaining stock is a metric, not status (it changes with every order).
    assert.equal(sale.status?.remaining, undefined);
    await eventually(async () => (await op.metricSum('flashsale_sku_remaining', { flashsale: `${namespace}/singles-day` })) === 51_000, { what: 'remaining 51,000 on /metrics' });

    const n = saleNames({ namespace, name: 'singles-day' });
    const { stdout } = await run('kcat', ['-b', config.kafkaBrokers[0]!, '-L', '-m', '10']);
    for (const topic of [n.topics.orders, n.topics.delay('5m'), n.topics.delay('30m'), n.topics.retry, n.topics.deadLetter]) {
      assert.match(stdout, new RegExp(`topic "${topic.replace(/\./g, '\\.')}" with 6 partitions`), topic);
    }
    assert.equal(await redis.get(n.redis.sku('phone-x').stock), '1000');
    assert.equal(await redis.get(n.redis.sku('ebook-y').stock), '50000');
    const tables = await sql<{ TABLE_NAME: string }[]>('SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?', [config.mysql.database]);
    assert.ok(tables.some((t) => t.TABLE_NAME === 'orders'));

    const ds = await deployments(namespace);
    assert.deepEqual(ds.map((d) => d.metadata.name).sort(), ['singles-day-api', 'singles-day-compensator', 'singles-day-order-writer', 'singles-day-timeout-closer-30m', 'singles-day-timeout-closer-5m']);
    for (const d of ds) assert.deepEqual(d.metadata.ownerReferences?.map((r) => [r.uid, r.controller]), [[sale.metadata.uid, true]]);
    const closer = ds.find((d) => d.metadata.name === 'singles-day-timeout-closer-5m');
    assert.deepEqual(closer?.spec.template.spec.containers[0]?.args, ['timeout-closer', '--bucket', '5m']);
    // The operator's WORKER_IMAGE_PULL_* (test/support/operator.ts): every pod pulls as configured,
    // and the idle rounds below show the stored form causes no further apply.
    for (const d of ds) {
      assert.deepEqual(d.spec.template.spec.imagePullSecrets, [{ name: 'regcred' }], d.metadata.name);
      assert.equal(d.spec.template.spec.containers[0]?.imagePullPolicy, 'IfNotPresent', d.metadata.name);
    }
    const svc = await client.request<{ metadata: { ownerReferences: { uid: string }[] } }>('GET', paths.service(namespace, 'singles-day-api'));
    assert.equal(svc.metadata.ownerReferences[0]?.uid, sale.metadata.uid);
    // The API pods' budget: over the API Deployment's pods, owned by the sale; the disruption
    // controller counts the two ready replicas and allows one of them to go.
    const pdb = await budgetCounts(namespace, 'singles-day-api', 2, 2, 1, "the API budget counts 2 healthy pods, 1 disruption allowed");
    assert.deepEqual(pdb.metadata.ownerReferences?.map((r) => [r.uid, r.controller]), [[sale.metadata.uid, true]]);
    assert.equal(pdb.spec.maxUnavailable, 1);
    assert.deepEqual(pdb.spec.selector.matchLabels, ds.find((d) => d.metadata.name === 'singles-day-api')?.spec.selector.matchLabels);

    // Idempotence: the operator reconciles every second (SCALE_INTERVAL=1s); let it run a few
    // rounds and check that no object it manages was written (the Lease renewals are the only
    // writes, so the global resourceVersion moves; the objects' resourceVersions must not).
    // The lag collector's first round lands a moment after Ready; from then on nothing changes.
    const groups = async () => (await (await fetch(`${op.url}/metrics`)).text()).split('\n').filter((l) => l.startsWith('kafka_consumergroup_group_sum_lag{') && l.includes(`flashsale="${namespace}/singles-day"`));
    await eventually(async () => (await groups()).length === 4, { what: 'lag of the 4 groups on /metrics' });
    assert.deepEqual((await groups()).map((l) => l.slice(l.lastIndexOf(' ') + 1)), ['0', '0', '0', '0']);
    const settled = await getSale(namespace, 'singles-day');
    assert.equal(settled.status?.lag, undefined, 'lag is a metric, not status');
    const rv = await objectVersions(namespace);
    assert.ok(rv.length >= 8, rv.join(' '));
    await moreReconciles(op);
    const later = await objectVersions(namespace);
    if (!jsonEqualArrays(later, rv)) assert.fail(`reconciles with nothing changed must not write: ${JSON.stringify((await getSale(namespace, 'singles-day')).status)} vs ${JSON.stringify(settled.status)}`);
    const events = await kubectl.ok(['get', 'events', '-n', namespace, '-o', 'json']);
    assert.match(events, /"reason": "Ready"/);
    // The children a round creates are named in one Event (one write to the apiserver, not five).
    const created = (JSON.parse(events) as { items: { reason: string; message: string; involvedObject: { name: string } }[] }).items.filter((e) => e.reason === 'Created' && e.involvedObject.name === 'singles-day');
    assert.equal(created.length, 1, JSON.stringify(created));
    assert.deepEqual(created[0]?.message.replace(/^created /, '').split(', ').sort(), [...ds.map((d) => `Deployment ${d.metadata.name}`), 'PodDisruptionBudget singles-day-api', 'Service singles-day-api'].sort());
    assert.equal((await fetch(`${op.url}/healthz`)).status, 200);
    assert.equal(await op.metric('flashsale_operator_leader'), 1);

    // Server-side apply under one field manager: the operator's fields belong to an Apply entry of
    // flashsale-operator. `kubectl rollout restart` (another manager) adds a template annotation:
    // the rollout completes and the annotation survives the operator's later rounds.
    for (const d of ds) assert.ok(d.metadata.managedFields?.some((m) => m.manager === 'flashsale-operator' && m.operation === 'Apply' && !m.subresource), `${d.metadata.name}: ${JSON.stringify(d.metadata.managedFields)}`);
    const restartedAt = async () => (await deployments(namespace)).find((d) => d.metadata.name === 'singles-day-api')?.spec.template.metadata?.annotations?.['kubectl.kubernetes.io/restartedAt'];
    await kubectl.ok(['rollout', 'restart', '-n', namespace, 'deployment/singles-day-api']);
    const stamp = await restartedAt();
    assert.ok(stamp, 'kubectl rollout restart annotated the template');
    await kubectl.ok(['rollout', 'status', '-n', namespace, 'deployment/singles-day-api', '--timeout=150s'], { timeoutMs: 160_000 });
    await moreReconciles(op, '3 more reconciles after the restart');
    assert.equal(await restartedAt(), stamp, "the operator's apply keeps another manager's annotation");
    await waitFor(namespace, 'singles-day', (s) => s.status?.phase === 'Ready', 'Ready after the restart', 180_000);
  });

  it('a node drain evicts one API pod at a time: a second eviction is refused until the first pod is replaced and ready', async () => {
    const namespace = await ns({ pods: true });
    await operator(namespace);
    await apply(namespace, saleYaml('drained', baseSpec()));
    await waitReady(namespace, 'drained');
    await budgetCounts(namespace, 'drained-api', 2, 2, 1, 'the API budget allows 1 of 2');
    type Pod = { metadata: { name: string; deletionTimestamp?: string }; status?: { conditions?: { type: string; status: string }[] } };
    const apiPods = async () =>
      (await client.request<KubeList<Pod>>('GET', `/api/v1/namespaces/${namespace}/pods?labelSelector=${encodeURIComponent('flashsale.dev/sale=drained,flashsale.dev/role=api')}`)).items;
    // The refusal is a 429 with Retry-After, which the test client would wait out and retry: one try each.
    const once = createKubeClient(cluster.kc, { maxRetries: 0 });
    const evict = (name: string) =>
      once.request('POST', `/api/v1/namespaces/${namespace}/pods/${name}/eviction`, { apiVersion: 'policy/v1', kind: 'Eviction', metadata: { name, namespace } });
    const [first, second] = (await apiPods()).map((p) => p.metadata.name);
    assert.ok(first && second, 'two API pods');
    // What `kubectl drain` does per pod: the first eviction is granted, the second refused (429) while
    // the first pod is gone and its replacement not yet ready.
    await evict(first);
    await assert.rejects(evict(second), (err: Error) => {
      assert.ok(err instanceof KubeApiError && err.status === 429, String(err));
      assert.match(err.message, /disruption budget/i);
      return true;
    });
    // The Deployment replaces the evicted pod; once the new one is ready the budget allows one again.
    await budgetCounts(namespace, 'drained-api', 2, 2, 1, 'the replacement counted healthy, 1 disruption allowed again');
    const names = (await apiPods()).filter((p) => !p.metadata.deletionTimestamp).map((p) => p.metadata.name);
    assert.ok(names.includes(second) && !names.includes(first), names.join(', '));
    await evict(second);
    await budgetCounts(namespace, 'drained-api', 2, 2, 1, 'the second replacement ready');
    await waitFor(namespace, 'drained', (s) => s.status?.phase === 'Ready', 'Ready after the drain', 120_000);
  });

  it('raising stock rolls no pod (no Deployment template changes) and the API sells the new units', async () => {
    const namespace = await ns({ pods: true });
    const op = await operator(namespace);
    const spec = (stock: number) => baseSpec({ skus: [{ id: 'phone-x', stock, timeoutBucket: '5m' }, { id: 'ebook-y', stock: 500, timeoutBucket: '30m' }] });
    await apply(namespace, saleYaml('st', spec(2)));
    await waitReady(namespace, 'st');
    const api = await eventually(async () => (await endpoints(namespace, 'st'))[0], { timeoutMs: 30_000, what: 'a Ready API pod' });
    assert.match(api, /^\d+\.\d+\.\d+\.\d+:8080$/, 'a pod address of the node agent');
    assert.ok(!api.startsWith('127.0.0.1:'), 'its own address, not the host loopback');
    for (const u of ['u1', 'u2']) assert.equal((await buy(api, 'st', u, 'phone-x')).status, 202);
    assert.deepEqual((await buy(api, 'st', 'u3', 'phone-x')).body.error, 'SOLD_OUT');
    const before = await podTemplates(namespace);

    await apply(namespace, saleYaml('st', spec(4)));
    const raised = await waitFor(namespace, 'st', (s) => s.status?.observedGeneration === s.metadata.generation && cond(s, 'StockReady')?.status === 'True' && cond(s, 'StockReady')?.observedGeneration === s.metadata.generation, 'stock raised');
    assert.deepEqual(raised.status?.skus?.find((k) => k.id === 'phone-x')?.stock, 4);
    await eventually(async () => (await op.metricSum('flashsale_sku_remaining', { flashsale: `${namespace}/st`, sku: 'phone-x' })) === 2, { what: 'two more units on sale' });
    // Three more rounds: nothing the operator applies changes a pod template.
    await moreReconciles(op);
    assert.deepEqual(await podTemplates(namespace), before, 'no Deployment generation or template changed');
    // The same API pods sell the new units (an answer from the brief sold-out cache is retried), then sell out again.
    const third = await eventually(async () => {
      const r = await buy(api, 'st', 'u3', 'phone-x');
      return r.status === 202 ? r : undefined;
    }, { timeoutMs: 10_000, what: 'the third unit sold after the raise' });
    assert.equal(third.status, 202);
    assert.equal((await buy(api, 'st', 'u4', 'phone-x')).status, 202);
    assert.equal((await buy(api, 'st', 'u5', 'phone-x')).body.error, 'SOLD_OUT');
  });

  it('spec.suspend, the emergency stop: kubectl patch refuses new orders on every running API pod with no pod rolled, orders placed before go on; resuming sells again', async () => {
    const namespace = await ns({ pods: true });
    const op = await operator(namespace);
    await apply(namespace, saleYaml('es', baseSpec({ skus: [{ id: 'phone-x', stock: 5, timeoutBucket: '5m' }, { id: 'ebook-y', stock: 500, timeoutBucket: '30m' }] })));
    const ready = await waitReady(namespace, 'es');
    assert.equal(ready.status?.suspended, false);
    const api = await eventually(async () => (await endpoints(namespace, 'es'))[0], { timeoutMs: 30_000, what: 'a Ready API pod' });
    const placed = await buy(api, 'es', 'u1', 'phone-x');
    assert.equal(placed.status, 202);
    const before = await podTemplates(namespace);

    await kubectl.ok(['patch', 'flashsale', 'es', '-n', namespace, '--type', 'merge', '-p', '{"spec":{"suspend":true}}']);
    const stopped = await waitFor(namespace, 'es', (s) => s.status?.observedGeneration === s.metadata.generation && s.status?.suspended === true, 'status.suspended', 30_000);
    assert.equal(stopped.status?.phase, 'Suspended');
    assert.equal(cond(stopped, 'Ready')?.status, 'True');
    // In effect on the running pod the moment status says so: the switch is in Redis, not in the pod.
    assert.deepEqual(await buy(api, 'es', 'u2', 'phone-x'), { status: 403, body: { error: 'SALE_SUSPENDED' } });
    assert.deepEqual(await buy(api, 'es', 'u2', 'ebook-y'), { status: 403, body: { error: 'SALE_SUSPENDED' } });
    assert.deepEqual(await buy(api, 'es', 'u1', 'phone-x'), { status: 409, body: { error: 'ALREADY_ORDERED', orderId: placed.body.orderId } }, 'a retry still learns its order');
    // The order placed before is written and can be paid.
    const paid = await eventually(async () => {
      const r = await fetch(`http://${api}/v1/sales/es/orders/${String(placed.body.orderId)}/pay`, { method: 'POST' });
      return r.status === 200 ? r : undefined;
    }, { timeoutMs: 30_000, what: 'the earlier order paid while suspended' });
    assert.equal(paid.status, 200);
    assert.equal(await op.metricSum('flashsale_sale_phase', { flashsale: `${namespace}/es`, phase: 'Suspended' }), 1);
    await moreReconciles(op);
    assert.deepEqual(await podTemplates(namespace), before, 'no Deployment generation or template changed: no pod rolled');
    const suspendedEvent = (await saleEvents(namespace)).find((e) => e.reason === 'Suspended');
    assert.equal(suspendedEvent?.type, 'Warning');
    assert.match(suspendedEvent?.message ?? '', /new orders refused \(spec\.suspend\) for (phone-x, ebook-y|ebook-y, phone-x)/);

    await kubectl.ok(['patch', 'flashsale', 'es', '-n', namespace, '--type', 'merge', '-p', '{"spec":{"suspend":false}}']);
    const resumed = await waitFor(namespace, 'es', (s) => s.status?.observedGeneration === s.metadata.generation && s.status?.suspended === false, 'resumed', 30_000);
    assert.equal(resumed.status?.phase, 'Ready');
    assert.equal((await buy(api, 'es', 'u2', 'phone-x')).status, 202);
    assert.deepEqual(await podTemplates(namespace), before, 'resuming rolls nothing either');
    await eventually(async () => (await saleEvents(namespace)).some((e) => e.reason === 'Resumed'), { what: 'the Resumed Event' });

    // One SKU alone (a wrong price): the other sells on, and status says which.
    await apply(namespace, saleYaml('es', baseSpec({ skus: [{ id: 'phone-x', stock: 5, timeoutBucket: '5m' }, { id: 'ebook-y', stock: 500, timeoutBucket: '30m', suspend: true }] })));
    const oneSku = await waitFor(namespace, 'es', (s) => s.status?.observedGeneration === s.metadata.generation && s.status?.skus?.find((k) => k.id === 'ebook-y')?.suspended === true, 'status.skus[ebook-y].suspended', 30_000);
    assert.equal(oneSku.status?.phase, 'Ready');
    assert.equal(oneSku.status?.skus?.find((k) => k.id === 'phone-x')?.suspended, undefined);
    assert.deepEqual(await buy(api, 'es', 'u3', 'ebook-y'), { status: 403, body: { error: 'SALE_SUSPENDED' } });
    assert.equal((await buy(api, 'es', 'u3', 'phone-x')).status, 202);
    assert.deepEqual(await podTemplates(namespace), before, 'no pod rolled for a SKU of its own either');
  });

  it("a worker's resources: applied as written, stored canonical without another apply; a change rolls only that role", async () => {
    const namespace = await ns({ pods: false });
    const op = await operator(namespace);
    // Non-canonical amounts on purpose: the apiserver stores 0.5 as 500m and 1.5Gi as 1536Mi.
    const spec = (apiCpu: string) => baseSpec({ workers: { api: { replicas: 1, resources: { requests: { cpu: apiCpu, memory: '1024Mi' }, limits: { memory: '1.5Gi' } } }, compensator: { resources: { requests: { cpu: 1 } } } } });
    await apply(namespace, saleYaml('rs', spec('0.5')));
    await waitProvisioned(namespace, 'rs');
    const resources = async () => Object.fromEntries((await deployments(namespace)).map((d) => [d.metadata.name, d.spec.template.spec.containers[0]?.resources]));
    const stored = await resources();
    assert.deepEqual(stored['rs-api'], { requests: { cpu: '500m', memory: '1Gi' }, limits: { memory: '1536Mi' } }, 'the apiserver keeps the canonical form');
    assert.deepEqual(stored['rs-compensator'], { requests: { cpu: '1' } }, 'the spec replaces the default as a whole');
    assert.deepEqual(stored['rs-order-writer'], { requests: { cpu: '100m', memory: '128Mi' } }, 'the default');
    // Equal amounts in another form are no drift: idle rounds apply nothing. (Counted at the source:
    // an apply the apiserver finds unchanged writes no object, and the sale's status may still move
    // here with its Deployments' status, which kube-controller-manager writes after their creation.)
    const applied = await applyCount(op);
    assert.ok(applied >= 7, `the children were applied (${applied})`);
    await moreReconciles(op);
    assert.equal(await applyCount(op), applied, 'no apply in rounds with nothing changed');
    // A new CPU request for the API: its template changes, no other Deployment's does.
    const generations = async () => Object.fromEntries((await deployments(namespace)).map((d) => [d.metadata.name, d.metadata.generation]));
    const gens = await generations();
    await apply(namespace, saleYaml('rs', spec('750m')));
    await eventually(async () => (await resources())['rs-api']?.requests?.cpu === '750m', { what: 'the API at 750m' });
    const after = await generations();
    assert.equal(after['rs-api'], (gens['rs-api'] ?? 0) + 1);
    assert.deepEqual({ ...after, 'rs-api': 0 }, { ...gens, 'rs-api': 0 }, 'the other roles roll no pod');
  });

  it('a rollout that cannot progress: WorkloadsReady False ProgressDeadlineExceeded, not Ready', async () => {
    const namespace = await ns({ pods: true });
    // An image the node agent does not run: the pods stay Pending (as a bad tag would in a cluster).
    await operator(namespace, { env: { WORKER_IMAGE: 'registry.example.com/not-flashsale:1' } });
    await apply(namespace, saleYaml('stuck', baseSpec()));
    await waitProvisioned(namespace, 'stuck');
    // A short progress deadline, set by another manager: the operator's apply leaves it alone.
    await kubectl.ok(['patch', '-n', namespace, 'deployment/stuck-api', '--type=merge', '-p', '{"spec":{"progressDeadlineSeconds":2}}']);
    const sale = await waitFor(namespace, 'stuck', (s) => cond(s, 'WorkloadsReady')?.reason === 'ProgressDeadlineExceeded', 'ProgressDeadlineExceeded', 60_000);
    assert.equal(cond(sale, 'WorkloadsReady')?.status, 'False');
    assert.match(cond(sale, 'WorkloadsReady')?.message ?? '', /stuck-api/);
    assert.equal(cond(sale, 'Ready')?.status, 'False');
    assert.equal(sale.status?.phase, 'Degraded');
    assert.equal((await deployments(namespace)).find((d) => d.metadata.name === 'stuck-api')?.spec.progressDeadlineSeconds, 2);
    assert.match(await kubectl.ok(['get', 'events', '-n', namespace, '-o', 'json']), /"reason": "ProgressDeadlineExceeded"/);
  });

  it("placement and pod metadata on every worker's pods; a PriorityClass that does not exist: ReplicaFailure with Kubernetes' reason, the running pods kept, Ready once it exists", async () => {
    const namespace = await ns({ pods: true });
    const op = await operator(namespace);
    // Cluster-scoped: named after the test's namespace, deleted at the end.
    const priorityClass = `fs-e2e-${namespace}`;
    const placement = {
      nodeSelector: { 'flashsale.dev/e2e-pool': 'sale' },
      tolerations: [{ key: '', operator: 'Exists', effect: 'NoSchedule' }, { key: 'dedicated', operator: 'Equal', value: 'sale', effect: 'NoExecute', tolerationSeconds: 30 }],
      priorityClassName: priorityClass,
    };
    try {
      const podMetadata = { labels: { team: 'sales' }, annotations: { 'sidecar.istio.io/inject': 'false' } };
      await apply(namespace, saleYaml('pl', baseSpec({ placement, podMetadata })));
      // The admission plugin refuses every pod of a class it does not know: the ReplicaSets report
      // FailedCreate, the Deployments ReplicaFailure, and the sale says so, before any deadline.
      const failing = await waitFor(namespace, 'pl', (s) => cond(s, 'WorkloadsReady')?.reason === 'ReplicaFailure', 'WorkloadsReady ReplicaFailure', 60_000);
      assert.equal(cond(failing, 'WorkloadsReady')?.status, 'False');
      assert.match(cond(failing, 'WorkloadsReady')?.message ?? '', new RegExp(`pods cannot be created \\(each ReplicaSet's first refusal; its Events have the latest\\): pl-[a-z-0-9]+: .*no PriorityClass with name ${priorityClass} was found`));
      assert.equal(failing.status?.phase, 'Degraded');
      await eventually(async () => /"reason": "ReplicaFailure"/.test(await kubectl.ok(['get', 'events', '-n', namespace, '-o', 'json'])), { what: 'a ReplicaFailure Event' });
      // The class created: the ReplicaSets' own retries create the pods, and the sale becomes Ready.
      await client.request('POST', '/apis/scheduling.k8s.io/v1/priorityclasses', { apiVersion: 'scheduling.k8s.io/v1', kind: 'PriorityClass', metadata: { name: priorityClass }, value: 100_000, description: 'flashsale operator e2e test' });
      await waitReady(namespace, 'pl');
      const pods = (await client.request<KubeList<{ metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> }; spec: { priority?: number; priorityClassName?: string; nodeSelector?: Record<string, string>; tolerations?: Record<string, unknown>[] } }>>('GET', `/api/v1/namespaces/${namespace}/pods`)).items;
      assert.ok(pods.length >= 6, `every worker's pods (${pods.length})`);
      for (const pod of pods) {
        assert.equal(pod.spec.priority, 100_000, `${pod.metadata.name}: the priority admission resolved the class`);
        assert.equal(pod.metadata.labels?.team, 'sales');
        assert.equal(pod.metadata.labels?.['flashsale.dev/sale'], 'pl', "the operator's labels stay");
        assert.equal(pod.metadata.annotations?.['sidecar.istio.io/inject'], 'false');
        assert.equal(pod.spec.priorityClassName, priorityClass);
        assert.deepEqual(pod.spec.nodeSelector, placement.nodeSelector);
        assert.deepEqual(pod.spec.tolerations?.slice(0, 2), [{ operator: 'Exists', effect: 'NoSchedule' }, placement.tolerations[1]], `${pod.metadata.name}: ours first, the admission's defaults after`);
      }
      // Stored as applied (the empty toleration key left out): idle rounds apply nothing.
      const applied = await applyCount(op);
      await moreReconciles(op);
      assert.equal(await applyCount(op), applied, 'no apply in rounds with nothing changed');
      // An edit Kubernetes refuses in the middle of the sale (a class that does not exist): the new
      // pods are refused and the old ones keep serving, since every rollout adds before it removes
      // (the API's maxUnavailable 0; a 1-replica consumer's 25 % rounds to 0 unavailable, 1 surge).
      const ready = await deployments(namespace);
      await apply(namespace, saleYaml('pl', baseSpec({ placement: { ...placement, priorityClassName: `${priorityClass}-gone` }, podMetadata })));
      const refused = await waitFor(namespace, 'pl', (s) => s.status?.observedGeneration === s.metadata.generation && cond(s, 'WorkloadsReady')?.reason === 'ReplicaFailure', 'ReplicaFailure after the edit', 60_000);
      assert.match(cond(refused, 'WorkloadsReady')?.message ?? '', new RegExp(`no PriorityClass with name ${priorityClass}-gone was found`));
      for (const d of await deployments(namespace)) {
        const before = ready.find((b) => b.metadata.name === d.metadata.name);
        assert.equal(d.status?.readyReplicas, before?.spec.replicas, `${d.metadata.name}: every replica still ready`);
      }
      // Put back: the old template is the Deployments' previous revision, and the sale is Ready again.
      await apply(namespace, saleYaml('pl', baseSpec({ placement, podMetadata })));
      await waitReady(namespace, 'pl');
    } finally {
      await client.request('DELETE', `/apis/scheduling.k8s.io/v1/priorityclasses/${priorityClass}`).catch(() => undefined);
    }
  });

  it('rolls out added SKUs, raised stock, more partitions and replicas; refuses partition decrease and stock cut below sold with NotSupported', async () => {
    const namespace = await ns({ pods: true });
    const op = await operator(namespace);
    await apply(namespace, saleYaml('s1', baseSpec()));
    await waitReady(namespace, 's1');
    const n = saleNames({ namespace, name: 's1' });

    await apply(namespace, saleYaml('s1', baseSpec({
      skus: [
        { id: 'phone-x', stock: 150, timeoutBucket: '5m' },
        { id: 'ebook-y', stock: 500, timeoutBucket: '30m' },
        { id: 'case-z', stock: 7, timeoutBucket: '5m' },
      ],
      kafka: { partitions: 3, replicationFactor: 1 },
      workers: { api: { replicas: 3 } },
    })));
    await eventually(async () => (await deployments(namespace)).find((d) => d.metadata.name === 's1-api')?.spec.replicas === 3, { what: 'api scaled to 3' });
    let sale = await waitFor(namespace, 's1', (s) => s.status?.phase === 'Ready' && s.status.observedGeneration === s.metadata.generation, 'Ready after edit', 180_000);
    assert.equal(await redis.get(n.redis.sku('case-z').stock), '7');
    assert.equal(await redis.get(n.redis.sku('phone-x').stock), '150');
    assert.equal(await topicPartitions(n.topics.orders), 3);
    assert.equal(await topicPartitions(n.topics.delay('30m')), 3);
    assert.deepEqual(sale.status?.skus?.map((s) => [s.id, s.stock, s.remaining]), [['phone-x', 150, undefined], ['ebook-y', 500, undefined], ['case-z', 7, undefined]]);
    for (const [sku, units] of [['phone-x', 150], ['ebook-y', 500], ['case-z', 7]] as const) {
      await eventually(async () => (await op.metricSum('flashsale_sku_remaining', { flashsale: `${namespace}/s1`, sku })) === units, { what: `${sku} remaining ${units} on /metrics` });
    }

    // Partition decrease: the CRD's transition rule refuses it at the apiserver, naming the field.
    const fewer = saleYaml('s1', baseSpec({ skus: [{ id: 'phone-x', stock: 150, timeoutBucket: '5m' }, { id: 'ebook-y', stock: 500, timeoutBucket: '30m' }, { id: 'case-z', stock: 7, timeoutBucket: '5m' }], kafka: { partitions: 2, replicationFactor: 1 }, workers: { api: { replicas: 3 } } }));
    const refused = await kubectl.run(['apply', '-n', namespace, '-f', '-'], { stdin: fewer });
    assert.notEqual(refused.status, 0);
    assert.match(refused.stderr, /spec\.kafka\.partitions/);
    // The operator refuses it too (second line, for a sale edited before the rule existed): the
    // same edit under the CRD without its rules → NotSupported, topics untouched.
    await kubectl.ok(['apply', '--server-side', '--force-conflicts', '-f', '-'], { stdin: crdWithoutRules() });
    try {
      await eventually(async () => (await kubectl.run(['apply', '-n', namespace, '-f', '-'], { stdin: fewer })).status === 0, { what: 'the decrease stored under the rule-less CRD' });
    } finally {
      await kubectl.ok(['apply', '--server-side', '--force-conflicts', '-f', 'crds/flashsale.yaml']);
    }
    sale = await waitFor(namespace, 's1', (s) => cond(s, 'TopicsReady')?.reason === 'NotSupported', 'partition decrease refused');
    assert.match(cond(sale, 'TopicsReady')?.message ?? '', /cannot decrease partitions/);
    assert.equal(sale.status?.phase, 'Degraded');
    assert.equal(await topicPartitions(n.topics.orders), 3);
    const events = await kubectl.ok(['get', 'events', '-n', namespace, '-o', 'json']);
    assert.match(events, /"reason": "NotSupported"/);

    // Stock cut below what is sold (40 of phone-x reserved in Redis): refused, Redis untouched.
    await redis.decrby(n.redis.sku('phone-x').stock, 40);
    await apply(namespace, saleYaml('s1', baseSpec({ skus: [{ id: 'phone-x', stock: 30, timeoutBucket: '5m' }, { id: 'ebook-y', stock: 500, timeoutBucket: '30m' }, { id: 'case-z', stock: 7, timeoutBucket: '5m' }], kafka: { partitions: 3, replicationFactor: 1 }, workers: { api: { replicas: 3 } } })));
    sale = await waitFor(namespace, 's1', (s) => cond(s, 'StockReady')?.reason === 'NotSupported', 'stock cut refused');
    assert.match(cond(sale, 'StockReady')?.message ?? '', /phone-x has sold 40, spec asks 30/);
    assert.equal(await redis.get(n.redis.sku('phone-x').stock), '110');
    assert.equal(await redis.get(n.redis.sku('phone-x').seeded), '150');
    assert.equal(cond(sale, 'TopicsReady')?.status, 'True', 'partitions back at 3: topics fine again');
  });

  it('an invalid spec → Invalid with the precise message and an Event; nothing provisioned', async () => {
    const namespace = await ns({ pods: false });
    await operator(namespace);
    // The apiserver refuses what the CRD's schema and CEL rules catch, naming the field.
    const dup = await kubectl.run(['apply', '--validate=false', '-n', namespace, '-f', '-'], { stdin: saleYaml('dup', baseSpec({ skus: [{ id: 'a', stock: 1, timeoutBucket: '5m' }, { id: 'a', stock: 2, timeoutBucket: '5m' }] })) });
    assert.notEqual(dup.status, 0);
    assert.match(dup.stderr, /spec\.skus\[1\]: Duplicate value/);
    // The operator's own checks are the second line, for sales stored before a rule existed: store
    // one under the CRD without its CEL rules, then put the rules back.
    await kubectl.ok(['apply', '--server-side', '--force-conflicts', '-f', '-'], { stdin: crdWithoutRules() });
    try {
      await eventually(async () => (await kubectl.run(['apply', '--validate=false', '-n', namespace, '-f', '-'], { stdin: saleYaml('bad', baseSpec({ skus: [{ id: 'a', stock: 1, timeoutBucket: '5m' }, { id: 'b', stock: 2, timeoutBucket: 'later' }], workers: { orderWriter: { minReplicas: 4, maxReplicas: 2 } } })) })).status === 0, { what: 'the bad sale stored under the rule-less CRD' });
    } finally {
      await kubectl.ok(['apply', '--server-side', '--force-conflicts', '-f', 'crds/flashsale.yaml']);
    }
    const sale = await waitFor(namespace, 'bad', (s) => s.status?.phase === 'Invalid', 'Invalid');
    const msg = cond(sale, 'Ready')?.message ?? '';
    assert.match(msg, /spec\.workers\.orderWriter\.minReplicas: must not exceed maxReplicas/);
    assert.match(msg, /spec\.skus\[1\]\.timeoutBucket: unknown bucket "later"/);
    assert.equal(cond(sale, 'Ready')?.reason, 'InvalidSpec');
    assert.equal(sale.metadata.finalizers, undefined);
    const events = await kubectl.ok(['get', 'events', '-n', namespace, '-o', 'json']);
    assert.match(events, /"reason": "InvalidSpec"/);
    const topics = (await (await kafka.admin()).listTopics()).filter((t) => t.startsWith(`flashsale.${namespace}.`));
    assert.deepEqual(topics, []);
    assert.deepEqual((await redis.scan('0', 'MATCH', `fs:{${namespace}/*`, 'COUNT', 1000))[1], []);
    assert.deepEqual(await deployments(namespace), []);
  });

  it('Redis keys lost → stock rebuilt from MySQL orders, not re-seeded', async () => {
    const namespace = await ns({ pods: true });
    const op = await operator(namespace);
    await apply(namespace, saleYaml('rb', baseSpec()));
    await waitReady(namespace, 'rb');
    const n = saleNames({ namespace, name: 'rb' });
    const created = new Date();
    // Due in an hour: the sale's real compensator pod must not close these UNPAID orders meanwhile.
    const now = new Date(created.getTime() + 3_600_000);
    await sql('INSERT INTO orders (order_id, sale, sku_id, user_id, quantity, status, created_at, due_at) VALUES (?,?,?,?,?,?,?,?),(?,?,?,?,?,?,?,?),(?,?,?,?,?,?,?,?)', [
      randomUUID(), n.key, 'phone-x', 'u1', 1, 'UNPAID', created, now,
      randomUUID(), n.key, 'phone-x', 'u2', 1, 'PAID', created, now,
      randomUUID(), n.key, 'phone-x', 'u3', 1, 'CLOSED', created, now,
    ]);
    await deleteRedisKeys(redis, n.redis.patterns);
    await eventually(async () => (await op.metricSum('flashsale_sku_remaining', { flashsale: `${namespace}/rb`, sku: 'phone-x' })) === 98, { what: 'rebuilt: phone-x remaining 98' });
    await waitFor(namespace, 'rb', (s) => s.status?.phase === 'Ready', 'Ready after the rebuild');
    assert.equal(await redis.get(n.redis.sku('phone-x').stock), '98', 'stock − UNPAID/PAID units, not the full 100');
    assert.equal(await redis.get(n.redis.sku('ebook-y').stock), '500');
    assert.equal(await op.metricSum('flashsale_sku_remaining', { flashsale: `${namespace}/rb` }), 598);
    // Sold is read from MySQL (UNPAID + PAID), not derived from Redis: the stock-drift alert compares
    // the two. An order that exists only in MySQL makes them differ: sold 3 while stock − remaining is 2.
    await sql('INSERT INTO orders (order_id, sale, sku_id, user_id, quantity, status, created_at, due_at) VALUES (?,?,?,?,?,?,?,?)', [randomUUID(), n.key, 'phone-x', 'u4', 1, 'UNPAID', created, now]);
    await eventually(async () => new RegExp(`flashsale_sku_sold\\{flashsale="${namespace}/rb",sku="phone-x"\\} 3\\n`).test(await (await fetch(`${op.url}/metrics`)).text()), { what: 'sold 3 (from MySQL) for phone-x' });
  });

  it('Redis keys lost while orders wait in Kafka → StockReady WaitingForOrderWriter until the writer drained, then rebuilt', async () => {
    const namespace = await ns({ pods: false });
    await operator(namespace, { env: { REBUILD_GRACE: '1s' } });
    await apply(namespace, saleYaml('gate', baseSpec()));
    await waitProvisioned(namespace, 'gate');
    const n = saleNames({ namespace, name: 'gate' });
    // An order on its way: in the orders topic, not yet written (the namespace runs no pods).
    const producer = await kafka.producer();
    await producer.send([{ topic: n.topics.orders, messages: [{ key: 'phone-x', value: '{}' }] }]);
    await producer.disconnect();
    await deleteRedisKeys(redis, n.redis.patterns);
    const waiting = await waitFor(namespace, 'gate', (x) => cond(x, 'StockReady')?.reason === 'WaitingForOrderWriter', 'waiting for the writer');
    assert.match(cond(waiting, 'StockReady')?.message ?? '', /rebuilt from MySQL once the order writer has written every order/);
    assert.equal(await redis.get(n.redis.sku('phone-x').stock), null, 'nothing seeded while an order is in flight');
    // The writer's group catches up (this one only commits).
    const consumer = kafka.consumer({ groupId: n.groups.orderWriter, topics: [n.topics.orders], fromBeginning: true });
    await consumer.start(async (batch, ctx) => {
      const last = batch.messages.at(-1);
      if (last) await ctx.commit(String(Number(last.offset) + 1));
    });
    try {
      await waitFor(namespace, 'gate', (x) => cond(x, 'StockReady')?.status === 'True', 'stock rebuilt after the drain');
    } finally {
      await consumer.stop();
    }
    assert.equal(await redis.get(n.redis.sku('phone-x').stock), '100');
  });

  it('unreachable Redis and MySQL map to RedisUnavailable / MySQLUnavailable conditions and Events; no workloads', async () => {
    const namespace = await ns({ pods: false });
    await operator(namespace, { env: { REDIS_URL: 'redis://127.0.0.1:1', MYSQL_URL: 'mysql://root@127.0.0.1:1/fs_test_unreachable', STEP_TIMEOUT: '5s' } });
    await apply(namespace, saleYaml('down', baseSpec()));
    const sale = await waitFor(namespace, 'down', (s) => cond(s, 'StockReady')?.reason === 'RedisUnavailable' && cond(s, 'SchemaReady')?.reason === 'MySQLUnavailable', 'unavailable reasons');
    assert.equal(sale.status?.phase, 'Degraded');
    assert.equal(cond(sale, 'TopicsReady')?.status, 'True');
    assert.equal(cond(sale, 'WorkloadsReady')?.reason, 'Blocked');
    assert.deepEqual(await deployments(namespace), []);
    const events = await kubectl.ok(['get', 'events', '-n', namespace, '-o', 'json']);
    assert.match(events, /"reason": "RedisUnavailable"/);
    assert.match(events, /"reason": "MySQLUnavailable"/);
  });

  it('the pause annotation: spec edits, a manual scale and a Delete-policy deletion are left alone while paused; removing it applies the edit and finishes the deletion', async () => {
    const namespace = await ns({ pods: false });
    const op = await operator(namespace);
    await apply(namespace, saleYaml('pz', baseSpec({ deletionPolicy: 'Delete' })));
    await waitProvisioned(namespace, 'pz');
    const n = saleNames({ namespace, name: 'pz' });
    const paused = (s: Sale) => cond(s, 'ReconciliationPaused');
    const replicasOf = async () => Object.fromEntries((await deployments(namespace)).map((d) => [d.metadata.name, d.spec.replicas]));

    await kubectl.ok(['annotate', '-n', namespace, 'flashsale', 'pz', 'flashsale.dev/pause-reconciliation=true']);
    const first = await waitFor(namespace, 'pz', (s) => paused(s)?.status === 'True', 'ReconciliationPaused');
    assert.equal(paused(first)?.reason, 'AnnotationSet');
    assert.equal(await op.metricSum('flashsale_sale_reconcile_paused', { flashsale: n.key }), 1);
    const applies = await applyCount(op);
    const sizes = await replicasOf();
    // An edit (more stock, a fixed API size) and a hand scale of the order writer, as in an incident.
    await apply(namespace, saleYaml('pz', baseSpec({ deletionPolicy: 'Delete', skus: [{ id: 'phone-x', stock: 150, timeoutBucket: '5m' }, { id: 'ebook-y', stock: 500, timeoutBucket: '30m' }], workers: { api: { replicas: 3 } } })));
    const edited = await waitFor(namespace, 'pz', (s) => paused(s)?.observedGeneration === s.metadata.generation, 'the paused round of the edit');
    assert.equal(edited.status?.observedGeneration, first.metadata.generation, 'status keeps the generation acted on');
    const successes = async () => (await op.metric('flashsale_operator_reconciles_total', 'result="success"')) ?? 0;
    const before = await successes();
    await kubectl.ok(['scale', '-n', namespace, 'deployment', n.workloads.orderWriter, '--replicas=3']);
    await eventually(async () => (await successes()) > before, { what: 'a paused round after the hand scale' });
    assert.equal(await applyCount(op), applies, 'nothing applied while paused');
    assert.deepEqual((await replicasOf())[n.workloads.orderWriter], 3, 'the hand scale stays');
    assert.equal((await replicasOf())[n.workloads.api], sizes[n.workloads.api], 'the API keeps its size');
    assert.notEqual(sizes[n.workloads.api], 3);
    assert.equal(await redis.get(n.redis.sku('phone-x').seeded), '100', 'stock untouched');
    assert.equal((await saleEvents(namespace)).filter((e) => e.reason === 'ReconciliationPaused').length, 1, 'one Event for the pause');

    await kubectl.ok(['annotate', '-n', namespace, 'flashsale', 'pz', 'flashsale.dev/pause-reconciliation-']);
    const resumed = await waitFor(namespace, 'pz', (s) => s.status?.observedGeneration === s.metadata.generation && !paused(s) && cond(s, 'StockReady')?.observedGeneration === s.metadata.generation, 'resumed and the edit observed');
    assert.deepEqual(resumed.status?.skus?.find((k) => k.id === 'phone-x')?.stock, 150);
    assert.equal(await redis.get(n.redis.sku('phone-x').seeded), '150');
    await eventually(async () => {
      const r = await replicasOf();
      return r[n.workloads.api] === 3 && r[n.workloads.orderWriter] === 1;
    }, { what: 'the API at its new size and the order writer back to what lag asks' });
    assert.equal(await op.metricSum('flashsale_sale_reconcile_paused', { flashsale: n.key }), 0);
    await eventually(async () => (await saleEvents(namespace)).some((e) => e.reason === 'ReconciliationResumed'), { what: 'the ReconciliationResumed Event' });

    // Paused again, then deleted: the finalizer holds and the topics stay until the annotation goes.
    await kubectl.ok(['annotate', '-n', namespace, 'flashsale', 'pz', 'flashsale.dev/pause-reconciliation=true']);
    await waitFor(namespace, 'pz', (s) => paused(s)?.status === 'True', 'paused again');
    await kubectl.ok(['delete', '-n', namespace, 'flashsale', 'pz', '--wait=false']);
    const held = await waitFor(namespace, 'pz', (s) => /its deletion waits until the annotation is removed/.test(paused(s)?.message ?? ''), 'deletion held by the pause');
    assert.deepEqual(held.metadata.finalizers, ['flashsale.dev/cleanup']);
    assert.equal(await topicPartitions(n.topics.orders), 2, 'no data deleted while paused');
    assert.equal((await deployments(namespace)).length > 0, true, 'no worker stopped while paused');
    await kubectl.ok(['annotate', '-n', namespace, 'flashsale', 'pz', 'flashsale.dev/pause-reconciliation-']);
    await eventually(async () => /NotFound/.test((await kubectl.run(['get', '-n', namespace, 'flashsale', 'pz'])).stderr), { timeoutMs: 60_000, what: 'the sale deleted once resumed' });
    assert.equal(await topicPartitions(n.topics.orders), undefined, 'Delete policy honoured after the pause');
  });

  it('delete with Retain keeps topics and keys; delete with Delete removes them (orders stay)', async () => {
    const namespace = await ns({ pods: false });
    await operator(namespace);
    await apply(namespace, saleYaml('keep', baseSpec()));
    await apply(namespace, saleYaml('drop', baseSpec({ deletionPolicy: 'Delete' })));
    await waitProvisioned(namespace, 'keep');
    await waitProvisioned(namespace, 'drop');
    const keep = saleNames({ namespace, name: 'keep' });
    const drop = saleNames({ namespace, name: 'drop' });
    const now = new Date();
    await sql('INSERT INTO orders (order_id, sale, sku_id, user_id, quantity, status, created_at, due_at) VALUES (?,?,?,?,?,?,?,?)', [randomUUID(), drop.key, 'phone-x', 'u1', 1, 'PAID', now, now]);

    // A delay topic of a bucket dropped from the spec earlier: Delete removes it too.
    await (await kafka.admin()).createTopics([{ topic: drop.topics.delay('old'), partitions: 1, replicationFactor: 1 }]);
    await kubectl.ok(['delete', '-n', namespace, 'flashsale', 'keep', 'drop', '--wait=false']);
    await eventually(async () => (await kubectl.run(['get', '-n', namespace, 'flashsale', 'keep', 'drop'])).stderr.match(/NotFound/g)?.length === 2, { timeoutMs: 30_000, what: 'both sales gone' });
    assert.equal(await topicPartitions(keep.topics.orders), 2, 'Retain keeps topics');
    assert.equal(await redis.get(keep.redis.sku('phone-x').stock), '100', 'Retain keeps stock');
    assert.equal(await topicPartitions(drop.topics.orders), undefined, 'Delete removes topics');
    assert.equal(await topicPartitions(drop.topics.delay('old')), undefined, 'Delete removes every topic of the sale');
    assert.equal(await redis.get(drop.redis.sku('phone-x').stock), null, 'Delete removes Redis keys');
    const orders = await sql<{ c: number }[]>('SELECT COUNT(*) AS c FROM orders WHERE sale = ?', [drop.key]);
    assert.equal(Number(orders[0]?.c), 1, 'orders in MySQL are never deleted');
    // kube-controller-manager's garbage collector removes the children through their owner references.
    await eventually(async () => (await deployments(namespace)).length === 0 && (await client.request<KubeList<unknown>>('GET', paths.services(namespace))).items.length === 0, { timeoutMs: 60_000, what: 'Deployments and Services garbage-collected' });
  });

  it('delete while Kafka is unreachable: finalizer held with the reason in status, released when Kafka is back', async () => {
    const namespace = await ns({ pods: false });
    const first = await operator(namespace);
    await apply(namespace, saleYaml('kd', baseSpec({ deletionPolicy: 'Delete' })));
    await waitProvisioned(namespace, 'kd');
    await first.stop();
    // The same operator configuration, but its brokers are a port where nothing listens.
    const blind = await operator(namespace, { env: { KAFKA_BROKERS: '127.0.0.1:1', STEP_TIMEOUT: '3s' } });
    await kubectl.ok(['delete', '-n', namespace, 'flashsale', 'kd', '--wait=false']);
    const held = await waitFor(namespace, 'kd', (s) => s.status?.phase === 'Deleting' && cond(s, 'Ready')?.reason === 'KafkaUnavailable', 'finalizer held, KafkaUnavailable');
    assert.deepEqual(held.metadata.finalizers, ['flashsale.dev/cleanup']);
    assert.match(cond(held, 'Ready')?.message ?? '', /force-delete/);
    const n = saleNames({ namespace, name: 'kd' });
    assert.equal(await topicPartitions(n.topics.orders), 2);
    await blind.stop();
    await operator(namespace);
    await eventually(async () => (await kubectl.run(['get', '-n', namespace, 'flashsale', 'kd'])).stderr.includes('NotFound'), { timeoutMs: 30_000, what: 'sale gone once Kafka is back' });
    assert.equal(await topicPartitions(n.topics.orders), undefined);
  });

  it('the force-delete annotation removes the finalizer without cleanup', async () => {
    const namespace = await ns({ pods: false });
    const blind = await operator(namespace, { env: { KAFKA_BROKERS: '127.0.0.1:1', STEP_TIMEOUT: '2s' } });
    await apply(namespace, saleYaml('fd', baseSpec({ deletionPolicy: 'Delete' })));
    await waitFor(namespace, 'fd', (s) => (s.metadata.finalizers ?? []).includes('flashsale.dev/cleanup') && cond(s, 'TopicsReady')?.reason === 'KafkaUnavailable', 'finalizer + KafkaUnavailable');
    // As an admin meets it: the delete hangs on the finalizer (Kafka is unreachable), then they annotate.
    await kubectl.ok(['delete', '-n', namespace, 'flashsale', 'fd', '--wait=false']);
    const held = await waitFor(namespace, 'fd', (s) => s.status?.phase === 'Deleting', 'deletion held by the finalizer');
    assert.deepEqual(held.metadata.finalizers, ['flashsale.dev/cleanup']);
    await kubectl.ok(['annotate', '-n', namespace, 'flashsale', 'fd', 'flashsale.dev/force-delete=true']);
    await eventually(async () => (await kubectl.run(['get', '-n', namespace, 'flashsale', 'fd'])).stderr.includes('NotFound'), { timeoutMs: 20_000, what: 'force-deleted' });
    assert.match(await kubectl.ok(['get', 'events', '-n', namespace, '-o', 'json']), /"reason": "ForceDeleted"/);
    await blind.stop();
  });

  it('two replicas: one leader; kill it and the other takes over within the lease duration', async () => {
    const namespace = await ns({ pods: false });
    const leaseName = `lease-${namespace}`;
    const short = { LEASE_DURATION: '4s', LEASE_RENEW_DEADLINE: '3s', LEASE_RETRY_PERIOD: '1s' };
    const a = await operator(namespace, { identity: 'op-a', leaseName, env: short });
    const b = await operator(namespace, { identity: 'op-b', leaseName, env: short });
    const holder = async () => (await client.request<{ spec: { holderIdentity?: string; renewTime?: string } }>('GET', paths.lease(namespace, leaseName)).catch(() => undefined))?.spec;
    const first = await eventually(async () => (await holder())?.holderIdentity, { what: 'a leader' });
    assert.match((await holder())?.renewTime ?? '', /\.\d{6}Z$/);
    const [leader, standby] = first === 'op-a' ? [a, b] : [b, a];
    await eventually(async () => (await leader.metric('flashsale_operator_leader')) === 1, { what: 'leader metric' });
    assert.equal(await standby.metric('flashsale_operator_leader'), 0);
    // Only the leader reconciles.
    await apply(namespace, saleYaml('le', baseSpec()));
    await waitFor(namespace, 'le', (s) => s.status?.phase !== undefined, 'reconciled');
    assert.ok(((await leader.metric('flashsale_operator_reconciles_total')) ?? 0) + ((await leader.metric('flashsale_operator_reconciles_total', 'result="requeue"')) ?? 0) > 0);
    assert.equal(await standby.metric('flashsale_operator_reconciles_total', 'result="requeue"'), undefined, 'the standby does not reconcile');

    const killedAt = Date.now();
    await leader.stop('SIGKILL');
    // Lease 4s (LEASE_DURATION), retry 1s: the standby must hold it within the lease duration plus one retry round.
    await eventually(async () => (await holder())?.holderIdentity === (first === 'op-a' ? 'op-b' : 'op-a'), { timeoutMs: 4_000 + 1_000 + 1_500, intervalMs: 100, what: 'takeover' });
    const tookMs = Date.now() - killedAt;
    await eventually(async () => (await standby.metric('flashsale_operator_leader')) === 1, { what: 'new leader metric' });
    // The new leader reconciles: an edit is picked up.
    await apply(namespace, saleYaml('le', baseSpec({ workers: { api: { replicas: 2 } } })));
    await eventually(async () => (await deployments(namespace)).find((d) => d.metadata.name === 'le-api')?.spec.replicas === 2, { what: 'new leader applies the edit' });
    console.log(`# leader takeover after SIGKILL: ${tookMs} ms (lease 4s, retry 1s)`);
    const lease = await client.request<{ spec: { leaseTransitions?: number } }>('GET', paths.lease(namespace, leaseName));
    assert.ok((lease.spec.leaseTransitions ?? 0) >= 1, 'a takeover counts a transition');

    // SIGTERM: the leader releases the Lease, so a fresh candidate need not wait for expiry.
    const c = await operator(namespace, { identity: 'op-c', leaseName, env: short });
    await eventually(async () => (await c.metric('flashsale_operator_leader')) === 0, { what: 'op-c standing by' });
    const termAt = Date.now();
    assert.equal(await standby.stop('SIGTERM'), 0, 'clean exit on SIGTERM');
    const released = await holder();
    assert.ok(!released?.holderIdentity || released.holderIdentity === 'op-c', `released on SIGTERM (holder ${released?.holderIdentity})`);
    await eventually(async () => (await holder())?.holderIdentity === 'op-c', { timeoutMs: 10_000, intervalMs: 100, what: 'op-c takes the released lease' });
    console.log(`# takeover after SIGTERM (released lease): ${Date.now() - termAt} ms`);
  });

  it('lag-based scaling: an orders backlog raises the order writer within bounds; scheduled delay messages do not scale closers', async () => {
    const namespace = await ns({ pods: false });
    const op = await operator(namespace);
    await apply(namespace, saleYaml('lag', baseSpec({
      kafka: { partitions: 4, replicationFactor: 1 },
      workers: { orderWriter: { minReplicas: 1, maxReplicas: 3, lagThreshold: 10 }, timeoutCloser: { minReplicas: 1, maxReplicas: 4, lagThreshold: 10 } },
    })));
    await waitProvisioned(namespace, 'lag');
    const n = saleNames({ namespace, name: 'lag' });
    const producer = await kafka.producer();
    // 25 orders → ceil(25/10) = 3 = maxReplicas; 200 timeouts created now on the 30m bucket: scheduled, not due.
    await producer.send([
      { topic: n.topics.orders, messages: Array.from({ length: 25 }, (_, i) => ({ key: `k${i}`, value: '{}' })) },
      { topic: n.topics.delay('30m'), messages: Array.from({ length: 200 }, (_, i) => ({ key: `d${i}`, value: '{}' })) },
    ]);
    await eventually(async () => (await deployments(namespace)).find((d) => d.metadata.name === n.workloads.orderWriter)?.spec.replicas === 3, { timeoutMs: 30_000, what: 'order writer scaled to 3' });
    await eventually(async () => (await op.metricSum('kafka_consumergroup_group_sum_lag', { group: n.groups.timeoutCloser('30m') })) === 200, { what: 'lag 200 of the 30m closer on /metrics' });
    assert.equal(await op.metricSum('flashsale_timeouts_overdue', { flashsale: n.key, bucket: '30m' }), 0);
    assert.equal(await op.metricSum('flashsale_timeouts_scheduled', { flashsale: n.key, bucket: '30m' }), 200);
    assert.equal((await deployments(namespace)).find((d) => d.metadata.name === n.workloads.timeoutCloser('30m'))?.spec.replicas, 1, 'scheduled timeouts are not backlog');
    // More backlog never goes past maxReplicas.
    await producer.send([{ topic: n.topics.orders, messages: Array.from({ length: 100 }, (_, i) => ({ key: `m${i}`, value: '{}' })) }]);
    await eventually(async () => (await op.metricSum('kafka_consumergroup_group_sum_lag', { group: n.groups.orderWriter })) === 125, { what: 'lag 125 observed' });
    // The operator acts on its own snapshot; let it reconcile with that lag (SCALE_INTERVAL=1s) before checking the bound.
    const seen = (await op.metricSum('flashsale_operator_reconciles_total', { result: 'requeue' })) ?? 0;
    await eventually(async () => ((await op.metricSum('flashsale_operator_reconciles_total', { result: 'requeue' })) ?? 0) >= seen + 2, { what: '2 more reconciles' });
    assert.equal((await deployments(namespace)).find((d) => d.metadata.name === n.workloads.orderWriter)?.spec.replicas, 3);
    // Timeouts created 10 minutes ago on the 5m bucket ARE due: overdue backlog scales its closer.
    const tenMinutesAgo = Date.now() - 10 * 60_000;
    await producer.send([{ topic: n.topics.delay('5m'), messages: Array.from({ length: 25 }, (_, i) => ({ key: `o${i}`, value: '{}', timestamp: tenMinutesAgo })) }]);
    await eventually(async () => (await deployments(namespace)).find((d) => d.metadata.name === n.workloads.timeoutCloser('5m'))?.spec.replicas === 3, { timeoutMs: 30_000, what: '5m closer scaled to 3 on overdue lag' });
    assert.equal((await deployments(namespace)).find((d) => d.metadata.name === n.workloads.timeoutCloser('30m'))?.spec.replicas, 1);
    await producer.disconnect();
  });

  it('lag-based scaling down waits for the stabilization window once the backlog is consumed', async () => {
    const namespace = await ns({ pods: false });
    const op = await operator(namespace, { env: { SCALE_DOWN_STABILIZATION: '6s' } });
    await apply(namespace, saleYaml('down', baseSpec({ kafka: { partitions: 3, replicationFactor: 1 }, workers: { orderWriter: { minReplicas: 1, maxReplicas: 3, lagThreshold: 5 } } })));
    await waitProvisioned(namespace, 'down');
    const n = saleNames({ namespace, name: 'down' });
    const replicas = async () => (await deployments(namespace)).find((d) => d.metadata.name === n.workloads.orderWriter)?.spec.replicas;
    const producer = await kafka.producer();
    await producer.send([{ topic: n.topics.orders, messages: Array.from({ length: 30 }, (_, i) => ({ key: `k${i}`, value: '{}' })) }]);
    await producer.disconnect();
    await eventually(async () => (await replicas()) === 3, { timeoutMs: 30_000, what: 'scaled up to 3' });
    // Consume the backlog as the order writer's group would.
    const consumer = kafka.consumer({ groupId: n.groups.orderWriter, topics: [n.topics.orders], fromBeginning: true });
    await consumer.start(async (batch, ctx) => {
      const last = batch.messages.at(-1);
      if (last) await ctx.commit(String(Number(last.offset) + 1));
    });
    try {
      await eventually(async () => (await op.metricSum('kafka_consumergroup_group_sum_lag', { group: n.groups.orderWriter })) === 0, { what: 'backlog consumed', timeoutMs: 40_000 });
      assert.equal(await replicas(), 3, 'no scale-down inside the window');
      await eventually(async () => (await replicas()) === 1, { timeoutMs: 30_000, what: 'scaled down to minReplicas after the window' });
    } finally {
      await consumer.stop();
    }
  });

  it('the informers survive dropped watches and an apiserver that refuses connections: a sale created afterwards is provisioned', async () => {
    const namespace = await ns({ pods: false });
    // The operator reaches the apiserver through a TCP proxy the test can cut (TLS passes through).
    const proxy = await startProxy({ target: new URL(cluster.server).host });
    proxies.push(proxy);
    const kubeconfigYaml = cluster.kubeconfigYaml.replace(cluster.server, `https://${proxy.address}`);
    assert.notEqual(kubeconfigYaml, cluster.kubeconfigYaml);
    // A lease long enough that the outage below does not cost the leadership (that is leader.ts's test).
    const op = await operator(namespace, { kubeconfigYaml, env: { LEASE_DURATION: '60s', LEASE_RENEW_DEADLINE: '40s', LEASE_RETRY_PERIOD: '2s' } });
    await apply(namespace, saleYaml('w1', baseSpec()));
    await waitFor(namespace, 'w1', (s) => s.status?.phase !== undefined, 'first sale seen');
    assert.ok(proxy.stats().active > 0, 'watches open through the proxy');
    // Cut every connection and refuse new ones: the informers stop on the error and their restarts
    // fail, until the apiserver is back.
    const restarts = () => (op.logs().match(/watch failed; restarting the informer/g) ?? []).length;
    proxy.refuse(true);
    proxy.cut();
    await eventually(() => restarts() >= 6 && proxy.stats().refused >= 3, { timeoutMs: 30_000, what: 'informers failing to restart while the apiserver refuses' });
    proxy.refuse(false);
    await apply(namespace, saleYaml('w2', baseSpec()));
    // Only the watch can tell the operator about a new sale (full resync is minutes away).
    await waitFor(namespace, 'w2', (s) => (s.metadata.finalizers ?? []).includes('flashsale.dev/cleanup') && s.status?.phase !== undefined, 'second sale reconciled', 60_000);
    proxy.cut();
    await apply(namespace, saleYaml('w3', baseSpec()));
    await waitFor(namespace, 'w3', (s) => s.status?.phase !== undefined, 'third sale reconciled', 60_000);
  });
});
