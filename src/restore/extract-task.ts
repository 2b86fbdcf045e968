import fs from 'node:fs';
import { CorruptIndexError } from '../errors/errors.ts';
import { blobId, unseal } from '../repo/crypto.ts';
import { type BlobId, BlobType, MAX_STORED_BLOB } from '../repo/ids.ts';
import { packPath } from '../repo/pack.ts';
import type { BlobLocation } from '../repo/repository.ts';
import { faultPoint } from '../util/fault.ts';
import { MiB } from '../util/units.ts';
import type { WorkerContext } from '../repo/worker-context.ts';
import type { RestoreItem, RestoreResult } from './jobs.ts';

/** Reads of adjacent blobs in a pack are merged up to this size. */
const RUN = 4 * MiB;
const canChown = typeof process.getuid === 'function' && process.getuid() === 0;
/** A new file, made here or not at all: never through a symlink at its name (O_NOFOLLOW is 0 where it does not exist). */
const CREATE = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | (fs.constants.O_NOFOLLOW ?? 0);

/** Per worker: pack descriptors and the id of the all-zero block of each length. */
const packFds = new Map<string, number>();
const zeroIds = new Map<number, string>();
/** Per worker: where a run of stored blobs is read, kept from run to run (a fresh 4 MiB buffer each time is page faults). */
let runBuffer = Buffer.alloc(0);

function packFd(ctx: WorkerContext, pack: string): number {
  let fd = packFds.get(pack);
  if (fd === undefined) {
    if (packFds.size >= 64) closePackFds();
    try {
      fd = fs.openSync(packPath(ctx.repoDir, pack), 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new CorruptIndexError(`pack ${pack} named by the index is missing`);
      throw err;
    }
    packFds.set(pack, fd);
  }
  return fd;
}

export function closePackFds(): void {
  for (const fd of packFds.values()) fs.closeSync(fd);
  packFds.clear();
}

function isZero(ctx: WorkerContext, hex: string, rawLength: number): boolean {
  let zero = zeroIds.get(rawLength);
  if (zero === undefined) {
    zero = blobId(ctx.keys, Buffer.alloc(rawLength)).toString('hex');
    zeroIds.set(rawLength, zero);
  }
  return zero === hex;
}

class TargetWriteError extends Error {}

function local<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw new TargetWriteError((err as Error).message);
  }
}

/** An error's message with the address it was made at (/proc/self/fd/N/name) given as the entry's path. */
function message(err: unknown, item: RestoreItem): string {
  const m = (err as Error).message;
  return item.create === null || item.create === item.path ? m : m.replaceAll(item.create, item.path);
}

/**
 * Runs on a worker: writes blocks of one file at their offsets. All-zero
 * blocks are skipped (the file was truncated to size, so they stay holes).
 * The file is created here, relative to a directory the main thread holds
 * open, or is a descriptor the main thread opened: no path is walked again.
 * Damaged repository data throws and fails the restore; a problem with the
 * target file is reported for this item only.
 */
export function restoreItem(ctx: WorkerContext, item: RestoreItem): RestoreResult {
  let fd: number;
  const own = item.fd === null;
  try {
    if (item.fd !== null) fd = item.fd;
    else {
      if (item.create === null) throw new Error(`${item.path}: nothing to create or write to`);
      fd = fs.openSync(item.create, CREATE, 0o600);
    }
  } catch (err) {
    return { bytesWritten: 0, error: message(err, item) };
  }
  let written = 0;
  try {
    if (own) local(() => fs.ftruncateSync(fd, item.size));
    let offset = item.offset;
    let run: { id: BlobId; loc: BlobLocation }[] = [];
    let runAt = 0;
    let runBytes = 0;
    const flush = () => {
      if (run.length > 0) written += writeRun(ctx, fd, run, runAt);
      run = [];
      runBytes = 0;
    };
    for (const hex of item.blocks) {
      const id = Buffer.from(hex, 'hex') as BlobId;
      const loc = ctx.locate(id);
      if (!loc || loc.type !== BlobType.data) throw new CorruptIndexError(`block ${hex.slice(0, 16)} of ${item.path} is missing from the repository`);
      if (isZero(ctx, hex, loc.rawLength)) flush();
      else {
        const last = run.at(-1);
        if (last && (last.loc.pack !== loc.pack || last.loc.offset + last.loc.length !== loc.offset || runBytes >= RUN)) flush();
        if (run.length === 0) runAt = offset;
        run.push({ id, loc });
        runBytes += loc.length;
      }
      offset += loc.rawLength;
    }
    flush();
    if (item.meta) {
      const m = item.meta;
      local(() => {
        if (canChown) fs.fchownSync(fd, m.uid, m.gid);
        fs.fchmodSync(fd, m.mode);
        const t = nsToTime(m.mtime);
        fs.futimesSync(fd, t, t);
      });
    }
  } catch (err) {
    if (!(err instanceof TargetWriteError)) throw err;
    return { bytesWritten: written, error: message(err, item) };
  } finally {
    // The main thread's descriptor stays open: it closes it once every range is written.
    if (own) fs.closeSync(fd);
  }
  faultPoint('restore-file');
  return { bytesWritten: written, error: null };
}

/** One read for blobs adjacent in a pack, then each is authenticated, decoded and written in place. */
function writeRun(ctx: WorkerContext, fd: number, run: { id: BlobId; loc: BlobLocation }[], at: number): number {
  const first = run[0]!.loc;
  const last = run.at(-1)!.loc;
  const length = last.offset + last.length - first.offset;
  // adjacent blobs read at once are at most a run of blocks; an index row claiming more is damage
  if (run.some((r) => r.loc.length > MAX_STORED_BLOB) || length > run.length * MAX_STORED_BLOB) throw new CorruptIndexError(`the index gives blobs in pack ${first.pack} lengths no blob may have`);
  if (runBuffer.length < length) runBuffer = Buffer.allocUnsafe(Math.max(length, RUN + MiB));
  const stored = runBuffer.subarray(0, length);
  const n = fs.readSync(packFd(ctx, first.pack), stored, 0, length, first.offset);
  if (n !== length) throw new CorruptIndexError(`pack ${first.pack} is shorter than the index says`);
  let pos = at;
  for (const { id, loc } of run) {
    const plain = unseal(ctx.keys, id, BlobType.data, stored.subarray(loc.offset - first.offset, loc.offset - first.offset + loc.length), false, loc.rawLength);
    local(() => {
      let o = 0;
      while (o < plain.length) o += fs.writeSync(fd, plain, o, plain.length - o, pos + o);
    });
    faultPoint('restore-block');
    pos += plain.length;
  }
  return pos - at;
}

/**
 * A tree time (ns) for utimes: seconds as a number, or a Date before 1970,
 * because Node turns a negative number into "now" (a Date keeps the sign, to the ms).
 */
export function nsToTime(ns: string): number | Date {
  const n = BigInt(ns);
  if (n < 0n) return new Date(Number(n / 1_000_000n));
  return Number(n / 1_000_000_000n) + Number(n % 1_000_000_000n) / 1e9;
}
