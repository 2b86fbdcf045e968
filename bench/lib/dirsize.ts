// Directory size in bytes (apparent size, `du -sb`).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export function dirBytes(dir: string): number {
  if (!existsSync(dir)) return 0;
  const r = spawnSync('du', ['-sb', dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`du -sb ${dir} failed: ${r.stderr}`);
  const n = Number(r.stdout.split(/\s/)[0]);
  if (!Number.isFinite(n)) throw new Error(`du -sb ${dir}: unexpected output ${JSON.stringify(r.stdout)}`);
  return n;
}
