import fs from 'node:fs';
import fsp from 'node:fs/promises';

/**
 * Makes the names just created or renamed in `dir` durable: fsync of the
 * directory (not possible on Windows, where a directory cannot be opened;
 * NTFS journals its metadata).
 */
export function syncDir(dir: string): void {
  if (process.platform === 'win32') return;
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export async function syncDirAsync(dir: string): Promise<void> {
  if (process.platform === 'win32') return;
  const fh = await fsp.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
