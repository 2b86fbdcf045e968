import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { CorruptDataError, CorruptIndexError, LifeboatError, noSpace, SourceError } from '../errors/errors.ts';
import { BlockListBuilder, blockGroups, decodeList, listRefs } from '../repo/content.ts';
import { blobId, seal } from '../repo/crypto.ts';
import { BLOB_ID_BYTES, type BlobId, BlobType, toHex } from '../repo/ids.ts';
import { entriesFromTrailer } from '../repo/pack.ts';
import type { Repository } from '../repo/repository.ts';
import type { Snapshot, SnapshotStats } from '../repo/snapshot.ts';
import { listRecordIds } from '../repo/snapshot-record.ts';
import { latestSnapshotOf, saveSnapshot } from '../repo/snapshots.ts';
import type { SplitterSpec } from '../repo/splitter-spec.ts';
import { byName, decodeTree, encodeTree, type Tree, type TreeNode, treeRefs } from '../repo/tree.ts';
import { BlobWriter } from '../repo/writer.ts';
import { faultPoint } from '../util/fault.ts';
import { RESCAN, RESTAT } from '../watch/rescan.ts';
import type { Later } from '../util/later.ts';
import { MiB } from '../util/units.ts';
import { JobBatcher } from '../workers/batcher.ts';
import type { WorkerPool } from '../workers/pool.ts';
import { acknowledgePack, flushPacks, type PackReport, resetPacks } from '../repo/jobs.ts';
import { type ItemPrints, type SeenFile, type StoreItem, type StoreResult, storeFiles } from './jobs.ts';
import { Capture, type CapturedFile, type CaptureOptions } from './capture.ts';
import { type FingerprintStore, keepOnlyBlocks, type ParentBlocks, parentBlocks, rememberBlocks } from './fingerprints.ts';
import { type FileStat, nodeFromStat } from './node.ts';
import { matchesPattern } from '../repo/browse.ts';

export interface BackupOptions {
  readonly source: string;
  readonly host: string;
  readonly volume?: string | null;
  readonly tags?: readonly string[];
  /** Recorded with the snapshot, sealed (container specs and images of a volume). */
  readonly meta?: unknown;
  /**
   * What changed since the parent snapshot, from the change journal: with
   * mode 'paths', only those paths (and the directories above them) are
   * examined; everything else is taken from the parent without a syscall.
   */
  readonly changes?: {
    readonly mode: 'full' | 'paths';
    readonly paths: ReadonlySet<string>;
    /**
     * Entries of the parent gone from disk that stay in the snapshot (a
     * database's WAL its recovery still needs). A backup that keeps entries
     * needs its parent: without a usable one it fails with ParentUnusableError.
     */
    readonly retain?: (rel: string) => boolean;
  };
  readonly splitter: SplitterSpec;
  /**
   * Globs of what to leave out (see matchesPattern: with a slash a path from
   * the source's root, else a name); what is below an excluded directory goes
   * with it. With the change journal, an unchanged directory keeps what its
   * parent snapshot held until it is next looked at.
   */
  readonly exclude?: readonly string[];
  readonly packSize: number;
  readonly compressionLevel: number;
  readonly pool: WorkerPool;
  /** Told about every entry that could not be read; the backup goes on without it. */
  readonly onWarning?: (path: string, err: Error) => void;
  /**
   * When the data was captured, if not when the read begins: a database's
   * online-backup protocol makes it consistent as of its end.
   */
  readonly capturedAt?: Date;
  /**
   * Files change while they are read and that is expected (a database under
   * its online-backup protocol): what was read is taken, not read again.
   */
  readonly tolerateChanges?: boolean;
  /** A read in two phases, around a step of a database's backup protocol. */
  readonly phases?: Phases;
  /**
   * Files, by path relative to the source, of which only a window is read:
   * an append-only log (a database's WAL). Such a file is read through its
   * window even when its metadata is as the parent's (fixed blocks only;
   * others are read whole).
   */
  readonly windows?: ReadonlyMap<string, ReadWindow>;
  /**
   * The containers are frozen while the walk runs: every file it reads is
   * copied first (reflinks, or the blocks that changed), the containers
   * thawed, and the copies read. Not with `phases` or `windows`.
   */
  readonly capture?: CaptureOptions;
  /**
   * The source's block fingerprints from its last backup (fixed blocks
   * only): a large file's blocks whose fingerprints did not change take the
   * parent's ids unhashed, and what each read found is kept for the next.
   */
  readonly fingerprints?: FingerprintStore;
  /** Told about damage found in the repository that the backup worked around (packs gone, their blocks stored again). */
  readonly onDamage?: (message: string) => void;
  readonly onProgress?: (p: Progress) => void;
}

export interface Progress {
  readonly files: number;
  readonly bytesRead: number;
  readonly bytesNew: number;
}

/**
 * Everything but `last` is read first; then `between` runs (a database ends
 * its backup, and says what its recovery needs); then `last` is read (the
 * WAL written meanwhile), and the files between() returns are added at the
 * `add` paths (the backup_label). Paths are relative to the source, and their
 * parents must be directories of it.
 */
export interface Phases {
  readonly last: readonly string[];
  readonly add: readonly string[];
  readonly between: () => Promise<{ readonly files: ReadonlyMap<string, Buffer>; readonly capturedAt: Date }>;
}

