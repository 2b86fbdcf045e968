import crypto from 'node:crypto';
import type { Logger } from 'pino';
import { CorruptIndexError, PeerClosedError, PeerIdentityError, PeerRefusedError, ProtocolError } from '../errors/errors.ts';
import { decodeList } from '../repo/content.ts';
import { type BlobId, BlobType } from '../repo/ids.ts';
import type { Repository } from '../repo/repository.ts';
import type { Snapshot } from '../repo/snapshot.ts';
import { listSnapshotHeads, type SnapshotHead, snapshotsById } from '../repo/snapshots.ts';
import { readRepositoryConfig } from '../repo/store.ts';
import { faultPoint } from '../util/fault.ts';
import { decodeTree } from '../repo/tree.ts';
import { Frontier, type NeedRow, type Queued } from './frontier.ts';
import type { RateLimiter } from './limiter.ts';
import {
  type BlobMessage,
  decodeAnswer,
  decodeCommitted,
  decodeError,
  decodeFlushed,
  decodeWelcome,
  encodeBlob,
  encodeCommit,
  encodeHello,
  encodeIds,
  type Hello,
  type Welcome,
  Msg,
  type MsgType,
  PROTOCOL_VERSION,
  QUERY_BATCH,
} from './messages.ts';
import type { Frame } from './frames.ts';
import type { PeerConnection } from './transport.ts';
import { readKeyFiles } from '../repo/key-files.ts';

export interface PushOptions {
  /** Where the push keeps its working set (a scratch SQLite file). */
  readonly scratchDir: string;
  readonly log: Logger;
  readonly limiter?: RateLimiter;
  readonly signal?: AbortSignal;
  /** Told which snapshots the peer holds as the push begins. */
  readonly onWelcome?: (held: readonly string[]) => void;
  /** Told after each blob sent (the tally has grown). */
  readonly onSent?: () => void;
  /** Told about each snapshot once the peer has committed it. */
  readonly onCommitted?: (snapshot: Snapshot) => void;
  /** Counts as the push goes, also when it fails part way (what a failed push did send). */
  readonly tally?: PushTally;
  /** Rounds of sending again what the peer refused, before giving up. */
  readonly maxResends?: number;
  /** Test seam: what goes on the wire in place of a blob (to damage one in flight). */
  readonly onSend?: (b: BlobMessage) => BlobMessage;
}

export interface PushTally {
  snapshots: number;
  already: number;
  blobs_sent: number;
  bytes_sent: number;
  blobs_resent: number;
  ids_queried: number;
}

export const newTally = (): PushTally => ({ snapshots: 0, already: 0, blobs_sent: 0, bytes_sent: 0, blobs_resent: 0, ids_queried: 0 });

export interface PushReport {
  /** Snapshots the peer committed in this push. */
  readonly snapshots: number;
  /** Snapshots the peer already had. */
  readonly already: number;
  /** Blobs sent, those sent again included. */
  readonly blobs_sent: number;
  /** Stored (sealed) bytes of the blobs sent. */
  readonly bytes_sent: number;
  readonly blobs_resent: number;
  readonly ids_queried: number;
  /** Bytes that crossed the connection each way, frame headers included (TLS records add about 0.2%). */
  readonly wire_bytes_sent: number;
  readonly wire_bytes_received: number;
  readonly duration_ms: number;
}

/**
 * Pushes the repository's snapshots the peer lacks, newest first, over an
 * authenticated connection. For each: ask level by level which ids the peer
 * lacks (a tree it has is not opened: it has all below it), send those blobs
 * as stored, children before parents, flush, send again what it refused,
 * then commit the snapshot row. A broken push resumes at the next one from
 * what the peer indexed: nothing it has is sent again.
 */
export async function push(conn: PeerConnection, repo: Repository, opts: PushOptions): Promise<PushReport> {
  const started = performance.now();
  const counts = opts.tally ?? newTally();
  // shared, as a backup: a prune (exclusive) must not delete packs under a push
  const lock = repo.lock('shared');
  const frontier = new Frontier(opts.scratchDir);
  try {
    const welcome = await greet(conn, repo);
    opts.onWelcome?.(welcome.snapshots);
    const held = new Set(welcome.snapshots);
    // heads only: whole rows for what is sent and its bases, not for the tens of thousands the peer has
    const all = listSnapshotHeads(repo);
    const pending = all.filter((s) => !held.has(s.id)).reverse();
    counts.already = all.length - pending.length;
    for (const head of pending) {
      opts.signal?.throwIfAborted();
      const base = baseOf(head, all, held);
      const [snapshot] = snapshotsById(repo, [head.id]);
      if (!snapshot) continue; // forgotten meanwhile
      await discover(conn, repo, frontier, snapshot, base && snapshotsById(repo, [base.id])[0], counts);
      await sendNeeded(conn, repo, frontier, opts, counts);
      await conn.send(Msg.commit, encodeCommit(snapshot));
      const committed = decodeCommitted(await expect(conn, Msg.committed));
      if (committed !== snapshot.id) throw new ProtocolError(`the peer committed ${committed.slice(0, 8)} for ${snapshot.id.slice(0, 8)}`);
      faultPoint('push-committed');
      frontier.clearNeeds();
      held.add(snapshot.id);
      counts.snapshots++;
      opts.onCommitted?.(snapshot);
      opts.log.debug({ snapshot: snapshot.id, ...counts }, `snapshot ${snapshot.id.slice(0, 8)} replicated`);
    }
  } finally {
    frontier.close();
    lock.release();
  }
  conn.close();
  return { ...counts, wire_bytes_sent: conn.bytesSent, wire_bytes_received: conn.bytesReceived, duration_ms: Math.round(performance.now() - started) };
}

