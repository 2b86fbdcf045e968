import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import xxhash, { type XXHashAPI } from 'xxhash-wasm';
import { CaptureFailedError } from '../errors/errors.ts';
import type { TreeNode } from '../repo/tree.ts';
import type { FileStat } from './node.ts';

/**
 * A file's per-block fingerprints (xxh64, 8 bytes a block) as its last
 * capture read them, and the snapshot content they describe: `key` is
 * contentKey() of the node that capture's read produced. They stand for the
 * parent snapshot's blocks only when the parent's node has that key.
 */
export interface Fingerprints {
  readonly key: Buffer;
  readonly block: number;
  readonly hashes: Buffer;
}

/** Where a volume's fingerprints are kept between backups (the agent catalog), by path relative to the volume. */
export interface FingerprintStore {
  get(path: string): Fingerprints | undefined;
  put(path: string, fingerprints: Fingerprints): void;
}

export interface CaptureOptions {
  /** A scratch directory for the copies, emptied first; reflinks need it on the volume's file system. */
  readonly dir: string;
  readonly fingerprints?: FingerprintStore;
  /** Returns the containers to running: called once every file the backup reads is captured. */
  readonly thaw: () => Promise<void>;
}

/** What a file's capture knows of its parent version: fingerprints that match its node, and its block ids. */
export interface ParentBlocks {
  readonly hashes: Buffer;
  readonly ids: readonly string[];
  readonly size: number;
}

export interface CapturedFile {
  /** The copy, read after the thaw. */
  readonly path: string;
  /** The copy's lstat, which its read checks against. */
  readonly seen: FileStat;
  /** The original's lstat, for the snapshot's node: taken before the copy and unchanged after it. */
  readonly stat: FileStat;
  /** Per block: the parent's block i stands (1) or the copy holds it (0). Absent: the copy is whole. */
  readonly kept?: Uint8Array;
  /** The fingerprints of what was captured, to keep once its node is known. */
  readonly hashes?: Buffer;
}

/** Times a file is captured again when it changed during its capture (a writer the freeze does not stop). */
const ATTEMPTS = 3;
const CHUNK = 4 << 20;
// what copyFile's FICLONE_FORCE throws where the file system (or the pair of them) cannot share extents
const NO_REFLINK: ReadonlySet<string> = new Set(['ENOTSUP', 'EOPNOTSUPP', 'EXDEV', 'EINVAL', 'ENOSYS', 'ENOTTY']);
// what a copy's writing side throws: the capture cannot go on, whichever file it is
const NO_ROOM: ReadonlySet<string> = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EFBIG', 'EEXIST']);

let hasher: Promise<XXHashAPI> | undefined;

/** Identifies the content a node names (its block or list ids), so fingerprints are used only for the version they describe. */
export function contentKey(content: Pick<TreeNode, 'blocks' | 'lists'>): Buffer {
  return crypto.createHash('sha256').update(JSON.stringify([content.blocks ?? null, content.lists ?? null])).digest();
}

/**
 * A point-in-time copy of the files a backup reads, made while the
 * containers are frozen, so hashing, compressing, sealing and packing happen
 * after they run again. On XFS and btrfs a copy is a reflink clone (its cost
 * is the file's extent map, not its data). Elsewhere (ext4) a large file is
 * read once at memory speed and only the blocks whose fingerprints differ
 * from its last capture are written to a sparse copy; the others are the
 * parent snapshot's, unread later.
 */
export class Capture {
  readonly #dir: string;
  readonly #block: number;
  readonly #store: FingerprintStore | undefined;
  readonly #xx: XXHashAPI;
  #reflinks: boolean | undefined;
  #next = 0;
  readonly #buffer = Buffer.allocUnsafe(CHUNK);

  private constructor(dir: string, block: number, store: FingerprintStore | undefined, xx: XXHashAPI) {
    this.#dir = dir;
    this.#block = block;
    this.#store = store;
    this.#xx = xx;
  }

  /** `block`: the fixed block size fingerprints are taken at, or undefined (content-defined blocks) for whole copies only. */
  static async open(opts: CaptureOptions, block: number | undefined): Promise<Capture> {
    try {
      fs.rmSync(opts.dir, { recursive: true, force: true });
      fs.mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new CaptureFailedError(`cannot prepare the capture directory ${opts.dir}: ${(err as Error).message}`, { cause: err });
    }
    return new Capture(opts.dir, block ?? 0, block ? opts.fingerprints : undefined, await (hasher ??= xxhash()));
  }

