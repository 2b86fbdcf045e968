import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration, parseSize } from './units.ts';

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

describe('formatDuration', () => {
  it('writes the two largest units, in the syntax parseDuration reads', () => {
    expect(formatDuration(250)).toBe('250ms');
    expect(formatDuration(45_000)).toBe('45s');
    expect(formatDuration(5_400_000)).toBe('1h30m');
    expect(formatDuration(3_600_000)).toBe('1h');
    expect(formatDuration(2 * 86_400_000 + 3 * 3_600_000 + 59_000)).toBe('2d3h');
    expect(formatDuration(61_500)).toBe('1m1s');
    for (const ms of [250, 45_000, 5_400_000, 3_600_000, 61_000]) expect(parseDuration(formatDuration(ms))).toBe(ms);
  });
});

describe('parseSize', () => {
  it('reads binary units (KiB, MiB, and restic\'s bare K, M) as powers of 1024, SI units (KB, MB) as powers of 1000, plain integers as bytes', () => {
    expect(parseSize('16MiB')).toBe(16 * 1024 * 1024);
    expect(parseSize('16M')).toBe(16 * 1024 * 1024);
    expect(parseSize('16MB')).toBe(16_000_000);
    expect(parseSize('1 GB')).toBe(1e9);
    expect(parseSize('64KiB')).toBe(65536);
    expect(parseSize('4096')).toBe(4096);
    for (const bad of ['', 'MiB', '16 megabytes', '-1', '1.5B']) expect(parseSize(bad), bad).toBeUndefined();
  });
});
