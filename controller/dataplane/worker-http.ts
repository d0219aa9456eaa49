// A worker's small HTTP endpoint (/healthz, /readyz, /metrics) for probes and Prometheus.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export async function serveWorkerEndpoints(registry: Registry, port: number, ready: () => boolean, host = '0.0.0.0'): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
    if (path === '/readyz') {
      const ok = ready();
      return void res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' }).end(ok ? '{"status":"ready"}' : '{"status":"not ready"}');
    }
    if (path === '/metrics') {
      registry.metrics().then((text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text), () => res.writeHead(500).end());
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"NOT_FOUND"}');
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, host, () => resolve()));
  const a = server.address() as AddressInfo;
  return { server, url: `http://${a.address}:${a.port}` };
}
