// The node agent against the real control plane (testCluster): a Node of its own (started here
// with --no-bind, so it runs only the pods these tests put on it), pods running the real
// `flashsale` program. What the process sees is checked at the source: /proc/<pid> (uid, env,
// its private mount of the ServiceAccount token) and the apiserver's answers to the operator.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { V1Container, V1Pod, V1PodSpec } from '@kubernetes/client-node';
import { createKubeClient, type KubeClient } from '../controller/operator/kube.ts';
import { createNamespace, deleteNamespace, testCluster, type TestCluster } from './support/cluster.ts';
import { eventually, uniqueName } from './support/infra.ts';
import { DEFAULT_POD_CIDR, inCidr } from './node-agent/ips.ts';
import { condition, container, getPod, pidOf, podEvents, removeStateDir, serviceAccountDir, startAgent, tokenClaims, waitPod, type AgentProcess } from './node-agent/harness.ts';

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
const IMAGE = 'registry.example.com/team/flashsale-operator:0.1.0';
let cluster: TestCluster;
let client: KubeClient;
let agent: AgentProcess;
const ns = uniqueName('na');
const nodeName = uniqueName('node');

/** Running (a zombie waiting for an absent reaper counts as dead). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

async function create(path: string, body: unknown): Promise<void> {
  await client.request('POST', path, body);
}

async function createPod(name: string, c: Partial<V1Container>, spec: Partial<V1PodSpec> = {}): Promise<void> {
  await create(`/api/v1/namespaces/${ns}/pods`, {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name },
    spec: { nodeName, terminationGracePeriodSeconds: 5, containers: [{ name: 'main', image: IMAGE, ...c }], ...spec },
  });
}

/** The operator as a pod: identity from fieldRef, settings from a ConfigMap and a Secret, probes on its own address. */
function operatorContainer(extra: Partial<V1Container> = {}): Partial<V1Container> {
  return {
    name: 'operator',
    args: ['operator', '--namespace', ns],
    env: [
      { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
      { name: 'HTTP_HOST', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
      { name: 'HTTP_PORT', value: '9090' },
      { name: 'LEASE_NAME', valueFrom: { configMapKeyRef: { name: 'op-config', key: 'lease' } } },
      { name: 'LOG_LEVEL', valueFrom: { secretKeyRef: { name: 'op-secret', key: 'level' } } },
      { name: 'LEASE_DURATION', value: '4s' },
      { name: 'LEASE_RENEW_DEADLINE', value: '3s' },
      { name: 'LEASE_RETRY_PERIOD', value: '1s' },
    ],
    ports: [{ name: 'http', containerPort: 9090 }],
    readinessProbe: { httpGet: { path: '/readyz', port: 'http' as never }, periodSeconds: 1 },
    securityContext: { runAsUser: 10001, runAsGroup: 10001 },
    ...extra,
  };
}

const running = (p: V1Pod) => Boolean(container(p)?.state?.running);
const ready = (p: V1Pod) => condition(p, 'Ready') === 'True';

before(async () => {
  cluster = await testCluster();
  client = createKubeClient(cluster.kc);
  await createNamespace(cluster.kc, ns);
  await create(`/api/v1/namespaces/${ns}/serviceaccounts`, { metadata: { name: 'op' } });
  await create(`/api/v1/namespaces/${ns}/configmaps`, { metadata: { name: 'op-config' }, data: { lease: 'lease-from-configmap' } });
  agent = await startAgent({ kubeconfigPath: cluster.kubeconfigPath, nodeName, bind: false });
});

after(async () => {
  if (cluster) {
    // While our agent still runs: it stops the namespace's pods, so the namespace can go.
    await deleteNamespace(cluster.kc, ns);
    await eventually(async () => (await client.request('GET', `/api/v1/namespaces/${ns}`).then(() => false, (err: { status?: number }) => err.status === 404)), { timeoutMs: 90_000, what: `namespace ${ns} deleted` }).catch((err: unknown) => console.error(String(err)));
  }
  await agent?.stop();
  if (cluster) await client.request('DELETE', `/api/v1/nodes/${nodeName}`).catch(() => undefined);
  if (agent) removeStateDir(agent);
});

describe('node agent on the real apiserver', () => {
  it('registers a Ready Node with its address and renews its Lease', async () => {
    const node = await client.request<{ status: { conditions: { type: string; status: string }[]; addresses: { type: string; address: string }[] } }>('GET', `/api/v1/nodes/${nodeName}`);
    assert.equal(node.status.conditions.find((c) => c.type === 'Ready')?.status, 'True');
    assert.deepEqual(node.status.addresses.find((a) => a.type === 'InternalIP')?.address, '127.0.0.1');
    const lease = await client.request<{ spec: { holderIdentity: string; renewTime: string } }>('GET', `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${nodeName}`);
    assert.equal(lease.spec.holderIdentity, nodeName);
  });

  it('a pod of another image stays Pending with ErrImagePull and an Event saying why', async () => {
    await createPod('nginx', { image: 'nginx:1.27' });
    const p = await waitPod(client, ns, 'nginx', (x) => container(x)?.state?.waiting?.reason === 'ErrImagePull', 'ErrImagePull');
    assert.equal(p.status?.phase, 'Pending');
    assert.match(container(p)?.state?.waiting?.message ?? '', /not supported by the flashsale node agent/);
    const events = await eventually(async () => (await podEvents(client, ns, 'nginx')).find((e) => e.startsWith('Failed: Failed to pull image "nginx:1.27"')), { what: 'Failed event' });
    assert.match(events, /repository flashsale-operator/);
  });

  it('restartPolicy Never: `flashsale --help` Succeeded, an unknown command Failed with its exit code; output in the log file', async () => {
    await createPod('help', { args: ['--help'] }, { restartPolicy: 'Never' });
    await createPod('bogus', { command: ['flashsale'], args: ['bogus'] }, { restartPolicy: 'Never' });
    const ok = await waitPod(client, ns, 'help', (x) => x.status?.phase === 'Succeeded', 'Succeeded');
    assert.equal(container(ok)?.state?.terminated?.exitCode, 0);
    assert.equal(container(ok)?.state?.terminated?.reason, 'Completed');
    const bad = await waitPod(client, ns, 'bogus', (x) => x.status?.phase === 'Failed', 'Failed');
    assert.equal(container(bad)?.state?.terminated?.exitCode, 2);
    assert.equal(container(bad)?.state?.terminated?.reason, 'Error');
    const dir = ok.metadata?.annotations?.['nodeagent.flashsale.dev/logs'] ?? '';
    assert.equal(dir, join(agent.stateDir, 'logs', `${ns}_help_${ok.metadata?.uid}`));
    assert.match(readFileSync(join(dir, 'main', '0.log'), 'utf8'), /Usage: flashsale <command>/);
  });

  it('restartPolicy Always: a process that exits is restarted with back-off (CrashLoopBackOff)', async () => {
    await createPod('loop', { args: ['--help'] });
    // Back-off grows (1 s, 2 s, 4 s, …), so the waiting state is seen even on a slow machine.
    const waiting = await waitPod(client, ns, 'loop', (x) => container(x)?.state?.waiting?.reason === 'CrashLoopBackOff', 'CrashLoopBackOff');
    assert.match(container(waiting)?.state?.waiting?.message ?? '', /^back-off \d+s restarting failed container=main pod=loop_/);
    const p = await waitPod(client, ns, 'loop', (x) => (container(x)?.restartCount ?? 0) >= 2, 'two restarts');
    assert.equal(p.status?.phase, 'Running');
    assert.equal(container(p)?.lastState?.terminated?.reason, 'Completed');
    assert.ok((await podEvents(client, ns, 'loop')).some((e) => e.startsWith('BackOff: Back-off restarting failed container')));
    await client.request('DELETE', `/api/v1/namespaces/${ns}/pods/loop`);
  });

  it('the operator pod: env from Secret/ConfigMap/fieldRef, CreateContainerConfigError until the Secret exists, its own uid, token and ServiceAccount identity', async () => {
    await createPod('op-1', operatorContainer(), { serviceAccountName: 'op' });
    const waiting = await waitPod(client, ns, 'op-1', (x) => container(x)?.state?.waiting?.reason === 'CreateContainerConfigError', 'CreateContainerConfigError');
    assert.equal(container(waiting)?.state?.waiting?.message, 'secret "op-secret" not found');
    assert.equal(waiting.status?.phase, 'Pending');
    assert.ok(inCidr(waiting.status?.podIP ?? '', DEFAULT_POD_CIDR), `pod address ${waiting.status?.podIP}`);

    await create(`/api/v1/namespaces/${ns}/secrets`, { metadata: { name: 'op-secret' }, stringData: { level: 'debug' } });
    const up = await waitPod(client, ns, 'op-1', (x) => running(x) && ready(x), 'running and Ready (readiness probe)');
    const ip = up.status?.podIP ?? '';
    const pid = pidOf(up);
    assert.equal(condition(up, 'ContainersReady'), 'True');
    assert.equal(container(up)?.ready, true);
    assert.equal((await fetch(`http://${ip}:9090/healthz`)).status, 200, 'the operator listens on its pod address');

    // What the process really got.
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    assert.match(status, /^Uid:\s+10001\s+10001/m);
    assert.match(status, /^Gid:\s+10001\s+10001/m);
    const env = Object.fromEntries(readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
    assert.equal(env.KUBECONFIG, undefined, 'no admin kubeconfig in a pod');
    assert.equal(env.HTTP_HOST, ip);
    assert.equal(env.POD_NAME, 'op-1');
    assert.equal(env.LOG_LEVEL, 'debug');
    assert.equal(env.LEASE_NAME, 'lease-from-configmap');
    assert.equal(`https://${env.KUBERNETES_SERVICE_HOST}:${env.KUBERNETES_SERVICE_PORT}`, cluster.server);
    assert.notEqual(env.HOME, process.env.HOME);
    // The token is visible only inside the pod's mount namespace, bound to this pod.
    assert.equal(existsSync(`${SA_DIR}/token`), false, 'not on the host');
    const saDir = serviceAccountDir(pid);
    assert.equal(readFileSync(`${saDir}/namespace`, 'utf8'), ns);
    assert.match(readFileSync(`${saDir}/ca.crt`, 'utf8'), /BEGIN CERTIFICATE/);
    const claims = tokenClaims(pid);
    assert.equal(claims.sub, `system:serviceaccount:${ns}:op`);
    assert.equal(claims['kubernetes.io']?.pod?.uid, up.metadata?.uid);

    // Without RBAC the apiserver refuses the operator *as its ServiceAccount*…
    const logFile = join(up.metadata?.annotations?.['nodeagent.flashsale.dev/logs'] ?? '', 'operator', '0.log');
    await eventually(() => readFileSync(logFile, 'utf8').includes(`system:serviceaccount:${ns}:op`), { timeoutMs: 30_000, what: 'a 403 naming the ServiceAccount in the operator log' });
    // …and once a Role allows Leases, it takes the Lease named by the ConfigMap, as the pod named by fieldRef.
    await create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/roles`, { metadata: { name: 'op-leases' }, rules: [{ apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'create', 'update', 'patch'] }] });
    await create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`, { metadata: { name: 'op-leases' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'op-leases' }, subjects: [{ kind: 'ServiceAccount', name: 'op', namespace: ns }] });
    await eventually(
      async () => (await client.request<{ spec: { holderIdentity?: string } }>('GET', `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases/lease-from-configmap`).catch(() => undefined))?.spec.holderIdentity === 'op-1',
      { timeoutMs: 30_000, what: 'the operator pod holds the Lease' },
    );
  });

  it('kill -9 of the process: the agent restarts the container (restartCount 1, lastState 137), same pod address', async () => {
    const before = await waitPod(client, ns, 'op-1', (x) => running(x) && ready(x), 'Ready');
    const pid = pidOf(before);
    process.kill(pid, 'SIGKILL');
    const after = await waitPod(client, ns, 'op-1', (x) => (container(x)?.restartCount ?? 0) === 1 && running(x) && ready(x), 'restarted and Ready');
    assert.notEqual(pidOf(after), pid);
    assert.equal(container(after)?.lastState?.terminated?.exitCode, 137);
    assert.equal(container(after)?.lastState?.terminated?.reason, 'Error');
    assert.equal(after.status?.podIP, before.status?.podIP);
    assert.ok(existsSync(join(after.metadata?.annotations?.['nodeagent.flashsale.dev/logs'] ?? '', 'operator', '1.log')), 'one log file per restart');
  });

  it('a failing liveness probe kills and restarts the container', async () => {
    await createPod('live', operatorContainer({ livenessProbe: { httpGet: { path: '/no-such-path', port: 9090 as never }, initialDelaySeconds: 1, periodSeconds: 1, failureThreshold: 2 } }), { serviceAccountName: 'op' });
    const p = await waitPod(client, ns, 'live', (x) => (container(x)?.restartCount ?? 0) >= 1 && Boolean(container(x)?.lastState?.terminated), 'restarted by liveness', 60_000);
    assert.equal(container(p)?.lastState?.terminated?.message, 'liveness probe failed');
    // SIGTERM: the operator exits 0 once its handler is installed, 143 before that; 137 if it outlived the 5 s grace period.
    assert.ok([0, 143, 137].includes(container(p)?.lastState?.terminated?.exitCode ?? -1), JSON.stringify(container(p)?.lastState));
    const events = await podEvents(client, ns, 'live');
    // Refused while it starts, 404 once it listens: either way the probe fails.
    assert.ok(events.some((e) => /^Unhealthy: Liveness probe failed: (HTTP probe failed with statuscode: 404|Get "http:\/\/\d+\.\d+\.\d+\.\d+:9090\/no-such-path": )/.test(e)), events.join('\n'));
    assert.ok(events.some((e) => e.startsWith('Killing: Container operator failed liveness probe')));
    await client.request('DELETE', `/api/v1/namespaces/${ns}/pods/live`);
  });

  it('two replicas of a Deployment: own addresses, same port, both Ready through their probes', async () => {
    const labels = { app: 'op-deploy' };
    await create(`/apis/apps/v1/namespaces/${ns}/deployments`, {
      metadata: { name: 'op-deploy' },
      spec: { replicas: 2, selector: { matchLabels: labels }, template: { metadata: { labels }, spec: { nodeName, serviceAccountName: 'op', terminationGracePeriodSeconds: 5, containers: [{ ...operatorContainer(), image: 'flashsale-operator:test' }] } } },
    });
    const pods = await eventually(
      async () => {
        const list = await client.request<{ items: V1Pod[] }>('GET', `/api/v1/namespaces/${ns}/pods?labelSelector=app%3Dop-deploy`);
        return list.items.length === 2 && list.items.every((p) => ready(p)) ? list.items : undefined;
      },
      { timeoutMs: 60_000, what: 'two Ready replicas' },
    );
    const ips = pods.map((p) => p.status?.podIP ?? '');
    assert.equal(new Set(ips).size, 2);
    for (const ip of ips) assert.equal((await fetch(`http://${ip}:9090/healthz`)).status, 200);
    const d = await eventually(async () => {
      const x = await client.request<{ status?: { readyReplicas?: number } }>('GET', `/apis/apps/v1/namespaces/${ns}/deployments/op-deploy`);
      return x.status?.readyReplicas === 2 ? x : undefined;
    }, { what: 'Deployment readyReplicas 2 (from kube-controller-manager)' });
    assert.equal(d.status?.readyReplicas, 2);
    await client.request('DELETE', `/apis/apps/v1/namespaces/${ns}/deployments/op-deploy`);
  });

  it('agent restart: the Node goes NotReady, processes stop; a new agent restarts the pod (restartCount +1, same address)', async () => {
    const before = await waitPod(client, ns, 'op-1', (x) => running(x) && ready(x), 'Ready');
    const pid = pidOf(before);
    const restarts = container(before)?.restartCount ?? 0;
    assert.equal(await agent.stop(), 0);
    assert.equal(alive(pid), false, 'the pod process stopped with the agent');
    const node = await client.request<{ status: { conditions: { type: string; status: string }[] } }>('GET', `/api/v1/nodes/${nodeName}`);
    assert.equal(node.status.conditions.find((c) => c.type === 'Ready')?.status, 'False');

    agent = await startAgent({ kubeconfigPath: cluster.kubeconfigPath, nodeName, stateDir: agent.stateDir, bind: false });
    const after = await waitPod(client, ns, 'op-1', (x) => (container(x)?.restartCount ?? 0) === restarts + 1 && running(x) && ready(x), 'restarted by the new agent');
    assert.equal(after.status?.podIP, before.status?.podIP);
    assert.equal(container(after)?.lastState?.terminated?.reason, 'Unknown');
  });

  it('agent crash (SIGKILL): the next agent kills the process group left behind and restarts the pod', async () => {
    const before = await waitPod(client, ns, 'op-1', (x) => running(x) && ready(x), 'Ready');
    const pid = pidOf(before);
    const restarts = container(before)?.restartCount ?? 0;
    await agent.stop('SIGKILL');
    assert.equal(alive(pid), true, 'a crashed agent leaves its pod processes running');
    agent = await startAgent({ kubeconfigPath: cluster.kubeconfigPath, nodeName, stateDir: agent.stateDir, bind: false });
    assert.equal(alive(pid), false, 'killed by the new agent before it runs pods');
    const after = await waitPod(client, ns, 'op-1', (x) => (container(x)?.restartCount ?? 0) === restarts + 1 && running(x) && ready(x), 'restarted by the new agent');
    assert.notEqual(pidOf(after), pid);
    assert.equal(after.status?.podIP, before.status?.podIP, 'same address: the dead agent\'s lease is reclaimed');
  });

  it('deleting a pod stops its process (SIGTERM) and the pod disappears', async () => {
    const p = await waitPod(client, ns, 'op-1', (x) => running(x), 'running');
    const pid = pidOf(p);
    await client.request('DELETE', `/api/v1/namespaces/${ns}/pods/op-1`);
    await eventually(async () => (await getPod(client, ns, 'op-1')) === undefined, { timeoutMs: 30_000, what: 'pod gone' });
    assert.equal(alive(pid), false);
  });

  it('a pending pod without nodeName is bound by an agent (the one cluster:up started) and runs; namespaces labelled ignore are left alone', async () => {
    const pod = (name: string) => ({ metadata: { name }, spec: { restartPolicy: 'Never', containers: [{ name: 'main', image: IMAGE, args: ['--help'] }] } });
    const ignoredNs = `${ns}-ignored`;
    await createNamespace(cluster.kc, ignoredNs);
    try {
      await client.request('PATCH', `/api/v1/namespaces/${ignoredNs}`, { metadata: { labels: { 'nodeagent.flashsale.dev/ignore': 'true' } } }, 'application/merge-patch+json');
      await create(`/api/v1/namespaces/${ignoredNs}/pods`, pod('ignored'));
      await create(`/api/v1/namespaces/${ns}/pods`, pod('unbound'));
      const p = await waitPod(client, ns, 'unbound', (x) => x.status?.phase === 'Succeeded', 'bound and Succeeded');
      assert.ok(p.spec?.nodeName);
      assert.equal(condition(p, 'PodScheduled'), 'True');
      // Created first, still unbound after the later pod ran to completion.
      const ignored = await getPod(client, ignoredNs, 'ignored');
      assert.equal(ignored?.spec?.nodeName, undefined);
      assert.equal(ignored?.status?.phase, 'Pending');
    } finally {
      await deleteNamespace(cluster.kc, ignoredNs);
    }
  });
});
