/**
 * Two processes opening a database the same moment (the agent starting while
 * a CLI command opens its catalog) both migrate it: neither may take the
 * other's finished step for damage.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '../..');
const NODE = path.join(ROOT, 'node_modules', 'node', 'bin', 'node');
const OPEN = `
  import { AgentCatalog } from ${JSON.stringify(path.join(ROOT, 'src/catalog/agent-catalog.ts'))};
  const [dir, go] = process.argv.slice(1);
  while (!(await import('node:fs')).existsSync(go)) await new Promise((r) => setTimeout(r, 1));
  AgentCatalog.open(dir).close();
`;

function run(dir: string, go: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(NODE, ['--input-type=module', '-e', OPEN, dir, go], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

describe('migrations from several processes at once', () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'lifeboat-migrate-'));
  afterEach(() => fs.rmSync(base, { recursive: true, force: true }));

  it('leave one database at the latest version, and no process fails', async () => {
    for (let round = 0; round < 6; round++) {
      const dir = path.join(base, `state-${round}`);
      const go = path.join(base, `go-${round}`);
      const runs = Array.from({ length: 4 }, () => run(dir, go));
      await new Promise((r) => setTimeout(r, 300)); // every process started and waiting
      fs.writeFileSync(go, '');
      for (const r of await Promise.all(runs)) expect(r.stderr, `round ${round}`).toBe('');
    }
  });
});
