import type { SplitterSpec } from '../repo/splitter-spec.ts';
import { workerContext } from '../repo/worker-tasks.ts';
import { churned } from '../workers/churn.ts';
import { captureRange } from './capture-task.ts';
import type { CaptureItem, CaptureResult, StoreItem, StoreReply } from './jobs.ts';
import { storeItem } from './store-task.ts';

export const tasks = {
  store({ splitter, items }: { splitter: SplitterSpec; items: readonly StoreItem[] }): StoreReply {
    const ctx = workerContext();
    const results = ctx.inOneRead(() => items.map((item) => storeItem(ctx, splitter, item)));
    for (const r of results) churned(r.bytesRead);
    return { results, packs: ctx.takeFinished() };
  },
  capture(item: CaptureItem): CaptureResult {
    churned(item.end - item.start);
    return captureRange(item);
  },
};
