import v8 from 'node:v8';
import vm from 'node:vm';
import { parentPort, workerData } from 'node:worker_threads';
import { takeChurn } from './churn.ts';
import type { Reply, Request, TaskModule, WorkerData } from './protocol.ts';

const data = workerData as WorkerData;
const modules = (await Promise.all(data.modules.map((m) => import(m)))) as TaskModule[];
const tasks = new Map<string, (payload: unknown) => unknown>();
for (const m of modules) {
  m.open?.(data.init);
  for (const [op, fn] of Object.entries(m.tasks)) {
    if (tasks.has(op)) throw new Error(`two task modules name the task ${op}`);
    tasks.set(op, fn);
  }
}

/**
 * Every block leaves a few 64 KiB buffers (compressed, encrypted) and a zstd
 * context that V8 frees only when its external memory heuristics say so,
 * which let a worker grow by about 100 MB. A minor collection after each job
 * frees the young buffers for well under a millisecond; a major one every
 * MAJOR_EVERY bytes the tasks moved frees what survived, for a few milliseconds.
 */
const MAJOR_EVERY = 256 * 1024 * 1024;
v8.setFlagsFromString('--expose-gc');
const collect = vm.runInNewContext('gc') as (opts: { type: 'minor' | 'major'; execution: 'sync' }) => void;
let churn = 0;

function run({ op, payload }: Request): unknown {
  if (op === 'close') {
    for (const m of modules) m.close?.();
    return null;
  }
  const task = tasks.get(op);
  if (!task) throw new Error(`no task ${op} in this pool`);
  return task(payload);
}

parentPort!.on('message', (request: Request) => {
  let reply: Reply;
  try {
    reply = { ok: true, value: run(request) };
  } catch (err) {
    const e = err as Error & { code?: string };
    reply = { ok: false, error: { code: typeof e.code === 'string' ? e.code : 'LB_ERR_INTERNAL', message: e.message } };
  }
  parentPort!.postMessage(reply);
  churn += takeChurn();
  const major = churn >= MAJOR_EVERY;
  if (major) churn = 0;
  collect({ type: major ? 'major' : 'minor', execution: 'sync' });
});
