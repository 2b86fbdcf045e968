import fsp from 'node:fs/promises';
import path from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { FileKind } from '../backend/backend.ts';
import { MemoryBackend } from '../backend/memory.ts';
import { backupDir, openTestRepo, type TestRepo } from '../repo/testing/fixture.ts';
import { TargetPusher } from './target-pusher.ts';

const log = pino({ level: 'silent' });

/** A bucket that counts pushes (each begins by looking for the config) and can refuse writes. */
class Bucket extends MemoryBackend {
  pushes = 0;
  refuse = 0;
  override stat(kind: FileKind, name: string) {
    if (kind === 'config') this.pushes++;
    return super.stat(kind, name);
  }
  override writeOnce(kind: FileKind, name: string, data: Uint8Array) {
    if (this.refuse > 0) {
      this.refuse--;
      return Promise.reject(new Error('503 Slow Down'));
    }
    return super.writeOnce(kind, name, data);
  }
}

describe('TargetPusher', () => {
  let t: TestRepo;
  beforeEach(async () => {
    t = await openTestRepo();
    const src = await t.temp.make('lifeboat-src-');
    await fsp.writeFile(path.join(src, 'f'), 'data');
    await backupDir(t, src);
  });
  afterEach(() => t.close());

  it('serves requests made during a push with one more push after it, not one each', async () => {
    const bucket = new Bucket();
    const pusher = new TargetPusher(t.repo, { name: 'offsite', backend: bucket, concurrency: 2, retryMs: 60_000, log });
    await Promise.all([pusher.request(), pusher.request(), pusher.request()]);
    expect(bucket.pushes).toBe(2);
    expect(pusher.status()).toMatchObject({ state: 'idle', failures: 0, last_error: null, last_push: { snapshots: 0 } });
    await pusher.stop();
  });

  it('retries a failed push, waiting longer each time, until one succeeds', async () => {
    const bucket = new Bucket();
    bucket.refuse = 2;
    const pusher = new TargetPusher(t.repo, { name: 'offsite', backend: bucket, concurrency: 1, retryMs: 20, log });
    await pusher.request();
    expect(pusher.status()).toMatchObject({ state: 'retrying', failures: 1 });
    expect(pusher.status().last_error).toContain('503 Slow Down');
    await vi.waitFor(() => expect(pusher.status()).toMatchObject({ state: 'idle', failures: 0, last_error: null }), { timeout: 5000 });
    expect(bucket.pushes).toBe(3);
    expect(pusher.status().last_success).not.toBeNull();
    await pusher.stop();
  });

  it('starts nothing once stopped, and waits for the push under way', async () => {
    const bucket = new Bucket();
    const pusher = new TargetPusher(t.repo, { name: 'offsite', backend: bucket, concurrency: 1, retryMs: 20, log });
    const running = pusher.request();
    await pusher.stop();
    await running;
    await pusher.request();
    expect(bucket.pushes).toBe(1);
  });
});
