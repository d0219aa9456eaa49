// What the test apiserver serves: CRDs (serving, conditions, structural-schema validation, pruning,
// defaults, deletion), the built-in kinds the operator touches, and discovery.
/* eslint-disable @typescript-eslint/no-explicit-any -- Kubernetes JSON in tests */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import {
  ApiextensionsV1Api,
  AppsV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  EventsV1Api,
  PatchStrategy,
  setHeaderOptions,
  V1MicroTime,
  VersionApi,
  type KubeConfig,
} from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import { failure, installCrd, installWidgets, rawWatch, widget, widgetCrd, WIDGETS } from './apiserver/fixtures.ts';
import { startApiServer, type ApiServer } from './apiserver/server.ts';
import { uniqueName } from './support/infra.ts';
import { kubeConfigFor, setDeploymentStatus } from './support/kube.ts';

const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
const fields = (status: any): string[] => status.details.causes.map((c: any) => c.field).sort();

describe('test apiserver: CustomResourceDefinitions', () => {
  let server: ApiServer;
  let kc: KubeConfig;
  let co: CustomObjectsApi;
  let ext: ApiextensionsV1Api;
  const namespace = uniqueName('ns');
  const w = { ...WIDGETS, namespace };

  before(async () => {
    server = await startApiServer();
    kc = kubeConfigFor(server);
    co = kc.makeApiClient(CustomObjectsApi);
    ext = kc.makeApiClient(ApiextensionsV1Api);
  });
  after(() => server.close());

  it('serves a resource once its CRD exists, and reports Established and NamesAccepted', async () => {
    const before = await failure(co.listNamespacedCustomObject(w));
    assert.equal(before.code, 404);
    await installWidgets(kc);
    const crd = await ext.readCustomResourceDefinition({ name: 'widgets.example.test' });
    const conditions = Object.fromEntries((crd.status?.conditions ?? []).map((c) => [c.type, c.status]));
    assert.deepEqual(conditions, { NamesAccepted: 'True', Established: 'True' });
    assert.equal(crd.status?.acceptedNames?.kind, 'Widget');
    assert.deepEqual(crd.status?.storedVersions, ['v1']);
    const list: any = await co.listNamespacedCustomObject(w);
    assert.deepEqual(list.items, []);
  });

  it('rejects an invalid object with one 422 listing every failure', async () => {
    const { code, status } = await failure(
      co.createNamespacedCustomObject({ ...w, body: widget('bad', { color: 'green', name: 'ABCDEFGHIJ', tags: ['a', 'b', 'c'], port: 1.5, replicas: 'two' }) }),
    );
    assert.equal(code, 422);
    assert.equal(status.reason, 'Invalid');
    assert.deepEqual(fields(status), ['spec.color', 'spec.name', 'spec.name', 'spec.port', 'spec.replicas', 'spec.size', 'spec.tags']);
    assert.match(status.message, /spec\.size: Required value/);
    assert.match(status.message, /spec\.color: Unsupported value: "green"/);
    assert.match(status.message, /spec\.tags: Too many: 3: must have at most 2 items/);
    const tooBig = await failure(co.createNamespacedCustomObject({ ...w, body: widget('big', { size: 11 }) }));
    assert.match(tooBig.status.message, /spec\.size in body should be less than or equal to 10/);
  });

  it('prunes unknown fields unless x-kubernetes-preserve-unknown-fields', async () => {
    const created: any = await co.createNamespacedCustomObject({
      ...w,
      body: { ...widget('prune', { size: 1, bogus: true, extra: { anything: { goes: 1 } } }, { madeUp: 'x' }), topLevel: 'x' },
    });
    assert.equal(created.metadata.madeUp, undefined, 'metadata is ObjectMeta: unknown keys dropped');
    assert.equal(created.spec.bogus, undefined);
    assert.equal(created.topLevel, undefined);
    assert.deepEqual(created.spec.extra, { anything: { goes: 1 } });
    const status: any = await co.patchNamespacedCustomObjectStatus({ ...w, name: 'prune', body: { status: { phase: 'Ok', junk: 1 } } }, merge);
    assert.deepEqual(status.status, { phase: 'Ok' });
  });

  it('applies defaults, including nested defaults of a defaulted object', async () => {
    const created: any = await co.createNamespacedCustomObject({ ...w, body: widget('defaults', { size: 1 }) });
    assert.equal(created.spec.color, 'red');
    assert.deepEqual(created.spec.limits, { max: 5 });
    const explicit: any = await co.createNamespacedCustomObject({ ...w, body: widget('explicit', { size: 1, color: 'blue', limits: { max: 7 } }) });
    assert.equal(explicit.spec.color, 'blue');
    assert.deepEqual(explicit.spec.limits, { max: 7 });
  });

  it('honours x-kubernetes-int-or-string and nullable', async () => {
    const num: any = await co.createNamespacedCustomObject({ ...w, body: widget('ios-1', { size: 1, port: 8080, note: null }) });
    assert.equal(num.spec.port, 8080);
    assert.equal(num.spec.note, null);
    const str: any = await co.createNamespacedCustomObject({ ...w, body: widget('ios-2', { size: 1, port: 'http' }) });
    assert.equal(str.spec.port, 'http');
    const notNullable = await failure(co.createNamespacedCustomObject({ ...w, body: widget('ios-3', { size: 1, tags: null }) }));
    assert.equal(notNullable.code, 422);
    assert.deepEqual(fields(notNullable.status), ['spec.tags']);
  });

  it("serves the project's CRD (YAML anchor and all): the example applies with defaults, an invalid sale is refused", async () => {
    const crd = parseYaml(readFileSync(new URL('../crds/flashsale.yaml', import.meta.url), 'utf8'));
    await installCrd(kc, crd);
    const fs = { group: 'flashsale.dev', version: 'v1alpha1', plural: 'flashsales', namespace };
    const example = parseYaml(readFileSync(new URL('../examples/flashsale.yaml', import.meta.url), 'utf8'));
    const created: any = await co.createNamespacedCustomObject({ ...fs, body: example });
    assert.deepEqual(created.spec.workers.timeoutCloser, { minReplicas: 1, maxReplicas: 6, lagThreshold: 1000 }, 'defaults from the anchored schema');
    assert.equal(created.spec.deletionPolicy, 'Retain');
    const bad = structuredClone(example);
    bad.metadata.name = 'bad-sale';
    bad.spec.perUserLimit = 0;
    bad.spec.timeoutBuckets[0].delay = 'soon';
    const refused = await failure(co.createNamespacedCustomObject({ ...fs, body: bad }));
    assert.equal(refused.code, 422);
    assert.deepEqual(fields(refused.status), ['spec.perUserLimit', 'spec.timeoutBuckets[0].delay']);
  });

  it('serves cluster-scoped custom resources', async () => {
    const crd = structuredClone(widgetCrd) as any;
    crd.metadata.name = 'gadgets.example.test';
    crd.spec.scope = 'Cluster';
    crd.spec.names = { plural: 'gadgets', singular: 'gadget', kind: 'Gadget' };
    await installCrd(kc, crd);
    const g = { group: 'example.test', version: 'v1', plural: 'gadgets' };
    const created: any = await co.createClusterCustomObject({ ...g, body: { apiVersion: 'example.test/v1', kind: 'Gadget', metadata: { name: 'g1' }, spec: { size: 2 } } });
    assert.equal(created.metadata.namespace, undefined);
    const got: any = await co.getClusterCustomObject({ ...g, name: 'g1' });
    assert.equal(got.spec.size, 2);
  });

  it('serves every served version of a CRD from one storage, the preferred version first in discovery', async () => {
    const crd = structuredClone(widgetCrd) as any;
    crd.metadata.name = 'widgets.multi.test';
    crd.spec.group = 'multi.test';
    const v1 = crd.spec.versions[0];
    crd.spec.versions = [
      { ...structuredClone(v1), name: 'v1alpha1', storage: false },
      { ...structuredClone(v1), name: 'v1beta1', storage: true },
      { ...structuredClone(v1), name: 'v1', storage: false },
    ];
    await installCrd(kc, crd);
    const group: any = await (await fetch(`${server.url}/apis/multi.test`)).json();
    assert.deepEqual(
      group.versions.map((v: any) => v.version),
      ['v1', 'v1beta1', 'v1alpha1'],
    );
    assert.equal(group.preferredVersion.version, 'v1');
    const created: any = await co.createNamespacedCustomObject({ group: 'multi.test', version: 'v1beta1', plural: 'widgets', namespace, body: { ...widget('mv'), apiVersion: 'multi.test/v1beta1' } });
    const asV1: any = await co.getNamespacedCustomObject({ group: 'multi.test', version: 'v1', plural: 'widgets', namespace, name: 'mv' });
    assert.equal(asV1.apiVersion, 'multi.test/v1');
    assert.equal(asV1.metadata.uid, created.metadata.uid);
  });

  it('refuses a CRD whose schema is not structural (422)', async () => {
    const crd = structuredClone(widgetCrd) as any;
    crd.metadata.name = 'sloppies.example.test';
    crd.spec.names = { plural: 'sloppies', kind: 'Sloppy' };
    crd.spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.size = { minimum: 1 };
    const refused = await failure(installCrd(kc, crd));
    assert.equal(refused.code, 422);
    assert.deepEqual(fields(refused.status), ['spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[size].type']);
  });

  it('deleting a CRD deletes its objects (DELETED events) and stops serving it', async () => {
    const crd = structuredClone(widgetCrd) as any;
    crd.metadata.name = 'doodads.example.test';
    crd.spec.names = { plural: 'doodads', kind: 'Doodad' };
    await installCrd(kc, crd);
    const d = { group: 'example.test', version: 'v1', plural: 'doodads', namespace };
    await co.createNamespacedCustomObject({ ...d, body: { apiVersion: 'example.test/v1', kind: 'Doodad', metadata: { name: 'd1' }, spec: { size: 1 } } });
    const stream = await rawWatch(server, `/apis/example.test/v1/namespaces/${namespace}/doodads?watch=true&resourceVersion=${server.resourceVersion()}`, {
      onOpen: () => ext.deleteCustomResourceDefinition({ name: 'doodads.example.test' }).then(() => undefined),
    });
    assert.deepEqual(
      stream.events.map((e) => [e.type, e.object.metadata.name]),
      [['DELETED', 'd1']],
    );
    assert.equal(stream.ended, true, 'watches of the resource end');
    assert.equal((await failure(co.listNamespacedCustomObject(d))).code, 404);
  });
});

