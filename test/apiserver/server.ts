// A Kubernetes API server for tests: in-memory storage with the real server's semantics wherever
// the operator, client-node (including its informer) and kubectl depend on them. See
// docs/test-apiserver.md for what it reproduces and what it does not.
/* eslint-disable @typescript-eslint/no-explicit-any -- arbitrary Kubernetes JSON handled structurally */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parse as parseYaml } from 'yaml';
import { ApiError, alreadyExists, badRequest, conflict, invalid, methodNotAllowed, notFound, statusObject, type StatusCause } from './errors.ts';
import {
  applyMerge,
  builtinListKeys,
  deletePath,
  fromFieldsV1,
  getPath,
  jsonPatch,
  leafFields,
  mergePatch,
  schemaListKeys,
  showPath,
  strategicMergePatch,
  toFieldsV1,
  type FieldPath,
  type ListKeys,
} from './patch.ts';
import { apiResourceList, apiVersionOf, builtinResources, crdResources, storageKey, type ResourceType } from './resources.ts';
import { applyDefaults, prune, validate } from './schema.ts';
import { fieldSelector, labelSelector } from './selectors.ts';
import { toTable, wantsTable } from './table.ts';

export interface ApiServerOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  /** Injected clock for timestamps (creationTimestamp, deletionTimestamp, managedFields times). */
  now?: () => Date;
  /** Watch events kept for resuming watches; older resourceVersions get 410 Expired. */
  historyLimit?: number;
  /** How often watches that asked for bookmarks get one (the real server: about a minute). */
  bookmarkIntervalMs?: number;
  /**
   * Delete dependents (ownerReferences) once all their owners are gone, like the controller
   * manager's garbage collector, synchronously (default true). `propagationPolicy: Orphan`
   * (or `orphanDependents: true`) removes the owner references instead.
   */
  garbageCollection?: boolean;
  /** Refuse to create objects in a namespace that does not exist (404), as a real cluster does. Default false. */
  requireNamespaces?: boolean;
}

export interface ApiServer {
  url: string;
  port: number;
  /** A kubeconfig (YAML) pointing at this server, with `insecure-skip-tls-verify: true`. */
  kubeconfigYaml(namespace?: string): string;
  /**
   * Forgets all watch history: a watch resumed from any resourceVersion handed out before this call
   * (even the latest) gets 410 Expired; lists made afterwards return a resourceVersion that works.
   */
  compact(): void;
  /** Counters of list and watch requests, of watches answered with 410 Expired, and of PATCHes by content type. */
  stats(): { lists: number; watches: number; expired: number; patches: Record<string, number> };
  /** Ends every open watch (abrupt: destroys the sockets instead of ending the responses). Returns how many. */
  dropWatches(opts?: { abrupt?: boolean }): number;
  /** Sends a BOOKMARK now to every watch that allowed bookmarks. */
  sendBookmarks(): void;
  /** Open watch connections. */
  watchCount(): number;
  /** The current global resourceVersion. */
  resourceVersion(): string;
  close(): Promise<void>;
}

type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

interface HistoryEvent {
  rv: number;
  skey: string;
  type: EventType;
  obj: any;
  old: any;
}

interface Watcher {
  skey: string;
  rt: ResourceType;
  matches: (obj: any) => boolean;
  res: ServerResponse;
  bookmarks: boolean;
  table: boolean;
  timer?: NodeJS.Timeout;
  closed: boolean;
}

interface ManagedEntry {
  manager: string;
  operation: 'Apply' | 'Update';
  apiVersion: string;
  time: string;
  subresource?: string;
  fields: Set<FieldPath>;
}

const MAX_BODY = 3 * 1024 * 1024;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

const OBJECT_META = new Set([
  'name',
  'generateName',
  'namespace',
  'selfLink',
  'uid',
  'resourceVersion',
  'generation',
  'creationTimestamp',
  'deletionTimestamp',
  'deletionGracePeriodSeconds',
  'labels',
  'annotations',
  'ownerReferences',
  'finalizers',
  'managedFields',
]);

const QUALIFIED_NAME = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const STANDARD_FINALIZERS = new Set(['kubernetes', 'orphan', 'foregroundDeletion']);

function qualifiedNameOk(key: string): boolean {
  const slash = key.lastIndexOf('/');
  const name = slash < 0 ? key : key.slice(slash + 1);
  return QUALIFIED_NAME.test(key) && name.length <= 63 && (slash < 0 || slash <= 253);
}

/** ObjectMeta rules of the real server: label syntax, annotation size, owner references, finalizer names. */
function validateObjectMeta(meta: any): StatusCause[] {
  const causes: StatusCause[] = [];
  const bad = (field: string, value: unknown, why: string): void => {
    causes.push({ reason: 'FieldValueInvalid', field, message: `Invalid value: ${JSON.stringify(value)}: ${why}` });
  };
  const labels = meta.labels;
  if (labels !== undefined && labels !== null) {
    if (!isObj(labels)) bad('metadata.labels', labels, 'must be a map of strings');
    else {
      for (const [k, v] of Object.entries(labels)) {
        if (!qualifiedNameOk(k)) bad('metadata.labels', k, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63 characters), with an optional DNS subdomain prefix and '/'");
        if (typeof v !== 'string' || v.length > 63 || !LABEL_VALUE.test(v)) {
          bad(`metadata.labels`, v, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63 characters)");
        }
      }
    }
  }
  const annotations = meta.annotations;
  if (annotations !== undefined && annotations !== null) {
    if (!isObj(annotations) || Object.values(annotations).some((v) => typeof v !== 'string')) bad('metadata.annotations', annotations, 'values must be strings');
    else {
      for (const k of Object.keys(annotations)) if (!qualifiedNameOk(k.toLowerCase())) bad('metadata.annotations', k, 'must be a qualified name');
      const size = Object.entries(annotations).reduce((n, [k, v]) => n + k.length + String(v).length, 0);
      if (size > 256 * 1024) causes.push({ reason: 'FieldValueTooLong', field: 'metadata.annotations', message: 'Too long: must have at most 262144 bytes' });
    }
  }
  const refs = meta.ownerReferences;
  if (refs !== undefined && refs !== null) {
    if (!Array.isArray(refs)) bad('metadata.ownerReferences', refs, 'must be a list');
    else {
      refs.forEach((r: any, i: number) => {
        for (const f of ['apiVersion', 'kind', 'name', 'uid']) {
          if (typeof r?.[f] !== 'string' || r[f] === '') causes.push({ reason: 'FieldValueRequired', field: `metadata.ownerReferences[${i}].${f}`, message: 'Required value' });
        }
      });
      if (refs.filter((r: any) => r?.controller === true).length > 1) {
        bad('metadata.ownerReferences', refs, 'Only one reference can have Controller set to true');
      }
    }
  }
  const finalizers = meta.finalizers;
  if (finalizers !== undefined && finalizers !== null) {
    if (!Array.isArray(finalizers)) bad('metadata.finalizers', finalizers, 'must be a list');
    else {
      finalizers.forEach((f: unknown, i: number) => {
        if (typeof f !== 'string' || (!STANDARD_FINALIZERS.has(f) && (!f.includes('/') || !qualifiedNameOk(f)))) {
          bad(`metadata.finalizers[${i}]`, f, 'name is neither a standard finalizer name nor is it fully qualified');
        }
      });
    }
  }
  return causes;
}

