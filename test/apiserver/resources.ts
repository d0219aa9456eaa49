// The kinds the test apiserver serves: the built-ins the operator touches and the resources that
// CustomResourceDefinitions add, plus the discovery documents kubectl reads to find them.
/* eslint-disable @typescript-eslint/no-explicit-any -- arbitrary JSON walked structurally */
import type { StatusCause } from './errors.ts';
import { checkStructural, type Schema } from './schema.ts';

export interface ResourceType {
  group: string;
  version: string;
  plural: string;
  singular: string;
  kind: string;
  listKind: string;
  namespaced: boolean;
  shortNames: string[];
  categories: string[];
  /** Has a /status subresource: the main resource ignores .status, /status changes only status. */
  status: boolean;
  /** Has a /scale subresource (spec.replicas). */
  scale: boolean;
  /** Served from a CRD: PUT requires a resourceVersion, strategic merge is refused. */
  custom: boolean;
  /** Keeps metadata.generation (kinds with a spec). */
  generation: boolean;
  schema?: Schema;
  printerColumns?: Array<{ name: string; type: string; jsonPath: string }>;
  validate?: (obj: any) => StatusCause[];
  defaults?: (obj: any) => void;
}

/** Storage identity: objects of one group+plural share storage across versions. */
export function storageKey(rt: { group: string; plural: string }): string {
  return `${rt.group}/${rt.plural}`;
}

export function apiVersionOf(rt: { group: string; version: string }): string {
  return rt.group ? `${rt.group}/${rt.version}` : rt.version;
}

// Lease and events.k8s.io times are MicroTime: RFC 3339 with exactly six fractional digits.
const MICRO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

function microTime(obj: any, fields: string[], causes: StatusCause[]): void {
  for (const f of fields) {
    const v = f.split('.').reduce((o, k) => (o && typeof o === 'object' ? o[k] : undefined), obj);
    if (v === undefined || v === null) continue;
    if (typeof v !== 'string' || !MICRO_TIME.test(v)) {
      causes.push({
        reason: 'FieldValueInvalid',
        field: f,
        message: `Invalid value: ${JSON.stringify(v)}: must be a MicroTime in RFC 3339 with exactly six fractional digits (2006-01-02T15:04:05.000000Z)`,
      });
    }
  }
}

function base(group: string, version: string, plural: string, kind: string, opts: Partial<ResourceType> = {}): ResourceType {
  return {
    group,
    version,
    plural,
    singular: kind.toLowerCase(),
    kind,
    listKind: `${kind}List`,
    namespaced: true,
    shortNames: [],
    categories: [],
    status: false,
    scale: false,
    custom: false,
    generation: false,
    ...opts,
  };
}

function labelsMatch(selector: any, labels: any): boolean {
  const want = selector?.matchLabels ?? {};
  return Object.entries(want).every(([k, v]) => labels?.[k] === v);
}

