// Kubernetes Events off the reconcile path, the way client-go's EventBroadcaster does it: a reconcile
// records an Event into a bounded queue and goes on; one loop sends them through a client of its own
// (its own token bucket), so 500 sales being created at once do not spend the reconcilers' request
// budget on Events, and a slow or failing Events endpoint never slows a reconcile. An Event is
// information, not state: when the queue is full the newest are dropped (counted and logged).
import type { Logger } from '../log.ts';
import type { Clock } from './clock.ts';
import { paths, type KubeClient } from './kube.ts';
import { microTime } from './leader.ts';

export interface EventTarget {
  apiVersion?: string;
  metadata: { namespace: string; name: string; uid?: string };
}

export interface EventSink {
  record(target: EventTarget, type: 'Normal' | 'Warning', reason: string, message: string): void;
}

export interface EventRecorderOptions {
  client: KubeClient;
  clock: Clock;
  logger: Logger;
  /** reportingInstance of each Event (the operator pod). */
  identity: string;
  /** Events waiting to be sent at most (client-go's broadcaster queue holds 1000). */
  queueSize?: number;
  random?: () => number;
}

export class EventRecorder implements EventSink {
  private readonly o: EventRecorderOptions;
  private readonly queue: { namespace: string; body: unknown; reason: string }[] = [];
  private sending: Promise<void> | undefined;
  /** Events dropped because the queue was full. */
  dropped = 0;
  /** Events the apiserver refused or that failed to send (logged each). */
  failed = 0;

  constructor(o: EventRecorderOptions) {
    this.o = o;
  }

  record(target: EventTarget, type: 'Normal' | 'Warning', reason: string, message: string): void {
    const { namespace, name, uid } = target.metadata;
    if (this.queue.length >= (this.o.queueSize ?? 1000)) {
      if (this.dropped++ % 100 === 0) this.o.logger.warn({ sale: `${namespace}/${name}`, reason, dropped: this.dropped }, 'event queue full; dropping events');
      return;
    }
    const now = this.o.clock.now();
    const ts = new Date(now).toISOString().replace(/\.\d{3}Z$/, 'Z');
    const rand = Math.floor((this.o.random ?? Math.random)() * 0xffff).toString(16);
    this.queue.push({
      namespace,
      reason,
      body: {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name: `${name}.${now.toString(16)}${rand}`, namespace },
        involvedObject: { apiVersion: target.apiVersion ?? 'flashsale.dev/v1alpha1', kind: 'FlashSale', name, namespace, uid },
        reason,
        message: message.slice(0, 1024),
        type,
        count: 1,
        firstTimestamp: ts,
        lastTimestamp: ts,
        eventTime: microTime(now),
        source: { component: 'flashsale-operator' },
        reportingComponent: 'flashsale.dev/operator',
        reportingInstance: this.o.identity,
        action: reason,
      },
    });
    this.sending ??= this.send().finally(() => {
      this.sending = undefined;
    });
  }

  /** Events recorded but not sent yet. */
  pending(): number {
    return this.queue.length;
  }

  /** Resolves once every recorded Event was sent (or failed), or after `timeoutMs`. */
  async flush(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.sending, new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
  }

  private async send(): Promise<void> {
    for (let e = this.queue.shift(); e; e = this.queue.shift()) {
      try {
        await this.o.client.request('POST', paths.events(e.namespace), e.body);
      } catch (err) {
        this.failed++;
        this.o.logger.warn({ namespace: e.namespace, reason: e.reason, err: (err as Error).message }, 'could not record an event');
      }
    }
  }
}
