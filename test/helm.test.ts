// The Helm chart, checked with the real Helm (the helm binary built at the pinned release) and the
// real control plane (test/support/cluster.ts): lint, the manifests `helm template` renders for the
// default values, every switch on, namespaced mode and the example values files (each also
// validated by the apiserver with a server-side dry run), values the schema must reject, and a
// real `helm install` / `helm upgrade` / `helm uninstall`.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';
import { loadConfig } from '../controller/config.ts';
import { operatorOptions } from '../controller/operator/main.ts';
import { desiredDeployment, parseSecretRef, plannedWorkloads } from '../controller/operator/workloads.ts';
import { loadFlashSales } from '../controller/spec/flashsale.ts';
import { createNamespace, deleteNamespace, testCluster, watchUntil, type TestCluster } from './support/cluster.ts';
import { HelmError, helm, helmInstallDryRun, helmLint, helmTemplate, parseManifests, releaseArgs, type Manifest } from './support/helm.ts';
import { uniqueName } from './support/infra.ts';
import { kubectlFor, type Kubectl } from './support/kubectl.ts';

const root = fileURLToPath(new URL('../', import.meta.url));
const chart = join(root, 'charts/flashsale-operator');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
const fullname = 'flashsale-flashsale-operator';
/** Where an installation publishes docs/ (metrics.prometheusRule.runbookBaseUrl). */
const RUNBOOK_BASE = 'https://git.example.com/shop/flashsale-operator/blob/v9.9.9/';

function only(manifests: Manifest[], kind: string, name?: string): Manifest {
  const found = manifests.filter((m) => m.kind === kind && (name === undefined || m.metadata.name === name));
  assert.equal(found.length, 1, `expected one ${kind}${name ? ` ${name}` : ''}, got ${found.length}`);
  return found[0]!;
}

function container(manifests: Manifest[]) {
  const deployment = only(manifests, 'Deployment');
  assert.equal(deployment.spec.template.spec.containers.length, 1);
  return deployment.spec.template.spec.containers[0];
}

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string }; fieldRef?: { fieldPath: string } };
}

function env(manifests: Manifest[]): Map<string, EnvVar> {
  const list = container(manifests).env as EnvVar[];
  const byName = new Map(list.map((e) => [e.name, e]));
  assert.equal(byName.size, list.length, 'duplicate environment variables');
  return byName;
}

interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}

/** The data-plane rules every mode must grant, exactly (what the operator uses: test/journey.test.ts checks it against the audit log). */
const dataPlaneRules: Rule[] = [
  { apiGroups: ['flashsale.dev'], resources: ['flashsales'], verbs: ['list', 'watch', 'patch'] },
  { apiGroups: ['flashsale.dev'], resources: ['flashsales/status'], verbs: ['update'] },
  { apiGroups: ['flashsale.dev'], resources: ['flashsales/finalizers'], verbs: ['update'] },
  { apiGroups: ['apps'], resources: ['deployments'], verbs: ['list', 'watch', 'create', 'patch', 'delete'] },
  { apiGroups: [''], resources: ['services'], verbs: ['list', 'watch', 'create', 'patch', 'delete'] },
  { apiGroups: ['policy'], resources: ['poddisruptionbudgets'], verbs: ['list', 'watch', 'create', 'patch', 'delete'] },
  { apiGroups: [''], resources: ['events'], verbs: ['create'] },
];

function assertLeaderElection(manifests: Manifest[], namespace: string) {
  const role = only(manifests, 'Role', `${fullname}-leader-election`);
  assert.equal(role.metadata.namespace, namespace);
  const args = container(manifests).args as string[];
  const leaseName = args.find((a) => a.startsWith('--lease-name='))?.split('=')[1];
  assert.ok(leaseName, 'the operator is given its Lease name');
  assert.ok(args.includes(`--lease-namespace=${namespace}`), 'the Lease lives in the release namespace');
  assert.deepEqual(role.rules, [{ apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: [leaseName], verbs: ['get', 'update'] }]);
  // The release owns the Lease (so helm uninstall removes it); the operator never creates it.
  const lease = only(manifests, 'Lease', leaseName);
  assert.equal(lease.metadata.namespace, namespace);
  const binding = only(manifests, 'RoleBinding', `${fullname}-leader-election`);
  assert.equal(binding.metadata.namespace, namespace);
  assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role.metadata.name });
  assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: serviceAccountName(manifests), namespace }]);
}

function serviceAccountName(manifests: Manifest[]): string {
  return only(manifests, 'Deployment').spec.template.spec.serviceAccountName;
}

