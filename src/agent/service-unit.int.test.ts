import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliEntry, installRoot, pinnedNode, renderSystemdUnit, systemdTemplate, UNIT_FILE } from './service.ts';

const root = installRoot();
const unitTemplate = fs.readFileSync(systemdTemplate(root), 'utf8');

/** The unit against systemd's own checker (the systemd package; .ci/run installs it). */
describe('the systemd unit, verified by systemd', () => {
  it('passes the real systemd-analyze verify, with no unknown key and no MemoryDenyWriteExecute', async () => {
    if (process.platform !== 'linux') return;
    const analyze = spawnSync('systemd-analyze', ['--version']);
    expect(analyze.error, 'systemd-analyze is missing: install the systemd package (.ci/run does)').toBeUndefined();
    // verify checks that ExecStart's binary exists: render this checkout's real paths (dist/ is built by the test setup).
    expect(fs.existsSync(pinnedNode(root, 'linux'))).toBe(true);
    expect(fs.existsSync(cliEntry(root, 'linux'))).toBe(true);
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lb-unit-'));
    try {
      const unit = path.join(dir, UNIT_FILE);
      await fsp.writeFile(unit, renderSystemdUnit(unitTemplate, { installDir: root, config: '/etc/lifeboat/lifeboat.toml' }));
      const r = spawnSync('systemd-analyze', ['verify', '--man=no', unit], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      const about = r.stderr.split('\n').filter((l) => l.includes(UNIT_FILE) || /unknown|MemoryDenyWriteExecute/i.test(l));
      expect(about, r.stderr).toEqual([]);

      // The check is not vacuous: verify does name an unknown key in a unit.
      const bad = path.join(dir, 'bogus.service');
      await fsp.writeFile(bad, (await fsp.readFile(unit, 'utf8')).replace('[Service]\n', '[Service]\nBogusKey=1\n'));
      expect(spawnSync('systemd-analyze', ['verify', '--man=no', bad], { encoding: 'utf8' }).stderr).toMatch(/Unknown key 'BogusKey'/);
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});