export function builtinResources(): ResourceType[] {
  return [
    base('', 'v1', 'namespaces', 'Namespace', {
      namespaced: false,
      shortNames: ['ns'],
      status: true,
      defaults: (o) => {
        o.status ??= { phase: 'Active' };
        o.metadata.labels = { ...o.metadata.labels, 'kubernetes.io/metadata.name': o.metadata.name };
      },
    }),
    base('', 'v1', 'services', 'Service', {
      shortNames: ['svc'],
      categories: ['all'],
      status: true,
      defaults: (o) => {
        o.spec ??= {};
        o.spec.type ??= 'ClusterIP';
        for (const p of o.spec.ports ?? []) {
          p.protocol ??= 'TCP';
          p.targetPort ??= p.port;
        }
      },
      validate: (o) => {
        const causes: StatusCause[] = [];
        (o.spec?.ports ?? []).forEach((p: any, i: number) => {
          if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535) {
            causes.push({ reason: 'FieldValueInvalid', field: `spec.ports[${i}].port`, message: `Invalid value: ${JSON.stringify(p.port)}: must be between 1 and 65535, inclusive` });
          }
        });
        return causes;
      },
    }),
    base('', 'v1', 'configmaps', 'ConfigMap', { shortNames: ['cm'] }),
    base('', 'v1', 'secrets', 'Secret', {
      defaults: (o) => {
        o.type ??= 'Opaque';
        // stringData is write-only: merged into data as base64, like the real server
        if (o.stringData && typeof o.stringData === 'object') {
          o.data ??= {};
          for (const [k, v] of Object.entries(o.stringData)) o.data[k] = Buffer.from(String(v)).toString('base64');
          delete o.stringData;
        }
      },
      validate: (o) => {
        const causes: StatusCause[] = [];
        for (const [k, v] of Object.entries(o.data ?? {})) {
          if (typeof v !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(v) || v.length % 4 !== 0) {
            causes.push({ reason: 'FieldValueInvalid', field: `data[${k}]`, message: 'Invalid value: illegal base64 data' });
          }
        }
        return causes;
      },
    }),
    base('', 'v1', 'events', 'Event', { shortNames: ['ev'], validate: (o) => validateEvent(o, 'core') }),
    base('events.k8s.io', 'v1', 'events', 'Event', { shortNames: ['ev'], validate: (o) => validateEvent(o, 'events') }),
    base('coordination.k8s.io', 'v1', 'leases', 'Lease', {
      validate: (o) => {
        const causes: StatusCause[] = [];
        microTime(o, ['spec.acquireTime', 'spec.renewTime'], causes);
        const d = o.spec?.leaseDurationSeconds;
        if (d !== undefined && (!Number.isInteger(d) || d <= 0)) {
          causes.push({ reason: 'FieldValueInvalid', field: 'spec.leaseDurationSeconds', message: `Invalid value: ${JSON.stringify(d)}: must be greater than 0` });
        }
        return causes;
      },
    }),
    base('apps', 'v1', 'deployments', 'Deployment', {
      shortNames: ['deploy'],
      categories: ['all'],
      status: true,
      scale: true,
      generation: true,
      defaults: (o) => {
        o.spec ??= {};
        o.spec.replicas ??= 1;
        o.spec.revisionHistoryLimit ??= 10;
        o.spec.progressDeadlineSeconds ??= 600;
        o.spec.strategy ??= { type: 'RollingUpdate', rollingUpdate: { maxSurge: '25%', maxUnavailable: '25%' } };
      },
      validate: (o) => {
        const causes: StatusCause[] = [];
        if (!o.spec?.selector) causes.push({ reason: 'FieldValueRequired', field: 'spec.selector', message: 'Required value' });
        else if (!labelsMatch(o.spec.selector, o.spec.template?.metadata?.labels)) {
          causes.push({
            reason: 'FieldValueInvalid',
            field: 'spec.template.metadata.labels',
            message: `Invalid value: ${JSON.stringify(o.spec.template?.metadata?.labels ?? {})}: \`selector\` does not match template \`labels\``,
          });
        }
        if (!Array.isArray(o.spec?.template?.spec?.containers) || o.spec.template.spec.containers.length === 0) {
          causes.push({ reason: 'FieldValueRequired', field: 'spec.template.spec.containers', message: 'Required value' });
        }
        const r = o.spec?.replicas;
        if (r !== undefined && (!Number.isInteger(r) || r < 0)) {
          causes.push({ reason: 'FieldValueInvalid', field: 'spec.replicas', message: `Invalid value: ${JSON.stringify(r)}: must be greater than or equal to 0` });
        }
        return causes;
      },
    }),
    base('apiextensions.k8s.io', 'v1', 'customresourcedefinitions', 'CustomResourceDefinition', {
      namespaced: false,
      shortNames: ['crd', 'crds'],
      status: true,
      generation: true,
      validate: validateCrd,
    }),
  ];
}

const QUALIFIED_NAME = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

/**
 * Event validation as the real server does it (ValidateEventCreate): an event with an eventTime
 * (always, for events.k8s.io) must name its reporting controller and instance, action and reason
 * within their limits; a legacy core event's involvedObject namespace must match its own.
 */
function validateEvent(o: any, api: 'core' | 'events'): StatusCause[] {
  const causes: StatusCause[] = [];
  const required = (field: string): void => void causes.push({ reason: 'FieldValueRequired', field, message: 'Required value' });
  const tooLong = (field: string, v: string, max: number): void => {
    if (Buffer.byteLength(v) > max) causes.push({ reason: 'FieldValueInvalid', field, message: `Invalid value: "${v.slice(0, 20)}...": can have at most ${max} characters` });
  };
  microTime(o, ['eventTime'], causes);
  const involved = api === 'core' ? o.involvedObject : o.regarding;
  const involvedField = api === 'core' ? 'involvedObject.namespace' : 'regarding.namespace';
  const ns = o.metadata?.namespace;
  if (!o.eventTime) {
    if (api === 'events') required('eventTime');
    else if (involved?.namespace && involved.namespace !== ns) {
      causes.push({ reason: 'FieldValueInvalid', field: involvedField, message: `Invalid value: ${JSON.stringify(involved.namespace)}: does not match event.namespace` });
    }
  }
  if (o.eventTime || api === 'events') {
    if (!involved?.namespace && ns !== 'default' && ns !== 'kube-system') {
      causes.push({ reason: 'FieldValueInvalid', field: involvedField, message: 'Invalid value: "": does not match event.namespace' });
    }
    const controllerField = api === 'core' ? 'reportingComponent' : 'reportingController';
    const controller = o[controllerField] ?? '';
    if (!controller) required(controllerField);
    else if (!QUALIFIED_NAME.test(controller) || controller.length > 316) {
      causes.push({ reason: 'FieldValueInvalid', field: controllerField, message: `Invalid value: ${JSON.stringify(controller)}: must be a qualified name` });
    }
    if (!o.reportingInstance) required('reportingInstance');
    else tooLong('reportingInstance', o.reportingInstance, 128);
    if (!o.action) required('action');
    else tooLong('action', o.action, 128);
    if (!o.reason) required('reason');
    else tooLong('reason', o.reason, 128);
    const note = api === 'core' ? 'message' : 'note';
    if (typeof o[note] === 'string') tooLong(note, o[note], 1024);
  }
  if (api === 'events' && o.type !== 'Normal' && o.type !== 'Warning') {
    causes.push({ reason: 'FieldValueInvalid', field: 'type', message: `Invalid value: ${JSON.stringify(o.type ?? '')}: has invalid value: ${o.type ?? ''}` });
  }
  return causes;
}

