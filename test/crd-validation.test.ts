// The FlashSale CRD validated where users see it: against the real kube-apiserver (infra/cluster.sh)
// with the built kubectl, every invalid FlashSale listed in docs/operator.md ("Validation") is refused
// by `kubectl apply` with a message naming the field — one case per rule, transition rules included —
// and `kubectl explain` shows every spec field's description from the CRD.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { testCluster, deleteNamespace } from './support/cluster.ts';
import { eventually, uniqueName } from './support/infra.ts';
import { kubectlFor, type Kubectl } from './support/kubectl.ts';
import { validateSpec } from '../controller/spec/flashsale.ts';

const crdPath = new URL('../crds/flashsale.yaml', import.meta.url).pathname;
const docsPath = new URL('../docs/operator.md', import.meta.url).pathname;

type Spec = Record<string, unknown>;
const baseSpec = (): Spec => ({
  skus: [{ id: 'phone-x', stock: 10, timeoutBucket: '5m' }],
  timeoutBuckets: [{ name: '5m', delay: '5m' }],
  kafka: { partitions: 2, replicationFactor: 1 },
});

/** One refused FlashSale per rule; `id` matches the rule's row in docs/operator.md. */
/** `decoding`: refused by strict field validation (an unknown field) before any rule runs, not as "is invalid". */
const cases: { id: string; name?: string; spec: (s: Spec) => Spec; message: RegExp; decoding?: true }[] = [
  {
    id: 'bucket-exists',
    spec: (s) => ({ ...s, skus: [{ id: 'phone-x', stock: 10, timeoutBucket: '5m' }, { id: 'ebook-y', stock: 5, timeoutBucket: '45m' }] }),
    message: /spec\.skus: Invalid value: .*the timeoutBucket of every SKU must name a bucket of spec\.timeoutBuckets/,
  },
  {
    id: 'start-before-end',
    spec: (s) => ({ ...s, startTime: '2026-11-11T02:00:00Z', endTime: '2026-11-11T00:00:00Z' }),
    message: /spec\.endTime: Invalid value: .*must be after spec\.startTime/,
  },
  {
    id: 'replicas-order-writer',
    spec: (s) => ({ ...s, workers: { orderWriter: { minReplicas: 4, maxReplicas: 2 } } }),
    message: /spec\.workers\.orderWriter\.minReplicas: Invalid value: .*must not exceed maxReplicas/,
  },
  {
    id: 'replicas-timeout-closer',
    spec: (s) => ({ ...s, workers: { timeoutCloser: { minReplicas: 3, maxReplicas: 1 } } }),
    message: /spec\.workers\.timeoutCloser\.minReplicas: Invalid value: .*must not exceed maxReplicas/,
  },
  { id: 'interval-min', spec: (s) => ({ ...s, compensation: { interval: '0s' } }), message: /spec\.compensation\.interval: Invalid value: "0s": must be between 1s and 1h/ },
  { id: 'interval-max', spec: (s) => ({ ...s, compensation: { interval: '600h' } }), message: /spec\.compensation\.interval: Invalid value: .*must be between 1s and 1h/ },
  { id: 'grace-max', spec: (s) => ({ ...s, compensation: { grace: '25h' } }), message: /spec\.compensation\.grace: Invalid value: .*must be at most 24h/ },
  {
    id: 'delay-min',
    spec: (s) => ({ ...s, timeoutBuckets: [{ name: '5m', delay: '0s' }] }),
    message: /spec\.timeoutBuckets\[0\]\.delay: Invalid value: .*must be between 1s and 72h/,
  },
  {
    id: 'delay-max',
    spec: (s) => ({ ...s, timeoutBuckets: [{ name: '5m', delay: '73h' }] }),
    message: /spec\.timeoutBuckets\[0\]\.delay: Invalid value: .*must be between 1s and 72h/,
  },
  {
    id: 'sku-unique',
    spec: (s) => ({ ...s, skus: [{ id: 'phone-x', stock: 10, timeoutBucket: '5m' }, { id: 'phone-x', stock: 3, timeoutBucket: '5m' }] }),
    message: /spec\.skus\[1\]: Duplicate value: .*"id":"phone-x"/,
  },
  {
    id: 'bucket-unique',
    spec: (s) => ({ ...s, timeoutBuckets: [{ name: '5m', delay: '5m' }, { name: '5m', delay: '10m' }] }),
    message: /spec\.timeoutBuckets\[1\]: Duplicate value: .*"name":"5m"/,
  },
  { id: 'name-dns-1035', name: '1sale', spec: (s) => s, message: /metadata\.name: must start with a lowercase letter/ },
  { id: 'name-length', name: `s${'a'.repeat(46)}`, spec: (s) => s, message: /metadata\.name: must be at most 46 characters/ },
  {
    id: 'name-and-bucket-length',
    name: `s${'a'.repeat(29)}`,
    spec: (s) => ({ ...s, skus: [{ id: 'a', stock: 1, timeoutBucket: `b${'x'.repeat(17)}` }], timeoutBuckets: [{ name: `b${'x'.repeat(17)}`, delay: '5m' }] }),
    message: /metadata\.name and spec\.timeoutBuckets\[\]\.name: the Deployment <sale>-timeout-closer-<bucket> would be longer than 63 characters/,
  },
  {
    id: 'resources-quantity',
    spec: (s) => ({ ...s, workers: { api: { resources: { requests: { cpu: '2 cores' } } } } }),
    message: /spec\.workers\.api\.resources\.requests\.cpu: Invalid value: "2 cores": spec\.workers\.api\.resources\.requests\.cpu in body should match/,
  },
  {
    id: 'resources-limit-below-request',
    spec: (s) => ({ ...s, workers: { api: { resources: { requests: { memory: '1Gi' }, limits: { memory: '512Mi' } } } } }),
    message: /spec\.workers\.api\.resources\.limits\.memory: Invalid value: .*must not be below requests\.memory/,
  },
  {
    id: 'resources-unknown',
    spec: (s) => ({ ...s, workers: { orderWriter: { resources: { requests: { gpu: 1 } } } } }),
    message: /unknown field "spec\.workers\.orderWriter\.resources\.requests\.gpu"/,
    decoding: true,
  },
  {
    id: 'placement-node-selector-key',
    spec: (s) => ({ ...s, placement: { nodeSelector: { tier: 'sale', 'pool/x y': 'a' } } }),
    message: /spec\.placement\.nodeSelector: Invalid value: .*key pool\/x y is not a label key/,
  },
  {
    id: 'placement-node-selector-value',
    spec: (s) => ({ ...s, placement: { nodeSelector: { pool: 'a b' } } }),
    message: /spec\.placement\.nodeSelector\.pool: Invalid value: "a b": .*should match/,
  },
  {
    id: 'placement-toleration-key',
    spec: (s) => ({ ...s, placement: { tolerations: [{ operator: 'Equal', value: 'sale' }] } }),
    message: /spec\.placement\.tolerations\[0\]\.key: Required value: is required unless operator is Exists/,
  },
  {
    id: 'placement-toleration-exists-value',
    spec: (s) => ({ ...s, placement: { tolerations: [{ key: 'dedicated', operator: 'Exists', value: 'sale' }] } }),
    message: /spec\.placement\.tolerations\[0\]\.value: Invalid value: .*must be empty when operator is Exists/,
  },
  {
    id: 'placement-toleration-seconds',
    spec: (s) => ({ ...s, placement: { tolerations: [{ key: 'dedicated', effect: 'NoSchedule', tolerationSeconds: 30 }] } }),
    message: /spec\.placement\.tolerations\[0\]\.tolerationSeconds: Invalid value: .*is allowed only with effect NoExecute/,
  },
  {
    id: 'placement-priority-class',
    spec: (s) => ({ ...s, placement: { priorityClassName: 'Flash_Sale' } }),
    message: /spec\.placement\.priorityClassName: Invalid value: "Flash_Sale": .*should match/,
  },
  {
    id: 'pod-metadata-label-key',
    spec: (s) => ({ ...s, podMetadata: { labels: { 'cost center': 'x' } } }),
    message: /spec\.podMetadata\.labels: Invalid value: .*key cost center is not a label key/,
  },
  {
    id: 'pod-metadata-reserved-label',
    spec: (s) => ({ ...s, podMetadata: { labels: { team: 'sales', 'flashsale.dev/role': 'api' } } }),
    message: /spec\.podMetadata\.labels: Forbidden: key flashsale\.dev\/role is set by the operator or Kubernetes/,
  },
  {
    id: 'pod-metadata-annotation-key',
    spec: (s) => ({ ...s, podMetadata: { annotations: { 'inject?': 'false' } } }),
    message: /spec\.podMetadata\.annotations: Invalid value: .*key inject\? is not a label key/,
  },
  {
    id: 'string-length',
    spec: (s) => ({ ...s, skus: [{ id: 'p'.repeat(65), stock: 1, timeoutBucket: '5m' }] }),
    message: /spec\.skus\[0\]\.id: Too long: may not be (longer than|more than) 64/,
  },
];

