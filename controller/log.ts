// One structured (JSON) logger for every component; children carry the component name.
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level = process.env.LOG_LEVEL || 'info', component?: string): Logger {
  const logger = pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
  return component ? logger.child({ component }) : logger;
}
