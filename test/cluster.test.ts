// The real control plane (infra/cluster.sh: etcd + kube-apiserver + kube-controller-manager built
// from k8s.io/kubernetes) does what the other tests rely on: the pinned release, the CRD accepted
// by Kubernetes' own structural-schema checks, service-account tokens, RBAC, and the controllers
// (Deployment → ReplicaSet → Pods, EndpointSlices, garbage collection).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import http from 'node:http';
import https from 'node:https';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AppsV1Api, AuthenticationV1Api, CoreV1Api, RbacAuthorizationV1Api, type V1Deployment } from '@kubernetes/client-node';
import { createNamespace, deleteNamespace, startControlPlane, testCluster, watchUntil, type TestCluster } from './support/cluster.ts';
import { uniqueName } from './support/infra.ts';

const root = fileURLToPath(new URL('../', import.meta.url));
const release = 'v1.36.3';

interface Run {
  stdout: string;
  stderr: string;
  status: number;
}

function run(cmd: string, args: string[], opts: { stdin?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  return new Promise((done) => {
    const child = execFile(cmd, args, { timeout: 60_000, maxBuffer: 16 << 20, env: { ...process.env, ...opts.env } }, (err, stdout, stderr) => {
      const status = err ? (typeof (err as { code?: unknown }).code === 'number' ? Number((err as { code?: unknown }).code) : 1) : 0;
      done({ stdout: String(stdout), stderr: String(stderr), status });
    });
    child.stdin?.end(opts.stdin ?? '');
  });
}

describe('the Kubernetes control plane', () => {
  let c: TestCluster;
  let tmp: string;
  const ns = uniqueName('cluster');
  const kubectl = (args: string[], opts: { stdin?: string; kubeconfig?: string } = {}) =>
    run(c.kubectl, [`--kubeconfig=${opts.kubeconfig ?? c.kubeconfigPath}`, `--cache-dir=${join(tmp, 'kubectl-cache')}`, ...args], { stdin: opts.stdin });

  before(async () => {
    c = await testCluster();
    tmp = mkdtempSync(join(tmpdir(), 'cluster-test-'));
    await createNamespace(c.kc, ns);
  });
  after(async () => {
    if (c) await deleteNamespace(c.kc, ns);
    rmSync(tmp, { recursive: true, force: true });
  });

  it(`runs Kubernetes ${release}, and kubectl is the same release`, async () => {
    const r = await kubectl(['version', '-o', 'json']);
    assert.equal(r.status, 0, r.stderr);
    const v = JSON.parse(r.stdout) as { clientVersion: { gitVersion: string }; serverVersion: { gitVersion: string; major: string; minor: string } };
    assert.equal(v.clientVersion.gitVersion, release);
    assert.equal(v.serverVersion.gitVersion, release);
    assert.deepEqual([v.serverVersion.major, v.serverVersion.minor], ['1', '36']);
    assert.match(c.server, /^https:\/\/127\.0\.0\.1:\d+$/, 'HTTPS on loopback only');
  });

  it('serves HTTPS only; without credentials a request is anonymous and forbidden', async () => {
    const url = new URL(c.server);
    const plain = await new Promise<{ status?: number; body: string }>((done, fail) => {
      http.get({ host: url.hostname, port: url.port, path: '/version' }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => done({ status: res.statusCode, body }));
      }).on('error', fail);
    });
    assert.equal(plain.status, 400);
    assert.match(plain.body, /HTTP request to an HTTPS server/);
    const ca = Buffer.from(c.kc.getCurrentCluster()!.caData!, 'base64');
    const anonymous = await new Promise<{ status?: number; body: string }>((done, fail) => {
      https.get({ host: url.hostname, port: url.port, path: '/api/v1/namespaces', ca }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => done({ status: res.statusCode, body }));
      }).on('error', fail);
    });
    assert.equal(anonymous.status, 403);
    assert.match(anonymous.body, /system:anonymous/);
  });

  it('accepts crds/flashsale.yaml (structural schema checked by Kubernetes) and validates FlashSales with it', async () => {
    const applied = await kubectl(['apply', '-f', join(root, 'crds/flashsale.yaml')]);
    assert.equal(applied.status, 0, `the apiserver refused the CRD: ${applied.stderr}`);
    const established = await kubectl(['wait', '--for=condition=Established', '--timeout=30s', 'crd/flashsales.flashsale.dev']);
    assert.equal(established.status, 0, established.stderr);
    const conditions = JSON.parse((await kubectl(['get', 'crd', 'flashsales.flashsale.dev', '-o', 'jsonpath={.status.conditions}'])).stdout) as { type: string; status: string; message: string }[];
    assert.deepEqual(conditions.filter((x) => x.type === 'NonStructuralSchema' && x.status === 'True'), [], 'the schema is structural');

    // The example is accepted; a wrong type is refused with a message naming the field.
    const example = await kubectl(['apply', '--dry-run=server', '-n', ns, '-f', join(root, 'examples/flashsale.yaml')]);
    assert.equal(example.status, 0, example.stderr);
    const bad = `apiVersion: flashsale.dev/v1alpha1
kind: FlashSale
metadata: {name: bad-sale}
spec:
  perUserLimit: many
  skus: [{id: a, stock: 1, timeoutBucket: 5m}]
  timeoutBuckets: [{name: 5m, delay: 5m}]
`;
    const refused = await kubectl(['apply', '-n', ns, '-f', '-'], { stdin: bad });
    assert.notEqual(refused.status, 0);
    assert.match(refused.stderr, /spec\.perUserLimit/);

    // The schema is published through OpenAPI: kubectl explain reads it from the apiserver.
    const explain = await kubectl(['explain', 'flashsale.spec.skus']);
    assert.equal(explain.status, 0, explain.stderr);
    assert.match(explain.stdout, /timeoutBucket/);
  });

  it('mints a ServiceAccount token (TokenRequest) that authenticates as the ServiceAccount, and RBAC denies it until granted', async () => {
    const core = c.kc.makeApiClient(CoreV1Api);
    const sa = 'reader';
    await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: sa } } });
    const tr = await core.createNamespacedServiceAccountToken({ name: sa, namespace: ns, body: { spec: { audiences: [], expirationSeconds: 600 } } });
    const token = tr.status?.token;
    assert.ok(token, 'TokenRequest returned a token');

    // The apiserver verifies its own signature on the token.
    const review = await c.kc.makeApiClient(AuthenticationV1Api).createTokenReview({ body: { spec: { token } } });
    assert.equal(review.status?.authenticated, true, review.status?.error);
    assert.equal(review.status?.user?.username, `system:serviceaccount:${ns}:${sa}`);

    const cluster = c.kc.getCurrentCluster()!;
    const kubeconfig = join(tmp, 'sa.kubeconfig');
    writeFileSync(
      kubeconfig,
      `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "${cluster.server}", certificate-authority-data: "${cluster.caData}"}}]
users: [{name: sa, user: {token: "${token}"}}]
contexts: [{name: sa, context: {cluster: c, user: sa, namespace: ${ns}}}]
current-context: sa
`,
      { mode: 0o600 },
    );
    const whoami = await kubectl(['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}'], { kubeconfig });
    assert.equal(whoami.status, 0, whoami.stderr);
    assert.equal(whoami.stdout, `system:serviceaccount:${ns}:${sa}`);

    const denied = await kubectl(['get', 'configmaps', '-n', ns], { kubeconfig });
    assert.notEqual(denied.status, 0);
    assert.match(denied.stderr, new RegExp(`Forbidden.*"system:serviceaccount:${ns}:${sa}" cannot list resource "configmaps"`));

    const rbac = c.kc.makeApiClient(RbacAuthorizationV1Api);
    await rbac.createNamespacedRole({ namespace: ns, body: { metadata: { name: 'read-configmaps' }, rules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['list'] }] } });
    await rbac.createNamespacedRoleBinding({
      namespace: ns,
      body: {
        metadata: { name: 'read-configmaps' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'read-configmaps' },
        subjects: [{ kind: 'ServiceAccount', name: sa, namespace: ns }],
      },
    });
    // The authorizer reads RBAC from the apiserver's informer cache, so a new binding takes effect
    // a moment after it was created: retry the request until then (bounded).
    let allowed: Run;
    const deadline = Date.now() + 30_000;
    do allowed = await kubectl(['get', 'configmaps', '-n', ns, '-o', 'name'], { kubeconfig });
    while (allowed.status !== 0 && /Forbidden/.test(allowed.stderr) && Date.now() < deadline);
    assert.equal(allowed.status, 0, allowed.stderr);
    assert.match(allowed.stdout, /configmap\/kube-root-ca\.crt/, 'the root CA publisher put the cluster CA in the namespace');
    // Still nothing else.
    const stillDenied = await kubectl(['get', 'secrets', '-n', ns], { kubeconfig });
    assert.match(stillDenied.stderr, /Forbidden/);
  });

  it('runs the controllers: Deployment → ReplicaSet → Pods, EndpointSlices, and garbage collection of owned objects', async () => {
    const apps = c.kc.makeApiClient(AppsV1Api);
    const core = c.kc.makeApiClient(CoreV1Api);
    const labels = { app: 'web' };
    const deployment: V1Deployment = {
      metadata: { name: 'web', namespace: ns },
      spec: {
        replicas: 2,
        selector: { matchLabels: labels },
        // Not the project's image: the node agent leaves such pods Pending, which is all this needs.
        template: { metadata: { labels }, spec: { containers: [{ name: 'web', image: 'registry.example.com/not-runnable-here:1', ports: [{ name: 'http', containerPort: 8080 }] }] } },
      },
    };
    const created = await apps.createNamespacedDeployment({ namespace: ns, body: deployment });
    await core.createNamespacedService({ namespace: ns, body: { metadata: { name: 'web' }, spec: { selector: labels, ports: [{ name: 'http', port: 80, targetPort: 'http' }] } } });

    const rs = await watchUntil(
      c.kc,
      { apiVersion: 'apps/v1', kind: 'ReplicaSet', plural: 'replicasets', namespace: ns },
      (items) => items.find((r) => r.metadata?.ownerReferences?.some((o: { uid: string; controller?: boolean }) => o.uid === created.metadata!.uid && o.controller)),
      { what: 'a ReplicaSet owned by the Deployment' },
    );
    const pods = await watchUntil(
      c.kc,
      { apiVersion: 'v1', kind: 'Pod', plural: 'pods', namespace: ns, labelSelector: 'app=web' },
      (items) => {
        const owned = items.filter((p) => p.metadata?.ownerReferences?.some((o: { uid: string }) => o.uid === rs.metadata!.uid));
        return owned.length === 2 ? owned : undefined;
      },
      { what: 'two Pods owned by the ReplicaSet' },
    );
    for (const pod of pods) assert.equal(pod.spec.serviceAccountName, 'default', 'ServiceAccount admission set the pod ServiceAccount');
    // --use-service-account-credentials: each controller acts as its own ServiceAccount.
    const controllerAccounts = (await core.listNamespacedServiceAccount({ namespace: 'kube-system' })).items.map((a) => a.metadata!.name);
    for (const name of ['deployment-controller', 'replicaset-controller', 'generic-garbage-collector']) assert.ok(controllerAccounts.includes(name), `kube-system/${name}`);

    const slice = await watchUntil(
      c.kc,
      { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', plural: 'endpointslices', namespace: ns, labelSelector: 'kubernetes.io/service-name=web' },
      (items) => items.find((s) => s.metadata?.labels?.['endpointslice.kubernetes.io/managed-by'] === 'endpointslice-controller.k8s.io'),
      { what: "the Service's EndpointSlice" },
    );
    assert.equal(slice.addressType, 'IPv4');

    // Deleting the Deployment: the garbage collector deletes the ReplicaSet, then its Pods
    // (a Pod bound to a node is only marked for deletion until its node confirms).
    await apps.deleteNamespacedDeployment({ name: 'web', namespace: ns });
    await watchUntil(
      c.kc,
      { apiVersion: 'apps/v1', kind: 'ReplicaSet', plural: 'replicasets', namespace: ns },
      (items) => !items.some((r) => r.metadata?.uid === rs.metadata!.uid),
      { what: 'the ReplicaSet garbage-collected' },
    );
    await watchUntil(
      c.kc,
      { apiVersion: 'v1', kind: 'Pod', plural: 'pods', namespace: ns, labelSelector: 'app=web' },
      (items) => items.every((p) => p.metadata?.deletionTimestamp),
      { what: 'the Pods garbage-collected' },
    );
  });
});

describe('a control plane of a test\'s own (startControlPlane)', () => {
  it('starts, answers with the pinned release, and stops completely', async () => {
    const own = await startControlPlane();
    let stopped = false;
    try {
      const shared = await testCluster();
      assert.notEqual(own.server, shared.server, 'its own apiserver');
      const r = await run(shared.kubectl, [`--kubeconfig=${own.kubeconfigPath}`, 'version', '-o', 'json']);
      assert.equal(r.status, 0, r.stderr);
      assert.equal((JSON.parse(r.stdout) as { serverVersion: { gitVersion: string } }).serverVersion.gitVersion, release);
      await own.stop();
      stopped = true;
      // The launcher and its children are gone: the apiserver no longer answers.
      assert.throws(() => process.kill(own.pid, 0), /ESRCH/);
      const after = await run(shared.kubectl, [`--kubeconfig=${own.kubeconfigPath}`, '--request-timeout=5s', 'version']);
      assert.notEqual(after.status, 0);
    } finally {
      if (!stopped) await own.stop();
    }
  });
});