/** HELLO, then the peer's WELCOME: which snapshots its replica of this repository holds. */
export async function greet(conn: PeerConnection, repo: Repository): Promise<Welcome> {
  const hello = encodeHello(await helloOf(repo));
  try {
    await conn.send(Msg.hello, hello);
    return decodeWelcome(await expect(conn, Msg.welcome));
  } catch (err) {
    if (err instanceof PeerClosedError) {
      throw new PeerIdentityError('the peer closed the connection at once: it does not know this agent (add its id, `lifeboat id`, to a [[peer]] entry on the peer)');
    }
    throw err;
  }
}

/** The repository's config and key files, as the peer stores them (the keys stay wrapped by the password). */
async function helloOf(repo: Repository): Promise<Hello> {
  return { protocol: PROTOCOL_VERSION, config: readRepositoryConfig(repo.dir), keys: await readKeyFiles(repo.backend) };
}

/** The next frame (or `f`, already received), which must be of `type`; an ERROR from the peer becomes a PeerRefusedError. */
export async function expect(conn: PeerConnection, type: MsgType, received?: Frame): Promise<Buffer> {
  const f = received ?? (await conn.receive());
  if (f.type === type) return f.payload;
  if (f.type === Msg.error) throw refusal(f.payload);
  throw new ProtocolError(`the peer answered with message ${f.type}, expected ${type}`);
}

function refusal(payload: Buffer): PeerRefusedError {
  const e = decodeError(payload);
  return new PeerRefusedError(e.code, `the peer refused: ${e.message} [${e.code}]`);
}

/** Stops a stream of blobs as soon as the peer has said no (its disk is full, say), rather than at the next flush. */
function throwIfRefused(conn: PeerConnection): void {
  const f = conn.peek(Msg.error);
  if (f) throw refusal(f.payload);
}

/**
 * The snapshot of the same host and source, newest first, that the peer
 * holds whole: what is at the same place in both is there already, and need
 * not be asked about (so a push asks about what changed, not about every
 * neighbour of a change).
 */
function baseOf(s: SnapshotHead, all: readonly SnapshotHead[], held: ReadonlySet<string>): SnapshotHead | undefined {
  let base: SnapshotHead | undefined;
  for (const x of all) {
    if (x.id !== s.id && held.has(x.id) && x.host === s.host && x.source === s.source && (!base || x.time > base.time)) base = x;
  }
  return base;
}

/** Level by level from the snapshot's roots: what the peer lacks goes into the frontier with what it names. */
async function discover(conn: PeerConnection, repo: Repository, frontier: Frontier, s: Snapshot, base: Snapshot | undefined, counts: { ids_queried: number }): Promise<void> {
  if (!base?.tree.equals(s.tree)) frontier.enqueue(0, s.tree, BlobType.tree, base?.tree ?? null);
  if (s.meta && !base?.meta?.equals(s.meta)) frontier.enqueue(0, s.meta, BlobType.meta);
  for (let depth = 0; ; depth++) {
    let asked = 0;
    for (let batch = frontier.take(depth, QUERY_BATCH); batch.length > 0; batch = frontier.take(depth, QUERY_BATCH)) {
      asked += batch.length;
      counts.ids_queried += batch.length;
      await conn.send(Msg.query, encodeIds(batch));
      const missing = decodeAnswer(await expect(conn, Msg.answer), batch.length);
      // in one read transaction: a lookup on its own opens and ends one, most of its cost
      const located = repo.inOneRead(() => batch.map((r, i) => (missing[i] ? repo.locate(r.id) : undefined)));
      for (const [i, r] of batch.entries()) {
        if (!missing[i]) continue;
        const loc = located[i];
        if (!loc) throw new CorruptIndexError(`snapshot ${s.id.slice(0, 8)} needs blob ${r.id.toString('hex').slice(0, 16)}, which this repository lacks; run verify`);
        const children = await childrenOf(repo, r);
        for (const c of children) if (!c.counterpart?.equals(c.id)) frontier.enqueue(depth + 1, c.id, c.type, c.counterpart);
        frontier.need({ id: r.id, type: r.type, pack: loc.pack, offset: loc.offset, length: loc.length, raw: loc.rawLength }, children.map((c) => c.id));
      }
    }
    if (asked === 0) return;
  }
}

