import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { ProtocolError, ReplicaMismatchError } from '../errors/errors.ts';
import { SEAL_OVERHEAD } from '../repo/crypto.ts';
import { type BlobId, MAX_STORED_BLOB, toHex } from '../repo/ids.ts';
import { parseKeyFile } from '../repo/keys.ts';
import { listPackFiles, PackWriter, packPath } from '../repo/pack.ts';
import type { RepositoryLock } from '../repo/lock.ts';
import type { Snapshot } from '../repo/snapshot.ts';
import { listSnapshots, saveSnapshot } from '../repo/snapshots.ts';
import { openIndex, readRepositoryConfig, Store, writeFileDurable } from '../repo/store.ts';
import { commitPack } from '../repo/writer.ts';
import { faultPoint } from '../util/fault.ts';
import type { BlobMessage, Hello, IdRef } from './messages.ts';

/** Blobs a replica pack holds at most: a pack of tiny blobs must not grow its pending set without bound. */
const PACK_MAX_BLOBS = 16_384;
/** Blobs refused in one session before the source is taken to be broken or hostile. */
const MAX_REJECTED = 1024;

export interface ReceiveStats {
  blobs: number;
  bytes: number;
  rejected: number;
  packs: number;
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
 * - adds a snapshot only when its tree and meta are indexed; never deletes.
 */
export class ReplicaSession {
  #stats: ReceiveStats = { blobs: 0, bytes: 0, rejected: 0, packs: 0 };
  readonly #store: Store;
  readonly #lock: RepositoryLock;
  readonly #packSize: number;
  readonly #askedType: (id: Buffer) => number | undefined;
  readonly #markAsked: (id: Buffer, type: number) => void;
  /** Blobs in the open pack, by latin1 id: not in the index yet. */
  readonly #pending = new Set<string>();
  #pendingRefs: [BlobId, BlobId][] = [];
  #pack: PackWriter | undefined;
  #rejected: string[] = [];
  #closed = false;

  private constructor(store: Store, packSize: number) {
    this.#store = store;
    this.#packSize = packSize;
    // Shared, like a backup: the peer's own prune of this replica takes it exclusively.
    this.#lock = store.lock('shared');
    store.db.exec('CREATE TEMP TABLE IF NOT EXISTS asked (id BLOB PRIMARY KEY, type INTEGER NOT NULL) WITHOUT ROWID; DELETE FROM temp.asked;');
    const asked = store.db.prepare('SELECT type FROM temp.asked WHERE id = ?').pluck();
    this.#askedType = (id) => asked.get(id) as number | undefined;
    const mark = store.db.prepare('INSERT OR IGNORE INTO temp.asked (id, type) VALUES (?, ?)');
    this.#markAsked = (id, type) => mark.run(id, type);
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
    const store = Store.openStore(dir);
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
    return ids.map((r) => {
      const missing = !this.#present(r.id);
      if (missing) this.#markAsked(r.id, r.type);
      return missing;
    });
  }

  /**
   * Takes one blob. A blob never asked for, or of another type than asked, is
   * a ProtocolError (the session ends); one whose bytes do not match its
   * checksum, or that names ids not here, is refused and reported at the next
   * flush so the source sends it again.
   */
  async accept(b: BlobMessage): Promise<void> {
    const asked = this.#askedType(b.id);
    if (asked === undefined) throw new ProtocolError(`the source sent blob ${toHex(b.id).slice(0, 16)}, which this peer never asked for`);
    if (asked !== b.type) throw new ProtocolError(`the source sent blob ${toHex(b.id).slice(0, 16)} as type ${b.type}, asked as ${asked}`);
    if (b.stored.length < SEAL_OVERHEAD || b.stored.length > MAX_STORED_BLOB) {
      throw new ProtocolError(`the source sent blob ${toHex(b.id).slice(0, 16)} of ${b.stored.length} bytes`);
    }
    if (this.#present(b.id)) return;
    const intact = crypto.createHash('sha256').update(b.stored).digest().equals(b.sha256);
    if (!intact || !b.refs.every((r) => this.#present(r))) {
      this.#rejected.push(toHex(b.id));
      this.#stats.rejected++;
      if (this.#rejected.length > MAX_REJECTED) throw new ProtocolError(`the source sent more than ${MAX_REJECTED} damaged or incomplete blobs`);
      return;
    }
    this.#pack ??= new PackWriter(this.#store.dir);
    this.#pack.append(b.id, b.type, b.stored, b.rawLength);
    this.#pending.add(b.id.toString('latin1'));
    for (const r of b.refs) this.#pendingRefs.push([b.id, r]);
    this.#stats.blobs++;
    this.#stats.bytes += b.stored.length;
    if (this.#pack.size >= this.#packSize || this.#pack.entries.length >= PACK_MAX_BLOBS) await this.#finishPack();
  }

  /** Makes everything taken so far durable and indexed; returns the ids refused since the last flush. */
  async flush(): Promise<string[]> {
    await this.#finishPack();
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
    await this.#finishPack();
    for (const [what, id] of [['tree', s.tree], ['meta', s.meta]] as const) {
      if (id && !this.#store.hasBlob(id)) throw new ProtocolError(`the source committed snapshot ${s.id.slice(0, 8)} before sending its ${what}`);
    }
    const existing = this.#store.db.prepare('SELECT tree FROM snapshots WHERE id = ?').pluck().get(s.id) as Buffer | undefined;
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

  /** Ends the session: what is not flushed is dropped (its blobs are asked for again next time). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#pack?.abort();
    this.#pack = undefined;
    this.#lock.release();
    this.#store.close();
  }

  #present(id: BlobId): boolean {
    return this.#pending.has(id.toString('latin1')) || this.#store.hasBlob(id);
  }

  async #finishPack(): Promise<void> {
    const pack = this.#pack;
    if (!pack) return;
    this.#pack = undefined;
    const done = await pack.finishAsync();
    const refs = this.#pendingRefs;
    const db = this.#store.db;
    const insertRef = db.prepare('INSERT OR IGNORE INTO refs (parent, child) VALUES (?, ?)');
    db.transaction(() => {
      commitPack(this.#store, done.name, done.size, done.entries);
      for (const [parent, child] of refs) insertRef.run(parent, child);
    })();
    faultPoint('replica-indexed');
    this.#pending.clear();
    this.#pendingRefs = [];
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
  await fsp.mkdir(path.join(dir, 'keys'), { recursive: true, mode: 0o700 });
  await fsp.mkdir(path.join(dir, 'packs'), { recursive: true, mode: 0o700 });
  openIndex(dir, true).close();
  await addKeys(dir, hello);
  // config.json last, as init does: its presence makes the directory a repository.
  await writeFileDurable(path.join(dir, 'config.json'), JSON.stringify(hello.config, null, 2));
}

async function addKeys(dir: string, hello: Hello): Promise<void> {
  for (const k of hello.keys) {
    const file = path.join(dir, 'keys', k.name);
    if (fs.existsSync(file)) continue;
    // Opaque to the peer, but it must be a key file: recovery will read it.
    try {
      parseKeyFile(k.text, dir);
    } catch {
      throw new ProtocolError(`the source sent key file ${k.name}, which is not one`);
    }
    await writeFileDurable(file, k.text);
  }
}
