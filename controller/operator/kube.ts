// A small JSON client for the Kubernetes API on top of client-node's KubeConfig (which handles
// kubeconfig files, in-cluster service-account tokens and TLS). Plain objects in and out, every
// verb and subresource the operator needs, and errors that carry the HTTP status and Status reason.
import http from 'node:http';
import https from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';

export class KubeApiError extends Error {
  override name = 'KubeApiError';
  readonly status: number;
  readonly reason: string;
  constructor(status: number, reason: string, message: string) {
    super(message);
    this.status = status;
    this.reason = reason;
  }
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; [k: string]: unknown };
  [k: string]: unknown;
}

export interface KubeList<T> {
  metadata?: { resourceVersion?: string };
  items: T[];
}

/** Per-request options: `signal` aborts the request (e.g. the leader's renew deadline passed); `timeoutMs` overrides the client's. */
export interface RequestOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

export interface KubeClient {
  request<T>(method: string, path: string, body?: unknown, contentType?: string, options?: RequestOptions): Promise<T>;
}

export function createKubeClient(kc: KubeConfig, options: { timeoutMs?: number } = {}): KubeClient {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('no current cluster in the kubeconfig');
  const base = new URL(cluster.server);
  const timeoutMs = options.timeoutMs ?? 15_000;
  return {
    async request<T>(method: string, path: string, body?: unknown, contentType = 'application/json', ro: RequestOptions = {}): Promise<T> {
      ro.signal?.throwIfAborted();
      const opts: https.RequestOptions = { method, headers: {} };
      await kc.applyToHTTPSOptions(opts);
      const url = new URL(base.pathname.replace(/\/$/, '') + path, base);
      const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      const headers: Record<string, string | number> = { ...(opts.headers as Record<string, string>), accept: 'application/json' };
      if (payload) {
        headers['content-type'] = contentType;
        headers['content-length'] = payload.length;
      }
      const isHttps = url.protocol === 'https:';
      const reqOpts: https.RequestOptions = isHttps
        ? { ...opts, headers, method, hostname: url.hostname, port: url.port, path: url.pathname + url.search, signal: ro.signal }
        : { method, headers, hostname: url.hostname, port: url.port, path: url.pathname + url.search, auth: opts.auth, signal: ro.signal };
      const limitMs = ro.timeoutMs ?? timeoutMs;
      return new Promise<T>((resolve, reject) => {
        const req = (isHttps ? https : http).request(reqOpts, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown;
            try {
              parsed = text ? JSON.parse(text) : undefined;
            } catch {
              parsed = undefined;
            }
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) return resolve(parsed as T);
            const s = (parsed ?? {}) as { reason?: string; message?: string };
            reject(new KubeApiError(status, s.reason ?? String(status), `${method} ${path}: ${status} ${s.message ?? text.slice(0, 200)}`));
          });
        });
        req.setTimeout(limitMs, () => req.destroy(new Error(`${method} ${path}: timed out after ${limitMs}ms`)));
        req.on('error', reject);
        if (payload) req.write(payload);
        req.end();
      });
    },
  };
}

export const isNotFound = (err: unknown) => err instanceof KubeApiError && err.status === 404;
export const isConflict = (err: unknown) => err instanceof KubeApiError && err.status === 409;

/** Paths of the kinds the operator touches. */
export const paths = {
  flashsales: (ns?: string) => (ns ? `/apis/flashsale.dev/v1alpha1/namespaces/${ns}/flashsales` : '/apis/flashsale.dev/v1alpha1/flashsales'),
  flashsale: (ns: string, name: string) => `/apis/flashsale.dev/v1alpha1/namespaces/${ns}/flashsales/${name}`,
  deployments: (ns?: string) => (ns ? `/apis/apps/v1/namespaces/${ns}/deployments` : '/apis/apps/v1/deployments'),
  deployment: (ns: string, name: string) => `/apis/apps/v1/namespaces/${ns}/deployments/${name}`,
  services: (ns: string) => `/api/v1/namespaces/${ns}/services`,
  service: (ns: string, name: string) => `/api/v1/namespaces/${ns}/services/${name}`,
  events: (ns: string) => `/api/v1/namespaces/${ns}/events`,
  leases: (ns: string) => `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases`,
  lease: (ns: string, name: string) => `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases/${name}`,
};
