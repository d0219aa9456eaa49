// Unit tests of the operator's pure parts and timing rules: decide, status, children plan, scaling
// and stabilization, the work queue and its backoff, leader election — all on a manual clock.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../controller/operator/clock.ts';
import { buildStatus, decide, FINALIZER, PAUSE_ANNOTATION, PAUSED_CONDITION, pausedStatus, planChildren, recommendations, rolloutState, setCondition, jsonEqual, type RawSale } from '../controller/operator/decide.ts';
import { ResilientInformer, type InformerLike } from '../controller/operator/informer.ts';
import { EventRecorder } from '../controller/operator/events.ts';
import { LeaderElector, microTime, type LeaseSpec, type LeaseStore } from '../controller/operator/leader.ts';
import { recommendReplicas, Stabilizer } from '../controller/operator/scaling.ts';
import { APPLIED_HASH_ANNOTATION, covers, desiredDeployment, desiredDisruptionBudget, desiredService, parseSecretRef, plannedWorkloads, workerSpec, type WorkerEnv } from '../controller/operator/workloads.ts';
import { TokenBucket, WorkQueue } from '../controller/operator/workqueue.ts';
import { isReservedPodLabel, validateFlashSale, type FlashSale } from '../controller/spec/flashsale.ts';
import { createLogger } from '../controller/log.ts';
import type { KubeConfig } from '@kubernetes/client-node';
import { createKubeClient, RequestRateLimiter, retryAfterMs, type KubeClient } from '../controller/operator/kube.ts';
import { KubeConfig as RealKubeConfig } from '@kubernetes/client-node';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { saleNames } from '../controller/spec/names.ts';

function rawSale(spec: Record<string, unknown> = {}, meta: Partial<RawSale['metadata']> = {}): RawSale {
  return {
    apiVersion: 'flashsale.dev/v1alpha1',
    kind: 'FlashSale',
    metadata: { name: 'sd', namespace: 'shop', uid: 'u-1', generation: 1, ...meta },
    spec: {
      skus: [
        { id: 'phone', stock: 10, timeoutBucket: '5m' },
        { id: 'book', stock: 20, timeoutBucket: '30m' },
      ],
      timeoutBuckets: [
        { name: '5m', delay: '5m' },
        { name: '30m', delay: '30m' },
      ],
      kafka: { partitions: 4, replicationFactor: 1 },
      workers: { orderWriter: { minReplicas: 1, maxReplicas: 3, lagThreshold: 100 }, timeoutCloser: { minReplicas: 1, maxReplicas: 2, lagThreshold: 50 } },
      ...spec,
    },
  };
}

const env: WorkerEnv = { image: 'img:1', kafkaBrokers: ['k:9092'], redisUrl: 'redis://r:6379', mysqlUrl: 'mysql://root@m:3306/fs', logLevel: 'info' };

function valid(raw = rawSale()): FlashSale {
  return validateFlashSale(raw, 'shop');
}

describe('decide', () => {
  it('provisions a valid sale and asks for the finalizer once', () => {
    const d = decide(rawSale());
    assert.equal(d.action, 'provision');
    assert.equal(d.action === 'provision' && d.addFinalizer, true);
    const again = decide(rawSale({}, { finalizers: [FINALIZER] }));
    assert.equal(again.action === 'provision' && again.addFinalizer, false);
  });

  it('reports an invalid spec with every precise problem and provisions nothing', () => {
    const d = decide(rawSale({ skus: [{ id: 'a', stock: 1, timeoutBucket: 'nope' }, { id: 'a', stock: 1, timeoutBucket: '5m' }] }));
    assert.equal(d.action, 'invalid');
    assert.ok(d.action === 'invalid');
    assert.ok(d.problems.some((p) => p.includes('spec.skus[0].timeoutBucket: unknown bucket "nope"')), d.problems.join('\n'));
    assert.ok(d.problems.some((p) => p.includes('spec.skus[1].id: duplicate SKU id "a"')), d.problems.join('\n'));
  });

  it('finalizes by the deletion policy, and the force annotation skips cleanup', () => {
    const deleting = { deletionTimestamp: '2026-01-01T00:00:00Z', finalizers: [FINALIZER] };
    assert.equal((decide(rawSale({}, deleting)) as { cleanup: string }).cleanup, 'retain');
    assert.equal((decide(rawSale({ deletionPolicy: 'Delete' }, deleting)) as { cleanup: string }).cleanup, 'delete-data');
    const forced = decide(rawSale({ deletionPolicy: 'Delete' }, { ...deleting, annotations: { 'flashsale.dev/force-delete': 'true' } }));
    assert.equal((forced as { cleanup: string }).cleanup, 'force');
    assert.equal(decide(rawSale({}, { deletionTimestamp: '2026-01-01T00:00:00Z', finalizers: ['other'] })).action, 'ignore');
  });

  it('pauses on the pause annotation before anything else but force-delete; a paused status keeps what was reported and the next round drops the condition', () => {
    const pause = { annotations: { [PAUSE_ANNOTATION]: 'true' } };
    const running = decide(rawSale({}, pause));
    assert.deepEqual([running.action, running.action === 'paused' && running.deleting, running.action === 'paused' && running.sale?.metadata.name], ['paused', false, 'sd']);
    const invalid = decide(rawSale({ skus: [] }, pause));
    assert.deepEqual([invalid.action, invalid.action === 'paused' && invalid.sale], ['paused', undefined], 'an invalid spec is not acted on either');
    const deleting = { deletionTimestamp: '2026-01-01T00:00:00Z', finalizers: [FINALIZER] };
    const held = decide(rawSale({ deletionPolicy: 'Delete' }, { ...deleting, ...pause }));
    assert.deepEqual([held.action, held.action === 'paused' && held.deleting], ['paused', true], 'no data deleted while paused');
    const forced = decide(rawSale({}, { ...deleting, annotations: { [PAUSE_ANNOTATION]: 'true', 'flashsale.dev/force-delete': 'true' } }));
    assert.equal((forced as { cleanup: string }).cleanup, 'force', 'force-delete touches no data, so it is honoured');
    assert.equal(decide(rawSale({}, { annotations: { [PAUSE_ANNOTATION]: 'false' } })).action, 'provision', 'only "true" pauses');

    const ok = <T,>(value: T) => ({ ok: true as const, value });
    const readyInput = { generation: 4, now: 't1', topics: ok([]), schema: ok({ version: 1 }), stock: ok([]), workloads: { deployments: [] } };
    const before = buildStatus(undefined, readyInput);
    const paused = pausedStatus(before, 5, 't2', false);
    assert.equal(paused.observedGeneration, 4, 'generation 5 was not acted on');
    assert.equal(paused.phase, before.phase);
    assert.deepEqual(paused.conditions?.filter((c) => c.type !== PAUSED_CONDITION), before.conditions, 'the other conditions as reported');
    const c = paused.conditions?.find((x) => x.type === PAUSED_CONDITION);
    assert.deepEqual([c?.status, c?.reason, c?.observedGeneration, c?.lastTransitionTime], ['True', 'AnnotationSet', 5, 't2']);
    assert.ok(jsonEqual(paused, pausedStatus(paused, 5, 't3', false)), 'an unchanged paused sale writes nothing');
    assert.match(pausedStatus(before, 5, 't2', true).conditions?.find((x) => x.type === PAUSED_CONDITION)?.message ?? '', /deletion waits until the annotation is removed/);
    const resumed = buildStatus(paused, { ...readyInput, generation: 5, now: 't4' });
    assert.equal(resumed.conditions?.some((x) => x.type === PAUSED_CONDITION), false);
    assert.equal(resumed.observedGeneration, 5);
  });
});

