// `flashsale`: one program, one subcommand per workload. Usage errors exit 2, configuration
// errors exit 1 with one line naming the variable.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError, loadConfig, shutdownDeadlineMs } from './config.ts';
import type { CommandContext, CommandValues } from './command.ts';
import { createLogger } from './log.ts';
import { applyRuntimeSettings } from './runtime.ts';
import { InvalidSpecError } from './spec/flashsale.ts';

interface CommandDef {
  summary: string;
  usage: string;
  options: NonNullable<ParseArgsConfig['options']>;
  load: () => Promise<{ command: (values: CommandValues, ctx: CommandContext) => Promise<void> }>;
}

const saleSource = {
  file: { type: 'string', short: 'f' },
  sale: { type: 'string' },
} as const;
const saleSourceHelp = `  -f, --file FILE   FlashSale YAML (default: the FlashSale JSON in $FLASHSALE_SPEC)
      --sale NAME    which FlashSale of FILE (needed when FILE holds several)`;

export const commands: Record<string, CommandDef> = {
  run: {
    summary: 'standalone: provision and run everything for the FlashSales in FILE in one process',
    usage: `flashsale run -f FILE\n  -f, --file FILE   FlashSale YAML (one or more documents)`,
    options: { file: { type: 'string', short: 'f' } },
    load: () => import('./dataplane/standalone.ts'),
  },
  operator: {
    summary: 'the Kubernetes controller for FlashSale resources',
    usage: `flashsale operator [--namespace NS]... [--lease-name NAME] [--lease-namespace NS]
      --namespace NS        watch only this namespace (repeatable; default: all)
      --lease-name NAME     leader-election Lease (default: flashsale-operator)
      --lease-namespace NS  namespace of the Lease (default: $POD_NAMESPACE or default)`,
    options: {
      namespace: { type: 'string', multiple: true },
      'lease-name': { type: 'string' },
      'lease-namespace': { type: 'string' },
    },
    load: () => import('./operator/main.ts'),
  },
  api: {
    summary: 'HTTP API that decides purchases against Redis stock and hands orders to Kafka',
    usage: `flashsale api [-f FILE] [--sale NAME]\n${saleSourceHelp}`,
    options: { ...saleSource },
    load: () => import('./dataplane/api-main.ts'),
  },
  'order-writer': {
    summary: 'consumes the orders topic and writes orders to MySQL idempotently',
    usage: `flashsale order-writer [-f FILE] [--sale NAME]\n${saleSourceHelp}`,
    options: { ...saleSource },
    load: () => import('./dataplane/order-writer-main.ts'),
  },
  'timeout-closer': {
    summary: "closes unpaid orders of one timeout bucket when they fall due",
    usage: `flashsale timeout-closer --bucket NAME [-f FILE] [--sale NAME]\n      --bucket NAME  the timeout bucket to serve\n${saleSourceHelp}`,
    options: { ...saleSource, bucket: { type: 'string' } },
    load: () => import('./dataplane/timeout-closer-main.ts'),
  },
  compensator: {
    summary: 'periodic locked scan for overdue unpaid orders and unapplied stock releases',
    usage: `flashsale compensator [-f FILE] [--sale NAME]\n${saleSourceHelp}`,
    options: { ...saleSource },
    load: () => import('./dataplane/compensator-main.ts'),
  },
};

export function usage(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  return [
    'Usage: flashsale <command> [options]',
    '',
    'Commands:',
    ...Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    '',
    'Run `flashsale <command> --help` for the options of a command.',
    'Configuration (environment): KAFKA_BROKERS, REDIS_URL, MYSQL_URL, HTTP_PORT, LOG_LEVEL.',
  ].join('\n');
}

class UsageError extends Error {}

function armShutdownDeadline(logger: { error(o: object, msg: string): void }, ms: number): void {
  // unref: a stop that completes lets the process end at once; the timer only fires on a hang.
  setTimeout(() => {
    logger.error({ deadlineMs: ms }, 'stop did not complete within the shutdown deadline: exiting');
    process.exit(1);
  }, ms).unref();
}

export async function main(argv: string[]): Promise<void> {
  const v8Flags = applyRuntimeSettings();
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? process.stderr : process.stdout).write(usage() + '\n');
    process.exitCode = name === undefined ? 2 : 0;
    return;
  }
  const def = commands[name];
  try {
    if (!def) throw new UsageError(`unknown command "${name}"`);
    let parsed;
    try {
      parsed = parseArgs({ args: rest, options: { ...def.options, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: false });
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    if (parsed.values.help) {
      process.stdout.write(`Usage: ${def.usage}\n`);
      return;
    }
    const config = loadConfig();
    const logger = createLogger(config.logLevel, name);
    const deadlineMs = shutdownDeadlineMs(process.env.SHUTDOWN_DEADLINE_MS);
    const stopping = new Promise<void>((resolve) => {
      let signalled = false;
      for (const sig of ['SIGTERM', 'SIGINT'] as const) {
        process.on(sig, () => {
          if (signalled) {
            logger.error({ signal: sig }, 'second stop signal: exiting now');
            process.exit(1);
          }
          signalled = true;
          armShutdownDeadline(logger, deadlineMs);
          resolve();
        });
      }
    });
    // Logged once a stop signal is handled (a stop during startup ends the process too).
    logger.info({ command: name, shutdownDeadlineMs: deadlineMs, v8Flags }, 'starting');
    const mod = await def.load();
    await mod.command(parsed.values as CommandValues, { config, logger, stopping });
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`flashsale: ${err.message}\n\n${def ? `Usage: ${def.usage}` : usage()}\n`);
      process.exitCode = 2;
    } else if (err instanceof ConfigError) {
      process.stderr.write(`flashsale: ${err.message}\n`);
      process.exitCode = 1;
    } else if (err instanceof InvalidSpecError) {
      process.stderr.write(`flashsale: invalid FlashSale: ${err.message}\n`);
      process.exitCode = 1;
    } else {
      process.stderr.write(`flashsale: ${(err as Error).stack ?? String(err)}\n`);
      // Exit now: the command may have opened connections and a listener (an order writer serves
      // /healthz before it joins Kafka) that would keep a failed process alive, live for Kubernetes
      // and doing nothing. Exiting lets the kubelet restart it and the restart try again.
      process.exit(1);
    }
  }
}
