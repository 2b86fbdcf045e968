/**
 * The environment an operator (or a systemd unit, or a script) sets instead of
 * flags: LIFEBOAT_CONFIG, LIFEBOAT_REPOSITORY, LIFEBOAT_PASSWORD_FILE and
 * LIFEBOAT_PASSWORD_COMMAND, restic's names where restic has one.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { cleanup, fails, ok, okJson, smallSource } from './run.ts';

afterAll(cleanup);

describe('the environment instead of flags', () => {
  test('LIFEBOAT_REPOSITORY with LIFEBOAT_PASSWORD_COMMAND: init, backup, snapshots, restore, with no flag naming either', async () => {
    const { dir, repo, src } = await smallSource();
    const env = { LIFEBOAT_REPOSITORY: repo, LIFEBOAT_PASSWORD_COMMAND: "printf 'from a command\\n'" };
    await ok(['init'], { password: null, env });
    await ok(['backup', '--path', src], { password: null, env });
    const list = await okJson<{ id: string }[]>(['snapshots'], { password: null, env });
    expect(list).toHaveLength(1);
    await ok(['restore', 'latest', '--target', path.join(dir, 'out')], { password: null, env });
    // the repository really is under that password: another one is refused
    await fails(['snapshots'], 1, 'LB_ERR_WRONG_PASSWORD', { password: null, env: { ...env, LIFEBOAT_PASSWORD_COMMAND: 'echo other' } });
    await fails(['snapshots'], 2, 'LB_ERR_USAGE', { password: null, env: { ...env, LIFEBOAT_PASSWORD_COMMAND: 'exit 7' } });
  });

  test('LIFEBOAT_CONFIG names the config; LIFEBOAT_PASSWORD_FILE the password, over LIFEBOAT_PASSWORD', async () => {
    const { dir, src } = await smallSource();
    const pw = path.join(dir, 'pw');
    await fsp.writeFile(pw, 'kept in a file\n', { mode: 0o600 });
    const config = path.join(dir, 'lifeboat.toml');
    await fsp.writeFile(config, `[agent]\nstate_dir = ${JSON.stringify(path.join(dir, 'state'))}\n[repository]\npath = ${JSON.stringify(path.join(dir, 'repo'))}\n`);
    const env = { LIFEBOAT_CONFIG: config, LIFEBOAT_PASSWORD_FILE: pw };
    await ok(['init'], { password: 'not this one', env });
    await ok(['backup', '--path', src], { password: 'not this one', env });
    expect(await okJson<unknown[]>(['snapshots'], { password: null, env })).toHaveLength(1);
    await fails(['snapshots'], 1, 'LB_ERR_WRONG_PASSWORD', { password: 'not this one', env: { LIFEBOAT_CONFIG: config } });
  });

  test('with nothing set, a repository command says every way to name one', async () => {
    const message = await fails(['snapshots'], 2, 'LB_ERR_USAGE');
    expect(message).toContain('pass --repo DIR, set LIFEBOAT_REPOSITORY, or pass --config FILE');
  });
});