export interface ReadWindow {
  /**
   * The bytes before this are as the parent snapshot has them (the log only
   * grows past where it was when the parent read it): the parent's blocks are
   * taken unread when the file is the same inode.
   */
  readonly from: number;
  /**
   * The bytes from here on are taken as zeros, unread: the log has not been
   * written there yet, and its reader stops where the zeros begin.
   */
  readonly to: number;
}

/** Files up to this size travel to the workers in batches; larger ones alone or in ranges. */
const SMALL = 1 * MiB;
/** A large file is cut into ranges of this size (fixed blocks only) so every worker reads a part. */
const RANGE = 8 * MiB;

/** A whole read of a large file that fingerprints its blocks: against the parent's, with their ids, when they describe its node. */
interface PrintedRead {
  readonly rel: string;
  readonly parent?: ParentBlocks & { readonly ids: Buffer };
}
/** Reads of a file that changes while it is read, before it is reported instead of stored. */
const READ_ATTEMPTS = 3;

/** Part of a file's read: block ids taken as they are (the parent's), or bytes to read. */
type PlanPart = { readonly ids: readonly string[] } | { readonly from: number; readonly to: number };

/** A read in parts, covering the file up to `to`; zeros after. */
interface ReadPlan {
  readonly parts: readonly PlanPart[];
  readonly to: number;
}

/** How one read of a file ended: its block ids, or why they cannot be used. */
type ReadOutcome =
  | { readonly kind: 'read'; readonly content: { blocks: string[] } | { lists: string[] } }
  | { readonly kind: 'error'; readonly message: string }
  | { readonly kind: 'changed'; readonly why: string };

/**
 * Walks a directory into a snapshot. Files whose size, mtime, ctime and inode
 * match the parent snapshot keep their block list unread; the others go to
 * the workers, which read, hash, and seal and pack the blocks the repository
 * lacks. The main thread walks, builds trees and commits what the workers
 * packed; the walk runs ahead of the workers by at most a few jobs.
 */
export async function backup(repo: Repository, opts: BackupOptions): Promise<Snapshot> {
  const started = performance.now();
  const source = path.resolve(opts.source);
  const rootStat = await fsp.lstat(source, { bigint: true }).catch((err: NodeJS.ErrnoException) => {
    throw new SourceError(`cannot back up ${source}: ${err.code === 'ENOENT' ? 'no such directory' : err.message}`);
  });
  if (!rootStat.isDirectory()) throw new SourceError(`cannot back up ${source}: not a directory`);

  if (opts.capture && (opts.phases || opts.windows)) throw new Error('a capture cannot be combined with phases or read windows');
  const lock = repo.lock('shared');
  const recordsBefore = new Set(listRecordIds(repo.dir));
  const writer = new BlobWriter(repo, opts.packSize);
  const archiver = new Archiver(repo, writer, opts);
  let capture: Capture | undefined;
  try {
    if (opts.capture) capture = archiver.captureWith(Capture.open(opts.capture, opts.splitter.kind === 'fixed' && opts.fingerprints ? opts.splitter.size : undefined, opts.pool));
    const lost = repo.forgetMissingPacks();
    if (lost.length > 0) {
      // What the lost packs held must come back from the source: every file is looked at, and
      // one whose blocks the index no longer has is read again, changed or not.
      archiver.vouchForContent();
      opts.onDamage?.(
        `${lost.length} packs the index named are missing from ${repo.dir} (${lost.slice(0, 3).join(', ')}${lost.length > 3 ? ', ...' : ''}): what they held is stored again from the source where it still is; older snapshots that used the rest are damaged until \`lifeboat repair\` fetches it from a peer (\`lifeboat verify\` names them)`,
      );
    }
    const parent = latestSnapshotOf(repo, opts.host, source);
    const parentRoot = parent ? (await archiver.parentTree(parent.tree, 'the parent snapshot\'s root'))?.nodes[0] : undefined;
    if (parentRoot && opts.changes?.mode === 'paths' && lost.length === 0) archiver.useJournal(opts.changes.paths, opts.changes.retain);
    else if (opts.changes?.retain) throw new ParentUnusableError(parent ? 'its parent snapshot cannot be read whole' : 'it has no parent snapshot');
    // A snapshot's time is when its data was captured: the read begins now, so nothing older is in it.
    let capturedAt = opts.capturedAt ?? new Date();
    const walked = await archiver.walkDir(source, '', path.basename(source) || 'root', rootStat, parentRoot);
    if (capture) await archiver.thaw(() => opts.capture!.thaw(capture!.stats));
    if (opts.phases) capturedAt = await archiver.secondPhase(opts.phases);
    const rootNode = await walked.done;
    faultPoint('backup-walked');
    const tree = archiver.saveTree({ nodes: [rootNode] });
    const meta = opts.meta === undefined ? null : archiver.saveMeta(opts.meta);
    for (const pack of await flushPacks(opts.pool)) archiver.commit(pack);
    writer.flush();
    faultPoint('index-committed');
    const files = rootNode.files ?? 0;
    const stats: SnapshotStats = {
      ...archiver.counts,
      files,
      dirs: (rootNode.dirs ?? 0) + 1,
      bytes_total: rootNode.bytes ?? 0,
      files_unchanged: files - archiver.counts.files_new - archiver.counts.files_changed,
      bytes_new: writer.stats.bytesNew,
      bytes_stored: writer.stats.bytesStored,
      blobs_new: writer.stats.blobsNew,
      duration_ms: Math.round(performance.now() - started),
    };
    const snapshot: Snapshot = {
      id: crypto.randomBytes(32).toString('hex'),
      time: capturedAt.toISOString(),
      host: opts.host,
      source,
      volume: opts.volume ?? null,
      parent: parent?.id ?? null,
      tree,
      meta,
      tags: [...(opts.tags ?? [])],
      splitter: opts.splitter,
      stats,
    };
    saveSnapshot(repo, snapshot);
    faultPoint('snapshot-saved');
    archiver.forgetUnseenFingerprints();
    return snapshot;
  } catch (err) {
    archiver.dropHeld(err);
    await archiver.settled();
    writer.abort();
    await resetPacks(opts.pool);
    // What it indexed goes too, when no one else can have used it: a full disk gets its room back.
    try {
      repo.discardSession(writer.committed, lock, recordsBefore);
    } catch {
      // the index may be what failed (a full disk): prune takes them back later
    }
    // Packs and index rows say so where they are written; this catches the snapshot row.
    throw noSpace(err, 'the snapshot');
  } finally {
    capture?.close();
    lock.release();
  }
}

