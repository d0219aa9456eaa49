// core/v1 Events about pods, as kubelet records them (source kubelet + node), with repeats of the
// same reason and message folded into `count` (updated at most every 10 s) instead of new objects.
import { randomBytes } from 'node:crypto';
import type { V1Pod } from '@kubernetes/client-node';
import type { KubeClient } from '../../controller/operator/kube.ts';
import type { Logger } from '../../controller/log.ts';

const UPDATE_EVERY_MS = 10_000;
const MAX_REMEMBERED = 5000;

export class EventRecorder {
  private readonly client: KubeClient;
  private readonly node: string;
  private readonly logger: Logger;
  private readonly seen = new Map<string, { name: string; namespace: string; count: number; sentCount: number; sentAt: number; first: string }>();

  constructor(client: KubeClient, node: string, logger: Logger) {
    this.client = client;
    this.node = node;
    this.logger = logger;
  }

  record(pod: V1Pod, type: 'Normal' | 'Warning', reason: string, message: string, fieldPath?: string): void {
    const ns = pod.metadata?.namespace ?? 'default';
    const key = `${pod.metadata?.uid}|${fieldPath}|${reason}|${message}`;
    const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const prev = this.seen.get(key);
    if (prev) {
      prev.count++;
      if (Date.now() - prev.sentAt < UPDATE_EVERY_MS) return;
      prev.sentAt = Date.now();
      prev.sentCount = prev.count;
      this.client
        .request('PATCH', `/api/v1/namespaces/${prev.namespace}/events/${prev.name}`, { count: prev.count, lastTimestamp: now }, 'application/merge-patch+json')
        .catch((err: unknown) => this.logger.debug({ err: String(err) }, 'event update failed'));
      return;
    }
    if (this.seen.size >= MAX_REMEMBERED) this.seen.delete(this.seen.keys().next().value as string);
    const name = `${pod.metadata?.name}.${randomBytes(8).toString('hex')}`;
    this.seen.set(key, { name, namespace: ns, count: 1, sentCount: 1, sentAt: Date.now(), first: now });
    this.client
      .request('POST', `/api/v1/namespaces/${ns}/events`, {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name, namespace: ns },
        involvedObject: { apiVersion: 'v1', kind: 'Pod', namespace: ns, name: pod.metadata?.name, uid: pod.metadata?.uid, ...(fieldPath ? { fieldPath } : {}) },
        type,
        reason,
        message,
        source: { component: 'kubelet', host: this.node },
        reportingComponent: 'kubelet',
        reportingInstance: this.node,
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      })
      .catch((err: unknown) => this.logger.debug({ err: String(err) }, 'event not recorded'));
  }

  /** Forgets a pod's events (it is gone). */
  forget(uid: string): void {
    for (const k of this.seen.keys()) if (k.startsWith(`${uid}|`)) this.seen.delete(k);
  }
}
