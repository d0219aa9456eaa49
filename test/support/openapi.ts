// The HTTP API's OpenAPI document (docs/openapi.yaml) as a response checker: which documented
// operation a request hits, and whether the status and body the API gave are documented there.
// test/support/order-path.ts's `http` runs every response through it, so every order-path test is
// also a check of the implementation against the document.
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import { readOpenApi } from './openapi-gen.ts';

type Obj = Record<string, unknown>;

export const openapi = readOpenApi();
const paths = openapi.paths as Record<string, Obj>;
const DOC_ID = 'openapi.json';

// strict: false — the document holds OpenAPI keywords next to the schemas; only schemas are compiled.
const ajv = new Ajv2020({ strict: false, allErrors: true });
ajv.addSchema(openapi, DOC_ID);

const escape = (s: string) => s.replace(/~/g, '~0').replace(/\//g, '~1');

/** Follows a local `$ref` of the document (responses are referenced from components). */
function deref(value: Obj, pointer: string): { value: Obj; pointer: string } {
  const ref = value.$ref;
  if (typeof ref !== 'string') return { value, pointer };
  let target: unknown = openapi;
  for (const seg of ref.replace(/^#\//, '').split('/')) target = (target as Obj)[seg.replace(/~1/g, '/').replace(/~0/g, '~')];
  return { value: target as Obj, pointer: ref.slice(1) };
}

const compiled = new Map<string, ValidateFunction>();
function validator(pointer: string): ValidateFunction {
  let v = compiled.get(pointer);
  if (!v) {
    v = ajv.compile({ $ref: `${DOC_ID}#${pointer}` });
    compiled.set(pointer, v);
  }
  return v;
}

/** Validates a value against a schema of the document, by JSON pointer; the error text or null. */
export function validateAt(pointer: string, value: unknown): string | null {
  const v = validator(pointer);
  return v(value) ? null : ajv.errorsText(v.errors);
}

export const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

/** The documented path template a request path matches, or null. Parameters match one segment. */
export function matchTemplate(path: string): string | null {
  const segs = path.split('/');
  for (const template of Object.keys(paths)) {
    const t = template.split('/');
    if (t.length !== segs.length) continue;
    // `{sale}` needs a non-empty segment (the API routes on it); an empty `{orderId}` is an id that is never found.
    if (t.every((p, i) => (p === '{sale}' ? segs[i] !== '' : p.startsWith('{') || p === segs[i]))) return template;
  }
  return null;
}

/** Every documented (method, template, status). */
export function documentedOperations(): { method: string; template: string; status: string; pointer: string }[] {
  const out: { method: string; template: string; status: string; pointer: string }[] = [];
  for (const [template, item] of Object.entries(paths)) {
    for (const method of METHODS) {
      const op = item[method] as Obj | undefined;
      if (!op) continue;
      for (const status of Object.keys(op.responses as Obj)) {
        out.push({ method, template, status, pointer: `/paths/${escape(template)}/${method}/responses/${status}` });
      }
    }
  }
  return out;
}

export interface Answer {
  status: number;
  contentType: string | undefined;
  text: string;
}

/**
 * Checks one answer against the document; returns what is wrong, or null. A request to a path the
 * document does not list must be 404 NOT_FOUND; a listed path with an unlisted method 405; a listed
 * operation must answer one of its statuses with a body valid against that status's schema.
 * Also returns the operation key (for coverage): "METHOD template status [error]".
 */
export function checkAnswer(method: string, rawPath: string, a: Answer): { problem: string | null; key: string } {
  const m = method.toLowerCase();
  const path = rawPath.split('?')[0] as string;
  const template = matchTemplate(path);
  const bodyless = m === 'head';
  let json: unknown;
  let isJson = false;
  if (!bodyless) {
    try {
      json = JSON.parse(a.text);
      isJson = true;
    } catch {
      // checked below
    }
  }
  const errorOf = (j: unknown) => (j && typeof j === 'object' && typeof (j as Obj).error === 'string' ? ` ${(j as Obj).error as string}` : '');
  const where = `${method} ${rawPath} → ${a.status} ${a.text.slice(0, 200)}`;
  // Answers outside the listed operations: the document's components.responses NotFound / MethodNotAllowed.
  const fixed = (status: number, response: string, key: string) => {
    if (a.status !== status) return { problem: `expected ${status}: ${where}`, key };
    if (bodyless) return { problem: null, key };
    if ((a.contentType ?? '').split(';')[0] !== 'application/json' || !isJson) return { problem: `expected a JSON body: ${where}`, key };
    const err = validateAt(`/components/responses/${response}/content/application~1json/schema`, json);
    return { problem: err ? `${err}: ${where}` : null, key };
  };
  if (!template) return fixed(404, 'NotFound', 'undocumented path 404');
  const item = paths[template] as Obj;
  const op = item[m] as Obj | undefined;
  if (!op) return fixed(405, 'MethodNotAllowed', `${template} other method 405`);
  const responses = op.responses as Obj;
  const status = String(a.status);
  const key = `${method.toUpperCase()} ${template} ${status}${errorOf(json)}`;
  const documented = responses[status] as Obj | undefined;
  if (!documented) return { problem: `undocumented status: ${where}`, key };
  const { value: response, pointer } = deref(documented, `/paths/${escape(template)}/${m}/responses/${status}`);
  const content = response.content as Record<string, Obj> | undefined;
  if (!content) return { problem: null, key };
  const type = (a.contentType ?? '').split(';')[0]?.trim() ?? '';
  if (!content[type]) return { problem: `content type ${a.contentType} not documented (${Object.keys(content).join(', ')}): ${where}`, key };
  if (bodyless) return { problem: null, key };
  if (type === 'application/json') {
    if (!isJson) return { problem: `body is not JSON: ${where}`, key };
    const err = validateAt(`${pointer}/content/application~1json/schema`, json);
    if (err) return { problem: `${err}: ${where}`, key };
  }
  return { problem: null, key };
}

/** Every `error` value a documented response schema allows, per "METHOD template status". */
export function documentedErrors(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const collect = (schema: unknown, acc: string[]): void => {
    if (!schema || typeof schema !== 'object') return;
    const s = deref(schema as Obj, '').value;
    const err = (s.properties as Obj | undefined)?.error as Obj | undefined;
    if (err) {
      if (typeof err.const === 'string') acc.push(err.const);
      if (Array.isArray(err.enum)) acc.push(...(err.enum as string[]));
    }
    for (const k of ['oneOf', 'anyOf'] as const) if (Array.isArray(s[k])) for (const sub of s[k] as unknown[]) collect(sub, acc);
  };
  for (const op of documentedOperations()) {
    const { value: response } = deref((((paths[op.template] as Obj)[op.method] as Obj).responses as Obj)[op.status] as Obj, op.pointer);
    const schema = (response.content as Record<string, Obj> | undefined)?.['application/json']?.schema;
    const acc: string[] = [];
    collect(schema, acc);
    out.set(`${op.method.toUpperCase()} ${op.template} ${op.status}`, acc);
  }
  return out;
}

/** The JSON pointer of every documented JSON response schema (after following response $refs). */
export function responseSchemaPointers(): string[] {
  return documentedOperations().flatMap((op) => {
    const { value: response, pointer } = deref((((paths[op.template] as Obj)[op.method] as Obj).responses as Obj)[op.status] as Obj, op.pointer);
    return (response.content as Record<string, Obj> | undefined)?.['application/json'] ? [`${pointer}/content/application~1json/schema`] : [];
  });
}