/** Updates of a stored sale that are refused (transition rules). */
const transitions: { id: string; from: (s: Spec) => Spec; to: (s: Spec) => Spec; message: RegExp }[] = [
  {
    id: 'partitions-never-shrink',
    from: (s) => s,
    to: (s) => ({ ...s, kafka: { partitions: 1, replicationFactor: 1 } }),
    message: /spec\.kafka\.partitions: Forbidden: may grow but never shrink/,
  },
  {
    id: 'replication-factor-fixed',
    from: (s) => s,
    to: (s) => ({ ...s, kafka: { partitions: 2, replicationFactor: 2 } }),
    message: /spec\.kafka\.replicationFactor: Forbidden: is fixed at creation and cannot change/,
  },
];

/** Rule ids of the docs' validation table (first column, in backticks). */
function documentedRules(): string[] {
  const text = readFileSync(docsPath, 'utf8');
  const section = text.split(/^## /m).find((s) => s.startsWith('Validation'));
  assert.ok(section, 'docs/operator.md has a "## Validation" section');
  return [...section.matchAll(/^\| `([a-z0-9-]+)` \|/gm)].map((m) => m[1] as string);
}

describe('FlashSale CRD on the real apiserver', () => {
  let kubectl: Kubectl;
  let namespace: string;
  const doc = (name: string, spec: Spec) =>
    JSON.stringify({ apiVersion: 'flashsale.dev/v1alpha1', kind: 'FlashSale', metadata: { name, namespace }, spec });

  before(async () => {
    const cluster = await testCluster();
    kubectl = kubectlFor(cluster.kubeconfigYaml);
    namespace = uniqueName('crd');
    await kubectl.ok(['apply', '--server-side', '--force-conflicts', '-f', crdPath]);
    await kubectl.ok(['wait', '--for=condition=Established', 'crd/flashsales.flashsale.dev', '--timeout=60s'], { timeoutMs: 70_000 });
    await kubectl.ok(['create', 'namespace', namespace]);
    // The apiserver serves a changed CRD's rules a moment after Established: wait until a rule of this schema applies.
    await eventually(
      async () => {
        const r = await kubectl.run(['apply', '--dry-run=server', '-f', '-'], { stdin: doc('probe', { ...baseSpec(), compensation: { interval: '0s' } }) });
        return r.status !== 0 && /spec\.compensation\.interval/.test(r.stderr);
      },
      { timeoutMs: 60_000, what: 'the CRD validation rules in effect' },
    );
  });

  after(async () => {
    if (namespace) await deleteNamespace((await testCluster()).kc, namespace).catch(() => {});
    kubectl?.cleanup();
  });

  it('the docs list exactly the rules this test covers', () => {
    assert.deepEqual(documentedRules().sort(), [...cases.map((c) => c.id), ...transitions.map((t) => t.id)].sort());
  });

  it('accepts the valid base sale and every example', async () => {
    await kubectl.ok(['apply', '--dry-run=server', '-f', '-'], { stdin: doc('valid', baseSpec()) });
    // Resources in every form a user writes (integer CPUs, millicores, binary and decimal suffixes),
    // limits equal to requests in another form: accepted, as the operator's own check accepts them.
    const sized = {
      ...baseSpec(),
      workers: {
        api: { resources: { requests: { cpu: 2, memory: '1Gi' }, limits: { cpu: '2000m', memory: '1024Mi' } } },
        orderWriter: { resources: { limits: { cpu: '0.5', memory: '1e9' } } },
        timeoutCloser: { resources: { requests: { cpu: '100m' } } },
        compensator: { resources: { requests: { memory: '64Mi' }, limits: { memory: '64Mi' } } },
      },
    };
    validateSpec(sized);
    await kubectl.ok(['apply', '--dry-run=server', '-f', '-'], { stdin: doc('sized', sized) });
    // A placement in every form Kubernetes takes (prefixed keys, an empty value, Exists without a key,
    // NoExecute with seconds), accepted here as by the operator's own check.
    const placed = {
      ...baseSpec(),
      placement: {
        nodeSelector: { 'node.kubernetes.io/pool': 'flash-sale', 'example.com/tier': '', zone_A: 'x.y-z' },
        tolerations: [{ operator: 'Exists' }, { key: '', operator: 'Exists', effect: 'NoSchedule' }, { key: 'dedicated', operator: 'Equal', value: 'sale', effect: 'NoExecute', tolerationSeconds: 30 }],
        priorityClassName: 'flash-sale.high',
      },
      podMetadata: { labels: { team: 'sales', 'app.kubernetes.io/version': '1.2' }, annotations: { 'sidecar.istio.io/inject': 'false', 'example.com/note': 'free text: any characters' } },
    };
    validateSpec(placed);
    await kubectl.ok(['apply', '--dry-run=server', '-f', '-'], { stdin: doc('placed', placed) });
    for (const file of ['flashsale.yaml', 'flashsale-minimal.yaml', 'flashsale-scheduled.yaml', 'flashsale-two-buckets.yaml', 'flashsale-dedicated-pool.yaml']) {
      await kubectl.ok(['apply', '--dry-run=server', '-n', namespace, '-f', new URL(`../examples/${file}`, import.meta.url).pathname]);
    }
  });

  for (const c of cases) {
    it(`refuses ${c.id}`, async () => {
      const r = await kubectl.run(['apply', '-f', '-'], { stdin: doc(c.name ?? `bad-${c.id}`, c.spec(baseSpec())) });
      assert.notEqual(r.status, 0, `kubectl apply accepted the ${c.id} case`);
      assert.match(r.stderr, c.message);
      assert.match(r.stderr, c.decoding ? /strict decoding error/ : /is invalid/);
    });
  }

  for (const t of transitions) {
    it(`refuses the update ${t.id} of a stored sale`, async () => {
      const name = `tr-${t.id}`.slice(0, 40);
      await kubectl.ok(['apply', '-f', '-'], { stdin: doc(name, t.from(baseSpec())) });
      const r = await kubectl.run(['apply', '-f', '-'], { stdin: doc(name, t.to(baseSpec())) });
      assert.notEqual(r.status, 0, `kubectl apply accepted ${t.id}`);
      assert.match(r.stderr, t.message);
      // Nothing changed, and a change the rule allows still goes through.
      const stored = JSON.parse(await kubectl.ok(['get', 'flashsale', name, '-n', namespace, '-o', 'json'])) as { spec: { kafka: { partitions: number; replicationFactor: number } } };
      assert.deepEqual(stored.spec.kafka, { partitions: 2, replicationFactor: 1 });
      await kubectl.ok(['apply', '-f', '-'], { stdin: doc(name, { ...baseSpec(), kafka: { partitions: 3, replicationFactor: 1 } }) });
    });
  }

  it('kubectl explain shows every spec field with its description', async () => {
    const crd = parse(readFileSync(crdPath, 'utf8')) as { spec: { versions: { schema: { openAPIV3Schema: { properties: { spec: Schema } } } }[] } };
    type Schema = { description?: string; properties?: Record<string, Schema>; items?: Schema };
    const fields: { path: string; description: string }[] = [];
    const walk = (s: Schema, path: string) => {
      const props = s.properties ?? s.items?.properties ?? {};
      for (const [k, v] of Object.entries(props)) {
        fields.push({ path: `${path}.${k}`, description: v.description ?? '' });
        walk(v, `${path}.${k}`);
      }
    };
    walk(crd.spec.versions[0]!.schema.openAPIV3Schema.properties.spec, 'spec');
    assert.ok(fields.length >= 25, `found ${fields.length} spec fields`);
    const recursive = await eventually(
      async () => {
        const r = await kubectl.run(['explain', 'flashsale.spec', '--recursive']);
        return r.status === 0 && r.stdout.includes('deletionPolicy') && r.stdout;
      },
      { timeoutMs: 60_000, what: 'kubectl explain flashsale.spec --recursive' },
    );
    const norm = (t: string) => t.replace(/\s+/g, ' ').trim();
    for (const f of fields) {
      const leaf = f.path.split('.').at(-1) as string;
      assert.match(recursive, new RegExp(`^\\s+${leaf}\\s`, 'm'), `--recursive lists ${f.path}`);
      assert.ok(f.description.length > 0, `${f.path} has a description in the CRD`);
      const out = await kubectl.ok(['explain', `flashsale.${f.path}`]);
      assert.ok(norm(out).includes(norm(f.description)), `kubectl explain flashsale.${f.path} shows its description:\n${out}`);
    }
  });
});
