import fs from 'node:fs';
import path from 'node:path';
import { CaptureFailedError } from '../errors/errors.ts';
import type { WorkerPool } from '../workers/pool.ts';
import type { ParentBlocks } from './fingerprints.ts';
import type { FileStat } from './node.ts';
import { captureOn } from './jobs.ts';

export interface CaptureOptions {
  /** A scratch directory for the copies, emptied first; reflinks need it on the volume's file system. */
  readonly dir: string;
  /** Returns the containers to running: called once every file the backup reads is captured, with what that took. */
  readonly thaw: (captured: CaptureStats) => Promise<void>;
}

/** What a capture did while the containers were frozen. */
export interface CaptureStats {
  readonly files: number;
  /** Bytes read to fingerprint them. */
  readonly read: number;
  /** Bytes written to copies (reflink clones count nothing). */
  readonly copied: number;
  readonly reflinks: boolean;
  readonly ms: number;
}

export interface CapturedFile {
  /** The copy, read after the thaw. */
  readonly path: string;
  /** The copy's lstat, which its read checks against. */
  readonly seen: FileStat;
  /** The original's lstat, for the snapshot's node: taken before the copy and unchanged after it. */
  readonly stat: FileStat;
  /** A reflink clone: whole, read after the thaw. */
  readonly reflinked?: true;
  /** Per block: the parent's block i stands (1) or the copy holds it (0). Absent: the copy is whole. */
  readonly kept?: Uint8Array;
  /** The fingerprints of what was captured, to keep once its node is known. */
  readonly hashes?: Buffer;
}

/** Times a file is captured again when it changed during its capture (a writer the freeze does not stop). */
const ATTEMPTS = 3;
/** What a capture leaves free on the scratch file system: the larger of these. */
const RESERVE_MIN = 256 << 20;
const RESERVE_SHARE = 0.05;
/** A large file is fingerprinted in this many bytes or more per worker, all workers at once. */
const SPLIT = 16 << 20;
// what copyFile's FICLONE_FORCE throws where the file system (or the pair of them) cannot share extents
const NO_REFLINK: ReadonlySet<string> = new Set(['ENOTSUP', 'EOPNOTSUPP', 'EXDEV', 'EINVAL', 'ENOSYS', 'ENOTTY']);
// what a copy's writing side throws: the capture cannot go on, whichever file it is
const NO_ROOM: ReadonlySet<string> = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EFBIG', 'EEXIST']);

/**
 * A point-in-time copy of the files a backup reads, made while the
 * containers are frozen, so hashing, compressing, sealing and packing happen
 * after they run again. On XFS and btrfs a copy is a reflink clone (its cost
 * is the file's extent map, not its data), read after the thaw like a file in
 * place. Elsewhere (ext4) a large file is read once at memory speed by every
 * worker at once and only the blocks whose fingerprints differ from its last
 * backup are written to a sparse copy, the rest the parent snapshot's, unread
 * later.
 */
export class Capture {
  readonly #dir: string;
  /** The fixed block size fingerprints are taken at; 0: copies are whole. */
  readonly #block: number;
  readonly #pool: WorkerPool;
  #reflinks: boolean | undefined;
  #next = 0;
  readonly #started = performance.now();
  readonly #counts = { files: 0, read: 0, copied: 0 };

  private constructor(dir: string, block: number, pool: WorkerPool) {
    this.#dir = dir;
    this.#block = block;
    this.#pool = pool;
  }

  /** `block`: the fixed block size fingerprints are taken at, or undefined (content-defined blocks, or none kept) for whole copies only. */
  static open(opts: CaptureOptions, block: number | undefined, pool: WorkerPool): Capture {
    try {
      fs.rmSync(opts.dir, { recursive: true, force: true });
      fs.mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new CaptureFailedError(`cannot prepare the capture directory ${opts.dir}: ${(err as Error).message}`, { cause: err });
    }
    return new Capture(opts.dir, block ?? 0, pool);
  }

