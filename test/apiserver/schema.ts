// Structural openAPIV3Schema handling for custom resources, in the order the apiserver applies it:
// prune unknown fields, apply defaults, then validate and report EVERY failure (one 422 listing
// them all). Written by hand rather than with ajv because the Kubernetes extensions
// (x-kubernetes-preserve-unknown-fields, x-kubernetes-int-or-string, x-kubernetes-embedded-resource,
// nullable) change pruning and typing, and the messages should read like the real server's.
/* eslint-disable @typescript-eslint/no-explicit-any -- arbitrary JSON walked structurally */
import type { StatusCause } from './errors.ts';

export type Schema = Record<string, any>;

const isObj = (v: unknown): v is Record<string, any> => typeof v === 'object' && v !== null && !Array.isArray(v);

function childPath(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

/** Drops fields the schema does not declare (metadata at the root is ObjectMeta, never pruned here). */
export function prune(value: any, schema: Schema | undefined, root = true): any {
  if (!schema) return value;
  if (schema['x-kubernetes-preserve-unknown-fields'] === true && !schema.properties && !schema.additionalProperties) {
    return value;
  }
  if (isObj(value)) {
    if (schema.properties || schema.additionalProperties !== undefined || schema.type === 'object') {
      const preserve = schema['x-kubernetes-preserve-unknown-fields'] === true || schema['x-kubernetes-embedded-resource'] === true;
      const out: Record<string, any> = {};
      for (const [k, v] of Object.entries(value)) {
        if (root && (k === 'apiVersion' || k === 'kind' || k === 'metadata')) {
          out[k] = v;
          continue;
        }
        if (schema['x-kubernetes-embedded-resource'] === true && (k === 'apiVersion' || k === 'kind' || k === 'metadata')) {
          out[k] = v;
          continue;
        }
        const prop = schema.properties?.[k];
        if (prop) out[k] = prune(v, prop, false);
        else if (isObj(schema.additionalProperties)) out[k] = prune(v, schema.additionalProperties, false);
        else if (schema.additionalProperties === true || preserve) out[k] = v;
        // anything else is unknown: dropped
      }
      return out;
    }
    return value;
  }
  if (Array.isArray(value) && schema.items) return value.map((v) => prune(v, schema.items, false));
  return value;
}

/** Fills absent fields that declare a `default` (recursively, including defaults' own children). */
export function applyDefaults(value: any, schema: Schema | undefined): any {
  if (!schema) return value;
  if (isObj(value) && schema.properties) {
    for (const [k, prop] of Object.entries<Schema>(schema.properties)) {
      if (value[k] === undefined && prop.default !== undefined) value[k] = structuredClone(prop.default);
      if (value[k] === null && prop.default !== undefined && prop.nullable !== true) value[k] = structuredClone(prop.default);
      if (value[k] !== undefined) value[k] = applyDefaults(value[k], prop);
    }
  }
  if (isObj(value) && isObj(schema.additionalProperties)) {
    for (const k of Object.keys(value)) {
      if (schema.properties?.[k]) continue;
      value[k] = applyDefaults(value[k], schema.additionalProperties);
    }
  }
  if (Array.isArray(value) && schema.items) return value.map((v) => applyDefaults(v, schema.items));
  return value;
}

const DATE_TIME = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

function show(v: unknown): string {
  return JSON.stringify(v) ?? String(v);
}

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function typeMatches(v: unknown, schema: Schema): boolean {
  if (schema['x-kubernetes-int-or-string'] === true) return typeof v === 'string' || (typeof v === 'number' && Number.isInteger(v));
  const t = schema.type;
  if (!t) return true;
  const actual = typeOf(v);
  if (t === 'number') return actual === 'number' || actual === 'integer';
  return actual === t;
}

/** Every failure, as the real server words them (`<path>: Invalid value: ...`). */
export function validate(value: any, schema: Schema | undefined, path = ''): StatusCause[] {
  const causes: StatusCause[] = [];
  walk(value, schema, path, causes);
  return causes;
}

function walk(v: any, schema: Schema | undefined, path: string, out: StatusCause[]): void {
  if (!schema) return;
  const field = path;
  const invalidValue = (msg: string): void => {
    out.push({ reason: 'FieldValueInvalid', field, message: `Invalid value: ${show(v)}: ${field} in body ${msg}` });
  };
  if (v === null) {
    if (schema.nullable === true) return;
    if (schema.type) {
      out.push({ reason: 'FieldValueTypeInvalid', field, message: `Invalid value: "null": ${field} in body must be of type ${schema.type}: "null"` });
    }
    return;
  }
  if (!typeMatches(v, schema)) {
    const want = schema['x-kubernetes-int-or-string'] === true ? 'integer or string' : schema.type;
    out.push({ reason: 'FieldValueTypeInvalid', field, message: `Invalid value: "${typeOf(v)}": ${field} in body must be of type ${want}: "${typeOf(v)}"` });
    return;
  }
  if (Array.isArray(schema.enum) && !schema.enum.some((e: unknown) => JSON.stringify(e) === JSON.stringify(v))) {
    out.push({
      reason: 'FieldValueNotSupported',
      field,
      message: `Unsupported value: ${show(v)}: supported values: ${schema.enum.map((e: unknown) => show(e)).join(', ')}`,
    });
  }
  if (typeof v === 'number') {
    if (schema.minimum !== undefined) {
      if (schema.exclusiveMinimum === true ? v <= schema.minimum : v < schema.minimum) {
        invalidValue(`should be greater than ${schema.exclusiveMinimum === true ? '' : 'or equal to '}${schema.minimum}`);
      }
    }
    if (schema.maximum !== undefined) {
      if (schema.exclusiveMaximum === true ? v >= schema.maximum : v > schema.maximum) {
        invalidValue(`should be less than ${schema.exclusiveMaximum === true ? '' : 'or equal to '}${schema.maximum}`);
      }
    }
    if (schema.multipleOf !== undefined && v % schema.multipleOf !== 0) invalidValue(`should be a multiple of ${schema.multipleOf}`);
  }
  if (typeof v === 'string') {
    const len = [...v].length;
    if (schema.minLength !== undefined && len < schema.minLength) invalidValue(`should be at least ${schema.minLength} chars long`);
    if (schema.maxLength !== undefined && len > schema.maxLength) invalidValue(`may not be longer than ${schema.maxLength}`);
    if (schema.pattern !== undefined && !new RegExp(schema.pattern, 'u').test(v)) invalidValue(`should match '${schema.pattern}'`);
    if (schema.format === 'date-time' && !DATE_TIME.test(v)) {
      out.push({ reason: 'FieldValueInvalid', field, message: `Invalid value: ${show(v)}: ${field} in body must be of type date-time: ${show(v)}` });
    }
  }
  if (Array.isArray(v)) {
    if (schema.minItems !== undefined && v.length < schema.minItems) invalidValue(`should have at least ${schema.minItems} items`);
    if (schema.maxItems !== undefined && v.length > schema.maxItems) {
      out.push({ reason: 'TooMany', field, message: `Too many: ${v.length}: must have at most ${schema.maxItems} items` });
    }
    const listType = schema['x-kubernetes-list-type'];
    if (schema.uniqueItems === true || listType === 'set') {
      const seen = new Set<string>();
      v.forEach((item, i) => {
        const k = JSON.stringify(item);
        if (seen.has(k)) out.push({ reason: 'FieldValueDuplicate', field: `${field}[${i}]`, message: `Duplicate value: ${k}` });
        seen.add(k);
      });
    }
    if (listType === 'map' && Array.isArray(schema['x-kubernetes-list-map-keys'])) {
      const keys: string[] = schema['x-kubernetes-list-map-keys'];
      const seen = new Set<string>();
      v.forEach((item, i) => {
        const k = JSON.stringify(keys.map((key) => (isObj(item) ? item[key] : undefined)));
        if (seen.has(k)) out.push({ reason: 'FieldValueDuplicate', field: `${field}[${i}]`, message: `Duplicate value: ${k}` });
        seen.add(k);
      });
    }
    if (schema.items) v.forEach((item, i) => walk(item, schema.items, `${field}[${i}]`, out));
  }
  if (isObj(v)) {
    for (const req of schema.required ?? []) {
      if (v[req] === undefined) out.push({ reason: 'FieldValueRequired', field: childPath(path, req), message: 'Required value' });
    }
    if (schema.minProperties !== undefined && Object.keys(v).length < schema.minProperties) invalidValue(`should have at least ${schema.minProperties} properties`);
    if (schema.maxProperties !== undefined && Object.keys(v).length > schema.maxProperties) invalidValue(`should have at most ${schema.maxProperties} properties`);
    for (const [k, child] of Object.entries(v)) {
      if (path === '' && (k === 'metadata' || k === 'apiVersion' || k === 'kind')) continue;
      const prop = schema.properties?.[k];
      if (prop) walk(child, prop, childPath(path, k), out);
      else if (isObj(schema.additionalProperties)) walk(child, schema.additionalProperties, childPath(path, k), out);
    }
  }
  for (const sub of schema.allOf ?? []) walk(v, sub, path, out);
  if (Array.isArray(schema.anyOf) && !schema.anyOf.some((s: Schema) => validate(v, s, path).length === 0)) {
    invalidValue('must validate at least one schema (anyOf)');
  }
  if (Array.isArray(schema.oneOf) && schema.oneOf.filter((s: Schema) => validate(v, s, path).length === 0).length !== 1) {
    invalidValue('must validate one and only one schema (oneOf)');
  }
  if (isObj(schema.not) && validate(v, schema.not, path).length === 0) invalidValue('must not validate the schema (not)');
}

/** Structural-schema checks the real server applies when a CRD is created (a subset). */
export function checkStructural(schema: Schema | undefined, path: string): StatusCause[] {
  const out: StatusCause[] = [];
  if (!schema) {
    out.push({ reason: 'FieldValueRequired', field: path, message: 'Required value: schemas are required' });
    return out;
  }
  const visit = (s: Schema, p: string, root: boolean): void => {
    if (!isObj(s)) return;
    const preserve = s['x-kubernetes-preserve-unknown-fields'] === true;
    const intOrString = s['x-kubernetes-int-or-string'] === true;
    if (!s.type && !preserve && !intOrString && !root) {
      out.push({ reason: 'FieldValueRequired', field: `${p}.type`, message: 'Required value: must not be empty for specified object fields' });
    }
    if (root && s.type !== 'object') {
      out.push({ reason: 'FieldValueInvalid', field: `${p}.type`, message: `Invalid value: ${show(s.type)}: must be object at the root` });
    }
    for (const [k, c] of Object.entries<Schema>(s.properties ?? {})) visit(c, `${p}.properties[${k}]`, false);
    if (isObj(s.items)) visit(s.items, `${p}.items`, false);
    if (isObj(s.additionalProperties)) visit(s.additionalProperties, `${p}.additionalProperties`, false);
  };
  visit(schema, path, true);
  return out;
}
