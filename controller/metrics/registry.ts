// Metric definitions are created once per prom-client Registry: every worker of a process (and of
// `flashsale run`, where all workers share one registry) gets the same Counter objects.
import type { Registry } from 'prom-client';

export function oncePerRegistry<T>(build: (registry: Registry) => T): (registry: Registry) => T {
  const cache = new WeakMap<Registry, T>();
  return (registry) => {
    let m = cache.get(registry);
    if (m === undefined) {
      m = build(registry);
      cache.set(registry, m);
    }
    return m;
  };
}
