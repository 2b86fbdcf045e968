import { parentPort, workerData } from 'node:worker_threads';
import { storeItem } from '../backup/store-task.ts';
import { checkPack } from '../repo/check-task.ts';
import { restoreItem } from '../restore/extract-task.ts';
import { WorkerContext } from './context.ts';
import type { Job, Reply, WorkerInit } from './protocol.ts';

const ctx = new WorkerContext(workerData as WorkerInit);

function run(job: Job): unknown {
  switch (job.op) {
    case 'store': {
      ctx.acknowledge(job.acks);
      const results = job.items.map((item) => storeItem(ctx, job.splitter, item));
      return { results, packs: ctx.takeFinished() };
    }
    case 'flush':
      return { packs: ctx.endSession() };
    case 'reset':
      ctx.reset();
      return null;
    case 'restore':
      return { results: job.items.map((item) => restoreItem(ctx, item)) };
    case 'check':
      return checkPack(ctx, job.pack);
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
});
