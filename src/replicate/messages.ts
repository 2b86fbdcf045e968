import { z } from 'zod';
import { ProtocolError } from '../errors/errors.ts';
import { BLOB_ID_BYTES, type BlobId, BlobType } from '../repo/ids.ts';
import { repositoryConfigSchema } from '../repo/store.ts';
import type { Snapshot } from '../repo/snapshot.ts';
import { parseRecord, toRecord } from '../repo/snapshot-record.ts';

/**
 * The peer protocol's messages, one per frame (frames.ts). Control messages
 * are JSON checked by a schema; the bulk ones (queries, answers, blobs) are
 * binary. Everything a peer sends is parsed here, once, into trusted values,
 * and anything else is a ProtocolError.
 *
 * A push, source to peer:
 *   HELLO (repository config, key files) -> WELCOME (snapshots the replica holds)
 *   per snapshot: QUERY (ids) -> ANSWER (which are missing), level by level
 *                 BLOB ... (only missing ones, children before parents)
 *                 FLUSH -> FLUSHED (ids refused, to send again)
 *                 COMMIT (the snapshot row) -> COMMITTED
 *   repair: FETCH (ids) -> BLOB ... FETCHED
 * Either side may answer ERROR (code, message) and close.
 */
export const Msg = {
  hello: 1,
  welcome: 2,
  query: 3,
  answer: 4,
  blob: 5,
  flush: 6,
  flushed: 7,
  commit: 8,
  committed: 9,
  error: 10,
  fetch: 11,
  fetched: 12,
} as const;
export type MsgType = (typeof Msg)[keyof typeof Msg];

export const PROTOCOL_VERSION = 1;
/** Ids per QUERY or FETCH: 33 bytes each, about 270 KiB a frame. */
export const QUERY_BATCH = 8192;

const hex64 = z.string().regex(/^[0-9a-f]{64}$/);
const keyFileName = z.string().regex(/^[A-Za-z0-9_-]{1,64}\.json$/);

const helloSchema = z.strictObject({
  protocol: z.literal(PROTOCOL_VERSION),
  config: repositoryConfigSchema,
  /** The source's key files as they are: wrapped by its password, opaque to the peer. */
  keys: z.array(z.strictObject({ name: keyFileName, text: z.string().max(64 * 1024) })).min(1).max(64),
});
export type Hello = z.infer<typeof helloSchema>;

const welcomeSchema = z.strictObject({ snapshots: z.array(hex64) });
export type Welcome = z.infer<typeof welcomeSchema>;

const flushedSchema = z.strictObject({ rejected: z.array(hex64).max(QUERY_BATCH) });
export type Flushed = z.infer<typeof flushedSchema>;

const committedSchema = z.strictObject({ snapshot: hex64 });
const errorSchema = z.strictObject({ code: z.string().regex(/^LB_ERR_[A-Z0-9_]+$/).max(64), message: z.string().max(4096) });
export type ErrorMessage = z.infer<typeof errorSchema>;

const fetchedSchema = z.strictObject({ missing: z.array(hex64).max(QUERY_BATCH) });

function json<T>(schema: z.ZodType<T>, what: string, payload: Buffer): T {
  let raw: unknown;
  try {
    raw = JSON.parse(payload.toString('utf8'));
  } catch {
    throw new ProtocolError(`peer sent a ${what} message that is not JSON`);
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new ProtocolError(`peer sent a malformed ${what} message: ${z.prettifyError(parsed.error).split('\n')[0]}`);
  return parsed.data;
}

const encodeJson = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));

export const encodeHello = (h: Hello): Buffer => encodeJson(h);
export const decodeHello = (p: Buffer): Hello => json(helloSchema, 'hello', p);
export const encodeWelcome = (w: Welcome): Buffer => encodeJson(w);
export const decodeWelcome = (p: Buffer): Welcome => json(welcomeSchema, 'welcome', p);
export const encodeFlushed = (f: Flushed): Buffer => encodeJson(f);
export const decodeFlushed = (p: Buffer): Flushed => json(flushedSchema, 'flushed', p);
export const encodeCommitted = (snapshot: string): Buffer => encodeJson({ snapshot });
export const decodeCommitted = (p: Buffer): string => json(committedSchema, 'committed', p).snapshot;
export const encodeError = (e: ErrorMessage): Buffer => encodeJson({ code: e.code, message: e.message.slice(0, 4096) });
export const decodeError = (p: Buffer): ErrorMessage => json(errorSchema, 'error', p);
export const encodeFetched = (missing: readonly string[]): Buffer => encodeJson({ missing });
export const decodeFetched = (p: Buffer): string[] => json(fetchedSchema, 'fetched', p).missing;

