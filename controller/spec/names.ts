// Every name derived from a FlashSale lives here: Kafka topics and consumer groups, Redis keys,
// Kubernetes workloads. The operator, the data plane and the tests all ask this module.

export interface SaleRef {
  namespace: string;
  name: string;
}

export interface NameOptions {
  /** Prefix of every Redis key; tests use their own to stay out of each other's way. */
  redisPrefix?: string;
  /** Prefix of every Kafka topic and group; tests use their own. */
  kafkaPrefix?: string;
}

export type TopicPurpose = 'orders' | 'delay' | 'retry' | 'dead-letter';

export function saleNames(sale: SaleRef, options: NameOptions = {}) {
  const kp = options.kafkaPrefix ?? 'flashsale';
  const rp = options.redisPrefix ?? 'fs';
  const base = `${kp}.${sale.namespace}.${sale.name}`;
  const saleKey = `${sale.namespace}/${sale.name}`;
  return {
    /** namespace/name, the sale's identity in MySQL rows, metrics and logs. */
    key: saleKey,
    topics: {
      orders: `${base}.orders`,
      delay: (bucket: string) => `${base}.delay.${bucket}`,
      retry: `${base}.retry`,
      deadLetter: `${base}.dlq`,
      /** Every topic of the sale starts with this (namespaces and sale names hold no dots, so it is unique to the sale). */
      prefix: `${base}.`,
    },
    groups: {
      orderWriter: `${base}.order-writer`,
      timeoutCloser: (bucket: string) => `${base}.timeout-closer.${bucket}`,
      retry: `${base}.retry`,
    },
    redis: {
      /** Keys of one SKU share the hash tag {ns/sale/sku}, so one script can touch them all on Redis Cluster. */
      sku(skuId: string) {
        const tag = `${rp}:{${saleKey}/${skuId}}`;
        return {
          /** Units not yet reserved (integer). */
          stock: `${tag}:stock`,
          /** Stock the SKU was seeded with; seeding is SET NX on this key so it happens once. */
          seeded: `${tag}:seeded`,
          /** Hash userId → units held (reserved, unpaid or paid). */
          holdings: `${tag}:holdings`,
          /** Hash userId → last order id, so a retried request learns its order. */
          lastOrder: `${tag}:last-order`,
          /** Hash orderId → reservation JSON, until the order is in MySQL. */
          reservations: `${tag}:reservations`,
          /** Sorted set orderId by reservation time, for the reaper. */
          reservationTimes: `${tag}:reservation-times`,
          /** Set of order ids whose stock was released: makes a release idempotent. */
          released: `${tag}:released`,
          /** Set of order ids the order writer claimed: tells a redelivery from an order Redis never knew. */
          claimed: `${tag}:claimed`,
          /**
           * Counter raised by every reserve, claim and release. MySQL records the highest value the
           * workers saw (sku_marks): a lower value in Redis means Redis went back in time (restored
           * from an older snapshot).
           */
          seq: `${tag}:seq`,
          /** Present while spec.suspend is true: the reserve script refuses new reservations (the operator sets it). */
          suspended: `${tag}:suspended`,
        };
      },
      /** Lock that keeps compensation scans of one sale from overlapping. */
      compensationLock: `${rp}:${saleKey}:compensation-lock`,
      /** Every key of the sale starts with one of these (used by deletionPolicy: Delete). */
      patterns: [`${rp}:{${saleKey}/*`, `${rp}:${saleKey}:*`],
    },
    workloads: {
      api: `${sale.name}-api`,
      orderWriter: `${sale.name}-order-writer`,
      timeoutCloser: (bucket: string) => `${sale.name}-timeout-closer-${bucket}`,
      compensator: `${sale.name}-compensator`,
      apiService: `${sale.name}-api`,
      /** The PodDisruptionBudget of the API's pods (another kind, so it may share the Deployment's name). */
      apiDisruptionBudget: `${sale.name}-api`,
    },
  };
}

export type SaleNames = ReturnType<typeof saleNames>;
