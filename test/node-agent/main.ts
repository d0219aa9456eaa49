// The flashsale node agent, a "process kubelet" for tests and laptops (docs/node-agent.md).
//
//   node test/node-agent/main.ts --kubeconfig <admin kubeconfig> --node-name <name> --state-dir <dir>
//        [--pod-cidr 10.244.0.0/16] [--ip-dir /tmp/flashsale-node-agent/ips] [--ignore-namespace-label nodeagent.flashsale.dev/ignore=true]
//        [--log-level info] [--no-bind]
//
// Run it with Node 24 (node_modules/.bin/node), as root (pods' runAsUser, the per-pod mount of the
// ServiceAccount token and the pod network route `ip route replace local <pod-cidr> dev lo` need it). It registers Node <name>, binds every pending pod to it and
// runs pods whose image repository is flashsale-operator as `bin/flashsale.js <args>`. Logs (JSON)
// go to stdout; the line {"msg":"node agent ready"} means the Node is registered and Ready and the
// pod watches are running. SIGTERM/SIGINT: stops every pod process (SIGTERM, SIGKILL after 10 s),
// marks the Node NotReady and exits 0. Pods' output: <state-dir>/logs/<ns>_<pod>_<uid>/<container>/<restartCount>.log.
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createLogger } from '../../controller/log.ts';
import { DEFAULT_IGNORE_LABEL, NodeAgent } from './agent.ts';
import { DEFAULT_POD_CIDR } from './ips.ts';

const { values } = parseArgs({
  options: {
    kubeconfig: { type: 'string' },
    'node-name': { type: 'string' },
    'state-dir': { type: 'string' },
    'ip-dir': { type: 'string', default: '/tmp/flashsale-node-agent/ips' },
    'pod-cidr': { type: 'string', default: DEFAULT_POD_CIDR },
    'ignore-namespace-label': { type: 'string', default: DEFAULT_IGNORE_LABEL },
    'log-level': { type: 'string', default: process.env.LOG_LEVEL || 'info' },
    // Only run pods already bound to this node (a second agent next to cluster:up's, in tests).
    'no-bind': { type: 'boolean', default: false },
  },
  strict: true,
});

if (!values.kubeconfig || !values['state-dir']) {
  process.stderr.write('usage: node test/node-agent/main.ts --kubeconfig FILE --node-name NAME --state-dir DIR [--pod-cidr CIDR] [--ip-dir DIR] [--ignore-namespace-label key=value] [--log-level LEVEL]\n');
  process.exit(2);
}

const logger = createLogger(values['log-level'], 'node-agent');
const agent = new NodeAgent({
  kubeconfig: resolve(values.kubeconfig),
  nodeName: values['node-name'] || hostname(),
  stateDir: resolve(values['state-dir']),
  ipDir: resolve(values['ip-dir']),
  podCidr: values['pod-cidr'],
  ignoreNamespaceLabel: values['ignore-namespace-label'],
  bind: !values['no-bind'],
  logger,
});

let stopping = false;
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    const hard = setTimeout(() => process.exit(1), 30_000);
    hard.unref();
    void agent.stop().finally(() => process.exit(0));
  });
}

try {
  await agent.start();
} catch (err) {
  logger.error({ err: String((err as Error).stack ?? err) }, 'node agent failed to start');
  await agent.stop().catch(() => undefined);
  process.exit(1);
}
