import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { ProtocolError, ReplicaMismatchError } from '../errors/errors.ts';
import { SEAL_OVERHEAD } from '../repo/crypto.ts';
import { type BlobId, MAX_STORED_BLOB, toHex } from '../repo/ids.ts';
import { parseKeyFile } from '../repo/keys.ts';
import { type FinishedPack, listPackFiles, PackWriter, packPath } from '../repo/pack.ts';
import type { RepositoryLock } from '../repo/lock.ts';
import type { Snapshot } from '../repo/snapshot.ts';
import { ReceiveLedger } from '../repo/receive-ledger.ts';
import { listSnapshots, saveSnapshot, snapshotTree } from '../repo/snapshots.ts';
import { snapshotsDir } from '../repo/snapshot-record.ts';
import { openIndex, readRepositoryConfig, Store } from '../repo/store.ts';
import { faultPoint } from '../util/fault.ts';
import type { BlobMessage, Hello, IdRef } from './messages.ts';
import { LocalBackend } from '../backend/local.ts';
import { addKeyFile } from '../repo/key-files.ts';

/** Blobs a replica pack holds at most: a pack of tiny blobs must not grow its pending set without bound. */
const PACK_MAX_BLOBS = 16_384;
/** Blobs refused in one session before the source is taken to be broken or hostile. */
const MAX_REJECTED = 1024;
/** Bytes of the open pack queued on the thread pool before taking the next blob waits for them (then TCP slows the source). */
const WRITE_BEHIND_BYTES = 4 * 1024 * 1024;
/** Full packs being made durable and indexed while the next one fills, before taking blobs waits for the oldest. */
const MAX_SEALED = 2;

export interface ReceiveStats {
  blobs: number;
  bytes: number;
  rejected: number;
  packs: number;
}

/** A pack being written, with the edges of its trees and lists, indexed with it. */
interface OpenPack {
  readonly writer: PackWriter;
  readonly refs: [BlobId, BlobId][];
}

/**
 * One source's push into its replica on this peer. The replica is a
 * repository directory like any other (config.json and key files as the
 * source sent them, index.db, packs), so the source's password opens it; the
 * peer itself never can. A session:
 * - answers which queried ids it lacks, and remembers them (a temporary table
 *   of its own connection): a blob it never asked for is refused;
 * - checks each blob's SHA-256 and, for trees and lists, that every id it
 *   names is already here, so an indexed tree always means its whole subtree
 *   is indexed (what lets a later push skip it);
 * - writes blobs into packs, indexing a pack (and the edges of its trees and
 *   lists, through which its own prune marks) only once it is fsynced;
 *   packs are written behind and made durable in the background, in order,
 *   while the next fills (see #seal), so the event loop takes frames at the
 *   pace of the link, not of the disk;
 * - adds a snapshot only when its tree and meta are indexed; never deletes.
 */
export class ReplicaSession {
  #stats: ReceiveStats = { blobs: 0, bytes: 0, rejected: 0, packs: 0 };
  readonly #store: Store;
  readonly #lock: RepositoryLock;
  readonly #packSize: number;
  /** The type a blob was asked as (undefined: never asked), and whether this session indexed it. */
  readonly #ledger: ReceiveLedger;
  /**
   * Runs lookups in one read transaction: a statement on its own opens and
   * ends one of its own, most of its cost (~5 µs a lookup, against ~1.7 µs).
   */
  /** Blobs of the packs not indexed yet (open or sealed), by latin1 id: present all the same. */
  readonly #pending = new Set<string>();
  #pack: OpenPack | undefined;
  /** Sealed packs being finished, oldest first; each settles (never rejects) once indexed or dropped. */
  readonly #sealed = new Set<Promise<void>>();
  /** The first failure of a sealed pack: it ends the session at the next blob, flush or commit. */
  #failure: unknown;
  #rejected: string[] = [];
  #closing: Promise<void> | undefined;

  private constructor(store: Store, packSize: number) {
    this.#store = store;
    this.#packSize = packSize;
    // Shared, like a backup: the peer's own prune of this replica takes it exclusively.
    this.#lock = store.lock('shared');
    this.#ledger = new ReceiveLedger(store);
  }

