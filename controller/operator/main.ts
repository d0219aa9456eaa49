// `flashsale operator`: watches FlashSales (and the children they own), and — while it holds
// the leader Lease — reconciles them from a deduplicating work queue. See docs/operator.md.
import { hostname } from 'node:os';
import { KubeConfig, type KubernetesObject, type V1Deployment, type V1PodDisruptionBudget, type V1Service } from '@kubernetes/client-node';
import type { CommandContext, CommandValues } from '../command.ts';
import { ConfigError, type Config } from '../config.ts';
import { REBUILD_GRACE_MS } from '../dataplane/provision.ts';
import { serveWorkerEndpoints } from '../dataplane/worker-http.ts';
import { createKafkaGateway } from '../infra/kafka.ts';
import { createPool } from '../infra/mysql.ts';
import { createRedis } from '../infra/redis.ts';
import { createRegistry } from '../metrics/dataplane.ts';
import { LagCollector } from '../metrics/lag.ts';
import { CONTROLLER_NAME, QueueMetrics, activeWorkers, initControllerMetrics, observeReconcile, operatorMetrics, setLeader } from '../metrics/operator.ts';
import { isDnsSubdomain, parseDuration, type FlashSale } from '../spec/flashsale.ts';
import { systemClock } from './clock.ts';
import { ResilientInformer } from './informer.ts';
import { createKubeClient, isConflict, paths, type KubeClient } from './kube.ts';
import { EventRecorder } from './events.ts';
import { LeaderElector, type LeaseSpec, type LeaseStore } from './leader.ts';
import type { RawSale } from './decide.ts';
import { Reconciler, RetryableError, type ReconcileCache } from './reconciler.ts';
import { Stabilizer } from './scaling.ts';
import { IMAGE_PULL_POLICIES, MANAGED_BY, parseSecretRef, type Child, type ImagePullPolicy, type WorkerEnv } from './workloads.ts';
import { WorkQueue } from './workqueue.ts';
import pkg from '../../package.json' with { type: 'json' };

type Env = Record<string, string | undefined>;

export interface OperatorOptions {
  namespaces: string[];
  leaseName: string;
  leaseNamespace: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  resyncPeriodMs: number;
  requeueAfterMs: number;
  scaleDownWindowMs: number;
  lagIntervalMs: number;
  stepTimeoutMs: number;
  rebuildGraceMs: number;
  workers: number;
  /** The reconcilers' client-side rate limit (client-go's QPS and Burst). */
  kubeApiQps: number;
  kubeApiBurst: number;
  worker: WorkerEnv;
}

/** A numeric setting from the environment (unset or empty: `fallback`), refused out of its range. */
function numberSetting(env: Env, name: string, fallback: number, range: { integer?: boolean; min: number; minExclusive?: boolean; max: number }): number {
  const raw = env[name];
  const n = raw ? Number(raw) : fallback;
  const above = range.minExclusive ? n > range.min : n >= range.min;
  if (!Number.isFinite(n) || (range.integer && !Number.isInteger(n)) || !above || n > range.max) {
    throw new ConfigError(`invalid ${name}=${JSON.stringify(raw)}: expected ${range.integer ? 'an integer' : 'a number'} in ${range.minExclusive ? '(' : '['}${range.min}, ${range.max}]`);
  }
  return n;
}

function duration(env: Env, name: string, fallback: string): number {
  const raw = env[name] || fallback;
  try {
    return parseDuration(raw);
  } catch {
    throw new ConfigError(`invalid ${name}=${JSON.stringify(raw)}: expected a duration as Ns, Nm or Nh`);
  }
}

function mysqlUrl(config: Config, env: Env): string {
  if (env.MYSQL_URL) return env.MYSQL_URL;
  const m = config.mysql;
  const auth = m.password ? `${encodeURIComponent(m.user)}:${encodeURIComponent(m.password)}` : encodeURIComponent(m.user);
  return `mysql://${auth}@${m.host}:${m.port}/${m.database}`;
}

