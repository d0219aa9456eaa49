// What the order-path workers need to know about one sale, computed once from its spec: derived
// names, the stock store, the SKUs with their timeout delay, and the sale window in epoch ms.
import type { Redis } from '../infra/redis.ts';
import { parseDuration, type FlashSale } from '../spec/flashsale.ts';
import { saleNames, type NameOptions, type SaleNames } from '../spec/names.ts';
import { StockStore } from './stock.ts';

export interface SkuInfo {
  id: string;
  stock: number;
  bucket: string;
  /** The bucket's delay: an order of this SKU falls due createdAt + delayMs. */
  delayMs: number;
}

export interface SaleContext {
  sale: FlashSale;
  names: SaleNames;
  /** namespace/name: the sale's identity in MySQL rows, messages and metric labels. */
  key: string;
  stock: StockStore;
  skus: Map<string, SkuInfo>;
  perUserLimit: number;
  startMs: number | null;
  endMs: number | null;
}

export function saleContext(sale: FlashSale, redis: Redis, nameOptions: NameOptions = {}): SaleContext {
  const names = saleNames(sale.metadata, nameOptions);
  const delays = new Map(sale.spec.timeoutBuckets.map((b) => [b.name, parseDuration(b.delay)]));
  const skus = new Map<string, SkuInfo>();
  for (const s of sale.spec.skus) {
    skus.set(s.id, { id: s.id, stock: s.stock, bucket: s.timeoutBucket, delayMs: delays.get(s.timeoutBucket) ?? 0 });
  }
  return {
    sale,
    names,
    key: names.key,
    stock: new StockStore(redis, sale, nameOptions),
    skus,
    perUserLimit: sale.spec.perUserLimit,
    startMs: sale.spec.startTime ? Date.parse(sale.spec.startTime) : null,
    endMs: sale.spec.endTime ? Date.parse(sale.spec.endTime) : null,
  };
}
