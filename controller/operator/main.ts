import type { CommandContext, CommandValues } from '../cli.ts';

export async function command(_values: CommandValues, ctx: CommandContext): Promise<void> {
  ctx.logger.error('not implemented yet');
  process.exitCode = 1;
}
