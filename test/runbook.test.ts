// docs/runbook.md against what it describes: a section per alert and an alert per section, each
// alert's runbook_url pointing at its section, every Kafka, Redis and workload name of the page one
// that controller/spec/names.ts derives, the log lines and dead-letter reasons it quotes present in
// the code, and every SQL block run against the real schema (MariaDB, migrated as the workers do).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import mysql from 'mysql2/promise';
import { parse } from 'yaml';
import { migrate } from '../controller/infra/mysql.ts';
import { deadLetter } from '../controller/dataplane/messages.ts';
import { LABEL_ROLE, LABEL_SALE } from '../controller/operator/workloads.ts';
import { saleNames } from '../controller/spec/names.ts';
import { dropDatabase, testConfig } from './support/infra.ts';

const read = (path: string) => readFileSync(new URL(`../${path}`, import.meta.url), 'utf8');
const runbook = read('docs/runbook.md');
const rules = parse(read('charts/flashsale-operator/files/prometheus-rules.yaml')) as {
  groups: { rules: { alert: string; annotations: Record<string, string> }[] }[];
};
const alerts = rules.groups.flatMap((g) => g.rules);

/** Every match of the pattern in the runbook (the whole match). */
function found(pattern: RegExp): string[] {
  return [...runbook.matchAll(pattern)].map((m) => m[0]);
}