describe('scaling', () => {
  const bounds = { minReplicas: 1, maxReplicas: 5, lagThreshold: 100 };
  it('is ceil(lag / threshold) clamped to [min, max] and to the partitions', () => {
    assert.equal(recommendReplicas(0, bounds, 10), 1);
    assert.equal(recommendReplicas(100, bounds, 10), 1);
    assert.equal(recommendReplicas(101, bounds, 10), 2);
    assert.equal(recommendReplicas(450, bounds, 10), 5);
    assert.equal(recommendReplicas(10_000, bounds, 10), 5);
    assert.equal(recommendReplicas(10_000, bounds, 3), 3);
    assert.equal(recommendReplicas(0, { ...bounds, minReplicas: 0 }, 3), 0);
  });

  it('counts only overdue lag on delay topics', () => {
    const sale = valid();
    const n = saleNames(sale.metadata);
    const rec = recommendations(sale, [
      { group: n.groups.orderWriter, topic: n.topics.orders, lag: 250, overdue: 250 },
      { group: n.groups.timeoutCloser('5m'), topic: n.topics.delay('5m'), lag: 10_000, overdue: 0 },
      { group: n.groups.timeoutCloser('30m'), topic: n.topics.delay('30m'), lag: 10_000, overdue: 60 },
    ], 4);
    assert.equal(rec[n.workloads.orderWriter], 3);
    assert.equal(rec[n.workloads.timeoutCloser('5m')], 1);
    assert.equal(rec[n.workloads.timeoutCloser('30m')], 2);
  });

  it('scales up at once and down only after the window', () => {
    const clock = new ManualClock();
    const s = new Stabilizer(60_000, clock);
    assert.equal(s.stabilize('w', 1, undefined), 1);
    assert.equal(s.stabilize('w', 4, 1), 4);
    clock.advance(10_000);
    assert.equal(s.stabilize('w', 1, 4), 4, 'a lower recommendation inside the window keeps the size');
    clock.advance(30_000);
    assert.equal(s.stabilize('w', 2, 4), 4);
    clock.advance(25_000);
    // The 4 was recommended 65s ago: out of the window; the highest left is 2.
    assert.equal(s.stabilize('w', 1, 4), 2);
    clock.advance(61_000);
    assert.equal(s.stabilize('w', 1, 2), 1);
  });

  it('does not scale down right after a restart (no history yet)', () => {
    const clock = new ManualClock();
    const s = new Stabilizer(60_000, clock);
    assert.equal(s.stabilize('w', 1, 5), 5);
    clock.advance(61_000);
    assert.equal(s.stabilize('w', 1, 5), 1);
  });
});

