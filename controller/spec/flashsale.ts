// The FlashSale shape: parsing, schema defaults, and validation with precise messages.
// Types and the schema come from generated.ts (from the CRD), so this module, the operator and
// standalone mode all agree with what the apiserver accepts.
import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject } from 'ajv';
import { parseAllDocuments } from 'yaml';
import { closeObjects } from './closed-schema.ts';
import { flashSaleSchema, type FlashSaleSpec, type FlashSaleStatus, type PlacementSpec, type PodMetadataSpec, type TimeoutBucketSpec, type WorkerResources } from './generated.ts';

export type * from './generated.ts';

export const API_GROUP = 'flashsale.dev';
export const API_VERSION = 'flashsale.dev/v1alpha1';
export const KIND = 'FlashSale';
export const PLURAL = 'flashsales';

export interface ObjectMeta {
  name: string;
  namespace: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  deletionTimestamp?: string;
  creationTimestamp?: string;
}

export interface FlashSale {
  apiVersion: typeof API_VERSION;
  kind: typeof KIND;
  metadata: ObjectMeta;
  spec: FlashSaleSpec;
  status?: FlashSaleStatus;
}

/** A spec that cannot be provisioned; `problems` lists every reason, each naming its field. */
export class InvalidSpecError extends Error {
  override name = 'InvalidSpecError';
  readonly problems: string[];
  constructor(problems: string[]) {
    super(problems.join('; '));
    this.problems = problems;
  }
}

const DURATION = /^(\d+)(s|m|h)$/;
const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000 } as const;

/** Parses Ns / Nm / Nh into milliseconds. */
export function parseDuration(text: string): number {
  const m = DURATION.exec(text);
  if (!m) throw new Error(`invalid duration "${text}": expected Ns, Nm or Nh`);
  return Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
}

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: false, verbose: true });
ajv.addFormat('date-time', {
  type: 'string',
  validate: (s: string) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/i.test(s) && !Number.isNaN(Date.parse(s)),
});
// Closed objects, as `kubectl apply` (strict field validation) treats them: a misspelt field in a
// file for `flashsale run` (`replikas: 3`) is an error naming it, not a setting silently ignored.
// The apiserver prunes unknown fields, so stored objects never have any.
const validateSpecSchema = ajv.compile(closeObjects<object>(flashSaleSchema.properties.spec));

