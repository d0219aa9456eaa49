// Label and field selectors as the apiserver parses them (k8s.io/apimachinery/pkg/labels and
// pkg/fields): `=`, `==`, `!=`, `in (..)`, `notin (..)`, `key`, `!key` for labels; `metadata.name`
// and `metadata.namespace` with `=`, `==`, `!=` for fields.
import { ApiError } from './errors.ts';

export type Requirement =
  | { key: string; op: 'eq' | 'neq'; values: [string] }
  | { key: string; op: 'in' | 'notin'; values: string[] }
  | { key: string; op: 'exists' | 'notexists'; values: [] };

export type Selector = (labels: Record<string, string>) => boolean;

const KEY = /^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?\/)?[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?$/;
const VALUE = /^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?)?$/;

/** Splits on commas that are not inside `( )`. */
function splitTerms(s: string): string[] {
  const terms: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      terms.push(cur);
      cur = '';
    } else cur += ch;
  }
  terms.push(cur);
  return terms.map((t) => t.trim()).filter((t) => t.length > 0);
}

function bad(selector: string, why: string): ApiError {
  return new ApiError(400, 'BadRequest', `unable to parse requirement: ${why} (selector ${JSON.stringify(selector)})`);
}

export function parseLabelSelector(selector: string | null | undefined): Requirement[] {
  if (!selector) return [];
  const reqs: Requirement[] = [];
  for (const term of splitTerms(selector)) {
    let m: RegExpMatchArray | null;
    if ((m = term.match(/^(\S+?)\s+(in|notin)\s*\((.*)\)$/))) {
      const values = m[3]!.split(',').map((v) => v.trim());
      for (const v of values) if (!VALUE.test(v)) throw bad(selector, `invalid label value: ${JSON.stringify(v)}`);
      reqs.push({ key: m[1]!, op: m[2] as 'in' | 'notin', values });
    } else if ((m = term.match(/^([^=!\s]+)\s*(==|=|!=)\s*(\S*)$/))) {
      if (!VALUE.test(m[3]!)) throw bad(selector, `invalid label value: ${JSON.stringify(m[3])}`);
      reqs.push({ key: m[1]!, op: m[2] === '!=' ? 'neq' : 'eq', values: [m[3]!] });
    } else if ((m = term.match(/^!\s*(\S+)$/))) {
      reqs.push({ key: m[1]!, op: 'notexists', values: [] });
    } else if ((m = term.match(/^(\S+)$/))) {
      reqs.push({ key: m[1]!, op: 'exists', values: [] });
    } else {
      throw bad(selector, `cannot parse ${JSON.stringify(term)}`);
    }
    const key = reqs[reqs.length - 1]!.key;
    if (!KEY.test(key)) throw bad(selector, `invalid label key ${JSON.stringify(key)}`);
  }
  return reqs;
}

export function labelSelector(selector: string | null | undefined): Selector {
  const reqs = parseLabelSelector(selector);
  return (labels) =>
    reqs.every((r) => {
      const has = Object.hasOwn(labels, r.key);
      const v = labels[r.key];
      switch (r.op) {
        case 'eq':
          return has && v === r.values[0];
        case 'neq':
          return !has || v !== r.values[0];
        case 'in':
          return has && r.values.includes(v!);
        case 'notin':
          return !has || !r.values.includes(v!);
        case 'exists':
          return has;
        case 'notexists':
          return !has;
      }
      return false;
    });
}

const FIELDS = ['metadata.name', 'metadata.namespace'] as const;

/** Field selectors; like the real server, an unsupported field is a 400. */
export function fieldSelector(selector: string | null | undefined): (meta: { name?: string; namespace?: string }) => boolean {
  if (!selector) return () => true;
  const tests: Array<(meta: { name?: string; namespace?: string }) => boolean> = [];
  for (const term of splitTerms(selector)) {
    const m = term.match(/^([^=!\s]+)\s*(==|=|!=)\s*(\S*)$/);
    if (!m) throw new ApiError(400, 'BadRequest', `invalid field selector: ${JSON.stringify(term)}`);
    const field = m[1]!;
    if (!(FIELDS as readonly string[]).includes(field)) {
      throw new ApiError(400, 'BadRequest', `field label not supported: ${field}`);
    }
    const want = m[3]!;
    const neg = m[2] === '!=';
    tests.push((meta) => {
      const got = (field === 'metadata.name' ? meta.name : meta.namespace) ?? '';
      return neg ? got !== want : got === want;
    });
  }
  return (meta) => tests.every((t) => t(meta));
}
