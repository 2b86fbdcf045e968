/** Several passwords per repository (restic's key commands), through the real CLI. */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { cleanup, fails, ok, okJson, PASSWORD, smallSource } from './run.ts';

afterAll(cleanup);

interface Key {
  name: string;
  current: boolean;
  damaged: boolean;
}

describe('key', () => {
  test('add, list, remove and passwd: each password opens the same snapshots; the one in use cannot be removed', async () => {
    const { dir, repo, src } = await smallSource();
    await ok(['init', '--repo', repo]);
    await ok(['backup', '--repo', repo, '--path', src]);
    const [first] = await okJson<Key[]>(['key', 'list', '--repo', repo]);
    expect(first).toMatchObject({ current: true, damaged: false });

    const second = path.join(dir, 'second.pw');
    await fsp.writeFile(second, 'second password\n');
    const { added } = await okJson<{ added: string }>(['key', 'add', '--repo', repo, '--new-password-file', second]);
    const listed = await okJson<Key[]>(['key', 'list', '--repo', repo, '--password-file', second]);
    expect(listed.map((k) => [k.name, k.current]).sort()).toEqual([[added, true], [first!.name, false]].sort());
    // both passwords open the same repository
    const bySecond = await okJson<{ id: string }[]>(['snapshots', '--repo', repo, '--password-file', second]);
    expect(bySecond.map((s) => s.id)).toEqual((await okJson<{ id: string }[]>(['snapshots', '--repo', repo])).map((s) => s.id));

    expect(await fails(['key', 'remove', first!.name, '--repo', repo], 1, 'LB_ERR_KEY_REMOVAL')).toContain('the one the password in use opened');
    await fails(['key', 'remove', 'no-such-key.json', '--repo', repo], 1, 'LB_ERR_KEY_REMOVAL');
    await fails(['key', 'remove', '../config.json', '--repo', repo], 1, 'LB_ERR_INVALID_FILE_NAME');
    await ok(['key', 'remove', first!.name, '--repo', repo, '--password-file', second]);
    await fails(['snapshots', '--repo', repo], 1, 'LB_ERR_WRONG_PASSWORD', { password: PASSWORD });

    // passwd: the new one in, the one in use out
    const changed = await okJson<{ added: string; removed: string }>(['key', 'passwd', '--repo', repo, '--password-file', second], { env: { LIFEBOAT_NEW_PASSWORD: 'third password' } });
    expect(changed.removed).toBe(added);
    await fails(['snapshots', '--repo', repo, '--password-file', second], 1, 'LB_ERR_WRONG_PASSWORD');
    expect(await okJson<unknown[]>(['snapshots', '--repo', repo], { password: 'third password' })).toHaveLength(1);
    await fails(['key', 'add', '--repo', repo], 2, 'LB_ERR_USAGE', { password: 'third password' });
  });
});
