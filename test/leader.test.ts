// Leader election under a sick apiserver. Unit part (injected clock): every lease request is
// aborted when the time left before the renew deadline runs out, leadership is dropped at the
// deadline even while a request hangs, and lease timing is monotonic. End to end: two real
// operator processes against the real apiserver, the leader talking through a TCP proxy that is
// then black-holed; the operators' own logs show the standby never reconciles while the old
// leader still does.
import assert from 'node:assert/strict';
import { createServer, connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { parse, stringify } from 'yaml';
import { ManualClock } from '../controller/operator/clock.ts';
import { createKubeClient, paths } from '../controller/operator/kube.ts';
import { LeaderElector, type LeaseSpec, type LeaseStore } from '../controller/operator/leader.ts';
import { leaseStore } from '../controller/operator/main.ts';
import { deleteNamespace, testCluster, type TestCluster } from './support/cluster.ts';
import { deleteRedisKeys, deleteTopics, dropDatabase, eventually, testConfig, testKafka, testRedis, uniqueName } from './support/infra.ts';
import { kubectlFor, type Kubectl } from './support/kubectl.ts';
import { startOperator, type OperatorProcess } from './support/operator.ts';

/** A Lease store in memory whose requests can be made to hang until aborted (a black-holed apiserver). */
class SickLeaseStore implements LeaseStore {
  lease: { spec: LeaseSpec; resourceVersion: string } | null = null;
  hang = false;
  private rv = 0;
  /** Every request: when it was sent, and when (clock time) its signal aborted it. */
  requests: { verb: string; sentAt: number; abortedAt?: number; signalled: boolean }[] = [];
  private readonly clock: ManualClock;
  constructor(clock: ManualClock) {
    this.clock = clock;
  }

  private call<T>(verb: string, signal: AbortSignal | undefined, fn: () => T): Promise<T> {
    const rec: { verb: string; sentAt: number; abortedAt?: number; signalled: boolean } = { verb, sentAt: this.clock.now(), signalled: !!signal };
    this.requests.push(rec);
    if (!this.hang) return Promise.resolve().then(fn);
    return new Promise<T>((_resolve, reject) => {
      signal?.addEventListener('abort', () => {
        rec.abortedAt = this.clock.now();
        reject(new Error('aborted'));
      });
    });
  }
  get(signal?: AbortSignal) {
    return this.call('get', signal, () => (this.lease ? structuredClone(this.lease) : null));
  }
  create(spec: LeaseSpec, signal?: AbortSignal) {
    return this.call('create', signal, () => {
      if (this.lease) throw new Error('AlreadyExists');
      this.lease = { spec, resourceVersion: String(++this.rv) };
    });
  }
  update(spec: LeaseSpec, resourceVersion: string, signal?: AbortSignal) {
    return this.call('update', signal, () => {
      if (this.lease?.resourceVersion !== resourceVersion) throw new Error('Conflict');
      this.lease = { spec, resourceVersion: String(++this.rv) };
    });
  }
}

/** Lets the elector's promise chains run after the clock fired its timers. */
const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};

const timing = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 };

