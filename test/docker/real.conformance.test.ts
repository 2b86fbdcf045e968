import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { FakeEngine } from '../../src/docker/fake-engine.ts';
import { describeEngineConformance } from './conformance.ts';
import { busyboxImage, cleanup, DEFAULT_SOCKET, ensureEngine, makeTinyImage, removeImage, uniqueName } from './harness.ts';

describeEngineConformance('dockerd through DockerodeEngine', async () => {
  const engine = await ensureEngine(DEFAULT_SOCKET);
  const image = await busyboxImage(DEFAULT_SOCKET);
  await cleanup(DEFAULT_SOCKET); // leftovers of runs that died
  return {
    engine,
    image,
    makeImage: (tag) => makeTinyImage(DEFAULT_SOCKET, tag),
    removeImage: (ref) => removeImage(DEFAULT_SOCKET, ref),
    cleanup: () => cleanup(DEFAULT_SOCKET),
  };
});

describe('image archives between dockerd and the fake', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await fsp.rm(d, { recursive: true, force: true });
    await cleanup(DEFAULT_SOCKET);
  });

  const collect = async (s: Readable) => {
    const chunks: Buffer[] = [];
    for await (const c of s) chunks.push(Buffer.from(c as Uint8Array));
    return Buffer.concat(chunks);
  };

  it('the fake loads what dockerd saves, and dockerd loads what the fake saves', async () => {
    const engine = await ensureEngine(DEFAULT_SOCKET);
    const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'lbt-fake-x-'));
    dirs.push(root);
    const fake = new FakeEngine(root);

    const tag = `lifeboat-test/cross-${uniqueName('a').slice(4)}:1`;
    await makeTinyImage(DEFAULT_SOCKET, tag);
    const real = (await engine.inspectImage(tag))!;
    await fake.loadImage(Readable.from([await collect(await engine.saveImage(tag))]));
    expect(await fake.inspectImage(tag)).toMatchObject({ id: real.id, layers: real.layers, repoTags: [tag], os: 'linux' });

    const fakeTag = `lifeboat-test/from-fake-${uniqueName('b').slice(4)}:1`;
    const seeded = fake.addImage({ repoTags: [fakeTag], layers: [{ 'etc/hello': 'hi\n' }, { 'etc/more': 'more\n' }] });
    await engine.loadImage(Readable.from([await collect(await fake.saveImage(fakeTag))]));
    try {
      expect(await engine.inspectImage(fakeTag)).toMatchObject({ id: seeded.id, layers: seeded.layers, repoTags: [fakeTag] });
    } finally {
      await removeImage(DEFAULT_SOCKET, fakeTag);
    }
    await removeImage(DEFAULT_SOCKET, tag);
  });
});