function fieldPath(instancePath: string): string {
  return (
    'spec' +
    instancePath
      .split('/')
      .slice(1)
      .map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p.replace(/~1/g, '/').replace(/~0/g, '~')}`))
      .join('')
  );
}

function describe(e: ErrorObject): string {
  const at = fieldPath(e.instancePath);
  switch (e.keyword) {
    case 'required':
      return `${at}.${String(e.params.missingProperty)}: required`;
    case 'additionalProperties':
      return `${at}.${String(e.params.additionalProperty)}: unknown field`;
    case 'enum':
      return `${at}: must be one of ${(e.params.allowedValues as unknown[]).join(', ')}`;
    case 'pattern':
      return `${at}: ${JSON.stringify(e.data)} does not match ${String(e.params.pattern)}`;
    case 'format':
      return `${at}: ${JSON.stringify(e.data)} is not an RFC 3339 ${String(e.params.format)}`;
    default:
      return `${at}: ${e.message ?? 'invalid'}${e.data !== undefined && typeof e.data !== 'object' ? ` (got ${JSON.stringify(e.data)})` : ''}`;
  }
}

/** Bounds of the spec's durations, in ms (the CRD's x-kubernetes-validations say the same). */
export const DURATION_BOUNDS = {
  delay: { min: 1000, max: 72 * 3_600_000, text: 'between 1s and 72h' },
  interval: { min: 1000, max: 3_600_000, text: 'between 1s and 1h' },
  grace: { min: 0, max: 24 * 3_600_000, text: 'at most 24h' },
} as const;

/** Longest sale name: `<sale>-timeout-closer-<bucket>` must stay a DNS-1035 label (≤ 63) with a 1-character bucket. */
export const MAX_SALE_NAME = 46;
/** Sale name plus bucket name: 63 minus the 16 characters of `-timeout-closer-`. */
export const MAX_SALE_AND_BUCKET_NAME = 47;
/** A DNS-1035 label (it names the Service `<sale>-api`). */
const SALE_NAME = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;

const QUANTITY = /^(\d+(?:\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d{1,2})?$/;
const BINARY_SUFFIX = { Ki: 10n, Mi: 20n, Gi: 30n, Ti: 40n, Pi: 50n, Ei: 60n } as const;
const DECIMAL_SUFFIX = { n: -9, u: -6, m: -3, '': 0, k: 3, M: 6, G: 9, T: 12, P: 15, E: 18 } as const;

/** A Kubernetes quantity (the CRD's pattern) as exactly digits × 10^exp10 × 2^exp2, or undefined when it is none. */
function quantity(q: number | string): { digits: bigint; exp10: number; exp2: bigint } | undefined {
  const m = QUANTITY.exec(String(q));
  if (!m) return undefined;
  const [whole = '', fraction = ''] = (m[1] as string).split('.');
  const suffix = m[2] ?? '';
  const digits = BigInt(`${whole}${fraction}` || '0');
  if (suffix in BINARY_SUFFIX) return { digits, exp10: -fraction.length, exp2: BINARY_SUFFIX[suffix as keyof typeof BINARY_SUFFIX] };
  const exp = suffix in DECIMAL_SUFFIX ? DECIMAL_SUFFIX[suffix as keyof typeof DECIMAL_SUFFIX] : Number(suffix.slice(1));
  return { digits, exp10: exp - fraction.length, exp2: 0n };
}

/** Sign of a − b for two quantities (exact: 1Gi == 1073741824, 0.1 == 100m), or undefined when either is none. */
export function compareQuantities(a: number | string, b: number | string): number | undefined {
  const x = quantity(a);
  const y = quantity(b);
  if (!x || !y) return undefined;
  // Scale both by the smaller exponents so every power is whole, then compare the integers.
  const e10 = Math.min(x.exp10, y.exp10);
  const e2 = x.exp2 < y.exp2 ? x.exp2 : y.exp2;
  const whole = (v: typeof x) => v.digits * 10n ** BigInt(v.exp10 - e10) * 2n ** (v.exp2 - e2);
  const d = whole(x) - whole(y);
  return d > 0n ? 1 : d < 0n ? -1 : 0;
}

/** limits below requests: Kubernetes would refuse the worker's Deployment (the CRD's rule says the same). */
function resourceProblems(at: string, r: WorkerResources | undefined): string[] {
  const problems: string[] = [];
  for (const name of ['cpu', 'memory'] as const) {
    const request = r?.requests?.[name];
    const limit = r?.limits?.[name];
    if (request === undefined || limit === undefined) continue;
    if ((compareQuantities(limit, request) ?? 0) < 0) problems.push(`${at}.limits.${name}: must not be below requests.${name} (${limit} < ${request})`);
  }
  return problems;
}

/** A DNS subdomain (RFC 1123) without its length bound: Kubernetes' object names, label-key prefixes. */
const DNS_SUBDOMAIN = '[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*';
const DNS_SUBDOMAIN_RE = new RegExp(`^${DNS_SUBDOMAIN}$`);
/** A label key as Kubernetes accepts it (the CRD's nodeSelector rule): optional DNS prefix and '/', then a name of at most 63 characters. */
const LABEL_KEY = new RegExp(`^(${DNS_SUBDOMAIN}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`);

/** A name Kubernetes takes for a Secret, a PriorityClass…: a DNS subdomain of at most 253 characters. */
export function isDnsSubdomain(name: string): boolean {
  return name.length <= 253 && DNS_SUBDOMAIN_RE.test(name);
}

export function isLabelKey(key: string): boolean {
  const slash = key.indexOf('/');
  return LABEL_KEY.test(key) && slash <= 253;
}

/** What Kubernetes would refuse in the pods' placement (the CRD's rules say the same). */
function placementProblems(placement: PlacementSpec | undefined): string[] {
  const problems: string[] = [];
  for (const key of Object.keys(placement?.nodeSelector ?? {})) {
    if (!isLabelKey(key)) problems.push(`spec.placement.nodeSelector: key ${JSON.stringify(key)} is not a label key`);
  }
  (placement?.tolerations ?? []).forEach((t, i) => {
    const at = `spec.placement.tolerations[${i}]`;
    if (!t.key && t.operator !== 'Exists') problems.push(`${at}.key: is required unless operator is Exists (an empty key with Exists tolerates every taint)`);
    if (t.operator === 'Exists' && t.value) problems.push(`${at}.value: must be empty when operator is Exists`);
    if (t.tolerationSeconds !== undefined && t.effect !== 'NoExecute') problems.push(`${at}.tolerationSeconds: is allowed only with effect NoExecute`);
  });
  return problems;
}

/** Pod labels the operator (its selectors, dashboards) or the Deployment controller set: the CRD refuses them in spec.podMetadata. */
const RESERVED_POD_LABELS = new Set(['app.kubernetes.io/name', 'app.kubernetes.io/instance', 'app.kubernetes.io/component', 'app.kubernetes.io/part-of', 'app.kubernetes.io/managed-by', 'pod-template-hash']);

export function isReservedPodLabel(key: string): boolean {
  return key.startsWith('flashsale.dev/') || RESERVED_POD_LABELS.has(key);
}

/** What Kubernetes or the operator's selectors would not take in spec.podMetadata (the CRD's rules say the same). */
function podMetadataProblems(m: PodMetadataSpec | undefined): string[] {
  const problems: string[] = [];
  for (const [field, map] of [['labels', m?.labels], ['annotations', m?.annotations]] as const) {
    for (const key of Object.keys(map ?? {})) {
      if (!isLabelKey(key)) problems.push(`spec.podMetadata.${field}: key ${JSON.stringify(key)} is not a label key`);
      else if (field === 'labels' && isReservedPodLabel(key)) problems.push(`spec.podMetadata.labels: key ${JSON.stringify(key)} is set by the operator or Kubernetes (the selectors rely on it)`);
    }
  }
  return problems;
}

function durationProblem(at: string, text: string, bounds: { min: number; max: number; text: string }): string[] {
  if (!DURATION.test(text)) return [];
  const ms = parseDuration(text);
  return ms < bounds.min || ms > bounds.max ? [`${at}: must be ${bounds.text} (got "${text}")`] : [];
}

/**
 * Rules beyond the OpenAPI schema. The CRD's x-kubernetes-validations make the apiserver refuse the
 * same things; these stay as a second line for objects stored before a rule existed and for files.
 */
function semanticProblems(spec: FlashSaleSpec): string[] {
  const problems: string[] = [];
  const bucketAt = new Map<string, number>();
  spec.timeoutBuckets.forEach((b, i) => {
    const first = bucketAt.get(b.name);
    if (first !== undefined) problems.push(`spec.timeoutBuckets[${i}].name: duplicate bucket "${b.name}" (also spec.timeoutBuckets[${first}])`);
    else bucketAt.set(b.name, i);
    problems.push(...durationProblem(`spec.timeoutBuckets[${i}].delay`, b.delay, DURATION_BOUNDS.delay));
  });
  const skuAt = new Map<string, number>();
  spec.skus.forEach((s, i) => {
    const first = skuAt.get(s.id);
    if (first !== undefined) problems.push(`spec.skus[${i}].id: duplicate SKU id "${s.id}" (also spec.skus[${first}])`);
    else skuAt.set(s.id, i);
    if (!bucketAt.has(s.timeoutBucket)) {
      problems.push(
        `spec.skus[${i}].timeoutBucket: unknown bucket "${s.timeoutBucket}" (defined: ${[...bucketAt.keys()].join(', ') || 'none'})`,
      );
    }
  });
  if (spec.startTime && spec.endTime && Date.parse(spec.startTime) >= Date.parse(spec.endTime)) {
    problems.push(`spec.endTime: must be after spec.startTime (${spec.startTime} >= ${spec.endTime})`);
  }
  for (const role of ['orderWriter', 'timeoutCloser'] as const) {
    const w = spec.workers[role];
    if (w.minReplicas > w.maxReplicas) {
      problems.push(`spec.workers.${role}.minReplicas: must not exceed maxReplicas (${w.minReplicas} > ${w.maxReplicas})`);
    }
  }
  for (const role of ['api', 'orderWriter', 'timeoutCloser', 'compensator'] as const) {
    problems.push(...resourceProblems(`spec.workers.${role}.resources`, spec.workers[role].resources));
  }
  problems.push(...placementProblems(spec.placement));
  problems.push(...podMetadataProblems(spec.podMetadata));
  problems.push(...durationProblem('spec.compensation.interval', spec.compensation.interval, DURATION_BOUNDS.interval));
  problems.push(...durationProblem('spec.compensation.grace', spec.compensation.grace, DURATION_BOUNDS.grace));
  return problems;
}

/** Applies the schema defaults to a copy of `spec` and validates it; throws InvalidSpecError listing every problem. */
export function validateSpec(spec: unknown): FlashSaleSpec {
  if (spec === null || typeof spec !== 'object' || Array.isArray(spec)) throw new InvalidSpecError(['spec: required object']);
  const copy = structuredClone(spec) as FlashSaleSpec;
  if (!validateSpecSchema(copy)) {
    throw new InvalidSpecError([...new Set((validateSpecSchema.errors ?? []).map(describe))]);
  }
  const problems = semanticProblems(copy);
  if (problems.length > 0) throw new InvalidSpecError(problems);
  return copy;
}

/** Validates a whole FlashSale document (apiVersion, kind, metadata.name) and defaults its spec. */
export function validateFlashSale(doc: unknown, defaultNamespace = 'default'): FlashSale {
  const obj = (doc ?? {}) as { apiVersion?: unknown; kind?: unknown; metadata?: Partial<ObjectMeta>; spec?: unknown; status?: FlashSaleStatus };
  const problems: string[] = [];
  if (obj.apiVersion !== API_VERSION) problems.push(`apiVersion: must be ${API_VERSION} (got ${JSON.stringify(obj.apiVersion)})`);
  if (obj.kind !== KIND) problems.push(`kind: must be ${KIND} (got ${JSON.stringify(obj.kind)})`);
  const name = obj.metadata?.name;
  const nameOk = typeof name === 'string' && SALE_NAME.test(name) && name.length <= MAX_SALE_NAME;
  if (!nameOk) {
    problems.push(
      `metadata.name: must be a DNS-1035 label (a lowercase letter, then lowercase letters, digits and '-') of at most ${MAX_SALE_NAME} characters (got ${JSON.stringify(name)})`,
    );
  }
  let spec: FlashSaleSpec | undefined;
  try {
    spec = validateSpec(obj.spec);
  } catch (err) {
    if (!(err instanceof InvalidSpecError)) throw err;
    problems.push(...err.problems);
  }
  if (nameOk && spec && typeof name === 'string') {
    spec.timeoutBuckets.forEach((b, i) => {
      if (name.length + b.name.length > MAX_SALE_AND_BUCKET_NAME) {
        problems.push(
          `spec.timeoutBuckets[${i}].name: the Deployment ${name}-timeout-closer-${b.name} would be longer than 63 characters (sale and bucket name may hold at most ${MAX_SALE_AND_BUCKET_NAME} together)`,
        );
      }
    });
  }
  if (problems.length > 0 || !spec) throw new InvalidSpecError(problems);
  const sale: FlashSale = {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: { ...obj.metadata, name: name as string, namespace: obj.metadata?.namespace || defaultNamespace },
    spec,
  };
  if (obj.status) sale.status = obj.status;
  return sale;
}

/** Reads every FlashSale document of a (multi-document) YAML file. */
export function loadFlashSales(file: string): FlashSale[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  const sales: FlashSale[] = [];
  docs.forEach((d, i) => {
    if (d.errors.length > 0) throw new InvalidSpecError([`${file} document ${i + 1}: ${d.errors[0]?.message ?? 'bad YAML'}`]);
    const value: unknown = d.toJS();
    if (value === null || value === undefined) return;
    try {
      sales.push(validateFlashSale(value));
    } catch (err) {
      if (err instanceof InvalidSpecError) throw new InvalidSpecError(err.problems.map((p) => `${file} document ${i + 1}: ${p}`));
      throw err;
    }
  });
  if (sales.length === 0) throw new InvalidSpecError([`${file}: no FlashSale documents`]);
  return sales;
}

export function bucketOf(spec: FlashSaleSpec, skuId: string): TimeoutBucketSpec {
  const sku = spec.skus.find((s) => s.id === skuId);
  const bucket = sku && spec.timeoutBuckets.find((b) => b.name === sku.timeoutBucket);
  if (!bucket) throw new Error(`SKU ${skuId} has no timeout bucket`);
  return bucket;
}