describe('children', () => {
  /** A sale with no children yet. */
  const NONE = { deployments: [], services: [], disruptionBudgets: [] };
  /** The Deployments the first round of a sale applies. */
  const firstDeployments = (sale: FlashSale, workerEnv: WorkerEnv = env) =>
    planChildren(sale, workerEnv, {}, NONE).apply.map((a) => a.desired).filter((o) => o.kind === 'Deployment') as ReturnType<typeof desiredDeployment>[];

  it('plans a Deployment per workload (one closer per bucket), the API Service and the API PodDisruptionBudget, with owner references', () => {
    const sale = valid();
    const plan = planChildren(sale, env, {}, NONE);
    assert.ok(plan.apply.every((a) => a.existing === undefined));
    const created = plan.apply.map((a) => a.desired);
    const names = created.map((o) => `${o.kind}/${o.metadata?.name}`).sort();
    assert.deepEqual(names, ['Deployment/sd-api', 'Deployment/sd-compensator', 'Deployment/sd-order-writer', 'Deployment/sd-timeout-closer-30m', 'Deployment/sd-timeout-closer-5m', 'PodDisruptionBudget/sd-api', 'Service/sd-api']);
    for (const o of created) {
      assert.deepEqual(o.metadata?.ownerReferences, [{ apiVersion: 'flashsale.dev/v1alpha1', kind: 'FlashSale', name: 'sd', uid: 'u-1', controller: true, blockOwnerDeletion: true }]);
      assert.equal(o.metadata?.labels?.['flashsale.dev/sale'], 'sd');
      assert.match(o.metadata?.annotations?.[APPLIED_HASH_ANNOTATION] ?? '', /^[0-9a-f]{16}$/, 'apply configuration carries its hash');
    }
    const closer = created.find((o) => o.metadata?.name === 'sd-timeout-closer-5m') as ReturnType<typeof desiredDeployment>;
    const c = closer.spec?.template.spec?.containers[0];
    assert.deepEqual(c?.args, ['timeout-closer', '--bucket', '5m']);
    assert.equal(c?.securityContext?.readOnlyRootFilesystem, true);
    assert.equal(c?.securityContext?.allowPrivilegeEscalation, false);
    assert.deepEqual(c?.securityContext?.capabilities?.drop, ['ALL']);
    assert.equal(c?.readinessProbe?.httpGet?.path, '/readyz');
    assert.equal(c?.livenessProbe?.httpGet?.path, '/healthz');
    const spec = JSON.parse(c?.env?.find((e) => e.name === 'FLASHSALE_SPEC')?.value ?? '{}');
    const read = validateFlashSale(spec);
    assert.deepEqual([read.metadata.namespace, read.metadata.name], ['shop', 'sd'], 'workers can read their sale from FLASHSALE_SPEC');
    assert.deepEqual(read.spec.skus.map((k) => [k.id, k.timeoutBucket]), sale.spec.skus.map((k) => [k.id, k.timeoutBucket]));
    assert.deepEqual(read.spec.timeoutBuckets, sale.spec.timeoutBuckets);
    assert.equal(read.spec.perUserLimit, sale.spec.perUserLimit);
    // Only the API drains after SIGTERM (keeps answering while its pod leaves the endpoints).
    const drain = (name: string) => (created.find((o) => o.metadata?.name === name) as ReturnType<typeof desiredDeployment>).spec?.template.spec?.containers[0]?.env?.find((e) => e.name === 'DRAIN_DELAY_MS')?.value;
    assert.deepEqual(['sd-api', 'sd-order-writer', 'sd-timeout-closer-5m', 'sd-compensator'].map(drain), ['5000', undefined, undefined, undefined]);
  });

  it('a worker\'s pod template carries no stock numbers: a stock, replica, partition or suspend change rolls no pod; a new SKU does', () => {
    const sale = valid();
    const templates = (s: FlashSale, replicas: Record<string, number> = {}) =>
      Object.fromEntries(planChildren(s, env, replicas, NONE).apply.filter((a) => a.desired.kind === 'Deployment').map((a) => [a.desired.metadata?.name, JSON.stringify((a.desired as ReturnType<typeof desiredDeployment>).spec?.template)]));
    const before = templates(sale);
    for (const k of sale.spec.skus) assert.equal(workerSpec(sale, 'api').skus.find((x) => x.id === k.id)?.stock, 0, 'stock is read from Redis, never from the pod');
    const edited = valid(rawSale({
      skus: [{ id: 'phone', stock: 999, timeoutBucket: '5m', suspend: true }, { id: 'book', stock: 12345, timeoutBucket: '30m' }],
      kafka: { partitions: 8, replicationFactor: 1 },
      workers: { api: { replicas: 5 }, orderWriter: { minReplicas: 2, maxReplicas: 6, lagThreshold: 10 }, timeoutCloser: { minReplicas: 1, maxReplicas: 4, lagThreshold: 50 } },
      // The emergency stop is a switch in Redis: restarting every pod would be the opposite of a stop.
      suspend: true,
    }));
    assert.deepEqual(templates(edited, { 'sd-order-writer': 4 }), before, 'no template changed');
    const added = valid(rawSale({ skus: [{ id: 'phone', stock: 10, timeoutBucket: '5m' }, { id: 'book', stock: 20, timeoutBucket: '30m' }, { id: 'case', stock: 3, timeoutBucket: '5m' }] }));
    assert.notEqual(templates(added)['sd-api'], before['sd-api'], 'the API must learn a new SKU');
    assert.equal(workerSpec(sale, 'api').compensation, undefined, 'only the compensator reads compensation settings');
    assert.deepEqual(workerSpec(sale, 'compensator').compensation, sale.spec.compensation);
  });

  it("the API's PodDisruptionBudget selects exactly the API's pods and lets a drain take one at a time; its pods spread over nodes and zones", () => {
    const sale = valid();
    const pdb = desiredDisruptionBudget(sale);
    assert.equal(pdb.spec?.maxUnavailable, 1, 'one API pod down at a time; with one replica a drain still proceeds');
    assert.equal(pdb.spec?.minAvailable, undefined);
    assert.equal(pdb.spec?.unhealthyPodEvictionPolicy, 'AlwaysAllow', 'a crash-looping replica never blocks a drain');
    const selects = (labels: Record<string, string> | undefined) => Object.entries(pdb.spec?.selector?.matchLabels ?? {}).every(([k, v]) => labels?.[k] === v);
    const deployments = firstDeployments(sale);
    assert.deepEqual(deployments.filter((d) => selects(d.spec?.template.metadata?.labels)).map((d) => d.metadata?.name), ['sd-api'], 'the API pods and no consumer');
    assert.deepEqual(pdb.spec?.selector?.matchLabels, deployments.find((d) => d.metadata?.name === 'sd-api')?.spec?.selector.matchLabels, "the API Deployment's own selector");
    // The API's replicas spread over nodes and zones as a preference (a one-node cluster still runs
    // them all), each constraint over exactly the API's pods; no consumer is spread.
    const spread = deployments.map((d) => [d.metadata?.name, d.spec?.template.spec?.topologySpreadConstraints?.map((c) => `${c.topologyKey} ${c.whenUnsatisfiable} ${c.maxSkew} ${c.matchLabelKeys}`)]);
    assert.deepEqual(Object.fromEntries(spread), {
      'sd-api': ['kubernetes.io/hostname ScheduleAnyway 1 pod-template-hash', 'topology.kubernetes.io/zone ScheduleAnyway 1 pod-template-hash'],
      'sd-order-writer': undefined, 'sd-timeout-closer-5m': undefined, 'sd-timeout-closer-30m': undefined, 'sd-compensator': undefined,
    });
    for (const c of deployments.find((d) => d.metadata?.name === 'sd-api')!.spec!.template.spec!.topologySpreadConstraints!) assert.deepEqual(c.labelSelector?.matchLabels, pdb.spec?.selector?.matchLabels);
    // A rollout of the API never takes a replica away before its replacement is ready; the consumers keep Kubernetes' default.
    assert.deepEqual(Object.fromEntries(deployments.map((d) => [d.metadata?.name, d.spec?.strategy?.rollingUpdate])), {
      'sd-api': { maxUnavailable: 0, maxSurge: '25%' }, 'sd-order-writer': undefined, 'sd-timeout-closer-5m': undefined, 'sd-timeout-closer-30m': undefined, 'sd-compensator': undefined,
    });
    // Another sale of the namespace: its API pods are not this budget's.
    const other = valid(rawSale({}, { name: 'other', uid: 'u-2' }));
    assert.equal(selects(desiredDeployment(other, plannedWorkloads(other, {})[0]!, env).spec?.template.metadata?.labels), false);
  });

  it("gives each worker the spec's resources, or the default; the default is unchanged and a change rolls only that role", () => {
    const sale = valid();
    const resourcesOf = (s: FlashSale) =>
      Object.fromEntries(planChildren(s, env, {}, NONE).apply.filter((a) => a.desired.kind === 'Deployment').map((a) => [a.desired.metadata?.name, (a.desired as ReturnType<typeof desiredDeployment>).spec?.template.spec?.containers[0]?.resources]));
    const api = { requests: { cpu: '250m', memory: '256Mi' } };
    const other = { requests: { cpu: '100m', memory: '128Mi' } };
    assert.deepEqual(resourcesOf(sale), { 'sd-api': api, 'sd-order-writer': other, 'sd-timeout-closer-5m': other, 'sd-timeout-closer-30m': other, 'sd-compensator': other });
    const sized = valid(rawSale({
      workers: {
        api: { replicas: 2, resources: { requests: { cpu: 2, memory: '1Gi' }, limits: { memory: '1536Mi' } } },
        timeoutCloser: { resources: { limits: { cpu: '500m', memory: '256Mi' } } },
        compensator: { resources: { requests: { cpu: '50m' } } },
      },
    }));
    assert.deepEqual(resourcesOf(sized), {
      'sd-api': { requests: { cpu: '2', memory: '1Gi' }, limits: { memory: '1536Mi' } },
      'sd-order-writer': other,
      'sd-timeout-closer-5m': { limits: { cpu: '500m', memory: '256Mi' } },
      'sd-timeout-closer-30m': { limits: { cpu: '500m', memory: '256Mi' } },
      'sd-compensator': { requests: { cpu: '50m' } },
    }, 'the spec replaces the default as a whole; integers become quantity strings');
    // The apiserver stores quantities in its canonical form, which need not be the spec's:
    // equal amounts written differently must cause no apply.
    const stored = planChildren(sized, env, {}, NONE).apply.map((a) => structuredClone(a.desired)) as ReturnType<typeof desiredDeployment>[];
    const apiStored = stored.find((d) => d.metadata?.name === 'sd-api')!;
    const deployments = stored.filter((o) => o.kind === 'Deployment');
    const services = stored.filter((o) => o.kind === 'Service') as unknown as ReturnType<typeof desiredService>[];
    const disruptionBudgets = stored.filter((o) => o.kind === 'PodDisruptionBudget') as unknown as ReturnType<typeof desiredDisruptionBudget>[];
    apiStored.spec!.template.spec!.containers[0]!.resources = { requests: { cpu: '2000m', memory: '1024Mi' }, limits: { memory: '1.5Gi' } };
    assert.equal(planChildren(sized, env, {}, { deployments, services, disruptionBudgets }).apply.length, 0, 'equal amounts in another form are no drift');
    apiStored.spec!.template.spec!.containers[0]!.resources = { requests: { cpu: '1', memory: '1Gi' }, limits: { memory: '1536Mi' } };
    assert.deepEqual(planChildren(sized, env, {}, { deployments, services, disruptionBudgets }).apply.map((a) => a.desired.metadata?.name), ['sd-api'], 'another amount is drift');
  });

  it('takes connection URLs from Secrets when configured', () => {
    const sale = valid();
    const redisSecret = parseSecretRef('conn/redis-url');
    assert.deepEqual(redisSecret, { name: 'conn', key: 'redis-url' });
    assert.equal(parseSecretRef('no-key'), undefined);
    const [plan] = plannedWorkloads(sale, {});
    const d = desiredDeployment(sale, plan!, { ...env, redisSecret });
    const e = d.spec?.template.spec?.containers[0]?.env ?? [];
    assert.deepEqual(e.find((x) => x.name === 'REDIS_URL'), { name: 'REDIS_URL', valueFrom: { secretKeyRef: { name: 'conn', key: 'redis-url' } } });
    assert.equal(e.find((x) => x.name === 'MYSQL_URL')?.value, env.mysqlUrl);
  });

  it("puts every worker's pods where spec.placement says, and a sale without it keeps its template", () => {
    const sale = valid();
    const without = firstDeployments(sale);
    for (const d of without) assert.ok(!['nodeSelector', 'tolerations', 'priorityClassName'].some((k) => k in d.spec!.template.spec!), 'no placement: none of the fields');
    const placed = valid();
    placed.spec.placement = {
      nodeSelector: { 'node.kubernetes.io/pool': 'sale' },
      tolerations: [{ key: '', operator: 'Exists', effect: 'NoSchedule' }, { key: 'dedicated', operator: 'Equal', value: 'sale', effect: 'NoExecute', tolerationSeconds: 30 }],
      priorityClassName: 'flash-sale',
    };
    const deployments = firstDeployments(placed);
    assert.equal(deployments.length, without.length);
    for (const d of deployments) {
      const pod = d.spec!.template.spec!;
      assert.deepEqual(pod.nodeSelector, { 'node.kubernetes.io/pool': 'sale' }, d.metadata?.name);
      // The empty key is left out: Kubernetes stores it as absent, and sent on it would be drift every round.
      assert.deepEqual(pod.tolerations, [{ operator: 'Exists', effect: 'NoSchedule' }, { key: 'dedicated', operator: 'Equal', value: 'sale', effect: 'NoExecute', tolerationSeconds: 30 }]);
      assert.equal(pod.priorityClassName, 'flash-sale');
    }
    // As stored, nothing to apply; the placement changed, every Deployment again.
    const stored = deployments.map((d) => structuredClone(d));
    assert.equal(planChildren(placed, env, {}, { deployments: stored, services: [], disruptionBudgets: [] }).apply.filter((a) => a.desired.kind === 'Deployment').length, 0);
    const moved = structuredClone(placed);
    moved.spec.placement!.nodeSelector = { 'node.kubernetes.io/pool': 'sale-2' };
    assert.equal(planChildren(moved, env, {}, { deployments: stored, services: [], disruptionBudgets: [] }).apply.filter((a) => a.desired.kind === 'Deployment').length, deployments.length);
  });

  it("labels and annotates every worker's pods from spec.podMetadata; the operator's own labels are reserved", () => {
    const sale = valid();
    const plain = firstDeployments(sale);
    // Every label the operator puts on a pod is one the spec may not set (CRD rule and validateSpec).
    for (const d of plain) {
      for (const key of Object.keys(d.spec!.template.metadata!.labels!)) assert.ok(isReservedPodLabel(key), `${key} is reserved`);
      assert.ok(!('annotations' in d.spec!.template.metadata!), 'no podMetadata: no annotations field');
    }
    const tagged = valid();
    tagged.spec.podMetadata = { labels: { team: 'sales', 'flashsale.dev/role': 'spoofed' }, annotations: { 'sidecar.istio.io/inject': 'false' } };
    for (const d of firstDeployments(tagged)) {
      const meta = d.spec!.template.metadata!;
      const own = plain.find((p) => p.metadata?.name === d.metadata?.name)!.spec!.template.metadata!.labels!;
      assert.deepEqual(meta.labels, { team: 'sales', ...own }, "the operator's labels win over a spoofed one (had it passed validation)");
      assert.deepEqual(meta.annotations, { 'sidecar.istio.io/inject': 'false' });
      assert.deepEqual(d.spec!.selector, plain.find((p) => p.metadata?.name === d.metadata?.name)!.spec!.selector, 'the selector is untouched');
    }
  });

  it('pulls the image with the configured policy and Secrets, or leaves both to Kubernetes', () => {
    const sale = valid();
    const [plan] = plannedWorkloads(sale, {});
    const plain = desiredDeployment(sale, plan!, env).spec!.template.spec!;
    assert.ok(!('imagePullSecrets' in plain) && !('imagePullPolicy' in plain.containers[0]!), 'nothing set: the apply leaves both fields alone');
    const pod = desiredDeployment(sale, plan!, { ...env, imagePullPolicy: 'Always', imagePullSecrets: ['regcred', 'mirror'] }).spec!.template.spec!;
    assert.deepEqual(pod.imagePullSecrets, [{ name: 'regcred' }, { name: 'mirror' }]);
    assert.equal(pod.containers[0]!.imagePullPolicy, 'Always');
    // A Secret added to the list is a change of every Deployment (the kubelet needs it to pull).
    const before = firstDeployments(sale, { ...env, imagePullSecrets: ['regcred'] });
    const after = planChildren(sale, { ...env, imagePullSecrets: ['regcred', 'mirror'] }, {}, { deployments: before, services: [], disruptionBudgets: [] });
    assert.deepEqual(after.apply.filter((a) => a.desired.kind === 'Deployment').length, before.length);
  });

  it('applies only what the operator last applied differently or what drifted; server defaults and others\' fields cause no apply', () => {
    const sale = valid();
    const first = planChildren(sale, env, {}, NONE);
    const deployments = first.apply.map((a) => a.desired).filter((o) => o.kind === 'Deployment') as ReturnType<typeof desiredDeployment>[];
    const services = first.apply.map((a) => a.desired).filter((o) => o.kind === 'Service') as ReturnType<typeof desiredService>[];
    // What a real apiserver stores: the applied configuration plus defaults, status, clusterIP,
    // and other managers' fields (kubectl rollout restart's annotation).
    const stored = deployments.map((d) => {
      const copy = structuredClone(d);
      copy.metadata!.resourceVersion = '7';
      copy.metadata!.annotations = { ...copy.metadata!.annotations, 'deployment.kubernetes.io/revision': '1' };
      copy.spec!.template.metadata!.annotations = { 'kubectl.kubernetes.io/restartedAt': '2026-01-01T00:00:00Z' };
      copy.spec!.template.spec!.containers[0]!.imagePullPolicy = 'IfNotPresent';
      copy.spec!.template.spec!.containers[0]!.terminationMessagePath = '/dev/termination-log';
      copy.status = { readyReplicas: 1 };
      return copy;
    });
    const storedSvc = services.map((s) => ({ ...structuredClone(s), spec: { ...s.spec, clusterIP: '10.0.0.1' } }));
    // A budget's status moves with every API pod (the disruption controller's): never a reason to apply.
    const storedPdb = first.apply.map((a) => a.desired).filter((o) => o.kind === 'PodDisruptionBudget').map((b) => ({ ...structuredClone(b), status: { currentHealthy: 2, desiredHealthy: 1, disruptionsAllowed: 1, expectedPods: 2 } })) as ReturnType<typeof desiredDisruptionBudget>[];
    assert.equal(storedPdb.length, 1);
    const same = planChildren(sale, env, {}, { deployments: stored, services: storedSvc, disruptionBudgets: storedPdb });
    assert.deepEqual([same.apply.length, same.delete.length], [0, 0]);

    const ow = saleNames(sale.metadata).workloads.orderWriter;
    const scaled = planChildren(sale, env, { [ow]: 3 }, { deployments: stored, services: storedSvc, disruptionBudgets: storedPdb });
    assert.deepEqual(scaled.apply.map((u) => u.desired.metadata?.name), [ow]);
    const apply = scaled.apply[0]!.desired as ReturnType<typeof desiredDeployment>;
    assert.equal(apply.spec?.replicas, 3);
    assert.equal(apply.metadata?.resourceVersion, undefined, 'an apply configuration carries no resourceVersion');
    assert.equal(apply.spec?.template.metadata?.annotations, undefined, 'others\' template annotations are not in the apply configuration, so they survive');

    // Someone changed a field the operator owns (drift): applied again, though the hash matches.
    const drifted = structuredClone(stored);
    drifted[0]!.spec!.template.spec!.containers[0]!.image = 'other:1';
    assert.deepEqual(planChildren(sale, env, {}, { deployments: drifted, services: storedSvc, disruptionBudgets: storedPdb }).apply.map((u) => u.desired.metadata?.name), [drifted[0]!.metadata?.name]);
    // Another manager's env var or sidecar container survives server-side apply: not drift.
    const injected = structuredClone(stored);
    injected[0]!.spec!.template.spec!.containers[0]!.env!.push({ name: 'EXTRA', value: '1' });
    injected[0]!.spec!.template.spec!.containers.push({ name: 'sidecar', image: 'proxy:1' });
    assert.equal(planChildren(sale, env, {}, { deployments: injected, services: storedSvc, disruptionBudgets: storedPdb }).apply.length, 0);
    // A stored object applied by an older operator (no or another hash): applied again.
    const old = structuredClone(stored);
    delete old[1]!.metadata!.annotations![APPLIED_HASH_ANNOTATION];
    assert.deepEqual(planChildren(sale, env, {}, { deployments: old, services: storedSvc, disruptionBudgets: storedPdb }).apply.map((u) => u.desired.metadata?.name), [old[1]!.metadata?.name]);

    const oneBucket = valid(rawSale({ skus: [{ id: 'phone', stock: 10, timeoutBucket: '5m' }], timeoutBuckets: [{ name: '5m', delay: '5m' }] }));
    const shrunk = planChildren(oneBucket, env, {}, { deployments: stored, services: storedSvc, disruptionBudgets: storedPdb });
    assert.ok(shrunk.delete.some((d) => d.metadata?.name === 'sd-timeout-closer-30m'));
  });

  it('covers() compares arrays by length and objects by the desired keys', () => {
    assert.equal(covers({ a: 1, b: 2 }, { a: 1 }), true);
    assert.equal(covers({ a: 1 }, { a: 2 }), false);
    assert.equal(covers([1, 2], [1]), false);
    assert.equal(covers(undefined, { a: 1 }), false);
    // Named lists (containers, env, ports) match by name: others' extra entries are theirs.
    assert.equal(covers([{ name: 'sidecar', image: 'x' }, { name: 'api', image: 'a' }], [{ name: 'api', image: 'a' }]), true);
    assert.equal(covers([{ name: 'api', image: 'b' }], [{ name: 'api', image: 'a' }]), false);
    assert.equal(covers([{ name: 'A', value: '1' }], [{ name: 'A', value: '1' }, { name: 'B', value: '2' }]), false, 'an owned entry removed by someone else is drift');
    // Requests and limits compare as amounts (the apiserver stores them canonical); nothing else does.
    assert.equal(covers({ requests: { cpu: '500m', memory: '1Gi' } }, { requests: { cpu: '0.5', memory: '1024Mi' } }), true);
    assert.equal(covers({ limits: { cpu: '1' } }, { limits: { cpu: 1 } }), true);
    assert.equal(covers({ limits: { cpu: '1' } }, { limits: { cpu: '1001m' } }), false);
    assert.equal(covers({ image: '1' }, { image: '1.0' }), false);
  });
});

