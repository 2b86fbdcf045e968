import { describe, expect, it } from 'vitest';
import { createLogger } from './logger.ts';

function lines(journal: boolean): string[] {
  const out: string[] = [];
  const log = createLogger({ level: 'debug', destination: 1, sink: { write: (l) => void out.push(l) }, journal });
  log.error({ volume: 'db', password: 'secret' }, 'backup failed');
  log.warn('slow');
  log.info('ok');
  log.debug('detail');
  return out;
}

describe('the log', () => {
  it('writes JSON lines with level names and ISO-8601 times, and no password', () => {
    const [error, warn] = lines(false).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(error).toMatchObject({ level: 'error', volume: 'db', msg: 'backup failed' });
    expect(error!.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(error).not.toHaveProperty('password');
    expect(warn!.level).toBe('warn');
  });

  it('under journald, prefixes each line with its syslog priority (journalctl -p err finds errors)', () => {
    const out = lines(true);
    expect(out.map((l) => l.slice(0, 3))).toEqual(['<3>', '<4>', '<6>', '<7>']);
    expect(JSON.parse(out[0]!.slice(3)).msg).toBe('backup failed');
  });
});
