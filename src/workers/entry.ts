import v8 from 'node:v8';
import vm from 'node:vm';
import { parentPort, workerData } from 'node:worker_threads';
import { captureRange } from '../backup/capture-task.ts';
import { storeItem } from '../backup/store-task.ts';
import { checkPack } from '../repo/check-task.ts';
import { closePackFds, restoreItem } from '../restore/extract-task.ts';
import { WorkerContext } from './context.ts';
import type { Job, Reply, WorkerInit } from './protocol.ts';

const ctx = new WorkerContext(workerData as WorkerInit);

/**
 * Every block leaves a few 64 KiB buffers (compressed, encrypted) and a zstd
 * context that V8 frees only when its external memory heuristics say so,
 * which let a worker grow by about 100 MB. A minor collection after each job
 * frees the young buffers for well under a millisecond; a major one every
 * MAJOR_EVERY bytes frees the contexts that survived, for a few milliseconds.
 */
const MAJOR_EVERY = 64 * 1024 * 1024;
v8.setFlagsFromString('--expose-gc');
const collect = vm.runInNewContext('gc') as (opts: { type: 'minor' | 'major'; execution: 'sync' }) => void;

/** Bytes read or written since the last major collection. */
let churn = 0;

function run(job: Job): unknown {
  switch (job.op) {
    case 'store': {
      ctx.acknowledge(job.acks);
      const results = job.items.map((item) => storeItem(ctx, job.splitter, item));
      for (const r of results) churn += r.bytesRead;
      return { results, packs: ctx.takeFinished() };
    }
    case 'flush':
      return { packs: ctx.endSession() };
    case 'reset':
      ctx.reset();
      return null;
    case 'restore': {
      const results = job.items.map((item) => restoreItem(ctx, item));
      for (const r of results) churn += r.bytesWritten;
      return { results };
    }
    case 'check':
      return checkPack(ctx, job.pack);
    case 'capture': {
      const result = captureRange(job.item);
      churn += job.item.end - job.item.start;
      return result;
    }
    case 'close':
      closePackFds();
      ctx.close();
      return null;
  }
}

parentPort!.on('message', (job: Job) => {
  let reply: Reply;
  try {
    reply = { ok: true, value: run(job) };
  } catch (err) {
    const e = err as Error & { code?: string };
    reply = { ok: false, error: { code: typeof e.code === 'string' ? e.code : 'LB_ERR_INTERNAL', message: e.message } };
  }
  parentPort!.postMessage(reply);
  const major = churn >= MAJOR_EVERY;
  if (major) churn = 0;
  collect({ type: major ? 'major' : 'minor', execution: 'sync' });
});
