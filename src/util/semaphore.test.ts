import { describe, expect, it } from 'vitest';
import { Semaphore } from './semaphore.ts';

/** Lets every settled promise's callbacks run. */
const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('Semaphore', () => {
  it('grants up to capacity at once, then makes the rest wait', async () => {
    const s = new Semaphore(3);
    expect(await s.acquire()).toBe(1);
    expect(await s.acquire(2)).toBe(2);
    let got = false;
    void s.acquire().then(() => (got = true));
    await tick();
    expect(got).toBe(false);
    s.release();
    await tick();
    expect(got).toBe(true);
  });

  it('serves waiters in FIFO order, even when a later, smaller request would fit', async () => {
    const s = new Semaphore(4);
    await s.acquire(4);
    const order: string[] = [];
    void s.acquire(3).then(() => order.push('big'));
    void s.acquire(1).then(() => order.push('small'));
    s.release(1); // one free: "small" would fit, but "big" is first in line
    await tick();
    expect(order).toEqual([]);
    s.release(2); // three free: "big" goes
    await tick();
    expect(order).toEqual(['big']);
    s.release(1); // the fourth: "small" goes
    await tick();
    expect(order).toEqual(['big', 'small']);
  });

  it('makes a new request queue behind waiters even when units are free', async () => {
    const s = new Semaphore(2);
    await s.acquire(2);
    const order: number[] = [];
    void s.acquire(2).then(() => order.push(1));
    s.release(1);
    void s.acquire(1).then(() => order.push(2)); // one unit free, but a waiter is ahead
    await tick();
    expect(order).toEqual([]);
    s.release(1);
    await tick();
    expect(order).toEqual([1]);
    s.release(2);
    await tick();
    expect(order).toEqual([1, 2]);
  });

  it('clamps a request above capacity to the capacity, so it runs alone instead of forever waiting', async () => {
    const s = new Semaphore(5);
    expect(await s.acquire(100)).toBe(5);
    let got = 0;
    void s.acquire(7).then((n) => (got = n));
    await tick();
    expect(got).toBe(0);
    s.release(5);
    await tick();
    expect(got).toBe(5);
    let small = false;
    void s.acquire(1).then(() => (small = true));
    await tick();
    expect(small).toBe(false); // the clamped holder has it all
    s.release(got);
    await tick();
    expect(small).toBe(true);
  });

  it('never lets more than capacity be held under random concurrent use', async () => {
    const s = new Semaphore(10);
    let held = 0;
    let peak = 0;
    await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const n = await s.acquire(1 + ((i * 7) % 13));
        held += n;
        peak = Math.max(peak, held);
        expect(held).toBeLessThanOrEqual(10);
        await tick();
        held -= n;
        s.release(n);
      }),
    );
    expect(held).toBe(0);
    expect(peak).toBeGreaterThan(1);
  });
});
