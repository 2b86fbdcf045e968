/** Counting semaphore: bounds files open and bytes in flight, so memory does not grow with the input. */
export class Semaphore {
  readonly #capacity: number;
  #available: number;
  readonly #waiters: { n: number; resolve: () => void }[] = [];

  constructor(capacity: number) {
    this.#capacity = capacity;
    this.#available = capacity;
  }

  /**
   * Takes n units, waiting in FIFO order. A request above capacity is clamped
   * to it (it then runs alone) and returns what was taken, for release().
   */
  async acquire(n = 1): Promise<number> {
    const take = Math.min(n, this.#capacity);
    if (this.#waiters.length === 0 && this.#available >= take) {
      this.#available -= take;
      return take;
    }
    await new Promise<void>((resolve) => this.#waiters.push({ n: take, resolve }));
    return take;
  }

  release(n = 1): void {
    this.#available += n;
    while (this.#waiters.length > 0 && this.#available >= this.#waiters[0]!.n) {
      const head = this.#waiters.shift()!;
      this.#available -= head.n;
      head.resolve();
    }
  }
}