export const encodeCommit = (s: Snapshot): Buffer => encodeJson(toRecord(s));
export const decodeCommit = (p: Buffer): Snapshot => parseRecord(p, (why) => new ProtocolError(`peer sent a malformed commit message: ${why}`));

const BLOB_TYPES: ReadonlySet<number> = new Set(Object.values(BlobType));
const ENTRY = 1 + BLOB_ID_BYTES;

export interface IdRef {
  readonly id: BlobId;
  readonly type: BlobType;
}

/** QUERY and FETCH: type | id, back to back. */
export function encodeIds(ids: readonly IdRef[]): Buffer {
  const out = Buffer.allocUnsafe(ids.length * ENTRY);
  ids.forEach((r, i) => {
    out[i * ENTRY] = r.type;
    out.set(r.id, i * ENTRY + 1);
  });
  return out;
}

export function decodeIds(p: Buffer): IdRef[] {
  if (p.length === 0 || p.length % ENTRY !== 0 || p.length / ENTRY > QUERY_BATCH) {
    throw new ProtocolError(`peer sent an id list of ${p.length} bytes`);
  }
  const out: IdRef[] = [];
  for (let o = 0; o < p.length; o += ENTRY) {
    const type = p[o]!;
    if (!BLOB_TYPES.has(type)) throw new ProtocolError(`peer sent an id of unknown blob type ${type}`);
    out.push({ type: type as BlobType, id: Buffer.from(p.subarray(o + 1, o + ENTRY)) as BlobId });
  }
  return out;
}

/** ANSWER: one bit per queried id, set when the peer lacks it. */
export function encodeAnswer(missing: readonly boolean[]): Buffer {
  const out = Buffer.alloc(Math.ceil(missing.length / 8));
  missing.forEach((m, i) => {
    if (m) out[i >> 3]! |= 1 << (i & 7);
  });
  return out;
}

export function decodeAnswer(p: Buffer, asked: number): boolean[] {
  if (p.length !== Math.ceil(asked / 8)) throw new ProtocolError(`peer answered ${p.length} bytes for ${asked} ids`);
  return Array.from({ length: asked }, (_, i) => (p[i >> 3]! & (1 << (i & 7))) !== 0);
}

/**
 * A blob as stored (sealed: the peer cannot read it), with the SHA-256 of
 * those bytes, which the peer checks, and for trees and lists the ids they
 * name, through which the peer's prune marks what is live.
 *   type u8 | id [32] | raw length u32 | sha256 [32] | ref count u32 | refs [32]* | stored
 */
export interface BlobMessage {
  readonly type: BlobType;
  readonly id: BlobId;
  readonly rawLength: number;
  readonly sha256: Buffer;
  readonly refs: readonly BlobId[];
  readonly stored: Buffer;
}

const BLOB_HEAD = 1 + BLOB_ID_BYTES + 4 + 32 + 4;

/** The message as its head and its stored bytes, left where they are: the frame copies them once (see encodeFrame). */
export function encodeBlob(b: BlobMessage): [head: Buffer, stored: Buffer] {
  const out = Buffer.allocUnsafe(BLOB_HEAD + b.refs.length * BLOB_ID_BYTES);
  let o = 0;
  out[o++] = b.type;
  o += b.id.copy(out, o);
  o = out.writeUInt32BE(b.rawLength, o);
  o += b.sha256.copy(out, o);
  o = out.writeUInt32BE(b.refs.length, o);
  for (const r of b.refs) o += r.copy(out, o);
  return [out, b.stored];
}

export function decodeBlob(p: Buffer): BlobMessage {
  if (p.length < BLOB_HEAD) throw new ProtocolError(`peer sent a blob frame of ${p.length} bytes`);
  const type = p[0]!;
  if (!BLOB_TYPES.has(type)) throw new ProtocolError(`peer sent a blob of unknown type ${type}`);
  let o = 1;
  const id = Buffer.from(p.subarray(o, (o += BLOB_ID_BYTES))) as BlobId;
  const rawLength = p.readUInt32BE(o);
  o += 4;
  const sha256 = Buffer.from(p.subarray(o, (o += 32)));
  const refCount = p.readUInt32BE(o);
  o += 4;
  if (refCount > (p.length - o) / BLOB_ID_BYTES) throw new ProtocolError(`peer sent a blob claiming ${refCount} refs`);
  if (refCount > 0 && type !== BlobType.tree && type !== BlobType.list) throw new ProtocolError('peer sent refs for a blob that cannot have any');
  const refs: BlobId[] = [];
  for (let i = 0; i < refCount; i++) refs.push(Buffer.from(p.subarray(o, (o += BLOB_ID_BYTES))) as BlobId);
  return { type: type as BlobType, id, rawLength, sha256, refs, stored: p.subarray(o) };
}
