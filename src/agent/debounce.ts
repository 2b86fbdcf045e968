/**
 * Trailing debounce per key, with a ceiling: fire(key) runs once `delayMs`
 * has passed without another touch(key), and at the latest `maxWaitMs` after
 * the first touch of a burst, so a volume that is never quiet (a database
 * writing every second) is still backed up regularly instead of never.
 */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  now(): number;
}

const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
  now: () => Date.now(),
};

interface Pending {
  handle: unknown;
  /** When it fires if nothing touches it again (ms since the epoch). */
  due: number;
  /** When the burst began (first touch since the last fire). */
  readonly since: number;
  readonly maxWaitMs: number;
}

export class Debouncer<K> {
  readonly #fire: (key: K) => void;
  readonly #timers: Timers;
  readonly #pending = new Map<K, Pending>();

  constructor(fire: (key: K) => void, timers: Timers = realTimers) {
    this.#fire = fire;
    this.#timers = timers;
  }

  /** (Re)arms key: it fires delayMs from now, but no later than maxWaitMs (default 10 x delayMs) after this burst began. */
  touch(key: K, delayMs: number, maxWaitMs = delayMs * 10): void {
    const now = this.#timers.now();
    const existing = this.#pending.get(key);
    if (existing) this.#timers.clearTimeout(existing.handle);
    const since = existing?.since ?? now;
    const ceiling = existing?.maxWaitMs ?? Math.max(delayMs, maxWaitMs);
    const wait = Math.max(0, Math.min(delayMs, since + ceiling - now));
    const pending: Pending = { handle: undefined, due: now + wait, since, maxWaitMs: ceiling };
    pending.handle = this.#timers.setTimeout(() => {
      if (this.#pending.get(key) !== pending) return;
      this.#pending.delete(key);
      this.#fire(key);
    }, wait);
    this.#pending.set(key, pending);
  }

  isPending(key: K): boolean {
    return this.#pending.has(key);
  }

  /** When key will fire if nothing touches it again (ms since the epoch), or undefined. */
  dueAt(key: K): number | undefined {
    return this.#pending.get(key)?.due;
  }

  cancel(key: K): void {
    const p = this.#pending.get(key);
    if (!p) return;
    this.#timers.clearTimeout(p.handle);
    this.#pending.delete(key);
  }

  /** Cancels every pending key. */
  clear(): void {
    for (const key of [...this.#pending.keys()]) this.cancel(key);
  }
}
