import { formatBytes } from '../util/units.ts';

export interface Amount {
  readonly count: number;
  readonly bytes: number;
}

const clock = (s: number) => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, '0')}`;

/**
 * One self-overwriting status line on stderr: done (of the total when it is
 * known), rate and, with a total, the time left. A no-op when nobody is watching.
 */
export class ProgressLine {
  readonly #enabled: boolean;
  readonly #started = performance.now();
  #shown = false;
  #phase = '';
  #phaseStarted = 0;
  /** When the line was last drawn: at most ten times a second, however often it is told. */
  #drawnAt = -Infinity;

  constructor(enabled: boolean) {
    this.#enabled = enabled;
  }

  /** `count` of `unit` (files, packs) and their bytes so far, of `total` when it is known. */
  update(count: number, bytes: number, verb: string, total?: Amount, unit = 'files'): void {
    if (!this.#enabled || !this.#due()) return;
    const secs = (performance.now() - this.#started) / 1000;
    const perSec = secs > 0 ? bytes / secs : 0;
    const of = (n: string, t: string | undefined) => (t === undefined ? n : `${n}/${t}`);
    let line = `${verb} ${of(String(count), total && String(total.count))} ${unit}, ${of(formatBytes(bytes), total && formatBytes(total.bytes))} (${formatBytes(perSec)}/s)`;
    if (total && total.bytes > 0 && perSec > 0) line += `, ${clock(Math.max(0, total.bytes - bytes) / perSec)} left`;
    process.stderr.write(`\r\x1b[K${line}`);
    this.#shown = true;
  }

  /** A phase of a long operation counted in items only: "scanned 120/2,000 packs, 0:12 left". */
  step(verb: string, done: number, total: number, unit: string): void {
    if (!this.#enabled) return;
    const phaseChanged = this.#phase !== verb;
    if (!this.#due() && !phaseChanged) return;
    if (phaseChanged) {
      this.#phase = verb;
      this.#phaseStarted = performance.now();
    }
    const secs = (performance.now() - this.#phaseStarted) / 1000;
    const left = done > 0 ? `, ${clock(((total - done) * secs) / done)} left` : '';
    process.stderr.write(`\r\x1b[K${verb} ${done}/${total} ${unit}${left}`);
    this.#shown = true;
  }

  #due(): boolean {
    const now = performance.now();
    if (now - this.#drawnAt < 100) return false;
    this.#drawnAt = now;
    return true;
  }

  done(): void {
    if (this.#shown) process.stderr.write('\r\x1b[K');
    this.#shown = false;
  }
}