function validateCrd(o: any): StatusCause[] {
  const causes: StatusCause[] = [];
  const spec = o.spec ?? {};
  const req = (v: unknown, field: string): void => {
    if (typeof v !== 'string' || v === '') causes.push({ reason: 'FieldValueRequired', field, message: 'Required value' });
  };
  req(spec.group, 'spec.group');
  req(spec.names?.plural, 'spec.names.plural');
  req(spec.names?.kind, 'spec.names.kind');
  if (spec.scope !== 'Namespaced' && spec.scope !== 'Cluster') {
    causes.push({ reason: 'FieldValueNotSupported', field: 'spec.scope', message: `Unsupported value: ${JSON.stringify(spec.scope)}: supported values: "Cluster", "Namespaced"` });
  }
  if (spec.group && spec.names?.plural && o.metadata?.name !== `${spec.names.plural}.${spec.group}`) {
    causes.push({ reason: 'FieldValueInvalid', field: 'metadata.name', message: `Invalid value: ${JSON.stringify(o.metadata?.name)}: must be spec.names.plural+"."+spec.group` });
  }
  if (!Array.isArray(spec.versions) || spec.versions.length === 0) {
    causes.push({ reason: 'FieldValueRequired', field: 'spec.versions', message: 'Required value: must have exactly one version marked as storage version' });
  } else {
    if (spec.versions.filter((v: any) => v.storage === true).length !== 1) {
      causes.push({ reason: 'FieldValueInvalid', field: 'spec.versions', message: 'Invalid value: must have exactly one version marked as storage version' });
    }
    spec.versions.forEach((v: any, i: number) => {
      causes.push(...checkStructural(v.schema?.openAPIV3Schema, `spec.versions[${i}].schema.openAPIV3Schema`));
    });
  }
  return causes;
}

/** The resource types a CRD serves, one per served version. */
export function crdResources(crd: any): ResourceType[] {
  const spec = crd.spec;
  return (spec.versions ?? [])
    .filter((v: any) => v.served !== false)
    .map(
      (v: any): ResourceType => ({
        group: spec.group,
        version: v.name,
        plural: spec.names.plural,
        singular: spec.names.singular ?? spec.names.kind.toLowerCase(),
        kind: spec.names.kind,
        listKind: spec.names.listKind ?? `${spec.names.kind}List`,
        namespaced: spec.scope === 'Namespaced',
        shortNames: spec.names.shortNames ?? [],
        categories: spec.names.categories ?? [],
        status: v.subresources?.status !== undefined,
        scale: false,
        custom: true,
        generation: true,
        schema: v.schema?.openAPIV3Schema,
        printerColumns: v.additionalPrinterColumns,
      }),
    );
}

const VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];

export function apiResourceList(groupVersion: string, types: ResourceType[]): Record<string, unknown> {
  const resources: Record<string, unknown>[] = [];
  for (const t of types) {
    resources.push({
      name: t.plural,
      singularName: t.singular,
      namespaced: t.namespaced,
      kind: t.kind,
      verbs: VERBS,
      ...(t.shortNames.length ? { shortNames: t.shortNames } : {}),
      ...(t.categories.length ? { categories: t.categories } : {}),
    });
    if (t.status) resources.push({ name: `${t.plural}/status`, singularName: '', namespaced: t.namespaced, kind: t.kind, verbs: ['get', 'patch', 'update'] });
    if (t.scale) {
      resources.push({ name: `${t.plural}/scale`, singularName: '', namespaced: t.namespaced, group: 'autoscaling', version: 'v1', kind: 'Scale', verbs: ['get', 'patch', 'update'] });
    }
  }
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion, resources };
}
