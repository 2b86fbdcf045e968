/** recover and drill refuse what they cannot work with before touching any engine. */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanup, fails, ok, tempDir } from '../cli/run.ts';

let dir: string;
let config: string;
const PEER_ID = 'ab'.repeat(32);

beforeAll(async () => {
  dir = await tempDir('lifeboat-recover-cli-');
  config = path.join(dir, 'lifeboat.toml');
  await fsp.writeFile(
    config,
    [
      '[agent]',
      `state_dir = ${JSON.stringify(path.join(dir, 'state'))}`,
      // This host's own repository password: never the one recover tries.
      '[repository]',
      `password_file = ${JSON.stringify(path.join(dir, 'right.pw'))}`,
      '[docker]',
      'host = "unix:///nonexistent/docker.sock"',
      '[[peer]]',
      'name = "site-a"',
      'address = "10.0.0.1:9318"',
      `id = "${PEER_ID}"`,
      `password_file = ${JSON.stringify(path.join(dir, 'site-a.pw'))}`,
    ].join('\n'),
  );
});
afterAll(cleanup);

describe('recover and drill on the command line', () => {
  it('need --from and a config', async () => {
    await fails(['recover'], 2, 'LB_ERR_USAGE');
    expect(await fails(['recover', '--from', 'a', '--repo', dir], 2, 'LB_ERR_USAGE')).toBe('recover needs --config FILE (for the Docker engine and the state directory)');
    expect(await fails(['drill', '--from', 'a', '--repo', dir], 2, 'LB_ERR_USAGE')).toBe('drill needs --config FILE (for the Docker engine and the state directory)');
  });

  it('find a peer\'s replica by name, and say when there is none', async () => {
    expect(await fails(['--config', config, 'recover', '--from', 'site-b'], 2, 'LB_ERR_USAGE')).toBe(
      `no [[peer]] named "site-b" in ${config}; pass --repo DIR to use a repository`,
    );
    expect(await fails(['--config', config, 'drill', '--from', 'site-a'], 1, 'LB_ERR_NOT_A_REPOSITORY')).toBe(
      `${path.join(dir, 'state', 'replicas', PEER_ID)} is not a Lifeboat repository: no replica of peer site-a has been received here`,
    );
  });

  it('read the source host\'s password from --password-file, the peer\'s password_file, or LIFEBOAT_PASSWORD, never this host\'s own', async () => {
    const repo = path.join(dir, 'repo');
    await ok(['init', '--repo', repo], { password: 'source password' });
    await fsp.writeFile(path.join(dir, 'site-a.pw'), 'wrong\n');
    await fsp.writeFile(path.join(dir, 'right.pw'), 'source password\n');
    // The peer's file names the wrong password: a wrong password, not a missing one.
    await fails(['--config', config, 'recover', '--from', 'site-a', '--repo', repo, '--dry-run'], 1, 'LB_ERR_WRONG_PASSWORD', { password: 'source password' });
    // --password-file wins; the repository then has nothing of site-a.
    await fails(['--config', config, 'recover', '--from', 'site-a', '--repo', repo, '--password-file', path.join(dir, 'right.pw'), '--dry-run'], 1, 'LB_ERR_NOTHING_TO_RECOVER');
    // Not a peer: LIFEBOAT_PASSWORD, else nothing.
    await fails(['--config', config, 'recover', '--from', 'other', '--repo', repo, '--dry-run'], 1, 'LB_ERR_NOTHING_TO_RECOVER', { password: 'source password' });
    await fails(['--config', config, 'recover', '--from', 'other', '--repo', repo, '--dry-run'], 2, 'LB_ERR_PASSWORD_MISSING', { password: null });
  });

  it('want a real time for --snapshot-time', async () => {
    expect(await fails(['--config', config, 'recover', '--from', 'x', '--repo', dir, '--snapshot-time', 'yesterday'], 2, 'LB_ERR_USAGE')).toBe(
      '--snapshot-time must be a time such as 2026-05-01T12:00:00Z, got "yesterday"',
    );
  });
});
