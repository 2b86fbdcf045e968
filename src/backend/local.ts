import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { FileExistsError, FileNotFoundError, noSpace } from '../errors/errors.ts';
import { syncDirAsync } from '../util/durable.ts';
import { type Backend, type ByteRange, checkName, checkRange, type FileInfo, type FileKind } from './backend.ts';

/** Each kind's directory; packs spread over 256 subdirectories by their names' first two characters. */
const DIRS: Readonly<Record<FileKind, string>> = { config: '.', key: 'keys', pack: 'packs', snapshot: 'snapshots', index: 'index' };

// never follow a link someone put where a file should be
const READ_FLAGS = fs.constants.O_RDONLY | (fs.constants.O_NOFOLLOW ?? 0);

/**
 * A repository's files in a local directory, in the layout Lifeboat has always
 * used (config.json, keys/, packs/xx/, snapshots/). A file is written to a
 * temporary name, fsynced, then linked to its name: link() fails when the name
 * exists, which makes the write atomic and exactly once, also between
 * processes; a crash leaves at most a temporary file, which list skips.
 */
export class LocalBackend implements Backend {
  readonly location: string;

  constructor(dir: string) {
    this.location = path.resolve(dir);
  }

  #dir(kind: FileKind, name?: string): string {
    const dir = path.join(this.location, DIRS[kind]);
    return kind === 'pack' && name !== undefined ? path.join(dir, name.slice(0, 2)) : dir;
  }

  #path(kind: FileKind, name: string): string {
    checkName(kind, name);
    return path.join(this.#dir(kind, name), name);
  }

  async *list(kind: FileKind): AsyncIterable<FileInfo> {
    const root = this.#dir(kind);
    const dirs = kind === 'pack' ? (await readdir(root)).filter((e) => e.isDirectory()).map((e) => path.join(root, e.name)) : [root];
    for (const dir of dirs) {
      for (const e of await readdir(dir)) {
        if (!e.isFile() || e.name.includes('.tmp')) continue;
        if (kind === 'config' && !e.name.endsWith('.json')) continue;
        const st = await fsp.lstat(path.join(dir, e.name)).catch(() => undefined);
        if (st?.isFile()) yield { name: e.name, size: st.size };
      }
    }
  }

  async stat(kind: FileKind, name: string): Promise<FileInfo | undefined> {
    const st = await fsp.lstat(this.#path(kind, name)).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    return st?.isFile() ? { name, size: st.size } : undefined;
  }

  async read(kind: FileKind, name: string, range?: ByteRange): Promise<Buffer> {
    const file = this.#path(kind, name);
    if (range) checkRange(range);
    const fh = await fsp.open(file, READ_FLAGS).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ELOOP') throw new FileNotFoundError(`no ${kind} file ${name} in ${this.location}`, { cause: err });
      throw err;
    });
    try {
      const size = (await fh.stat()).size;
      const start = Math.min(range?.offset ?? 0, size);
      const want = range ? Math.min(range.length, size - start) : size - start;
      const out = Buffer.allocUnsafe(want);
      let got = 0;
      while (got < want) {
        const { bytesRead } = await fh.read(out, got, want - got, start + got);
        if (bytesRead === 0) break; // it shrank while read: what there was
        got += bytesRead;
      }
      return got === want ? out : out.subarray(0, got);
    } finally {
      await fh.close();
    }
  }

  async writeOnce(kind: FileKind, name: string, data: Uint8Array): Promise<void> {
    const file = this.#path(kind, name);
    const dir = path.dirname(file);
    if (fs.existsSync(file)) throw new FileExistsError(`${kind} file ${name} exists in ${this.location}`);
    const tmp = `${file}.tmp-${crypto.randomBytes(6).toString('hex')}`;
    try {
      await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
      const fh = await fsp.open(tmp, 'wx', 0o600);
      try {
        await fh.writeFile(data);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fsp.link(tmp, file).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'EEXIST') throw new FileExistsError(`${kind} file ${name} exists in ${this.location}`);
        throw err;
      });
      await syncDirAsync(dir);
    } catch (err) {
      throw noSpace(err, `${kind} file ${name}`);
    } finally {
      await fsp.rm(tmp, { force: true });
    }
  }

  async delete(kind: FileKind, name: string): Promise<void> {
    await fsp.rm(this.#path(kind, name), { force: true });
  }
}

async function readdir(dir: string): Promise<fs.Dirent[]> {
  return fsp.readdir(dir, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [];
    throw err;
  });
}
