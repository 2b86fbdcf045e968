/**
 * `lifeboat inventory` without a reachable engine: the catalog as last known,
 * or a clear failure when there is none. (With a real engine: test/docker/inventory.real.test.ts.)
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { AgentCatalog } from '../../src/catalog/agent-catalog.ts';
import { FakeEngine } from '../../src/docker/fake-engine.ts';
import { reconcile } from '../../src/inventory/sync.ts';
import { spec, volumeMount } from '../../src/docker/testing/inventory-fixture.ts';
import { cleanup, expectFailure, fails, lifeboat, tempDir } from './run.ts';

afterAll(cleanup);

let dir: string;
/** A config whose engine does not answer, with a catalog the fake engine filled. */
let known: string;
/** The same unreachable engine, with a state directory that holds nothing. */
let empty: string;

beforeAll(async () => {
  dir = await tempDir('lifeboat-inv-cli-');
  const nowhere = `unix://${path.join(dir, 'no-engine.sock')}`;
  const write = async (name: string, stateDir: string) => {
    const file = path.join(dir, name);
    await fsp.writeFile(file, `[agent]\nstate_dir = ${JSON.stringify(stateDir)}\n[docker]\nhost = ${JSON.stringify(nowhere)}\n`);
    return file;
  };
  known = await write('known.toml', path.join(dir, 'state'));
  empty = await write('empty.toml', path.join(dir, 'empty-state'));

  const engine = new FakeEngine(path.join(dir, 'fake'));
  engine.addImage({ repoTags: ['app:1'] });
  engine.addImage({ repoTags: ['app:2'] });
  const catalog = AgentCatalog.open(path.join(dir, 'state'));
  try {
    await reconcile(engine, catalog);
    const web = await engine.createContainer(spec('web', 'app:1', { mounts: [volumeMount('pgdata', '/data')] }));
    await reconcile(engine, catalog);
    await engine.removeContainer(web);
    await engine.createContainer(spec('web', 'app:2', { mounts: [volumeMount('pgdata', '/data')] }));
    await reconcile(engine, catalog);
  } finally {
    catalog.close();
  }
});

describe('lifeboat inventory', () => {
  test('prints the catalog as last known, with a warning, when the engine does not answer', async () => {
    const r = await lifeboat(['--config', known, 'inventory']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^lifeboat: warning: the Docker engine at unix:\/\/.*no-engine\.sock does not answer; showing the catalog as last known \(synced .+\) \[LB_ERR_ENGINE_UNAVAILABLE\]\n$/);
    expect(r.stdout).toMatch(/^Containers\nID +Name +Image +State +Volumes/);
    expect(r.stdout).toMatch(/ web +app:2 +created +pgdata:\/data /);
    expect(r.stdout).toMatch(/\nVolumes\nName +Driver +Used by +Mountpoint/);
    expect(r.stdout).toMatch(/\npgdata +local +web +\//);
    expect(r.stdout).toMatch(/\nImages\n/);
    expect(r.stdout).toMatch(/\nNetworks\n/);
  });

  test('--json gives each kind, and --history the changes', async () => {
    const all = await lifeboat(['--config', known, '--json', 'inventory']);
    expect(Object.keys(all.json())).toEqual(['containers', 'volumes', 'images', 'networks']);
    const containers = (await lifeboat(['--config', known, '--json', 'inventory', 'containers'])).json<{ name: string; image: string }[]>();
    expect(containers.map((c) => `${c.name} ${c.image}`)).toEqual(['web app:2']);
    const history = (await lifeboat(['--config', known, '--json', 'inventory', 'containers', '--history'])).json<{ action: string; detail: Record<string, unknown> }[]>();
    expect(history.map((h) => h.action)).toEqual(['created', 'removed', 'recreated']);
    expect(history[2]!.detail).toMatchObject({ previous_image: 'app:1', image: 'app:2', image_changed: true });
    const volumes = (await lifeboat(['--config', known, '--json', 'inventory', 'volumes', '--history'])).json<{ action: string }[]>();
    expect(volumes.map((h) => h.action)).toEqual(['created', 'mounted-by', 'unmounted-by', 'mounted-by']);
    const newest = (await lifeboat(['--config', known, '--json', 'inventory', '--history', '--limit', '2'])).json<{ kind: string }[]>();
    expect(newest).toHaveLength(2);

    const text = await lifeboat(['--config', known, 'inventory', 'containers', '--history']);
    expect(text.stdout).toMatch(/^Time \(UTC\) +Kind +Name +Action +Detail\n/);
    expect(text.stdout).toMatch(/container +web +recreated +image app:1 \([0-9a-f]{12}\) -> app:2 \([0-9a-f]{12}\); replaces [0-9a-f]{12}\n/);
  });

  test('fails with exit 1 when the engine does not answer and there is no catalog yet', async () => {
    const message = await fails(['--config', empty, 'inventory'], 1, 'LB_ERR_ENGINE_UNAVAILABLE');
    expect(message).toMatch(/does not answer and there is no catalog yet in /);
    expect(fs.existsSync(path.join(dir, 'empty-state', 'catalog.db'))).toBe(false);
  });

  test('refuses bad usage with exit 2', async () => {
    expect(await fails(['inventory'], 2, 'LB_ERR_USAGE')).toMatch(/needs --config/);
    expect(await fails(['--config', known, 'inventory', 'pods'], 2, 'LB_ERR_USAGE')).toMatch(/unknown kind "pods"/);
    await fails(['--config', known, 'inventory', '--history', '--limit', '0'], 2, 'LB_ERR_USAGE');
    const bad = path.join(dir, 'bad-host.toml');
    await fsp.writeFile(bad, `[agent]\nstate_dir = ${JSON.stringify(path.join(dir, 'state'))}\n[docker]\nhost = "ftp://x"\n`);
    expectFailure(await lifeboat(['--config', bad, 'inventory']), 2, 'LB_ERR_USAGE');
  });
});