/** The operator's settings from flags and the environment (the Helm chart's contract, see docs/operator.md). */
export function operatorOptions(values: CommandValues, config: Config, env: Env = process.env): OperatorOptions {
  const fromFlags = ((values.namespace as unknown as string[] | undefined) ?? []).filter(Boolean);
  const fromEnv = (env.WATCH_NAMESPACES ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const namespaces = [...new Set([...fromFlags, ...fromEnv])];
  const secret = (name: string) => {
    const raw = env[name];
    if (!raw) return undefined;
    const ref = parseSecretRef(raw);
    if (!ref) throw new ConfigError(`invalid ${name}=${JSON.stringify(raw)}: expected secret-name/key`);
    return ref;
  };
  const pullPolicy = env.WORKER_IMAGE_PULL_POLICY || undefined;
  if (pullPolicy !== undefined && !(IMAGE_PULL_POLICIES as readonly string[]).includes(pullPolicy)) {
    throw new ConfigError(`invalid WORKER_IMAGE_PULL_POLICY=${JSON.stringify(pullPolicy)}: expected one of ${IMAGE_PULL_POLICIES.join(', ')}`);
  }
  const pullSecrets = (env.WORKER_IMAGE_PULL_SECRETS ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const badSecret = pullSecrets.find((name) => !isDnsSubdomain(name));
  if (badSecret !== undefined) throw new ConfigError(`invalid WORKER_IMAGE_PULL_SECRETS: ${JSON.stringify(badSecret)} is not a Secret name (lowercase letters, digits, '-' and '.')`);
  const workers = numberSetting(env, 'OPERATOR_WORKERS', 16, { integer: true, min: 1, max: 32 });
  const kubeApiQps = numberSetting(env, 'KUBE_API_QPS', 50, { min: 0, minExclusive: true, max: 10_000 });
  const kubeApiBurst = numberSetting(env, 'KUBE_API_BURST', 100, { integer: true, min: 1, max: 10_000 });
  const o: OperatorOptions = {
    namespaces,
    leaseName: (values['lease-name'] as string | undefined) || env.LEASE_NAME || 'flashsale-operator',
    leaseNamespace: (values['lease-namespace'] as string | undefined) || env.POD_NAMESPACE || 'default',
    identity: env.POD_NAME || `${hostname()}_${process.pid}`,
    leaseDurationMs: duration(env, 'LEASE_DURATION', '15s'),
    renewDeadlineMs: duration(env, 'LEASE_RENEW_DEADLINE', '10s'),
    retryPeriodMs: duration(env, 'LEASE_RETRY_PERIOD', '2s'),
    resyncPeriodMs: duration(env, 'RESYNC_PERIOD', '10m'),
    requeueAfterMs: duration(env, 'SCALE_INTERVAL', '15s'),
    scaleDownWindowMs: duration(env, 'SCALE_DOWN_STABILIZATION', '5m'),
    lagIntervalMs: duration(env, 'LAG_INTERVAL', '5s'),
    stepTimeoutMs: duration(env, 'STEP_TIMEOUT', '20s'),
    rebuildGraceMs: duration(env, 'REBUILD_GRACE', `${REBUILD_GRACE_MS / 1000}s`),
    workers,
    kubeApiQps,
    kubeApiBurst,
    worker: {
      image: env.WORKER_IMAGE || `flashsale-operator:${pkg.version}`,
      ...(pullPolicy ? { imagePullPolicy: pullPolicy as ImagePullPolicy } : {}),
      ...(pullSecrets.length ? { imagePullSecrets: [...new Set(pullSecrets)] } : {}),
      kafkaBrokers: config.kafkaBrokers,
      redisUrl: config.redisUrl,
      mysqlUrl: mysqlUrl(config, env),
      redisSecret: secret('WORKER_REDIS_URL_SECRET'),
      mysqlSecret: secret('WORKER_MYSQL_URL_SECRET'),
      logLevel: config.logLevel,
    },
  };
  if (o.renewDeadlineMs >= o.leaseDurationMs) throw new ConfigError('invalid LEASE_RENEW_DEADLINE: must be shorter than LEASE_DURATION');
  if (o.retryPeriodMs >= o.renewDeadlineMs) throw new ConfigError('invalid LEASE_RETRY_PERIOD: must be shorter than LEASE_RENEW_DEADLINE');
  return o;
}

export function leaseStore(client: KubeClient, namespace: string, name: string): LeaseStore {
  type Kept = { labels?: Record<string, string>; annotations?: Record<string, string>; ownerReferences?: unknown[] };
  type Lease = { metadata: { resourceVersion: string } & Kept; spec?: LeaseSpec };
  // An update replaces the whole object: the labels, annotations and owners read with the record go
  // back with it, or the first renewal strips what the Helm chart that owns the Lease set (its
  // release labels and ownership annotations). Every update follows a get in the elector's round.
  let kept: Kept = {};
  return {
    // `signal` is the leader's: it aborts a request the moment the renew deadline leaves no time for it.
    async get(signal) {
      try {
        const l = await client.request<Lease>('GET', paths.lease(namespace, name), undefined, undefined, { signal });
        const { labels, annotations, ownerReferences } = l.metadata;
        kept = { labels, annotations, ownerReferences };
        return { spec: l.spec ?? {}, resourceVersion: l.metadata.resourceVersion };
      } catch (err) {
        if ((err as { status?: number }).status === 404) return null;
        throw err;
      }
    },
    async create(spec, signal) {
      await client.request('POST', paths.leases(namespace), { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace }, spec }, undefined, { signal });
    },
    async update(spec, resourceVersion, signal) {
      await client.request('PUT', paths.lease(namespace, name), { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { ...kept, name, namespace, resourceVersion }, spec }, undefined, { signal });
    },
  };
}

export async function command(values: CommandValues, ctx: CommandContext): Promise<void> {
  const { config, logger } = ctx;
  const o = operatorOptions(values, config);
  const kc = new KubeConfig();
  kc.loadFromDefault();
  const client = createKubeClient(kc, { qps: o.kubeApiQps, burst: o.kubeApiBurst });
  // Leader election gets its own client (own rate limiter), so a burst of reconciles never delays a
  // renewal; Events too (like client-go's broadcaster), so they never spend the reconcilers' budget.
  const leaseClient = createKubeClient(kc);
  const events = new EventRecorder({ client: createKubeClient(kc, { qps: o.kubeApiQps, burst: o.kubeApiBurst }), clock: systemClock, logger, identity: o.identity });
  const registry = createRegistry();
  const metrics = operatorMetrics(registry);
  initControllerMetrics(metrics, o.workers);
  const clock = systemClock;

  let leading = false;
  const { server, url } = await serveWorkerEndpoints(registry, config.httpPort, () => true, process.env.HTTP_HOST || '0.0.0.0');
  logger.info({ url, identity: o.identity, namespaces: o.namespaces.length ? o.namespaces : 'all', lease: `${o.leaseNamespace}/${o.leaseName}` }, 'operator serving /metrics, /healthz, /readyz');

  const kafka = createKafkaGateway({ brokers: config.kafkaBrokers, clientId: `flashsale-operator-${o.identity}`, logger, retries: 2, requestTimeoutMs: 10_000 });
  const redis = createRedis(config.redisUrl, { lazyConnect: true });
  redis.on('error', (err) => logger.debug({ err: err.message }, 'redis'));
  const pool = createPool(config.mysql, { connectionLimit: 4 });
  const lag = new LagCollector({ kafka, registry, intervalMs: o.lagIntervalMs, logger });
  const sales = new Map<string, FlashSale>();
  const stabilizer = new Stabilizer(o.scaleDownWindowMs, clock);
  // Filled below: the informers are created after the reconciler they feed.
  const caches: {
    sales: ResilientInformer<KubernetesObject>[];
    deployments: ResilientInformer<V1Deployment>[];
    services: ResilientInformer<V1Service>[];
    disruptionBudgets: ResilientInformer<V1PodDisruptionBudget>[];
  } = { sales: [], deployments: [], services: [], disruptionBudgets: [] };
  // Children are indexed by their controller owner's uid (controllerUids below).
  const ownedBy = <T extends Child>(informers: ResilientInformer<T>[], namespace: string, uid: string): T[] =>
    informers.flatMap((i) => i.byIndex(uid).filter((o) => o.metadata?.namespace === namespace));
  const cache: ReconcileCache = {
    sale: (namespace, name) => {
      for (const i of caches.sales) {
        const found = i.get(namespace, name);
        if (found) return structuredClone(found) as unknown as RawSale;
      }
      return undefined;
    },
    deployments: (namespace, uid) => ownedBy(caches.deployments, namespace, uid).map((d) => structuredClone(d)),
    services: (namespace, uid) => ownedBy(caches.services, namespace, uid).map((d) => structuredClone(d)),
    disruptionBudgets: (namespace, uid) => ownedBy(caches.disruptionBudgets, namespace, uid).map((d) => structuredClone(d)),
  };
  const reconciler = new Reconciler({
    client, cache, kafka, redis, pool, mysql: config.mysql, env: o.worker, lag, stabilizer, clock, metrics, logger, events,
    stepTimeoutMs: o.stepTimeoutMs,
    rebuildGraceMs: o.rebuildGraceMs,
    requeueAfterMs: o.requeueAfterMs,
    onSale: (key, sale) => {
      // Every round of every sale reports it; the lag targets depend only on the sale's identity and
      // spec, so the collector's targets (rebuilt from all sales) change only when those do.
      const known = sales.get(key);
      if (sale && known && known.metadata.generation !== undefined && known.metadata.uid === sale.metadata.uid && known.metadata.generation === sale.metadata.generation) {
        sales.set(key, sale);
        return;
      }
      const before = sales.size;
      if (sale) sales.set(key, sale);
      else sales.delete(key);
      if (sale || before !== sales.size) lag.setSales([...sales.values()]);
    },
  });

  const queue = new WorkQueue({ clock, backoff: { baseDelayMs: 500, maxDelayMs: 60_000 }, metrics: new QueueMetrics(metrics, CONTROLLER_NAME, () => clock.monotonic()) });
  const keyOf = (obj: { metadata?: { namespace?: string; name?: string } }) => `${obj.metadata?.namespace}/${obj.metadata?.name}`;
  const enqueue = (key: string) => {
    if (!leading) return;
    queue.add(key);
    metrics.workQueueDepth.set(queue.len());
  };
  const scopes = o.namespaces.length > 0 ? o.namespaces : [undefined];
  // FlashSales: only a change the reconcile acts on requeues a sale (spec → generation, deletion,
  // finalizers, annotations such as force-delete); the operator's own status writes do not.
  const saleInformers = scopes.map(
    (ns) =>
      new ResilientInformer<KubernetesObject>({
        kc, client, path: paths.flashsales(ns), logger,
        fingerprint: ({ metadata: m }) => JSON.stringify([m?.generation, m?.deletionTimestamp, m?.finalizers, m?.annotations]),
        onChange: (obj) => enqueue(keyOf(obj)),
      }),
  );
  // Owned children: any change (a Deployment's status during a rollout, a deleted Service) requeues the owning sale.
  const enqueueOwner = (o: Child) => {
    const owner = (o.metadata?.ownerReferences ?? []).find((r) => r.controller && r.kind === 'FlashSale');
    if (owner) enqueue(`${o.metadata?.namespace}/${owner.name}`);
  };
  const managed = `app.kubernetes.io/managed-by=${MANAGED_BY}`;
  const controllerUids = (o: Child) => (o.metadata?.ownerReferences ?? []).filter((r) => r.controller).map((r) => r.uid);
  const deploymentInformers = scopes.map((ns) => new ResilientInformer<V1Deployment>({ kc, client, path: paths.deployments(ns), labelSelector: managed, logger, onChange: enqueueOwner, indexBy: controllerUids }));
  const serviceInformers = scopes.map((ns) => new ResilientInformer<V1Service>({ kc, client, path: paths.services(ns), labelSelector: managed, logger, onChange: enqueueOwner, indexBy: controllerUids }));
  // A budget's status moves with every API pod (the disruption controller counts them); the reconcile
  // reads only what the operator sets, so only a change of that (or the budget's removal) requeues.
  const budgetInformers = scopes.map(
    (ns) =>
      new ResilientInformer<V1PodDisruptionBudget>({
        kc, client, path: paths.disruptionBudgets(ns), labelSelector: managed, logger, onChange: enqueueOwner, indexBy: controllerUids,
        fingerprint: ({ metadata: m, spec }) => JSON.stringify([m?.labels, m?.annotations, m?.ownerReferences, spec]),
      }),
  );
  caches.sales = saleInformers;
  caches.deployments = deploymentInformers;
  caches.services = serviceInformers;
  caches.disruptionBudgets = budgetInformers;
  const resyncAll = () => {
    for (const inf of saleInformers) for (const s of inf.list()) enqueue(keyOf(s));
  };

  const workerLoop = async () => {
    for (;;) {
      const key = await queue.get();
      if (key === undefined) return;
      metrics.workQueueDepth.set(queue.len());
      const started = clock.now();
      activeWorkers(metrics, 1);
      // A record of when this replica reconciled (test/leader.test.ts proves no two replicas overlap).
      logger.debug({ sale: key }, 'reconcile started');
      try {
        const out = await reconciler.reconcile(key);
        queue.forget(key);
        observeReconcile(metrics, out.result, (clock.now() - started) / 1000, { requeueAfter: !!out.requeueAfterMs });
        if (out.requeueAfterMs) queue.addAfter(key, out.requeueAfterMs);
      } catch (err) {
        const delay = queue.addRateLimited(key);
        const conflict = isConflict(err);
        observeReconcile(metrics, conflict ? 'requeue' : 'error', (clock.now() - started) / 1000);
        const log = err instanceof RetryableError || conflict ? logger.warn.bind(logger) : logger.error.bind(logger);
        log({ sale: key, err: (err as Error).message, retryInMs: delay }, 'reconcile failed');
      } finally {
        activeWorkers(metrics, -1);
        logger.debug({ sale: key }, 'reconcile finished');
        queue.done(key);
      }
    }
  };

  let resyncTimer: NodeJS.Timeout | undefined;
  const loops: Promise<void>[] = [];
  const elector = new LeaderElector({
    store: leaseStore(leaseClient, o.leaseNamespace, o.leaseName),
    identity: o.identity,
    leaseDurationMs: o.leaseDurationMs,
    renewDeadlineMs: o.renewDeadlineMs,
    retryPeriodMs: o.retryPeriodMs,
    clock,
    logger,
    onStartedLeading: () => {
      leading = true;
      setLeader(metrics, o.leaseName, true);
      lag.start();
      for (let i = 0; i < o.workers; i++) loops.push(workerLoop());
      resyncAll();
      resyncTimer = setInterval(resyncAll, o.resyncPeriodMs);
    },
    onStoppedLeading: () => {
      // Another replica may already be reconciling: stop at once; the Deployment restarts us as a candidate.
      setLeader(metrics, o.leaseName, false);
      logger.error('lost the leader lease; exiting so a fresh candidate takes over');
      process.exit(1);
    },
  });
  setLeader(metrics, o.leaseName, false);
  await Promise.all([...saleInformers, ...deploymentInformers, ...serviceInformers, ...budgetInformers].map((i) => i.start()));
  elector.start();

  await ctx.stopping;
  logger.info('stopping');
  leading = false;
  if (resyncTimer) clearInterval(resyncTimer);
  queue.shutdown();
  // Let in-flight reconciles finish (bounded) before releasing the Lease, so the successor never
  // reconciles a sale this replica is still writing.
  await Promise.race([Promise.allSettled(loops), new Promise((r) => setTimeout(r, o.stepTimeoutMs).unref())]);
  await events.flush(2000);
  await elector.stop();
  await Promise.allSettled([...saleInformers, ...deploymentInformers, ...serviceInformers, ...budgetInformers].map((i) => i.stop()));
  await lag.stop();
  server.close();
  await Promise.allSettled([kafka.close(), redis.quit(), pool.end()]);
  // Informers' watch sockets and kafkajs timers may linger; the operator's work is done.
  process.exit(process.exitCode ?? 0);
}