describe('leader election: deadlines on an injected clock', () => {
  it('drops leadership at the renew deadline while the renewal hangs, and aborts the hanging request then', async () => {
    const clock = new ManualClock();
    const store = new SickLeaseStore(clock);
    const events: { what: string; at: number }[] = [];
    const a = new LeaderElector({
      store, identity: 'a', clock, ...timing,
      onStartedLeading: () => events.push({ what: '+', at: clock.now() }),
      onStoppedLeading: () => events.push({ what: '-', at: clock.now() }),
    });
    const t0 = clock.now();
    a.start();
    await settle();
    assert.equal(a.isLeader(), true);
    clock.advance(2_000); // a renewal round, answered
    await settle();
    const lastRenewSent = clock.now();
    assert.equal(store.lease?.spec.renewTime?.slice(0, 19), new Date(lastRenewSent).toISOString().slice(0, 19));
    store.hang = true; // from now on the apiserver never answers
    // Up to one millisecond before the deadline the replica still leads...
    clock.advance(timing.renewDeadlineMs - 1);
    await settle();
    assert.equal(a.isLeader(), true, 'still leading before the deadline');
    assert.deepEqual(events.map((e) => e.what), ['+']);
    // ...and at the deadline it stops, though every request since is still hanging.
    clock.advance(1);
    await settle();
    assert.equal(a.isLeader(), false);
    assert.deepEqual(events, [{ what: '+', at: t0 }, { what: '-', at: lastRenewSent + timing.renewDeadlineMs }]);
    const hung = store.requests.filter((r) => r.sentAt > lastRenewSent);
    assert.ok(hung.length >= 1, 'renewals were attempted while the apiserver hung');
    for (const r of hung) {
      assert.ok(r.signalled, 'every lease request carries an abort signal');
      assert.ok(r.abortedAt !== undefined && r.abortedAt <= lastRenewSent + timing.renewDeadlineMs, `request sent at +${r.sentAt - lastRenewSent} ms aborted by the deadline`);
    }
    await a.stop();
  });

  it('bounds each round by the time left before the deadline, not by a fixed timeout', async () => {
    const clock = new ManualClock();
    const store = new SickLeaseStore(clock);
    const a = new LeaderElector({ store, identity: 'a', clock, ...timing, onStartedLeading: () => {}, onStoppedLeading: () => {} });
    a.start();
    await settle();
    const renewedAt = clock.now();
    store.hang = true;
    clock.advance(timing.retryPeriodMs); // the next round starts 2 s after the renewal: 8 s are left
    await settle();
    const round = store.requests.at(-1);
    assert.equal(round?.sentAt, renewedAt + timing.retryPeriodMs);
    clock.advance(timing.renewDeadlineMs - timing.retryPeriodMs - 1);
    await settle();
    assert.equal(round?.abortedAt, undefined, 'not aborted before the deadline');
    clock.advance(1);
    await settle();
    assert.equal(round?.abortedAt, renewedAt + timing.renewDeadlineMs, 'aborted exactly when the time left ran out');
    await a.stop();
  });

  it('a candidate takes over only a whole lease duration after it last saw the record change, on the monotonic clock', async () => {
    // A clock whose wall time jumps an hour ahead (NTP step, VM resume) while monotonic time does not.
    class JumpingClock extends ManualClock {
      jump = 0;
      override now() {
        return super.now() + this.jump;
      }
    }
    const clock = new JumpingClock();
    const store = new SickLeaseStore(clock);
    const a = new LeaderElector({ store, identity: 'a', clock, ...timing, onStartedLeading: () => {}, onStoppedLeading: () => {} });
    const b = new LeaderElector({ store, identity: 'b', clock, ...timing, onStartedLeading: () => {}, onStoppedLeading: () => {} });
    assert.equal(await a.tryAcquireOrRenew(), true);
    assert.equal(await b.tryAcquireOrRenew(), false);
    clock.jump = 3_600_000;
    assert.equal(await b.tryAcquireOrRenew(), false, 'a wall-clock jump does not expire the lease');
    clock.advance(timing.leaseDurationMs - 1);
    assert.equal(await b.tryAcquireOrRenew(), false, 'not before a whole lease duration');
    clock.advance(1);
    assert.equal(await b.tryAcquireOrRenew(), true, 'takes over once the record stayed unchanged for the lease duration');
    assert.equal(store.lease?.spec.holderIdentity, 'b');
  });

  it('drops leadership even when its deadline timer fires a fraction of a millisecond early', async () => {
    // libuv counts whole milliseconds: a timer may run when performance.now() is still just short
    // of the time it was set for. This clock's monotonic time lags its timers by half a millisecond.
    class EarlyTimers extends ManualClock {
      override monotonic() {
        return super.monotonic() - 0.5;
      }
    }
    const clock = new EarlyTimers();
    const store = new SickLeaseStore(clock);
    const events: string[] = [];
    const a = new LeaderElector({ store, identity: 'a', clock, ...timing, onStartedLeading: () => events.push('+'), onStoppedLeading: () => events.push('-') });
    a.start();
    await settle();
    store.hang = true;
    clock.advance(timing.renewDeadlineMs);
    await settle();
    clock.advance(1);
    await settle();
    assert.deepEqual(events, ['+', '-'], 'lost within a millisecond of the deadline, not never');
    await a.stop();
  });

  it('a leader that learns another replica holds the lease stops at once', async () => {
    const clock = new ManualClock();
    const store = new SickLeaseStore(clock);
    const events: string[] = [];
    const a = new LeaderElector({ store, identity: 'a', clock, ...timing, onStartedLeading: () => events.push('+'), onStoppedLeading: () => events.push('-') });
    a.start();
    await settle();
    // Someone else wrote the Lease (e.g. a took too long and b took over).
    store.lease = { spec: { ...store.lease?.spec, holderIdentity: 'b', renewTime: 'x' }, resourceVersion: '99' };
    clock.advance(timing.retryPeriodMs);
    await settle();
    assert.deepEqual(events, ['+', '-']);
    await a.stop();
  });
});

