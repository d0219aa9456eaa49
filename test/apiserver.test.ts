// The test apiserver's storage semantics, driven through @kubernetes/client-node: versions and
// generation, optimistic concurrency, the status subresource, finalizers, errors as Status.
/* eslint-disable @typescript-eslint/no-explicit-any -- Kubernetes JSON in tests */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CoreV1Api, CustomObjectsApi, KubernetesObjectApi, PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';
import { failure, installWidgets, rawWatch, widget, WIDGETS } from './apiserver/fixtures.ts';
import { startApiServer, type ApiServer } from './apiserver/server.ts';
import { kubeConfigFor } from './support/kube.ts';
import { uniqueName } from './support/infra.ts';

const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

describe('test apiserver: storage and versions', () => {
  let server: ApiServer;
  let kc: KubeConfig;
  let co: CustomObjectsApi;
  let core: CoreV1Api;
  const namespace = uniqueName('ns');
  const w = { ...WIDGETS, namespace };

  before(async () => {
    server = await startApiServer({ now: () => new Date('2026-11-22T01:02:03.456Z') });
    kc = kubeConfigFor(server);
    co = kc.makeApiClient(CustomObjectsApi);
    core = kc.makeApiClient(CoreV1Api);
    await installWidgets(kc);
  });
  after(() => server.close());

  it('create sets uid, creationTimestamp from the clock, generation 1, and one global increasing resourceVersion', async () => {
    const a: any = await co.createNamespacedCustomObject({ ...w, body: widget('rv-a') });
    const cm = await core.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'rv-cm' }, data: { k: 'v' } } });
    const b: any = await co.createNamespacedCustomObject({ ...w, body: widget('rv-b') });
    assert.match(a.metadata.uid, /^[0-9a-f-]{36}$/);
    assert.notEqual(a.metadata.uid, b.metadata.uid);
    assert.equal(a.metadata.creationTimestamp, '2026-11-22T01:02:03Z');
    assert.equal(a.metadata.generation, 1);
    const rvs = [a.metadata.resourceVersion, cm.metadata!.resourceVersion!, b.metadata.resourceVersion].map(Number);
    assert.ok(rvs[0]! < rvs[1]! && rvs[1]! < rvs[2]!, `resourceVersions must increase across kinds: ${rvs}`);
    assert.equal(server.resourceVersion(), String(rvs[2]));
  });

  it('bumps generation only for changes outside metadata and status', async () => {
    const created: any = await co.createNamespacedCustomObject({ ...w, body: widget('gen') });
    const labelled: any = await co.patchNamespacedCustomObject({ ...w, name: 'gen', body: { metadata: { labels: { a: 'b' } } } }, merge);
    assert.equal(labelled.metadata.generation, 1, 'a label change is metadata');
    assert.notEqual(labelled.metadata.resourceVersion, created.metadata.resourceVersion);
    const statused: any = await co.patchNamespacedCustomObjectStatus({ ...w, name: 'gen', body: { status: { phase: 'Ready' } } }, merge);
    assert.equal(statused.metadata.generation, 1, 'a status change does not bump generation');
    const resized: any = await co.patchNamespacedCustomObject({ ...w, name: 'gen', body: { spec: { size: 4 } } }, merge);
    assert.equal(resized.metadata.generation, 2);
  });

  it('does not write an update that changes nothing: same resourceVersion, no watch event', async () => {
    const created: any = await co.createNamespacedCustomObject({ ...w, body: widget('noop', { size: 2 }) });
    const rv = created.metadata.resourceVersion;
    const same: any = await co.replaceNamespacedCustomObject({ ...w, name: 'noop', body: created });
    assert.equal(same.metadata.resourceVersion, rv);
    const samePatch: any = await co.patchNamespacedCustomObject({ ...w, name: 'noop', body: { spec: { size: 2 } } }, merge);
    assert.equal(samePatch.metadata.resourceVersion, rv);
    const stream = await rawWatch(server, `/apis/example.test/v1/namespaces/${namespace}/widgets?watch=true&resourceVersion=${rv}&fieldSelector=metadata.name=noop`, {
      count: 1,
      onOpen: async () => {
        await co.patchNamespacedCustomObject({ ...w, name: 'noop', body: { spec: { size: 2 } } }, merge); // no-op again
        await co.patchNamespacedCustomObject({ ...w, name: 'noop', body: { spec: { size: 5 } } }, merge);
      },
    });
    assert.equal(stream.events.length, 1);
    assert.equal(stream.events[0].type, 'MODIFIED');
    assert.equal(stream.events[0].object.spec.size, 5, 'the first event is the real change, not the no-op');
  });

  it('answers a PUT with a stale resourceVersion with 409 Conflict', async () => {
    const created: any = await co.createNamespacedCustomObject({ ...w, body: widget('stale') });
    await co.patchNamespacedCustomObject({ ...w, name: 'stale', body: { spec: { size: 6 } } }, merge);
    const { code, status } = await failure(co.replaceNamespacedCustomObject({ ...w, name: 'stale', body: { ...created, spec: { size: 7 } } }));
    assert.equal(code, 409);
    assert.equal(status.kind, 'Status');
    assert.equal(status.reason, 'Conflict');
    assert.equal(status.code, 409);
    assert.match(status.message, /the object has been modified/);
    const current: any = await co.getNamespacedCustomObject({ ...w, name: 'stale' });
    assert.equal(current.spec.size, 6, 'the stale write changed nothing');
  });

  it('generates names from generateName, and treats a uid in the body as a precondition', async () => {
    const a: any = await co.createNamespacedCustomObject({ ...w, body: { ...widget(''), metadata: { generateName: 'gen-' } } });
    const b: any = await co.createNamespacedCustomObject({ ...w, body: { ...widget(''), metadata: { generateName: 'gen-' } } });
    assert.match(a.metadata.name, /^gen-[a-z0-9]{5}$/);
    assert.notEqual(a.metadata.name, b.metadata.name);
    const wrongUid = await failure(
      co.replaceNamespacedCustomObject({ ...w, name: a.metadata.name, body: { ...a, metadata: { ...a.metadata, uid: '00000000-0000-0000-0000-000000000000' }, spec: { size: 9 } } }),
    );
    assert.equal(wrongUid.code, 409);
    assert.match(wrongUid.status.message, /Precondition failed: UID/);
  });

  it('requires a resourceVersion on PUT of a custom resource (422), not of a ConfigMap', async () => {
    await co.createNamespacedCustomObject({ ...w, body: widget('norv') });
    const { code, status } = await failure(co.replaceNamespacedCustomObject({ ...w, name: 'norv', body: widget('norv', { size: 9 }) }));
    assert.equal(code, 422);
    assert.equal(status.reason, 'Invalid');
    assert.equal(status.details.causes[0].field, 'metadata.resourceVersion');
    await core.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'norv' }, data: { a: '1' } } });
    const replaced = await core.replaceNamespacedConfigMap({ namespace, name: 'norv', body: { metadata: { name: 'norv' }, data: { a: '2' } } });
    assert.equal(replaced.data!.a, '2', 'built-ins allow unconditional updates');
  });

  it('treats a resourceVersion inside a patch body as a precondition', async () => {
    const created: any = await co.createNamespacedCustomObject({ ...w, body: widget('precond') });
    const rv = created.metadata.resourceVersion;
    const ok: any = await co.patchNamespacedCustomObject({ ...w, name: 'precond', body: { metadata: { resourceVersion: rv }, spec: { size: 8 } } }, merge);
    assert.equal(ok.spec.size, 8);
    const { code, status } = await failure(
      co.patchNamespacedCustomObject({ ...w, name: 'precond', body: { metadata: { resourceVersion: rv }, spec: { size: 9 } } }, merge),
    );
    assert.equal(code, 409);
    assert.equal(status.reason, 'Conflict');
    const jsonPatchStale = await failure(
      co.patchNamespacedCustomObject({ ...w, name: 'precond', body: [{ op: 'replace', path: '/metadata/resourceVersion', value: rv }] }),
    );
    assert.equal(jsonPatchStale.code, 409);
  });

  it('status subresource: the main resource ignores .status, /status changes only status', async () => {
    const created: any = await co.createNamespacedCustomObject({ ...w, body: { ...widget('st'), status: { phase: 'Forged' } } });
    assert.equal(created.status, undefined, 'create ignores status');
    const withStatus: any = await co.replaceNamespacedCustomObjectStatus({ ...w, name: 'st', body: { ...created, spec: { size: 9 }, status: { phase: 'Ready', count: 2 } } });
    assert.deepEqual(withStatus.status, { phase: 'Ready', count: 2 });
    assert.equal(withStatus.spec.size, 3, '/status ignores spec');
    assert.equal(withStatus.metadata.generation, 1);
    const main: any = await co.patchNamespacedCustomObject({ ...w, name: 'st', body: { spec: { size: 4 }, status: { phase: 'Hacked' } } }, merge);
    assert.equal(main.spec.size, 4);
    assert.deepEqual(main.status, { phase: 'Ready', count: 2 }, 'the main resource ignores status');
  });

  it('finalizers: DELETE marks (202), bumps generation, emits MODIFIED; finalizers may then only be removed; emptying them deletes', async () => {
    const created: any = await co.createNamespacedCustomObject({ ...w, body: widget('fin', { size: 3 }, { finalizers: ['example.test/a', 'example.test/b'] }) });
    const stream = rawWatch(server, `/apis/example.test/v1/namespaces/${namespace}/widgets?watch=true&resourceVersion=${created.metadata.resourceVersion}&fieldSelector=metadata.name=fin`, {
      count: 4,
    });
    const res = await fetch(`${server.url}/apis/example.test/v1/namespaces/${namespace}/widgets/fin`, { method: 'DELETE' });
    assert.equal(res.status, 202, 'Accepted: finalizers hold the object');
    const marked: any = await res.json();
    assert.ok(marked.metadata.deletionTimestamp);
    assert.equal(marked.metadata.generation, 2);
    const stillThere: any = await co.getNamespacedCustomObject({ ...w, name: 'fin' });
    assert.equal(stillThere.metadata.deletionTimestamp, marked.metadata.deletionTimestamp);
    const again: any = await co.deleteNamespacedCustomObject({ ...w, name: 'fin' });
    assert.equal(again.metadata.resourceVersion, marked.metadata.resourceVersion, 'a second DELETE changes nothing');

    const addFinalizer = await failure(
      co.patchNamespacedCustomObject({ ...w, name: 'fin', body: { metadata: { finalizers: ['example.test/a', 'example.test/b', 'example.test/c'] } } }, merge),
    );
    assert.equal(addFinalizer.code, 422);
    assert.match(addFinalizer.status.message, /no new finalizers/);
    const annotated: any = await co.patchNamespacedCustomObject({ ...w, name: 'fin', body: { metadata: { annotations: { note: 'going' } } } }, merge);
    assert.equal(annotated.metadata.annotations.note, 'going', 'other changes are still accepted, as on the real server');

    const one: any = await co.patchNamespacedCustomObject({ ...w, name: 'fin', body: { metadata: { finalizers: ['example.test/b'] } } }, merge);
    assert.deepEqual(one.metadata.finalizers, ['example.test/b']);
    await co.patchNamespacedCustomObject({ ...w, name: 'fin', body: { metadata: { finalizers: null } } }, merge);
    const gone = await failure(co.getNamespacedCustomObject({ ...w, name: 'fin' }));
    assert.equal(gone.code, 404);
    assert.deepEqual(
      (await stream).events.map((e) => e.type),
      ['MODIFIED', 'MODIFIED', 'MODIFIED', 'DELETED'],
    );
  });

  it('garbage-collects dependents whose owners are all gone, keeps those with a live owner, orphans on request', async () => {
    const owner: any = await co.createNamespacedCustomObject({ ...w, body: widget('owner') });
    const other = await core.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'other-owner' } } });
    const ref = (o: any, kind: string, apiVersion: string) => ({ apiVersion, kind, name: o.metadata.name, uid: o.metadata.uid, controller: kind === 'Widget' });
    const byWidget = ref(owner, 'Widget', 'example.test/v1');
    await core.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'child', ownerReferences: [byWidget] } } });
    await core.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'shared', ownerReferences: [byWidget, ref(other, 'ConfigMap', 'v1')] } } });
    await core.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'held', finalizers: ['example.test/hold'], ownerReferences: [byWidget] } } });
    await co.deleteNamespacedCustomObject({ ...w, name: 'owner' });
    assert.equal((await failure(core.readNamespacedConfigMap({ namespace, name: 'child' }))).code, 404, 'sole dependent deleted');
    assert.ok(await core.readNamespacedConfigMap({ namespace, name: 'shared' }), 'a dependent with a live owner stays');
    assert.ok((await core.readNamespacedConfigMap({ namespace, name: 'held' })).metadata!.deletionTimestamp, 'a dependent with finalizers is marked for deletion');

    const parent: any = await co.createNamespacedCustomObject({ ...w, body: widget('parent') });
    await core.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'orphan', ownerReferences: [ref(parent, 'Widget', 'example.test/v1')] } } });
    await co.deleteNamespacedCustomObject({ ...w, name: 'parent', propagationPolicy: 'Orphan' });
    const orphan = await core.readNamespacedConfigMap({ namespace, name: 'orphan' });
    assert.equal(orphan.metadata!.ownerReferences, undefined, 'orphaned: owner reference removed, object kept');
  });

  it('does not require namespaces to exist, unless asked (requireNamespaces: 404 NotFound)', async () => {
    const elsewhere = uniqueName('nowhere');
    await core.createNamespacedConfigMap({ namespace: elsewhere, body: { metadata: { name: 'x' } } });
    const strict = await startApiServer({ requireNamespaces: true });
    try {
      const skc = kubeConfigFor(strict);
      const score = skc.makeApiClient(CoreV1Api);
      const missing = await failure(score.createNamespacedConfigMap({ namespace: 'absent', body: { metadata: { name: 'x' } } }));
      assert.equal(missing.code, 404);
      assert.match(missing.status.message, /namespaces "absent" not found/);
      await score.createNamespace({ body: { metadata: { name: 'present' } } });
      await score.createNamespacedConfigMap({ namespace: 'present', body: { metadata: { name: 'x' } } });
    } finally {
      await strict.close();
    }
  });

  it('deleting a Namespace terminates it: content deleted (finalizers respected), new content refused (403), then it goes', async () => {
    const name = uniqueName('doomed');
    const ns = await core.createNamespace({ body: { metadata: { name } } });
    assert.equal(ns.status?.phase, 'Active');
    assert.equal(ns.metadata?.labels?.['kubernetes.io/metadata.name'], name);
    await core.createNamespacedConfigMap({ namespace: name, body: { metadata: { name: 'plain' } } });
    await co.createNamespacedCustomObject({ ...WIDGETS, namespace: name, body: widget('held', { size: 1 }, { finalizers: ['example.test/hold'] }) });
    await core.deleteNamespace({ name });
    const terminating = await core.readNamespace({ name });
    assert.equal(terminating.status?.phase, 'Terminating');
    assert.equal((await failure(core.readNamespacedConfigMap({ namespace: name, name: 'plain' }))).code, 404, 'content deleted');
    const refused = await failure(core.createNamespacedConfigMap({ namespace: name, body: { metadata: { name: 'late' } } }));
    assert.equal(refused.code, 403);
    assert.match(refused.status.message, /being terminated/);
    await co.patchNamespacedCustomObject({ ...WIDGETS, namespace: name, name: 'held', body: { metadata: { finalizers: null } } }, merge);
    assert.equal((await failure(core.readNamespace({ name }))).code, 404, 'the namespace goes with its last object');
  });

  it('serves KubernetesObjectApi (resource lookup through discovery): create, read, list, replace, delete', async () => {
    const objects = KubernetesObjectApi.makeApiClient(kc);
    const spec = { ...widget('generic', { size: 2 }), metadata: { name: 'generic', namespace, labels: { via: 'objects' } } };
    const created: any = await objects.create(spec);
    assert.equal(created.spec.color, 'red');
    const read: any = await objects.read({ apiVersion: 'example.test/v1', kind: 'Widget', metadata: { name: 'generic', namespace } });
    assert.equal(read.metadata.uid, created.metadata.uid);
    const listed = await objects.list('example.test/v1', 'Widget', namespace, undefined, undefined, undefined, undefined, 'via=objects');
    assert.deepEqual(
      listed.items.map((o) => o.metadata!.name),
      ['generic'],
    );
    const replaced: any = await objects.replace({ ...read, spec: { ...read.spec, size: 6 } });
    assert.equal(replaced.spec.size, 6);
    await objects.delete({ apiVersion: 'example.test/v1', kind: 'Widget', metadata: { name: 'generic', namespace } });
    assert.equal((await failure(objects.read({ apiVersion: 'example.test/v1', kind: 'Widget', metadata: { name: 'generic', namespace } }))).code, 404);
  });

  it('validates ObjectMeta like the real server: labels, finalizer names, owner references; refuses another API group in the body', async () => {
    const bad = await failure(
      co.createNamespacedCustomObject({
        ...w,
        body: widget('meta', { size: 1 }, {
          labels: { 'bad key!': 'x', ok: 'not valid!' },
          finalizers: ['unqualified'],
          ownerReferences: [
            { apiVersion: 'v1', kind: 'ConfigMap', name: 'a', uid: 'u1', controller: true },
            { apiVersion: 'v1', kind: 'ConfigMap', name: 'b', uid: 'u2', controller: true },
            { kind: 'ConfigMap', name: 'c' },
          ],
        }),
      }),
    );
    assert.equal(bad.code, 422);
    const fieldsOf = bad.status.details.causes.map((c: any) => c.field).sort();
    assert.deepEqual(fieldsOf, [
      'metadata.finalizers[0]',
      'metadata.labels',
      'metadata.labels',
      'metadata.ownerReferences',
      'metadata.ownerReferences[2].apiVersion',
      'metadata.ownerReferences[2].uid',
    ]);
    await co.createNamespacedCustomObject({ ...w, body: widget('meta-ok', { size: 1 }, { labels: { 'flashsale.dev/sale': 'a-b.c_d', empty: '' }, finalizers: ['flashsale.dev/cleanup'] }) });
    const wrongGroup = await failure(co.createNamespacedCustomObject({ ...w, body: { ...widget('grp'), apiVersion: 'other.test/v1' } }));
    assert.equal(wrongGroup.code, 400);
    assert.match(wrongGroup.status.message, /does not match the expected API version/);
  });

  it('answers errors with Status objects (404, 409 AlreadyExists, 400 namespace mismatch and bad JSON, 405, 413, 415)', async () => {
    const missing = await failure(co.getNamespacedCustomObject({ ...w, name: 'missing' }));
    assert.equal(missing.code, 404);
    assert.deepEqual(
      { kind: missing.status.kind, status: missing.status.status, reason: missing.status.reason, name: missing.status.details.name },
      { kind: 'Status', status: 'Failure', reason: 'NotFound', name: 'missing' },
    );
    await co.createNamespacedCustomObject({ ...w, body: widget('dup') });
    const dup = await failure(co.createNamespacedCustomObject({ ...w, body: widget('dup') }));
    assert.equal(dup.code, 409);
    assert.equal(dup.status.reason, 'AlreadyExists');
    const mismatch = await failure(co.createNamespacedCustomObject({ ...w, body: widget('mm', { size: 1 }, { namespace: 'other' }) }));
    assert.equal(mismatch.code, 400);
    const res = await fetch(`${server.url}/apis/nothing.test/v1/things`);
    assert.equal(res.status, 404);
    assert.equal(((await res.json()) as any).kind, 'Status');
    const base = `${server.url}/apis/example.test/v1/namespaces/${namespace}/widgets`;
    const raw = async (url: string, init: RequestInit): Promise<[number, any]> => {
      const r = await fetch(url, init);
      return [r.status, await r.json()];
    };
    const [badJson, badJsonStatus] = await raw(base, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{not json' });
    assert.deepEqual([badJson, badJsonStatus.kind, badJsonStatus.reason], [400, 'Status', 'BadRequest']);
    const [unknownPatch, unknownPatchStatus] = await raw(`${base}/dup`, { method: 'PATCH', headers: { 'Content-Type': 'text/plain' }, body: 'x' });
    assert.deepEqual([unknownPatch, unknownPatchStatus.reason], [415, 'UnsupportedMediaType']);
    const [notAllowed, notAllowedStatus] = await raw(`${base}/dup`, { method: 'POST', body: '{}' });
    assert.deepEqual([notAllowed, notAllowedStatus.reason], [405, 'MethodNotAllowed']);
    const [tooBig, tooBigStatus] = await raw(base, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ pad: 'x'.repeat(4 * 1024 * 1024) }) });
    assert.deepEqual([tooBig, tooBigStatus.reason], [413, 'RequestEntityTooLarge']);
  });
});
