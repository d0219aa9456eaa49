// Issue 11 "Done when": a FlashSale on the real control plane with pods that really run. The
// operator is installed from the chart (its ServiceAccount, RBAC and Deployment, rendered by the
// built helm) and runs as a pod of the node agent that `cluster:up` started, authenticating as its
// ServiceAccount. It creates the sale's Deployments; kube-controller-manager makes ReplicaSets and
// Pods; the node agent runs them as the real `flashsale` subcommands on their own pod addresses,
// Ready through their probes. Real Kafka, Redis and MariaDB; waits are polls with deadlines.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { V1Pod } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { createKubeClient, type KubeClient } from '../controller/operator/kube.ts';
import { createNamespace, deleteNamespace, testCluster, type TestCluster } from './support/cluster.ts';
import { deleteRedisKeys, deleteTopics, dropDatabase, eventually, testConfig, testKafka, testRedis, uniqueName } from './support/infra.ts';
import { DEFAULT_POD_CIDR, inCidr } from './node-agent/ips.ts';
import { condition, container, pidOf, tokenClaims, waitPod } from './node-agent/harness.ts';

const run = promisify(execFile);
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const config = testConfig();
const kafka = testKafka();
const redis = testRedis();
const ns = uniqueName('pods');
const sale = 'fs1';
let cluster: TestCluster;
let client: KubeClient;

type Obj = { metadata: { name: string; uid: string; ownerReferences?: { kind: string; name: string; uid: string; controller?: boolean }[]; labels?: Record<string, string> } };
type Deployment = Obj & { spec: { replicas: number; template: { spec: { containers: { args: string[] }[] } } }; status?: { readyReplicas?: number } };
type Sale = Obj & { status?: { phase?: string; conditions?: { type: string; status: string; reason?: string }[] } };

async function list<T>(path: string): Promise<T[]> {
  return (await client.request<{ items: T[] }>('GET', path)).items;
}
const pods = (selector = '') => list<V1Pod>(`/api/v1/namespaces/${ns}/pods${selector ? `?labelSelector=${encodeURIComponent(selector)}` : ''}`);
const deployments = () => list<Deployment>(`/apis/apps/v1/namespaces/${ns}/deployments`);
const replicaSets = () => list<Obj & { spec: { replicas: number } }>(`/apis/apps/v1/namespaces/${ns}/replicasets`);
const getSale = () => client.request<Sale>('GET', `/apis/flashsale.dev/v1alpha1/namespaces/${ns}/flashsales/${sale}`);
const ready = (p: V1Pod) => condition(p, 'Ready') === 'True' && !p.metadata?.deletionTimestamp;
const saleSelector = `flashsale.dev/sale=${sale}`;

async function kubectl(args: string[], stdin?: string): Promise<string> {
  const child = run(cluster.kubectl, [`--kubeconfig=${cluster.kubeconfigPath}`, ...args], { timeout: 60_000 });
  if (stdin !== undefined) {
    child.child.stdin?.end(stdin);
  }
  return (await child).stdout;
}