/**
 * What a tree or list blob names, by opening it (the source has the keys; the
 * peer never does), each child with its counterpart: the child at the same
 * place (same name, same position) in the blob's own counterpart.
 */
async function childrenOf(repo: Repository, r: Queued): Promise<Queued[]> {
  const pair = (ids: readonly string[], theirs: readonly string[] | undefined, type: BlobType): Queued[] =>
    ids.map((h, i) => ({ id: Buffer.from(h, 'hex') as BlobId, type, counterpart: theirs?.[i] === undefined ? null : (Buffer.from(theirs[i]!, 'hex') as BlobId) }));
  if (r.type === BlobType.list) {
    const list = (id: BlobId) => repo.loadBlob(id, BlobType.list).then((b) => decodeList(b, 'a block list'));
    return pair(await list(r.id), r.counterpart ? await list(r.counterpart) : undefined, BlobType.data);
  }
  if (r.type !== BlobType.tree) return [];
  const tree = (id: BlobId) => repo.loadBlob(id, BlobType.tree).then((b) => decodeTree(b, 'a tree'));
  const theirs = new Map(r.counterpart ? (await tree(r.counterpart)).nodes.map((n) => [n.name, n]) : []);
  const out: Queued[] = [];
  for (const n of (await tree(r.id)).nodes) {
    const t = theirs.get(n.name);
    if (n.subtree) out.push(...pair([n.subtree], t?.subtree === undefined ? undefined : [t.subtree], BlobType.tree));
    out.push(...pair(n.blocks ?? [], t?.blocks, BlobType.data), ...pair(n.lists ?? [], t?.lists, BlobType.list));
  }
  return out;
}

/** The most read from a pack at once: adjacent blobs to send come in one read, not one each (a wait on the thread pool per blob). */
const READ_RUN = 4 * 1024 * 1024;

async function sendNeeded(conn: PeerConnection, repo: Repository, frontier: Frontier, opts: PushOptions, counts: { blobs_sent: number; bytes_sent: number; blobs_resent: number }): Promise<void> {
  const send = async (row: NeedRow, stored: Buffer) => {
    opts.signal?.throwIfAborted();
    const refs = row.type === BlobType.tree || row.type === BlobType.list ? frontier.refs(row.id) : [];
    let msg: BlobMessage = { type: row.type, id: row.id, rawLength: row.raw, sha256: crypto.createHash('sha256').update(stored).digest(), refs, stored };
    if (opts.onSend) msg = opts.onSend(msg);
    const [head, body] = encodeBlob(msg);
    await opts.limiter?.take(head.length + body.length, opts.signal);
    throwIfRefused(conn);
    await conn.send(Msg.blob, head, body).catch((err: unknown) => {
      // the peer hung up after saying why: its reason, not the broken pipe
      throwIfRefused(conn);
      throw err;
    });
    faultPoint('push-blob');
    counts.blobs_sent++;
    counts.bytes_sent += stored.length;
    opts.onSent?.();
  };
  // The next run is read while this one is sent, so sending does not wait on the disk; into
  // two buffers in turn, as a fresh one faults in its pages on every read. Each run is sent
  // (its frames copied) before its buffer is read into again.
  const buffers = [Buffer.allocUnsafe(READ_RUN), Buffer.allocUnsafe(READ_RUN)];
  let turn = 0;
  const runs = frontier.sendRuns(READ_RUN);
  const readNext = () => {
    const { done, value: run } = runs.next();
    if (done) return undefined;
    const first = run[0]!;
    const last = run.at(-1)!;
    const into = buffers[turn++ % 2];
    const read = repo.readStored({ pack: first.pack, offset: first.offset, length: last.offset + last.length - first.offset }, into).then((bytes) => ({ run, bytes }));
    read.catch(() => {}); // awaited below; a push failing meanwhile must not leave it unhandled
    return read;
  };
  for (let next = readNext(); next; ) {
    const { run, bytes } = await next;
    next = readNext();
    const start = run[0]!.offset;
    for (const row of run) await send(row, bytes.subarray(row.offset - start, row.offset - start + row.length));
  }
  for (let round = 0; ; round++) {
    await conn.send(Msg.flush);
    const { rejected } = decodeFlushed(await expect(conn, Msg.flushed));
    faultPoint('push-flushed');
    if (rejected.length === 0) return;
    if (round >= (opts.maxResends ?? 3)) throw new ProtocolError(`the peer kept refusing ${rejected.length} blobs after ${round} resends`);
    opts.log.warn({ count: rejected.length }, `the peer refused ${rejected.length} blobs (damaged in flight?); sending them again`);
    for (const hex of rejected) {
      const row = frontier.needed(Buffer.from(hex, 'hex') as BlobId);
      if (!row) throw new ProtocolError(`the peer refused blob ${hex.slice(0, 16)}, which was not sent`);
      await send(row, await repo.readStored(row));
      counts.blobs_resent++;
    }
  }
}
