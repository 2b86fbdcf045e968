import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { FakeEngine } from '../../src/docker/fake-engine.ts';
import { describeEngineConformance } from './conformance.ts';
import { BUSYBOX_TAG } from './harness.ts';

describeEngineConformance('FakeEngine', async () => {
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'lbt-fake-'));
  const engine = new FakeEngine(root);
  engine.addImage({ repoTags: [BUSYBOX_TAG], config: { cmd: ['/bin/sh'] } });
  return {
    engine,
    image: BUSYBOX_TAG,
    makeImage: async (tag) => engine.addImage({ repoTags: [tag], layers: [{ 'hello.txt': `made for ${tag}\n` }] }).id,
    removeImage: async (ref) => engine.removeImage(ref),
    cleanup: () => fsp.rm(root, { recursive: true, force: true }),
  };
});
