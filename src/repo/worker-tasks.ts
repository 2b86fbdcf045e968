import { checkPack } from './check-task.ts';
import type { RepoWorkerInit } from './jobs.ts';
import { WorkerContext } from './worker-context.ts';

/** In a worker: the repository as this worker sees it, opened with the pool. */
let context: WorkerContext | undefined;

export function workerContext(): WorkerContext {
  if (!context) throw new Error('the repository task module was not opened in this worker');
  return context;
}

export function open(init: unknown): void {
  context = new WorkerContext(init as RepoWorkerInit);
}

export function close(): void {
  context?.close();
}

export const tasks = {
  flush: () => workerContext().endSession(),
  reset: () => workerContext().reset(),
  ack: (pack: string) => workerContext().acknowledge([pack]),
  check: (pack: string) => checkPack(workerContext(), pack),
};
