import fs from 'node:fs';
import { createRequire } from 'node:module';
import pino, { type Logger } from 'pino';
import type PinoPretty from 'pino-pretty';

export type { Logger };

/** syslog priorities by pino level: what journald files each line under (`journalctl -p err`). */
const PRIORITY: Readonly<Record<string, number>> = { fatal: 2, error: 3, warn: 4, info: 6, debug: 7, trace: 7 };

export interface LoggerOptions {
  readonly level: string;
  readonly destination: 1 | 2;
  /** Default: pretty at a terminal, JSON otherwise. */
  readonly format?: 'json' | 'pretty' | undefined;
  /** Where lines go instead of the file descriptor (tests). */
  readonly sink?: { write(line: string): void };
  /** Prefix each line with its syslog priority, `<3>`, which journald strips and files it under. Default: when JOURNAL_STREAM says journald reads this output. */
  readonly journal?: boolean;
}

/**
 * JSON lines for machines, with level names and ISO-8601 times as log
 * shippers expect; pino-pretty only when a person is at the terminal. The
 * daemon logs to stdout; one-shot commands log to stderr so that stdout
 * carries only their result (and --json stays parseable).
 */
export function createLogger(opts: LoggerOptions): Logger {
  const stream = opts.destination === 1 ? process.stdout : process.stderr;
  const base = {
    level: opts.level,
    base: undefined,
    redact: { paths: ['password', '*.password', 'keys', '*.keys'], remove: true },
    formatters: { level: (label: string) => ({ level: label }) },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  if (!opts.sink && (opts.format ?? (stream.isTTY ? 'pretty' : 'json')) === 'pretty') {
    // loaded only for a person at a terminal: every other start (the service, scripts) skips its 25 ms
    const pretty = createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;
    return pino(base, pretty({ destination: opts.destination, sync: true, colorize: true }));
  }
  const out = opts.sink ?? pino.destination({ fd: opts.destination, sync: true });
  const journal = opts.journal ?? underJournald(opts.destination);
  return pino(base, journal ? { write: (line: string) => out.write(`<${priorityOf(line)}>${line}`) } : out);
}

/** The level is the line's first key: `{"level":"error",...`. */
function priorityOf(line: string): number {
  const label = /^\{"level":"([a-z]+)"/.exec(line)?.[1];
  return PRIORITY[label ?? 'info'] ?? 6;
}

/** systemd sets JOURNAL_STREAM to the device and inode of the journal socket behind stdout and stderr. */
function underJournald(fd: 1 | 2): boolean {
  const stream = process.env.JOURNAL_STREAM;
  if (!stream) return false;
  try {
    const { dev, ino } = fs.fstatSync(fd);
    return stream === `${dev}:${ino}`;
  } catch {
    return false;
  }
}
