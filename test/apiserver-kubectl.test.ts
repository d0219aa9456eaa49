// The real kubectl (Debian's kubernetes-client v1.20) against the test apiserver: apply the
// project's CRD and example, get (plain and -o yaml), patch --type merge, apply again, delete
// --wait=false with a finalizer. Each test has its own --cache-dir (see test/support/kubectl.ts).
/* eslint-disable @typescript-eslint/no-explicit-any -- Kubernetes JSON in tests */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { CustomObjectsApi, PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import { startApiServer, type ApiServer } from './apiserver/server.ts';
import { eventually, uniqueName } from './support/infra.ts';
import { kubeConfigFor } from './support/kube.ts';
import { KUBECTL, kubectlFor, type Kubectl } from './support/kubectl.ts';

const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
const repo = new URL('..', import.meta.url).pathname;

describe('test apiserver: kubectl v1.20', () => {
  let server: ApiServer;
  let kc: KubeConfig;
  let kubectl: Kubectl;
  let co: CustomObjectsApi;
  const namespace = uniqueName('ns');
  const fs = { group: 'flashsale.dev', version: 'v1alpha1', plural: 'flashsales', namespace };

  before(async () => {
    assert.ok(existsSync(KUBECTL), `kubectl not found at ${KUBECTL}: run bash infra/tools.sh (or set $KUBECTL)`);
    server = await startApiServer();
    kc = kubeConfigFor(server, namespace);
    co = kc.makeApiClient(CustomObjectsApi);
    kubectl = kubectlFor(server.kubeconfigYaml(namespace));
  });
  after(async () => {
    kubectl.cleanup();
    await server.close();
  });

  it('applies the CRD and then the example sale', async () => {
    const crd = await kubectl.ok(['apply', '--validate=false', '-f', `${repo}crds/flashsale.yaml`]);
    assert.match(crd, /customresourcedefinition.apiextensions.k8s.io\/flashsales.flashsale.dev created/);
    const again = await kubectl.ok(['apply', '--validate=false', '-f', `${repo}crds/flashsale.yaml`]);
    assert.match(again, /flashsales.flashsale.dev unchanged/, 're-applying the same CRD writes nothing');
    const sale = await kubectl.ok(['apply', '--validate=false', '-f', `${repo}examples/flashsale.yaml`]);
    assert.match(sale, /flashsale.flashsale.dev\/singles-day created/);
    const stored: any = await co.getNamespacedCustomObject({ ...fs, name: 'singles-day' });
    assert.equal(stored.spec.skus.length, 2);
    assert.ok(stored.metadata.annotations['kubectl.kubernetes.io/last-applied-configuration'], 'kubectl apply records its configuration');
  });

  it('gets the sale plainly (server-side Table with the CRD printer columns), by short name, and as YAML', async () => {
    await co.patchNamespacedCustomObjectStatus(
      { ...fs, name: 'singles-day', body: { status: { phase: 'Ready', skuCount: 2, remaining: 51000, conditions: [{ type: 'Ready', status: 'True' }] } } },
      merge,
    );
    const plain = await kubectl.ok(['get', 'flashsales']);
    assert.match(plain, /^NAME\s+READY\s+PHASE\s+SKUS\s+REMAINING\s+AGE\n/);
    assert.match(plain, /\nsingles-day\s+True\s+Ready\s+2\s+51000\s+\d+s\n/);
    assert.match(await kubectl.ok(['get', 'fs']), /singles-day/);
    const doc = parseYaml(await kubectl.ok(['get', 'fs', 'singles-day', '-o', 'yaml']));
    assert.equal(doc.apiVersion, 'flashsale.dev/v1alpha1');
    assert.equal(doc.kind, 'FlashSale');
    assert.equal(doc.metadata.namespace, namespace);
    assert.equal(doc.spec.deletionPolicy, 'Retain', 'defaults from the CRD schema');
    const crds = await kubectl.ok(['get', 'crd']);
    assert.match(crds, /flashsales.flashsale.dev/);
  });

  it('watches with get -w (one-row Tables per change)', async () => {
    const watching = kubectl.run(['get', 'fs', 'singles-day', '-w'], { timeoutMs: 3_000 });
    await eventually(() => server.watchCount() > 0, { timeoutMs: 2_500, what: 'kubectl watching' });
    await co.patchNamespacedCustomObjectStatus({ ...fs, name: 'singles-day', body: { status: { phase: 'Degraded' } } }, merge);
    const { stdout } = await watching;
    const rows = stdout.trim().split('\n');
    assert.match(rows[0]!, /^NAME\s+READY\s+PHASE/);
    assert.match(rows[1]!, /^singles-day\s+True\s+Ready\s/);
    assert.match(rows[2]!, /^singles-day\s+True\s+Degraded\s/);
  });

  it('patches with --type merge, and re-applies a changed file as a JSON merge patch', async () => {
    const mergesBefore = server.stats().patches['application/merge-patch+json'] ?? 0;
    const patched = await kubectl.ok(['patch', 'fs', 'singles-day', '--type', 'merge', '-p', '{"spec":{"perUserLimit":2}}']);
    assert.match(patched, /patched/);
    const after: any = await co.getNamespacedCustomObject({ ...fs, name: 'singles-day' });
    assert.equal(after.spec.perUserLimit, 2);
    assert.equal(after.metadata.generation, 2);
    const reapplied = await kubectl.ok(['apply', '--validate=false', '-f', '-'], {
      stdin: [
        'apiVersion: flashsale.dev/v1alpha1',
        'kind: FlashSale',
        'metadata: {name: singles-day}',
        'spec:',
        '  perUserLimit: 1',
        '  skus: [{id: phone-x, stock: 2000, timeoutBucket: 30m}, {id: ebook-y, stock: 50000, timeoutBucket: 5m}]',
        '  timeoutBuckets: [{name: 5m, delay: 5m}, {name: 30m, delay: 30m}]',
        '  kafka: {partitions: 6, replicationFactor: 1}',
        '',
      ].join('\n'),
    });
    assert.match(reapplied, /configured/);
    assert.equal(server.stats().patches['application/merge-patch+json'], mergesBefore + 2, 'kubectl patch and apply both merge-patch a custom resource');
    assert.equal(server.stats().patches['application/strategic-merge-patch+json'], undefined);
    const final: any = await co.getNamespacedCustomObject({ ...fs, name: 'singles-day' });
    assert.equal(final.spec.skus[0].stock, 2000);
    assert.equal(final.spec.perUserLimit, 1);
  });

  it('apply --server-side: conflicts with another manager’s change, --force-conflicts takes the field over', async () => {
    const sale = (limit: number): string =>
      [
        'apiVersion: flashsale.dev/v1alpha1',
        'kind: FlashSale',
        'metadata: {name: ssa-sale}',
        'spec:',
        `  perUserLimit: ${limit}`,
        '  skus: [{id: a, stock: 10, timeoutBucket: b}]',
        '  timeoutBuckets: [{name: b, delay: 5m}]',
        '',
      ].join('\n');
    assert.match(await kubectl.ok(['apply', '--server-side', '--validate=false', '-f', '-'], { stdin: sale(1) }), /serverside-applied/);
    await kubectl.ok(['patch', 'fs', 'ssa-sale', '--type', 'merge', '-p', '{"spec":{"perUserLimit":3}}']);
    const conflicted = await kubectl.run(['apply', '--server-side', '--validate=false', '-f', '-'], { stdin: sale(1) });
    assert.notEqual(conflicted.status, 0);
    assert.match(conflicted.stderr, /conflict with "kubectl-patch": \.spec\.perUserLimit/);
    await kubectl.ok(['apply', '--server-side', '--force-conflicts', '--validate=false', '-f', '-'], { stdin: sale(1) });
    const doc = parseYaml(await kubectl.ok(['get', 'fs', 'ssa-sale', '-o', 'yaml']));
    assert.equal(doc.spec.perUserLimit, 1);
    assert.deepEqual(
      doc.metadata.managedFields.map((m: any) => `${m.manager}/${m.operation}`),
      ['kubectl/Apply'],
      'the patcher lost its only field',
    );
    assert.match(await kubectl.ok(['delete', 'fs', 'ssa-sale']), /deleted/);
  });

  it('reports the server’s 422 for an invalid sale', async () => {
    const r = await kubectl.run(['apply', '--validate=false', '-f', '-'], {
      stdin: 'apiVersion: flashsale.dev/v1alpha1\nkind: FlashSale\nmetadata: {name: broken}\nspec: {perUserLimit: 0, skus: [], timeoutBuckets: []}\n',
    });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /is invalid/);
    assert.match(r.stderr, /spec.perUserLimit/);
  });

  it('applies a Deployment twice (strategic merge for built-ins)', async () => {
    const manifest = (image: string): string =>
      [
        'apiVersion: apps/v1',
        'kind: Deployment',
        'metadata: {name: web}',
        'spec:',
        '  selector: {matchLabels: {app: web}}',
        '  template:',
        '    metadata: {labels: {app: web}}',
        `    spec: {containers: [{name: app, image: "${image}"}]}`,
        '',
      ].join('\n');
    assert.match(await kubectl.ok(['apply', '--validate=false', '-f', '-'], { stdin: manifest('app:1') }), /created/);
    assert.match(await kubectl.ok(['apply', '--validate=false', '-f', '-'], { stdin: manifest('app:2') }), /configured/);
    assert.equal(server.stats().patches['application/strategic-merge-patch+json'], 1);
    const doc = parseYaml(await kubectl.ok(['get', 'deploy', 'web', '-o', 'yaml']));
    assert.equal(doc.spec.template.spec.containers[0].image, 'app:2');
    assert.equal(doc.metadata.generation, 2);
  });

  it('re-applies a Service changing one of two ports: the strategic merge keeps the other (merge key port)', async () => {
    const manifest = (target: number): string =>
      ['apiVersion: v1', 'kind: Service', 'metadata: {name: api}', 'spec:', '  selector: {app: api}', `  ports: [{name: http, port: 80, targetPort: 8080}, {name: admin, port: 9090, targetPort: ${target}}]`, ''].join('\n');
    await kubectl.ok(['apply', '--validate=false', '-f', '-'], { stdin: manifest(9090) });
    assert.match(await kubectl.ok(['apply', '--validate=false', '-f', '-'], { stdin: manifest(9191) }), /configured/);
    const svc = parseYaml(await kubectl.ok(['get', 'svc', 'api', '-o', 'yaml']));
    assert.deepEqual(
      svc.spec.ports.map((p: any) => `${p.name}:${p.port}->${p.targetPort}`),
      ['http:80->8080', 'admin:9090->9191'],
    );
  });

  it('deletes with --wait=false while a finalizer holds the sale, which goes when the finalizer is removed', async () => {
    await co.patchNamespacedCustomObject({ ...fs, name: 'singles-day', body: { metadata: { finalizers: ['flashsale.dev/cleanup'] } } }, merge);
    const out = await kubectl.ok(['delete', 'fs', 'singles-day', '--wait=false']);
    assert.match(out, /deleted/);
    const held: any = await co.getNamespacedCustomObject({ ...fs, name: 'singles-day' });
    assert.ok(held.metadata.deletionTimestamp, 'held by its finalizer');
    await co.patchNamespacedCustomObject({ ...fs, name: 'singles-day', body: { metadata: { finalizers: null } } }, merge);
    const r = await kubectl.run(['get', 'fs', 'singles-day']);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /NotFound|not found/);
    const none = await kubectl.run(['get', 'fs']);
    assert.equal(none.status, 0);
    assert.match(none.stderr, /No resources found/);
  });
});