/** Checks that hold for every values combination. */
function assertInvariants(manifests: Manifest[], namespace: string) {
  for (const m of manifests) {
    const labels = m.metadata.labels ?? {};
    assert.equal(labels['app.kubernetes.io/name'], 'flashsale-operator', `${m.kind} ${m.metadata.name} labels`);
    assert.equal(labels['app.kubernetes.io/instance'], 'flashsale', `${m.kind} ${m.metadata.name} labels`);
    assert.equal(labels['app.kubernetes.io/managed-by'], 'Helm', `${m.kind} ${m.metadata.name} labels`);
    assert.equal(labels['app.kubernetes.io/version'], pkg.version, `${m.kind} ${m.metadata.name} labels`);
    if (!m.kind.startsWith('Cluster')) assert.ok(m.metadata.namespace, `${m.kind} ${m.metadata.name} has a namespace`);
    // Least privilege: no wildcards and no access to Secrets, anywhere.
    for (const rule of (m.rules ?? []) as Rule[]) {
      for (const field of [rule.apiGroups, rule.resources, rule.verbs]) assert.ok(!field.includes('*'), `${m.kind} ${m.metadata.name}: wildcard in ${JSON.stringify(rule)}`);
      assert.ok(!rule.resources.includes('secrets'), `${m.kind} ${m.metadata.name} grants access to Secrets`);
    }
  }

  const deployment = only(manifests, 'Deployment');
  assert.equal(deployment.metadata.namespace, namespace);
  const pod = deployment.spec.template;
  for (const [k, v] of Object.entries(deployment.spec.selector.matchLabels as Record<string, string>)) {
    assert.equal(pod.metadata.labels[k], v, `the Deployment's selector matches its pods (${k})`);
  }
  const service = only(manifests, 'Service');
  for (const [k, v] of Object.entries(service.spec.selector as Record<string, string>)) {
    assert.equal(pod.metadata.labels[k], v, `the metrics Service selects the operator pods (${k})`);
  }
  assert.deepEqual(service.spec.ports.map((p: { name: string; targetPort: string }) => [p.name, p.targetPort]), [['http', 'http']]);

  // Security contexts: non-root, read-only root, no escalation, no capabilities, RuntimeDefault seccomp.
  assert.equal(pod.spec.securityContext.runAsNonRoot, true);
  assert.ok(pod.spec.securityContext.runAsUser > 0);
  assert.equal(pod.spec.securityContext.seccompProfile.type, 'RuntimeDefault');
  const c = container(manifests);
  assert.equal(c.securityContext.readOnlyRootFilesystem, true);
  assert.equal(c.securityContext.allowPrivilegeEscalation, false);
  assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
  assert.equal(c.securityContext.capabilities.add, undefined);
  assert.ok(c.volumeMounts.some((v: { mountPath: string }) => v.mountPath === '/tmp'), 'a writable /tmp next to the read-only root');

  // The operator process contract.
  assert.deepEqual(c.args.slice(0, 1), ['operator']);
  assert.equal(c.livenessProbe.httpGet.path, '/healthz');
  assert.equal(c.readinessProbe.httpGet.path, '/readyz');
  assert.equal(c.livenessProbe.httpGet.port, 'http');
  const port = c.ports.find((p: { name: string }) => p.name === 'http');
  const e = env(manifests);
  assert.equal(e.get('HTTP_PORT')?.value, String(port.containerPort));
  assert.equal(e.get('POD_NAME')?.valueFrom?.fieldRef?.fieldPath, 'metadata.name');
  assert.equal(e.get('POD_NAMESPACE')?.valueFrom?.fieldRef?.fieldPath, 'metadata.namespace');
  assert.equal(e.get('WORKER_IMAGE')?.value, c.image, 'the data plane runs the operator image');
  for (const name of ['KAFKA_BROKERS', 'REDIS_URL', 'MYSQL_URL', 'LOG_LEVEL', 'WATCH_NAMESPACES']) assert.ok(e.has(name), `${name} is set`);
  assert.ok(c.resources.requests && c.resources.limits, 'resources are set');

  if (manifests.some((m) => m.kind === 'ServiceAccount')) {
    assert.equal(only(manifests, 'ServiceAccount').metadata.name, serviceAccountName(manifests));
  }
  assertLeaderElection(manifests, namespace);
}

