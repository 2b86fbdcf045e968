import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { SourceError } from '../errors/errors.ts';
import { blobId, seal } from '../repo/crypto.ts';
import { BLOB_ID_BYTES, type BlobId, BlobType, toHex } from '../repo/ids.ts';
import type { Repository } from '../repo/repository.ts';
import type { Snapshot, SnapshotStats } from '../repo/snapshot.ts';
import { latestSnapshotOf, saveSnapshot } from '../repo/snapshots.ts';
import type { SplitterSpec } from '../repo/splitter-spec.ts';
import { makeSplitter, type Splitter } from '../repo/splitter.ts';
import { byName, decodeTree, encodeTree, type TreeNode } from '../repo/tree.ts';
import type { BlobPool } from '../repo/workers/pool.ts';
import { BlobWriter } from '../repo/writer.ts';
import { MiB } from '../util/units.ts';
import { Semaphore } from '../util/semaphore.ts';
import { type FileStat, nodeFromStat } from './node.ts';

export interface BackupOptions {
  readonly source: string;
  readonly host: string;
  readonly volume?: string | null;
  readonly tags?: readonly string[];
  readonly splitter: SplitterSpec;
  readonly packSize: number;
  readonly compressionLevel: number;
  readonly pool: BlobPool;
  /** Told about every entry that could not be read; the backup goes on without it. */
  readonly onWarning?: (path: string, err: Error) => void;
  readonly onProgress?: (p: Progress) => void;
}

export interface Progress {
  readonly files: number;
  readonly bytesRead: number;
  readonly bytesNew: number;
}

/** Read size: large enough to amortise a worker round trip over 64 blocks. */
const SEGMENT = 4 * MiB;
/** Bytes read but not yet stored, across all files: the archiver's memory bound. */
const IN_FLIGHT = 64 * MiB;
const FILES_IN_FLIGHT = 16;

/**
 * Walks a directory into a snapshot. Files whose size, mtime, ctime and inode
 * match the parent snapshot keep their block list unread; others are read in
 * segments, cut into blocks, hashed on the workers, and only blocks the
 * repository lacks are sealed and written. Directories are walked one at a
 * time, depth first; files of any directory overlap up to FILES_IN_FLIGHT.
 */
export async function backup(repo: Repository, opts: BackupOptions): Promise<Snapshot> {
  const started = performance.now();
  const source = path.resolve(opts.source);
  const rootStat = await fsp.lstat(source, { bigint: true }).catch((err: NodeJS.ErrnoException) => {
    throw new SourceError(`cannot back up ${source}: ${err.code === 'ENOENT' ? 'no such directory' : err.message}`);
  });
  if (!rootStat.isDirectory()) throw new SourceError(`cannot back up ${source}: not a directory`);

  const lock = repo.lock('shared');
  const writer = new BlobWriter(repo, opts.packSize);
  try {
    const parent = latestSnapshotOf(repo, opts.host, source);
    const archiver = new Archiver(repo, writer, opts);
    const parentRoot = parent ? (await archiver.loadTree(parent.tree, 'parent root')).nodes[0] : undefined;
    const rootNode = await archiver.saveDir(source, rootNameOf(source), rootStat, parentRoot);
    const tree = await archiver.saveTree([rootNode]);
    await writer.flush();
    const stats: SnapshotStats = {
      ...archiver.counts,
      bytes_new: writer.stats.bytesNew,
      bytes_stored: writer.stats.bytesStored,
      blobs_new: writer.stats.blobsNew,
      duration_ms: Math.round(performance.now() - started),
    };
    const snapshot: Snapshot = {
      id: crypto.randomBytes(32).toString('hex'),
      time: new Date().toISOString(),
      host: opts.host,
      source,
      volume: opts.volume ?? null,
      parent: parent?.id ?? null,
      tree,
      tags: [...(opts.tags ?? [])],
      splitter: opts.splitter,
      stats,
    };
    saveSnapshot(repo, snapshot);
    return snapshot;
  } catch (err) {
    await writer.abort();
    throw err;
  } finally {
    lock.release();
  }
}

/** The single top-level node's name; restore applies its metadata to the target itself. */
function rootNameOf(source: string): string {
  return path.basename(source) || 'root';
}

type Counts = Omit<SnapshotStats, 'bytes_new' | 'bytes_stored' | 'blobs_new' | 'duration_ms'>;

