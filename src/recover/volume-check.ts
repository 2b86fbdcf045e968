import type { Stats } from 'node:fs';
import fsp, { type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { CorruptDataError, CorruptIndexError } from '../errors/errors.ts';
import { blockGroups } from '../repo/content.ts';
import { blobId } from '../repo/crypto.ts';
import { type BlobId, BlobType, toHex } from '../repo/ids.ts';
import type { Repository } from '../repo/repository.ts';
import type { Snapshot } from '../repo/snapshot.ts';
import { decodeTree, type TreeNode } from '../repo/tree.ts';
import { MiB } from '../util/units.ts';

export interface DataCheck {
  readonly matched: boolean;
  /** Regular files whose content was compared, and their bytes. */
  readonly files: number;
  readonly bytes: number;
  /** The first differences found, "path: what". */
  readonly differences: readonly string[];
  /** All differences, of which `differences` lists at most MAX_LISTED. */
  readonly differenceCount: number;
}

const MAX_LISTED = 20;
const READ = 4 * MiB;

/**
 * Checks a restored directory against the snapshot it was restored from,
 * block for block: every file is read and each block's keyed hash compared
 * with the id the snapshot holds, so any byte that differs shows, whatever
 * splitter cut the blocks. Also compared: the set of entries, their types,
 * sizes, permission bits, owners (when root) and symlink targets. Sockets are
 * left out, as restore leaves them out. Memory holds one tree per level and
 * one read buffer.
 */
export async function checkAgainstSnapshot(repo: Repository, snapshot: Snapshot, dir: string): Promise<DataCheck> {
  const top = decodeTree(await repo.loadBlob(snapshot.tree, BlobType.tree), 'snapshot root');
  const root = top.nodes[0];
  if (top.nodes.length !== 1 || root?.type !== 'dir') throw new CorruptDataError('snapshot root tree is malformed');
  const c = new Checker(repo);
  await c.dir(dir, '', root);
  return { matched: c.count === 0, files: c.files, bytes: c.bytes, differences: c.listed, differenceCount: c.count };
}

class Checker {
  files = 0;
  bytes = 0;
  count = 0;
  readonly listed: string[] = [];
  readonly #repo: Repository;
  readonly #root = typeof process.getuid === 'function' && process.getuid() === 0;
  readonly #reader = new SequentialReader();

  constructor(repo: Repository) {
    this.#repo = repo;
  }

  #differ(rel: string, what: string): void {
    this.count++;
    if (this.listed.length < MAX_LISTED) this.listed.push(`${rel || '/'}: ${what}`);
  }

  async dir(abs: string, rel: string, node: TreeNode): Promise<void> {
    const tree = decodeTree(await this.#repo.loadBlob(Buffer.from(node.subtree!, 'hex') as BlobId, BlobType.tree), rel || '/');
    const wanted = tree.nodes.filter((n) => n.type !== 'socket');
    const names = new Set(wanted.map((n) => n.name));
    for (const name of (await fsp.readdir(abs)).sort()) if (!names.has(name)) this.#differ(`${rel}/${name}`, 'not in the snapshot');
    for (const child of wanted) await this.entry(path.join(abs, child.name), `${rel}/${child.name}`, child);
  }

  async entry(abs: string, rel: string, node: TreeNode): Promise<void> {
    const st = await fsp.lstat(abs).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (!st) return this.#differ(rel, 'missing');
    const type = typeOf(st);
    if (type !== node.type) return this.#differ(rel, `is a ${type ?? 'special file'}, the snapshot has a ${node.type}`);
    if (node.type !== 'symlink' && (st.mode & 0o7777) !== node.mode) this.#differ(rel, `mode ${(st.mode & 0o7777).toString(8)}, the snapshot has ${node.mode.toString(8)}`);
    if (this.#root && (st.uid !== node.uid || st.gid !== node.gid)) this.#differ(rel, `owner ${st.uid}:${st.gid}, the snapshot has ${node.uid}:${node.gid}`);
    if (node.type === 'dir') return this.dir(abs, rel, node);
    if (node.type === 'symlink') {
      const target = await fsp.readlink(abs);
      if (target !== node.target) this.#differ(rel, `links to ${target}, the snapshot to ${node.target}`);
      return;
    }
    if (node.type !== 'file') return;
    this.files++;
    if (st.size !== node.size) return this.#differ(rel, `${st.size} bytes, the snapshot has ${node.size}`);
    await this.#content(abs, rel, node);
  }

  async #content(abs: string, rel: string, node: TreeNode): Promise<void> {
    const fh = await fsp.open(abs, 'r');
    try {
      const reader = this.#reader.start(fh);
      let offset = 0;
      for await (const group of blockGroups((id, type) => this.#repo.loadBlob(id, type), node, rel)) {
        for (const hex of group) {
          const loc = this.#repo.locate(Buffer.from(hex, 'hex') as BlobId);
          if (!loc) throw new CorruptIndexError(`block ${hex.slice(0, 16)} of ${rel} is missing from the repository`);
          const block = await reader.take(loc.rawLength);
          if (!block) return this.#differ(rel, `ends before offset ${offset + loc.rawLength}`);
          if (toHex(blobId(this.#repo.keys, block)) !== hex) return this.#differ(rel, `differs in the block at offset ${offset}`);
          offset += loc.rawLength;
          this.bytes += loc.rawLength;
        }
      }
    } finally {
      await fh.close();
    }
  }
}

function typeOf(st: Stats): TreeNode['type'] | undefined {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isCharacterDevice()) return 'chardev';
  if (st.isBlockDevice()) return 'blockdev';
  if (st.isSocket()) return 'socket';
  return undefined;
}

/** Hands out a file's bytes in the lengths asked for, reading ahead in large chunks; one buffer serves every file. */
class SequentialReader {
  #buf: Buffer = Buffer.allocUnsafe(READ);
  #fh: FileHandle | undefined;
  #start = 0;
  #end = 0;
  #position = 0;
  #eof = false;

  start(fh: FileHandle): this {
    this.#fh = fh;
    this.#start = this.#end = this.#position = 0;
    this.#eof = false;
    return this;
  }

  /** The next n bytes, or undefined when the file ends first. Valid until the next call. */
  async take(n: number): Promise<Buffer | undefined> {
    let buf = this.#buf;
    if (this.#end - this.#start < n) {
      if (buf.length < n) {
        const bigger = Buffer.allocUnsafe(Math.max(n, READ));
        buf.copy(bigger, 0, this.#start, this.#end);
        this.#buf = buf = bigger;
      } else {
        buf.copyWithin(0, this.#start, this.#end);
      }
      this.#end -= this.#start;
      this.#start = 0;
      while (this.#end < n && !this.#eof) {
        const { bytesRead } = await this.#fh!.read(buf, this.#end, buf.length - this.#end, this.#position);
        if (bytesRead === 0) this.#eof = true;
        this.#end += bytesRead;
        this.#position += bytesRead;
      }
      if (this.#end < n) return undefined;
    }
    const out = buf.subarray(this.#start, this.#start + n);
    this.#start += n;
    return out;
  }
}