  /**
   * Opens the replica at `dir` for a push, creating it from the source's
   * hello the first time. Later hellos must name the same repository; key
   * files the replica lacks are added (a new password on the source), none
   * is ever replaced.
   */
  static async open(dir: string, hello: Hello, opts: { packSize: number }): Promise<ReplicaSession> {
    if (!fs.existsSync(path.join(dir, 'config.json'))) await create(dir, hello);
    const config = readRepositoryConfig(dir);
    if (config.id !== hello.config.id) {
      throw new ReplicaMismatchError(`this peer's replica of the source is of repository ${config.id}, and the source now offers repository ${hello.config.id}; move ${dir} aside to replicate the new one`);
    }
    await addKeys(dir, hello);
    // a push writes data: it leaves the reserve for the peer's own prune
    const store = Store.openStore(dir, { reserve: 'keep' });
    try {
      const session = new ReplicaSession(store, opts.packSize);
      await session.#removeStaleTemp();
      return session;
    } catch (err) {
      store.close();
      throw err;
    }
  }

  /** Ids of the snapshots the replica holds. */
  snapshots(): string[] {
    return listSnapshots(this.#store).map((s) => s.id);
  }

  /** For each queried id, whether it is missing here; missing ones may then be sent. */
  answer(ids: readonly IdRef[]): boolean[] {
    this.#throwIfFailed();
    return this.#store.inOneRead(() =>
      ids.map((r) => {
        const missing = !this.#present(r.id);
        if (missing) this.#ledger.ask(r.id, r.type);
        return missing;
      }),
    );
  }

