import fs from 'node:fs';
import path from 'node:path';
import { MiB } from '../util/units.ts';

/**
 * A little room the repository keeps for itself (the file `reserve`): on a
 * full disk, opening the index needs space for SQLite's shared-memory file
 * and WAL, and prune, forget and verify must still run to give space back.
 * A store opened on a nearly full file system releases it (a backup does
 * not: it would fill what was freed); a store closed with room to spare
 * makes it again.
 */
export const RESERVE_BYTES = 1 * MiB;
/** Free space below which opening releases the reserve. */
const LOW = 2 * RESERVE_BYTES;
/** Free space above which closing makes it again (never the reason the disk fills). */
const ROOMY = 8 * RESERVE_BYTES;

const reservePath = (dir: string) => path.join(dir, 'reserve');

function available(dir: string): number {
  const s = fs.statfsSync(dir);
  return s.bavail * s.bsize;
}

export function releaseReserveIfLow(dir: string): void {
  try {
    if (available(dir) < LOW) fs.rmSync(reservePath(dir), { force: true });
  } catch {
    // statfs unsupported: no reserve to manage
  }
}

/** Best effort: a reserve that cannot be made now is made by a later close. */
export function keepReserve(dir: string): void {
  const file = reservePath(dir);
  try {
    if (fs.existsSync(file) || available(dir) < ROOMY) return;
    const fd = fs.openSync(`${file}.tmp`, 'w', 0o600);
    try {
      fs.writeSync(fd, Buffer.alloc(RESERVE_BYTES));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(`${file}.tmp`, file);
  } catch {
    fs.rmSync(`${file}.tmp`, { force: true });
  }
}