/**
 * A TCP proxy (loopback) that can black-hole: afterwards it forwards nothing in either direction
 * and accepts new connections without ever answering, keeping every socket open — a partition in
 * which requests hang rather than fail.
 */
async function blackholeProxy(target: { host: string; port: number }) {
  let holed = false;
  const sockets = new Set<Socket>();
  const track = (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
  };
  const server = createServer((client) => {
    track(client);
    if (holed) return void client.resume(); // read and drop, never answer
    const upstream = connect(target.port, target.host);
    track(upstream);
    client.on('data', (c: Buffer) => void (holed || upstream.write(c)));
    upstream.on('data', (c: Buffer) => void (holed || client.write(c)));
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => holed || client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    blackhole: () => {
      holed = true;
    },
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** The pino JSON lines of an operator's output: message and time (ms). */
function records(text: string): { msg: string; at: number }[] {
  const out: { msg: string; at: number }[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const j = JSON.parse(line) as { msg?: string; time?: string | number };
      if (j.msg !== undefined && j.time !== undefined) out.push({ msg: j.msg, at: typeof j.time === 'number' ? j.time : Date.parse(j.time) });
    } catch {
      // not a log line
    }
  }
  return out;
}

describe('the Lease store on the real apiserver', () => {
  it('renews without stripping the labels, annotations and owners others set (the Helm chart owns the Lease)', async () => {
    const cluster = await testCluster();
    const kubectl = kubectlFor(cluster.kubeconfigYaml);
    const namespace = uniqueName('lease');
    try {
      await kubectl.ok(['create', 'namespace', namespace]);
      const labels = { 'app.kubernetes.io/instance': 'rel', 'app.kubernetes.io/managed-by': 'Helm' };
      const annotations = { 'meta.helm.sh/release-name': 'rel', 'meta.helm.sh/release-namespace': namespace };
      await kubectl.ok(['apply', '-f', '-'], { stdin: stringify({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'op', namespace, labels, annotations }, spec: {} }) });
      const store = leaseStore(createKubeClient(cluster.kc), namespace, 'op');
      for (const holder of ['a', 'b']) {
        const cur = await store.get();
        assert.ok(cur, 'the Lease is read');
        await store.update({ ...cur.spec, holderIdentity: holder, leaseDurationSeconds: 15, renewTime: new Date().toISOString().replace('Z', '000Z') }, cur.resourceVersion);
      }
      const live = JSON.parse(await kubectl.ok(['get', 'lease', 'op', '-n', namespace, '-o', 'json'])) as { metadata: { labels?: Record<string, string>; annotations?: Record<string, string> }; spec: LeaseSpec };
      assert.equal(live.spec.holderIdentity, 'b');
      assert.deepEqual(live.metadata.labels, labels);
      for (const [k, v] of Object.entries(annotations)) assert.equal(live.metadata.annotations?.[k], v, k);
    } finally {
      await deleteNamespace(cluster.kc, namespace).catch(() => {});
      kubectl.cleanup();
    }
  });
});

describe('leader election on the real apiserver: the leader is cut off by a black-holed proxy', () => {
  const config = testConfig();
  let kafka: ReturnType<typeof testKafka> | undefined;
  let redis: ReturnType<typeof testRedis> | undefined;
  let cluster: TestCluster;
  let kubectl: Kubectl;
  let namespace: string;
  const operators: OperatorProcess[] = [];
  let proxy: Awaited<ReturnType<typeof blackholeProxy>> | undefined;

  before(async () => {
    kafka = testKafka();
    redis = testRedis();
    cluster = await testCluster();
    kubectl = kubectlFor(cluster.kubeconfigYaml);
    namespace = uniqueName('le');
    // The node agent ignores this namespace: the sale's pods are never run (workers are not needed here).
    await kubectl.ok(['apply', '-f', '-'], { stdin: stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace, labels: { 'nodeagent.flashsale.dev/ignore': 'true' } } }) });
    await kubectl.ok(['apply', '--server-side', '--force-conflicts', '-f', new URL('../crds/flashsale.yaml', import.meta.url).pathname]);
    await kubectl.ok(['wait', '--for=condition=Established', 'crd/flashsales.flashsale.dev', '--timeout=60s'], { timeoutMs: 70_000 });
  });

  after(async () => {
    await Promise.allSettled(operators.map((o) => o.stop('SIGKILL')));
    await proxy?.close();
    if (namespace) {
      // No operator is left to remove the finalizer (Retain): drop it, or the namespace stays Terminating.
      await kubectl.run(['patch', 'flashsale', 'le', '-n', namespace, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
      await kubectl.run(['delete', 'flashsale', '--all', '-n', namespace, '--wait=false']);
      await deleteNamespace(cluster.kc, namespace).catch(() => {});
      if (kafka) await deleteTopics(kafka, `flashsale.${namespace}.`).catch(() => {});
      if (redis) await deleteRedisKeys(redis, [`fs:{${namespace}/*`, `fs:${namespace}/*`]).catch(() => {});
    }
    await dropDatabase(config).catch(() => {});
    kubectl?.cleanup();
    await kafka?.close();
    redis?.disconnect();
  });

  it('the standby never reconciles while the old leader still does', async (t) => {
    const leaseName = `lease-${namespace}`;
    const server = new URL(cluster.server);
    proxy = await blackholeProxy({ host: server.hostname, port: Number(server.port) });
    const viaProxy = parse(cluster.kubeconfigYaml) as { clusters: { cluster: { server: string } }[] };
    for (const c of viaProxy.clusters) c.cluster.server = `https://127.0.0.1:${proxy.port}`;
    // Renew deadline 3 s < lease 6 s: the old leader must stop 3 s before anyone may take over.
    const env = { LOG_LEVEL: 'debug', LEASE_DURATION: '6s', LEASE_RENEW_DEADLINE: '3s', LEASE_RETRY_PERIOD: '1s', SCALE_INTERVAL: '1s' };
    const startTimeoutMs = 90_000; // a loaded 2-core machine can take a while to start a Node process
    const a = await startOperator({ kubeconfigYaml: stringify(viaProxy), config, namespace, identity: 'op-a', leaseName, env, startTimeoutMs });
    operators.push(a);
    const aExit = new Promise<number | null>((r) => (a.proc.exitCode !== null ? r(a.proc.exitCode) : a.proc.once('exit', (code) => r(code))));
    const client = createKubeClient(cluster.kc);
    const holder = async () => (await client.request<{ spec: { holderIdentity?: string; leaseTransitions?: number } }>('GET', paths.lease(namespace, leaseName)).catch(() => undefined))?.spec;
    await eventually(async () => (await holder())?.holderIdentity === 'op-a', { timeoutMs: 30_000, what: 'op-a leading' });
    const b = await startOperator({ kubeconfigYaml: cluster.kubeconfigYaml, config, namespace, identity: 'op-b', leaseName, env, startTimeoutMs });
    operators.push(b);

    const sale = {
      apiVersion: 'flashsale.dev/v1alpha1', kind: 'FlashSale', metadata: { name: 'le', namespace },
      spec: { skus: [{ id: 'phone-x', stock: 10, timeoutBucket: '5m' }], timeoutBuckets: [{ name: '5m', delay: '5m' }], kafka: { partitions: 1, replicationFactor: 1 } },
    };
    await kubectl.ok(['apply', '-f', '-'], { stdin: JSON.stringify(sale) });
    const started = (logs: string) => records(logs).filter((r) => r.msg === 'reconcile started');
    // The leader reconciles the sale again every second (SCALE_INTERVAL).
    await eventually(() => started(a.logs()).length >= 3, { timeoutMs: 60_000, what: 'op-a reconciling' });
    assert.equal(started(b.logs()).length, 0, 'the standby does not reconcile while the leader renews');

    const cutAt = Date.now();
    proxy.blackhole();
    const code = await Promise.race([aExit, new Promise<'running'>((r) => setTimeout(() => r('running'), 30_000))]);
    assert.equal(code, 1, `the cut-off leader gave up (exit 1) on its own, with its lease requests hanging; its log:\n${a.logs().split('\n').filter((l) => !l.includes('reconcile ')).slice(-30).join('\n')}`);
    await eventually(() => started(b.logs()).length >= 1, { timeoutMs: 30_000, what: 'op-b reconciling' });
    assert.equal((await holder())?.holderIdentity, 'op-b');

    const ra = records(a.logs());
    const rb = records(b.logs());
    const aStop = ra.find((r) => r.msg.startsWith('lost leadership'))?.at;
    assert.ok(aStop !== undefined, `op-a logged losing leadership:\n${a.logs().slice(-2000)}`);
    assert.ok(aStop >= cutAt, 'op-a led until after the cut');
    // op-a's reconciles: each from its start to its finish, or to aStop when the exit cut it short.
    const aStarts = ra.filter((r) => r.msg === 'reconcile started').map((r) => r.at);
    const aFinishes = ra.filter((r) => r.msg === 'reconcile finished').map((r) => r.at);
    assert.ok(aStarts.every((t) => t <= aStop) && aFinishes.every((t) => t <= aStop), 'op-a did nothing after it stopped leading');
    // Not vacuous: op-a was still reconciling after it was cut off (a reconcile started after the
    // cut, or one in flight across it).
    const inFlightAtCut = aStarts.filter((t) => t <= cutAt).length > aFinishes.filter((t) => t <= cutAt).length;
    assert.ok(inFlightAtCut || aStarts.some((t) => t > cutAt), 'op-a was still reconciling while cut off');
    const bLeader = rb.find((r) => r.msg === 'became leader')?.at;
    const bStarts = rb.filter((r) => r.msg === 'reconcile started').map((r) => r.at);
    assert.ok(bLeader !== undefined && bStarts.length > 0);
    assert.ok(bLeader > aStop, `op-b became leader (${new Date(bLeader).toISOString()}) after op-a stopped (${new Date(aStop).toISOString()})`);
    assert.ok(Math.min(...bStarts) > aStop, 'op-b reconciled only after op-a stopped: no overlap');
    assert.ok(((await holder())?.leaseTransitions ?? 0) >= 1);
    const iso = (ms: number) => new Date(ms).toISOString().slice(11, 23);
    t.diagnostic(
      `cut ${iso(cutAt)}; op-a: ${aStarts.length} reconciles, last started ${iso(Math.max(...aStarts))}, lost leadership ${iso(aStop)}; ` +
        `op-b: became leader ${iso(bLeader)}, first reconcile ${iso(Math.min(...bStarts))} (${bLeader - aStop} ms after op-a stopped)`,
    );
  });
});

