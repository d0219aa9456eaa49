import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { generate, generatedPath } from '../controller/spec/generate.ts';
import { InvalidSpecError, loadFlashSales, parseDuration, validateFlashSale, validateSpec } from '../controller/spec/flashsale.ts';
import { saleNames } from '../controller/spec/names.ts';
import { parse } from 'yaml';

const minimal = () => ({
  skus: [{ id: 'phone-x', stock: 10, timeoutBucket: '30m' }],
  timeoutBuckets: [{ name: '30m', delay: '30m' }],
});

function problems(spec: unknown): string[] {
  try {
    validateSpec(spec);
  } catch (err) {
    assert.ok(err instanceof InvalidSpecError);
    return err.problems;
  }
  assert.fail('expected the spec to be invalid');
}

describe('FlashSale spec', () => {
  it('is generated from the CRD and up to date', async () => {
    assert.equal(readFileSync(generatedPath, 'utf8'), await generate(), 'run `npm run gen` after changing crds/flashsale.yaml');
  });

  it('applies the schema defaults', () => {
    const spec = validateSpec(minimal());
    assert.equal(spec.perUserLimit, 1);
    assert.deepEqual(spec.kafka, { partitions: 6, replicationFactor: 1 });
    assert.equal(spec.deletionPolicy, 'Retain');
    assert.deepEqual(spec.workers.orderWriter, { minReplicas: 1, maxReplicas: 6, lagThreshold: 1000 });
    assert.deepEqual(spec.compensation, { interval: '30s', grace: '10s' });
  });

  it('does not modify its input', () => {
    const input = minimal();
    validateSpec(input);
    assert.deepEqual(input, minimal());
  });

  it('names every problem precisely', () => {
    const p = problems({
      startTime: '2026-11-11T02:00:00Z',
      endTime: '2026-11-11T00:00:00Z',
      skus: [
        { id: 'phone-x', stock: 10, timeoutBucket: '30m' },
        { id: 'phone-x', stock: 5, timeoutBucket: '45m' },
      ],
      timeoutBuckets: [{ name: '30m', delay: '30m' }, { name: 'instant', delay: '0s' }],
      workers: { orderWriter: { minReplicas: 4, maxReplicas: 2 } },
    });
    assert.deepEqual(p, [
      'spec.timeoutBuckets[1].delay: must be between 1s and 72h (got "0s")',
      'spec.skus[1].id: duplicate SKU id "phone-x" (also spec.skus[0])',
      'spec.skus[1].timeoutBucket: unknown bucket "45m" (defined: 30m, instant)',
      'spec.endTime: must be after spec.startTime (2026-11-11T02:00:00Z >= 2026-11-11T00:00:00Z)',
      'spec.workers.orderWriter.minReplicas: must not exceed maxReplicas (4 > 2)',
    ]);
  });

  it('reports schema violations with their field paths', () => {
    const p = problems({ ...minimal(), skus: [{ id: 'a b', stock: -1, timeoutBucket: '30m' }], kafka: { partitions: 0 }, deletionPolicy: 'Drop' });
    assert.ok(p.includes('spec.skus[0].stock: must be >= 0 (got -1)'), p.join('\n'));
    assert.ok(p.some((x) => x.startsWith('spec.skus[0].id: "a b" does not match')), p.join('\n'));
    assert.ok(p.includes('spec.kafka.partitions: must be >= 1 (got 0)'), p.join('\n'));
    assert.ok(p.includes('spec.deletionPolicy: must be one of Retain, Delete'), p.join('\n'));
    assert.deepEqual(problems({ skus: [] }), ['spec.timeoutBuckets: required', 'spec.skus: must NOT have fewer than 1 items']);
    assert.deepEqual(problems({ ...minimal(), startTime: 'tomorrow' }), ['spec.startTime: "tomorrow" is not an RFC 3339 date-time']);
    // Closed objects, as kubectl apply's strict field validation: a misspelt field is named, not ignored.
    assert.deepEqual(problems({ ...minimal(), workers: { api: { replikas: 3 } }, deletion: 'Delete' }), ['spec.deletion: unknown field', 'spec.workers.api.replikas: unknown field']);
  });

  it('checks the whole document', () => {
    assert.throws(() => validateFlashSale({ apiVersion: 'v1', kind: 'FlashSale', metadata: { name: 'Bad_Name' }, spec: minimal() }), (err: unknown) => {
      assert.ok(err instanceof InvalidSpecError);
      assert.deepEqual(err.problems, [
        'apiVersion: must be flashsale.dev/v1alpha1 (got "v1")',
        `metadata.name: must be a DNS-1035 label (a lowercase letter, then lowercase letters, digits and '-') of at most 46 characters (got "Bad_Name")`,
      ]);
      return true;
    });
    const sale = validateFlashSale({ apiVersion: 'flashsale.dev/v1alpha1', kind: 'FlashSale', metadata: { name: 'ok' }, spec: minimal() });
    assert.equal(sale.metadata.namespace, 'default');
  });

  it('bounds durations as the CRD does', () => {
    const spec = (c: object, b: object = {}) => ({ ...minimal(), timeoutBuckets: [{ name: '30m', delay: '30m', ...b }], compensation: c });
    assert.deepEqual(problems(spec({ interval: '0s' })), ['spec.compensation.interval: must be between 1s and 1h (got "0s")']);
    assert.deepEqual(problems(spec({ interval: '600h' })), ['spec.compensation.interval: must be between 1s and 1h (got "600h")']);
    assert.deepEqual(problems(spec({ grace: '25h' })), ['spec.compensation.grace: must be at most 24h (got "25h")']);
    assert.deepEqual(problems(spec({}, { delay: '73h' })), ['spec.timeoutBuckets[0].delay: must be between 1s and 72h (got "73h")']);
    assert.ok(problems(spec({ interval: '1234567s' }))[0]?.startsWith('spec.compensation.interval: "1234567s" does not match'));
    // The bounds themselves are accepted.
    for (const ok of [spec({ interval: '1s', grace: '0s' }, { delay: '1s' }), spec({ interval: '1h', grace: '24h' }, { delay: '72h' })]) validateSpec(ok);
  });

  it("checks workers' resources as the CRD does: quantities, known names, limits not below requests", () => {
    const spec = (resources: object, role = 'api') => ({ ...minimal(), workers: { [role]: { resources } } });
    const ok = validateSpec(spec({ requests: { cpu: 2, memory: '1Gi' }, limits: { cpu: '2000m', memory: '1024Mi' } }));
    assert.deepEqual(ok.workers.api.resources, { requests: { cpu: 2, memory: '1Gi' }, limits: { cpu: '2000m', memory: '1024Mi' } });
    assert.equal(ok.workers.compensator.resources, undefined);
    validateSpec(spec({ requests: { cpu: '0.5' }, limits: { cpu: '500m' } }, 'compensator'));
    validateSpec(spec({ requests: { memory: '1e9' }, limits: { memory: '1G' } }, 'timeoutCloser'));
    assert.deepEqual(problems(spec({ requests: { cpu: '2', memory: '1Gi' }, limits: { cpu: '1999m', memory: '1023Mi' } })), [
      'spec.workers.api.resources.limits.cpu: must not be below requests.cpu (1999m < 2)',
      'spec.workers.api.resources.limits.memory: must not be below requests.memory (1023Mi < 1Gi)',
    ]);
    assert.deepEqual(problems(spec({ requests: { memory: '0.1' }, limits: { memory: '99m' } }, 'orderWriter')), ['spec.workers.orderWriter.resources.limits.memory: must not be below requests.memory (99m < 0.1)']);
    assert.ok(problems(spec({ requests: { cpu: '2 cores' } }))[0]?.startsWith('spec.workers.api.resources.requests.cpu: "2 cores" does not match'));
    assert.ok(problems(spec({ limits: { memory: '-1Gi' } }))[0]?.startsWith('spec.workers.api.resources.limits.memory: "-1Gi" does not match'));
    assert.deepEqual(problems(spec({ limits: { cpu: -1 } })), ['spec.workers.api.resources.limits.cpu: must be >= 0 (got -1)']);
    assert.deepEqual(problems(spec({ requests: { gpu: 1 } })), ['spec.workers.api.resources.requests.gpu: unknown field']);
  });

  it("checks the pods' placement as the CRD does: label keys and values, tolerations Kubernetes would refuse", () => {
    const spec = (placement: object) => ({ ...minimal(), placement });
    const placement = {
      nodeSelector: { 'node.kubernetes.io/pool': 'sale', tier: '' },
      tolerations: [{ operator: 'Exists' }, { key: 'dedicated', value: 'sale', effect: 'NoExecute', tolerationSeconds: 30 }, { key: '', operator: 'Exists', effect: 'NoSchedule' }],
      priorityClassName: 'flash-sale.high',
    };
    assert.deepEqual(validateSpec(spec(placement)).placement, placement, 'kept as written, nothing defaulted');
    assert.equal(validateSpec(minimal()).placement, undefined);
    assert.deepEqual(problems(spec({ nodeSelector: { ok: 'a', 'pool/x y': 'a', [`${'a'.repeat(254)}/k`]: 'b', [`p/${'n'.repeat(64)}`]: 'c' } })), [
      'spec.placement.nodeSelector: key "pool/x y" is not a label key',
      `spec.placement.nodeSelector: key "${'a'.repeat(254)}/k" is not a label key`,
      `spec.placement.nodeSelector: key "p/${'n'.repeat(64)}" is not a label key`,
    ]);
    assert.ok(problems(spec({ nodeSelector: { pool: 'a b' } }))[0]?.startsWith('spec.placement.nodeSelector.pool: "a b" does not match'));
    assert.deepEqual(problems(spec({ tolerations: [{ operator: 'Equal', value: 'v' }, { key: 'k', operator: 'Exists', value: 'v' }, { key: 'k', effect: 'NoSchedule', tolerationSeconds: 5 }] })), [
      'spec.placement.tolerations[0].key: is required unless operator is Exists (an empty key with Exists tolerates every taint)',
      'spec.placement.tolerations[1].value: must be empty when operator is Exists',
      'spec.placement.tolerations[2].tolerationSeconds: is allowed only with effect NoExecute',
    ]);
    assert.ok(problems(spec({ tolerations: [{ key: 'k', effect: 'NoWhere' }] }))[0]?.startsWith('spec.placement.tolerations[0].effect: must be one of'));
    assert.ok(problems(spec({ priorityClassName: 'Bad_Name' }))[0]?.startsWith('spec.placement.priorityClassName: "Bad_Name" does not match'));
    assert.deepEqual(problems(spec({ affinity: {} })), ['spec.placement.affinity: unknown field']);
  });

  it("checks the pods' labels and annotations as the CRD does: keys, values, the operator's own labels", () => {
    const spec = (podMetadata: object) => ({ ...minimal(), podMetadata });
    const podMetadata = { labels: { team: 'sales', 'app.kubernetes.io/version': '1.2' }, annotations: { 'sidecar.istio.io/inject': 'false', note: 'any text, with spaces: fine' } };
    assert.deepEqual(validateSpec(spec(podMetadata)).podMetadata, podMetadata);
    assert.deepEqual(problems(spec({ labels: { 'flashsale.dev/role': 'x', 'app.kubernetes.io/instance': 'y', 'pod-template-hash': 'z', 'bad key': 'v' }, annotations: { 'bad key': 'v' } })), [
      'spec.podMetadata.labels: key "flashsale.dev/role" is set by the operator or Kubernetes (the selectors rely on it)',
      'spec.podMetadata.labels: key "app.kubernetes.io/instance" is set by the operator or Kubernetes (the selectors rely on it)',
      'spec.podMetadata.labels: key "pod-template-hash" is set by the operator or Kubernetes (the selectors rely on it)',
      'spec.podMetadata.labels: key "bad key" is not a label key',
      'spec.podMetadata.annotations: key "bad key" is not a label key',
    ]);
    assert.ok(problems(spec({ labels: { team: 'a b' } }))[0]?.startsWith('spec.podMetadata.labels.team: "a b" does not match'));
    assert.ok(problems(spec({ annotations: { a: 'x'.repeat(4097) } }))[0]?.startsWith('spec.podMetadata.annotations.a: must NOT have more than 4096 characters'));
  });

  it('refuses sale names that do not make valid child names', () => {
    const doc = (name: string, bucket = '30m') => ({
      apiVersion: 'flashsale.dev/v1alpha1',
      kind: 'FlashSale',
      metadata: { name },
      spec: { skus: [{ id: 'a', stock: 1, timeoutBucket: bucket }], timeoutBuckets: [{ name: bucket, delay: '1m' }] },
    });
    const refused = (d: unknown) => {
      try {
        validateFlashSale(d);
      } catch (err) {
        assert.ok(err instanceof InvalidSpecError);
        return err.problems;
      }
      return [];
    };
    assert.match(refused(doc('1sale')).join(), /^metadata.name: must be a DNS-1035 label/, 'a Service name starts with a letter');
    assert.match(refused(doc('a'.repeat(47), 'b')).join(), /^metadata.name: .* at most 46 characters/);
    const longest = 'a'.repeat(46);
    assert.deepEqual(refused(doc(longest, 'b')), []);
    assert.equal(saleNames({ namespace: 'x', name: longest }).workloads.timeoutCloser('b').length, 63);
    assert.deepEqual(refused(doc('a'.repeat(30), 'b'.repeat(18))), [
      `spec.timeoutBuckets[0].name: the Deployment ${'a'.repeat(30)}-timeout-closer-${'b'.repeat(18)} would be longer than 63 characters (sale and bucket name may hold at most 47 together)`,
    ]);
    assert.deepEqual(refused(doc('a'.repeat(30), 'b'.repeat(17))), []);
  });

  it('keeps `all` out of the CRD categories and every spec field described', () => {
    const crd = parse(readFileSync(new URL('../crds/flashsale.yaml', import.meta.url), 'utf8')) as {
      spec: { names: { categories?: string[] }; versions: { schema: { openAPIV3Schema: Record<string, unknown> } }[] };
    };
    assert.ok(!(crd.spec.names.categories ?? []).includes('all'), '`kubectl delete all --all` must not delete sales');
    const undescribed: string[] = [];
    const walk = (s: Record<string, unknown>, at: string) => {
      if (typeof s.description !== 'string' || s.description.length < 5) undescribed.push(at);
      for (const [k, v] of Object.entries((s.properties ?? {}) as Record<string, Record<string, unknown>>)) walk(v, `${at}.${k}`);
      if (s.items) walk(s.items as Record<string, unknown>, `${at}[]`);
    };
    const spec = (crd.spec.versions[0]?.schema.openAPIV3Schema.properties as Record<string, Record<string, unknown>>).spec;
    assert.ok(spec);
    walk(spec, 'spec');
    // List items are described by their list; every named field must say what it is.
    assert.deepEqual(undescribed.filter((p) => !p.endsWith('[]')), []);
    assert.equal(
      readFileSync(new URL('../crds/flashsale.yaml', import.meta.url), 'utf8'),
      readFileSync(new URL('../charts/flashsale-operator/crds/flashsale.yaml', import.meta.url), 'utf8'),
      'the chart ships the same CRD',
    );
  });

  it('loads the example file', () => {
    const [sale] = loadFlashSales(new URL('../examples/flashsale.yaml', import.meta.url).pathname);
    assert.equal(sale?.metadata.name, 'singles-day');
    assert.equal(sale?.spec.skus.length, 2);
  });

  it('parses durations', () => {
    assert.equal(parseDuration('2s'), 2000);
    assert.equal(parseDuration('5m'), 300_000);
    assert.equal(parseDuration('1h'), 3_600_000);
    assert.throws(() => parseDuration('5 minutes'), /invalid duration/);
  });

  it('derives every name from the sale', () => {
    const n = saleNames({ namespace: 'shop', name: 'd11' });
    assert.equal(n.topics.orders, 'flashsale.shop.d11.orders');
    assert.equal(n.topics.delay('5m'), 'flashsale.shop.d11.delay.5m');
    assert.equal(n.groups.timeoutCloser('5m'), 'flashsale.shop.d11.timeout-closer.5m');
    const k = n.redis.sku('phone-x');
    // Every key of one SKU carries the same hash tag, so one Lua script may touch them on Redis Cluster.
    const tags = Object.values(k).map((key) => /\{([^}]*)\}/.exec(key)?.[1]);
    assert.deepEqual(new Set(tags), new Set(['shop/d11/phone-x']));
    assert.equal(n.workloads.timeoutCloser('30m'), 'd11-timeout-closer-30m');
  });
});
