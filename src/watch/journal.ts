import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { AgentCatalog } from '../catalog/agent-catalog.ts';
import { JournalStore } from './journal-store.ts';
import { RESCAN, RESTAT } from './rescan.ts';
import { TreeWatcher } from './tree-watcher.ts';

/**
 * What a backup may rely on from the journal. `paths` mode lists, relative to
 * the volume root with '/' separators, every file that changed and every
 * directory whose entries changed since the last committed take; anything
 * not at or above those paths is as the parent snapshot has it. `full` mode
 * means the journal cannot vouch for anything: scan the whole volume.
 */
export interface JournalTake {
  readonly mode: 'full' | 'paths';
  readonly paths: ReadonlySet<string>;
  /** Why a full scan: "agent started", "watcher error: ...", "overflow", "periodic full scan", ... */
  readonly reason: string | null;
  /** The snapshot is committed: forget what this take covered (changes since the take stay). */
  commit(): void;
}

export interface JournalStatus {
  readonly watching: boolean;
  readonly trusted: boolean;
  readonly reason: string | null;
  /** Changed paths waiting for the next backup. */
  readonly dirty: number;
  readonly lastFullScan: string | null;
}

export interface JournalOptions {
  readonly catalog: AgentCatalog;
  readonly log: Logger;
  /** Changes are gathered this long before they are recorded (Syncthing's aggregation delay). */
  readonly aggregateMs: number;
  /** Most paths remembered per volume; beyond that the journal gives up until the next full scan. */
  readonly maxPaths: number;
  readonly fullScanIntervalMs: number;
  readonly now?: () => Date;
}

/** More changed entries than this in one directory in one batch: record the directory instead. */
const DIR_CAP = 100;


interface Watch {
  readonly mountpoint: string;
  readonly watcher: TreeWatcher;
  ready: boolean;
  /** Bumped whenever the journal loses track (start, error, overflow): a take from an older epoch cannot restore trust. */
  epoch: number;
  pending: Set<string>;
  timer: NodeJS.Timeout | undefined;
}

/**
 * The change journal: a watcher (inotify, one watch per directory) on each tracked
 * volume's mountpoint, recording changed paths in the agent catalog so that an
 * incremental backup examines only those. Changes are aggregated for a
 * moment and capped per directory, as Syncthing's watcher does; anything the
 * journal cannot vouch for (a restart, a watcher error such as running out of
 * inotify watches, an overflow, a full scan falling due) turns the next take
 * into a full scan, and only a full scan that saw no such event restores
 * trust. Emits 'changed' (volume, dirtyCount) after each recorded batch.
 */
export class ChangeJournal extends EventEmitter {
  readonly #opts: JournalOptions;
  readonly #store: JournalStore;
  readonly #watches = new Map<string, Watch>();
  readonly #now: () => Date;

  constructor(opts: JournalOptions) {
    super();
    this.#opts = opts;
    this.#store = new JournalStore(opts.catalog.unsyncedDb);
    this.#now = opts.now ?? (() => new Date());
  }