  /**
   * Copies `full` as `st` saw it. Throws CaptureFailedError when the copy
   * cannot be written (the scratch file system is full), the source's own
   * error when it cannot be read, and returns undefined when it kept changing.
   */
  async take(full: string, st: FileStat, parent: ParentBlocks | undefined): Promise<CapturedFile | undefined> {
    let stat = st;
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      // The file the walk saw, opened without following a link: a symlink or another file put
      // in its place since (a writer the freeze does not stop) is never what gets copied.
      const fd = fs.openSync(full, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
      try {
        if (same(stat, fs.fstatSync(fd, { bigint: true }))) {
          const copy = path.join(this.#dir, String(this.#next++));
          this.#counts.files++;
          // on Linux the workers and copyFile open the very file through its descriptor
          const made = await this.#copy(process.platform === 'linux' ? `/proc/self/fd/${fd}` : full, full, copy, stat, parent);
          if (same(stat, fs.fstatSync(fd, { bigint: true }))) return { path: copy, seen: fs.lstatSync(copy, { bigint: true }), stat, ...made };
          fs.rmSync(copy, { force: true });
        }
      } finally {
        fs.closeSync(fd);
      }
      const now = fs.lstatSync(full, { bigint: true });
      if (!now.isFile()) return undefined;
      stat = now;
    }
    return undefined;
  }

  get stats(): CaptureStats {
    return { ...this.#counts, reflinks: this.#reflinks === true, ms: Math.round(performance.now() - this.#started) };
  }

  /** Removes a copy once read. */
  release(file: CapturedFile): void {
    fs.rmSync(file.path, { force: true });
  }

  close(): void {
    fs.rmSync(this.#dir, { recursive: true, force: true });
  }

  /** Copies `source` (the file `full` named when the walk saw it as `st`). */
  async #copy(source: string, full: string, copy: string, st: FileStat, parent: ParentBlocks | undefined): Promise<{ reflinked?: true; kept?: Uint8Array; hashes?: Buffer }> {
    const size = Number(st.size);
    if (this.#reflinks !== false) {
      try {
        fs.copyFileSync(source, copy, fs.constants.COPYFILE_FICLONE_FORCE | fs.constants.COPYFILE_EXCL);
        this.#reflinks = true;
        return { reflinked: true };
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? '';
        if (!NO_REFLINK.has(code) || this.#reflinks) throw this.#copyFailure(err, full);
        this.#reflinks = false;
        fs.rmSync(copy, { force: true });
      }
    }
    // zero blocks are holes in the copy: only what is allocated can need room
    this.#room(full, parent ? 0 : Math.min(size, Number(st.blocks) * 512));
    try {
      if (this.#block === 0 || size <= this.#block) {
        fs.copyFileSync(source, copy, fs.constants.COPYFILE_EXCL);
        this.#counts.copied += size;
        return {};
      }
      const fd = fs.openSync(copy, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
      try {
        fs.ftruncateSync(fd, size);
      } finally {
        fs.closeSync(fd);
      }
    } catch (err) {
      throw this.#copyFailure(err, full);
    }
    return this.#fingerprint(source, copy, size, parent);
  }

  /** Every worker fingerprints a part of the file, writing the changed blocks into `copy`. */
  async #fingerprint(source: string, copy: string, size: number, parent: ParentBlocks | undefined): Promise<{ kept: Uint8Array; hashes: Buffer }> {
    const block = this.#block;
    const parts = Math.max(1, Math.min(this.#pool.size, Math.floor(size / SPLIT)));
    const per = Math.ceil(size / block / parts) * block;
    const jobs = [];
    for (let start = 0; start < size; start += per) {
      const end = Math.min(size, start + per);
      const from = (start / block) * 8;
      // copied: a view would carry the whole file's fingerprints to every worker
      const hashes = parent && new Uint8Array(parent.hashes.subarray(from, from + Math.ceil((end - start) / block) * 8));
      jobs.push(captureOn(this.#pool, { source, copy, start, end, block, parent: hashes ?? null, parentSize: parent?.size ?? 0 }));
    }
    const results = await Promise.all(jobs);
    this.#counts.read += size;
    for (const r of results) this.#counts.copied += r.copied;
    const failed = results.find((r) => r.error !== null)?.error;
    if (failed?.side === 'copy') throw this.#failure(Object.assign(new Error(failed.message), { code: failed.code }), source);
    if (failed) throw Object.assign(new Error(failed.message), { code: failed.code });
    return { kept: Buffer.concat(results.map((r) => r.kept)), hashes: Buffer.concat(results.map((r) => r.hashes)) };
  }

  /**
   * Refuses a copy that would leave the scratch file system (often the one
   * the containers write to) with less than RESERVE free: they run again
   * soon, and must not find it full.
   */
  #room(full: string, need: number): void {
    const fsInfo = fs.statfsSync(this.#dir);
    const free = fsInfo.bavail * fsInfo.bsize;
    const reserve = Math.max(RESERVE_MIN, fsInfo.blocks * fsInfo.bsize * RESERVE_SHARE);
    if (free - need >= reserve) return;
    throw new CaptureFailedError(`not enough room in ${this.#dir} to copy ${full} (${need} bytes; ${free} free, of which ${Math.round(reserve)} stay free)`);
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
