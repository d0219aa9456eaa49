// List and watch on the test apiserver: resourceVersions, resuming, 410 Expired, bookmarks,
// timeouts, label and field selectors, and client-node's Watch and informer across a forced 410
// and a dropped connection.
/* eslint-disable @typescript-eslint/no-explicit-any -- Kubernetes JSON in tests */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CustomObjectsApi, makeInformer, PatchStrategy, setHeaderOptions, Watch, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import { failure, installWidgets, rawWatch, widget, WIDGETS } from './apiserver/fixtures.ts';
import { startApiServer, type ApiServer } from './apiserver/server.ts';
import { eventually, uniqueName } from './support/infra.ts';
import { kubeConfigFor } from './support/kube.ts';

const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
const names = (list: any): string[] => list.items.map((o: any) => o.metadata.name).sort();

describe('test apiserver: list and watch', () => {
  let server: ApiServer;
  let kc: KubeConfig;
  let co: CustomObjectsApi;

  before(async () => {
    server = await startApiServer();
    kc = kubeConfigFor(server);
    co = kc.makeApiClient(CustomObjectsApi);
    await installWidgets(kc);
  });
  after(() => server.close());

  const ns = (): { group: string; version: string; plural: string; namespace: string } => ({ ...WIDGETS, namespace: uniqueName('ns') });
  const path = (namespace: string, query: string): string => `/apis/example.test/v1/namespaces/${namespace}/widgets?${query}`;

  it('list returns the current resourceVersion; a watch from it streams only later events', async () => {
    const w = ns();
    const a: any = await co.createNamespacedCustomObject({ ...w, body: widget('a') });
    const list: any = await co.listNamespacedCustomObject(w);
    assert.equal(list.metadata.resourceVersion, a.metadata.resourceVersion);
    assert.equal(list.metadata.resourceVersion, server.resourceVersion());
    assert.equal(list.kind, 'WidgetList');
    const stream = await rawWatch(server, path(w.namespace, `watch=true&resourceVersion=${list.metadata.resourceVersion}`), {
      count: 2,
      onOpen: async () => {
        await co.createNamespacedCustomObject({ ...w, body: widget('b') });
        await co.patchNamespacedCustomObject({ ...w, name: 'a', body: { spec: { size: 7 } } }, merge);
      },
    });
    assert.deepEqual(
      stream.events.map((e) => [e.type, e.object.metadata.name]),
      [
        ['ADDED', 'b'],
        ['MODIFIED', 'a'],
      ],
    );
  });

  it('flushes watch headers at once and sends one JSON object per line', async () => {
    const w = ns();
    // fetch resolves only once headers arrive; nothing exists yet, so they must come before any event
    const stream = await rawWatch(server, path(w.namespace, `watch=true&resourceVersion=${server.resourceVersion()}`), {
      count: 2,
      onOpen: async () => {
        await co.createNamespacedCustomObject({ ...w, body: widget('first') });
        await co.createNamespacedCustomObject({ ...w, body: widget('second') });
      },
    });
    assert.equal(stream.status, 200);
    assert.equal(stream.contentType, 'application/json');
    assert.equal(stream.lines.length, 2);
    for (const line of stream.lines) {
      const e = JSON.parse(line);
      assert.deepEqual(Object.keys(e).sort(), ['object', 'type']);
    }
  });

  it('resumes a watch from an older resourceVersion with every event after it', async () => {
    const w = ns();
    const a: any = await co.createNamespacedCustomObject({ ...w, body: widget('a') });
    await co.createNamespacedCustomObject({ ...w, body: widget('b') });
    await co.deleteNamespacedCustomObject({ ...w, name: 'a' });
    const stream = await rawWatch(server, path(w.namespace, `watch=true&resourceVersion=${a.metadata.resourceVersion}`), { count: 2 });
    assert.deepEqual(
      stream.events.map((e) => [e.type, e.object.metadata.name]),
      [
        ['ADDED', 'b'],
        ['DELETED', 'a'],
      ],
    );
  });

  it('starts a watch without resourceVersion (or with "0") with synthetic ADDED events for what exists', async () => {
    const w = ns();
    await co.createNamespacedCustomObject({ ...w, body: widget('x') });
    await co.createNamespacedCustomObject({ ...w, body: widget('y') });
    const stream = await rawWatch(server, path(w.namespace, 'watch=true'), { count: 3, onOpen: () => co.createNamespacedCustomObject({ ...w, body: widget('z') }).then(() => undefined) });
    assert.deepEqual(
      stream.events.map((e) => [e.type, e.object.metadata.name]),
      [
        ['ADDED', 'x'],
        ['ADDED', 'y'],
        ['ADDED', 'z'],
      ],
    );
    const zero = await rawWatch(server, path(w.namespace, 'watch=true&resourceVersion=0'), { count: 3 });
    assert.deepEqual(
      zero.events.map((e) => [e.type, e.object.metadata.name]),
      [
        ['ADDED', 'x'],
        ['ADDED', 'y'],
        ['ADDED', 'z'],
      ],
    );
  });

  it('answers a watch from a compacted resourceVersion with 200, an ERROR 410 Expired event, then closes', async () => {
    const w = ns();
    const a: any = await co.createNamespacedCustomObject({ ...w, body: widget('old') });
    server.compact();
    const stream = await rawWatch(server, path(w.namespace, `watch=true&resourceVersion=${a.metadata.resourceVersion}`));
    assert.equal(stream.status, 200);
    assert.equal(stream.ended, true, 'the stream closes after the error');
    assert.equal(stream.events.length, 1);
    assert.equal(stream.events[0].type, 'ERROR');
    assert.deepEqual(
      { kind: stream.events[0].object.kind, code: stream.events[0].object.code, reason: stream.events[0].object.reason },
      { kind: 'Status', code: 410, reason: 'Expired' },
    );
    // a list made after compaction hands out a resourceVersion that resumes fine
    const list: any = await co.listNamespacedCustomObject(w);
    const fresh = await rawWatch(server, path(w.namespace, `watch=true&resourceVersion=${list.metadata.resourceVersion}`), {
      count: 1,
      onOpen: () => co.deleteNamespacedCustomObject({ ...w, name: 'old' }).then(() => undefined),
    });
    assert.equal(fresh.events[0].type, 'DELETED');
  });

  it('expires resourceVersions that fall out of the kept history (historyLimit)', async () => {
    const small = await startApiServer({ historyLimit: 3 });
    try {
      const skc = kubeConfigFor(small);
      await installWidgets(skc);
      const sco = skc.makeApiClient(CustomObjectsApi);
      const w = ns();
      const first: any = await sco.createNamespacedCustomObject({ ...w, body: widget('h0') });
      for (let i = 1; i <= 4; i++) await sco.createNamespacedCustomObject({ ...w, body: widget(`h${i}`) });
      const expired = await rawWatch(small, path(w.namespace, `watch=true&resourceVersion=${first.metadata.resourceVersion}`));
      assert.equal(expired.events[0]?.object.code, 410);
      const recent = await rawWatch(small, path(w.namespace, `watch=true&resourceVersion=${Number(small.resourceVersion()) - 2}`), { count: 2 });
      assert.deepEqual(
        recent.events.map((e) => e.object.metadata.name),
        ['h3', 'h4'],
      );
    } finally {
      await small.close();
    }
  });

  it('sends BOOKMARK events only to watches that allow them', async () => {
    const w = ns();
    const withBookmarks = await rawWatch(server, path(w.namespace, `watch=true&allowWatchBookmarks=true&resourceVersion=${server.resourceVersion()}`), {
      count: 1,
      onOpen: () => server.sendBookmarks(),
    });
    assert.equal(withBookmarks.events[0].type, 'BOOKMARK');
    assert.equal(withBookmarks.events[0].object.kind, 'Widget');
    assert.equal(withBookmarks.events[0].object.metadata.resourceVersion, server.resourceVersion());
    const without = await rawWatch(server, path(w.namespace, `watch=true&resourceVersion=${server.resourceVersion()}`), {
      count: 1,
      onOpen: async () => {
        server.sendBookmarks();
        await co.createNamespacedCustomObject({ ...w, body: widget('after-bookmark') });
      },
    });
    assert.equal(without.events[0].type, 'ADDED', 'no bookmark for a watch that did not ask');
  });

  it('sends bookmarks on its own at bookmarkIntervalMs', async () => {
    const ticking = await startApiServer({ bookmarkIntervalMs: 50 });
    try {
      const stream = await rawWatch(ticking, '/api/v1/namespaces/default/configmaps?watch=true&allowWatchBookmarks=true&resourceVersion=1', { count: 2 });
      assert.deepEqual(
        stream.events.map((e) => e.type),
        ['BOOKMARK', 'BOOKMARK'],
      );
    } finally {
      await ticking.close();
    }
  });

  it('ends a watch after timeoutSeconds', async () => {
    const w = ns();
    const started = Date.now();
    const stream = await rawWatch(server, path(w.namespace, `watch=true&timeoutSeconds=1&resourceVersion=${server.resourceVersion()}`), { timeoutMs: 5_000 });
    assert.equal(stream.ended, true, 'the server closed the stream');
    assert.ok(Date.now() - started >= 900, 'not before the timeout');
    assert.equal(server.watchCount(), 0);
  });

  it('filters lists by label selector: =, ==, !=, in, notin, key, !key', async () => {
    const w = ns();
    await co.createNamespacedCustomObject({ ...w, body: widget('gold', { size: 1 }, { labels: { tier: 'gold', env: 'prod' } }) });
    await co.createNamespacedCustomObject({ ...w, body: widget('silver', { size: 1 }, { labels: { tier: 'silver', env: 'prod' } }) });
    await co.createNamespacedCustomObject({ ...w, body: widget('bronze', { size: 1 }, { labels: { tier: 'bronze' } }) });
    await co.createNamespacedCustomObject({ ...w, body: widget('plain', { size: 1 }) });
    const sel = async (labelSelector: string): Promise<string[]> => names(await co.listNamespacedCustomObject({ ...w, labelSelector }));
    assert.deepEqual(await sel('tier=gold'), ['gold']);
    assert.deepEqual(await sel('tier==gold'), ['gold']);
    assert.deepEqual(await sel('tier!=gold'), ['bronze', 'plain', 'silver']);
    assert.deepEqual(await sel('tier in (gold, silver)'), ['gold', 'silver']);
    assert.deepEqual(await sel('tier notin (gold,silver)'), ['bronze', 'plain']);
    assert.deepEqual(await sel('env'), ['gold', 'silver']);
    assert.deepEqual(await sel('!env'), ['bronze', 'plain']);
    assert.deepEqual(await sel('env=prod,tier!=gold'), ['silver']);
    const bad = await failure(co.listNamespacedCustomObject({ ...w, labelSelector: 'tier in gold' }));
    assert.equal(bad.code, 400);
  });

  it('pages lists with limit and continue', async () => {
    const w = ns();
    for (const n of ['p1', 'p2', 'p3', 'p4', 'p5']) await co.createNamespacedCustomObject({ ...w, body: widget(n) });
    const first: any = await co.listNamespacedCustomObject({ ...w, limit: 2 });
    assert.deepEqual(names(first), ['p1', 'p2']);
    assert.equal(first.metadata.remainingItemCount, 3);
    const second: any = await co.listNamespacedCustomObject({ ...w, limit: 2, _continue: first.metadata.continue });
    assert.deepEqual(names(second), ['p3', 'p4']);
    const last: any = await co.listNamespacedCustomObject({ ...w, limit: 2, _continue: second.metadata.continue });
    assert.deepEqual(names(last), ['p5']);
    assert.equal(last.metadata.continue, undefined);
  });

  it('deletes a collection by label selector', async () => {
    const w = ns();
    await co.createNamespacedCustomObject({ ...w, body: widget('c1', { size: 1 }, { labels: { batch: 'old' } }) });
    await co.createNamespacedCustomObject({ ...w, body: widget('c2', { size: 1 }, { labels: { batch: 'old' } }) });
    await co.createNamespacedCustomObject({ ...w, body: widget('c3', { size: 1 }, { labels: { batch: 'new' } }) });
    await co.deleteCollectionNamespacedCustomObject({ ...w, labelSelector: 'batch=old' });
    assert.deepEqual(names(await co.listNamespacedCustomObject(w)), ['c3']);
  });

  it('filters lists by metadata.name and metadata.namespace field selectors, and refuses other fields', async () => {
    const w = ns();
    const other = ns();
    await co.createNamespacedCustomObject({ ...w, body: widget('one') });
    await co.createNamespacedCustomObject({ ...w, body: widget('two') });
    await co.createNamespacedCustomObject({ ...other, body: widget('one') });
    assert.deepEqual(names(await co.listNamespacedCustomObject({ ...w, fieldSelector: 'metadata.name=one' })), ['one']);
    assert.deepEqual(names(await co.listNamespacedCustomObject({ ...w, fieldSelector: 'metadata.name!=one' })), ['two']);
    const across: any = await co.listClusterCustomObject({ ...WIDGETS, fieldSelector: `metadata.namespace=${other.namespace}` });
    assert.deepEqual(
      across.items.map((o: any) => `${o.metadata.namespace}/${o.metadata.name}`),
      [`${other.namespace}/one`],
    );
    const bad = await failure(co.listNamespacedCustomObject({ ...w, fieldSelector: 'spec.size=3' }));
    assert.equal(bad.code, 400);
    assert.match(bad.status.message, /field label not supported/);
  });

  it('watches with selectors: an object that starts matching arrives as ADDED, one that stops as DELETED', async () => {
    const w = ns();
    await co.createNamespacedCustomObject({ ...w, body: widget('p', { size: 1 }, { labels: { tier: 'gold' } }) });
    await co.createNamespacedCustomObject({ ...w, body: widget('q', { size: 1 }, { labels: { tier: 'silver' } }) });
    const stream = await rawWatch(server, path(w.namespace, `watch=true&resourceVersion=${server.resourceVersion()}&labelSelector=tier%3Dgold`), {
      count: 3,
      onOpen: async () => {
        await co.patchNamespacedCustomObject({ ...w, name: 'q', body: { metadata: { labels: { tier: 'gold' } } } }, merge);
        await co.patchNamespacedCustomObject({ ...w, name: 'p', body: { metadata: { labels: { tier: 'silver' } } } }, merge);
        await co.patchNamespacedCustomObject({ ...w, name: 'p', body: { spec: { size: 2 } } }, merge); // not matching: no event
        await co.patchNamespacedCustomObject({ ...w, name: 'q', body: { spec: { size: 2 } } }, merge);
      },
    });
    assert.deepEqual(
      stream.events.map((e) => [e.type, e.object.metadata.name]),
      [
        ['ADDED', 'q'],
        ['DELETED', 'p'],
        ['MODIFIED', 'q'],
      ],
    );
    const byName = await rawWatch(server, path(w.namespace, 'watch=true&fieldSelector=metadata.name%3Dq'), { count: 1 });
    assert.deepEqual(
      byName.events.map((e) => [e.type, e.object.metadata.name]),
      [['ADDED', 'q']],
    );
  });

  it("delivers a 410 to client-node's Watch as an ERROR event with code 410, then ends it", async () => {
    const w = ns();
    const a: any = await co.createNamespacedCustomObject({ ...w, body: widget('gone') });
    server.compact();
    const seen: Array<[string, any]> = [];
    const done = await new Promise<unknown>((resolve) => {
      void new Watch(kc).watch(`/apis/example.test/v1/namespaces/${w.namespace}/widgets`, { resourceVersion: a.metadata.resourceVersion }, (type, obj) => seen.push([type, obj]), resolve);
    });
    assert.equal(done, null, 'the stream ended normally after the error event');
    assert.equal(seen.length, 1);
    assert.equal(seen[0]![0], 'ERROR');
    assert.equal(seen[0]![1].code, 410);
  });
});

