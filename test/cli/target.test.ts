/**
 * Object-storage targets end to end (issue 17): a repository pushed to a
 * bucket on a real Ceph RADOS Gateway, the source's repository destroyed, and
 * its snapshots restored, bit-exact, from a copy fetched from the bucket alone.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DeleteObjectCommand, GetObjectCommand, ListObjectVersionsCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { cephUnavailableReason, createBucket, type Rgw, s3Client, startRgw } from '../lib/ceph-rgw.ts';
import { cleanup, fails, ok, okJson, tempDir } from './run.ts';

const unavailable = cephUnavailableReason();
if (unavailable) console.warn(`skipping the object-storage target's tests: ${unavailable}`);

interface Pushed {
  packs: number;
  snapshots: number;
  keys: number;
  bytes: number;
}

describe.skipIf(unavailable !== undefined)('lifeboat target push / fetch, on a real Ceph RADOS Gateway', () => {
  let rgw: Rgw;
  beforeAll(async () => {
    rgw = await startRgw(path.join(await tempDir('lifeboat-rgw-'), 'ceph'));
  });
  afterAll(async () => {
    await rgw?.stop();
    await cleanup();
  });

  /** A config naming a fresh bucket as target "offsite", with credentials in an AWS credentials file. */
  const setup = async (secret = rgw.secretAccessKey, lock?: { days: number }) => {
    const dir = await tempDir();
    const bucket = `lb-${crypto.randomBytes(6).toString('hex')}`;
    await createBucket(rgw, bucket, { objectLock: lock !== undefined });
    const credentials = path.join(dir, 'aws-credentials');
    await fsp.writeFile(credentials, `# written by the test\n[default]\naws_access_key_id = ${rgw.accessKeyId}\naws_secret_access_key = ${secret}\n`, { mode: 0o600 });
    const config = path.join(dir, 'lifeboat.toml');
    await fsp.writeFile(
      config,
      [
        '[agent]',
        `state_dir = ${JSON.stringify(path.join(dir, 'state'))}`,
        '[repository]',
        `path = ${JSON.stringify(path.join(dir, 'repo'))}`,
        '[[target]]',
        'name = "offsite"',
        `endpoint = ${JSON.stringify(rgw.endpoint)}`,
        `bucket = ${JSON.stringify(bucket)}`,
        'prefix = "hosts/db-1"',
        'path_style = true',
        `credentials_file = ${JSON.stringify(credentials)}`,
        ...(lock ? [`object_lock_days = ${lock.days}`] : []),
        '',
      ].join('\n'),
    );
    const src = path.join(dir, 'src');
    await fsp.mkdir(path.join(src, 'sub'), { recursive: true });
    await fsp.writeFile(path.join(src, 'big'), crypto.randomBytes(3 << 20));
    await fsp.writeFile(path.join(src, 'sub', 'small'), 'a small file\n');
    return { dir, config, src, repo: path.join(dir, 'repo'), bucket };
  };

  const sameTree = (a: string, b: string) => {
    for (const rel of fs.readdirSync(a, { recursive: true }) as string[]) {
      const st = fs.lstatSync(path.join(a, rel));
      if (st.isFile()) expect(fs.readFileSync(path.join(b, rel)).equals(fs.readFileSync(path.join(a, rel))), rel).toBe(true);
    }
  };

  test('pushes only what the bucket lacks, and restores every snapshot from the bucket alone once the source is gone', async () => {
    const { dir, config, src, repo } = await setup();
    await ok(['--config', config, 'init']);
    const first = await okJson<{ snapshot: string }>(['--config', config, 'backup', '--path', src, '--json']);
    const kept = path.join(dir, 'first');
    await fsp.cp(src, kept, { recursive: true });
    const p1 = await okJson<Pushed>(['--config', config, 'target', 'push', 'offsite', '--json']);
    expect(p1).toMatchObject({ snapshots: 1, keys: 1 });
    expect(p1.packs).toBeGreaterThan(0);
    expect(await okJson<Pushed>(['--config', config, 'target', 'push', 'offsite', '--json'])).toMatchObject({ packs: 0, snapshots: 0, keys: 0, bytes: 0 });

    await fsp.writeFile(path.join(src, 'sub', 'new'), crypto.randomBytes(100_000));
    await ok(['--config', config, 'backup', '--path', src]);
    const p2 = await okJson<Pushed>(['--config', config, 'target', 'push', 'offsite', '--json']);
    expect(p2.snapshots).toBe(1);
    expect(p2.bytes).toBeLessThan(p1.bytes);

    // the source host is lost: its repository (and its agent's state) with it
    await fsp.rm(repo, { recursive: true });
    await fsp.rm(path.join(dir, 'state'), { recursive: true, force: true });
    const copy = path.join(dir, 'fetched');
    const fetched = await okJson<{ packs: number; index: { snapshots: number } }>(['--config', config, 'target', 'fetch', 'offsite', '--into', copy, '--json'], { password: null });
    expect(fetched.index.snapshots).toBe(2);
    await ok(['restore', 'latest', '--repo', copy, '--target', path.join(dir, 'out-latest')]);
    sameTree(src, path.join(dir, 'out-latest', ''));
    await ok(['restore', first.snapshot, '--repo', copy, '--target', path.join(dir, 'out-first')]);
    sameTree(kept, path.join(dir, 'out-first'));
    expect(fs.existsSync(path.join(dir, 'out-first', 'sub', 'new'))).toBe(false);
    await ok(['check', '--repo', copy, '--read-data']);
  });

  test('says what is wrong: an unknown target, wrong credentials, a bucket of another repository', async () => {
    const { config, src } = await setup();
    await ok(['--config', config, 'init']);
    await ok(['--config', config, 'backup', '--path', src]);
    const unknown = await fails(['--config', config, 'target', 'push', 'elsewhere'], 2, 'LB_ERR_USAGE');
    expect(unknown).toContain('there are: offsite');
    const wrong = await setup('not-the-secret');
    await ok(['--config', wrong.config, 'init']);
    const denied = await fails(['--config', wrong.config, 'target', 'push', 'offsite'], 1, 'LB_ERR_OBJECT_STORE');
    expect(denied).toMatch(/SignatureDoesNotMatch|AccessDenied|InvalidAccessKeyId/);
    // another repository pushed under the same prefix first
    await ok(['--config', config, 'target', 'push', 'offsite']);
    const other = await setup();
    const otherConfig = fs.readFileSync(other.config, 'utf8').replace(/bucket = "[^"]+"/, fs.readFileSync(config, 'utf8').match(/bucket = "[^"]+"/)![0]);
    fs.writeFileSync(other.config, otherConfig);
    await ok(['--config', other.config, 'init']);
    await fails(['--config', other.config, 'target', 'push', 'offsite'], 1, 'LB_ERR_REPLICA_MISMATCH');
  });

  test('with object lock, the source cannot remove or replace what it pushed, and backups and pushes go on', async () => {
    const { config, src, bucket } = await setup(undefined, { days: 1 });
    await ok(['--config', config, 'init']);
    await ok(['--config', config, 'backup', '--path', src]);
    await ok(['--config', config, 'target', 'push', 'offsite']);
    // the source's own credentials, used behind Lifeboat's back as a compromised host would
    const s3 = s3Client(rgw);
    try {
      const versions = (await s3.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: 'hosts/db-1/' }))).Versions ?? [];
      const record = versions.find((v) => v.Key!.includes('/snapshot/'))!;
      const pack = versions.find((v) => v.Key!.includes('/pack/'))!;
      expect(record && pack).toBeTruthy();
      const original = Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: record.Key, VersionId: record.VersionId }))).Body!.transformToByteArray());
      for (const v of [record, pack]) {
        await expect(s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: v.Key, VersionId: v.VersionId }))).rejects.toMatchObject({ $metadata: { httpStatusCode: 403 } });
      }
      // an overwrite only stacks a new version on the locked one, which stays as it was
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: record.Key, Body: 'ransom note' }));
      const kept = Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: record.Key, VersionId: record.VersionId }))).Body!.transformToByteArray());
      expect(kept.equals(original)).toBe(true);
    } finally {
      s3.destroy();
    }
    // Lifeboat's own pushes go on beside the locked objects
    await fsp.writeFile(path.join(src, 'sub', 'later'), 'written after');
    await ok(['--config', config, 'backup', '--path', src]);
    const next = await okJson<Pushed>(['--config', config, 'target', 'push', 'offsite', '--json']);
    expect(next.snapshots).toBe(1);
  });
});
