import { InterruptedError } from '../errors/errors.ts';

/** What a command's work sees of SIGINT and SIGTERM while it runs under interruptible(). */
export interface Interrupt {
  /** Aborted, with the InterruptedError as its reason, at the first signal. */
  readonly signal: AbortSignal;
  /** The first signal's error ("backup of volume x interrupted by SIGINT"), once there was one. */
  readonly reason: InterruptedError | undefined;
  /** Runs fn at the first signal (at once when it came already): abandoning the worker pool, say. */
  onInterrupt(fn: (reason: InterruptedError) => void): void;
  /**
   * What exiting at once would leave undone, for a second signal's message:
   * "exiting without putting back container db (paused); ..." or undefined
   * when nothing is left. The last one registered that says something wins.
   */
  onAbandon(fn: () => string | undefined): void;
}

export interface InterruptibleOptions {
  /** The command's work, for messages: "backup of volume pgdata". */
  readonly what: string;
  /** What the message says after "interrupted by SIGINT: " when the work stopped cleanly. */
  readonly stopped: string;
  /** A person is watching (stderr is a terminal): say at the first signal that it is stopping. */
  readonly interactive: boolean;
}

/**
 * Runs a one-shot command's work with SIGINT and SIGTERM handled as the
 * agent (`lifeboat run`) handles them, minus its grace period:
 *
 * - the first signal abandons the work: the signal aborts, and the worker
 *   pool (made through makePool with this Interrupt) fails its jobs, as the
 *   agent's abandon() does, so the work fails as on any error and its own
 *   cleanup runs: containers paused or stopped are returned to their state,
 *   the repository lock is released, a drill removes what it made. Then the
 *   command fails with InterruptedError (exit 1, LB_ERR_INTERRUPTED), saying
 *   `stopped`, or what went wrong while putting things back;
 * - a second signal exits at once (exit 1), naming what is left undone
 *   (onAbandon) so that nothing is abandoned silently.
 *
 * Work that completes despite the first signal keeps its result.
 */
export async function interruptible<T>(opts: InterruptibleOptions, work: (interrupt: Interrupt) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  let reason: InterruptedError | undefined;
  const onFirst: ((reason: InterruptedError) => void)[] = [];
  const abandon: (() => string | undefined)[] = [];

  const onSignal = (signal: NodeJS.Signals) => {
    if (reason === undefined) {
      reason = new InterruptedError(`${opts.what} interrupted by ${signal}`);
      if (opts.interactive) process.stderr.write(`\nlifeboat: stopping; putting back what it changed (signal again to exit at once, leaving it)\n`);
      controller.abort(reason);
      for (const fn of onFirst) fn(reason);
      return;
    }
    let left: string | undefined;
    for (const fn of abandon) {
      try {
        left = fn() ?? left;
      } catch {
        // what cannot be read now (a catalog already closed) leaves nothing
      }
    }
    process.stderr.write(`lifeboat: ${reason.message}, and again: ${left ?? 'exiting now, with nothing left to put back'} [${reason.code}]\n`);
    process.exit(1);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const interrupt: Interrupt = {
    signal: controller.signal,
    get reason() {
      return reason;
    },
    onInterrupt(fn) {
      if (reason) fn(reason);
      else onFirst.push(fn);
    },
    onAbandon(fn) {
      abandon.push(fn);
    },
  };
  try {
    return await work(interrupt);
  } catch (err) {
    if (reason === undefined) throw err;
    if (err instanceof InterruptedError) throw err === reason ? new InterruptedError(`${reason.message}: ${opts.stopped}`) : err;
    // stopped, but putting things back went wrong: that is what the message must say
    throw new InterruptedError(`${reason.message}; ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  } finally {
    // a signal from here on (the result being printed) ends the process as usual
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    // everything is put back; should a library still hold a handle (a keep-alive socket), do not hang on it
    if (reason) setTimeout(() => process.exit(), 2000).unref();
  }
}