  /**
   * Takes one blob. A blob never asked for, or of another type than asked, is
   * a ProtocolError (the session ends); one whose bytes do not match its
   * checksum, or that names ids not here, is refused and reported at the next
   * flush so the source sends it again.
   */
  async accept(b: BlobMessage): Promise<void> {
    this.#throwIfFailed();
    const [asked, taken] = this.#ledger.asked(b.id) ?? [];
    if (asked === undefined) throw new ProtocolError(`the source sent blob ${toHex(b.id).slice(0, 16)}, which this peer never asked for`);
    if (asked !== b.type) throw new ProtocolError(`the source sent blob ${toHex(b.id).slice(0, 16)} as type ${b.type}, asked as ${asked}`);
    if (b.stored.length < SEAL_OVERHEAD || b.stored.length > MAX_STORED_BLOB) {
      throw new ProtocolError(`the source sent blob ${toHex(b.id).slice(0, 16)} of ${b.stored.length} bytes`);
    }
    // Asked means missing when asked, and while a session holds the replica
    // only it adds blobs (the peer's prune waits for its lock, a source has one
    // session at a time): so a blob asked is present once taken here, pending
    // or indexed (then marked), without a lookup in the index.
    const key = b.id.toString('latin1');
    if (taken || this.#pending.has(key)) return;
    const intact = crypto.createHash('sha256').update(b.stored).digest().equals(b.sha256);
    if (!intact || (b.refs.length > 0 && !this.#store.inOneRead(() => b.refs.every((r) => this.#present(r))))) {
      this.#rejected.push(toHex(b.id));
      this.#stats.rejected++;
      if (this.#rejected.length > MAX_REJECTED) throw new ProtocolError(`the source sent more than ${MAX_REJECTED} damaged or incomplete blobs`);
      return;
    }
    const pack = (this.#pack ??= { writer: new PackWriter(this.#store.dir, { writeBehind: true }), refs: [] });
    pack.writer.append(b.id, b.type, b.stored, b.rawLength, b.refs);
    this.#pending.add(key);
    for (const r of b.refs) pack.refs.push([b.id, r]);
    this.#stats.blobs++;
    this.#stats.bytes += b.stored.length;
    // The next blob waits only while too much is queued: for this pack's writes, or for full packs to be finished.
    if (pack.writer.size < this.#packSize && pack.writer.entries.length < PACK_MAX_BLOBS) return pack.writer.drain(WRITE_BEHIND_BYTES);
    this.#seal();
    while (this.#sealed.size > MAX_SEALED) await Promise.race(this.#sealed);
    this.#throwIfFailed();
  }

  /** Makes everything taken so far durable and indexed; returns the ids refused since the last flush. */
  async flush(): Promise<string[]> {
    await this.#settle();
    const rejected = this.#rejected;
    this.#rejected = [];
    return rejected;
  }

  /**
   * Adds the snapshot row, last: after its tree and meta are indexed, which
   * (by the check in accept) means everything it reaches is. The same
   * snapshot again is a no-op; nothing is ever replaced.
   */
  async commit(s: Snapshot): Promise<void> {
    await this.#settle();
    for (const [what, id] of [['tree', s.tree], ['meta', s.meta]] as const) {
      if (id && !this.#store.hasBlob(id)) throw new ProtocolError(`the source committed snapshot ${s.id.slice(0, 8)} before sending its ${what}`);
    }
    const existing = snapshotTree(this.#store, s.id);
    if (existing) {
      if (!existing.equals(s.tree)) throw new ProtocolError(`the source sent snapshot ${s.id.slice(0, 8)} again with another tree; replicas are append-only`);
      return;
    }
    saveSnapshot(this.#store, s);
    faultPoint('replica-committed');
  }

  /** Stored bytes of blobs this replica holds (for the source's repair); undefined for one it lacks. */
  async fetch(r: IdRef): Promise<BlobMessage | undefined> {
    const loc = this.#store.locate(r.id);
    if (!loc || loc.type !== r.type) return undefined;
    const stored = await this.#store.readStored(loc);
    return { type: loc.type, id: r.id, rawLength: loc.rawLength, sha256: crypto.createHash('sha256').update(stored).digest(), refs: [], stored };
  }

  /** What was received since the last call (per snapshot, as the receiver reports it). */
  takeStats(): ReceiveStats {
    const s = this.#stats;
    this.#stats = { blobs: 0, bytes: 0, rejected: 0, packs: 0 };
    return s;
  }

  /**
   * Ends the session: the open pack is dropped first (on a full disk, the
   * room given back), sealed ones are finished and indexed (or dropped after
   * a failure); what was not indexed is asked for again next time.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      const open = this.#pack;
      this.#pack = undefined;
      await open?.writer.abort();
      await Promise.all(this.#sealed);
      this.#lock.release();
      this.#store.close();
    })();
    return this.#closing;
  }

  #present(id: BlobId): boolean {
    return this.#pending.has(id.toString('latin1')) || this.#store.hasBlob(id);
  }

  #throwIfFailed(): void {
    if (this.#failure !== undefined) throw this.#failure;
  }

  /**
   * Hands the open pack over to be finished in the background, after the
   * packs sealed before it: packs are indexed in the order they were
   * written, so a tree (whose children were checked present, maybe only
   * pending in an earlier pack) is never indexed before its children.
   */
  #seal(): void {
    const pack = this.#pack;
    if (!pack) return;
    this.#pack = undefined;
    const previous = [...this.#sealed].at(-1);
    const done: Promise<void> = this.#finish(pack, previous)
      .catch((err: unknown) => {
        this.#failure ??= err;
      })
      .finally(() => this.#sealed.delete(done));
    this.#sealed.add(done);
  }

  /** Seals the open pack and waits until every pack is indexed: all taken is durable. */
  async #settle(): Promise<void> {
    this.#seal();
    await Promise.all(this.#sealed);
    this.#throwIfFailed();
  }

  /**
   * Makes a sealed pack durable (trailer, fsync, rename), then indexes it with
   * the edges of its trees and lists, in one transaction. After a failure of
   * an earlier pack it is dropped instead: what it holds may name what that
   * one held.
   */
  async #finish(pack: OpenPack, previous: Promise<void> | undefined): Promise<void> {
    await previous;
    let done: FinishedPack;
    try {
      this.#throwIfFailed();
      done = await pack.writer.finishAsync();
    } catch (err) {
      await pack.writer.abort();
      throw err;
    }
    this.#ledger.commitPack(done.name, done.size, done.entries, pack.refs);
    faultPoint('replica-indexed');
    for (const e of done.entries) this.#pending.delete(e.id.toString('latin1'));
    this.#stats.packs++;
  }

  /** Pack files a killed session left half-written: no index row names them. */
  async #removeStaleTemp(): Promise<void> {
    for (const name of await listPackFiles(this.#store.dir)) {
      if (name.endsWith('.tmp')) await fsp.rm(`${packPath(this.#store.dir, name.slice(0, -4))}.tmp`, { force: true });
    }
  }
}

async function create(dir: string, hello: Hello): Promise<void> {
  await fsp.mkdir(path.join(dir, 'packs'), { recursive: true, mode: 0o700 });
  await fsp.mkdir(snapshotsDir(dir), { recursive: true, mode: 0o700 });
  openIndex(dir, hello.config.id, { create: true }).close();
  await addKeys(dir, hello);
  // config.json last, as init does: its presence makes the directory a repository.
  await new LocalBackend(dir).writeOnce('config', 'config.json', Buffer.from(JSON.stringify(hello.config, null, 2)));
}

async function addKeys(dir: string, hello: Hello): Promise<void> {
  const backend = new LocalBackend(dir);
  for (const k of hello.keys) {
    // Opaque to the peer, but it must be a key file: recovery will read it.
    try {
      parseKeyFile(k.text, dir);
    } catch {
      throw new ProtocolError(`the source sent key file ${k.name}, which is not one`);
    }
    await addKeyFile(backend, k);
  }
}
