import pino from 'pino';
import type { Logger } from '../../log/logger.ts';

export interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly [key: string]: unknown;
}

/** A pino logger whose lines (parsed) land in `lines`, for tests that check what the agent logs. */
export function captureLog(level = 'debug'): { log: Logger; lines: LogLine[]; messages: (minLevel?: number) => string[] } {
  const lines: LogLine[] = [];
  const log = pino({ level, base: undefined }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  return { log, lines, messages: (minLevel = 0) => lines.filter((l) => l.level >= minLevel).map((l) => l.msg) };
}

export const WARN = 40;
export const ERROR = 50;
