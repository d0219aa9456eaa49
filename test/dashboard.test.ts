// The shipped Grafana dashboard and alert rules, checked against the essentials of Grafana's
// dashboard JSON model (https://grafana.com/docs/grafana/latest/dashboards/build-dashboards/view-dashboard-json-model/)
// and the Prometheus rule file format. The Prometheus test evaluates every expression for real.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { parse } from 'yaml';
import { dataPlaneMetrics } from '../controller/metrics/dataplane.ts';
import { lagMetrics } from '../controller/metrics/lag.ts';
import { operatorMetrics } from '../controller/metrics/operator.ts';

export interface DashboardTarget {
  refId: string;
  expr: string;
  datasource?: { type?: string; uid?: string };
}
export interface DashboardPanel {
  id: number;
  type: string;
  title: string;
  gridPos: { h: number; w: number; x: number; y: number };
  datasource?: { type?: string; uid?: string };
  targets?: DashboardTarget[];
  panels?: DashboardPanel[];
  collapsed?: boolean;
}

const dashboardPath = new URL('../charts/flashsale-operator/files/dashboard.json', import.meta.url);
const rulesPath = new URL('../charts/flashsale-operator/files/prometheus-rules.yaml', import.meta.url);
const dashboard = JSON.parse(readFileSync(dashboardPath, 'utf8')) as {
  uid: string;
  title: string;
  schemaVersion: number;
  version: number;
  editable: boolean;
  tags: string[];
  time: { from: string; to: string };
  templating: { list: { name: string; type: string; query: unknown; datasource?: { uid?: string } }[] };
  annotations: { list: unknown[] };
  panels: DashboardPanel[];
};

// Panel types of a stock Grafana (no plugins needed to open the dashboard).
const CORE_PANEL_TYPES = new Set(['row', 'timeseries', 'stat', 'gauge', 'bargauge', 'table', 'text', 'state-timeline', 'status-history', 'heatmap', 'piechart', 'barchart', 'histogram', 'logs']);
const VARIABLE_TYPES = new Set(['query', 'datasource', 'custom', 'constant', 'interval', 'textbox', 'adhoc']);
const GRAFANA_GLOBALS = new Set(['__rate_interval', '__interval', '__range', '__range_s', '__interval_ms']);

describe('Grafana dashboard', () => {
  const panels = dashboard.panels;

  it('has the top-level fields of the dashboard model', () => {
    assert.match(dashboard.uid, /^[A-Za-z0-9_-]{1,40}$/, 'uid: at most 40 characters of letters, digits, - and _');
    assert.ok(dashboard.title.length > 0);
    assert.ok(Number.isInteger(dashboard.schemaVersion) && dashboard.schemaVersion >= 36, `schemaVersion ${dashboard.schemaVersion} (Grafana 9+ models start at 36)`);
    assert.ok(Number.isInteger(dashboard.version));
    assert.equal(typeof dashboard.editable, 'boolean');
    assert.ok(Array.isArray(dashboard.tags));
    assert.ok(dashboard.time.from && dashboard.time.to);
    assert.ok(Array.isArray(dashboard.annotations.list));
    assert.ok(Array.isArray(dashboard.templating.list));
    assert.ok(Array.isArray(panels) && panels.length > 0);
  });

  it('gives every panel a unique id, a core type, a title and a grid position inside 24 columns', () => {
    const ids = new Set<number>();
    for (const p of panels) {
      assert.ok(Number.isInteger(p.id) && p.id > 0, `panel id ${p.id}`);
      assert.ok(!ids.has(p.id), `duplicate panel id ${p.id}`);
      ids.add(p.id);
      assert.ok(CORE_PANEL_TYPES.has(p.type), `panel ${p.id}: type ${p.type}`);
      assert.ok(p.title, `panel ${p.id}: title`);
      const g = p.gridPos;
      for (const k of ['h', 'w', 'x', 'y'] as const) assert.ok(Number.isInteger(g[k]) && g[k] >= 0, `panel ${p.id}: gridPos.${k}`);
      assert.ok(g.w >= 1 && g.h >= 1 && g.x + g.w <= 24, `panel ${p.id}: gridPos ${JSON.stringify(g)} outside 24 columns`);
    }
  });

  it('lays panels out without overlaps', () => {
    for (const [i, a] of panels.entries()) {
      for (const b of panels.slice(i + 1)) {
        const A = a.gridPos;
        const B = b.gridPos;
        const overlap = A.x < B.x + B.w && B.x < A.x + A.w && A.y < B.y + B.h && B.y < A.y + A.h;
        assert.ok(!overlap, `panels ${a.id} "${a.title}" and ${b.id} "${b.title}" overlap`);
      }
    }
  });

  it('has the six rows in order, each expanded, full width, with its panels below it', () => {
    const rows = panels.filter((p) => p.type === 'row');
    assert.deepEqual(
      rows.map((r) => r.title),
      ['Sale overview', 'API', 'Order pipeline', 'Timeouts', 'Consumer lag', 'Operator'],
    );
    for (const r of rows) {
      assert.deepEqual([r.gridPos.w, r.gridPos.h, r.gridPos.x], [24, 1, 0], `row ${r.title}`);
      assert.equal(r.collapsed, false);
      assert.deepEqual(r.panels, [], 'an expanded row keeps its panels at top level');
      assert.equal(r.targets, undefined, 'rows have no queries');
    }
    const sorted = [...panels].sort((a, b) => a.gridPos.y - b.gridPos.y || a.gridPos.x - b.gridPos.x);
    assert.equal(sorted[0]?.type, 'row', 'the first panel is a row');
    const perRow = new Map<string, number>();
    let current = '';
    for (const p of sorted) {
      if (p.type === 'row') current = p.title;
      else perRow.set(current, (perRow.get(current) ?? 0) + 1);
    }
    for (const r of rows) assert.ok((perRow.get(r.title) ?? 0) >= 2, `row ${r.title} has panels`);
  });

  it('queries Prometheus from every non-row panel with unique refIds, through the datasource variable', () => {
    const dsVar = dashboard.templating.list.find((v) => v.type === 'datasource');
    assert.ok(dsVar, 'a datasource variable');
    for (const p of panels.filter((x) => x.type !== 'row')) {
      assert.deepEqual(p.datasource, { type: 'prometheus', uid: `\${${dsVar.name}}` }, `panel ${p.id} datasource`);
      assert.ok(p.targets && p.targets.length > 0, `panel ${p.id} has targets`);
      const refIds = p.targets.map((t) => t.refId);
      assert.equal(new Set(refIds).size, refIds.length, `panel ${p.id}: unique refIds`);
      for (const t of p.targets) assert.ok(t.expr.trim().length > 0, `panel ${p.id} ${t.refId}: expr`);
    }
  });

  it('declares a flashsale variable, uses it in every sale-scoped query, and uses no undeclared variable', () => {
    const vars = dashboard.templating.list;
    for (const v of vars) assert.ok(VARIABLE_TYPES.has(v.type), `variable ${v.name}: type ${v.type}`);
    assert.equal(new Set(vars.map((v) => v.name)).size, vars.length, 'unique variable names');
    const flashsale = vars.find((v) => v.name === 'flashsale');
    assert.ok(flashsale, 'a flashsale variable');
    assert.equal(flashsale.type, 'query');
    const declared = new Set(vars.map((v) => v.name));
    for (const p of panels) {
      for (const t of p.targets ?? []) {
        for (const m of t.expr.matchAll(/\$\{?(\w+)\}?/g)) {
          const name = m[1] as string;
          assert.ok(declared.has(name) || GRAFANA_GLOBALS.has(name), `panel ${p.id}: undeclared variable $${name}`);
        }
        const operatorWide = /flashsale_operator_|flashsale_lag_collection/.test(t.expr);
        if (!operatorWide) assert.match(t.expr, /flashsale=~"\$flashsale"/, `panel ${p.id} "${p.title}" is scoped to the selected sale`);
      }
    }
  });
});

