// Kubernetes objects are closed unless they say otherwise: an OpenAPI object schema of the CRD
// without `additionalProperties` gets `additionalProperties: false`. Shared by the generator (exact
// TypeScript types) and the validator (a misspelt field is an error, as with kubectl's strict field
// validation), so both read the CRD the same way.

/** A copy of `schema` in which every object without `additionalProperties` is closed. */
export function closeObjects<T = unknown>(schema: unknown): T {
  return JSON.parse(JSON.stringify(schema), (_k, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v) && (v as { type?: unknown }).type === 'object' && !('additionalProperties' in v) ? { ...v, additionalProperties: false } : v,
  ) as T;
}
