import { createRequire } from 'node:module';
import pino, { type Logger } from 'pino';
import type PinoPretty from 'pino-pretty';

export type { Logger };

/**
 * JSON lines for machines; pino-pretty only when a person is at the terminal.
 * The daemon logs to stdout; one-shot commands log to stderr so that stdout
 * carries only their result (and --json stays parseable).
 */
export function createLogger(opts: { level: string; destination: 1 | 2 }): Logger {
  const stream = opts.destination === 1 ? process.stdout : process.stderr;
  const base = { level: opts.level, base: undefined, redact: { paths: ['password', '*.password', 'keys', '*.keys'], remove: true } };
  if (stream.isTTY) {
    // loaded only for a person at a terminal: every other start (the service, scripts) skips its 25 ms
    const pretty = createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;
    return pino(base, pretty({ destination: opts.destination, sync: true, colorize: true }));
  }
  return pino(base, pino.destination({ fd: opts.destination, sync: true }));
}
