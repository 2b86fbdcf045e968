import { InvalidFileNameError } from '../errors/errors.ts';

/**
 * What a repository keeps, by kind: its config, the key files that wrap its
 * master keys, packs of sealed blobs, snapshot records, and index files (a
 * copy of the index that a reader of object storage can fetch instead of
 * rebuilding it from the packs).
 */
export const FILE_KINDS = ['config', 'key', 'pack', 'snapshot', 'index'] as const;
export type FileKind = (typeof FILE_KINDS)[number];

export interface FileInfo {
  readonly name: string;
  readonly size: number;
}

export interface ByteRange {
  readonly offset: number;
  readonly length: number;
}

/**
 * Where a repository's files live: a local directory, object storage, or
 * memory. Files are content-addressed or otherwise named once, so the
 * interface has no overwrite: a file is written whole and atomically (no
 * reader ever sees part of one, a crash leaves either all of it or no file),
 * exactly once, and read, listed and deleted by kind and name.
 */
export interface Backend {
  /** Where the files are, for messages. */
  readonly location: string;
  /** The complete files of a kind, in no particular order (a write in progress is not one). */
  list(kind: FileKind): AsyncIterable<FileInfo>;
  /** The file's size; undefined when there is no such file. */
  stat(kind: FileKind, name: string): Promise<FileInfo | undefined>;
  /**
   * The file's bytes, or those of `range` that it has: fewer when the file
   * ends first (none past its end). FileNotFoundError when there is no such file.
   */
  read(kind: FileKind, name: string, range?: ByteRange): Promise<Buffer>;
  /**
   * Creates the file with `data`, durably once this resolves. FileExistsError
   * (and nothing changed) when a file of that name exists, also when two
   * writers race for it: one wins whole.
   */
  writeOnce(kind: FileKind, name: string, data: Uint8Array): Promise<void>;
  /** Removes the file; no error when there is none. */
  delete(kind: FileKind, name: string): Promise<void>;
}

/**
 * A name every backend can hold as it is: a local file name, an object key's
 * last part. No separators, no dot names, nothing a temporary file could
 * be taken for.
 */
const NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;

export function checkName(kind: FileKind, name: string): void {
  if (!NAME.test(name) || name.includes('.tmp')) throw new InvalidFileNameError(`${JSON.stringify(name)} is not a valid ${kind} file name`);
}

/** Checks a range before anything is read: whole, non-negative numbers. */
export function checkRange(range: ByteRange): void {
  if (!Number.isSafeInteger(range.offset) || !Number.isSafeInteger(range.length) || range.offset < 0 || range.length < 0) {
    throw new RangeError(`invalid byte range ${range.offset}+${range.length}`);
  }
}