describe('Helm chart', () => {
  let cluster: TestCluster;
  let kubectl: Kubectl;
  // Every server-side check and the real release live in this namespace.
  const ns = uniqueName('helm');

  before(async () => {
    cluster = await testCluster();
    kubectl = kubectlFor(cluster.kubeconfigYaml);
    await createNamespace(cluster.kc, ns);
    // The release namespace enforces the restricted Pod Security Standard (docs/install.md): the
    // apiserver's PodSecurity admission refuses an operator pod that does not meet it.
    await kubectl.ok(['label', 'namespace', ns, 'pod-security.kubernetes.io/enforce=restricted', 'pod-security.kubernetes.io/enforce-version=latest']);
  });
  after(async () => {
    if (cluster) await deleteNamespace(cluster.kc, ns);
    kubectl?.cleanup();
  });

  /**
   * A server-side dry run of every rendered object: the apiserver validates each one as it would
   * on install (namespaced objects are moved to the test namespace). The Prometheus Operator's
   * kinds are left out: their CRDs are not installed on the test cluster.
   */
  async function serverDryRun(manifests: Manifest[]): Promise<{ status: number; stdout: string; stderr: string; count: number }> {
    const objects = manifests
      .filter((m) => !m.apiVersion.startsWith('monitoring.coreos.com/'))
      .map((m) => (m.metadata.namespace ? { ...m, metadata: { ...m.metadata, namespace: ns } } : m));
    const r = await kubectl.run(['apply', '--server-side', '--dry-run=server', '--field-manager=helm-test', '-f', '-'], {
      stdin: objects.map((o) => stringify(o)).join('---\n'),
    });
    return { ...r, count: objects.length };
  }

  async function assertServerAccepts(manifests: Manifest[]) {
    const r = await serverDryRun(manifests);
    assert.equal(r.status, 0, `the apiserver refused: ${r.stderr}`);
    assert.equal(r.stdout.split('\n').filter((l) => l.endsWith('serverside-applied (server dry run)')).length, r.count, r.stdout);
  }

  it('carries the CRD byte for byte and the package version as appVersion', () => {
    assert.equal(
      readFileSync(join(chart, 'crds/flashsale.yaml'), 'utf8'),
      readFileSync(join(root, 'crds/flashsale.yaml'), 'utf8'),
      'copy crds/flashsale.yaml to charts/flashsale-operator/crds/',
    );
    const meta = parse(readFileSync(join(chart, 'Chart.yaml'), 'utf8')) as { apiVersion: string; appVersion: string };
    assert.equal(meta.apiVersion, 'v2');
    assert.equal(meta.appVersion, pkg.version);
  });

  it('has a comment on every key of values.yaml', () => {
    // Every leaf key is documented by the comment line right above it or above one of its parents
    // (the fields of podSecurityContext, say, are documented by podSecurityContext's comment).
    const lines = readFileSync(join(chart, 'values.yaml'), 'utf8').split('\n');
    const commented = (i: number) => /^\s*#/.test(lines[i - 1] ?? '');
    const indentOf = (line: string) => /^\s*/.exec(line)![0].length;
    const undocumented: string[] = [];
    lines.forEach((line, i) => {
      const m = /^\s*([A-Za-z][\w-]*):(.*)$/.exec(line);
      if (!m || m[2]!.trim() === '') return;
      let documented = commented(i);
      for (let j = i - 1, indent = indentOf(line); j >= 0 && !documented && indent > 0; j--) {
        if (lines[j]!.trim() === '' || /^\s*#/.test(lines[j]!) || indentOf(lines[j]!) >= indent) continue;
        indent = indentOf(lines[j]!);
        documented = commented(j);
      }
      if (!documented) undocumented.push(`values.yaml:${i + 1}: ${line.trim()}`);
    });
    assert.deepEqual(undocumented, []);
  });

  it('documents every value in docs/install.md', () => {
    const values = parse(readFileSync(join(chart, 'values.yaml'), 'utf8')) as Record<string, unknown>;
    // Free-form Kubernetes objects are documented as a whole, not field by field.
    const freeForm = new Set(['podSecurityContext', 'securityContext', 'resources']);
    const paths: string[] = [];
    const walk = (obj: Record<string, unknown>, prefix: string) => {
      for (const [k, v] of Object.entries(obj)) {
        const path = prefix + k;
        if (v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length > 0 && !freeForm.has(path)) walk(v as Record<string, unknown>, `${path}.`);
        else paths.push(path);
      }
    };
    walk(values, '');
    const docs = readFileSync(join(root, 'docs/install.md'), 'utf8');
    assert.deepEqual(paths.filter((p) => !docs.includes(`| \`${p}\` |`)), [], 'values missing from the table in docs/install.md');
  });

  it('passes `helm lint --strict`', async () => {
    const messages = await helmLint(chart, { strict: true });
    assert.deepEqual(messages.filter((m) => !m.startsWith('[INFO]')), []);
  });

  it('fails `helm lint` when the chart values break the schema', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'chart-'));
    try {
      cpSync(chart, dir, { recursive: true });
      const values = readFileSync(join(dir, 'values.yaml'), 'utf8');
      writeFileSync(join(dir, 'values.yaml'), values.replace(/^replicaCount: 1$/m, 'replicaCount: 0'));
      assert.notEqual(readFileSync(join(dir, 'values.yaml'), 'utf8'), values);
      await assert.rejects(helmLint(dir), (err: Error) => err instanceof HelmError && /replicaCount/.test(err.message));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  describe('NOTES.txt (`helm install --dry-run=client`)', () => {
    it('says what to apply next and how to watch it', async () => {
      const out = await helmInstallDryRun(chart, { namespace: 'flashsale-system', kubeconfig: cluster.kubeconfigPath });
      assert.match(out, /^STATUS: pending-install$/m);
      const notes = out.slice(out.indexOf('NOTES:'));
      assert.match(notes, /manages FlashSales in every namespace/);
      assert.match(notes, /kubectl -n flashsale-system rollout status deployment\/flashsale-flashsale-operator/);
      assert.match(notes, /kubectl apply -n default -f examples\/flashsale\.yaml/);
      assert.match(notes, /kubectl get fs -n default -w/);
      assert.match(notes, /Note: redis\.url is stored in the Deployment in plain text/);
      assert.match(notes, /^ {5}docs\/runbook\.md$/m, 'the runbook, relative to the project without runbookBaseUrl');
      // Every example it names exists.
      for (const [, file] of notes.matchAll(/(flashsale[\w-]*\.yaml)/g)) assert.ok(readdirSync(join(root, 'examples')).includes(file!), `examples/${file}`);
    });

    it('points at a watched namespace and drops the plain-URL notes with existing Secrets', async () => {
      const out = await helmInstallDryRun(chart, {
        namespace: 'flashsale-system',
        kubeconfig: cluster.kubeconfigPath,
        values: { operator: { watchNamespaces: ['shop-a'] }, redis: { existingSecret: { name: 'r', key: 'k' } }, mysql: { existingSecret: { name: 'm', key: 'k' } } },
      });
      const notes = out.slice(out.indexOf('NOTES:'));
      assert.match(notes, /manages FlashSales in: shop-a\./);
      assert.match(notes, /kubectl apply -n shop-a -f examples\/flashsale\.yaml/);
      assert.doesNotMatch(notes, /plain text/);
    });

    it('points at the runbook under runbookBaseUrl', async () => {
      // (Not with the PrometheusRule on: its CRD is not installed here, and the dry run maps every kind.)
      const out = await helmInstallDryRun(chart, { namespace: 'flashsale-system', kubeconfig: cluster.kubeconfigPath, values: { metrics: { prometheusRule: { runbookBaseUrl: RUNBOOK_BASE } } } });
      const notes = out.slice(out.indexOf('NOTES:'));
      assert.ok(notes.includes(`${RUNBOOK_BASE}docs/runbook.md`), notes);
      assert.ok(readdirSync(join(root, 'docs')).includes('runbook.md'));
    });
  });

  describe('default values', () => {
    let manifests: Manifest[];
    before(async () => {
      manifests = await helmTemplate(chart, { namespace: 'flashsale-system' });
    });

    it('renders the operator with cluster-wide least-privilege RBAC', () => {
      assertInvariants(manifests, 'flashsale-system');
      assert.deepEqual(manifests.map((m) => m.kind).sort(), [
        'ClusterRole', 'ClusterRoleBinding', 'Deployment', 'Lease', 'Role', 'RoleBinding', 'Service', 'ServiceAccount',
      ]);
      assert.deepEqual(only(manifests, 'ClusterRole').rules, dataPlaneRules);
      const binding = only(manifests, 'ClusterRoleBinding');
      assert.equal(binding.roleRef.name, only(manifests, 'ClusterRole').metadata.name);
      assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: serviceAccountName(manifests), namespace: 'flashsale-system' }]);
    });

    it('is accepted by the apiserver (server-side dry run of every object)', async () => {
      await assertServerAccepts(manifests);
    });

    it('wires plain connection settings and the appVersion image', () => {
      const c = container(manifests);
      assert.equal(c.image, `flashsale-operator:${pkg.version}`);
      const e = env(manifests);
      assert.equal(e.get('KAFKA_BROKERS')?.value, 'kafka:9092');
      assert.equal(e.get('REDIS_URL')?.value, 'redis://redis:6379');
      assert.equal(e.get('MYSQL_URL')?.value, 'mysql://flashsale@mysql:3306/flashsale');
      assert.equal(e.get('WATCH_NAMESPACES')?.value, '');
      assert.equal(e.get('LOG_LEVEL')?.value, 'info');
      assert.ok(!e.has('WORKER_REDIS_URL_SECRET') && !e.has('WORKER_MYSQL_URL_SECRET'));
      assert.equal(e.get('WORKER_IMAGE_PULL_POLICY')?.value, 'IfNotPresent', 'the data plane pulls as the operator pod does');
      assert.ok(!e.has('WORKER_IMAGE_PULL_SECRETS'), 'no pull Secrets');
      assert.equal(only(manifests, 'Deployment').spec.replicas, 1);
    });
  });

  describe('every switch on', () => {
    let manifests: Manifest[];
    before(async () => {
      manifests = await helmTemplate(chart, {
        namespace: 'ops',
        values: {
          replicaCount: 3,
          podDisruptionBudget: { enabled: true, maxUnavailable: 2 },
          image: { repository: 'registry.example.com/fs/op', tag: '9.9.9', pullPolicy: 'Always' },
          imagePullSecrets: [{ name: 'regcred' }],
          operator: { logLevel: 'debug', httpPort: 9090, leaseName: 'fs-leader', extraEnv: [{ name: 'EXTRA', value: 'x' }] },
          kafka: { brokers: ['k-0:9092', 'k-1:9092'] },
          redis: { existingSecret: { name: 'redis-conn', key: 'url' } },
          mysql: { existingSecret: { name: 'mysql-conn', key: 'dsn' } },
          serviceAccount: { name: 'fs-operator', annotations: { 'iam.example.com/role': 'r' } },
          podLabels: { team: 'sales' },
          metrics: {
            serviceMonitor: { enabled: true, interval: '15s', scrapeTimeout: '10s', additionalLabels: { release: 'prom' } },
            podMonitor: { enabled: true, interval: '20s', additionalLabels: { release: 'prom' } },
            prometheusRule: { enabled: true, additionalLabels: { release: 'prom' }, runbookBaseUrl: RUNBOOK_BASE },
            dashboards: { enabled: true, namespace: 'monitoring', additionalLabels: { grafana: 'main' } },
          },
        },
      });
    });

    it('keeps the invariants', () => {
      assertInvariants(manifests, 'ops');
      assert.equal(only(manifests, 'Deployment').spec.replicas, 3);
      assert.equal(only(manifests, 'ServiceAccount').metadata.name, 'fs-operator');
      assert.equal(only(manifests, 'Deployment').spec.template.metadata.labels.team, 'sales');
      const c = container(manifests);
      assert.equal(c.image, 'registry.example.com/fs/op:9.9.9');
      assert.ok(c.args.includes('--lease-name=fs-leader'));
      assert.equal(only(manifests, 'Role', `${fullname}-leader-election`).rules[0].resourceNames[0], 'fs-leader');
      assert.equal(only(manifests, 'Lease').metadata.name, 'fs-leader');
    });

    it('is accepted by the apiserver (server-side dry run of every object but the Prometheus Operator kinds)', async () => {
      assert.deepEqual(manifests.filter((m) => m.apiVersion.startsWith('monitoring.coreos.com/')).map((m) => m.kind).sort(), ['PodMonitor', 'PrometheusRule', 'ServiceMonitor']);
      await assertServerAccepts(manifests);
    });

    it('pulls the operator image with its Secrets, and hands the same names and policy to the workers', async () => {
      assert.deepEqual(only(manifests, 'Deployment').spec.template.spec.imagePullSecrets, [{ name: 'regcred' }]);
      assert.equal(container(manifests).imagePullPolicy, 'Always');
      const e = env(manifests);
      assert.equal(e.get('WORKER_IMAGE_PULL_POLICY')?.value, 'Always');
      assert.equal(e.get('WORKER_IMAGE_PULL_SECRETS')?.value, 'regcred', 'null dataPlane.imagePullSecrets: the operator\'s names');
      // Names of their own for the sales' namespaces, or none at all.
      const own = env(await helmTemplate(chart, { values: { imagePullSecrets: [{ name: 'regcred' }], dataPlane: { imagePullSecrets: [{ name: 'sales-pull' }, { name: 'mirror.creds' }] } } }));
      assert.equal(own.get('WORKER_IMAGE_PULL_SECRETS')?.value, 'sales-pull,mirror.creds');
      const worker = operatorOptions({}, loadConfig({}), Object.fromEntries([...own].map(([k, v]) => [k, v.value ?? '']))).worker;
      assert.deepEqual([worker.imagePullPolicy, worker.imagePullSecrets], ['IfNotPresent', ['sales-pull', 'mirror.creds']], 'in the format the operator parses');
      const none = env(await helmTemplate(chart, { values: { imagePullSecrets: [{ name: 'regcred' }], dataPlane: { imagePullSecrets: [] } } }));
      assert.ok(!none.has('WORKER_IMAGE_PULL_SECRETS'));
    });

    it('renders a PodDisruptionBudget over the operator pods', () => {
      const pdb = only(manifests, 'PodDisruptionBudget');
      assert.equal(pdb.spec.maxUnavailable, 2);
      assert.deepEqual(pdb.spec.selector, only(manifests, 'Deployment').spec.selector);
    });

    it('reads credentials from the existing Secrets and hands their names to the workers', () => {
      const e = env(manifests);
      assert.deepEqual(e.get('REDIS_URL'), { name: 'REDIS_URL', valueFrom: { secretKeyRef: { name: 'redis-conn', key: 'url' } } });
      assert.deepEqual(e.get('MYSQL_URL'), { name: 'MYSQL_URL', valueFrom: { secretKeyRef: { name: 'mysql-conn', key: 'dsn' } } });
      assert.equal(e.get('WORKER_REDIS_URL_SECRET')?.value, 'redis-conn/url');
      assert.equal(e.get('WORKER_MYSQL_URL_SECRET')?.value, 'mysql-conn/dsn');
      // In the format the operator parses.
      assert.deepEqual(parseSecretRef(e.get('WORKER_REDIS_URL_SECRET')!.value!), { name: 'redis-conn', key: 'url' });
      assert.deepEqual(parseSecretRef(e.get('WORKER_MYSQL_URL_SECRET')!.value!), { name: 'mysql-conn', key: 'dsn' });
      assert.equal(e.get('KAFKA_BROKERS')?.value, 'k-0:9092,k-1:9092');
      assert.equal(e.get('HTTP_PORT')?.value, '9090');
      assert.equal(e.get('LOG_LEVEL')?.value, 'debug');
      assert.equal(e.get('EXTRA')?.value, 'x');
      const rendered = JSON.stringify(manifests);
      assert.ok(!rendered.includes('redis://') && !rendered.includes('mysql://'), 'no connection URL in the manifests');
    });

    it('renders the ServiceMonitor with its additional labels', () => {
      const sm = only(manifests, 'ServiceMonitor');
      assert.equal(sm.apiVersion, 'monitoring.coreos.com/v1');
      assert.equal(sm.metadata.labels?.release, 'prom');
      assert.deepEqual(sm.spec.endpoints, [{ port: 'http', path: '/metrics', interval: '15s', scrapeTimeout: '10s' }]);
      assert.deepEqual(sm.spec.selector.matchLabels, only(manifests, 'Service').spec.selector);
      assert.deepEqual(sm.spec.namespaceSelector.matchNames, ['ops']);
    });

    it('renders a PodMonitor that selects every data-plane pod the operator creates', () => {
      const pm = only(manifests, 'PodMonitor');
      assert.equal(pm.metadata.labels?.release, 'prom');
      assert.deepEqual(pm.spec.namespaceSelector, { any: true });
      assert.deepEqual(pm.spec.podMetricsEndpoints, [{ port: 'http', path: '/metrics', interval: '20s' }]);
      const [sale] = loadFlashSales(join(root, 'examples/flashsale.yaml'));
      const worker = { image: 'img', kafkaBrokers: ['k:9092'], redisUrl: 'redis://r', mysqlUrl: 'mysql://m/db', logLevel: 'info' };
      const plans = plannedWorkloads(sale!, {});
      assert.ok(plans.length >= 4);
      for (const plan of plans) {
        const pod = desiredDeployment(sale!, plan, worker).spec!.template;
        for (const [k, v] of Object.entries(pm.spec.selector.matchLabels as Record<string, string>)) {
          assert.equal(pod.metadata?.labels?.[k], v, `${plan.name} pods carry ${k}=${v}`);
        }
        assert.ok(pod.spec!.containers[0]!.ports!.some((p) => p.name === 'http'), `${plan.name} serves the port named http`);
      }
      // The operator's own pods are scraped through the ServiceMonitor, not twice.
      const operatorPod = only(manifests, 'Deployment').spec.template.metadata.labels as Record<string, string>;
      assert.ok(Object.entries(pm.spec.selector.matchLabels as Record<string, string>).some(([k, v]) => operatorPod[k] !== v));
    });

    it('wraps files/prometheus-rules.yaml in a PrometheusRule, its runbook links under runbookBaseUrl', () => {
      const rule = only(manifests, 'PrometheusRule');
      assert.equal(rule.metadata.labels?.release, 'prom');
      type Rules = { groups: { rules: { alert: string; annotations: Record<string, string> }[] }[] };
      const file = parse(readFileSync(join(chart, 'files/prometheus-rules.yaml'), 'utf8')) as Rules;
      assert.ok(Array.isArray(file.groups) && file.groups.length > 0, 'the rules file has groups');
      // The rendered rules are the file's, with every runbook link made absolute and nothing else changed.
      const alerts = file.groups.flatMap((g) => g.rules);
      assert.ok(alerts.length > 0 && alerts.every((a) => a.annotations.runbook_url?.startsWith('docs/runbook.md#')), 'every alert of the file links its runbook section');
      for (const a of alerts) a.annotations.runbook_url = RUNBOOK_BASE + a.annotations.runbook_url;
      assert.deepEqual(rule.spec, file);
    });

    it('keeps the rules file as it is when no runbookBaseUrl is set', async () => {
      const plain = await helmTemplate(chart, { values: { metrics: { prometheusRule: { enabled: true } } } });
      assert.deepEqual(only(plain, 'PrometheusRule').spec, parse(readFileSync(join(chart, 'files/prometheus-rules.yaml'), 'utf8')));
    });

    it('wraps files/dashboard.json in a ConfigMap for the Grafana sidecar', () => {
      const cm = only(manifests, 'ConfigMap');
      assert.equal(cm.metadata.namespace, 'monitoring');
      assert.equal(cm.metadata.labels?.grafana_dashboard, '1');
      assert.equal(cm.metadata.labels?.grafana, 'main');
      const file = readFileSync(join(chart, 'files/dashboard.json'), 'utf8');
      assert.deepEqual(JSON.parse(cm.data['flashsale.json']), JSON.parse(file));
    });
  });

  describe('namespaced mode (watchNamespaces)', () => {
    let manifests: Manifest[];
    before(async () => {
      manifests = await helmTemplate(chart, {
        namespace: 'flashsale-system',
        values: { operator: { watchNamespaces: ['shop-a', 'shop-b'] }, metrics: { podMonitor: { enabled: true } } },
      });
    });

    it('grants a Role and RoleBinding in each watched namespace and nothing cluster-wide', () => {
      assertInvariants(manifests, 'flashsale-system');
      assert.ok(!manifests.some((m) => m.kind.startsWith('Cluster')), 'no ClusterRole or ClusterRoleBinding');
      for (const ns of ['shop-a', 'shop-b']) {
        const role = manifests.find((m) => m.kind === 'Role' && m.metadata.namespace === ns);
        assert.ok(role, `a Role in ${ns}`);
        assert.deepEqual(role.rules, dataPlaneRules);
        const binding = manifests.find((m) => m.kind === 'RoleBinding' && m.metadata.namespace === ns);
        assert.ok(binding, `a RoleBinding in ${ns}`);
        assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role.metadata.name });
        assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: serviceAccountName(manifests), namespace: 'flashsale-system' }]);
      }
      assert.equal(manifests.filter((m) => m.kind === 'Role').length, 3, 'two watched namespaces + leader election');
      assert.equal(env(manifests).get('WATCH_NAMESPACES')?.value, 'shop-a,shop-b');
      assert.deepEqual(only(manifests, 'PodMonitor').spec.namespaceSelector, { matchNames: ['shop-a', 'shop-b'] });
    });

    it('is accepted by the apiserver (server-side dry run)', async () => {
      await assertServerAccepts(manifests);
    });
  });

  describe('values the schema rejects', () => {
    const cases: [string, Record<string, unknown>, RegExp][] = [
      ['a misspelt key', { replicas: 2 }, /additional properties 'replicas' not allowed/],
      ['no replicas', { replicaCount: 0 }, /replicaCount/],
      ['a broker without a port', { kafka: { brokers: ['kafka'] } }, /brokers/],
      ['an unknown log level', { operator: { logLevel: 'verbose' } }, /logLevel/],
      ['a namespace that is not a DNS label', { operator: { watchNamespaces: ['Shop_A'] } }, /watchNamespaces/],
      ['a pull Secret name Kubernetes would refuse', { dataPlane: { imagePullSecrets: [{ name: 'Reg_Cred' }] } }, /imagePullSecrets\/0\/name/],
      ['an unknown pull policy', { image: { pullPolicy: 'Sometimes' } }, /pullPolicy/],
      ['a Redis URL of another scheme', { redis: { url: 'http://redis:6379' } }, /url/],
      ['a runbook base URL without its trailing slash', { metrics: { prometheusRule: { runbookBaseUrl: 'https://git.example.com/fs' } } }, /runbookBaseUrl/],
      ['a runbook base URL with a quote', { metrics: { prometheusRule: { runbookBaseUrl: 'https://git.example.com/"x/' } } }, /runbookBaseUrl/],
    ];
    for (const [what, values, reason] of cases) {
      it(`rejects ${what}`, async () => {
        await assert.rejects(helmTemplate(chart, { values }), (err: Error) => {
          assert.ok(err instanceof HelmError, String(err));
          assert.match(err.message, /values don't meet the specifications of the schema/);
          assert.match(err.message, reason);
          return true;
        });
      });
    }
  });

  describe('example values files', () => {
    const files = readdirSync(join(root, 'examples')).filter((f) => /^values.*\.ya?ml$/.test(f));
    it('exist', () => assert.ok(files.length > 0));
    for (const file of files) {
      it(`examples/${file} renders and keeps the invariants`, async () => {
        const manifests = await helmTemplate(chart, { namespace: 'flashsale-system', valuesFiles: [join(root, 'examples', file)] });
        assertInvariants(manifests, 'flashsale-system');
        await assertServerAccepts(manifests);
      });
    }
  });

  it('leaves to the apiserver what the values schema cannot know: an invalid label value is refused by name', async () => {
    // values.schema.json takes any string as a label value; Kubernetes' validation does not.
    const manifests = await helmTemplate(chart, { namespace: 'flashsale-system', values: { podLabels: { team: 'not a label value!' } } });
    const r = await serverDryRun(manifests);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /spec\.template\.labels: Invalid value: "not a label value!"/);
  });

  describe('a real release on the control plane: helm install, upgrade, uninstall', () => {
    const release = uniqueName('fs');
    const instance = `app.kubernetes.io/instance=${release}`;
    const helmOn = (args: string[]) => helm(args, { kubeconfig: cluster.kubeconfigPath });

    /** The objects Helm's stored manifest lists for the release, each read back from the server. */
    async function releaseObjects(): Promise<Manifest[]> {
      const rendered = parseManifests((await helmOn(['get', 'manifest', release, '--namespace', ns])).stdout);
      assert.ok(rendered.length > 0);
      const live: Manifest[] = [];
      for (const m of rendered) {
        const ref = `${m.kind}.${m.apiVersion.includes('/') ? m.apiVersion.split('/')[0] : ''}`.replace(/\.$/, '');
        live.push(JSON.parse(await kubectl.ok(['get', ref, m.metadata.name, ...(m.metadata.namespace ? ['-n', m.metadata.namespace] : []), '-o', 'json'])) as Manifest);
      }
      return live;
    }

    it('installs: the CRD and every object are created by the apiserver', async () => {
      const { args, cleanup } = releaseArgs(chart, { name: release, namespace: ns });
      let out: string;
      try {
        out = (await helmOn(['install', ...args, '--timeout', '2m'])).stdout;
      } finally {
        cleanup();
      }
      assert.match(out, /^STATUS: deployed$/m);
      assert.match(out, /^REVISION: 1$/m);
      const crd = JSON.parse(await kubectl.ok(['get', 'crd', 'flashsales.flashsale.dev', '-o', 'json'])) as { spec: { names: { kind: string } } };
      assert.equal(crd.spec.names.kind, 'FlashSale');
      const live = await releaseObjects();
      assert.deepEqual(live.map((m) => m.kind).sort(), ['ClusterRole', 'ClusterRoleBinding', 'Deployment', 'Lease', 'Role', 'RoleBinding', 'Service', 'ServiceAccount']);
      for (const m of live) {
        assert.equal(m.metadata.labels?.['app.kubernetes.io/instance'], release, `${m.kind} ${m.metadata.name}`);
        if (!m.kind.startsWith('Cluster')) assert.equal(m.metadata.namespace, ns);
      }
      // The apiserver filled in defaults: proof the objects went through it, not just Helm.
      const deployment = live.find((m) => m.kind === 'Deployment')!;
      assert.equal(deployment.spec.strategy.type, 'RollingUpdate');
      assert.equal(deployment.spec.template.spec.containers[0].terminationMessagePath, '/dev/termination-log');
      // Its ReplicaSet created the operator pod in the restricted namespace: admitted by PodSecurity.
      await watchUntil(cluster.kc, { apiVersion: 'v1', kind: 'Pod', plural: 'pods', namespace: ns, labelSelector: instance }, (pods) => pods.length > 0, { what: 'the operator pod, admitted under the restricted Pod Security Standard' });
    });

    it('upgrades: changed values reach the objects in revision 2', async () => {
      const out = (await helmOn(['upgrade', release, chart, '--namespace', ns, '--reuse-values', '--set', 'replicaCount=2', '--set', 'operator.logLevel=debug', '--timeout', '2m'])).stdout;
      assert.match(out, /^REVISION: 2$/m);
      const deployment = JSON.parse(await kubectl.ok(['get', 'deployment', '-n', ns, '-l', instance, '-o', 'json'])) as { items: Manifest[] };
      assert.equal(deployment.items.length, 1);
      assert.equal(deployment.items[0]!.spec.replicas, 2);
      const envs = deployment.items[0]!.spec.template.spec.containers[0].env as EnvVar[];
      assert.equal(envs.find((e) => e.name === 'LOG_LEVEL')?.value, 'debug');
      const history = JSON.parse((await helmOn(['history', release, '--namespace', ns, '-o', 'json'])).stdout) as { revision: number; status: string }[];
      assert.deepEqual(history.map((h) => [h.revision, h.status]), [[1, 'superseded'], [2, 'deployed']]);
    });

    it('uninstalls: nothing of the release is left', async () => {
      const out = (await helmOn(['uninstall', release, '--namespace', ns, '--wait', '--timeout', '2m'])).stdout;
      assert.match(out, new RegExp(`release "${release}" uninstalled`));
      const left = await kubectl.ok(['get', 'deployments,replicasets,services,serviceaccounts,roles,rolebindings,configmaps,secrets,poddisruptionbudgets', '-n', ns, '-l', instance, '-o', 'name']);
      assert.equal(left.trim(), '');
      assert.equal((await kubectl.ok(['get', 'clusterroles,clusterrolebindings', '-l', instance, '-o', 'name'])).trim(), '');
      // Helm's own release records (Secrets owner=helm) are gone too.
      assert.equal((await kubectl.ok(['get', 'secrets', '-n', ns, '-l', `owner=helm,name=${release}`, '-o', 'name'])).trim(), '');
      // The operator's pods (if the node agent ran them) are deleted by the garbage collector.
      await watchUntil(
        cluster.kc,
        { apiVersion: 'v1', kind: 'Pod', plural: 'pods', namespace: ns, labelSelector: instance },
        (pods) => pods.every((p) => p.metadata?.deletionTimestamp),
        { what: "the release's pods deleted" },
      );
    });
  });
});