describe('test apiserver: client-node informer', () => {
  let server: ApiServer;
  let kc: KubeConfig;
  let co: CustomObjectsApi;

  before(async () => {
    server = await startApiServer();
    kc = kubeConfigFor(server);
    co = kc.makeApiClient(CustomObjectsApi);
    await installWidgets(kc);
  });
  after(() => server.close());

  const startInformer = async (namespace: string) => {
    const w = { ...WIDGETS, namespace };
    const informer = makeInformer<KubernetesObject>(kc, `/apis/example.test/v1/namespaces/${namespace}/widgets`, () => co.listNamespacedCustomObject(w) as any);
    const log: string[] = [];
    const errors: unknown[] = [];
    informer.on('add', (o) => log.push(`add ${o.metadata!.name}`));
    informer.on('update', (o) => log.push(`update ${o.metadata!.name}`));
    informer.on('delete', (o) => log.push(`delete ${o.metadata!.name}`));
    informer.on('error', (e) => errors.push(e));
    await informer.start();
    const cache = (): Record<string, number> => Object.fromEntries(informer.list(namespace).map((o: any) => [o.metadata.name, o.spec.size]));
    return { informer, log, errors, cache, w };
  };

  it('resumes by itself after a dropped stream, from its resourceVersion, without relisting', async () => {
    const { informer, cache, w, errors } = await startInformer(uniqueName('ns'));
    try {
      await co.createNamespacedCustomObject({ ...w, body: widget('a', { size: 1 }) });
      await eventually(() => cache().a === 1, { timeoutMs: 5_000, what: 'informer sees a' });
      const before = server.stats();
      assert.equal(server.dropWatches(), 1, 'the server ended the informer watch');
      await eventually(() => server.watchCount() === 1, { timeoutMs: 5_000, what: 'informer re-watches' });
      await co.patchNamespacedCustomObject({ ...w, name: 'a', body: { spec: { size: 2 } } }, merge);
      await co.createNamespacedCustomObject({ ...w, body: widget('b', { size: 5 }) });
      await eventually(() => cache().a === 2 && cache().b === 5, { timeoutMs: 5_000, what: 'informer sees changes after the drop' });
      const afterStats = server.stats();
      assert.equal(afterStats.lists, before.lists, 'resumed from its resourceVersion, no relist');
      assert.equal(afterStats.expired, before.expired);
      assert.deepEqual(errors, []);
    } finally {
      await informer.stop();
    }
  });

  it('relists by itself after a forced 410 and ends with a correct cache', async () => {
    const { informer, cache, w, log } = await startInformer(uniqueName('ns'));
    try {
      await co.createNamespacedCustomObject({ ...w, body: widget('keep', { size: 1 }) });
      await co.createNamespacedCustomObject({ ...w, body: widget('drop', { size: 1 }) });
      await eventually(() => Object.keys(cache()).length === 2, { timeoutMs: 5_000, what: 'informer sees both' });
      const before = server.stats();
      server.compact();
      server.dropWatches(); // the informer resumes from a compacted resourceVersion: 410, then relist
      await eventually(() => server.stats().expired === before.expired + 1 && server.stats().lists === before.lists + 1, { timeoutMs: 5_000, what: '410 then relist' });
      await co.deleteNamespacedCustomObject({ ...w, name: 'drop' });
      await co.patchNamespacedCustomObject({ ...w, name: 'keep', body: { spec: { size: 9 } } }, merge);
      await eventually(() => JSON.stringify(cache()) === JSON.stringify({ keep: 9 }), { timeoutMs: 10_000, what: 'informer cache after 410' });
      assert.ok(log.includes('delete drop'));
    } finally {
      await informer.stop();
    }
  });

  it('after an abrupt connection loss client-node reports an error and stops; restarted, it gets 410, relists and repairs its cache', async () => {
    const { informer, cache, w, log, errors } = await startInformer(uniqueName('ns'));
    try {
      await co.createNamespacedCustomObject({ ...w, body: widget('a', { size: 1 }) });
      await co.createNamespacedCustomObject({ ...w, body: widget('b', { size: 1 }) });
      await eventually(() => Object.keys(cache()).length === 2, { timeoutMs: 5_000, what: 'informer sees both' });
      server.dropWatches({ abrupt: true });
      await eventually(() => errors.length === 1, { timeoutMs: 5_000, what: 'client-node reports the lost connection' });
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(server.watchCount(), 0, 'client-node does not re-watch after a non-410 error');
      // while it is down: one object goes, one changes, one arrives, and history is compacted
      await co.deleteNamespacedCustomObject({ ...w, name: 'a' });
      await co.patchNamespacedCustomObject({ ...w, name: 'b', body: { spec: { size: 4 } } }, merge);
      await co.createNamespacedCustomObject({ ...w, body: widget('c', { size: 3 }) });
      assert.deepEqual(cache(), { a: 1, b: 1 }, 'the stopped informer missed them');
      server.compact();
      const before = server.stats();
      await informer.start();
      await eventually(() => JSON.stringify(cache()) === JSON.stringify({ b: 4, c: 3 }), { timeoutMs: 10_000, what: 'repaired cache' });
      assert.equal(server.stats().expired, before.expired + 1, 'the restart resumed from its old resourceVersion and got 410');
      assert.ok(log.includes('delete a'), 'the relist reported the deletion it missed');
    } finally {
      await informer.stop();
    }
  });
});
