import type { SplitterSpec } from '../repo/splitter-spec.ts';

/**
 * Messages between the main thread and the repository workers. Workers read
 * and write files and packs themselves, so file contents and sealed blobs never
 * cross threads: messages carry paths (or descriptor numbers), ids and pack trailers only.
 */
export interface WorkerInit {
  readonly enc: Uint8Array;
  readonly mac: Uint8Array;
  readonly level: number;
  readonly repoDir: string;
  readonly packSize: number;
}

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
}

/**
 * Part of a file to write. Either `create` names a file to make (exclusively,
 * never following a symlink), truncate to `size`, write and close; or `fd` is
 * a file the main thread holds open (a large file written in ranges by every
 * worker), written here and left open. `meta` is applied after the write.
 */
export interface RestoreItem {
  /** The entry's path in the target, for messages. */
  readonly path: string;
  /**
   * Where to create the file: on Linux `/proc/self/fd/<dirfd>/<name>`, under a
   * directory descriptor the main thread holds open until this item is done
   * (workers share the process's descriptors); elsewhere the plain path.
   */
  readonly create: string | null;
  readonly fd: number | null;
  readonly size: number;
  readonly offset: number;
  readonly blocks: readonly string[];
  readonly meta: { readonly mode: number; readonly uid: number; readonly gid: number; readonly mtime: string } | null;
}

export interface RestoreResult {
  readonly bytesWritten: number;
  readonly error: string | null;
}

/** A pack a worker finished and fsynced: its trailer says what the index should record. */
export interface PackReport {
  readonly name: string;
  readonly size: number;
  readonly trailer: Uint8Array;
}

export type Job =
  | {
      readonly op: 'store';
      readonly splitter: SplitterSpec;
      readonly items: readonly StoreItem[];
      /** Packs the index now holds: their ids no longer need remembering. */
      readonly acks: readonly string[];
    }
  | { readonly op: 'flush' }
  | { readonly op: 'reset' }
  | { readonly op: 'restore'; readonly items: readonly RestoreItem[] }
  | { readonly op: 'check'; readonly pack: string }
  | { readonly op: 'capture'; readonly item: CaptureItem }
  /** The last job: the worker lets go of its index connection and pack descriptors before it is ended. */
  | { readonly op: 'close' };

/**
 * A block-aligned range of a file to fingerprint (xxh64 per block) while its
 * containers are frozen, writing into `copy` (made and sized by the main
 * thread; null: fingerprint only) the blocks whose fingerprints differ from
 * the parent's. `parent` holds the parent's fingerprints from this range's
 * first block on (possibly fewer than the range has).
 */
export interface CaptureItem {
  readonly source: string;
  readonly copy: string | null;
  readonly start: number;
  readonly end: number;
  /** The whole file's size: the last block is shorter. */
  readonly size: number;
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
export interface FlushReply {
  readonly packs: readonly PackReport[];
}
export interface RestoreReply {
  readonly results: readonly RestoreResult[];
}
export interface CheckReply {
  /** Ids (hex) of blobs that fail authentication or do not hash to their id. */
  readonly bad: readonly string[];
  readonly blobs: number;
}

export type Reply =
  | { readonly ok: true; readonly value: unknown }
  | { readonly ok: false; readonly error: { readonly code: string; readonly message: string } };
