// client-node's informer (ListWatch) re-lists on 410 Gone, but on any other error (dropped
// connection, apiserver down, a failed list) it reports the error and stops for good. This
// wrapper restarts it with exponential backoff, so the operator keeps watching through apiserver
// restarts; the restarted informer re-lists, which also delivers whatever changed meanwhile.
import { makeInformer, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from '../log.ts';
import { systemClock, type Clock, type Timer } from './clock.ts';
import type { KubeClient, KubeList } from './kube.ts';

export interface ResilientInformerOptions<T> {
  kc: KubeConfig;
  client: KubeClient;
  /** Collection path, e.g. /apis/apps/v1/namespaces/ns/deployments. */
  path: string;
  labelSelector?: string;
  onChange: (obj: T, verb: 'add' | 'update' | 'delete') => void;
  logger: Logger;
  clock?: Clock;
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** The informer to wrap (default: client-node's makeInformer on `path`); tests pass a fake. */
  make?: () => InformerLike<T>;
  /**
   * What of an object matters to the handler: an update whose fingerprint equals the last one
   * delivered for that object is dropped (e.g. a FlashSale's status-only update, which the
   * operator wrote itself, must not requeue it). Default: every update is delivered.
   */
  fingerprint?: (obj: T) => string;
  /**
   * Index keys of an object (e.g. the uid of its controller owner): `byIndex(key)` answers from a
   * map the events keep up to date, instead of scanning every cached object.
   */
  indexBy?: (obj: T) => string[];
}

/** The part of client-node's Informer this wrapper uses. */
export interface InformerLike<T> {
  on(verb: 'add' | 'update' | 'delete', cb: (obj: T) => void): void;
  on(verb: 'error', cb: (err: unknown) => void): void;
  start(): Promise<void>;
  stop(): Promise<void>;
  list(): readonly T[];
}

export class ResilientInformer<T extends KubernetesObject> {
  private readonly o: ResilientInformerOptions<T>;
  private readonly informer: InformerLike<T>;
  private readonly clock: Clock;
  private backoffMs: number;
  private restartTimer: Timer | undefined;
  private stopped = false;
  private readonly seen = new Map<string, string>();
  // The reconciler reads one sale and its children per round: lookups by id and by index keep that
  // independent of how many objects are cached (scanning list() made each round O(all objects), so
  // 500 sales' periodic requeues cost O(n²)).
  private readonly byId = new Map<string, T>();
  private readonly index = new Map<string, Map<string, T>>();
  private readonly keysOf = new Map<string, string[]>();
  restarts = 0;

  constructor(o: ResilientInformerOptions<T>) {
    this.o = o;
    this.clock = o.clock ?? systemClock;
    this.backoffMs = o.minBackoffMs ?? 500;
    const query = o.labelSelector ? `?labelSelector=${encodeURIComponent(o.labelSelector)}` : '';
    this.informer = o.make ? o.make() : (makeInformer<T>(o.kc, o.path, () => o.client.request<KubeList<T>>('GET', o.path + query), o.labelSelector) as InformerLike<T>);
    for (const verb of ['add', 'update', 'delete'] as const) {
      this.informer.on(verb, (obj: T) => {
        this.backoffMs = o.minBackoffMs ?? 500;
        const id = idOf(obj.metadata?.namespace, obj.metadata?.name);
        this.track(id, obj, verb);
        if (o.fingerprint) {
          if (verb === 'delete') this.seen.delete(id);
          else {
            const fp = o.fingerprint(obj);
            const unchanged = verb === 'update' && this.seen.get(id) === fp;
            this.seen.set(id, fp);
            if (unchanged) return;
          }
        }
        o.onChange(obj, verb);
      });
    }
    this.informer.on('error', (err: unknown) => this.restart(err));
  }

  private track(id: string, obj: T, verb: 'add' | 'update' | 'delete'): void {
    for (const key of this.keysOf.get(id) ?? []) {
      const entries = this.index.get(key);
      entries?.delete(id);
      if (entries?.size === 0) this.index.delete(key);
    }
    this.keysOf.delete(id);
    if (verb === 'delete') {
      this.byId.delete(id);
      return;
    }
    this.byId.set(id, obj);
    const keys = this.o.indexBy?.(obj) ?? [];
    if (keys.length === 0) return;
    this.keysOf.set(id, keys);
    for (const key of keys) {
      let entries = this.index.get(key);
      if (!entries) this.index.set(key, (entries = new Map()));
      entries.set(id, obj);
    }
  }

  private restart(err: unknown): void {
    if (this.stopped) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.o.maxBackoffMs ?? 30_000);
    this.o.logger.warn({ path: this.o.path, err: String((err as Error)?.message ?? err), retryInMs: delay }, 'watch failed; restarting the informer');
    this.restartTimer?.cancel();
    this.restartTimer = this.clock.setTimer(() => {
      if (this.stopped) return;
      this.restarts++;
      this.informer.start().catch((e: unknown) => this.restart(e));
    }, delay);
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.informer.start().catch((e: unknown) => this.restart(e));
  }

  list(): readonly T[] {
    return this.informer.list();
  }

  /** The cached object, as the last event delivered it. */
  get(namespace: string | undefined, name: string): T | undefined {
    return this.byId.get(idOf(namespace, name));
  }

  /** The cached objects that `indexBy` gave this key. */
  byIndex(key: string): T[] {
    return [...(this.index.get(key)?.values() ?? [])];
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.restartTimer?.cancel();
    await this.informer.stop();
  }
}

function idOf(namespace: string | undefined, name: string | undefined): string {
  return `${namespace ?? ''}/${name ?? ''}`;
}
