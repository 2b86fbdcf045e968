import type { BlobType } from '../ids.ts';

/**
 * Messages between the main thread and the blob workers. Payloads travel as
 * transferred ArrayBuffers (no copies); each reply packs its outputs into one
 * fresh buffer, because pooled Buffer memory cannot be transferred.
 */
export type Job =
  | {
      readonly op: 'hash';
      readonly buf: ArrayBuffer;
      /** End offsets of the blocks in buf. */
      readonly cuts: readonly number[];
      /** Seal every block too: the caller expects them all to be new. */
      readonly seal: boolean;
      readonly type: BlobType;
    }
  | {
      readonly op: 'seal';
      readonly buf: ArrayBuffer;
      /** [start, end) of each block to seal, with its id at the same index of ids. */
      readonly ranges: readonly (readonly [number, number])[];
      readonly ids: ArrayBuffer;
      readonly type: BlobType;
    }
  | {
      readonly op: 'unseal';
      /** Stored blobs back to back; lengths splits them. */
      readonly buf: ArrayBuffer;
      readonly lengths: readonly number[];
      readonly ids: ArrayBuffer;
      readonly type: BlobType;
      readonly checkId: boolean;
    };

export interface HashReply {
  readonly buf: ArrayBuffer;
  readonly ids: ArrayBuffer;
  /** When sealing: every sealed block back to back, split by lengths. */
  readonly sealed: ArrayBuffer | null;
  readonly lengths: readonly number[] | null;
}

export interface SealReply {
  readonly buf: ArrayBuffer;
  readonly sealed: ArrayBuffer;
  readonly lengths: readonly number[];
}

export interface UnsealReply {
  readonly plain: ArrayBuffer;
  readonly lengths: readonly number[];
}

export type Reply = { readonly ok: true; readonly value: HashReply | SealReply | UnsealReply } | {
  readonly ok: false;
  readonly error: { readonly name: string; readonly code: string; readonly message: string };
};

export interface WorkerInit {
  readonly enc: Uint8Array;
  readonly mac: Uint8Array;
  readonly level: number;
}