/** What the walk counts itself; totals come from the root's aggregates, so a journalled walk need not visit everything. */
type Counts = Pick<SnapshotStats, 'files_new' | 'files_changed' | 'bytes_read' | 'errors' | 'examined'>;

/** Paths the journal names, and what follows from them for the walk. */
interface Journal {
  /** Changed files, and directories whose entries changed. */
  readonly dirty: ReadonlySet<string>;
  /** Directories to scan whole: the journal recorded them instead of their many changed entries. */
  readonly rescan: ReadonlySet<string>;
  /** Directories whose every entry is looked at (their watch rested), not below their subdirectories. */
  readonly restat: ReadonlySet<string>;
  /** Every directory above a dirty or rescanned path, the root included. */
  readonly above: ReadonlySet<string>;
  /** Entries of the parent kept when they are gone from disk. */
  readonly retain: (rel: string) => boolean;
}

function journalOf(paths: ReadonlySet<string>, retain: (rel: string) => boolean = () => false): Journal {
  const dirty = new Set<string>();
  const rescan = new Set<string>();
  const restat = new Set<string>();
  const dirOf = (p: string, marker: string) => (p === marker ? '' : p.endsWith(`/${marker}`) ? p.slice(0, -marker.length - 1) : undefined);
  for (const p of paths) {
    const whole = dirOf(p, RESCAN);
    const entries = dirOf(p, RESTAT);
    if (whole !== undefined) rescan.add(whole);
    else if (entries !== undefined) {
      restat.add(entries);
      dirty.add(entries);
    } else dirty.add(p);
  }
  const above = new Set<string>();
  for (const p of [...dirty, ...rescan]) {
    if (p === '') continue;
    above.add('');
    for (let i = p.indexOf('/'); i >= 0; i = p.indexOf('/', i + 1)) above.add(p.slice(0, i));
  }
  return { dirty, rescan, restat, above, retain };
}

const touched = (j: Journal, rel: string) => j.dirty.has(rel) || j.rescan.has(rel) || j.above.has(rel);
const childPath = (rel: string, name: string) => (rel === '' ? name : `${rel}/${name}`);

class Archiver {
  #excluded(rel: string): boolean {
    return (this.#opts.exclude ?? []).some((p) => matchesPattern(`/${rel}`, p));
  }

  readonly counts: { -readonly [K in keyof Counts]: Counts[K] } = { files_new: 0, files_changed: 0, bytes_read: 0, errors: 0, examined: 0 };
  #journal: Journal | undefined;
  #capture: Capture | undefined;
  /** Lets the jobs held while the containers are frozen go (or fail them: the walk failed). */
  #release: ((failed?: unknown) => void) | undefined;
  /** Settles when the containers run again (or the walk failed): what waits for it reads the copies. */
  readonly #thawed = Promise.withResolvers<void>();
  /** Unchanged files count as such only when the index has every block they name (the repository lost some). */
  #vouch = false;
  /** The files of more than a block (those that can have fingerprints) that the walk found. */
  readonly #large = new Set<string>();
  readonly #tolerant: { tolerant?: true };
  /** Every file's read (its node's promise), for a first phase to end on. */
  readonly #reads: Promise<unknown>[] = [];
  /** The second phase: what it reads and adds, by parent directory, and when it may begin. */
  readonly #later: { readonly byDir: Map<string, string[]>; readonly last: Set<string>; readonly files: Map<string, Buffer>; readonly open: Later<void> & { go(): void } } | undefined;
  readonly #repo: Repository;
  readonly #writer: BlobWriter;
  readonly #opts: BackupOptions;
  readonly #jobs: JobBatcher<StoreItem, StoreResult>;
  #lastProgress = 0;

  constructor(repo: Repository, writer: BlobWriter, opts: BackupOptions) {
    this.#repo = repo;
    this.#writer = writer;
    this.#opts = opts;
    this.#jobs = new JobBatcher((items) => this.#store(items), opts.pool.depth);
    this.#tolerant = opts.tolerateChanges ? { tolerant: true } : {};
    if (opts.phases) {
      const byDir = new Map<string, string[]>();
      for (const p of [...opts.phases.last, ...opts.phases.add]) {
        const parent = path.posix.dirname(p) === '.' ? '' : path.posix.dirname(p);
        byDir.set(parent, [...(byDir.get(parent) ?? []), p]);
      }
      let go!: () => void;
      const done = new Promise<void>((resolve) => (go = resolve));
      this.#later = { byDir, last: new Set(opts.phases.last), files: new Map(), open: { done, go } };
    }
  }

