// Shared fixtures for the test apiserver's own tests: a small CRD exercising every schema feature,
// and helpers to read client-node errors and raw watch streams.
/* eslint-disable @typescript-eslint/no-explicit-any -- Kubernetes JSON in tests */
import { ApiextensionsV1Api, loadYaml, type KubeConfig, type V1CustomResourceDefinition } from '@kubernetes/client-node';
import type { ApiServer } from './server.ts';

export const WIDGETS = { group: 'example.test', version: 'v1', plural: 'widgets' } as const;

export const widgetCrd = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: 'widgets.example.test' },
  spec: {
    group: 'example.test',
    scope: 'Namespaced',
    names: { plural: 'widgets', singular: 'widget', kind: 'Widget', shortNames: ['wd'] },
    versions: [
      {
        name: 'v1',
        served: true,
        storage: true,
        subresources: { status: {} },
        schema: {
          openAPIV3Schema: {
            type: 'object',
            properties: {
              spec: {
                type: 'object',
                required: ['size'],
                properties: {
                  size: { type: 'integer', minimum: 1, maximum: 10 },
                  color: { type: 'string', enum: ['red', 'blue'], default: 'red' },
                  name: { type: 'string', pattern: '^[a-z]+$', maxLength: 8 },
                  port: { 'x-kubernetes-int-or-string': true },
                  note: { type: 'string', nullable: true },
                  tags: { type: 'array', maxItems: 2, items: { type: 'string' } },
                  extra: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
                  limits: { type: 'object', default: {}, properties: { max: { type: 'integer', default: 5 } } },
                  replicas: { type: 'integer' },
                },
              },
              status: {
                type: 'object',
                properties: {
                  phase: { type: 'string' },
                  count: { type: 'integer' },
                  conditions: {
                    type: 'array',
                    'x-kubernetes-list-type': 'map',
                    'x-kubernetes-list-map-keys': ['type'],
                    items: { type: 'object', required: ['type', 'status'], properties: { type: { type: 'string' }, status: { type: 'string' }, reason: { type: 'string' } } },
                  },
                },
              },
            },
          },
        },
      },
    ],
  },
};

/** Creates a CRD from its plain JSON/YAML form (loadYaml maps x-kubernetes-* keys onto client-node's model). */
export async function installCrd(kc: KubeConfig, crd: unknown): Promise<V1CustomResourceDefinition> {
  const body = loadYaml<V1CustomResourceDefinition>(JSON.stringify(crd));
  return kc.makeApiClient(ApiextensionsV1Api).createCustomResourceDefinition({ body });
}

export async function installWidgets(kc: KubeConfig): Promise<void> {
  await installCrd(kc, widgetCrd);
}

export function widget(name: string, spec: Record<string, unknown> = { size: 3 }, metadata: Record<string, unknown> = {}): any {
  return { apiVersion: 'example.test/v1', kind: 'Widget', metadata: { name, ...metadata }, spec };
}

/** The HTTP code and parsed Status body of a client-node failure (throws if the call succeeded). */
export async function failure(p: Promise<unknown>): Promise<{ code: number; status: any }> {
  try {
    await p;
  } catch (err: any) {
    const body = typeof err.body === 'string' ? JSON.parse(err.body) : err.body;
    return { code: err.code, status: body };
  }
  throw new Error('expected the call to fail');
}

/** Reads a raw watch stream: every line parsed, until `count` events arrive or the stream ends. */
export async function rawWatch(
  server: ApiServer,
  path: string,
  opts: { count?: number; timeoutMs?: number; onOpen?: () => Promise<void> | void } = {},
): Promise<{ status: number; contentType: string | null; events: any[]; ended: boolean; lines: string[] }> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), opts.timeoutMs ?? 5_000);
  const res = await fetch(`${server.url}${path}`, { signal: controller.signal });
  const events: any[] = [];
  const lines: string[] = [];
  let ended = false;
  try {
    await opts.onOpen?.();
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    while (opts.count === undefined || events.length < opts.count) {
      const { done, value } = await reader.read();
      if (done) {
        ended = true;
        break;
      }
      buf += decoder.decode(value, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        lines.push(line);
        events.push(JSON.parse(line));
      }
    }
  } catch (err) {
    if ((err as Error).name !== 'AbortError') throw err;
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
  return { status: res.status, contentType: res.headers.get('content-type'), events, ended, lines };
}