describe('runbook (docs/runbook.md)', () => {
  it('has a section for every alert and an alert for every section, each linked by its runbook_url', () => {
    const sections = found(/^## FlashSale\w+$/gm).map((h) => h.slice(3));
    assert.deepEqual([...sections].sort(), alerts.map((a) => a.alert).sort());
    for (const a of alerts) {
      // GitHub's anchor of a heading that is one word: the word in lower case.
      assert.equal(a.annotations.runbook_url, `docs/runbook.md#${a.alert.toLowerCase()}`, `${a.alert}: runbook_url`);
    }
  });

  it('names only the topics, groups, Redis keys and workloads names.ts derives', () => {
    const n = saleNames({ namespace: '$NS', name: '$SALE' });
    const keys = n.redis.sku('$SKU');
    const kafka = new Set([n.topics.orders, n.topics.delay('$BUCKET'), n.topics.retry, n.topics.deadLetter, n.groups.orderWriter, n.groups.timeoutCloser('$BUCKET'), n.groups.retry]);
    const workloads = new Set([n.workloads.api, n.workloads.orderWriter, n.workloads.timeoutCloser('$BUCKET'), n.workloads.compensator]);
    const suffixes = new Set(Object.values(keys).map((k) => k.slice(k.lastIndexOf(':') + 1)));

    const kafkaNames = found(/flashsale\.\$NS\.\$SALE\.[A-Za-z0-9$.-]*[A-Za-z0-9$]/g);
    const redisKeys = found(/fs:\{\$NS\/\$SALE\/\$SKU\}:[a-z-]+/g);
    // "…:holdings" in the table of names: a key of the SKU named by its suffix alone.
    const shortKeys = found(/`…:[a-z-]+`/g).map((k) => k.slice(3, -1));
    const workloadNames = found(/\$SALE-[A-Za-z$-]*[A-Za-z]/g);
    // Enough of each that the checks below check something (the page names all of them).
    assert.ok(kafkaNames.length >= 8 && new Set(kafkaNames).size === kafka.size, `Kafka names found: ${[...new Set(kafkaNames)].join(', ')}`);
    assert.ok(redisKeys.length >= 10, `Redis keys found: ${redisKeys.length}`);
    assert.ok(shortKeys.length >= 4, `short Redis keys found: ${shortKeys.length}`);
    assert.ok(new Set(workloadNames).size === workloads.size, `workloads found: ${[...new Set(workloadNames)].join(', ')}`);
    for (const t of kafkaNames) assert.ok(kafka.has(t), `${t} is a topic or group of names.ts`);
    for (const k of redisKeys) assert.ok(Object.values(keys).includes(k), `${k} is a key of names.ts`);
    for (const s of shortKeys) assert.ok(suffixes.has(s), `…:${s} is a key of names.ts`);
    for (const w of workloadNames) assert.ok(workloads.has(w), `${w} is a workload of names.ts`);
    // The fence deletes every key of the SKU, in one DEL: the runbook's DEL names them all.
    const del = runbook.slice(runbook.indexOf('redis-cli -u "$REDIS_URL" DEL'));
    const delKeys = found(/fs:\{\$NS\/\$SALE\/\$SKU\}:[a-z-]+/g).filter((k) => del.slice(0, del.indexOf('```')).includes(`"${k}"`));
    assert.deepEqual([...new Set(delKeys)].sort(), Object.values(keys).sort(), 'the fence DEL names every key of the SKU');
    for (const label of [LABEL_SALE, LABEL_ROLE]) assert.ok(runbook.includes(label), `label ${label}`);
  });

  it('quotes log lines, dead-letter reasons and record fields the code has', () => {
    const code = ['controller/dataplane/api.ts', 'controller/dataplane/order-writer.ts', 'controller/dataplane/timeout-closer.ts', 'controller/metrics/lag.ts'].map(read).join('\n');
    for (const line of ['reserve failed', 'hand-off to Kafka failed; giving the reservation back', 'SKU has no stock in Redis (not provisioned?)', 'Redis went back in time for this SKU', 'lag collection failed; keeping the previous snapshot']) {
      assert.ok(runbook.includes(`\`${line}`), `the runbook quotes "${line}"`);
      assert.ok(code.includes(line), `"${line}" is a log line of the code`);
    }
    for (const reason of ['not_json', 'version', 'foreign_sale', 'malformed', 'due_beyond_delay', 'retries_exhausted']) {
      assert.ok(runbook.includes(`\`${reason}\``), `the runbook lists reason ${reason}`);
      assert.ok(code.includes(`'${reason}'`), `${reason} is a dead-letter reason of the code`);
    }
    const jq = /jq '\{([^}]+)\}'/.exec(runbook);
    assert.ok(jq, 'the runbook reads dead letters with jq');
    const record = deadLetter('orders', 'r', { topic: 't', partition: 0, offset: '0', key: null, value: null });
    for (const field of (jq[1] as string).split(',').map((f) => f.trim())) assert.ok(field in record, `dead letters have a field ${field}`);
  });

  describe('SQL, on the real schema', () => {
    const config = testConfig();
    let conn: mysql.Connection;
    before(async () => {
      await migrate(config.mysql);
      const { host, port, user, password, database } = config.mysql;
      conn = await mysql.createConnection({ host, port, user, password, database, multipleStatements: true, timezone: 'Z' });
      // One order of each state, one release pending: the queries then have rows to read.
      const sale = 'shop/singles-day';
      await conn.query(
        `INSERT INTO orders (order_id, sale, sku_id, user_id, quantity, status, created_at, due_at) VALUES
          ('01a00000-0000-7000-8000-000000000001', ?, 'phone-x', 'u-1', 1, 'UNPAID', UTC_TIMESTAMP(3) - INTERVAL 1 HOUR, UTC_TIMESTAMP(3) - INTERVAL 30 MINUTE),
          ('01a00000-0000-7000-8000-000000000002', ?, 'phone-x', 'u-2', 1, 'PAID', UTC_TIMESTAMP(3), UTC_TIMESTAMP(3) + INTERVAL 30 MINUTE),
          ('01a00000-0000-7000-8000-000000000003', ?, 'phone-x', 'u-3', 1, 'CLOSED', UTC_TIMESTAMP(3) - INTERVAL 1 HOUR, UTC_TIMESTAMP(3) - INTERVAL 30 MINUTE)`,
        [sale, sale, sale],
      );
    });
    after(async () => {
      await conn?.end();
      await dropDatabase(config);
    });

    it('every block runs and reads what it says it reads', async () => {
      const blocks = found(/```sql\n[\s\S]*?```/g).map((b) => b.slice(7, -3));
      assert.ok(blocks.length >= 3, `${blocks.length} SQL blocks`);
      const results: unknown[][] = [];
      for (const sql of blocks) {
        const [res] = await conn.query(sql);
        // A block of several statements answers one result per statement (rows, or a header for SET).
        const multi = Array.isArray(res) && res.some((x) => Array.isArray(x) || (typeof x === 'object' && x !== null && 'affectedRows' in x));
        const sets = (multi ? res : [res]) as unknown[];
        results.push(...sets.filter(Array.isArray));
      }
      const rows = results.flat() as Record<string, unknown>[];
      // The overdue query finds the UNPAID order due 30 minutes ago, the status query all three
      // states, the pending-release query the one release.
      assert.ok(rows.some((r) => r.sku_id === 'phone-x' && Number(r.overdue_unpaid) === 1), JSON.stringify(rows));
      assert.deepEqual(rows.filter((r) => 'status' in r).map((r) => `${r.status}:${r.units}`).sort(), ['CLOSED:1', 'PAID:1', 'UNPAID:1']);
      assert.ok(rows.some((r) => Number(r.pending) === 1), JSON.stringify(rows));
    });
  });
});