  /**
   * Ends the first phase (every file dispatched so far read), runs between(),
   * and lets the second phase go; returns when the data was captured.
   */
  async secondPhase(phases: Phases): Promise<Date> {
    await this.#jobs.flush();
    await Promise.allSettled(this.#reads);
    const { files, capturedAt } = await phases.between();
    for (const [p, content] of files) this.#later!.files.set(p, content);
    this.#later!.open.go();
    return capturedAt;
  }

  /** From here on, files are copied as they are found and read after thaw(). */
  captureWith(capture: Capture): Capture {
    this.#capture = capture;
    this.#release = this.#jobs.hold();
    return capture;
  }

  /** Every file is captured: the containers run again while the copies are read. */
  async thaw(thaw: () => Promise<void>): Promise<void> {
    await thaw();
    this.#release?.();
    this.#release = undefined;
    this.#thawed.resolve();
  }

  /** The walk failed while jobs were held: they fail too, unread. */
  dropHeld(err: unknown): void {
    this.#release?.(err);
    this.#release = undefined;
    this.#thawed.promise.catch(() => {}); // what waited on it fails through the walk
    this.#thawed.reject(err);
  }

  /** From here on, walk only what the journal names (the rest is the parent's). */
  useJournal(paths: ReadonlySet<string>, retain?: (rel: string) => boolean): void {
    this.#journal = journalOf(paths, retain);
  }

  vouchForContent(): void {
    this.#vouch = true;
  }

  /** After a walk of every file: the fingerprints of files it did not find (removed, shrunk, excluded) go. */
  forgetUnseenFingerprints(): void {
    if (this.#journal === undefined && this.#opts.fingerprints) keepOnlyBlocks(this.#opts.fingerprints, this.#large);
  }

  /**
   * A tree of the parent snapshot, or undefined when the repository cannot
   * give it (damaged or lost): the backup goes on as if there were no parent
   * there, reading what is below, and says so. A damaged parent must not stop
   * every backup after it.
   */
  async parentTree(id: BlobId, where: string): Promise<Tree | undefined> {
    try {
      return await this.loadTree(id, where);
    } catch (err) {
      if (!(err instanceof CorruptIndexError || err instanceof CorruptDataError)) throw err;
      this.#opts.onDamage?.(`${where} cannot be read (${err.message}): backed up as new, without comparing`);
      return undefined;
    }
  }

  /** Resolves once no worker job is in flight. */
  settled(): Promise<void> {
    return this.#jobs.settled();
  }

  async loadTree(id: BlobId, where: string): Promise<Tree> {
    return decodeTree(await this.#repo.loadBlob(id, BlobType.tree), where);
  }

  saveTree(tree: Tree): BlobId {
    return this.#saveBlob(BlobType.tree, encodeTree(tree), () => treeRefs(tree));
  }

  saveMeta(meta: unknown): BlobId {
    return this.#saveBlob(BlobType.meta, Buffer.from(JSON.stringify(meta)));
  }

  /** Trees, lists and meta are sealed here on the main thread: they are few and small. `refs`: what the blob names, for its pack's trailer. */
  #saveBlob(type: BlobType, plain: Buffer, refs?: () => readonly BlobId[]): BlobId {
    const id = blobId(this.#repo.keys, plain);
    if (!this.#writer.has(id)) this.#writer.add(id, type, seal(this.#repo.keys, id, type, plain, { level: this.#opts.compressionLevel }), plain.length, refs?.());
    return id;
  }

  commit(pack: PackReport): void {
    this.#writer.commit({ name: pack.name, size: pack.size, entries: entriesFromTrailer(pack.name, pack.size, pack.trailer) });
    acknowledgePack(this.#opts.pool, pack.name);
  }

  /**
   * Reads a directory and hands its files to the workers. Resolves once the
   * walk below it is dispatched, with a promise of its finished node, so
   * siblings are walked while earlier files are still being stored. With a
   * journal, an untouched entry is the parent's node as it was, unvisited;
   * a directory only above changes is not even listed. `whole` turns the
   * journal off below a directory it asked to rescan.
   */
  async walkDir(dir: string, rel: string, name: string, stat: FileStat, previous: TreeNode | undefined, whole = false): Promise<Later<TreeNode>> {
    const j = whole || previous?.type !== 'dir' || previous.files === undefined ? undefined : this.#journal;
    if (j?.rescan.has(rel)) return this.walkDir(dir, rel, name, stat, previous, true);
    // a directory with second-phase entries is read again whatever the journal says: they are new every time
    if (j && !touched(j, rel) && this.#reusable(previous!) && !this.#later?.byDir.has(rel)) return { done: Promise.resolve(previous!) };
    const before = new Map<string, TreeNode>();
    if (previous?.type === 'dir' && previous.subtree) {
      const parent = await this.parentTree(Buffer.from(previous.subtree, 'hex') as BlobId, `the parent snapshot's tree of ${dir}`);
      // without the parent's entries the journal cannot say what is here: look at all of it
      if (!parent) return this.walkDir(dir, rel, name, stat, undefined, true);
      for (const n of parent.nodes) before.set(n.name, n);
    }
    // Metadata calls are synchronous: from the dentry cache they cost microseconds,
    // a tenth of a promise round trip, and the walk of a million files is made of them.
    let names: string[];
    if (j && !j.dirty.has(rel)) {
      names = [...before.keys()]; // only below changes: this directory's entries are as they were
    } else {
      try {
        names = fs.readdirSync(dir);
      } catch (err) {
        this.#warn(dir, err as Error);
        names = [];
      }
      if (j) names.push(...[...before.keys()].filter((n) => !names.includes(n) && j.retain(childPath(rel, n))));
      names.sort();
    }
    const pending: Promise<TreeNode | undefined>[] = [];
    const later = this.#later?.byDir.get(rel);
    for (const child of names) {
      const full = path.join(dir, child);
      const cRel = childPath(rel, child);
      if (later?.includes(cRel) || this.#excluded(cRel)) continue;
      const prev = before.get(child);
      if (j && prev && !touched(j, cRel) && !j.restat.has(rel) && this.#reusable(prev)) {
        pending.push(Promise.resolve(prev));
        continue;
      }
      let st: FileStat;
      try {
        this.counts.examined++;
        st = fs.lstatSync(full, { bigint: true });
      } catch (err) {
        if (j && prev && (err as NodeJS.ErrnoException).code === 'ENOENT' && j.retain(cRel) && this.#reusable(prev)) pending.push(Promise.resolve(prev));
        else this.#warn(full, err as Error);
        continue;
      }
      if (st.isDirectory()) pending.push((await this.walkDir(full, cRel, child, st, prev, whole)).done);
      else if (st.isFile()) pending.push((await this.#file(full, cRel, st, prev)).done);
      else pending.push(this.#special(full, child, st));
    }
    if (later) {
      for (const p of later) {
        const n = this.#later!.open.done.then(() => this.#secondPhaseNode(dir, p, before.get(path.posix.basename(p))));
        n.catch(() => {});
        pending.push(n);
      }
    }
    await this.#jobs.flush();
    const done = Promise.all(pending).then((nodes) => {
      const tree = { nodes: nodes.filter((n): n is TreeNode => n !== undefined).sort(byName) };
      return nodeFromStat(name, 'dir', stat, { subtree: toHex(this.saveTree(tree)), ...aggregate(tree.nodes) });
    });
    done.catch(() => {});
    return { done };
  }

  /** A `last` entry read now, or an `add` file made from what between() gave; undefined when there is none. */
  async #secondPhaseNode(dir: string, rel: string, previous: TreeNode | undefined): Promise<TreeNode | undefined> {
    const name = path.posix.basename(rel);
    const full = path.join(dir, name);
    const added = this.#later!.files.get(rel);
    if (!this.#later!.last.has(rel)) return added === undefined ? undefined : this.#addedFile(name, added, fs.lstatSync(dir, { bigint: true }));
    let st: FileStat;
    try {
      st = fs.lstatSync(full, { bigint: true });
    } catch {
      return undefined; // not there (yet): nothing to read
    }
    if (st.isDirectory()) return (await this.walkDir(full, rel, name, st, previous, true)).done;
    if (st.isFile()) return (await this.#file(full, rel, st, previous)).done;
    return this.#special(full, name, st);
  }

  /** A file that is not on disk (a database's backup_label): owned as its directory, 0600, stored as one block. */
  #addedFile(name: string, content: Buffer, dirStat: FileStat): TreeNode {
    const id = toHex(this.#saveBlob(BlobType.data, content));
    const now = String(BigInt(Date.now()) * 1_000_000n);
    return {
      name,
      type: 'file',
      mode: 0o600,
      uid: Number(dirStat.uid),
      gid: Number(dirStat.gid),
      mtime: now,
      ctime: now,
      ino: '0',
      dev: '0',
      nlink: 1,
      size: content.length,
      blocks: content.length === 0 ? [] : [id],
    };
  }

  async #special(full: string, name: string, st: FileStat): Promise<TreeNode | undefined> {
    if (st.isSymbolicLink()) {
      try {
        return nodeFromStat(name, 'symlink', st, { target: fs.readlinkSync(full) });
      } catch (err) {
        this.#warn(full, err as Error);
        return undefined;
      }
    }
    const type = st.isFIFO() ? 'fifo' : st.isCharacterDevice() ? 'chardev' : st.isBlockDevice() ? 'blockdev' : 'socket';
    return nodeFromStat(name, type, st, { rdev: Number(st.rdev) });
  }

  /** Dispatches a file's reading; resolves (once dispatched) with a promise of its node. */
  async #file(full: string, rel: string, st: FileStat, before: TreeNode | undefined): Promise<Later<TreeNode | undefined>> {
    const name = path.posix.basename(rel);
    const size = Number(st.size);
    if (size > this.#opts.splitter.size && this.#opts.fingerprints && !this.#journal) this.#large.add(rel);
    const window = this.#windowOf(rel, st);
    if (
      window === undefined &&
      before?.type === 'file' &&
      before.size === size &&
      before.mtime === String(st.mtimeNs) &&
      before.ctime === String(st.ctimeNs) &&
      before.ino === String(st.ino) &&
      (!this.#vouch || (await this.#contentPresent(before)))
    ) {
      return { done: Promise.resolve(nodeFromStat(name, 'file', st, { blocks: before.blocks, lists: before.lists })) };
    }
    if (this.#capture) return this.#captured(full, rel, st, before);
    const prints = window ? undefined : await this.#printed(rel, size, before);
    const first = await this.#readOnce(full, st, true, window && (await this.#plan(window, st, before)), prints);
    const node = this.#settle(full, rel, st, before, first.done, prints);
    node.catch(() => {});
    if (this.#later) this.#reads.push(node);
    return { done: node };
  }

  /** A file's read window, when it has one that applies: fixed blocks, and larger than a batch. */
  #windowOf(rel: string, st: FileStat): ReadWindow | undefined {
    const window = this.#opts.windows?.get(rel);
    return window && this.#opts.splitter.kind === 'fixed' && Number(st.size) > SMALL ? window : undefined;
  }

  /**
   * Copies a file while the containers are frozen (its read, of the copy,
   * comes after the thaw): whole, or the blocks whose fingerprints differ
   * from the parent's, whose ids the rest keeps. A reflink clone is read
   * after the thaw like a file in place, its fingerprints compared as it is.
   * Nothing but the copy happens before it: the parent's ids are looked up after.
   */
  async #captured(full: string, rel: string, st: FileStat, before: TreeNode | undefined): Promise<Later<TreeNode | undefined>> {
    const capture = this.#capture!;
    const store = this.#opts.fingerprints;
    const block = this.#opts.splitter.size;
    // the repository lost packs: what the parent had may be gone, so nothing is taken from it unread
    const parent = this.#vouch || !store || this.#opts.splitter.kind !== 'fixed' ? undefined : parentBlocks(store, block, rel, before);
    let file: CapturedFile | undefined;
    try {
      file = await capture.take(full, st, parent);
    } catch (err) {
      // gone or unreadable (a system error): as if the walk had not found it; anything else ends the backup
      if (err instanceof LifeboatError || typeof (err as NodeJS.ErrnoException).code !== 'string') throw err;
      this.#warn(full, err as Error);
      return { done: Promise.resolve(undefined) };
    }
    if (!file) {
      const kept = before ? 'kept as it was in the parent snapshot' : 'left out of the snapshot';
      this.#warn(full, new Error(`changed while it was copied, though its containers were frozen (another writer?); ${kept}`));
      return { done: Promise.resolve(before) };
    }
    const copy = file;
    const size = Number(copy.stat.size);
    // resolves once the read is dispatched, with its node to come
    const dispatch = async (how: { kept?: Uint8Array; hashes?: Buffer; prints?: PrintedRead }, shared: boolean): Promise<{ node: Promise<TreeNode | undefined> }> => {
      let plan: ReadPlan | undefined;
      if (how.kept?.includes(1)) {
        const ids = await this.#parentIds(before!);
        if (ids?.length !== parent!.hashes.length / 8) {
          this.#warn(full, new Error("the parent snapshot's blocks it kept could not be found in the repository; kept as it was in the parent snapshot"));
          return { node: Promise.resolve(before) };
        }
        plan = keptPlan(how.kept, ids, block, size);
      }
      const first = await this.#readOnce(copy.path, copy.seen, shared, plan, how.prints);
      const outcome = first.done.then((o) => {
        if (o.kind === 'read' && how.hashes) rememberBlocks(store!, block, rel, o.content, how.hashes);
        return o;
      });
      return { node: this.#settle(full, rel, copy.stat, before, outcome, how.prints) };
    };
    const afterThaw = (how: () => Promise<{ kept?: Uint8Array; hashes?: Buffer; prints?: PrintedRead }>) =>
      // after the walk, which has sent its last shared job by then: each read alone
      this.#thawed.promise.then(async () => (await dispatch(await how(), false)).node);
    const printed = async () => {
      const prints = await this.#printed(rel, size, before);
      return prints ? { prints } : {};
    };
    const node = (copy.reflinked ? afterThaw(printed) : copy.kept ? afterThaw(async () => copy) : (await dispatch(copy, true)).node).finally(() => capture.release(copy));
    node.catch(() => {});
    return { done: node };
  }

  /**
   * What of a file is read through its window: the parent's ids of the whole
   * blocks before `from` (when every one is in the index, and the file is the
   * same inode), and the blocks up to the one holding `to`; zeros after.
   */
  async #plan(window: ReadWindow, st: FileStat, before: TreeNode | undefined): Promise<ReadPlan> {
    const block = this.#opts.splitter.size;
    const size = Number(st.size);
    const to = Math.min(size, Math.ceil(Math.max(window.to, 0) / block) * block);
    const count = Math.floor(Math.min(window.from, to, before?.size ?? 0) / block);
    const whole = { parts: [{ from: 0, to }], to };
    if (count <= 0 || before?.type !== 'file' || before.ino !== String(st.ino)) return whole;
    const kept = await this.#parentIds(before, count);
    // the parent's list is damaged or its blocks gone: read from the start
    return kept?.length === count ? { parts: [{ ids: kept }, { from: count * block, to }], to } : whole;
  }

  /**
   * How a large file's whole read fingerprints its blocks, when the source
   * keeps fingerprints (fixed blocks only): against the parent's, when they
   * describe its node and its block list loads.
   */
  async #printed(rel: string, size: number, before: TreeNode | undefined): Promise<PrintedRead | undefined> {
    const store = this.#opts.fingerprints;
    const { kind, size: block } = this.#opts.splitter;
    if (!store || kind !== 'fixed' || size <= SMALL) return undefined;
    // the repository lost packs: what the parent had may be gone, so nothing is taken from it unread;
    // otherwise its blocks are as present as an unchanged file's, which are taken unchecked
    const parent = this.#vouch ? undefined : parentBlocks(store, block, rel, before);
    const ids = parent && (await this.#parentIds(before!, Infinity, false));
    return parent && ids?.length === parent.hashes.length / 8 ? { rel, parent: { ...parent, ids: Buffer.from(ids.join(''), 'hex') } } : { rel };
  }

  /** The parent's block ids of a file (its first `limit`), when its lists load and (`checked`) the index has every one. */
  async #parentIds(before: TreeNode, limit = Infinity, checked = true): Promise<string[] | undefined> {
    const ids: string[] = [];
    try {
      for await (const group of blockGroups((id, type) => this.#repo.loadBlob(id, type), before, before.name)) {
        ids.push(...group.slice(0, limit - ids.length));
        if (ids.length === limit) break;
      }
    } catch (err) {
      if (!(err instanceof CorruptIndexError || err instanceof CorruptDataError)) throw err;
      return undefined;
    }
    return !checked || ids.every((hex) => this.#indexed(hex)) ? ids : undefined;
  }

  /** The id of a block of `length` zeros, stored if the repository lacks it. */
  #zeros(length: number): string {
    return toHex(this.#saveBlob(BlobType.data, Buffer.alloc(length)));
  }

  #indexed(hex: string): boolean {
    return this.#writer.has(Buffer.from(hex, 'hex') as BlobId);
  }

  /** An entry the journal says is untouched is taken as it was, unless it is a directory whose tree the index lost. */
  #reusable(node: TreeNode): boolean {
    return node.type !== 'dir' || node.subtree === undefined || this.#indexed(node.subtree);
  }

  /** Whether the index has every block (and list) an unchanged file names. */
  async #contentPresent(node: TreeNode): Promise<boolean> {
    const has = (hex: string) => this.#indexed(hex);
    if (node.blocks) return node.blocks.every(has);
    for (const hex of node.lists ?? []) {
      if (!has(hex)) return false;
      if (!decodeList(await this.#repo.loadBlob(Buffer.from(hex, 'hex') as BlobId, BlobType.list), node.name).every(has)) return false;
    }
    return true;
  }

  /**
   * A file's node once its read is in. Every part of the read checked that it
   * read the very file the lstat saw, unchanged from its open to its end; a
   * file that changed meanwhile is read again from a fresh lstat (the blocks
   * the failed read stored are merely unreferenced, for prune). After
   * READ_ATTEMPTS reads that each saw a change it is reported, and the snapshot
   * keeps the entry the parent snapshot has, which existed, or leaves it out:
   * never blocks of versions that did not coexist, nor content under the
   * metadata of another version.
   */
  async #settle(full: string, rel: string, st: FileStat, before: TreeNode | undefined, first: Promise<ReadOutcome>, prints?: PrintedRead): Promise<TreeNode | undefined> {
    const name = path.posix.basename(rel);
    let stat = st;
    let outcome = await first;
    for (let reads = 1; outcome.kind === 'changed' && reads < READ_ATTEMPTS; reads++) {
      try {
        stat = fs.lstatSync(full, { bigint: true });
      } catch (err) {
        this.#warn(full, err as Error); // gone: as if the walk had not found it
        return undefined;
      }
      if (!stat.isFile()) {
        if (!stat.isDirectory()) return this.#special(full, name, stat); // what is there now, whole
        outcome = { kind: 'changed', why: 'replaced by a directory' };
        break;
      }
      // A job of its own: the walk may have sent its last shared batch already.
      const window = this.#windowOf(rel, stat);
      outcome = await (await this.#readOnce(full, stat, false, window && (await this.#plan(window, stat, before)), window ? undefined : prints)).done;
    }
    if (outcome.kind === 'error') {
      this.#warn(full, new Error(outcome.message));
      return undefined;
    }
    if (outcome.kind === 'changed') {
      const kept = before ? 'kept as it was in the parent snapshot' : 'left out of the snapshot';
      this.#warn(full, new Error(`changed while it was read (${READ_ATTEMPTS} reads, the last: ${outcome.why}); ${kept}`));
      return before;
    }
    if (before) this.counts.files_changed++;
    else this.counts.files_new++;
    // Every part found the file as this lstat saw it: size, times and content are one version.
    return nodeFromStat(name, 'file', stat, outcome.content);
  }

  /**
   * Reads a file once, as `st` saw it: resolves once its parts are dispatched,
   * with a promise of the outcome. Each part's ids are taken as it completes,
   * in order, not gathered: memory holds the parts in flight and one list of
   * ids, whatever the file's size. Once a part found the file changed (or
   * unreadable), the rest of it is not dispatched, and ids are no longer taken.
   * A whole read with `prints` keeps the fingerprints it took.
   */
  async #readOnce(full: string, st: FileStat, shared: boolean, plan?: ReadPlan, prints?: PrintedRead): Promise<Later<ReadOutcome>> {
    const content = new BlockListBuilder((list) => toHex(this.#saveBlob(BlobType.list, list, () => listRefs(list))));
    const block = this.#opts.splitter.size;
    const hashes: Uint8Array[] = [];
    let failed: ReadOutcome | undefined;
    let taken: Promise<void> = Promise.resolve();
    const take = (part: Promise<StoreResult>) => {
      taken = taken.then(() => part).then((r) => {
        if (r.changed !== null) {
          if (failed?.kind !== 'changed') failed = { kind: 'changed', why: r.changed }; // read again, whatever else failed
        } else if (r.error !== null) {
          failed ??= { kind: 'error', message: r.error };
        } else if (failed === undefined) {
          for (let o = 0; o < r.ids.length; o += BLOB_ID_BYTES) content.add(toHex(r.ids.subarray(o, o + BLOB_ID_BYTES)));
          if (r.hashes) hashes.push(r.hashes);
        }
      });
      // When a part fails, the read stops dispatching and throws (pace) before `done` is made: not an unhandled rejection
      // (that ends the process, and an abandoned backup's containers with it); the failure reaches the walk through the batcher.
      taken.catch(() => {});
    };
    const size = Number(st.size);
    const to = plan?.to ?? size;
    for (const part of plan?.parts ?? [{ from: 0, to: size }]) {
      if (failed !== undefined) break;
      if ('ids' in part) {
        taken = taken.then(() => {
          if (failed === undefined) for (const id of part.ids) content.add(id);
        });
      } else await this.#read(full, st, shared, take, () => failed !== undefined, part, plan ? undefined : prints);
    }
    if (to < size) {
      const zero = this.#zeros(block);
      const last = (size - to) % block;
      taken = taken.then(() => {
        if (failed !== undefined) return;
        for (let at = to; at + block <= size; at += block) content.add(zero);
        if (last > 0) content.add(this.#zeros(last));
      });
    }
    const done = taken.then((): ReadOutcome => {
      if (failed) return failed;
      const read = content.finish();
      const all = prints && Buffer.concat(hashes);
      if (all?.length === Math.ceil(size / block) * 8) rememberBlocks(this.#opts.fingerprints!, block, prints!.rel, read, all);
      return { kind: 'read', content: read };
    });
    done.catch(() => {});
    return { done };
  }

  /**
   * Splits a range of a file into worker items: a small file whole, batched
   * with others (`shared`); else ranges (fixed blocks) or the file alone;
   * hands each to `take` once dispatched, until `stop`. Every item carries what the lstat saw, for the
   * worker to compare with what it opens, and its part of `prints`.
   */
  async #read(full: string, st: FileStat, shared: boolean, take: (part: Promise<StoreResult>) => void, stop: () => boolean, range: { from: number; to: number }, prints?: PrintedRead): Promise<void> {
    const size = Number(st.size);
    const seen: SeenFile = { dev: st.dev, ino: st.ino, size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs };
    if (size <= SMALL && range.from === 0 && range.to === size) {
      const item: StoreItem = { path: full, start: 0, end: size, seen, ...this.#tolerant };
      take(shared ? this.#jobs.add(item, size) : this.#jobs.alone(item));
      await this.#jobs.pace();
      return;
    }
    const { kind, size: block } = this.#opts.splitter;
    const step = kind === 'fixed' ? Math.max(block, RANGE - (RANGE % block)) : Infinity;
    for (let start = range.from; start < range.to && !stop(); start += step) {
      const end = Math.min(start + step, range.to);
      take(this.#jobs.alone({ path: full, start, end, seen, ...this.#tolerant, ...(prints && kind === 'fixed' ? { prints: itemPrints(prints, start / block, Math.ceil(end / block)) } : {}) }));
      await this.#jobs.pace();
    }
  }

  /** One worker job; commits the packs the worker finished meanwhile. */
  async #store(items: StoreItem[]): Promise<readonly StoreResult[]> {
    const reply = await storeFiles(this.#opts.pool, this.#opts.splitter, items);
    for (const pack of reply.packs) this.commit(pack);
    for (const r of reply.results) this.counts.bytes_read += r.bytesRead;
    this.#progress();
    return reply.results;
  }

  #warn(p: string, err: Error): void {
    this.counts.errors++;
    this.#opts.onWarning?.(p, err);
  }

  #progress(): void {
    const now = performance.now();
    if (!this.#opts.onProgress || now - this.#lastProgress < 200) return;
    this.#lastProgress = now;
    this.#opts.onProgress({ files: this.counts.files_new + this.counts.files_changed, bytesRead: this.counts.bytes_read, bytesNew: this.#writer.stats.bytesNew });
  }
}

/** A range's part of a file's fingerprints, blocks `from` to `to` (copied: a view would carry its whole buffer to the worker). */
function itemPrints(prints: PrintedRead, from: number, to: number): ItemPrints {
  const p = prints.parent;
  if (!p) return { parent: null, ids: null, parentSize: 0 };
  return { parent: new Uint8Array(p.hashes.subarray(from * 8, to * 8)), ids: new Uint8Array(p.ids.subarray(from * BLOB_ID_BYTES, to * BLOB_ID_BYTES)), parentSize: p.size };
}

/** A captured file's read: runs of the parent's block ids where the copy left holes, of the copy's bytes elsewhere. */
function keptPlan(kept: Uint8Array, ids: readonly string[], block: number, size: number): ReadPlan {
  const parts: PlanPart[] = [];
  for (let i = 0; i < kept.length; ) {
    let j = i;
    while (j < kept.length && kept[j] === kept[i]) j++;
    parts.push(kept[i] ? { ids: ids.slice(i, j) } : { from: i * block, to: Math.min(j * block, size) });
    i = j;
  }
  return { parts, to: size };
}

/** A directory's totals, from its entries': a reused subtree brings its own, so totals need no full walk. */
function aggregate(nodes: readonly TreeNode[]): { files: number; dirs: number; bytes: number } {
  let files = 0;
  let dirs = 0;
  let bytes = 0;
  for (const n of nodes) {
    if (n.type === 'dir') {
      files += n.files ?? 0;
      dirs += (n.dirs ?? 0) + 1;
      bytes += n.bytes ?? 0;
    } else {
      files++;
      bytes += n.size;
    }
  }
  return { files, dirs, bytes };
}

/** A backup that keeps entries of its parent found the parent unusable; the caller backs up whole instead. Never reaches a user. */
export class ParentUnusableError extends Error {
  constructor(why: string) {
    super(`the backup cannot keep entries of its parent: ${why}`);
    this.name = 'ParentUnusableError';
  }
}
