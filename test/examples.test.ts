// Every FlashSale in examples/ is valid as the operator and standalone mode see it, and each one
// shows what its file name promises. (Values files are rendered through the chart in helm.test.ts.)
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { desiredDeployment, plannedWorkloads } from '../controller/operator/workloads.ts';
import { loadFlashSales, parseDuration, validateFlashSale } from '../controller/spec/flashsale.ts';

const examples = fileURLToPath(new URL('../examples/', import.meta.url));
const saleFiles = readdirSync(examples).filter((f) => /^flashsale.*\.ya?ml$/.test(f));

describe('examples', () => {
  it('include the minimal, two-bucket, scheduled and dedicated-pool sales and a production values file', () => {
    for (const f of ['flashsale-minimal.yaml', 'flashsale-two-buckets.yaml', 'flashsale-scheduled.yaml', 'flashsale-dedicated-pool.yaml', 'flashsale.yaml', 'values-production.yaml']) {
      assert.ok(readdirSync(examples).includes(f), `examples/${f}`);
    }
  });

  for (const file of saleFiles) {
    it(`examples/${file} holds valid FlashSales`, () => {
      const docs = parseAllDocuments(readFileSync(join(examples, file), 'utf8')).map((d) => d.toJS() as unknown).filter((d) => d != null);
      assert.ok(docs.length > 0);
      for (const doc of docs) validateFlashSale(doc);
      assert.equal(loadFlashSales(join(examples, file)).length, docs.length);
    });
  }

  it('the minimal sale leaves everything else to the defaults', () => {
    const [sale] = loadFlashSales(join(examples, 'flashsale-minimal.yaml'));
    const raw = parseAllDocuments(readFileSync(join(examples, 'flashsale-minimal.yaml'), 'utf8'))[0]!.toJS() as { spec: object };
    assert.deepEqual(Object.keys(raw.spec).sort(), ['skus', 'timeoutBuckets']);
    assert.equal(sale!.spec.skus.length, 1);
  });

  it('the dedicated-pool sale puts every pod of its data plane on the pool, with its priority and labels', () => {
    const [sale] = loadFlashSales(join(examples, 'flashsale-dedicated-pool.yaml'));
    const env = { image: 'flashsale-operator:test', kafkaBrokers: ['k:9092'], redisUrl: 'redis://r', mysqlUrl: 'mysql://m/db', logLevel: 'info' };
    const pods = plannedWorkloads(sale!, {}).map((plan) => desiredDeployment(sale!, plan, env).spec!.template);
    assert.deepEqual(pods.length, 4, 'api, order writer, one closer, compensator');
    for (const pod of pods) {
      assert.deepEqual(pod.spec!.nodeSelector, { 'node-role.example.com/flash-sale': 'true' });
      assert.deepEqual(pod.spec!.tolerations, [{ key: 'dedicated', operator: 'Equal', value: 'flash-sale', effect: 'NoSchedule' }]);
      assert.equal(pod.spec!.priorityClassName, 'flash-sale');
      assert.equal(pod.metadata!.labels!['cost-center'], 'marketing');
      assert.equal(pod.metadata!.annotations!['sidecar.istio.io/inject'], 'false');
    }
  });

  it('the two-bucket sale closes virtual goods after 5 minutes and physical goods after 30', () => {
    const [sale] = loadFlashSales(join(examples, 'flashsale-two-buckets.yaml'));
    const delays = new Map(sale!.spec.timeoutBuckets.map((b) => [b.name, parseDuration(b.delay)]));
    assert.deepEqual([...delays.values()].sort((a, b) => a - b), [5 * 60_000, 30 * 60_000]);
    const bySku = Object.fromEntries(sale!.spec.skus.map((s) => [s.id, delays.get(s.timeoutBucket)]));
    assert.equal(bySku['gift-card-100'], 5 * 60_000);
    assert.equal(bySku['phone-x'], 30 * 60_000);
  });

  it('the scheduled sale has a start before its end', () => {
    const [sale] = loadFlashSales(join(examples, 'flashsale-scheduled.yaml'));
    assert.ok(sale!.spec.startTime && sale!.spec.endTime);
    assert.ok(Date.parse(sale!.spec.startTime) < Date.parse(sale!.spec.endTime));
  });
});
