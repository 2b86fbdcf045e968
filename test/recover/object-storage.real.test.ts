/**
 * Disaster recovery from object storage alone (issue 17): host A (a second
 * dockerd) runs a container writing to a volume; A's agent backs it up and
 * pushes to a bucket on a real Ceph RADOS Gateway; then A is destroyed
 * (agent killed, engine stopped, repository and state deleted), and on
 * another engine, with nothing of A but its password and the bucket's
 * address, `target fetch` and `recover --from a --repo` bring the container
 * back running with its data, bit for bit, and its image.
 */
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DockerodeEngine } from '../../src/docker/dockerode-engine.ts';
import { until } from '../agent/daemon.ts';
import { cleanup as cleanupDirs, lifeboat, tempDir } from '../cli/run.ts';
import { cleanup, DEFAULT_SOCKET, ensureEngine, removeImage, type SecondEngine, startSecondEngine, TEST_RUN_ID, uniqueName } from '../docker/harness.ts';
import { cephUnavailableReason, createBucket, type Rgw, s3Client, startRgw } from '../lib/ceph-rgw.ts';
import { Fleet, makeAgent, status } from '../replicate/agents.ts';
import { startWriterApp } from './rootfs.ts';

const unavailable = cephUnavailableReason();
if (unavailable) console.warn(`skipping recovery from object storage: ${unavailable}`);

const APP = `lifeboat-test/bucket-app-${TEST_RUN_ID}:1`;

describe.skipIf(unavailable !== undefined)('a lost host recovered from a bucket alone', () => {
  let rgw: Rgw;
  let second: SecondEngine | undefined;
  let engineB: DockerodeEngine;
  let appId = '';
  const volume = uniqueName('bucket-data');
  const writer = uniqueName('bucket-writer');
  const fleet = new Fleet();

  beforeAll(async () => {
    engineB = await ensureEngine(DEFAULT_SOCKET);
    rgw = await startRgw(path.join(await tempDir('lifeboat-rgw-'), 'ceph'));
    second = await startSecondEngine(await fsp.mkdtemp(path.join(os.tmpdir(), 'lbt-bucket-2nd-')));
  }, 300_000);
  afterAll(async () => {
    await fleet.stopAll();
    await second?.stop().catch(() => undefined);
    await engineB.removeContainer(writer, { force: true }).catch(() => undefined);
    await engineB.removeVolume(volume).catch(() => undefined);
    if (appId) await removeImage(DEFAULT_SOCKET, appId, true).catch(() => undefined);
    await cleanup(DEFAULT_SOCKET);
    await rgw?.stop();
    await cleanupDirs();
  });

  it('fetches the repository from the bucket and recovers the container with its data and image', async () => {
    const engineA = await ensureEngine(second!.socket);
    let mountA: string;
    ({ appId, mount: mountA } = await startWriterApp(engineA, second!.socket, { app: APP, volume, writer }));
    expect(await engineB.inspectImage(appId)).toBeUndefined();
    const data = crypto.randomBytes(3 << 20);
    await fsp.writeFile(path.join(mountA, 'data.bin'), data);

    const bucket = `lb-${crypto.randomBytes(6).toString('hex')}`;
    await createBucket(rgw, bucket);
    const credentialsDir = await tempDir('lifeboat-creds-');
    const credentials = path.join(credentialsDir, 'aws-credentials');
    await fsp.writeFile(credentials, `[default]\naws_access_key_id = ${rgw.accessKeyId}\naws_secret_access_key = ${rgw.secretAccessKey}\n`, { mode: 0o600 });
    const target = ['[[target]]', 'name = "offsite"', `endpoint = ${JSON.stringify(rgw.endpoint)}`, `bucket = ${JSON.stringify(bucket)}`, 'prefix = "hosts/a"', 'path_style = true', `credentials_file = ${JSON.stringify(credentials)}`].join('\n');
    const a = await makeAgent('a', { docker: `unix://${second!.socket}`, extra: ['[[volume]]', `name = ${JSON.stringify(volume)}`, target].join('\n') });
    const da = fleet.start(a);
    await until('the agent tracking the volume', async () => (await status(da)).volumes.some((v) => v.name === volume), { daemon: da, timeoutMs: 60_000 });
    const backup = await lifeboat(['--config', a.config, 'backup', volume, '--json'], { password: a.password, timeoutMs: 120_000 });
    expect(backup.code, backup.stderr).toBe(0);
    const snapshot = backup.json<{ snapshot: string }>().snapshot;
    const s3 = s3Client(rgw);
    try {
      await until('the snapshot in the bucket', async () => {
        const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'hosts/a/snapshot/' }));
        return (listed.Contents ?? []).some((o) => o.Key!.endsWith(snapshot));
      }, { daemon: da, timeoutMs: 60_000 });
    } finally {
      s3.destroy();
    }

    // A is lost: its agent, its engine, its repository and state
    da.child.kill('SIGKILL');
    await da.exited;
    await second!.stop();
    second = undefined;
    await fsp.rm(a.dir, { recursive: true, force: true });

    // another host, with the bucket's address and A's password only
    const b = await makeAgent('b', { extra: target });
    const copy = path.join(b.dir, 'from-bucket');
    const fetched = await lifeboat(['--config', b.config, 'target', 'fetch', 'offsite', '--into', copy, '--json'], { password: null, timeoutMs: 120_000 });
    expect(fetched.code, fetched.stderr).toBe(0);
    const r = await lifeboat(['--config', b.config, '--json', 'recover', '--from', 'a', '--repo', copy], { password: a.password, timeoutMs: 180_000 });
    expect(r.code, r.stderr).toBe(0);
    const report = r.json<{ complete: boolean; containers: { name: string }[]; images: { outcome: string }[] }>();
    expect(report.complete).toBe(true);
    expect(report.images.map((i) => i.outcome)).toEqual(['loaded']);
    expect(report.containers).toEqual([expect.objectContaining({ name: writer })]);
    expect((await engineB.inspectContainer(writer))?.state).toBe('running');
    const mount = (await engineB.inspectVolume(volume))!.mountpoint;
    expect((await fsp.readFile(path.join(mount, 'data.bin'))).equals(data)).toBe(true);
    expect(await fsp.readFile(path.join(mount, 'ledger'), 'utf8')).toBe('entry 1\n');
  });
});