describe('rollout readiness (as kubectl rollout status)', () => {
  const dep = (spec: number, status: Record<string, unknown>, generation = 2) => ({ metadata: { name: 'd', generation }, spec: { replicas: spec }, status }) as never;
  it('is done only when the latest generation is observed and every replica is updated and available', () => {
    assert.equal(rolloutState(dep(2, { observedGeneration: 2, replicas: 2, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 2 })).state, 'done');
    assert.equal(rolloutState(dep(2, { observedGeneration: 1, replicas: 2, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 2 })).state, 'progressing', 'new generation not observed yet');
    assert.equal(rolloutState(dep(2, { observedGeneration: 2, replicas: 3, updatedReplicas: 2, readyReplicas: 3, availableReplicas: 3 })).state, 'progressing', 'an old replica still runs');
    assert.equal(rolloutState(dep(2, { observedGeneration: 2, replicas: 2, updatedReplicas: 1, readyReplicas: 2, availableReplicas: 2 })).state, 'progressing', 'ready but not updated');
    assert.equal(rolloutState(dep(2, { observedGeneration: 2, replicas: 2, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 1 })).state, 'progressing', 'ready but not yet available');
  });

  it('a rollout past its progress deadline is stuck: WorkloadsReady False ProgressDeadlineExceeded, phase Degraded', () => {
    const stuck = dep(1, { observedGeneration: 2, replicas: 1, updatedReplicas: 1, unavailableReplicas: 1, conditions: [{ type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded', message: 'ReplicaSet "d-1" has timed out progressing.' }] });
    assert.equal(rolloutState(stuck).state, 'stuck');
    const s = buildStatus(undefined, { generation: 1, now: 't', topics: { ok: true, value: [] }, schema: { ok: true, value: { version: 1 } }, stock: { ok: true, value: [] }, workloads: { deployments: [stuck] } });
    const w = s.conditions?.find((c) => c.type === 'WorkloadsReady');
    assert.equal(w?.status, 'False');
    assert.equal(w?.reason, 'ProgressDeadlineExceeded');
    assert.match(w?.message ?? '', /timed out progressing/);
    assert.equal(s.phase, 'Degraded');
  });

  it('pods the ReplicaSet cannot create: WorkloadsReady False ReplicaFailure with Kubernetes\' message, before any deadline', () => {
    const message = 'pods "d-1-x" is forbidden: no PriorityClass with name flash-sale was found';
    const failing = dep(2, { observedGeneration: 2, replicas: 0, conditions: [{ type: 'Progressing', status: 'True', reason: 'NewReplicaSetCreated' }, { type: 'ReplicaFailure', status: 'True', reason: 'FailedCreate', message }] });
    assert.deepEqual(rolloutState(failing), { state: 'failing', message: `d: ${message}` });
    const s = buildStatus(undefined, { generation: 1, now: 't', topics: { ok: true, value: [] }, schema: { ok: true, value: { version: 1 } }, stock: { ok: true, value: [] }, workloads: { deployments: [failing] } });
    const w = s.conditions?.find((c) => c.type === 'WorkloadsReady');
    assert.deepEqual([w?.status, w?.reason, w?.message], ['False', 'ReplicaFailure', `pods cannot be created (each ReplicaSet's first refusal; its Events have the latest): d: ${message}`]);
    assert.equal(s.phase, 'Degraded');
    // Once the ReplicaSet creates pods again, the controller sets the condition False or drops it.
    const healed = dep(2, { observedGeneration: 2, replicas: 2, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 2, conditions: [{ type: 'ReplicaFailure', status: 'False' }] });
    assert.equal(rolloutState(healed).state, 'done');
  });
});

describe('status', () => {
  const ok = <T>(value: T) => ({ ok: true as const, value });
  const readyDeployment = (name: string) => ({ metadata: { name, generation: 1 }, spec: { replicas: 1 }, status: { observedGeneration: 1, replicas: 1, updatedReplicas: 1, readyReplicas: 1, availableReplicas: 1 } }) as never;

  it('is Ready when every part is; an unchanged round keeps lastTransitionTime and compares equal', () => {
    const input = {
      generation: 2,
      now: '2026-01-01T00:00:00Z',
      topics: ok([{ name: 't', partitions: 4, purpose: 'orders' }]),
      schema: ok({ version: 2 }),
      stock: ok([{ id: 'a', stock: 10, remaining: 7 }, { id: 'b', stock: 5, remaining: 5 }]),
      workloads: { deployments: [readyDeployment('x')] },
    };
    const s1 = buildStatus(undefined, input);
    assert.equal(s1.phase, 'Ready');
    assert.equal(s1.observedGeneration, 2);
    assert.equal(s1.skuCount, 2);
    // Remaining stock and lag change with every order: metrics only, so selling writes no status.
    assert.deepEqual(s1.skus, [{ id: 'a', stock: 10 }, { id: 'b', stock: 5 }]);
    assert.equal(s1.remaining, undefined);
    assert.equal(s1.lag, undefined);
    const sold = buildStatus(s1, { ...input, now: '2026-01-01T00:01:00Z', stock: ok([{ id: 'a', stock: 10, remaining: 1 }, { id: 'b', stock: 5, remaining: 0 }]) });
    assert.ok(jsonEqual(s1, sold), 'units sold ⇒ same status ⇒ no write');
    const legacy = buildStatus({ ...s1, remaining: 12, lag: [{ group: 'g', lag: 3, overdue: 0 }] }, input);
    assert.equal(legacy.remaining, undefined, 'fields of an older operator are dropped');
    assert.equal(legacy.lag, undefined);
    assert.deepEqual(s1.conditions?.map((c) => [c.type, c.status]), [['TopicsReady', 'True'], ['StockReady', 'True'], ['SchemaReady', 'True'], ['WorkloadsReady', 'True'], ['Ready', 'True']]);
    const s2 = buildStatus(s1, { ...input, now: '2026-01-01T00:05:00Z' });
    assert.ok(jsonEqual(s1, s2), 'nothing changed ⇒ same status ⇒ no write');
  });

  it('Suspended is Ready with spec.suspend in effect; a SKU of its own shows in status.skus only; a failing part still shows Degraded; a round that could not set the switches keeps what was reported', () => {
    const input = {
      generation: 3, now: 't1', topics: ok([{ name: 't', partitions: 4, purpose: 'orders' }]), schema: ok({ version: 2 }),
      stock: ok([{ id: 'a', stock: 10, remaining: 7 }, { id: 'b', stock: 5, remaining: 5 }]), workloads: { deployments: [readyDeployment('x')] },
    };
    const ready = buildStatus(undefined, { ...input, suspension: { sale: false, skus: [] } });
    assert.equal(ready.phase, 'Ready');
    assert.equal(ready.suspended, false);
    assert.deepEqual(ready.skus, [{ id: 'a', stock: 10 }, { id: 'b', stock: 5 }], 'no suspended field where nothing is suspended');
    const oneSku = buildStatus(ready, { ...input, now: 't2', suspension: { sale: false, skus: ['b'] } });
    assert.equal(oneSku.phase, 'Ready', 'a suspended SKU leaves the sale Ready');
    assert.deepEqual(oneSku.skus, [{ id: 'a', stock: 10 }, { id: 'b', stock: 5, suspended: true }]);
    const stopped = buildStatus(ready, { ...input, now: 't2', suspension: { sale: true, skus: ['a', 'b'] } });
    assert.equal(stopped.phase, 'Suspended');
    assert.equal(stopped.suspended, true);
    assert.deepEqual(stopped.skus?.map((k) => k.suspended), [true, true]);
    const readyCondition = stopped.conditions?.find((c) => c.type === 'Ready');
    assert.equal(readyCondition?.status, 'True', 'every part runs: only new reservations are refused');
    assert.deepEqual(readyCondition, ready.conditions?.find((c) => c.type === 'Ready'), 'Ready unchanged (no second Event beside Suspended)');
    assert.ok(jsonEqual(stopped, buildStatus(stopped, { ...input, now: 't3', suspension: { sale: true, skus: ['a', 'b'] } })), 'an idle round writes nothing');
    const failing = buildStatus(stopped, { ...input, now: 't3', stock: { ok: false, reason: 'RedisUnavailable', message: 'connect ECONNREFUSED' } });
    assert.equal(failing.phase, 'Degraded');
    assert.equal(failing.suspended, true, 'not known this round: the last value Redis took stays');
    assert.deepEqual(failing.skus, stopped.skus);
    const resumed = buildStatus(stopped, { ...input, now: 't4', suspension: { sale: false, skus: [] } });
    assert.equal(resumed.phase, 'Ready');
    assert.equal(resumed.suspended, false);
    assert.ok(jsonEqual(resumed.skus, ready.skus));
  });

  it('maps a refused change to NotSupported and Degraded, keeping what was reported before', () => {
    const s1 = buildStatus(undefined, { generation: 1, now: 't1', topics: ok([{ name: 't', partitions: 4, purpose: 'orders' }]), workloads: { deployments: [] } });
    const s2 = buildStatus(s1, { generation: 2, now: 't2', topics: { ok: false, reason: 'NotSupported', message: 'Kafka cannot decrease partitions' } });
    const topics = s2.conditions?.find((c) => c.type === 'TopicsReady');
    assert.equal(topics?.reason, 'NotSupported');
    assert.equal(topics?.lastTransitionTime, 't2');
    assert.deepEqual(s2.topics, s1.topics);
    assert.equal(s2.phase, 'Degraded');
    assert.equal(s2.conditions?.find((c) => c.type === 'Ready')?.reason, 'NotSupported');
  });

  it('waits (Provisioning) while replicas are not ready', () => {
    const s = buildStatus(undefined, {
      generation: 1, now: 't', topics: ok([]), schema: ok({ version: 1 }), stock: ok([]),
      workloads: { deployments: [{ metadata: { name: 'x', generation: 1 }, spec: { replicas: 2 }, status: { observedGeneration: 1, replicas: 2, updatedReplicas: 2, readyReplicas: 1, availableReplicas: 1 } } as never] },
    });
    assert.equal(s.phase, 'Provisioning');
    const w = s.conditions?.find((c) => c.type === 'WorkloadsReady');
    assert.equal(w?.reason, 'Progressing');
    assert.match(w?.message ?? '', /x: 1 of 2 updated replicas available/);
  });

  it('Invalid carries the precise message on Ready', () => {
    const s = buildStatus(undefined, { generation: 1, now: 't', invalid: ['spec.skus[1].id: duplicate SKU id "a"'] });
    assert.equal(s.phase, 'Invalid');
    const ready = s.conditions?.find((c) => c.type === 'Ready');
    assert.equal(ready?.reason, 'InvalidSpec');
    assert.equal(ready?.message, 'spec.skus[1].id: duplicate SKU id "a"');
  });

  it('setCondition moves lastTransitionTime only on a status change', () => {
    const a = setCondition([], { type: 'Ready', status: 'False', reason: 'X', message: 'm' }, 't1');
    const b = setCondition(a, { type: 'Ready', status: 'False', reason: 'Y', message: 'n' }, 't2');
    assert.equal(b[0]?.lastTransitionTime, 't1');
    const c = setCondition(b, { type: 'Ready', status: 'True', reason: 'Z', message: 'o' }, 't3');
    assert.equal(c[0]?.lastTransitionTime, 't3');
  });
});

describe('work queue', () => {
  it('deduplicates a key and never hands one key to two workers', async () => {
    const q = new WorkQueue({ clock: new ManualClock() });
    q.add('a');
    q.add('a');
    q.add('b');
    assert.equal(q.len(), 2);
    assert.equal(await q.get(), 'a');
    q.add('a'); // changed while processing: comes back after done()
    assert.equal(q.len(), 1);
    assert.equal(await q.get(), 'b');
    q.done('b');
    assert.equal(q.len(), 0);
    q.done('a');
    assert.equal(q.len(), 1);
    assert.equal(await q.get(), 'a');
    q.done('a');
    q.shutdown();
    assert.equal(await q.get(), undefined);
  });

  it('backs off exponentially per key, capped, and forgets on success', () => {
    const clock = new ManualClock();
    const q = new WorkQueue({ clock, backoff: { baseDelayMs: 100, maxDelayMs: 1000 } });
    assert.deepEqual([1, 2, 3, 4, 5, 6].map(() => q.backoff.next('k')), [100, 200, 400, 800, 1000, 1000]);
    q.forget('k');
    assert.equal(q.addRateLimited('k'), 100);
    assert.equal(q.len(), 0);
    clock.advance(99);
    assert.equal(q.len(), 0);
    clock.advance(1);
    assert.equal(q.len(), 1);
    assert.equal(q.backoff.next('other'), 100, 'keys back off independently');
  });

  it('an overall token bucket bounds the retry rate across keys', () => {
    const clock = new ManualClock();
    const bucket = new TokenBucket(10, 3, clock);
    assert.deepEqual([bucket.reserve(), bucket.reserve(), bucket.reserve()], [0, 0, 0], 'burst');
    assert.equal(bucket.reserve(), 100, 'then one token per 1/qps');
    assert.equal(bucket.reserve(), 200);
    clock.advance(1_000);
    assert.equal(bucket.reserve(), 0, 'refilled');
    const q = new WorkQueue({ clock, backoff: { baseDelayMs: 1, maxDelayMs: 1 }, qps: 1, burst: 1 });
    assert.equal(q.addRateLimited('a'), 1);
    assert.equal(q.addRateLimited('b'), 1000, 'the second key waits for the bucket, not its own 1 ms backoff');
  });

  it('addAfter keeps the earliest pending time', () => {
    const clock = new ManualClock();
    const q = new WorkQueue({ clock });
    q.addAfter('k', 1000);
    q.addAfter('k', 5000);
    clock.advance(1000);
    assert.equal(q.len(), 1);
    assert.equal(q.delayedLen(), 0);
  });
});

class MemoryLeaseStore implements LeaseStore {
  lease: { spec: LeaseSpec; resourceVersion: string } | null = null;
  private rv = 0;
  writes = 0;
  async get() {
    return this.lease ? structuredClone(this.lease) : null;
  }
  async create(spec: LeaseSpec) {
    if (this.lease) throw new Error('AlreadyExists');
    this.writes++;
    this.lease = { spec, resourceVersion: String(++this.rv) };
  }
  async update(spec: LeaseSpec, resourceVersion: string) {
    if (this.lease?.resourceVersion !== resourceVersion) throw new Error('Conflict');
    for (const t of [spec.renewTime, spec.acquireTime]) if (t) assert.match(t, /\.\d{6}Z$/, 'MicroTime has six fractional digits');
    this.writes++;
    this.lease = { spec, resourceVersion: String(++this.rv) };
  }
}

describe('leader election', () => {
  const timing = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 };

  it('formats MicroTime with six fractional digits', () => {
    assert.equal(microTime(Date.UTC(2026, 0, 2, 3, 4, 5, 678)), '2026-01-02T03:04:05.678000Z');
  });

  it('one leader; the other takes over only after the lease expired unrenewed', async () => {
    const clock = new ManualClock();
    const store = new MemoryLeaseStore();
    const mk = (identity: string) => new LeaderElector({ store, identity, clock, ...timing, onStartedLeading: () => {}, onStoppedLeading: () => {} });
    const a = mk('a');
    const b = mk('b');
    assert.equal(await a.tryAcquireOrRenew(), true);
    assert.equal(await b.tryAcquireOrRenew(), false);
    clock.advance(2_000);
    assert.equal(await a.tryAcquireOrRenew(), true, 'renews');
    assert.equal(await b.tryAcquireOrRenew(), false);
    // a dies: b sees the same record for a whole lease duration, then takes it.
    clock.advance(14_000);
    assert.equal(await b.tryAcquireOrRenew(), false, 'not before the lease duration');
    clock.advance(1_000);
    assert.equal(await b.tryAcquireOrRenew(), true, 'takes over at expiry');
    assert.equal(store.lease?.spec.holderIdentity, 'b');
    assert.equal(store.lease?.spec.leaseTransitions, 1);
    assert.equal(await a.tryAcquireOrRenew(), false, 'the old leader does not get it back');
  });

  it('the run loop signals leadership; stop() releases the lease for an immediate takeover', async () => {
    const clock = new ManualClock();
    const store = new MemoryLeaseStore();
    const events: string[] = [];
    const a = new LeaderElector({ store, identity: 'a', clock, ...timing, onStartedLeading: () => events.push('a+'), onStoppedLeading: () => events.push('a-') });
    a.start();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(events, ['a+']);
    assert.equal(a.isLeader(), true);
    await a.stop();
    assert.equal(store.lease?.spec.holderIdentity, null);
    const b = new LeaderElector({ store, identity: 'b', clock, ...timing, onStartedLeading: () => {}, onStoppedLeading: () => {} });
    assert.equal(await b.tryAcquireOrRenew(), true, 'released lease is taken at once');
  });

  it('a leader that cannot renew within the deadline stops leading', async () => {
    const clock = new ManualClock();
    const store = new MemoryLeaseStore();
    const events: string[] = [];
    const a = new LeaderElector({ store, identity: 'a', clock, ...timing, onStartedLeading: () => events.push('+'), onStoppedLeading: () => events.push('-') });
    a.start();
    await new Promise((r) => setImmediate(r));
    store.get = async () => {
      throw new Error('apiserver unreachable');
    };
    for (let i = 0; i < 6; i++) {
      clock.advance(2_000);
      await new Promise((r) => setImmediate(r));
    }
    assert.deepEqual(events, ['+', '-']);
    await a.stop();
  });
});

describe('resilient informer', () => {
  class FakeInformer implements InformerLike<{ metadata: { name: string } }> {
    starts = 0;
    handlers: Record<string, ((x: never) => void)[]> = {};
    on(verb: string, cb: (x: never) => void) {
      (this.handlers[verb] ??= []).push(cb);
    }
    emit(verb: string, x: unknown) {
      for (const cb of this.handlers[verb] ?? []) cb(x as never);
    }
    async start() {
      this.starts++;
    }
    async stop() {}
    list() {
      return [];
    }
  }

  it('restarts a stopped informer with doubling backoff, reset by a delivered event', async () => {
    const clock = new ManualClock();
    const fake = new FakeInformer();
    const seen: string[] = [];
    const inf = new ResilientInformer<{ metadata: { name: string } }>({
      kc: {} as KubeConfig, client: {} as KubeClient, path: '/x', logger: createLogger('silent'), clock, minBackoffMs: 100, maxBackoffMs: 400,
      make: () => fake,
      onChange: (o, verb) => seen.push(`${verb}:${o.metadata.name}`),
    });
    await inf.start();
    assert.equal(fake.starts, 1);
    fake.emit('error', new Error('connection reset'));
    clock.advance(99);
    assert.equal(fake.starts, 1);
    clock.advance(1);
    assert.equal(fake.starts, 2, 'restarted after 100 ms');
    fake.emit('error', new Error('again'));
    clock.advance(199);
    assert.equal(fake.starts, 2);
    clock.advance(1);
    assert.equal(fake.starts, 3, 'then after 200 ms');
    for (let i = 0; i < 3; i++) {
      fake.emit('error', new Error('down'));
      clock.advance(400);
    }
    assert.equal(fake.starts, 6, 'capped at 400 ms');
    fake.emit('add', { metadata: { name: 'a' } });
    assert.deepEqual(seen, ['add:a']);
    fake.emit('error', new Error('after recovery'));
    clock.advance(100);
    assert.equal(fake.starts, 7, 'an event resets the backoff');
    await inf.stop();
    fake.emit('error', new Error('after stop'));
    clock.advance(1000);
    assert.equal(fake.starts, 7, 'a stopped informer is not restarted');
  });
});

/** An informer stand-in whose events the test emits by hand. */
function eventSource<Obj>(): { fake: InformerLike<Obj>; emit: (verb: string, o: Obj) => void } {
  const handlers: Record<string, ((x: Obj) => void)[]> = {};
  const fake: InformerLike<Obj> = {
    on: ((verb: string, cb: (x: Obj) => void) => void (handlers[verb] ??= []).push(cb)) as InformerLike<Obj>['on'],
    start: async () => {},
    stop: async () => {},
    list: () => [],
  };
  return { fake, emit: (verb, o) => handlers[verb]?.forEach((cb) => cb(o)) };
}

describe('informer predicates', () => {
  it('drops updates whose fingerprint did not change (status-only), delivers spec changes and deletes', async () => {
    type Obj = { metadata: { name: string; namespace: string; generation: number }; status?: unknown };
    const { fake, emit } = eventSource<Obj>();
    const seen: string[] = [];
    const inf = new ResilientInformer<Obj>({
      kc: {} as KubeConfig, client: {} as KubeClient, path: '/x', logger: createLogger('silent'), clock: new ManualClock(), make: () => fake,
      fingerprint: (o) => String(o.metadata.generation),
      onChange: (o, verb) => seen.push(`${verb}:${o.metadata.name}@${o.metadata.generation}`),
    });
    await inf.start();
    const meta = { name: 's', namespace: 'ns' };
    emit('add', { metadata: { ...meta, generation: 1 } });
    emit('update', { metadata: { ...meta, generation: 1 }, status: { phase: 'Ready' } });
    emit('update', { metadata: { ...meta, generation: 2 } });
    emit('delete', { metadata: { ...meta, generation: 2 } });
    emit('add', { metadata: { ...meta, generation: 2 } });
    assert.deepEqual(seen, ['add:s@1', 'update:s@2', 'delete:s@2', 'add:s@2']);
    await inf.stop();
  });

  it('answers get and byIndex from what the events delivered: updates move an object between keys, deletes remove it', async () => {
    type Obj = { metadata: { name: string; namespace: string; owner?: string }; v?: number };
    const { fake, emit } = eventSource<Obj>();
    const inf = new ResilientInformer<Obj>({
      kc: {} as KubeConfig, client: {} as KubeClient, path: '/x', logger: createLogger('silent'), clock: new ManualClock(), make: () => fake,
      // Status-only updates are dropped for onChange, but the cache must still hold the newest object.
      fingerprint: (o) => o.metadata.owner ?? '',
      indexBy: (o) => (o.metadata.owner ? [o.metadata.owner] : []),
      onChange: () => {},
    });
    await inf.start();
    const names = (key: string) => inf.byIndex(key).map((o) => `${o.metadata.namespace}/${o.metadata.name}`).sort();
    emit('add', { metadata: { name: 'a', namespace: 'n1', owner: 'u1' } });
    emit('add', { metadata: { name: 'a', namespace: 'n2', owner: 'u1' } });
    emit('add', { metadata: { name: 'b', namespace: 'n1', owner: 'u2' } });
    emit('add', { metadata: { name: 'c', namespace: 'n1' } });
    assert.deepEqual(names('u1'), ['n1/a', 'n2/a']);
    assert.deepEqual(names('u2'), ['n1/b']);
    emit('update', { metadata: { name: 'a', namespace: 'n1', owner: 'u1' }, v: 2 });
    assert.equal(inf.get('n1', 'a')?.v, 2);
    assert.equal(inf.byIndex('u1').find((o) => o.metadata.namespace === 'n1')?.v, 2);
    emit('update', { metadata: { name: 'b', namespace: 'n1', owner: 'u1' } });
    assert.deepEqual(names('u1'), ['n1/a', 'n1/b', 'n2/a']);
    assert.deepEqual(names('u2'), []);
    emit('delete', { metadata: { name: 'a', namespace: 'n2', owner: 'u1' } });
    assert.deepEqual(names('u1'), ['n1/a', 'n1/b']);
    assert.equal(inf.get('n2', 'a'), undefined);
    assert.equal(inf.get('n1', 'c')?.metadata.name, 'c');
    assert.equal(inf.get('n2', 'c'), undefined);
    await inf.stop();
  });
});

describe('kube client', () => {
  it('a token bucket bounds the request rate (QPS/burst, as client-go)', () => {
    const clock = new ManualClock();
    const l = new RequestRateLimiter(5, 2, clock);
    assert.deepEqual([l.reserve(), l.reserve(), l.reserve(), l.reserve()], [0, 0, 200, 400]);
    clock.advance(1_000);
    assert.equal(l.reserve(), 0);
  });

  it('Retry-After is read in seconds, bounded, 1 s when absent or a date', () => {
    assert.equal(retryAfterMs('3'), 3_000);
    assert.equal(retryAfterMs(undefined), 1_000);
    assert.equal(retryAfterMs('Wed, 21 Oct 2015 07:28:00 GMT'), 1_000);
    assert.equal(retryAfterMs('3600'), 30_000);
  });

  it('retries a request answered 429 after its Retry-After, and gives up after maxRetries with the status', async () => {
    let calls = 0;
    let failFirst = 2;
    const server = createServer((req, res) => {
      calls++;
      if (failFirst-- > 0) {
        res.writeHead(429, { 'retry-after': '2', 'content-type': 'application/json' });
        res.end(JSON.stringify({ kind: 'Status', reason: 'TooManyRequests', message: 'too many requests' }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ok: req.url }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    try {
      const kc = new RealKubeConfig();
      kc.loadFromOptions({
        clusters: [{ name: 'c', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true }],
        users: [{ name: 'u' }],
        contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
        currentContext: 'x',
      });
      // A clock whose timers fire at once but record what was asked: no real waiting in the test.
      const waits: number[] = [];
      const clock = Object.assign(new ManualClock(), { setTimer: (fn: () => void, ms: number) => { waits.push(ms); setImmediate(fn); return { cancel: () => {} }; } });
      const client = createKubeClient(kc, { clock, qps: 1000, burst: 1000, maxRetries: 3 });
      assert.deepEqual(await client.request('GET', '/api/v1/namespaces'), { ok: '/api/v1/namespaces' });
      assert.equal(calls, 3);
      assert.deepEqual(waits, [2_000, 2_000]);
      failFirst = 10;
      await assert.rejects(client.request('GET', '/api/v1/pods'), (err: Error & { status?: number; reason?: string }) => err.status === 429 && err.reason === 'TooManyRequests');
      assert.equal(calls, 3 + 4, 'one try and three retries');
    } finally {
      server.close();
    }
  });
});

describe('event recorder (events.ts)', () => {
  const target = { apiVersion: 'flashsale.dev/v1alpha1', metadata: { namespace: 'ns', name: 'sale', uid: 'u1' } };
  const gatedClient = () => {
    const sent: { path: string; body: { reason: string; involvedObject: { uid: string } } }[] = [];
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const client: KubeClient = {
      async request<T>(_method: string, path: string, body?: unknown): Promise<T> {
        await gate;
        const b = body as { reason: string; involvedObject: { uid: string } };
        if (b.reason === 'Refused') throw new Error('forbidden');
        sent.push({ path, body: b });
        return {} as T;
      },
    };
    return { client, sent, open };
  };

  it('returns at once while the apiserver has not answered, then sends every event in order', async () => {
    const { client, sent, open } = gatedClient();
    const rec = new EventRecorder({ client, clock: new ManualClock(1_700_000_000_000), logger: createLogger('silent'), identity: 'op-0' });
    rec.record(target, 'Normal', 'Created', 'created Deployment a');
    rec.record(target, 'Warning', 'Refused', 'x');
    rec.record(target, 'Normal', 'Ready', 'ready');
    // Nothing was sent yet and record() did not wait: a reconcile is never held up by an Event.
    assert.equal(sent.length, 0);
    open();
    await rec.flush(5000);
    assert.deepEqual(sent.map((s) => s.body.reason), ['Created', 'Ready']);
    assert.equal(sent[0]?.path, '/api/v1/namespaces/ns/events');
    assert.equal(sent[0]?.body.involvedObject.uid, 'u1');
    assert.equal(rec.failed, 1, 'a refused event is counted (and logged), not retried for ever');
    assert.equal(rec.pending(), 0);
  });

  it('drops the newest events when its queue is full, and counts them', async () => {
    const { client, sent, open } = gatedClient();
    const rec = new EventRecorder({ client, clock: new ManualClock(1_700_000_000_000), logger: createLogger('silent'), identity: 'op-0', queueSize: 3 });
    for (let i = 0; i < 10; i++) rec.record(target, 'Normal', `R${i}`, 'm');
    // The first is being sent (taken off the queue), three wait, six are dropped.
    assert.equal(rec.dropped, 6);
    open();
    await rec.flush(5000);
    assert.deepEqual(sent.map((s) => s.body.reason), ['R0', 'R1', 'R2', 'R3']);
  });
});
