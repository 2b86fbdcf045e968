import { type BlobId } from './ids.ts';
import type { SplitterSpec } from './splitter-spec.ts';

export interface SnapshotStats {
  readonly files: number;
  readonly dirs: number;
  readonly files_new: number;
  readonly files_changed: number;
  readonly files_unchanged: number;
  /** Bytes of file content read from the source (unchanged files are not read). */
  readonly bytes_read: number;
  /** Plaintext bytes of blobs this backup added to the repository. */
  readonly bytes_new: number;
  /** Bytes this backup added on disk: sealed blobs plus pack trailers. */
  readonly bytes_stored: number;
  readonly blobs_new: number;
  /** Total size of the files in the snapshot. */
  readonly bytes_total: number;
  readonly errors: number;
  /** Entries whose metadata was read: all of them in a full scan, the changed ones with a journal. */
  readonly examined: number;
  readonly duration_ms: number;
}

export interface Snapshot {
  /** 64 hex characters; the first 8 are what people type. */
  readonly id: string;
  readonly time: string;
  readonly host: string;
  /** The directory that was backed up, absolute. */
  readonly source: string;
  /** Docker volume name, when the source was one. */
  readonly volume: string | null;
  readonly parent: string | null;
  readonly tree: BlobId;
  /** A sealed meta blob (SnapshotMeta), for snapshots of Docker volumes and images. */
  readonly meta: BlobId | null;
  readonly tags: readonly string[];
  readonly splitter: SplitterSpec;
  readonly stats: SnapshotStats;
}

export const shortId = (id: string): string => id.slice(0, 8);

/** The tag of the snapshots that hold Docker images (saved with the volumes whose containers use them). */
export const IMAGE_TAG = 'image';
