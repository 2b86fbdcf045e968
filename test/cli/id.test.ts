import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { cleanup, fails, okJson, ok, tempDir } from './run.ts';

afterAll(cleanup);

test('lifeboat id prints the same id every time, made on first use; it needs a config', async () => {
  const dir = await tempDir('lifeboat-id-cli-');
  const config = path.join(dir, 'lifeboat.toml');
  await fsp.writeFile(config, `[agent]\nstate_dir = ${JSON.stringify(path.join(dir, 'state'))}\n`);
  const first = (await ok(['--config', config, 'id'])).stdout.trim();
  expect(first).toMatch(/^[0-9a-f]{64}$/);
  const again = await okJson<{ id: string; dir: string }>(['--config', config, '--json', 'id']);
  expect(again.id).toBe(first);
  expect(again.dir).toBe(path.join(dir, 'state', 'identity'));
  await fails(['id'], 2, 'LB_ERR_USAGE');
});
