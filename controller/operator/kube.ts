// A small JSON client for the Kubernetes API on top of client-node's KubeConfig (which handles
// kubeconfig files, in-cluster service-account tokens and TLS). Plain objects in and out, every
// verb and subresource the operator needs, and errors that carry the HTTP status and Status reason.
// Like client-go's rest client it rate-limits itself (token bucket, QPS/burst) and honours `429 Too
// Many Requests` with `Retry-After` (the apiserver's priority-and-fairness answer), so 500 sales
// cannot turn the operator into a storm against a busy apiserver.
import http from 'node:http';
import https from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';
import { systemClock, type Clock } from './clock.ts';
import { TokenBucket } from './workqueue.ts';

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

/** The one field manager of every server-side apply the operator makes. */
export const FIELD_MANAGER = 'flashsale-operator';
export const APPLY_PATCH = 'application/apply-patch+yaml';

/** `?fieldManager=…&force=true`: the operator owns what it applies, taking fields over from others it conflicts with. */
export const applyQuery = `?fieldManager=${FIELD_MANAGER}&force=true`;

/**
 * client-go's token-bucket rate limiter (flowcontrol.NewTokenBucketRateLimiter): `burst` requests
 * at once, then `qps` per second. `wait()` resolves when a token is available; waits are served in
 * order, so a burst of reconciles queues instead of flooding the apiserver.
 */
export class RequestRateLimiter extends TokenBucket {
  private readonly timers: Clock;

  constructor(qps: number, burst: number, clock: Clock = systemClock) {
    super(qps, burst, clock);
    this.timers = clock;
  }

  wait(): Promise<void> {
    const ms = this.reserve();
    if (ms === 0) return Promise.resolve();
    return new Promise((r) => this.timers.setTimer(r, ms));
  }
}

/** Seconds of a `Retry-After` header (delta-seconds form; an HTTP date counts as 1 s), bounded. */
export function retryAfterMs(header: string | string[] | undefined, maxMs = 30_000): number {
  const raw = Array.isArray(header) ? header[0] : header;
  const n = Number(raw);
  const ms = raw !== undefined && raw !== '' && Number.isFinite(n) && n >= 0 ? n * 1000 : 1000;
  return Math.min(Math.max(ms, 0), maxMs);
}

export interface KubeClientOptions {
  timeoutMs?: number;
  /** Sustained requests per second (client-go's QPS; controller-runtime uses 20). */
  qps?: number;
  /** Requests allowed at once above the sustained rate (client-go's Burst; controller-runtime uses 30). */
  burst?: number;
  /** How often a request answered 429 is retried after its Retry-After (client-go: 10). */
  maxRetries?: number;
  clock?: Clock;
}

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

export function createKubeClient(kc: KubeConfig, options: KubeClientOptions = {}): KubeClient {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('no current cluster in the kubeconfig');
  const base = new URL(cluster.server);
  const timeoutMs = options.timeoutMs ?? 15_000;
  const clock = options.clock ?? systemClock;
  const limiter = new RequestRateLimiter(options.qps ?? 20, options.burst ?? 30, clock);
  const maxRetries = options.maxRetries ?? 10;

  const send = async (method: string, path: string, payload: Buffer | undefined, contentType: string, ro: RequestOptions = {}): Promise<RawResponse> => {
    ro.signal?.throwIfAborted();
    const opts: https.RequestOptions = { method, headers: {} };
    await kc.applyToHTTPSOptions(opts);
    const url = new URL(base.pathname.replace(/\/$/, '') + path, base);
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
    return new Promise<RawResponse>((resolve, reject) => {
      const req = (isHttps ? https : http).request(reqOpts, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      });
      req.setTimeout(limitMs, () => req.destroy(new Error(`${method} ${path}: timed out after ${limitMs}ms`)));
      req.on('error', reject);
      if (payload) req.write(payload);
      req.end();
    });
  };

  return {
    async request<T>(method: string, path: string, body?: unknown, contentType = 'application/json', ro: RequestOptions = {}): Promise<T> {
      // JSON is valid YAML, so an apply patch is sent as JSON too.
      const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      for (let attempt = 0; ; attempt++) {
        await limiter.wait();
        const res = await send(method, path, payload, contentType, ro);
        let parsed: unknown;
        try {
          parsed = res.text ? JSON.parse(res.text) : undefined;
        } catch {
          parsed = undefined;
        }
        if (res.status >= 200 && res.status < 300) return parsed as T;
        // 429: the apiserver did not process the request; it says when to come back.
        if (res.status === 429 && attempt < maxRetries) {
          const ms = retryAfterMs(res.headers['retry-after']);
          await new Promise((r) => clock.setTimer(() => r(undefined), ms));
          continue;
        }
        const s = (parsed ?? {}) as { reason?: string; message?: string };
        throw new KubeApiError(res.status, s.reason ?? String(res.status), `${method} ${path}: ${res.status} ${s.message ?? res.text.slice(0, 200)}`);
      }
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
  services: (ns?: string) => (ns ? `/api/v1/namespaces/${ns}/services` : '/api/v1/services'),
  service: (ns: string, name: string) => `/api/v1/namespaces/${ns}/services/${name}`,
  disruptionBudgets: (ns?: string) => (ns ? `/apis/policy/v1/namespaces/${ns}/poddisruptionbudgets` : '/apis/policy/v1/poddisruptionbudgets'),
  disruptionBudget: (ns: string, name: string) => `/apis/policy/v1/namespaces/${ns}/poddisruptionbudgets/${name}`,
  events: (ns: string) => `/api/v1/namespaces/${ns}/events`,
  leases: (ns: string) => `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases`,
  lease: (ns: string, name: string) => `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases/${name}`,
};
