import type { CommandContext, CommandValues } from '../cli.ts';
import { resolveSale } from './sale-source.ts';

export async function command(values: CommandValues, ctx: CommandContext): Promise<void> {
  const sale = resolveSale(values);
  ctx.logger.error({ sale: sale.metadata.name }, 'not implemented yet');
  process.exitCode = 1;
}
