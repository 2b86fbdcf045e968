import { formatBytes } from '../util/units.ts';

/** One self-overwriting status line on stderr; a no-op when nobody is watching. */
export class ProgressLine {
  readonly #enabled: boolean;
  readonly #started = performance.now();
  #shown = false;

  constructor(enabled: boolean) {
    this.#enabled = enabled;
  }

  update(files: number, bytes: number, verb: string): void {
    if (!this.#enabled) return;
    const secs = (performance.now() - this.#started) / 1000;
    const rate = secs > 0 ? formatBytes(bytes / secs) : '0 B';
    process.stderr.write(`\r\x1b[K${verb} ${files} files, ${formatBytes(bytes)} (${rate}/s)`);
    this.#shown = true;
  }

  done(): void {
    if (this.#shown) process.stderr.write('\r\x1b[K');
    this.#shown = false;
  }
}
