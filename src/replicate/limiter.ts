import { setTimeout as sleep } from 'node:timers/promises';

/**
 * A token bucket for the replication bandwidth limit: `bytesPerSecond`
 * refilled continuously, at most one second's worth saved up, so a pause is
 * not followed by a burst that floods the link.
 */
export class RateLimiter {
  readonly #rate: number;
  #tokens: number;
  #last = performance.now();

  constructor(bytesPerSecond: number) {
    this.#rate = bytesPerSecond;
    this.#tokens = bytesPerSecond;
  }

  /** Waits until `n` bytes may be sent (a frame larger than a second's worth waits its share). */
  async take(n: number, signal?: AbortSignal): Promise<void> {
    this.#refill();
    this.#tokens -= n;
    if (this.#tokens >= 0) return;
    await sleep((-this.#tokens / this.#rate) * 1000, undefined, { signal });
  }

  #refill(): void {
    const now = performance.now();
    this.#tokens = Math.min(this.#rate, this.#tokens + ((now - this.#last) / 1000) * this.#rate);
    this.#last = now;
  }
}
