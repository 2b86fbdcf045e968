import { workerContext } from '../repo/worker-tasks.ts';
import { churned } from '../workers/churn.ts';
import { closePackFds, restoreItem } from './extract-task.ts';
import type { RestoreItem, RestoreReply } from './jobs.ts';

export function close(): void {
  closePackFds();
}

export const tasks = {
  restore(items: readonly RestoreItem[]): RestoreReply {
    const ctx = workerContext();
    const results = items.map((item) => restoreItem(ctx, item));
    for (const r of results) churned(r.bytesWritten);
    return { results };
  },
};