/** The chart's ServiceAccount, RBAC (namespaced: watchNamespaces = [ns]) and operator Deployment, rendered by the built helm. */
async function chartManifests(): Promise<string> {
  const values = {
    image: { repository: 'registry.example.com/shop/flashsale-operator', tag: 'test' },
    operator: {
      watchNamespaces: [ns],
      extraEnv: [
        { name: 'SCALE_INTERVAL', value: '2s' },
        { name: 'LAG_INTERVAL', value: '2s' },
        { name: 'STEP_TIMEOUT', value: '10s' },
      ],
    },
    kafka: { brokers: config.kafkaBrokers },
    redis: { existingSecret: { name: 'flashsale-redis', key: 'redis-url' } },
    mysql: { existingSecret: { name: 'flashsale-mysql', key: 'mysql-url' } },
  };
  const dir = mkdtempSync(join(tmpdir(), 'pods-values-'));
  try {
    writeFileSync(join(dir, 'values.yaml'), stringify(values));
    const only = ['serviceaccount', 'rbac', 'lease', 'deployment'].flatMap((t) => ['--show-only', `templates/${t}.yaml`]);
    const r = await run(cluster.helm, ['template', 'flashsale', join(repo, 'charts/flashsale-operator'), '--namespace', ns, '-f', join(dir, 'values.yaml'), ...only], { timeout: 60_000, env: { ...process.env, HOME: dir } });
    return r.stdout;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

before(async () => {
  cluster = await testCluster();
  client = createKubeClient(cluster.kc);
  await kubectl(['apply', '-f', join(repo, 'crds/flashsale.yaml')]);
  await createNamespace(cluster.kc, ns);
  const m = config.mysql;
  const mysqlUrl = `mysql://${m.user}${m.password ? `:${m.password}` : ''}@${m.host}:${m.port}/${m.database}`;
  await client.request('POST', `/api/v1/namespaces/${ns}/secrets`, { metadata: { name: 'flashsale-redis' }, stringData: { 'redis-url': config.redisUrl } });
  await client.request('POST', `/api/v1/namespaces/${ns}/secrets`, { metadata: { name: 'flashsale-mysql' }, stringData: { 'mysql-url': mysqlUrl } });
  await kubectl(['apply', '-n', ns, '-f', '-'], await chartManifests());
});

after(async () => {
  if (cluster) {
    // Waiting for the namespace to go also waits for the node agent to stop every pod process.
    await deleteNamespace(cluster.kc, ns).catch(() => undefined);
    await eventually(async () => (await client.request('GET', `/api/v1/namespaces/${ns}`).then(() => false, (err: { status?: number }) => err.status === 404)), { timeoutMs: 90_000, what: `namespace ${ns} deleted` }).catch((err: unknown) => console.error(String(err)));
  }
  await deleteTopics(kafka, `flashsale.${ns}.`).catch(() => undefined);
  await deleteRedisKeys(redis, [`fs:{${ns}/*`, `fs:${ns}/*`]).catch(() => undefined);
  await dropDatabase(config).catch(() => undefined);
  await kafka.close();
  redis.disconnect();
});

describe('a FlashSale with pods that really run (issue 11)', () => {
  it('the operator runs as a pod of the chart, Ready through its probes, as its ServiceAccount', async () => {
    const op = await eventually(async () => (await pods('app.kubernetes.io/name=flashsale-operator')).find(ready), { timeoutMs: 90_000, what: 'a Ready operator pod' });
    assert.ok(op.spec?.nodeName, 'bound to a node by the agent');
    assert.ok(inCidr(op.status?.podIP ?? '', DEFAULT_POD_CIDR), `pod address ${op.status?.podIP}`);
    const env = readFileSync(`/proc/${pidOf(op)}/environ`, 'utf8').split('\0');
    assert.ok(!env.some((kv) => kv.startsWith('KUBECONFIG=')), 'in-cluster config, not the admin kubeconfig');
    assert.equal(tokenClaims(pidOf(op)).sub, `system:serviceaccount:${ns}:${op.spec?.serviceAccountName}`);
  });

  it('a FlashSale → Deployments → ReplicaSets → Pods running the flashsale subcommands on their own addresses, Ready, the sale Ready', async () => {
    const yaml = stringify({
      apiVersion: 'flashsale.dev/v1alpha1',
      kind: 'FlashSale',
      metadata: { name: sale, namespace: ns },
      spec: { skus: [{ id: 'mug', stock: 50, timeoutBucket: '5m' }], timeoutBuckets: [{ name: '5m', delay: '5m' }], kafka: { partitions: 1, replicationFactor: 1 }, workers: { api: { replicas: 2 } } },
    });
    await kubectl(['apply', '-f', '-'], yaml);
    const s = await eventually(async () => {
      const x = await getSale();
      return x.status?.phase === 'Ready' ? x : undefined;
    }, { timeoutMs: 180_000, what: 'sale Ready' }).catch(async (err: unknown) => {
      throw new Error(`${String(err)}; sale status ${JSON.stringify((await getSale()).status)}; pods ${JSON.stringify((await pods()).map((p) => [p.metadata?.name, p.status?.phase, container(p)?.state, container(p)?.restartCount]))}`);
    });
    assert.equal(s.status?.conditions?.find((c) => c.type === 'WorkloadsReady')?.status, 'True');

    const ds = (await deployments()).filter((d) => d.metadata.labels?.['flashsale.dev/sale'] === sale);
    assert.deepEqual(ds.map((d) => d.metadata.name).sort(), [`${sale}-api`, `${sale}-compensator`, `${sale}-order-writer`, `${sale}-timeout-closer-5m`]);
    const rss = await replicaSets();
    const all = await pods(saleSelector);
    for (const d of ds) {
      assert.equal(d.metadata.ownerReferences?.[0]?.kind, 'FlashSale');
      const rs = rss.find((r) => r.metadata.ownerReferences?.some((o) => o.uid === d.metadata.uid && o.controller));
      assert.ok(rs, `a ReplicaSet of ${d.metadata.name}`);
      const mine = all.filter((p) => p.metadata?.ownerReferences?.some((o) => o.uid === rs.metadata.uid && o.controller) && !p.metadata.deletionTimestamp);
      assert.equal(mine.length, d.spec.replicas, `${d.metadata.name}: pods of its ReplicaSet`);
      for (const p of mine) {
        assert.ok(ready(p), `${p.metadata?.name} Ready`);
        assert.deepEqual(p.spec?.containers[0]?.args, d.spec.template.spec.containers[0]?.args);
        // The real subcommand, as uid 10001, on the pod's own address.
        const pid = pidOf(p);
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        assert.deepEqual(cmdline.slice(cmdline.findIndex((a) => a.endsWith('bin/flashsale.js')) + 1).filter(Boolean), p.spec?.containers[0]?.args);
        assert.match(readFileSync(`/proc/${pid}/status`, 'utf8'), /^Uid:\s+10001\s/m);
        assert.equal((await fetch(`http://${p.status?.podIP}:8080/healthz`)).status, 200);
      }
    }
    const ips = all.filter(ready).map((p) => p.status?.podIP);
    assert.equal(new Set(ips).size, ips.length, 'every pod its own address');
  });

  it('the api Service’s EndpointSlice lists the api pods’ addresses, and an order POSTed to one is accepted', async () => {
    const apiPods = (await pods(`${saleSelector},flashsale.dev/role=api`)).filter(ready);
    const want = apiPods.map((p) => p.status?.podIP).sort();
    type Slice = { endpoints?: { addresses: string[]; conditions?: { ready?: boolean } }[]; ports?: { name?: string; port?: number }[] };
    const slice = await eventually(async () => {
      const slices = await list<Slice>(`/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices?labelSelector=${encodeURIComponent(`kubernetes.io/service-name=${sale}-api`)}`);
      const got = slices.flatMap((x) => (x.endpoints ?? []).filter((e) => e.conditions?.ready).flatMap((e) => e.addresses)).sort();
      return JSON.stringify(got) === JSON.stringify(want) ? slices[0] : undefined;
    }, { timeoutMs: 60_000, what: `EndpointSlice with ${want.join(', ')}` });
    const port = slice.ports?.find((p) => p.name === 'http')?.port;
    assert.equal(port, 8080);
    const res = await fetch(`http://${want[0]}:${port}/v1/sales/${sale}/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userId: 'u-1', skuId: 'mug' }) });
    assert.equal(res.status, 202, await res.clone().text());
    const { orderId } = (await res.json()) as { orderId: string };
    // Any replica answers about it once the order writer pod put it in MySQL.
    await eventually(async () => {
      const r = await fetch(`http://${want[1]}:${port}/v1/sales/${sale}/orders/${orderId}`);
      return r.status === 200 && ((await r.json()) as { status: string }).status === 'UNPAID';
    }, { timeoutMs: 60_000, what: 'order UNPAID (written by the order-writer pod)' });
  });

  it('kill -9 of a pod’s process: the agent restarts the container (restartCount 1); deleting the pod: the ReplicaSet replaces it', async () => {
    const [victim] = (await pods(`${saleSelector},flashsale.dev/role=api`)).filter(ready);
    assert.ok(victim);
    const name = victim.metadata?.name ?? '';
    process.kill(pidOf(victim), 'SIGKILL');
    const restarted = await waitPod(client, ns, name, (p) => container(p)?.restartCount === 1 && ready(p), 'restarted and Ready', 90_000);
    assert.equal(container(restarted)?.lastState?.terminated?.exitCode, 137);
    assert.equal(restarted.status?.podIP, victim.status?.podIP);

    await client.request('DELETE', `/api/v1/namespaces/${ns}/pods/${name}`);
    const replacement = await eventually(async () => {
      const now = (await pods(`${saleSelector},flashsale.dev/role=api`)).filter(ready);
      return now.length === 2 && !now.some((p) => p.metadata?.name === name) ? now : undefined;
    }, { timeoutMs: 90_000, what: 'the ReplicaSet replaced the deleted pod with a Ready one' });
    assert.equal(replacement.length, 2);
  });

  it('deleting the FlashSale garbage-collects its Deployments, ReplicaSets, Pods and Service', async () => {
    await kubectl(['delete', '-n', ns, 'flashsale', sale, '--wait=true', '--timeout=60s']);
    await eventually(
      async () => (await deployments()).length === 1 && (await replicaSets()).every((r) => !r.metadata.labels?.['flashsale.dev/sale']) && (await pods(saleSelector)).length === 0 && (await list<Obj>(`/api/v1/namespaces/${ns}/services`)).every((x) => x.metadata.name !== `${sale}-api`),
      { timeoutMs: 120_000, what: 'children garbage-collected (only the operator Deployment left)' },
    );
  });
});