class Archiver {
  readonly counts: { -readonly [K in keyof Counts]: Counts[K] } = {
    files: 0,
    dirs: 0,
    files_new: 0,
    files_changed: 0,
    files_unchanged: 0,
    bytes_read: 0,
    bytes_total: 0,
    errors: 0,
  };
  readonly #repo: Repository;
  readonly #writer: BlobWriter;
  readonly #opts: BackupOptions;
  readonly #splitter: Splitter;
  readonly #files = new Semaphore(FILES_IN_FLIGHT);
  readonly #bytes = new Semaphore(IN_FLIGHT);
  #lastProgress = 0;

  constructor(repo: Repository, writer: BlobWriter, opts: BackupOptions) {
    this.#repo = repo;
    this.#writer = writer;
    this.#opts = opts;
    const seed = crypto.createHmac('sha256', repo.keys.mac).update('lifeboat cdc seed').digest();
    this.#splitter = makeSplitter(opts.splitter.kind, opts.splitter.size, seed);
  }

  async loadTree(id: BlobId, where: string) {
    return decodeTree(await this.#repo.loadBlob(id, BlobType.tree), where);
  }

  async saveTree(nodes: TreeNode[]): Promise<BlobId> {
    const plain = encodeTree({ nodes });
    const id = blobId(this.#repo.keys, plain);
    if (!this.#writer.has(id)) {
      await this.#writer.add(id, BlobType.tree, seal(this.#repo.keys, id, BlobType.tree, plain, { level: this.#opts.compressionLevel }), plain.length);
    }
    return id;
  }

  async saveDir(dir: string, name: string, stat: FileStat, previous: TreeNode | undefined): Promise<TreeNode> {
    this.counts.dirs++;
    const parentNodes = new Map<string, TreeNode>();
    if (previous?.type === 'dir' && previous.subtree) {
      for (const n of (await this.loadTree(Buffer.from(previous.subtree, 'hex') as BlobId, dir)).nodes) parentNodes.set(n.name, n);
    }
    let names: string[];
    try {
      names = (await fsp.readdir(dir)).sort();
    } catch (err) {
      this.#warn(dir, err as Error);
      names = [];
    }
    const pending: Promise<TreeNode | undefined>[] = [];
    for (const child of names) {
      const full = path.join(dir, child);
      let st: FileStat;
      try {
        st = await fsp.lstat(full, { bigint: true });
      } catch (err) {
        this.#warn(full, err as Error);
        continue;
      }
      const before = parentNodes.get(child);
      if (st.isDirectory()) {
        pending.push(this.saveDir(full, child, st, before));
      } else if (st.isFile()) {
        await this.#files.acquire();
        pending.push(this.#saveFile(full, child, st, before).finally(() => this.#files.release()));
      } else {
        pending.push(this.#saveSpecial(full, child, st));
      }
    }
    const nodes = (await Promise.all(pending)).filter((n): n is TreeNode => n !== undefined).sort(byName);
    const subtree = await this.saveTree(nodes);
    return nodeFromStat(name, 'dir', stat, { subtree: toHex(subtree) });
  }

  async #saveSpecial(full: string, name: string, st: FileStat): Promise<TreeNode | undefined> {
    this.counts.files++;
    if (st.isSymbolicLink()) {
      try {
        return nodeFromStat(name, 'symlink', st, { target: await fsp.readlink(full) });
      } catch (err) {
        this.#warn(full, err as Error);
        return undefined;
      }
    }
    const type = st.isFIFO() ? 'fifo' : st.isCharacterDevice() ? 'chardev' : st.isBlockDevice() ? 'blockdev' : 'socket';
    return nodeFromStat(name, type, st, { rdev: Number(st.rdev) });
  }

  async #saveFile(full: string, name: string, st: FileStat, before: TreeNode | undefined): Promise<TreeNode | undefined> {
    this.counts.files++;
    this.counts.bytes_total += Number(st.size);
    if (
      before?.type === 'file' &&
      before.blocks &&
      before.size === Number(st.size) &&
      before.mtime === String(st.mtimeNs) &&
      before.ctime === String(st.ctimeNs) &&
      before.ino === String(st.ino)
    ) {
      this.counts.files_unchanged++;
      return nodeFromStat(name, 'file', st, { blocks: before.blocks });
    }
    try {
      const { blocks, size } = await this.#readBlocks(full, Number(st.size), before === undefined);
      if (before) this.counts.files_changed++;
      else this.counts.files_new++;
      // Size as read, metadata as before the read: a file written meanwhile has a newer mtime and is read again next time.
      return nodeFromStat(name, 'file', st, { blocks, size });
    } catch (err) {
      this.counts.bytes_total -= Number(st.size);
      this.#warn(full, err as Error);
      return undefined;
    }
  }

  async #readBlocks(full: string, expectedSize: number, expectNew: boolean): Promise<{ blocks: string[]; size: number }> {
    const fh = await fsp.open(full, 'r');
    const segments: Promise<string[]>[] = [];
    let size = 0;
    try {
      let carry: Buffer = Buffer.alloc(0);
      for (;;) {
        // +1 lets a file that did not grow end in one read.
        const want = Math.max(Math.min(SEGMENT, expectedSize - size + 1), this.#splitter.maxBlock + 1 - carry.length, 1);
        const budget = await this.#bytes.acquire(carry.length + want);
        const buf = new ArrayBuffer(carry.length + want);
        const view = Buffer.from(buf);
        carry.copy(view);
        const { bytesRead } = await fh.read(view, carry.length, want, null);
        size += bytesRead;
        this.counts.bytes_read += bytesRead;
        const final = bytesRead < want;
        const filled = view.subarray(0, carry.length + bytesRead);
        const cuts = this.#splitter.cut(filled, final);
        const consumed = cuts.at(-1) ?? 0;
        carry = Buffer.from(filled.subarray(consumed));
        if (cuts.length > 0) segments.push(this.#storeSegment(buf, cuts, expectNew).finally(() => this.#bytes.release(budget)));
        else this.#bytes.release(budget);
        this.#progress();
        if (final) break;
      }
    } finally {
      // Settle every segment before the handle closes or an error surfaces: none may outlive the file.
      await Promise.allSettled(segments);
      await fh.close();
    }
    return { blocks: (await Promise.all(segments)).flat(), size };
  }

  /** Hashes one segment's blocks and stores those the repository lacks; returns their ids in order. */
  async #storeSegment(buf: ArrayBuffer, cuts: number[], expectNew: boolean): Promise<string[]> {
    const pool = this.#opts.pool;
    const hashed = await pool.hash({ buf, cuts, seal: expectNew, type: BlobType.data });
    const ids = Buffer.from(hashed.ids);
    const idAt = (i: number) => ids.subarray(i * BLOB_ID_BYTES, (i + 1) * BLOB_ID_BYTES) as BlobId;
    const len = (i: number) => cuts[i]! - (i === 0 ? 0 : cuts[i - 1]!);
    if (hashed.sealed && hashed.lengths) {
      let o = 0;
      for (let i = 0; i < cuts.length; i++) {
        const stored = Buffer.from(hashed.sealed, o, hashed.lengths[i]!);
        o += hashed.lengths[i]!;
        await this.#writer.add(idAt(i), BlobType.data, stored, len(i));
      }
    } else {
      const wanted: number[] = [];
      const seen = new Set<string>();
      for (let i = 0; i < cuts.length; i++) {
        const key = idAt(i).toString('latin1');
        if (seen.has(key) || this.#writer.has(idAt(i))) continue;
        seen.add(key);
        wanted.push(i);
      }
      if (wanted.length > 0) {
        const wantedIds = new ArrayBuffer(wanted.length * BLOB_ID_BYTES);
        wanted.forEach((i, k) => new Uint8Array(wantedIds).set(idAt(i), k * BLOB_ID_BYTES));
        const ranges = wanted.map((i) => [i === 0 ? 0 : cuts[i - 1]!, cuts[i]!] as const);
        const sealed = await pool.seal({ buf: hashed.buf, ranges, ids: wantedIds, type: BlobType.data });
        let o = 0;
        for (let k = 0; k < wanted.length; k++) {
          const stored = Buffer.from(sealed.sealed, o, sealed.lengths[k]!);
          o += sealed.lengths[k]!;
          await this.#writer.add(idAt(wanted[k]!), BlobType.data, stored, len(wanted[k]!));
        }
      }
    }
    const out: string[] = [];
    for (let i = 0; i < cuts.length; i++) out.push(idAt(i).toString('hex'));
    return out;
  }

  #warn(p: string, err: Error): void {
    this.counts.errors++;
    this.#opts.onWarning?.(p, err);
  }

  #progress(): void {
    const now = performance.now();
    if (!this.#opts.onProgress || now - this.#lastProgress < 200) return;
    this.#lastProgress = now;
    this.#opts.onProgress({ files: this.counts.files, bytesRead: this.counts.bytes_read, bytesNew: this.#writer.stats.bytesNew });
  }
}
