// Where a worker learns its FlashSale: a YAML file (-f, standalone and local runs) or the
// FLASHSALE_SPEC environment variable the operator sets on each Deployment.
import { InvalidSpecError, loadFlashSales, validateFlashSale, type FlashSale } from '../spec/flashsale.ts';
import type { CommandValues } from '../command.ts';

export function resolveSale(values: CommandValues, env: Record<string, string | undefined> = process.env): FlashSale {
  const file = values.file as string | undefined;
  const wanted = values.sale as string | undefined;
  if (!file) {
    const raw = env.FLASHSALE_SPEC;
    if (!raw) throw new InvalidSpecError(['no FlashSale: pass -f FILE or set FLASHSALE_SPEC']);
    let doc: unknown;
    try {
      doc = JSON.parse(raw);
    } catch (err) {
      throw new InvalidSpecError([`FLASHSALE_SPEC: not JSON (${(err as Error).message})`]);
    }
    return validateFlashSale(doc);
  }
  const sales = loadFlashSales(file);
  if (wanted) {
    const sale = sales.find((s) => s.metadata.name === wanted);
    if (!sale) throw new InvalidSpecError([`${file}: no FlashSale named "${wanted}" (has ${sales.map((s) => s.metadata.name).join(', ')})`]);
    return sale;
  }
  if (sales.length > 1) throw new InvalidSpecError([`${file} holds ${sales.length} FlashSales: choose one with --sale`]);
  return sales[0] as FlashSale;
}
