import { InterruptedError } from '../errors/errors.ts';

/**
 * Reads a line from the terminal without echoing it (a password). The
 * terminal is put back as it was whatever happens; Ctrl-C ends the command
 * as an interrupt, Ctrl-D as an empty answer.
 */
export function promptHidden(question: string): Promise<string> {
  const input = process.stdin;
  return new Promise((resolve, reject) => {
    let answer = '';
    const done = (finish: () => void) => {
      input.setRawMode(false);
      input.pause();
      input.off('data', onData);
      process.stderr.write('\n');
      finish();
    };
    const onData = (chunk: Buffer) => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') return done(() => resolve(answer));
        if (ch === '\u0003') return done(() => reject(new InterruptedError('interrupted at the password prompt')));
        if (ch === '\u007f' || ch === '\b') answer = answer.slice(0, -1);
        else answer += ch;
      }
    };
    // echo off before the question shows: an answer typed (or pasted) at once is never echoed
    input.setRawMode(true);
    input.resume();
    input.on('data', onData);
    process.stderr.write(question);
  });
}
