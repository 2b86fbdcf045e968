import { describe, expect, it } from 'vitest';
import { parseDuration } from './units.ts';

describe('parseDuration', () => {
  it('reads one unit, or a sum of them as people write them', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('5s')).toBe(5000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('2d 12h')).toBe(216_000_000);
    expect(parseDuration('2w')).toBe(14 * 86_400_000);
    expect(parseDuration(' 1.5h ')).toBe(5_400_000);
  });

  it('refuses what is not one', () => {
    for (const bad of ['', '5', 'h', '5 minutes', '1h30', '-5s', '1h-30m', '5y']) expect(parseDuration(bad), bad).toBeUndefined();
  });
});
