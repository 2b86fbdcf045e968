import type { PackReport } from '../repo/jobs.ts';
import type { SplitterSpec } from '../repo/splitter-spec.ts';
import { taskModule, type WorkerPool } from '../workers/pool.ts';

/** The backup's task module, for a pool's modules (see worker-tasks.ts). */
export const BACKUP_TASKS = taskModule(import.meta.url, './worker-tasks');


/**
 * What the walk's lstat saw of a file. Every part of the file read must find
 * this very file (same device and inode), unchanged (same size, mtime, ctime)
 * from its open to the end of its read.
 */
export interface SeenFile {
  readonly dev: bigint;
  readonly ino: bigint;
  readonly size: bigint;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
}

/**
 * A file, or a block-aligned range of one, to read into blocks: bytes `start`
 * to `end`, which is the file's size (as seen) for its last or only part. A
 * read that ends before `end` found the file shorter: a change.
 *
 * A backup always sets `seen` and a numeric `end`. Without `seen` nothing is
 * checked and `end` null reads to EOF: only for a caller that packs a file
 * nobody changes (tests that need packs written by a worker).
 */
export interface StoreItem {
  readonly path: string;
  readonly start: number;
  readonly end: number | null;
  readonly seen?: SeenFile;
  /**
   * The file changes while it is read and that is expected (a database under
   * its online-backup protocol, whose recovery mends torn pages from its WAL):
   * no change checks; a range that ends early is filled with zeros to its
   * end, so every block stays at its offset.
   */
  readonly tolerant?: boolean;
  /**
   * Fixed blocks, a numeric `end`: fingerprint every block of the range
   * (returned in `hashes`); a block whose fingerprint and length are its
   * parent's takes the parent's id, unhashed.
   */
  readonly prints?: ItemPrints;
}

/** The parent's side of a range's fingerprints, from the range's first block on (possibly fewer blocks than the range has). */
export interface ItemPrints {
  /** 8 bytes a block. */
  readonly parent: Uint8Array | null;
  /** The parent's block ids, 32 bytes a block: as many as `parent` has fingerprints. */
  readonly ids: Uint8Array | null;
  readonly parentSize: number;
}

export interface StoreResult {
  /** Block ids in order, 32 bytes each; empty when the part failed or changed. */
  readonly ids: Uint8Array;
  readonly bytesRead: number;
  /** Set when the file could not be read; the backup goes on without it. */
  readonly error: string | null;
  /**
   * Set (to what differed) when the file was not, from this part's open to
   * the end of its read, the one the walk saw: what was read may mix
   * versions, so the file is to be read again.
   */
  readonly changed: string | null;
  /** The range's fingerprints, 8 bytes a block, when the item asked for them and was read whole. */
  readonly hashes?: Uint8Array;
}

/**
 * A block-aligned range of a file to fingerprint (xxh64 per block) while its
 * containers are frozen, writing into `copy` (made and sized by the main
 * thread) the blocks whose fingerprints differ from
 * the parent's. `parent` holds the parent's fingerprints from this range's
 * first block on (possibly fewer than the range has).
 */
export interface CaptureItem {
  readonly source: string;
  readonly copy: string;
  readonly start: number;
  readonly end: number;
  readonly block: number;
  readonly parent: Uint8Array | null;
  readonly parentSize: number;
}

export interface CaptureResult {
  /** 8 bytes a block of the range. */
  readonly hashes: Uint8Array;
  /** 1 where the block is the parent's (not written to the copy). */
  readonly kept: Uint8Array;
  /** Bytes written to the copy. */
  readonly copied: number;
  /** What failed: reading the source (that file's problem), or writing the copy (the capture's). */
  readonly error: { readonly side: 'source' | 'copy'; readonly code: string; readonly message: string } | null;
}

export interface StoreReply {
  readonly results: readonly StoreResult[];
  readonly packs: readonly PackReport[];
}

/**
 * Reads files (or ranges of them) into blocks on a worker, storing the blocks
 * the repository lacks; packs the worker finished on the way come back with the results.
 */
export function storeFiles(pool: WorkerPool, splitter: SplitterSpec, items: readonly StoreItem[]): Promise<StoreReply> {
  return pool.run('store', { splitter, items });
}

export function captureOn(pool: WorkerPool, item: CaptureItem): Promise<CaptureResult> {
  return pool.run('capture', item);
}
