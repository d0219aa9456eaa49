// client-node access to the test apiserver (test/apiserver/): a KubeConfig for it, and the writes
// a kubelet/controller would do in a real cluster (there is none here, so tests do them).
import { AppsV1Api, KubeConfig } from '@kubernetes/client-node';
import { startApiServer, type ApiServer, type ApiServerOptions } from '../apiserver/server.ts';

export type { ApiServer, ApiServerOptions };
export { startApiServer };

/** A KubeConfig for the test apiserver (http on 127.0.0.1, so TLS verification is skipped). */
export function kubeConfigFor(server: ApiServer, namespace = 'default'): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromString(server.kubeconfigYaml(namespace));
  const cluster = kc.getCurrentCluster();
  if (!cluster?.skipTLSVerify) throw new Error('test kubeconfig must skip TLS verification (client-node refuses plain http otherwise)');
  return kc;
}

/**
 * Writes a Deployment's status as if its pods had come up: there is no kubelet, so "ready replicas"
 * change only when a test says so. Defaults to all desired replicas ready and up to date.
 */
export async function setDeploymentStatus(
  kc: KubeConfig,
  namespace: string,
  name: string,
  status: { readyReplicas?: number; replicas?: number; availableReplicas?: number; updatedReplicas?: number } = {},
): Promise<void> {
  const apps = kc.makeApiClient(AppsV1Api);
  const current = await apps.readNamespacedDeployment({ name, namespace });
  const desired = current.spec?.replicas ?? 1;
  const ready = status.readyReplicas ?? desired;
  current.status = {
    observedGeneration: current.metadata?.generation ?? 1,
    replicas: status.replicas ?? desired,
    readyReplicas: ready,
    availableReplicas: status.availableReplicas ?? ready,
    updatedReplicas: status.updatedReplicas ?? desired,
  };
  await apps.replaceNamespacedDeploymentStatus({ name, namespace, body: current });
}
