// The benchmark's own small HTTP client (fetch): readiness probes, /metrics and setup requests.
// Not test/support's client, which checks every answer against docs/openapi.yaml (a bare server
// is not the API).

export async function request(method: string, url: string, body?: unknown): Promise<{ status: number; text: string }> {
  const res = await fetch(url, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  return { status: res.status, text: await res.text() };
}
