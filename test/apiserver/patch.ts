// Patch formats the apiserver accepts: JSON merge patch (RFC 7386), JSON patch (RFC 6902), a
// simplified strategic merge patch for built-in kinds, and the field-set arithmetic behind
// server-side apply's managedFields (FieldsV1).
/* eslint-disable @typescript-eslint/no-explicit-any -- arbitrary JSON walked structurally */
import { ApiError, badRequest } from './errors.ts';

const isObj = (v: unknown): v is Record<string, any> => typeof v === 'object' && v !== null && !Array.isArray(v);

export function mergePatch(target: any, patch: any): any {
  if (!isObj(patch)) return structuredClone(patch);
  const out: Record<string, any> = isObj(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function unescapePointer(token: string): string {
  return token.replace(/~1/g, '/').replace(/~0/g, '~');
}

function parsePointer(ptr: string): string[] {
  if (ptr === '') return [];
  if (!ptr.startsWith('/')) throw badRequest(`invalid JSON pointer ${JSON.stringify(ptr)}`);
  return ptr.slice(1).split('/').map(unescapePointer);
}

function patchFailed(msg: string): ApiError {
  return new ApiError(422, 'Invalid', `the server rejected our request due to an error in our request: ${msg}`);
}

export function jsonPatch(doc: any, ops: unknown): any {
  if (!Array.isArray(ops)) throw badRequest('a JSON patch must be an array of operations');
  let root = structuredClone(doc);
  const resolve = (tokens: string[]): { parent: any; key: string } => {
    let cur = root;
    for (const t of tokens.slice(0, -1)) {
      cur = Array.isArray(cur) ? cur[Number(t)] : isObj(cur) ? cur[t] : undefined;
      if (cur === undefined) throw patchFailed(`missing path segment ${JSON.stringify(t)}`);
    }
    return { parent: cur, key: tokens[tokens.length - 1]! };
  };
  const get = (tokens: string[]): any => {
    let cur = root;
    for (const t of tokens) {
      cur = Array.isArray(cur) ? cur[Number(t)] : isObj(cur) ? cur[t] : undefined;
      if (cur === undefined) throw patchFailed(`path /${tokens.join('/')} does not exist`);
    }
    return cur;
  };
  const remove = (tokens: string[]): any => {
    const { parent, key } = resolve(tokens);
    if (Array.isArray(parent)) {
      const i = Number(key);
      if (!Number.isInteger(i) || i < 0 || i >= parent.length) throw patchFailed(`index ${key} out of range`);
      return parent.splice(i, 1)[0];
    }
    if (!isObj(parent) || !Object.hasOwn(parent, key)) throw patchFailed(`path /${tokens.join('/')} does not exist`);
    const v = parent[key];
    delete parent[key];
    return v;
  };
  const add = (tokens: string[], value: any): void => {
    if (tokens.length === 0) {
      root = value;
      return;
    }
    const { parent, key } = resolve(tokens);
    if (Array.isArray(parent)) {
      const i = key === '-' ? parent.length : Number(key);
      if (!Number.isInteger(i) || i < 0 || i > parent.length) throw patchFailed(`index ${key} out of range`);
      parent.splice(i, 0, value);
    } else if (isObj(parent)) parent[key] = value;
    else throw patchFailed(`cannot add at /${tokens.join('/')}`);
  };
  for (const op of ops) {
    if (!isObj(op) || typeof op.op !== 'string' || typeof op.path !== 'string') throw badRequest('invalid JSON patch operation');
    const path = parsePointer(op.path);
    switch (op.op) {
      case 'add':
        add(path, structuredClone(op.value));
        break;
      case 'remove':
        remove(path);
        break;
      case 'replace':
        remove(path);
        add(path, structuredClone(op.value));
        break;
      case 'move':
        add(path, remove(parsePointer(String(op.from))));
        break;
      case 'copy':
        add(path, structuredClone(get(parsePointer(String(op.from)))));
        break;
      case 'test':
        if (JSON.stringify(get(path)) !== JSON.stringify(op.value)) throw patchFailed(`test operation failed at ${op.path}`);
        break;
      default:
        throw badRequest(`unknown JSON patch operation ${JSON.stringify(op.op)}`);
    }
  }
  return root;
}

/**
 * The patchMergeKey of the Go types' lists, by field name (`ports` is `containerPort` in a
 * container and `port` in a Service). Lists not named here are replaced, as atomic lists are.
 */
const MERGE_KEYS: Record<string, string[]> = {
  containers: ['name'],
  initContainers: ['name'],
  ephemeralContainers: ['name'],
  env: ['name'],
  volumes: ['name'],
  volumeMounts: ['mountPath'],
  volumeDevices: ['devicePath'],
  imagePullSecrets: ['name'],
  conditions: ['type'],
  hostAliases: ['ip'],
  ownerReferences: ['uid'],
  ports: ['containerPort', 'port'],
};

function mergeKeyOf(field: string, items: any[]): string | undefined {
  const candidates = MERGE_KEYS[field];
  if (!candidates) return undefined;
  return candidates.find((key) => items.some((i) => isObj(i) && i[key] !== undefined));
}

/**
 * Strategic merge patch, simplified: maps merge like a merge patch; the lists the Go types merge
 * (containers, env, ports, volumes, conditions, ...) merge item by item on their merge key and
 * follow `$setElementOrder`; other lists are replaced; `$patch: replace|delete`, `$retainKeys`
 * and `$deleteFromPrimitiveList` are honoured or dropped.
 */
export function strategicMergePatch(target: any, patch: any): any {
  if (!isObj(patch)) return structuredClone(patch);
  if (patch.$patch === 'replace') {
    const { $patch: _p, ...rest } = patch;
    return structuredClone(rest);
  }
  if (patch.$patch === 'delete') return undefined;
  const out: Record<string, any> = isObj(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (k.startsWith('$setElementOrder/') || k === '$retainKeys' || k === '$patch') continue;
    if (k.startsWith('$deleteFromPrimitiveList/')) {
      const field = k.slice('$deleteFromPrimitiveList/'.length);
      if (Array.isArray(out[field]) && Array.isArray(v)) out[field] = out[field].filter((x: unknown) => !v.includes(x));
      continue;
    }
    if (v === null) {
      delete out[k];
      continue;
    }
    const key = Array.isArray(v) ? mergeKeyOf(k, [...v, ...(Array.isArray(out[k]) ? out[k] : [])]) : undefined;
    if (Array.isArray(v) && key) {
      const merged: any[] = Array.isArray(out[k]) ? out[k].map((i: any) => structuredClone(i)) : [];
      for (const item of v) {
        if (!isObj(item)) continue;
        const idx = merged.findIndex((m) => isObj(m) && m[key] === item[key]);
        if (item.$patch === 'delete') {
          if (idx >= 0) merged.splice(idx, 1);
        } else if (idx >= 0) merged[idx] = strategicMergePatch(merged[idx], item);
        else merged.push(strategicMergePatch(undefined, item));
      }
      const order = patch[`$setElementOrder/${k}`];
      if (Array.isArray(order)) {
        const rank = (m: any): number => {
          const i = order.findIndex((o: any) => isObj(o) && o[key] === m[key]);
          return i < 0 ? order.length : i;
        };
        merged.sort((a, b) => rank(a) - rank(b));
      }
      out[k] = merged;
    } else if (Array.isArray(v)) {
      out[k] = structuredClone(v);
    } else {
      const r = strategicMergePatch(out[k], v);
      if (r === undefined) delete out[k];
      else out[k] = r;
    }
  }
  return out;
}

// ---- field sets (server-side apply) ----

/**
 * A field path in FieldsV1 segments, `f:<field>` for a field and `k:<json of the key fields>`
 * for an item of an associative list, joined into one string for set membership.
 */
export type FieldPath = string;
const SEP = '\u0000';

/** Key fields of the associative list at a field-name path (`["status","conditions"]` → `["type"]`), or undefined for atomic lists. */
export type ListKeys = (names: string[]) => string[] | undefined;

export const atomicLists: ListKeys = () => undefined;

/** Lists the built-in Go types merge (their patchMergeKey); also ownerReferences in any object's metadata. */
export const builtinListKeys: ListKeys = (names) => {
  const field = names[names.length - 1];
  if (field === undefined) return undefined;
  if (field === 'ports') {
    const parent = names[names.length - 2];
    return parent === 'containers' || parent === 'initContainers' || parent === 'ephemeralContainers' ? ['containerPort'] : ['port'];
  }
  return MERGE_KEYS[field];
};

/** Associative lists of a CRD schema (`x-kubernetes-list-type: map`), metadata lists as built-ins. */
export function schemaListKeys(schema: any): ListKeys {
  return (names) => {
    if (names[0] === 'metadata') return builtinListKeys(names);
    let s = schema;
    for (const n of names) {
      while (s?.type === 'array') s = s.items;
      s = s?.properties?.[n] ?? (isObj(s?.additionalProperties) ? s.additionalProperties : undefined);
      if (!s) return undefined;
    }
    return s?.type === 'array' && s['x-kubernetes-list-type'] === 'map' && Array.isArray(s['x-kubernetes-list-map-keys']) ? s['x-kubernetes-list-map-keys'] : undefined;
  };
}

const META_TRACKED = new Set(['labels', 'annotations', 'finalizers', 'ownerReferences']);

function keyedItems(v: unknown, keys: string[] | undefined): keys is string[] {
  return !!keys && Array.isArray(v) && v.length > 0 && v.every((i) => isObj(i) && keys.every((k) => i[k] !== undefined));
}

function itemSegment(item: any, keys: string[]): string {
  return `k:${JSON.stringify(Object.fromEntries(keys.map((k) => [k, item[k]])))}`;
}

/**
 * Leaf fields of an object as server-side apply tracks them: maps recurse, items of associative
 * lists recurse under their key, other lists and scalars are leaves. apiVersion, kind and
 * server-owned metadata are not tracked.
 */
export function leafFields(obj: any, listKeys: ListKeys = atomicLists): Set<FieldPath> {
  const out = new Set<FieldPath>();
  const walk = (v: any, segs: string[], names: string[]): void => {
    if (isObj(v) && Object.keys(v).length > 0) {
      for (const [k, c] of Object.entries(v)) walk(c, [...segs, `f:${k}`], [...names, k]);
      return;
    }
    const keys = listKeys(names);
    if (keyedItems(v, keys)) {
      for (const item of v as any[]) walk(item, [...segs, itemSegment(item, keys)], names);
      return;
    }
    if (keys && Array.isArray(v) && v.length === 0) return; // an empty associative list claims no item
    out.add(segs.join(SEP));
  };
  if (!isObj(obj)) return out;
  for (const [k, v] of Object.entries(obj)) {
    if (k === 'apiVersion' || k === 'kind') continue;
    if (k === 'metadata') {
      if (!isObj(v)) continue;
      for (const [mk, mv] of Object.entries(v)) if (META_TRACKED.has(mk)) walk(mv, ['f:metadata', `f:${mk}`], ['metadata', mk]);
      continue;
    }
    walk(v, [`f:${k}`], [k]);
  }
  return out;
}

function step(cur: any, seg: string): any {
  if (seg.startsWith('f:')) return isObj(cur) ? cur[seg.slice(2)] : undefined;
  if (seg.startsWith('k:') && Array.isArray(cur)) {
    const key = JSON.parse(seg.slice(2));
    return cur.find((i) => isObj(i) && Object.entries(key).every(([k, v]) => canonEqual(i[k], v)));
  }
  return undefined;
}

function canonEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export function getPath(obj: any, path: FieldPath): any {
  let cur = obj;
  for (const seg of path.split(SEP)) {
    cur = step(cur, seg);
    if (cur === undefined) return undefined;
  }
  return cur;
}

/**
 * Removes a field. The key fields of an associative-list item go only with the item, when
 * nothing but its keys is left; maps and lists the removal leaves empty are dropped too.
 */
export function deletePath(obj: any, path: FieldPath): void {
  const segs = path.split(SEP);
  const chain: any[] = [obj];
  for (const seg of segs.slice(0, -1)) {
    const next = step(chain[chain.length - 1], seg);
    if (next === undefined) return;
    chain.push(next);
  }
  const last = segs[segs.length - 1]!;
  const parent = chain[chain.length - 1];
  const parentSeg = segs[segs.length - 2];
  if (last.startsWith('f:') && isObj(parent)) {
    const field = last.slice(2);
    if (parentSeg?.startsWith('k:') && Object.hasOwn(JSON.parse(parentSeg.slice(2)), field)) {
      // a key field: the item goes if only its keys are left
      const keys = Object.keys(JSON.parse(parentSeg.slice(2)));
      if (Object.keys(parent).every((k) => keys.includes(k))) removeChild(chain[chain.length - 2], parentSeg, parent);
    } else delete parent[field];
  } else if (last.startsWith('k:') && Array.isArray(parent)) {
    const item = step(parent, last);
    if (item !== undefined) parent.splice(parent.indexOf(item), 1);
  }
  // drop containers the removal left empty
  for (let i = chain.length - 1; i >= 1; i--) {
    const child = chain[i];
    const empty = (isObj(child) && Object.keys(child).length === 0) || (Array.isArray(child) && child.length === 0);
    if (!empty) break;
    removeChild(chain[i - 1], segs[i - 1]!, child);
  }
}

function removeChild(parent: any, seg: string, child: any): void {
  if (seg.startsWith('f:') && isObj(parent)) delete parent[seg.slice(2)];
  else if (Array.isArray(parent)) {
    const idx = parent.indexOf(child);
    if (idx >= 0) parent.splice(idx, 1);
  }
}

/** `.spec.replicas`, `.status.conditions[type="Ready"].status`: as conflict messages show fields. */
export function showPath(path: FieldPath): string {
  return path
    .split(SEP)
    .map((seg) => {
      if (seg.startsWith('f:')) return `.${seg.slice(2)}`;
      const key = JSON.parse(seg.slice(2));
      return `[${Object.entries(key)
        .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
        .join(',')}]`;
    })
    .join('');
}

/** FieldsV1 (`{"f:spec":{"f:replicas":{}}}`) from a field set, and back. */
export function toFieldsV1(fields: Set<FieldPath>): Record<string, any> {
  const root: Record<string, any> = {};
  for (const p of [...fields].sort()) {
    let cur = root;
    for (const seg of p.split(SEP)) cur = cur[seg] ??= {};
  }
  return root;
}

export function fromFieldsV1(f: any): Set<FieldPath> {
  const out = new Set<FieldPath>();
  const walk = (node: any, path: string[]): void => {
    const keys = isObj(node) ? Object.keys(node).filter((k) => k.startsWith('f:') || k.startsWith('k:')) : [];
    if (keys.length === 0) {
      if (path.length > 0) out.add(path.join(SEP));
      return;
    }
    for (const k of keys) walk(node[k], [...path, k]);
  };
  walk(f, []);
  return out;
}

/** Deep merge for apply: maps merge, associative lists merge item by key, other lists are replaced. */
export function applyMerge(target: any, config: any, listKeys: ListKeys = atomicLists, names: string[] = []): any {
  if (isObj(config) && isObj(target)) {
    const out: Record<string, any> = { ...target };
    for (const [k, v] of Object.entries(config)) out[k] = applyMerge(out[k], v, listKeys, [...names, k]);
    return out;
  }
  const keys = listKeys(names);
  if (keys && Array.isArray(target) && Array.isArray(config) && config.length === 0) return target.map((i) => structuredClone(i));
  if (Array.isArray(target) && keyedItems(config, keys) && (target.length === 0 || keyedItems(target, keys))) {
    const merged = target.map((i) => structuredClone(i));
    for (const item of config as any[]) {
      const seg = itemSegment(item, keys);
      const existing = step(merged, seg);
      if (existing === undefined) merged.push(structuredClone(item));
      else merged[merged.indexOf(existing)] = applyMerge(existing, item, listKeys, names);
    }
    return merged;
  }
  return structuredClone(config);
}
