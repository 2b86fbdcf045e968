import fs from 'node:fs';
import type { WorkerContext } from './worker-context.ts';
import type { CheckReply } from './jobs.ts';
import { unseal } from './crypto.ts';
import { toHex } from './ids.ts';
import { packPath, readPackTrailer } from './pack.ts';

/** Runs on a worker: reads a whole pack and authenticates and re-hashes every blob in it. */
export function checkPack(ctx: WorkerContext, pack: string): CheckReply {
  const file = packPath(ctx.repoDir, pack);
  const entries = readPackTrailer(file, pack);
  const bad: string[] = [];
  const fd = fs.openSync(file, 'r');
  try {
    for (const e of entries) {
      const stored = Buffer.allocUnsafe(e.length);
      fs.readSync(fd, stored, 0, e.length, e.offset);
      try {
        unseal(ctx.keys, e.id, e.type, stored, true, e.rawLength);
      } catch {
        bad.push(toHex(e.id));
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return { bad, blobs: entries.length };
}