describe('Prometheus rule file', () => {
  const rules = parse(readFileSync(rulesPath, 'utf8')) as { groups: { name: string; rules: { alert?: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> }[] }[] };

  it('has every alert the issue asks for, each with a severity, a summary and a description', () => {
    const alerts = rules.groups.flatMap((g) => g.rules);
    const names = alerts.map((a) => a.alert);
    for (const wanted of ['FlashSaleConsumerLagHigh', 'FlashSaleTimeoutsOverdue', 'FlashSaleDeadLettersGrowing', 'FlashSaleCloseDelayHigh', 'FlashSaleDegraded', 'FlashSaleOperatorNoLeader', 'FlashSaleStockDrift', 'FlashSaleOrdersUnavailable']) {
      assert.ok(names.includes(wanted), `alert ${wanted}`);
    }
    assert.equal(new Set(names).size, names.length, 'unique alert names');
    for (const a of alerts) {
      assert.match(a.labels?.severity ?? '', /^(warning|critical)$/, `${a.alert}: severity`);
      assert.ok(a.annotations?.summary && a.annotations.description, `${a.alert}: summary and description`);
      assert.match(a.for ?? '', /^\d+[smh]$/, `${a.alert}: for`);
    }
  });
});

describe('alert rules under promtool', () => {
  it('fire on their condition after their for: and stay quiet on look-alikes (test/rules/alerts.test.yaml)', () => {
    const r = spawnSync('promtool', ['test', 'rules', 'alerts.test.yaml'], { cwd: new URL('./rules/', import.meta.url).pathname, encoding: 'utf8' });
    assert.equal(r.error, undefined, 'promtool (Debian prometheus package) is installed: run infra/tools.sh');
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /SUCCESS/);
  });
});

describe('metric names', () => {
  const registry = new Registry();
  dataPlaneMetrics(registry);
  lagMetrics(registry);
  operatorMetrics(registry);
  const defined = new Map(registry.getMetricsAsArray().map((m) => [m.name, String(m.type)]));
  const histogramSeries = (name: string) => name.replace(/_(bucket|sum|count)$/, '');

  it('every metric the dashboard and the rules query is defined in controller/metrics', () => {
    const texts = [readFileSync(dashboardPath, 'utf8'), readFileSync(rulesPath, 'utf8')];
    const used = new Set(texts.flatMap((t) => t.match(/\b(?:flashsale|kafka_consumergroup)_[a-z_]+\b/g) ?? []));
    assert.ok(used.size >= 20, `${used.size} metric names found`);
    for (const n of used) assert.ok(defined.has(n) || defined.get(histogramSeries(n)) === 'histogram', `${n} is defined`);
  });

  it('follows Prometheus naming conventions and is documented in docs/observability.md', () => {
    const docs = readFileSync(new URL('../docs/observability.md', import.meta.url), 'utf8');
    for (const [name, type] of defined) {
      if (!/^(flashsale|kafka_consumergroup)_/.test(name)) continue; // prom-client's process/nodejs defaults
      assert.ok(docs.includes(`| \`${name}\` | ${type}`), `${name} (${type}) has a row in the metrics table`);
      if (type === 'counter') assert.match(name, /_total$/, `counter ${name} ends in _total`);
      else assert.doesNotMatch(name, /_total$/, `${type} ${name} does not end in _total`);
      assert.doesNotMatch(name, /_(ms|milliseconds|minutes)\b/, `${name} uses base units`);
    }
  });
});
