/**
 * The agent pushes every snapshot to its object-storage targets as soon as it
 * is committed (issue 17): a volume backed up by `lifeboat run` reaches a
 * bucket on a real Ceph RADOS Gateway, status shows the push, and the data
 * comes back from the bucket alone after the source's repository is gone.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatusReport } from '../../src/agent/status.ts';
import type { DockerodeEngine } from '../../src/docker/dockerode-engine.ts';
import { cleanup as cleanupDirs, lifeboat, tempDir } from '../cli/run.ts';
import { cleanup, ensureEngine, TEST_LABELS, uniqueName } from '../docker/harness.ts';
import { cephUnavailableReason, createBucket, type Rgw, s3Client, startRgw } from '../lib/ceph-rgw.ts';
import { type Daemon, freePort, startDaemon, until } from './daemon.ts';

const unavailable = cephUnavailableReason();
if (unavailable) console.warn(`skipping the agent's object-storage target test: ${unavailable}`);

describe.skipIf(unavailable !== undefined)('the agent and an object-storage target', () => {
  let engine: DockerodeEngine;
  let rgw: Rgw;
  let daemon: Daemon | undefined;
  beforeAll(async () => {
    engine = await ensureEngine();
    rgw = await startRgw(path.join(await tempDir('lifeboat-rgw-'), 'ceph'));
  });
  afterAll(async () => {
    daemon?.kill();
    await rgw?.stop();
    await cleanup();
    await cleanupDirs();
  });

  it('pushes each committed snapshot to the bucket, and the volume comes back from the bucket alone', async () => {
    const dir = await tempDir('lifeboat-agent-target-');
    const bucket = `lb-${crypto.randomBytes(6).toString('hex')}`;
    await createBucket(rgw, bucket);
    const v = await engine.createVolume(uniqueName('vol'), { labels: { ...TEST_LABELS } });
    const data = crypto.randomBytes(2 << 20);
    await fsp.writeFile(path.join(v.mountpoint, 'data.bin'), data);
    const repo = path.join(dir, 'repo');
    expect((await lifeboat(['init', '--repo', repo])).code).toBe(0);
    const credentials = path.join(dir, 'aws-credentials');
    await fsp.writeFile(credentials, `[default]\naws_access_key_id = ${rgw.accessKeyId}\naws_secret_access_key = ${rgw.secretAccessKey}\n`, { mode: 0o600 });
    const listen = `127.0.0.1:${await freePort()}`;
    const config = path.join(dir, 'lifeboat.toml');
    const target = ['[[target]]', 'name = "offsite"', `endpoint = ${JSON.stringify(rgw.endpoint)}`, `bucket = ${JSON.stringify(bucket)}`, 'prefix = "hosts/a"', 'path_style = true', `credentials_file = ${JSON.stringify(credentials)}`];
    await fsp.writeFile(
      config,
      ['[agent]', `state_dir = ${JSON.stringify(path.join(dir, 'state'))}`, `listen = ${JSON.stringify(listen)}`, '[repository]', `path = ${JSON.stringify(repo)}`, '[volumes]', 'track = "listed"', '[[volume]]', `name = ${JSON.stringify(v.name)}`, ...target, ''].join('\n'),
    );
    daemon = startDaemon(config, listen);
    const d = daemon;
    // a backup through the running agent; its push follows the commit
    const backup = await lifeboat(['--config', config, 'backup', v.name, '--json']);
    expect(backup.code, backup.stderr).toBe(0);
    const id = (JSON.parse(backup.stdout) as { snapshot: string }).snapshot;
    const s3 = s3Client(rgw);
    try {
      const records = async () => ((await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'hosts/a/snapshot/' }))).Contents ?? []).map((o) => path.basename(o.Key!));
      await until('the snapshot record in the bucket', async () => (await records()).includes(id), { daemon: d, timeoutMs: 30_000 });
    } finally {
      s3.destroy();
    }
    const status = await until('the push in the status', async () => {
      const s = JSON.parse((await d.get('/status')).body) as StatusReport;
      return s.targets[0]?.last_success ? s : undefined;
    }, { daemon: d });
    expect(status.targets[0]).toMatchObject({ name: 'offsite', state: 'idle', last_error: null });
    d.kill();
    await d.exited;

    // the host is lost: its repository and state with it
    await fsp.rm(repo, { recursive: true });
    await fsp.rm(path.join(dir, 'state'), { recursive: true, force: true });
    const copy = path.join(dir, 'fetched');
    expect((await lifeboat(['--config', config, 'target', 'fetch', 'offsite', '--into', copy], { password: null })).code).toBe(0);
    const out = path.join(dir, 'out');
    const restored = await lifeboat(['restore', id, '--repo', copy, '--target', out]);
    expect(restored.code, restored.stderr).toBe(0);
    expect(fs.readFileSync(path.join(out, 'data.bin')).equals(data)).toBe(true);
  });
});