describe('test apiserver: built-in kinds and discovery', () => {
  let server: ApiServer;
  let kc: KubeConfig;
  const namespace = uniqueName('ns');

  before(async () => {
    server = await startApiServer();
    kc = kubeConfigFor(server);
  });
  after(() => server.close());

  const deployment = (name: string): any => ({
    metadata: { name },
    spec: { selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'app', image: 'app:1' }] } } },
  });

  it('Deployments: defaults, validation, status only via /status (setDeploymentStatus), and /scale', async () => {
    const apps = kc.makeApiClient(AppsV1Api);
    const created = await apps.createNamespacedDeployment({ namespace, body: deployment('api') });
    assert.equal(created.spec!.replicas, 1);
    assert.equal(created.metadata!.generation, 1);
    assert.equal(created.status, undefined, 'no kubelet: nothing becomes ready by itself');
    const mismatch = deployment('bad');
    mismatch.spec.template.metadata.labels = { app: 'other' };
    assert.equal((await failure(apps.createNamespacedDeployment({ namespace, body: mismatch }))).code, 422);

    await apps.patchNamespacedDeployment({ namespace, name: 'api', body: { status: { readyReplicas: 5 } } }, merge);
    assert.equal((await apps.readNamespacedDeployment({ namespace, name: 'api' })).status, undefined, 'the main resource ignores status');
    await setDeploymentStatus(kc, namespace, 'api', { readyReplicas: 0 });
    const status = (await apps.readNamespacedDeploymentStatus({ namespace, name: 'api' })).status!;
    assert.deepEqual([status.replicas, status.readyReplicas, status.observedGeneration], [1, 0, 1]);

    const scale = await apps.readNamespacedDeploymentScale({ namespace, name: 'api' });
    assert.equal(scale.spec!.replicas, 1);
    assert.equal(scale.status!.selector, 'app=api');
    await apps.replaceNamespacedDeploymentScale({ namespace, name: 'api', body: { ...scale, spec: { replicas: 3 } } });
    const scaled = await apps.readNamespacedDeployment({ namespace, name: 'api' });
    assert.equal(scaled.spec!.replicas, 3);
    assert.equal(scaled.metadata!.generation, 2);
    assert.equal(scaled.status!.readyReplicas, 0, 'scaling does not make pods ready');
  });

  it('Services, ConfigMaps and Secrets (stringData folded into base64 data)', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    const svc = await core.createNamespacedService({ namespace, body: { metadata: { name: 'api' }, spec: { selector: { app: 'api' }, ports: [{ port: 80, targetPort: 8080 }] } } });
    assert.equal(svc.spec!.type, 'ClusterIP');
    assert.equal(svc.spec!.ports![0]!.protocol, 'TCP');
    const cm = await core.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'cfg' }, data: { a: '1' } } });
    assert.equal(cm.data!.a, '1');
    const secret = await core.createNamespacedSecret({ namespace, body: { metadata: { name: 's' }, stringData: { password: 'hunter2' } } });
    assert.equal(secret.data!.password, Buffer.from('hunter2').toString('base64'));
    assert.equal(secret.stringData, undefined);
    assert.equal(secret.type, 'Opaque');
  });

  it('Events in core v1 and events.k8s.io/v1', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    const events = kc.makeApiClient(EventsV1Api);
    await core.createNamespacedEvent({
      namespace,
      body: { metadata: { name: 'e1' }, involvedObject: { kind: 'FlashSale', name: 'sale' }, reason: 'Provisioned', message: 'ok', type: 'Normal' },
    });
    await events.createNamespacedEvent({
      namespace,
      body: {
        metadata: { name: 'e2' },
        eventTime: new V1MicroTime('2026-11-22T01:02:03.123456Z'),
        regarding: { kind: 'FlashSale', name: 'sale', namespace },
        reason: 'Provisioned',
        action: 'Provision',
        reportingController: 'flashsale.dev/operator',
        reportingInstance: 'op-1',
        type: 'Normal',
      },
    });
    assert.deepEqual((await core.listNamespacedEvent({ namespace })).items.map((e) => e.reason), ['Provisioned']);
    const incomplete = await failure(
      events.createNamespacedEvent({ namespace, body: { metadata: { name: 'e3' }, eventTime: new V1MicroTime('2026-11-22T01:02:03.123456Z'), regarding: { name: 'sale', namespace }, reason: 'X', type: 'Normal' } as any }),
    );
    assert.equal(incomplete.code, 422, 'events.k8s.io requires the reporting controller, instance and action');
    assert.deepEqual(fields(incomplete.status), ['action', 'reportingController', 'reportingInstance']);
    const mismatch = await failure(
      core.createNamespacedEvent({ namespace, body: { metadata: { name: 'e4' }, involvedObject: { kind: 'FlashSale', name: 'sale', namespace: 'elsewhere' }, reason: 'X' } }),
    );
    assert.equal(mismatch.code, 422);
    assert.deepEqual(fields(mismatch.status), ['involvedObject.namespace']);
    const listed = await events.listNamespacedEvent({ namespace });
    assert.equal(String(listed.items[0]!.eventTime), '2026-11-22T01:02:03.123000Z', 'client-node hands MicroTime back as the wire string');
  });

  it('Leases: MicroTime must have exactly six fractional digits (client-node V1MicroTime does; a plain Date does not)', async () => {
    const coord = kc.makeApiClient(CoordinationV1Api);
    const lease = await coord.createNamespacedLease({
      namespace,
      body: { metadata: { name: 'leader' }, spec: { holderIdentity: 'op-1', leaseDurationSeconds: 15, renewTime: new V1MicroTime('2026-11-22T01:02:03.123Z') } },
    });
    assert.equal(lease.spec!.holderIdentity, 'op-1');
    const raw: any = await (await fetch(`${server.url}/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases/leader`)).json();
    assert.equal(raw.spec.renewTime, '2026-11-22T01:02:03.123000Z');
    const plainDate = await failure(
      coord.createNamespacedLease({ namespace, body: { metadata: { name: 'millis' }, spec: { holderIdentity: 'op-2', renewTime: new Date('2026-11-22T01:02:03.123Z') as any } } }),
    );
    assert.equal(plainDate.code, 422);
    assert.deepEqual(fields(plainDate.status), ['spec.renewTime']);
    for (const bad of ['2026-11-22T01:02:03Z', '2026-11-22T01:02:03.1234567Z']) {
      const res = await fetch(`${server.url}/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ metadata: { name: 'raw' }, spec: { acquireTime: bad } }),
      });
      assert.equal(res.status, 422, bad);
    }
  });

  it('renders a Table when asked (kubectl get), with printer columns and Age from the injected clock', async () => {
    let clock = new Date('2026-11-22T01:00:00Z');
    const timed = await startApiServer({ now: () => clock });
    try {
      const tkc = kubeConfigFor(timed);
      await installWidgets(tkc);
      const apps = tkc.makeApiClient(AppsV1Api);
      await apps.createNamespacedDeployment({ namespace, body: { ...deployment('tbl'), spec: { ...deployment('tbl').spec, replicas: 3 } } });
      await setDeploymentStatus(tkc, namespace, 'tbl', { readyReplicas: 2 });
      clock = new Date('2026-11-22T01:03:10Z');
      const accept = 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json';
      const table: any = await (await fetch(`${timed.url}/apis/apps/v1/namespaces/${namespace}/deployments`, { headers: { Accept: accept } })).json();
      assert.equal(table.kind, 'Table');
      assert.deepEqual(table.columnDefinitions.map((c: any) => c.name), ['Name', 'Ready', 'Up-to-date', 'Available', 'Age']);
      assert.deepEqual(table.rows[0].cells, ['tbl', '2/3', 3, 2, '3m10s']);
      assert.equal(table.rows[0].object.kind, 'PartialObjectMetadata');
      const plain: any = await (await fetch(`${timed.url}/apis/apps/v1/namespaces/${namespace}/deployments`)).json();
      assert.equal(plain.kind, 'DeploymentList', 'plain JSON unless a Table is asked for');
    } finally {
      await timed.close();
    }
  });

  it('discovery: /api, /apis, group versions with verbs, shortNames and status subresources, /version; /openapi/v2 is 404', async () => {
    await installWidgets(kc);
    const get = async (p: string): Promise<any> => {
      const res = await fetch(`${server.url}${p}`);
      assert.equal(res.status, 200, p);
      return res.json();
    };
    assert.deepEqual((await get('/api')).versions, ['v1']);
    const groups = (await get('/apis')).groups.map((g: any) => g.name);
    for (const g of ['apps', 'coordination.k8s.io', 'events.k8s.io', 'apiextensions.k8s.io', 'example.test']) assert.ok(groups.includes(g), g);
    const core = await get('/api/v1');
    const byName = (list: any): Record<string, any> => Object.fromEntries(list.resources.map((r: any) => [r.name, r]));
    assert.deepEqual(byName(core).configmaps.shortNames, ['cm']);
    assert.equal(byName(core).namespaces.namespaced, false);
    const widgets = byName(await get('/apis/example.test/v1'));
    assert.deepEqual(widgets.widgets.verbs.sort(), ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch']);
    assert.deepEqual(widgets.widgets.shortNames, ['wd']);
    assert.deepEqual(widgets['widgets/status'].verbs, ['get', 'patch', 'update']);
    const apps = byName(await get('/apis/apps/v1'));
    assert.ok(apps['deployments/scale']);
    assert.equal((await get('/apis/apps')).preferredVersion.version, 'v1');
    const version = await kc.makeApiClient(VersionApi).getCode();
    assert.equal(version.major, '1');
    assert.equal((await fetch(`${server.url}/openapi/v2`)).status, 404);
  });
});