const isObj = (v: unknown): v is Record<string, any> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Key-order-independent JSON, to decide "nothing changed". */
function canon(v: any): string {
  if (Array.isArray(v)) return `[${v.map(canon).join(',')}]`;
  if (isObj(v)) {
    return `{${Object.keys(v)
      .filter((k) => v[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canon(v[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

function withoutVolatile(obj: any): any {
  const c = structuredClone(obj);
  delete c.metadata.resourceVersion;
  delete c.metadata.managedFields;
  return c;
}

/** Everything generation tracks: the object minus metadata and status. */
function specPart(obj: any): string {
  const { metadata: _m, status: _s, apiVersion: _a, kind: _k, ...rest } = obj;
  return canon(rest);
}

/**
 * Kubernetes version priority (the preferred version comes first): GA before beta before alpha,
 * higher numbers first; anything else after, alphabetically. v1 > v1beta2 > v1beta1 > v1alpha1.
 */
export function compareKubeVersions(a: string, b: string): number {
  const parse = (v: string): [number, number, number] | undefined => {
    const m = v.match(/^v(\d+)(?:(alpha|beta)(\d+))?$/);
    if (!m) return undefined;
    return [m[2] === undefined ? 2 : m[2] === 'beta' ? 1 : 0, Number(m[1]), Number(m[3] ?? 0)];
  };
  const pa = parse(a);
  const pb = parse(b);
  if (!pa || !pb) return pa ? -1 : pb ? 1 : a < b ? -1 : a > b ? 1 : 0;
  return pb[0] - pa[0] || pb[1] - pa[1] || pb[2] - pa[2];
}

function objKey(ns: string | undefined, name: string): string {
  return `${ns ?? ''}/${name}`;
}

export async function startApiServer(options: ApiServerOptions = {}): Promise<ApiServer> {
  const now = options.now ?? (() => new Date());
  const historyLimit = options.historyLimit ?? 10_000;
  const seconds = (): string => now().toISOString().replace(/\.\d+Z$/, 'Z');

  let rv = 1;
  let compactedRV = 0;
  let history: HistoryEvent[] = [];
  const storage = new Map<string, Map<string, any>>();
  const types = new Map<string, ResourceType>(); // `${group}/${version}/${plural}`
  const groupOrder: string[] = [];
  const watchers = new Set<Watcher>();
  const orphaning = new Set<string>(); // uids deleted with propagationPolicy Orphan
  const counters = { lists: 0, watches: 0, expired: 0, patches: {} as Record<string, number> };

  const register = (rt: ResourceType): void => {
    types.set(`${rt.group}/${rt.version}/${rt.plural}`, rt);
    if (!groupOrder.includes(rt.group)) groupOrder.push(rt.group);
    if (!storage.has(storageKey(rt))) storage.set(storageKey(rt), new Map());
  };
  for (const rt of builtinResources()) register(rt);

  const store = (rt: ResourceType): Map<string, any> => storage.get(storageKey(rt))!;

  /** An object as served at `rt`'s version. */
  const present = (rt: ResourceType, obj: any): any => ({ ...structuredClone(obj), apiVersion: apiVersionOf(rt), kind: rt.kind });

  // ---- watch delivery ----

  const send = (w: Watcher, type: string, object: any): void => {
    if (w.closed) return;
    // kubectl get -w asks for Tables: each change is a one-row Table
    const wrapped = w.table && (type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED') ? toTable(w.rt, [object], object.metadata.resourceVersion, now()) : object;
    w.res.write(`${JSON.stringify({ type, object: wrapped })}\n`);
  };

  const deliver = (w: Watcher, ev: HistoryEvent): void => {
    if (w.skey !== ev.skey) return;
    const now = w.matches(ev.obj);
    const before = ev.old !== undefined && w.matches(ev.old);
    let type: string | undefined;
    if (ev.type === 'ADDED') type = now ? 'ADDED' : undefined;
    else if (ev.type === 'DELETED') type = now || before ? 'DELETED' : undefined;
    else if (now && before) type = 'MODIFIED';
    else if (now) type = 'ADDED'; // started matching the selector
    else if (before) type = 'DELETED'; // stopped matching the selector
    if (type) send(w, type, present(w.rt, ev.obj));
  };

  const endWatch = (w: Watcher, abrupt = false): void => {
    if (w.closed) return;
    w.closed = true;
    if (w.timer) clearTimeout(w.timer);
    watchers.delete(w);
    if (abrupt) w.res.socket?.destroy();
    else w.res.end();
  };

  const commit = (rt: ResourceType, type: EventType, obj: any, old: any): any => {
    rv += 1;
    obj.metadata.resourceVersion = String(rv);
    const key = objKey(obj.metadata.namespace, obj.metadata.name);
    if (type === 'DELETED') store(rt).delete(key);
    else store(rt).set(key, obj);
    const ev: HistoryEvent = { rv, skey: storageKey(rt), type, obj: structuredClone(obj), old: old === undefined ? undefined : structuredClone(old) };
    history.push(ev);
    if (history.length > historyLimit) compactedRV = history.shift()!.rv;
    for (const w of watchers) deliver(w, ev);
    if (type === 'DELETED' && options.garbageCollection !== false) collectGarbage(obj.metadata.uid);
    if (type === 'DELETED' && obj.metadata.namespace) finalizeNamespace(obj.metadata.namespace);
    return obj;
  };

  const NAMESPACES: ResourceType = builtinResources().find((t) => t.plural === 'namespaces')!;
  const namespaceObject = (name: string): any => storage.get(storageKey(NAMESPACES))!.get(objKey(undefined, name));
  const contentOf = (ns: string): Array<[ResourceType, any]> => {
    const out: Array<[ResourceType, any]> = [];
    for (const [skey, objs] of storage) {
      const rt = [...types.values()].find((t) => storageKey(t) === skey);
      if (!rt?.namespaced) continue;
      for (const o of objs.values()) if (o.metadata.namespace === ns) out.push([rt, o]);
    }
    return out;
  };

  /** The namespace controller's job: a terminating namespace goes once its content is gone. */
  function finalizeNamespace(name: string): void {
    const ns = namespaceObject(name);
    if (!ns?.metadata.deletionTimestamp || (ns.metadata.finalizers ?? []).length > 0) return;
    if (contentOf(name).length > 0) return;
    commit(NAMESPACES, 'DELETED', structuredClone(ns), ns);
  }

  /** Dependents of a deleted owner: orphaned, or deleted once none of their owners exists. */
  function collectGarbage(uid: string | undefined): void {
    if (!uid) return;
    const orphan = orphaning.delete(uid);
    const alive = new Set<string>();
    for (const objs of storage.values()) for (const o of objs.values()) alive.add(o.metadata.uid);
    for (const [skey, objs] of storage) {
      const rt = [...types.values()].find((t) => storageKey(t) === skey);
      if (!rt) continue;
      for (const o of [...objs.values()]) {
        const refs: any[] = o.metadata.ownerReferences ?? [];
        if (!refs.some((r) => r.uid === uid)) continue;
        if (orphan) {
          const next = structuredClone(o);
          next.metadata.ownerReferences = refs.filter((r) => r.uid !== uid);
          if (next.metadata.ownerReferences.length === 0) delete next.metadata.ownerReferences;
          commit(rt, 'MODIFIED', next, o);
        } else if (!refs.some((r) => alive.has(r.uid))) {
          const current = objs.get(objKey(o.metadata.namespace, o.metadata.name));
          if (current) remove(rt, current, {});
        }
      }
    }
  }

  const bookmarkTimer = setInterval(() => sendBookmarks(), options.bookmarkIntervalMs ?? 5_000);
  bookmarkTimer.unref();
  function sendBookmarks(): void {
    for (const w of watchers) {
      if (w.bookmarks) send(w, 'BOOKMARK', { kind: w.rt.kind, apiVersion: apiVersionOf(w.rt), metadata: { resourceVersion: String(rv) } });
    }
  }

  // ---- managed fields ----

  const readManaged = (obj: any): ManagedEntry[] =>
    (obj?.metadata?.managedFields ?? []).map((e: any) => ({
      manager: e.manager,
      operation: e.operation,
      apiVersion: e.apiVersion,
      time: e.time,
      ...(e.subresource ? { subresource: e.subresource } : {}),
      fields: fromFieldsV1(e.fieldsV1),
    }));

  const writeManaged = (entries: ManagedEntry[]): any[] =>
    entries
      .filter((e) => e.fields.size > 0)
      .map((e) => ({
        manager: e.manager,
        operation: e.operation,
        apiVersion: e.apiVersion,
        time: e.time,
        fieldsType: 'FieldsV1',
        fieldsV1: toFieldsV1(e.fields),
        ...(e.subresource ? { subresource: e.subresource } : {}),
      }));

  const entryFor = (entries: ManagedEntry[], manager: string, operation: 'Apply' | 'Update', rt: ResourceType, sub: string | undefined): ManagedEntry => {
    let e = entries.find((x) => x.manager === manager && x.operation === operation && x.subresource === sub);
    if (!e) {
      e = { manager, operation, apiVersion: apiVersionOf(rt), time: seconds(), ...(sub ? { subresource: sub } : {}), fields: new Set() };
      entries.push(e);
    }
    e.time = seconds();
    e.apiVersion = apiVersionOf(rt);
    return e;
  };

  /** Which lists server-side apply merges by key, for this kind. */
  const listKeysOf = (rt: ResourceType): ListKeys => (rt.custom ? schemaListKeys(rt.schema) : builtinListKeys);

  /** An Update takes the fields it changed from whoever owned them. */
  const managedAfterUpdate = (rt: ResourceType, manager: string, sub: string | undefined) => (old: any, next: any): ManagedEntry[] => {
    const entries = readManaged(old);
    const lk = listKeysOf(rt);
    const before = old ? leafFields(old, lk) : new Set<FieldPath>();
    const after = leafFields(next, lk);
    const changed = [...after].filter((p) => !before.has(p) || canon(getPath(old, p)) !== canon(getPath(next, p)));
    for (const e of entries) for (const p of [...e.fields]) if (!after.has(p) || changed.includes(p)) e.fields.delete(p);
    if (changed.length > 0) {
      const mine = entryFor(entries, manager, 'Update', rt, sub);
      for (const p of changed) mine.fields.add(p);
    }
    return entries;
  };

  // ---- validation, defaults, CRD status ----

  const prepare = (rt: ResourceType, obj: any): any => {
    // metadata decodes into ObjectMeta on the real server: unknown keys do not survive
    for (const k of Object.keys(obj.metadata)) if (!OBJECT_META.has(k)) delete obj.metadata[k];
    const causes: StatusCause[] = [];
    const name = obj.metadata.name;
    const nameRule = rt.plural === 'namespaces' ? DNS_LABEL : DNS_SUBDOMAIN;
    if (typeof name !== 'string' || !nameRule.test(name) || name.length > (rt.plural === 'namespaces' ? 63 : 253)) {
      causes.push({
        reason: 'FieldValueInvalid',
        field: 'metadata.name',
        message: `Invalid value: ${JSON.stringify(name)}: a lowercase RFC 1123 ${rt.plural === 'namespaces' ? 'label' : 'subdomain'} must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character`,
      });
    }
    causes.push(...validateObjectMeta(obj.metadata));
    if (rt.custom) {
      obj = prune(obj, rt.schema);
      obj = applyDefaults(obj, rt.schema);
      causes.push(...validate(obj, rt.schema));
    } else {
      rt.defaults?.(obj);
      causes.push(...(rt.validate?.(obj) ?? []));
    }
    if (causes.length > 0) throw invalid(rt, String(name ?? ''), causes);
    if (rt.plural === 'customresourcedefinitions' && rt.group === 'apiextensions.k8s.io') crdStatus(obj);
    return obj;
  };

  const crdStatus = (crd: any): void => {
    const t = seconds();
    const names = crd.spec.names;
    const cond = (type: string, reason: string, message: string): any => {
      const prev = crd.status?.conditions?.find((c: any) => c.type === type);
      return { type, status: 'True', reason, message, lastTransitionTime: prev?.status === 'True' ? prev.lastTransitionTime : t };
    };
    crd.status = {
      conditions: [cond('NamesAccepted', 'NoConflicts', 'no conflicts found'), cond('Established', 'InitialNamesAccepted', 'the initial names have been accepted')],
      acceptedNames: { ...names, singular: names.singular ?? names.kind.toLowerCase(), listKind: names.listKind ?? `${names.kind}List` },
      storedVersions: [...new Set([...(crd.status?.storedVersions ?? []), ...crd.spec.versions.filter((v: any) => v.storage).map((v: any) => v.name)])],
    };
  };

  const isCrd = (rt: ResourceType): boolean => rt.group === 'apiextensions.k8s.io' && rt.plural === 'customresourcedefinitions';

  const serveCrd = (crd: any): void => {
    for (const [k, t] of types) if (t.custom && t.group === crd.spec.group && t.plural === crd.spec.names.plural) types.delete(k);
    for (const t of crdResources(crd)) register(t);
  };

  const unserveCrd = (crd: any): void => {
    const skey = storageKey({ group: crd.spec.group, plural: crd.spec.names.plural });
    let rt: ResourceType | undefined;
    for (const [k, t] of types) {
      if (t.custom && storageKey(t) === skey) {
        rt = t;
        types.delete(k);
      }
    }
    // the real server deletes every custom object of a deleted CRD
    if (rt) for (const obj of [...store(rt).values()]) commit(rt, 'DELETED', structuredClone(obj), obj);
    for (const w of [...watchers]) if (w.skey === skey) endWatch(w);
    storage.delete(skey);
  };

  // ---- verbs ----

  const get = (rt: ResourceType, ns: string | undefined, name: string): any => {
    const obj = store(rt).get(objKey(ns, name));
    if (!obj) throw notFound(rt, name);
    return obj;
  };

  const create = (rt: ResourceType, ns: string | undefined, body: any, manager: string, operation: 'Apply' | 'Update' = 'Update'): any => {
    if (!isObj(body)) throw badRequest('the body of the request must be a JSON object');
    if (body.kind !== undefined && body.kind !== rt.kind) throw badRequest(`the kind of the object (${body.kind}) does not match the resource (${rt.kind})`);
    checkApiVersion(rt, body);
    const obj = structuredClone(body);
    obj.apiVersion = apiVersionOf(rt);
    obj.kind = rt.kind;
    const meta = (obj.metadata = isObj(obj.metadata) ? obj.metadata : {});
    if (!meta.name && meta.generateName) meta.name = `${meta.generateName}${randomBytes(4).toString('hex').slice(0, 5)}`;
    if (!meta.name) {
      throw invalid(rt, '', [{ reason: 'FieldValueRequired', field: 'metadata.name', message: 'Required value: name or generateName is required' }]);
    }
    if (rt.namespaced) {
      if (meta.namespace && meta.namespace !== ns) throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
      meta.namespace = ns;
    } else delete meta.namespace;
    for (const k of ['uid', 'resourceVersion', 'generation', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'selfLink', 'managedFields']) delete meta[k];
    if (rt.status) delete obj.status; // status is written through /status only
    if (rt.namespaced && ns !== undefined) {
      const nsObj = namespaceObject(ns);
      if (nsObj?.metadata.deletionTimestamp) {
        throw new ApiError(403, 'Forbidden', `${rt.plural}${rt.group ? `.${rt.group}` : ''} "${meta.name}" is forbidden: unable to create new content in namespace ${ns} because it is being terminated`, {
          name: meta.name,
          group: rt.group,
          kind: rt.plural,
          causes: [{ reason: 'NamespaceTerminating', message: `namespace ${ns} is being terminated`, field: 'metadata.namespace' }],
        });
      }
      if (!nsObj && options.requireNamespaces === true) throw notFound(NAMESPACES, ns);
    }
    if (store(rt).has(objKey(ns, meta.name))) throw alreadyExists(rt, meta.name);
    const ready = prepare(rt, obj);
    ready.metadata.uid = randomUUID();
    ready.metadata.creationTimestamp = seconds();
    if (rt.generation) ready.metadata.generation = 1;
    const entries: ManagedEntry[] = [];
    const mine = entryFor(entries, manager, operation, rt, undefined);
    for (const p of leafFields(body, listKeysOf(rt))) if (getPath(ready, p) !== undefined) mine.fields.add(p);
    ready.metadata.managedFields = writeManaged(entries);
    commit(rt, 'ADDED', ready, undefined);
    if (isCrd(rt)) serveCrd(ready);
    return ready;
  };

  /** A body of another group is refused; another version of the same group is converted (no-op conversion). */
  const checkApiVersion = (rt: ResourceType, body: any): void => {
    if (typeof body.apiVersion !== 'string') return;
    const group = body.apiVersion.includes('/') ? body.apiVersion.split('/')[0] : '';
    if (group !== rt.group) throw badRequest(`the API version in the data (${body.apiVersion}) does not match the expected API version (${apiVersionOf(rt)})`);
  };

  interface UpdateOptions {
    sub?: 'status';
    requireRV: boolean;
    managed: (old: any, next: any) => ManagedEntry[];
  }

  const update = (rt: ResourceType, old: any, candidate: any, o: UpdateOptions): any => {
    if (!isObj(candidate)) throw badRequest('the body of the request must be a JSON object');
    const meta = isObj(candidate.metadata) ? candidate.metadata : {};
    const name = old.metadata.name;
    if (meta.name !== undefined && meta.name !== name) throw badRequest(`the name of the object (${meta.name}) does not match the name on the URL (${name})`);
    if (rt.namespaced && meta.namespace && meta.namespace !== old.metadata.namespace) {
      throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
    }
    if (candidate.kind !== undefined && candidate.kind !== rt.kind) throw badRequest(`the kind of the object (${candidate.kind}) does not match the resource (${rt.kind})`);
    checkApiVersion(rt, candidate);
    if (meta.uid !== undefined && meta.uid !== '' && meta.uid !== old.metadata.uid) {
      throw conflict(rt, name, `Precondition failed: UID in precondition: ${meta.uid}, UID in object meta: ${old.metadata.uid}`);
    }
    const wantRV = meta.resourceVersion;
    if (wantRV === undefined || wantRV === '' || wantRV === null) {
      if (o.requireRV && rt.custom) {
        throw invalid(rt, name, [{ reason: 'FieldValueInvalid', field: 'metadata.resourceVersion', message: 'Invalid value: 0x0: must be specified for an update' }]);
      }
    } else if (String(wantRV) !== old.metadata.resourceVersion) {
      throw conflict(rt, name, 'the object has been modified; please apply your changes to the latest version and try again');
    }

    let next: any;
    if (o.sub === 'status') {
      next = structuredClone(old);
      if (candidate.status === undefined) delete next.status;
      else next.status = structuredClone(candidate.status);
    } else {
      next = structuredClone(candidate);
      next.metadata = { ...meta };
      if (rt.status) {
        if (old.status === undefined) delete next.status;
        else next.status = structuredClone(old.status);
      }
    }
    next.apiVersion = apiVersionOf(rt);
    next.kind = rt.kind;
    const nm = next.metadata;
    for (const k of ['name', 'namespace', 'uid', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'generation']) {
      if (old.metadata[k] === undefined) delete nm[k];
      else nm[k] = old.metadata[k];
    }
    delete nm.resourceVersion;
    delete nm.managedFields;
    delete nm.selfLink;
    next = prepare(rt, next);

    // Once deletion has started, finalizers may only be removed (documented behaviour: "you can
    // remove existing finalizers ... but you cannot add a new finalizer"); other changes, such as
    // annotations or status, are still accepted, as on the real server.
    if (old.metadata.deletionTimestamp) {
      const before: string[] = old.metadata.finalizers ?? [];
      const after: string[] = next.metadata.finalizers ?? [];
      if (after.some((f) => !before.includes(f))) {
        throw invalid(rt, name, [{ reason: 'FieldValueForbidden', field: 'metadata.finalizers', message: 'Forbidden: no new finalizers can be added if the object is being deleted' }]);
      }
    }

    if (rt.generation && specPart(old) !== specPart(next)) next.metadata.generation = (old.metadata.generation ?? 0) + 1;
    next.metadata.managedFields = writeManaged(o.managed(old, next));
    // a no-op is not written; new ownership alone (a second applier of the same values) is a change,
    // but refreshed managedFields timestamps are not
    const ownership = (x: any): string => canon((x.metadata.managedFields ?? []).map(({ time: _t, ...e }: any) => e));
    if (canon(withoutVolatile(old)) === canon(withoutVolatile(next)) && ownership(old) === ownership(next)) return old;

    if (next.metadata.deletionTimestamp && (next.metadata.finalizers ?? []).length === 0) {
      delete next.metadata.finalizers;
      commit(rt, 'DELETED', next, old);
      if (isCrd(rt)) unserveCrd(next);
      return next;
    }
    commit(rt, 'MODIFIED', next, old);
    if (isCrd(rt)) serveCrd(next);
    return next;
  };

  function remove(rt: ResourceType, old: any, opts: any): any {
    const pre = isObj(opts?.preconditions) ? opts.preconditions : {};
    if (pre.uid && pre.uid !== old.metadata.uid) {
      throw conflict(rt, old.metadata.name, `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${old.metadata.uid}`);
    }
    if (pre.resourceVersion && pre.resourceVersion !== old.metadata.resourceVersion) {
      throw conflict(rt, old.metadata.name, `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${old.metadata.resourceVersion}`);
    }
    if (opts?.propagationPolicy === 'Orphan' || opts?.orphanDependents === true) orphaning.add(old.metadata.uid);
    if (old.metadata.deletionTimestamp) return old; // already being deleted: waits for its finalizers
    if (rt.group === '' && rt.plural === 'namespaces') {
      // Terminating: its content is deleted (finalizers respected), then the namespace itself
      const next = structuredClone(old);
      next.metadata.deletionTimestamp = seconds();
      next.metadata.deletionGracePeriodSeconds = 0;
      next.status = { ...next.status, phase: 'Terminating' };
      const marked = commit(rt, 'MODIFIED', next, old);
      for (const [crt, o] of contentOf(old.metadata.name)) {
        const current = store(crt).get(objKey(o.metadata.namespace, o.metadata.name));
        if (current) remove(crt, current, {});
      }
      finalizeNamespace(old.metadata.name);
      return store(rt).get(objKey(undefined, old.metadata.name)) ?? marked;
    }
    if ((old.metadata.finalizers ?? []).length > 0) {
      const next = structuredClone(old);
      next.metadata.deletionTimestamp = seconds();
      next.metadata.deletionGracePeriodSeconds = 0;
      if (rt.generation) next.metadata.generation = (old.metadata.generation ?? 0) + 1;
      return commit(rt, 'MODIFIED', next, old);
    }
    const gone = commit(rt, 'DELETED', structuredClone(old), old);
    if (isCrd(rt)) unserveCrd(gone);
    return gone;
  }

  /** Server-side apply: merge the applied configuration, own its fields, conflict on others' fields. */
  const apply = (rt: ResourceType, ns: string | undefined, name: string, config: any, manager: string, force: boolean, sub: 'status' | undefined): any => {
    if (!isObj(config)) throw badRequest('the applied configuration must be an object');
    if (!config.apiVersion || !config.kind) throw badRequest('apiVersion and kind must be set in an applied configuration');
    const meta = isObj(config.metadata) ? config.metadata : {};
    if (meta.name !== undefined && meta.name !== name) throw badRequest(`the name of the object (${meta.name}) does not match the name on the URL (${name})`);
    const existing = store(rt).get(objKey(ns, name));
    if (!existing) {
      if (sub) throw notFound(rt, name);
      return { obj: create(rt, ns, { ...config, metadata: { ...meta, name } }, manager, 'Apply'), created: true };
    }
    if (meta.resourceVersion !== undefined && String(meta.resourceVersion) !== existing.metadata.resourceVersion) {
      throw conflict(rt, name, 'the object has been modified; please apply your changes to the latest version and try again');
    }
    const inScope = (p: FieldPath): boolean => {
      const isStatus = p === 'f:status' || p.startsWith('f:status\u0000');
      if (sub === 'status') return isStatus;
      return !(rt.status && isStatus);
    };
    const lk = listKeysOf(rt);
    const applied = new Set([...leafFields(config, lk)].filter(inScope));
    const entries = readManaged(existing);
    const conflicts: Array<{ manager: string; field: FieldPath }> = [];
    for (const p of applied) {
      const current = getPath(existing, p);
      if (current === undefined || canon(current) === canon(getPath(config, p))) continue;
      for (const e of entries) {
        if (e.manager === manager) continue;
        const owned = [...e.fields].filter((q) => q === p || q.startsWith(`${p}\u0000`));
        if (owned.length === 0) continue;
        if (force) for (const q of owned) e.fields.delete(q);
        else conflicts.push({ manager: e.manager, field: p });
      }
    }
    if (conflicts.length > 0) {
      const lines = conflicts.map((c) => `conflict with "${c.manager}": ${showPath(c.field)}`);
      throw new ApiError(409, 'Conflict', `Apply failed with ${conflicts.length} conflict${conflicts.length > 1 ? 's' : ''}: ${lines.join('\n')}`, {
        name,
        group: rt.group,
        kind: rt.plural,
        causes: conflicts.map((c) => ({ reason: 'FieldManagerConflict', message: `conflict with "${c.manager}"`, field: showPath(c.field) })),
      });
    }
    const mine = entryFor(entries, manager, 'Apply', rt, sub);
    const next = structuredClone(existing);
    // fields this manager applied before but no longer applies are removed, unless someone else owns them
    // key fields of list items last: an item goes with its last non-key field
    const isKeyField = (p: FieldPath): boolean => {
      const segs = p.split('\u0000');
      const parent = segs[segs.length - 2];
      return !!parent?.startsWith('k:') && Object.hasOwn(JSON.parse(parent.slice(2)), segs[segs.length - 1]!.slice(2));
    };
    const dropped = [...mine.fields].filter((p) => !applied.has(p) && !entries.some((e) => e !== mine && e.fields.has(p)));
    for (const p of [...dropped.filter((q) => !isKeyField(q)), ...dropped.filter(isKeyField)]) deletePath(next, p);
    mine.fields = applied;
    const scoped = structuredClone(config);
    delete scoped.apiVersion;
    delete scoped.kind;
    if (sub === 'status') {
      next.status = applyMerge(next.status, scoped.status ?? {}, lk, ['status']);
    } else {
      if (rt.status) delete scoped.status;
      Object.assign(next, applyMerge(next, scoped, lk));
    }
    next.metadata.resourceVersion = existing.metadata.resourceVersion;
    const obj = update(rt, existing, next, {
      requireRV: false,
      ...(sub ? { sub } : {}),
      managed: (_old, result) => {
        const present = leafFields(result, lk);
        for (const e of entries) for (const p of [...e.fields]) if (!present.has(p)) e.fields.delete(p);
        return entries;
      },
    });
    return { obj, created: false };
  };

  // ---- HTTP ----

  const readBody = (req: IncomingMessage): Promise<string> =>
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        // past the limit the rest is read and dropped, so the client gets its 413 rather than a reset
        if (size > MAX_BODY) reject(new ApiError(413, 'RequestEntityTooLarge', 'the request body is too large'));
        else chunks.push(c);
      });
      req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      req.on('error', reject);
    });

  const parseJson = (text: string): any => {
    try {
      return JSON.parse(text);
    } catch (err) {
      throw badRequest(`the request body is not valid JSON: ${(err as Error).message}`);
    }
  };

  const reply = (res: ServerResponse, code: number, body: unknown): void => {
    const text = JSON.stringify(body);
    // like the real server: kubectl's HTTP cache must never serve a stale discovery document
    res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-cache, private' });
    res.end(text);
  };

  const managerOf = (req: IncomingMessage, url: URL): string => {
    const q = url.searchParams.get('fieldManager');
    if (q) return q;
    const ua = req.headers['user-agent'];
    return ua ? ua.split('/')[0]! : 'unknown';
  };

  interface Route {
    rt: ResourceType;
    ns: string | undefined;
    name: string | undefined;
    sub: string | undefined;
  }

  const route = (segs: string[]): Route | undefined => {
    let group: string;
    let version: string;
    let rest: string[];
    if (segs[0] === 'api' && segs[1] === 'v1') {
      group = '';
      version = 'v1';
      rest = segs.slice(2);
    } else if (segs[0] === 'apis' && segs.length >= 4) {
      group = segs[1]!;
      version = segs[2]!;
      rest = segs.slice(3);
    } else return undefined;
    const typeAt = (plural: string | undefined): ResourceType | undefined => (plural ? types.get(`${group}/${version}/${plural}`) : undefined);
    let ns: string | undefined;
    if (rest[0] === 'namespaces' && rest.length >= 3 && typeAt(rest[2])?.namespaced) {
      ns = rest[1];
      rest = rest.slice(2);
    }
    if (rest.length === 0 || rest.length > 3) return undefined;
    const rt = typeAt(rest[0]);
    if (!rt) return undefined;
    const name = rest[1];
    const sub = rest[2];
    if (name !== undefined && rt.namespaced && ns === undefined) return undefined;
    if (sub !== undefined && !((sub === 'status' && rt.status) || (sub === 'scale' && rt.scale))) return undefined;
    return { rt, ns, name, sub };
  };

  const list = (r: Route, url: URL): any => {
    counters.lists += 1;
    const labels = labelSelector(url.searchParams.get('labelSelector'));
    const fields = fieldSelector(url.searchParams.get('fieldSelector'));
    const matches = (o: any): boolean => (r.ns === undefined || o.metadata.namespace === r.ns) && labels(o.metadata.labels ?? {}) && fields(o.metadata);
    let items = [...store(r.rt).entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).filter(([, o]) => matches(o));
    const cont = url.searchParams.get('continue');
    if (cont) {
      let after: string;
      try {
        after = JSON.parse(Buffer.from(cont, 'base64url').toString('utf8')).after;
      } catch {
        throw badRequest('invalid continue token');
      }
      items = items.filter(([k]) => k > after);
    }
    const limit = Number(url.searchParams.get('limit') ?? 0);
    const metadata: any = { resourceVersion: String(rv) };
    if (limit > 0 && items.length > limit) {
      const page = items.slice(0, limit);
      metadata.continue = Buffer.from(JSON.stringify({ after: page[page.length - 1]![0] })).toString('base64url');
      metadata.remainingItemCount = items.length - limit;
      items = page;
    }
    return { apiVersion: apiVersionOf(r.rt), kind: r.rt.listKind, metadata, items: items.map(([, o]) => present(r.rt, o)) };
  };

  const watch = (r: Route, url: URL, req: IncomingMessage, res: ServerResponse): void => {
    const labels = labelSelector(url.searchParams.get('labelSelector'));
    const fields = fieldSelector(url.searchParams.get('fieldSelector'));
    const fromParam = url.searchParams.get('resourceVersion');
    const from = fromParam === null || fromParam === '' || fromParam === '0' ? undefined : Number(fromParam);
    if (from !== undefined && !Number.isInteger(from)) throw badRequest(`invalid resource version: ${fromParam}`);
    const timeout = url.searchParams.get('timeoutSeconds');
    // headers go out at once so clients know the watch is established before any event
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders();
    const w: Watcher = {
      skey: storageKey(r.rt),
      rt: r.rt,
      matches: (o) => (r.ns === undefined || o.metadata.namespace === r.ns) && labels(o.metadata.labels ?? {}) && fields(o.metadata),
      res,
      bookmarks: url.searchParams.get('allowWatchBookmarks') === 'true',
      table: wantsTable(req.headers.accept),
      closed: false,
    };
    counters.watches += 1;
    if (from !== undefined && from < compactedRV) {
      counters.expired += 1;
      send(w, 'ERROR', statusObject(410, 'Expired', `too old resource version: ${from} (${compactedRV})`));
      w.closed = true;
      res.end();
      return;
    }
    if (from === undefined) {
      const items = [...store(r.rt).entries()].sort(([a], [b]) => (a < b ? -1 : 1));
      for (const [, o] of items) if (w.matches(o)) send(w, 'ADDED', present(r.rt, o));
    } else {
      for (const ev of history) if (ev.rv > from) deliver(w, ev);
    }
    watchers.add(w);
    if (timeout !== null && Number(timeout) > 0) w.timer = setTimeout(() => endWatch(w), Number(timeout) * 1000);
    req.on('close', () => endWatch(w));
    res.on('close', () => endWatch(w));
  };

  const scaleOf = (obj: any): any => ({
    kind: 'Scale',
    apiVersion: 'autoscaling/v1',
    metadata: {
      name: obj.metadata.name,
      namespace: obj.metadata.namespace,
      uid: obj.metadata.uid,
      resourceVersion: obj.metadata.resourceVersion,
      creationTimestamp: obj.metadata.creationTimestamp,
    },
    spec: { replicas: obj.spec?.replicas ?? 0 },
    status: {
      replicas: obj.status?.replicas ?? 0,
      selector: Object.entries(obj.spec?.selector?.matchLabels ?? {})
        .map(([k, v]) => `${k}=${v}`)
        .join(','),
    },
  });

  const PATCH_TYPES = ['application/merge-patch+json', 'application/json-patch+json', 'application/strategic-merge-patch+json'];
  const patchBody = (rt: ResourceType, old: any, contentType: string, text: string): any => {
    // the media type is checked before the body is read, as on the real server
    const patch = PATCH_TYPES.includes(contentType) && !(rt.custom && contentType === 'application/strategic-merge-patch+json') ? parseJson(text) : undefined;
    switch (contentType) {
      case 'application/merge-patch+json':
        return mergePatch(structuredClone(old), patch);
      case 'application/json-patch+json':
        return jsonPatch(old, patch);
      case 'application/strategic-merge-patch+json':
        if (rt.custom) {
          throw new ApiError(
            415,
            'UnsupportedMediaType',
            'the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml',
          );
        }
        return strategicMergePatch(structuredClone(old), patch);
      default:
        throw new ApiError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json`);
    }
  };

  const handleResource = async (r: Route, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
    const method = req.method ?? 'GET';
    const manager = managerOf(req, url);
    const { rt, ns, name, sub } = r;
    if (name === undefined) {
      if (method === 'GET') {
        if (url.searchParams.get('watch') === 'true' || url.searchParams.get('watch') === '1') return watch(r, url, req, res);
        const listed = list(r, url);
        if (wantsTable(req.headers.accept)) {
          const { resourceVersion, ...more } = listed.metadata;
          return reply(res, 200, toTable(rt, listed.items, resourceVersion, now(), more));
        }
        return reply(res, 200, listed);
      }
      if (method === 'POST') {
        if (rt.namespaced && ns === undefined) throw methodNotAllowed();
        const created = create(rt, ns, parseJson(await readBody(req)), manager);
        return reply(res, 201, present(rt, created));
      }
      if (method === 'DELETE') {
        const body = await readBody(req);
        const doomed = list(r, url).items;
        for (const o of doomed) {
          const cur = store(rt).get(objKey(o.metadata.namespace, o.metadata.name));
          if (cur) remove(rt, cur, body ? parseJson(body) : {});
        }
        return reply(res, 200, { apiVersion: apiVersionOf(rt), kind: rt.listKind, metadata: { resourceVersion: String(rv) }, items: doomed });
      }
      throw methodNotAllowed();
    }
    if (sub === 'scale') {
      const old = get(rt, ns, name);
      if (method === 'GET') return reply(res, 200, scaleOf(old));
      let scale: any;
      if (method === 'PUT') scale = parseJson(await readBody(req));
      else if (method === 'PATCH') scale = patchBody({ ...rt, custom: false }, scaleOf(old), (req.headers['content-type'] ?? '').split(';')[0]!.trim(), await readBody(req));
      else throw methodNotAllowed();
      const candidate = structuredClone(old);
      candidate.spec.replicas = scale?.spec?.replicas;
      candidate.metadata.resourceVersion = scale?.metadata?.resourceVersion;
      const next = update(rt, old, candidate, { requireRV: false, managed: managedAfterUpdate(rt, manager, 'scale') });
      return reply(res, 200, scaleOf(next));
    }
    const subOpt = sub === 'status' ? { sub: 'status' as const } : {};
    if (method === 'GET') {
      const obj = present(rt, get(rt, ns, name));
      if (sub === undefined && wantsTable(req.headers.accept)) return reply(res, 200, toTable(rt, [obj], obj.metadata.resourceVersion, now()));
      return reply(res, 200, obj);
    }
    if (method === 'PUT') {
      const old = get(rt, ns, name);
      const next = update(rt, old, parseJson(await readBody(req)), { ...subOpt, requireRV: true, managed: managedAfterUpdate(rt, manager, sub) });
      return reply(res, 200, present(rt, next));
    }
    if (method === 'PATCH') {
      const contentType = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
      counters.patches[contentType] = (counters.patches[contentType] ?? 0) + 1;
      const text = await readBody(req);
      if (contentType === 'application/apply-patch+yaml') {
        const fm = url.searchParams.get('fieldManager');
        if (!fm) throw badRequest('PATCH, application/apply-patch+yaml requests must supply a fieldManager');
        let config: any;
        try {
          config = parseYaml(text);
        } catch (err) {
          throw badRequest(`error decoding YAML: ${(err as Error).message}`);
        }
        const force = url.searchParams.get('force') === 'true';
        const out = apply(rt, ns, name, config, fm, force, sub === 'status' ? 'status' : undefined);
        return reply(res, out.created ? 201 : 200, present(rt, out.obj));
      }
      const old = get(rt, ns, name);
      const candidate = patchBody(rt, old, contentType, text);
      const next = update(rt, old, candidate, { ...subOpt, requireRV: false, managed: managedAfterUpdate(rt, manager, sub) });
      return reply(res, 200, present(rt, next));
    }
    if (method === 'DELETE' && sub === undefined) {
      const old = get(rt, ns, name);
      const body = await readBody(req);
      const opts = body ? parseJson(body) : {};
      const policy = url.searchParams.get('propagationPolicy');
      if (policy) opts.propagationPolicy = policy;
      const out = remove(rt, old, opts);
      // 202 Accepted while finalizers hold the object, 200 once it is gone
      return reply(res, store(rt).has(objKey(ns, name)) ? 202 : 200, present(rt, out));
    }
    throw methodNotAllowed();
  };

  const groupVersions = (group: string): string[] => {
    const versions: string[] = [];
    for (const t of types.values()) if (t.group === group && !versions.includes(t.version)) versions.push(t.version);
    return versions.sort(compareKubeVersions);
  };

  const apiGroup = (group: string): any => {
    const versions = groupVersions(group).map((v) => ({ groupVersion: `${group}/${v}`, version: v }));
    return { kind: 'APIGroup', apiVersion: 'v1', name: group, versions, preferredVersion: versions[0] };
  };

  const discovery = (segs: string[], res: ServerResponse): boolean => {
    const path = segs.join('/');
    if (path === 'version') {
      reply(res, 200, { major: '1', minor: '20', gitVersion: 'v1.20.0-flashsale-test', gitCommit: '', gitTreeState: 'clean', buildDate: '2026-01-01T00:00:00Z', goVersion: 'none', compiler: 'none', platform: 'linux/amd64' });
      return true;
    }
    if (path === 'healthz' || path === 'readyz' || path === 'livez') {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end('ok');
      return true;
    }
    if (path === 'api') {
      reply(res, 200, { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: `127.0.0.1:${port}` }] });
      return true;
    }
    if (path === 'api/v1') {
      reply(res, 200, apiResourceList('v1', [...types.values()].filter((t) => t.group === '')));
      return true;
    }
    if (path === 'apis') {
      const groups = groupOrder.filter((g) => g !== '' && groupVersions(g).length > 0).map(apiGroup);
      reply(res, 200, { kind: 'APIGroupList', apiVersion: 'v1', groups });
      return true;
    }
    if (segs[0] === 'apis' && segs.length === 2 && groupVersions(segs[1]!).length > 0) {
      reply(res, 200, apiGroup(segs[1]!));
      return true;
    }
    if (segs[0] === 'apis' && segs.length === 3) {
      const served = [...types.values()].filter((t) => t.group === segs[1] && t.version === segs[2]);
      if (served.length === 0) return false;
      reply(res, 200, apiResourceList(`${segs[1]}/${segs[2]}`, served));
      return true;
    }
    return false;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const segs = url.pathname.split('/').filter((s) => s.length > 0).map(decodeURIComponent);
    if (req.method === 'GET' && discovery(segs, res)) return;
    if (req.method === 'POST' && url.pathname === '/_test/compact') {
      api.compact();
      return reply(res, 200, { resourceVersion: String(rv) });
    }
    if (req.method === 'POST' && url.pathname === '/_test/drop-watches') {
      return reply(res, 200, { dropped: api.dropWatches({ abrupt: url.searchParams.get('abrupt') === 'true' }) });
    }
    const r = route(segs);
    if (!r) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
    await handleResource(r, req, res, url);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      const e = err instanceof ApiError ? err : new ApiError(500, 'InternalError', `an error on the server has prevented the request from succeeding: ${String((err as Error)?.stack ?? err)}`);
      if (res.headersSent) {
        res.end();
        return;
      }
      reply(res, e.code, e.toStatus());
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}`;

  const api: ApiServer = {
    url,
    port,
    kubeconfigYaml(namespace = 'default') {
      return [
        'apiVersion: v1',
        'kind: Config',
        'clusters:',
        '- name: test-apiserver',
        '  cluster:',
        `    server: ${url}`,
        '    insecure-skip-tls-verify: true',
        'users:',
        '- name: test-user',
        '  user:',
        '    token: test-token',
        'contexts:',
        '- name: test-apiserver',
        '  context:',
        '    cluster: test-apiserver',
        '    user: test-user',
        `    namespace: ${namespace}`,
        'current-context: test-apiserver',
        '',
      ].join('\n');
    },
    compact() {
      // a fresh resourceVersion with nothing before it kept: only RVs handed out from now on resume
      rv += 1;
      compactedRV = rv;
      history = [];
    },
    stats: () => ({ ...counters, patches: { ...counters.patches } }),
    dropWatches(opts = {}) {
      const open = [...watchers];
      for (const w of open) endWatch(w, opts.abrupt === true);
      return open.length;
    },
    sendBookmarks,
    watchCount: () => watchers.size,
    resourceVersion: () => String(rv),
    async close() {
      clearInterval(bookmarkTimer);
      for (const w of [...watchers]) endWatch(w, true);
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
  return api;
}
