/**
 * Images of a host's own for recovery tests and the recovery benchmark: the
 * host's static busybox as a root filesystem, imported under a tag, so the
 * image exists on one engine only and recovery has to load it.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { DockerodeEngine } from '../../src/docker/dockerode-engine.ts';
import { importImage, TEST_LABEL_KEY, TEST_LABELS, TEST_RUN_ID, testSpec } from '../docker/harness.ts';

const APPLETS = ['sh', 'sleep', 'echo', 'date', 'test', 'cat', 'wc', 'true'];

/** Imports a busybox root filesystem as `tag` on the engine at `socket`, with Dockerfile-style changes; returns the image id. */
export async function importBusyboxImage(socket: string, tag: string, changes: readonly string[]): Promise<string> {
  const busybox = ['/bin/busybox', '/usr/bin/busybox'].find((p) => fs.existsSync(p));
  if (!busybox) throw new Error('a static busybox is needed at /bin/busybox (Debian package busybox-static)');
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'lifeboat-rootfs-'));
  try {
    for (const d of ['bin', 'tmp', 'data']) await fsp.mkdir(path.join(root, d));
    await fsp.copyFile(busybox, path.join(root, 'bin', 'busybox'));
    await fsp.chmod(path.join(root, 'bin', 'busybox'), 0o755);
    for (const applet of APPLETS) await fsp.symlink('busybox', path.join(root, 'bin', applet));
    return await importImage(socket, root, tag, changes);
  } finally {
    await fsp.rm(root, { recursive: true, force: true });
  }
}

/**
 * A lost host's application, as the two-host tests set it up: `app` imported
 * on the engine at `socket`, a volume whose ledger holds "entry 1", and a
 * container that keeps running on it, paused for its backups.
 */
export async function startWriterApp(engine: DockerodeEngine, socket: string, o: { readonly app: string; readonly volume: string; readonly writer: string }): Promise<{ appId: string; mount: string }> {
  const appId = await importBusyboxImage(socket, o.app, [`LABEL ${TEST_LABEL_KEY}=${TEST_RUN_ID}`, 'CMD ["/bin/sh"]']);
  const mount = (await engine.createVolume(o.volume, { labels: { ...TEST_LABELS } })).mountpoint;
  await fsp.writeFile(path.join(mount, 'ledger'), 'entry 1\n');
  const id = await engine.createContainer(
    testSpec({
      name: o.writer,
      image: o.app,
      cmd: ['sh', '-c', 'trap "exit 0" TERM; while true; do sleep 1 & wait $!; done'],
      labels: { 'lifeboat.pause-during-backup': 'true' },
      mounts: [{ type: 'volume', name: o.volume, source: '', destination: '/data', readOnly: false }],
    }),
  );
  await engine.start(id);
  return { appId, mount };
}