  /** The fingerprints kept for `rel` when they describe `before`, the parent's node. */
  known(rel: string, before: TreeNode | undefined): Fingerprints | undefined {
    if (!this.#store || before?.type !== 'file' || this.#reflinks) return undefined;
    const f = this.#store.get(rel);
    return f && f.block === this.#block && f.key.equals(contentKey(before)) ? f : undefined;
  }

  /**
   * Copies `full` as `st` saw it. Throws CaptureFailedError when the copy
   * cannot be written (the scratch file system is full), the source's own
   * error when it cannot be read, and returns undefined when it kept changing.
   */
  take(full: string, st: FileStat, parent: ParentBlocks | undefined): CapturedFile | undefined {
    let stat = st;
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      const copy = path.join(this.#dir, String(this.#next++));
      const made = this.#copy(full, copy, Number(stat.size), parent);
      const after = fs.lstatSync(full, { bigint: true });
      if (after.isFile() && same(stat, after)) return { path: copy, seen: fs.lstatSync(copy, { bigint: true }), stat, ...made };
      fs.rmSync(copy, { force: true });
      if (!after.isFile()) return undefined;
      stat = after;
    }
    return undefined;
  }

  /** Keeps the fingerprints of a captured file once its read gave its content. */
  remember(rel: string, content: Pick<TreeNode, 'blocks' | 'lists'>, hashes: Buffer): void {
    this.#store?.put(rel, { key: contentKey(content), block: this.#block, hashes });
  }

  /** Removes a copy once read. */
  release(file: CapturedFile): void {
    fs.rmSync(file.path, { force: true });
  }

  close(): void {
    fs.rmSync(this.#dir, { recursive: true, force: true });
  }

  #copy(full: string, copy: string, size: number, parent: ParentBlocks | undefined): { kept?: Uint8Array; hashes?: Buffer } {
    if (this.#reflinks !== false) {
      try {
        fs.copyFileSync(full, copy, fs.constants.COPYFILE_FICLONE_FORCE | fs.constants.COPYFILE_EXCL);
        this.#reflinks = true;
        return {};
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? '';
        if (!NO_REFLINK.has(code) || this.#reflinks) throw this.#copyFailure(err, full);
        this.#reflinks = false;
        fs.rmSync(copy, { force: true });
      }
    }
    if (!this.#store || size <= this.#block) return this.#whole(full, copy);
    return this.#blocks(full, copy, size, parent);
  }

  #whole(full: string, copy: string): Record<string, never> {
    try {
      fs.copyFileSync(full, copy, fs.constants.COPYFILE_EXCL);
    } catch (err) {
      throw this.#copyFailure(err, full);
    }
    return {};
  }

  /** Reads the file once, fingerprinting each block; writes to the sparse copy the blocks the parent lacks. */
  #blocks(full: string, copy: string, size: number, parent: ParentBlocks | undefined): { kept: Uint8Array; hashes: Buffer } {
    const block = this.#block;
    const count = Math.ceil(size / block);
    const hashes = Buffer.alloc(count * 8);
    const kept = new Uint8Array(count);
    // only whole blocks, or the last when it ends where the parent's did, can be the parent's
    const reusable = (i: number) => parent !== undefined && i < parent.ids.length && Math.min(block, size - i * block) === Math.min(block, parent.size - i * block);
    const src = fs.openSync(full, 'r');
    let dst: number | undefined;
    try {
      dst = this.#open(copy);
      for (let at = 0; at < size; ) {
        const n = fs.readSync(src, this.#buffer, 0, Math.min(CHUNK, size - at), at);
        if (n === 0) break; // shorter than seen: the lstat after the copy says so
        for (let o = 0; o < n; o += block) {
          const i = (at + o) / block;
          const part = this.#buffer.subarray(o, Math.min(o + block, n));
          hashes.writeBigUInt64LE(this.#xx.h64Raw(part), i * 8);
          if (reusable(i) && parent!.hashes.compare(hashes, i * 8, i * 8 + 8, i * 8, i * 8 + 8) === 0) kept[i] = 1;
          else this.#write(dst, part, at + o, full);
        }
        at += n;
      }
      this.#truncate(dst, size, full);
    } finally {
      fs.closeSync(src);
      if (dst !== undefined) fs.closeSync(dst);
    }
    return { kept, hashes };
  }

  #open(copy: string): number {
    try {
      return fs.openSync(copy, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
    } catch (err) {
      throw this.#failure(err, copy);
    }
  }

  #write(fd: number, data: Buffer, at: number, full: string): void {
    try {
      for (let o = 0; o < data.length; ) o += fs.writeSync(fd, data, o, data.length - o, at + o);
    } catch (err) {
      throw this.#failure(err, full);
    }
  }

  #truncate(fd: number, size: number, full: string): void {
    try {
      fs.ftruncateSync(fd, size);
    } catch (err) {
      throw this.#failure(err, full);
    }
  }

  /** A copy that cannot be written fails the capture; a source that cannot be read is that file's problem alone. */
  #copyFailure(err: unknown, file: string): unknown {
    return NO_ROOM.has((err as NodeJS.ErrnoException).code ?? '') ? this.#failure(err, file) : err;
  }

  #failure(err: unknown, file: string): CaptureFailedError {
    return new CaptureFailedError(`cannot copy ${file} into ${this.#dir} while the containers are frozen: ${(err as Error).message}`, { cause: err });
  }
}

function same(a: FileStat, b: FileStat): boolean {
  return a.ino === b.ino && a.dev === b.dev && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;
}
