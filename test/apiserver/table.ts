// Server-side printing (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`), which kubectl
// asks for on `get`: Name, the CRD's additionalPrinterColumns (or a few columns for built-ins),
// and Age, as the real server renders them.
/* eslint-disable @typescript-eslint/no-explicit-any -- arbitrary Kubernetes JSON */
import type { ResourceType } from './resources.ts';

/** Like k8s.io/apimachinery/pkg/util/duration.HumanDuration. */
export function humanDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 0) return '<invalid>';
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`;
  if (m < 180) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 8) return m % 60 === 0 ? `${h}h` : `${h}h${m % 60}m`;
  if (h < 48) return `${h}h`;
  if (h < 24 * 8) return h % 24 === 0 ? `${Math.floor(h / 24)}d` : `${Math.floor(h / 24)}d${h % 24}h`;
  if (h < 24 * 365 * 2) return `${Math.floor(h / 24)}d`;
  if (h < 24 * 365 * 8) return `${Math.floor(h / 24 / 365)}y${Math.floor(h / 24) % 365}d`;
  return `${Math.floor(h / 24 / 365)}y`;
}

/** The subset of kubectl JSONPath that printer columns use: `.a.b`, `[n]`, `[*]`, `[?(@.k=="v")]`. */
export function jsonPath(obj: any, path: string): unknown[] {
  let current: unknown[] = [obj];
  const re = /\.([A-Za-z0-9_-]+)|\[(\d+)\]|\[\*\]|\[\?\(@\.([A-Za-z0-9_.-]+)\s*==\s*["']([^"']*)["']\)\]/g;
  let m: RegExpExecArray | null;
  let consumed = 0;
  const body = path.trim().replace(/^\{/, '').replace(/\}$/, '');
  while ((m = re.exec(body))) {
    if (m.index !== consumed) return [];
    consumed = re.lastIndex;
    const next: unknown[] = [];
    for (const c of current as any[]) {
      if (c === null || c === undefined) continue;
      if (m[1] !== undefined) {
        if (typeof c === 'object' && !Array.isArray(c) && c[m[1]] !== undefined) next.push(c[m[1]]);
      } else if (m[2] !== undefined) {
        if (Array.isArray(c) && c[Number(m[2])] !== undefined) next.push(c[Number(m[2])]);
      } else if (m[3] !== undefined) {
        if (Array.isArray(c)) {
          const key = m[3].split('.');
          for (const item of c) if (String(key.reduce((o: any, k) => o?.[k], item)) === m[4]) next.push(item);
        }
      } else if (Array.isArray(c)) next.push(...c);
    }
    current = next;
  }
  return consumed === body.length ? current : [];
}

interface Column {
  name: string;
  type: string;
  format: string;
  description: string;
  priority: number;
  cell: (obj: any) => unknown;
}

function builtinColumns(rt: ResourceType): Column[] {
  const col = (name: string, type: string, cell: (o: any) => unknown): Column => ({ name, type, format: '', description: name, priority: 0, cell });
  switch (`${rt.group}/${rt.plural}`) {
    case 'apps/deployments':
      return [
        col('Ready', 'string', (o) => `${o.status?.readyReplicas ?? 0}/${o.spec?.replicas ?? 0}`),
        col('Up-to-date', 'integer', (o) => o.status?.updatedReplicas ?? 0),
        col('Available', 'integer', (o) => o.status?.availableReplicas ?? 0),
      ];
    case '/services':
      return [
        col('Type', 'string', (o) => o.spec?.type ?? ''),
        col('Ports', 'string', (o) => (o.spec?.ports ?? []).map((p: any) => `${p.port}/${p.protocol ?? 'TCP'}`).join(',') || '<none>'),
      ];
    case '/namespaces':
      return [col('Status', 'string', (o) => o.status?.phase ?? '')];
    case '/configmaps':
      return [col('Data', 'integer', (o) => Object.keys(o.data ?? {}).length + Object.keys(o.binaryData ?? {}).length)];
    case '/secrets':
      return [col('Type', 'string', (o) => o.type ?? ''), col('Data', 'integer', (o) => Object.keys(o.data ?? {}).length)];
    case 'coordination.k8s.io/leases':
      return [col('Holder', 'string', (o) => o.spec?.holderIdentity ?? '')];
    default:
      return [];
  }
}

export function toTable(rt: ResourceType, objects: any[], resourceVersion: string, now: Date, listMeta: Record<string, unknown> = {}): any {
  const age = (o: any): string => (o.metadata?.creationTimestamp ? humanDuration(now.getTime() - Date.parse(o.metadata.creationTimestamp)) : '<unknown>');
  const columns: Column[] = [{ name: 'Name', type: 'string', format: 'name', description: 'Name must be unique within a namespace.', priority: 0, cell: (o) => o.metadata.name }];
  let hasAge = false;
  if (rt.printerColumns && rt.printerColumns.length > 0) {
    for (const pc of rt.printerColumns as any[]) {
      const isDate = pc.type === 'date';
      if (isDate && pc.jsonPath === '.metadata.creationTimestamp') hasAge = true;
      columns.push({
        name: pc.name,
        type: pc.type,
        format: pc.format ?? '',
        description: pc.description ?? '',
        priority: pc.priority ?? 0,
        cell: (o) => {
          const v = jsonPath(o, pc.jsonPath)[0];
          if (v === undefined || v === null) return null;
          if (isDate) return typeof v === 'string' ? humanDuration(now.getTime() - Date.parse(v)) : null;
          if (typeof v === 'object') return JSON.stringify(v);
          return v;
        },
      });
    }
  } else columns.push(...builtinColumns(rt));
  if (!hasAge) columns.push({ name: 'Age', type: 'date', format: '', description: 'CreationTimestamp', priority: 0, cell: age });
  return {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata: { resourceVersion, ...listMeta },
    columnDefinitions: columns.map(({ cell: _c, ...def }) => def),
    rows: objects.map((o) => ({
      cells: columns.map((c) => c.cell(o)),
      object: { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata },
    })),
  };
}

/** True when the Accept header asks for a meta.k8s.io Table (kubectl get does). */
export function wantsTable(accept: string | undefined): boolean {
  if (!accept) return false;
  return accept.split(',').some((part) => {
    const params = part.split(';').map((p) => p.trim());
    return params.includes('as=Table') && params.includes('g=meta.k8s.io');
  });
}
