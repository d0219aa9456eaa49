// `npm run test-apiserver -- --port PORT --kubeconfig FILE`: serves the test apiserver on
// 127.0.0.1:PORT and writes a kubeconfig for it (kubectl --kubeconfig FILE ...).
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { startApiServer } from './server.ts';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    kubeconfig: { type: 'string' },
    namespace: { type: 'string', default: 'default' },
    'bookmark-interval-ms': { type: 'string' },
  },
});

const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`--port must be a port number, got ${JSON.stringify(values.port)}`);
  process.exit(2);
}
const server = await startApiServer({
  port,
  ...(values['bookmark-interval-ms'] ? { bookmarkIntervalMs: Number(values['bookmark-interval-ms']) } : {}),
});
if (values.kubeconfig) writeFileSync(values.kubeconfig, server.kubeconfigYaml(values.namespace), { mode: 0o600 });
console.log(`test apiserver listening on ${server.url}${values.kubeconfig ? `; kubeconfig written to ${values.kubeconfig}` : ''}`);
console.log(`POST ${server.url}/_test/compact forces a 410 for older watches; POST ${server.url}/_test/drop-watches ends open watches`);

const stop = (): void => {
  server.close().then(() => process.exit(0), () => process.exit(1));
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
