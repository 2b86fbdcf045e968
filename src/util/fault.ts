import fs from 'node:fs';
import { getEnvironmentData, isMainThread, setEnvironmentData } from 'node:worker_threads';

/**
 * Crash points for the fault tests: when LIFEBOAT_FAULT names a point, the
 * process kills itself there with SIGKILL, as a power cut or OOM kill would,
 * without a chance to clean up. "name:N" fires on the Nth pass, counted over
 * all the process's threads (a kill on a worker thread ends the process too).
 *
 * LIFEBOAT_FAULT_TRACE=file appends every pass's point name to the file, one
 * a line, and "kill name N" just before a kill, so a recording run can count
 * the passes and a test can tell its kill from any other SIGKILL.
 * LIFEBOAT_FAULT_HOLD=file turns the kill into a pause: the Nth pass creates
 * the file and waits until the test removes it.
 *
 * Unset, a pass is one comparison.
 */
const spec = process.env.LIFEBOAT_FAULT;
const traceFile = process.env.LIFEBOAT_FAULT_TRACE;
const holdFile = process.env.LIFEBOAT_FAULT_HOLD;
const active = spec !== undefined || traceFile !== undefined;
const target = spec?.split(':')[0];
const nth = Number(spec?.split(':')[1] ?? 1);

/** One counter for the whole process: the main thread makes it, workers receive it with their environment data. */
const COUNTER_KEY = 'lifeboat.fault.passes';
const passes = active ? sharedCounter() : new Int32Array(1);
let traceFd: number | undefined;

function sharedCounter(): Int32Array {
  if (!isMainThread) {
    const shared = getEnvironmentData(COUNTER_KEY);
    if (shared instanceof SharedArrayBuffer) return new Int32Array(shared);
  }
  const counter = new Int32Array(new SharedArrayBuffer(4));
  setEnvironmentData(COUNTER_KEY, counter.buffer as SharedArrayBuffer);
  return counter;
}

function note(line: string): void {
  if (traceFile === undefined) return;
  // O_APPEND: lines from several threads never overwrite each other.
  traceFd ??= fs.openSync(traceFile, 'a');
  fs.writeSync(traceFd, `${line}\n`);
}

export function faultPoint(name: string): void {
  if (!active) return;
  note(name);
  if (name !== target) return;
  const pass = Atomics.add(passes, 0, 1) + 1;
  if (pass !== nth) return;
  if (holdFile !== undefined) return hold(holdFile);
  note(`kill ${name} ${pass}`);
  process.kill(process.pid, 'SIGKILL');
}

/** Blocks this thread (synchronously: the point may sit in synchronous code) while the hold file exists. */
function hold(file: string): void {
  fs.writeFileSync(file, `${process.pid}\n`);
  const nap = new Int32Array(new SharedArrayBuffer(4));
  while (fs.existsSync(file)) Atomics.wait(nap, 0, 0, 50);
}
