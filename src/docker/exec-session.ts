import { EngineRequestError, SessionTimeoutError } from '../errors/errors.ts';

/**
 * A command running in a container with its stdin open: a database client
 * whose session must outlive one call (PostgreSQL's non-exclusive backup is
 * ended by the session that began it, and aborted if that session goes).
 */
export interface ExecSession {
  /** Writes to the command's stdin. */
  write(text: string): Promise<void>;
  /**
   * The output lines (stdout and stderr, in arrival order) up to and
   * including the first that `match` accepts, taken from what arrived since
   * the last call. Rejects when the command ends first or `timeoutMs` passes,
   * with the output's last lines in the message.
   */
  readUntil(match: (line: string) => boolean, timeoutMs: number): Promise<string[]>;
  /** Closes stdin, waits (at most timeoutMs) for the command to end; resolves even if it does not. */
  close(timeoutMs: number): Promise<void>;
}

/** How many lines a session keeps for messages, and at most unread. */
const KEEP = 10_000;

/**
 * The line side of a session, shared by the engines: bytes in, lines out to
 * whoever waits for them; the end of the command fails a waiter that did not
 * get its line.
 */
export class SessionLines {
  readonly #lines: string[] = [];
  #partial = '';
  #ended: string | undefined;
  readonly #recent: string[] = [];
  #waiter: (() => void) | undefined;

  push(chunk: Buffer | string): void {
    const text = this.#partial + chunk.toString();
    const parts = text.split('\n');
    this.#partial = parts.pop()!;
    for (const line of parts) this.#add(line.replace(/\r$/, ''));
    this.#wake();
  }

  end(why: string): void {
    if (this.#partial !== '') this.#add(this.#partial);
    this.#partial = '';
    this.#ended ??= why;
    this.#wake();
  }

  get ended(): boolean {
    return this.#ended !== undefined;
  }

  async readUntil(match: (line: string) => boolean, timeoutMs: number, what: string): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    const taken: string[] = [];
    for (;;) {
      while (this.#lines.length > 0) {
        const line = this.#lines.shift()!;
        taken.push(line);
        if (match(line)) return taken;
      }
      if (this.#ended !== undefined) throw new EngineRequestError(`${what} ended (${this.#ended}) before it answered: ${this.#tail()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new SessionTimeoutError(`${what} did not answer within ${Math.round(timeoutMs / 1000)} s: ${this.#tail()}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#waiter = undefined;
    }
  }

  #add(line: string): void {
    if (this.#lines.length < KEEP) this.#lines.push(line);
    this.#recent.push(line);
    if (this.#recent.length > 5) this.#recent.shift();
  }

  #tail(): string {
    return this.#recent.join(' | ').slice(-500) || 'no output';
  }

  #wake(): void {
    this.#waiter?.();
  }
}
