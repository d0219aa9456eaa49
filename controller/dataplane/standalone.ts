// `flashsale run -f FILE`: everything for the FlashSales in FILE in one process.
import type { CommandContext, CommandValues } from '../cli.ts';
import { InvalidSpecError, loadFlashSales } from '../spec/flashsale.ts';
import { saleNames } from '../spec/names.ts';

export async function command(values: CommandValues, ctx: CommandContext): Promise<void> {
  const file = values.file as string | undefined;
  if (!file) throw new InvalidSpecError(['run needs -f FILE']);
  const sales = loadFlashSales(file);
  for (const sale of sales) {
    const n = saleNames(sale.metadata);
    const plan = {
      sale: n.key,
      topics: [n.topics.orders, ...sale.spec.timeoutBuckets.map((b) => n.topics.delay(b.name)), n.topics.retry, n.topics.deadLetter],
      stock: Object.fromEntries(sale.spec.skus.map((s) => [n.redis.sku(s.id).stock, s.stock])),
      schema: ctx.config.mysql.database,
    };
    process.stdout.write(`would provision ${JSON.stringify(plan, null, 2)}\n`);
  }
}
