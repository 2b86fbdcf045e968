import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Debouncer } from './debounce.ts';

describe('Debouncer', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('fires once, delay after the last touch', () => {
    const fired: string[] = [];
    const d = new Debouncer<string>((k) => fired.push(k));
    d.touch('a', 1000);
    vi.advanceTimersByTime(600);
    d.touch('a', 1000);
    vi.advanceTimersByTime(600);
    d.touch('a', 1000);
    vi.advanceTimersByTime(999);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(fired).toEqual(['a']);
    vi.advanceTimersByTime(10_000);
    expect(fired).toEqual(['a']);
  });

  it('keeps keys apart', () => {
    const fired: string[] = [];
    const d = new Debouncer<string>((k) => fired.push(k));
    d.touch('a', 1000);
    d.touch('b', 3000);
    vi.advanceTimersByTime(1000);
    expect(fired).toEqual(['a']);
    expect(d.isPending('b')).toBe(true);
    vi.advanceTimersByTime(2000);
    expect(fired).toEqual(['a', 'b']);
  });

  it('a key touched without pause still fires by the ceiling (10 x delay by default)', () => {
    const fired: number[] = [];
    const d = new Debouncer<string>(() => fired.push(Date.now()));
    const start = Date.now();
    for (let t = 0; t < 30_000; t += 500) {
      d.touch('busy', 1000);
      vi.advanceTimersByTime(500);
    }
    // each burst is cut at 10 s, and the next touch starts a new one
    expect(fired.map((t) => t - start)).toEqual([10_000, 20_000, 30_000]);
  });

  it('dueAt says when, cancel and clear drop pending keys', () => {
    const fired: string[] = [];
    const d = new Debouncer<string>((k) => fired.push(k));
    const now = Date.now();
    d.touch('a', 1000);
    d.touch('b', 1000);
    expect(d.dueAt('a')).toBe(now + 1000);
    d.cancel('a');
    expect(d.dueAt('a')).toBeUndefined();
    d.clear();
    vi.advanceTimersByTime(5000);
    expect(fired).toEqual([]);
  });
});
