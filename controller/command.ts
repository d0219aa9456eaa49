// What every `flashsale` subcommand receives from the CLI. Kept apart from cli.ts so the command
// modules depend on this small module and cli.ts depends on them, never the other way (no cycle).
import type { Config } from './config.ts';
import type { Logger } from './log.ts';

export interface CommandContext {
  config: Config;
  logger: Logger;
  /** Resolves when the process is asked to stop (SIGTERM/SIGINT). */
  stopping: Promise<void>;
}

export type CommandValues = Record<string, string | boolean | undefined>;