  async watch(volume: string, mountpoint: string): Promise<void> {
    await this.unwatch(volume);
    // Whatever was recorded before, changes made while nobody watched are unknown.
    this.#store.distrust(volume, 'agent started');
    // a hot directory's watch rests as long as changes are gathered: it delays nothing
    const watcher = new TreeWatcher(mountpoint, { restMs: this.#opts.aggregateMs });
    const w: Watch = { mountpoint, watcher, ready: false, epoch: 1, pending: new Set(), timer: undefined };
    this.#watches.set(volume, w);
    watcher.on('change', (rel: string, listing: boolean) => this.#note(volume, w, rel, listing));
    watcher.on('rested', (dir: string) => this.#note(volume, w, restatOf(dir), false));
    let failed = false;
    watcher.on('error', (err: NodeJS.ErrnoException) => {
      failed = true;
      this.#failed(volume, w, err);
    });
    watcher.start();
    w.ready = !failed;
  }

  async unwatch(volume: string): Promise<void> {
    const w = this.#watches.get(volume);
    if (!w) return;
    this.#watches.delete(volume);
    clearTimeout(w.timer);
    w.watcher.close();
  }

  take(volume: string): JournalTake {
    const w = this.#watches.get(volume);
    if (w) this.#flush(volume, w);
    const state = this.#store.state(volume);
    const upTo = this.#store.lastSeq();
    const epoch = w?.epoch;
    const due =
      state.lastFullScan === null || this.#now().getTime() - Date.parse(state.lastFullScan) >= this.#opts.fullScanIntervalMs;
    const reason = !w ? 'not watched' : !w.ready ? 'watcher not ready' : !state.trusted ? state.reason ?? 'untrusted' : due ? 'periodic full scan' : null;
    const forget = () => this.#store.forget(volume, upTo);
    if (reason !== null) {
      return {
        mode: 'full',
        paths: new Set(),
        reason,
        commit: () => {
          forget();
          // Trust again only if the watcher saw every change since before the scan began.
          const now = this.#watches.get(volume);
          if (now === w && w?.ready && w.epoch === epoch) this.#store.trust(volume, this.#now().toISOString());
        },
      };
    }
    return { mode: 'paths', paths: this.#store.paths(volume, upTo), reason: null, commit: forget };
  }

  status(volume: string): JournalStatus {
    const w = this.#watches.get(volume);
    const s = this.#store.state(volume);
    return { watching: w !== undefined, trusted: s.trusted, reason: s.reason, dirty: this.#store.count(volume) + (w?.pending.size ?? 0), lastFullScan: s.lastFullScan };
  }

  async close(): Promise<void> {
    for (const volume of [...this.#watches.keys()]) {
      const w = this.#watches.get(volume)!;
      this.#flush(volume, w);
      await this.unwatch(volume);
    }
  }

  #note(volume: string, w: Watch, rel: string, listing: boolean): void {
    w.pending.add(rel);
    // A created or removed entry changes its directory's listing too.
    if (listing && rel !== '') w.pending.add(parentOf(rel));
    if (w.pending.size > this.#opts.maxPaths) return this.#overflow(volume, w);
    w.timer ??= setTimeout(() => this.#flush(volume, w), this.#opts.aggregateMs);
  }

  #flush(volume: string, w: Watch): void {
    clearTimeout(w.timer);
    w.timer = undefined;
    if (w.pending.size === 0) return;
    const batch = capPerDirectory(w.pending);
    w.pending = new Set();
    if (this.#store.count(volume) + batch.size > this.#opts.maxPaths) return this.#overflow(volume, w);
    this.#store.record(volume, batch);
    this.emit('changed', volume, this.#store.count(volume));
  }

  #overflow(volume: string, w: Watch): void {
    clearTimeout(w.timer);
    w.timer = undefined;
    w.pending = new Set();
    w.epoch++;
    this.#store.distrust(volume, `overflow: more than ${this.#opts.maxPaths} changed paths`);
    this.#opts.log.warn({ volume, maxPaths: this.#opts.maxPaths }, 'change journal overflowed; the next backup scans the whole volume');
    this.emit('changed', volume, this.#opts.maxPaths);
  }

  #failed(volume: string, w: Watch, err: NodeJS.ErrnoException): void {
    w.epoch++;
    const exhausted = err.code === 'ENOSPC' || err.code === 'EMFILE';
    const reason = exhausted ? `out of inotify watches (${err.code})` : `watcher error: ${err.message}`;
    this.#store.distrust(volume, reason);
    if (exhausted) {
      this.#opts.log.error(
        { volume, code: err.code },
        'out of inotify watches: raise fs.inotify.max_user_watches (sysctl); until then this volume is backed up by full scans',
      );
    } else {
      this.#opts.log.error({ volume, err: err.message }, 'change journal watcher failed; this volume falls back to full scans');
    }
    // A watcher that failed once may have missed anything: stop trusting it at all.
    void this.unwatch(volume);
  }
}

function parentOf(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '' : rel.slice(0, i);
}

/**
 * A directory with more than DIR_CAP changed entries in one batch is recorded
 * as a rescan of its whole subtree, which also covers changes below the
 * entries it replaces (as Syncthing falls back to scanning the parent).
 */
function capPerDirectory(paths: Set<string>): Set<string> {
  const perDir = new Map<string, number>();
  for (const p of paths) if (p !== '') perDir.set(parentOf(p), (perDir.get(parentOf(p)) ?? 0) + 1);
  const crowded = new Set([...perDir].filter(([, n]) => n > DIR_CAP).map(([d]) => d));
  if (crowded.size === 0) return paths;
  const out = new Set<string>();
  for (const p of paths) out.add(p !== '' && crowded.has(parentOf(p)) ? rescanOf(parentOf(p)) : p);
  return out;
}

const rescanOf = (dir: string): string => (dir === '' ? RESCAN : `${dir}/${RESCAN}`);
const restatOf = (dir: string): string => (dir === '' ? RESTAT : `${dir}/${RESTAT}`);
