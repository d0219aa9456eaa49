// Patches on the test apiserver, through client-node: JSON merge patch, JSON patch, strategic
// merge (built-ins only; 415 on custom resources) and server-side apply with managedFields.
/* eslint-disable @typescript-eslint/no-explicit-any -- Kubernetes JSON in tests */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AppsV1Api, CustomObjectsApi, KubernetesObjectApi, PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';
import { failure, installWidgets, widget, WIDGETS } from './apiserver/fixtures.ts';
import { startApiServer, type ApiServer } from './apiserver/server.ts';
import { uniqueName } from './support/infra.ts';
import { kubeConfigFor } from './support/kube.ts';

const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
const strategic = setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch);

function deployment(name: string, containers: any[] = [{ name: 'app', image: 'app:1' }]): any {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name },
    spec: { replicas: 1, selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: { containers } } },
  };
}

describe('test apiserver: patches and server-side apply', () => {
  let server: ApiServer;
  let kc: KubeConfig;
  let co: CustomObjectsApi;
  let objects: KubernetesObjectApi;
  let apps: AppsV1Api;
  const namespace = uniqueName('ns');
  const w = { ...WIDGETS, namespace };
  const applyAs = (manager: string, body: any, force = false): Promise<any> =>
    objects.patch({ ...body, metadata: { ...body.metadata, namespace } }, undefined, undefined, manager, force, PatchStrategy.ServerSideApply);

  before(async () => {
    server = await startApiServer();
    kc = kubeConfigFor(server);
    co = kc.makeApiClient(CustomObjectsApi);
    apps = kc.makeApiClient(AppsV1Api);
    objects = KubernetesObjectApi.makeApiClient(kc);
    await installWidgets(kc);
  });
  after(() => server.close());

  it('applies a JSON merge patch (null removes a field)', async () => {
    await co.createNamespacedCustomObject({ ...w, body: widget('mp', { size: 2, name: 'abc', tags: ['x'] }) });
    const patched: any = await co.patchNamespacedCustomObject({ ...w, name: 'mp', body: { spec: { name: null, tags: ['y', 'z'], size: 3 } } }, merge);
    assert.equal(patched.spec.name, undefined);
    assert.deepEqual(patched.spec.tags, ['y', 'z'], 'merge patch replaces lists');
    assert.equal(patched.spec.size, 3);
    assert.equal(patched.spec.color, 'red', 'untouched fields stay');
  });

  it('applies a JSON patch, and refuses one whose test operation fails (422)', async () => {
    await co.createNamespacedCustomObject({ ...w, body: widget('jp', { size: 2, tags: ['a'] }) });
    const patched: any = await co.patchNamespacedCustomObject({
      ...w,
      name: 'jp',
      body: [
        { op: 'test', path: '/spec/size', value: 2 },
        { op: 'replace', path: '/spec/size', value: 4 },
        { op: 'add', path: '/spec/tags/-', value: 'b' },
        { op: 'add', path: '/metadata/labels', value: { k: 'v' } },
      ],
    });
    assert.equal(patched.spec.size, 4);
    assert.deepEqual(patched.spec.tags, ['a', 'b']);
    assert.deepEqual(patched.metadata.labels, { k: 'v' });
    const failed = await failure(co.patchNamespacedCustomObject({ ...w, name: 'jp', body: [{ op: 'test', path: '/spec/size', value: 2 }, { op: 'remove', path: '/spec/size' }] }));
    assert.equal(failed.code, 422);
    assert.equal(((await co.getNamespacedCustomObject({ ...w, name: 'jp' })) as any).spec.size, 4, 'a failed patch changes nothing');
  });

  it('refuses a strategic merge patch on a custom resource with 415, also from KubernetesObjectApi.patch by default', async () => {
    await co.createNamespacedCustomObject({ ...w, body: widget('smp') });
    const direct = await failure(co.patchNamespacedCustomObject({ ...w, name: 'smp', body: { spec: { size: 5 } } }, strategic));
    assert.equal(direct.code, 415);
    assert.equal(direct.status.reason, 'UnsupportedMediaType');
    const generic = await failure(objects.patch({ ...widget('smp', { size: 5 }), metadata: { name: 'smp', namespace } }));
    assert.equal(generic.code, 415);
  });

  it('applies a strategic merge patch to a Deployment, merging containers by name', async () => {
    await apps.createNamespacedDeployment({ namespace, body: deployment('web', [{ name: 'app', image: 'app:1' }, { name: 'sidecar', image: 'side:1' }]) });
    const patched = await apps.patchNamespacedDeployment(
      { namespace, name: 'web', body: { spec: { template: { spec: { containers: [{ name: 'app', image: 'app:2' }] } } } } },
      strategic,
    );
    assert.deepEqual(
      patched.spec!.template.spec!.containers.map((c) => `${c.name}=${c.image}`),
      ['app=app:2', 'sidecar=side:1'],
    );
    assert.equal(patched.metadata!.generation, 2);
    const reordered = await apps.patchNamespacedDeployment(
      {
        namespace,
        name: 'web',
        body: {
          spec: {
            template: {
              spec: {
                '$setElementOrder/containers': [{ name: 'sidecar' }, { name: 'app' }],
                containers: [{ name: 'sidecar', env: [{ name: 'A', value: '1' }] }],
              },
            },
          },
        } as any,
      },
      strategic,
    );
    assert.deepEqual(
      reordered.spec!.template.spec!.containers.map((c) => `${c.name}=${c.image}`),
      ['sidecar=side:1', 'app=app:2'],
      '$setElementOrder orders the merged list, untouched items stay',
    );
    const removed = await apps.patchNamespacedDeployment(
      { namespace, name: 'web', body: { spec: { template: { spec: { containers: [{ name: 'sidecar', $patch: 'delete' }] } } } } as any },
      strategic,
    );
    assert.deepEqual(
      removed.spec!.template.spec!.containers.map((c) => c.name),
      ['app'],
    );
  });

  it('server-side apply creates on first apply and records managedFields for the manager', async () => {
    const created = await applyAs('alice', widget('ssa-new', { size: 2, color: 'blue' }));
    assert.equal(created.spec.size, 2);
    const entry = created.metadata.managedFields.find((m: any) => m.manager === 'alice');
    assert.ok(entry, 'alice recorded');
    assert.equal(entry.operation, 'Apply');
    assert.equal(entry.fieldsType, 'FieldsV1');
    assert.deepEqual(entry.fieldsV1, { 'f:spec': { 'f:color': {}, 'f:size': {} } });
    const noManager = await fetch(`${server.url}/apis/example.test/v1/namespaces/${namespace}/widgets/ssa-x`, {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/apply-patch+yaml' },
      body: 'apiVersion: example.test/v1\nkind: Widget\nmetadata: {name: ssa-x}\nspec: {size: 1}\n',
    });
    assert.equal(noManager.status, 400, 'apply needs a fieldManager');
  });

  it('server-side apply conflicts when another manager owns a changed field, unless forced', async () => {
    await applyAs('alice', widget('ssa-c', { size: 2, color: 'blue' }));
    const sameValue = await applyAs('bob', widget('ssa-c', { size: 2 }));
    assert.equal(sameValue.spec.size, 2, 'applying the same value shares the field, no conflict');
    const conflict = await failure(applyAs('carol', widget('ssa-c', { size: 5 })));
    assert.equal(conflict.code, 409);
    assert.equal(conflict.status.reason, 'Conflict');
    assert.match(conflict.status.message, /conflict with "alice"/);
    assert.ok(conflict.status.details.causes.some((c: any) => c.field === '.spec.size' && c.reason === 'FieldManagerConflict'));
    const forced = await applyAs('carol', widget('ssa-c', { size: 5 }), true);
    assert.equal(forced.spec.size, 5);
    const owners = (field: string): string[] =>
      forced.metadata.managedFields.filter((m: any) => m.fieldsV1['f:spec']?.[field] !== undefined).map((m: any) => m.manager).sort();
    assert.deepEqual(owners('f:size'), ['carol'], 'forcing takes the field from alice and bob');
    assert.deepEqual(owners('f:color'), ['alice']);
  });

  it('an update by another manager takes ownership, so a later apply of that field conflicts', async () => {
    await applyAs('alice', widget('ssa-u', { size: 2 }));
    await co.patchNamespacedCustomObject({ ...w, name: 'ssa-u', body: { spec: { size: 3 } }, fieldManager: 'scaler' }, merge);
    const obj: any = await co.getNamespacedCustomObject({ ...w, name: 'ssa-u' });
    const scaler = obj.metadata.managedFields.find((m: any) => m.manager === 'scaler');
    assert.equal(scaler.operation, 'Update');
    assert.deepEqual(scaler.fieldsV1, { 'f:spec': { 'f:size': {} } });
    const conflict = await failure(applyAs('alice', widget('ssa-u', { size: 2 })));
    assert.equal(conflict.code, 409);
    assert.match(conflict.status.message, /conflict with "scaler"/);
  });

  it('server-side apply removes fields the manager stops applying, and keeps fields others own', async () => {
    await applyAs('alice', widget('ssa-r', { size: 2, name: 'abc', tags: ['t'] }));
    await applyAs('bob', widget('ssa-r', { size: 2, tags: ['t'] }));
    const after: any = await applyAs('alice', widget('ssa-r', { size: 2 }));
    assert.equal(after.spec.name, undefined, 'only alice owned name: removed');
    assert.deepEqual(after.spec.tags, ['t'], 'bob still owns tags: kept');
  });

  it('server-side apply merges associative lists (x-kubernetes-list-type: map) item by item, with per-item ownership', async () => {
    await applyAs('alice', widget('ssa-l', { size: 2 }));
    const applyStatus = async (manager: string, conditions: any[], force = false): Promise<Response> =>
      fetch(`${server.url}/apis/example.test/v1/namespaces/${namespace}/widgets/ssa-l/status?fieldManager=${manager}${force ? '&force=true' : ''}`, {
        method: 'PATCH',
        headers: { 'Content-Type': 'application/apply-patch+yaml' },
        body: JSON.stringify({ apiVersion: 'example.test/v1', kind: 'Widget', metadata: { name: 'ssa-l' }, status: { conditions } }),
      });
    assert.equal((await applyStatus('ready-ctl', [{ type: 'Ready', status: 'True' }])).status, 200);
    const both: any = await (await applyStatus('sync-ctl', [{ type: 'Synced', status: 'False' }])).json();
    assert.deepEqual(
      both.status.conditions.map((c: any) => `${c.type}=${c.status}`),
      ['Ready=True', 'Synced=False'],
      'a second manager adds its own item instead of replacing the list',
    );
    const ready = both.metadata.managedFields.find((m: any) => m.manager === 'ready-ctl');
    assert.deepEqual(ready.fieldsV1, { 'f:status': { 'f:conditions': { 'k:{"type":"Ready"}': { 'f:status': {}, 'f:type': {} } } } });
    const conflict = await applyStatus('sync-ctl', [{ type: 'Synced', status: 'False' }, { type: 'Ready', status: 'False' }]);
    assert.equal(conflict.status, 409);
    const conflictStatus: any = await conflict.json();
    assert.ok(conflictStatus.details.causes.some((c: any) => c.field === '.status.conditions[type="Ready"].status'), JSON.stringify(conflictStatus.details.causes));
    const dropped: any = await (await applyStatus('ready-ctl', [])).json();
    assert.deepEqual(
      dropped.status.conditions.map((c: any) => c.type),
      ['Synced'],
      'the item its only manager stopped applying is removed',
    );
  });

  it('server-side apply merges built-in keyed lists too (a Deployment’s containers by name)', async () => {
    await applyAs('alice', deployment('ssa-deploy', [{ name: 'app', image: 'app:1' }]));
    const sidecar = deployment('ssa-deploy', [{ name: 'sidecar', image: 'side:1' }]);
    delete sidecar.spec.replicas;
    const both = await applyAs('bob', sidecar);
    assert.deepEqual(
      both.spec.template.spec.containers.map((c: any) => `${c.name}=${c.image}`),
      ['app=app:1', 'sidecar=side:1'],
    );
    const conflict = await failure(applyAs('bob', deployment('ssa-deploy', [{ name: 'sidecar', image: 'side:1' }, { name: 'app', image: 'app:2' }])));
    assert.equal(conflict.code, 409);
    assert.ok(conflict.status.details.causes.some((c: any) => c.field === '.spec.template.spec.containers[name="app"].image'));
  });

  it('server-side apply on /status changes only status', async () => {
    await applyAs('alice', widget('ssa-s', { size: 2 }));
    const res = await fetch(`${server.url}/apis/example.test/v1/namespaces/${namespace}/widgets/ssa-s/status?fieldManager=operator`, {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/apply-patch+yaml' },
      body: JSON.stringify({ apiVersion: 'example.test/v1', kind: 'Widget', metadata: { name: 'ssa-s' }, spec: { size: 9 }, status: { phase: 'Ready' } }),
    });
    assert.equal(res.status, 200);
    const obj: any = await res.json();
    assert.deepEqual(obj.status, { phase: 'Ready' });
    assert.equal(obj.spec.size, 2);
    const entry = obj.metadata.managedFields.find((m: any) => m.manager === 'operator');
    assert.equal(entry.subresource, 'status');
  });
});
