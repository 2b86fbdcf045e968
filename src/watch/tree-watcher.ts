import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';

/** Events within one rest period after which a directory's watch rests. */
const HOT_EVENTS = 16;

export interface TreeWatcherOptions {
  /**
   * How long the watch of a hot directory (more than HOT_EVENTS events within
   * this time) is closed before it is set again. A database writing its files
   * thousands of times a second then wakes the agent a few dozen times a
   * second, not thousands (each wake-up costs the database's CPU on a small
   * machine, whatever the agent's priority).
   */
  readonly restMs: number;
}

/** A directory's watch: null while it rests; the directory's inode, to tell it from one that replaced it. */
interface DirWatch {
  watcher: fs.FSWatcher | null;
  readonly ino: number;
  /** Events since `since`, the start of the current period. */
  events: number;
  since: number;
  timer: NodeJS.Timeout | undefined;
}

/**
 * Watches a directory tree with one inotify watch per directory (fs.watch)
 * and reports changed paths, relative to the root with '/' separators,
 * without a system call per event: a database rewriting its files thousands
 * of times a second costs a callback each, not a stat (chokidar stats the
 * file on every event and rereads a directory on every entry added or
 * removed: half a core under pgbench). Only an entry created or removed is
 * looked at, to follow directories as they come and go. A hot directory's
 * watch rests (Syncthing's aggregation, in the kernel): what it missed meanwhile
 * is reported as 'rested' once it is set again.
 *
 * Emits 'change' (rel, listing): listing is true when an entry was created or
 * removed (its directory's listing changed); 'rested' (dir): any entry of dir
 * may have changed while its watch rested (its subdirectories have watches of
 * their own); 'error' (err) when a watch could not be set (ENOSPC: out of
 * inotify watches) or failed: from then on changes may be missed.
 */
export class TreeWatcher extends EventEmitter {
  readonly #root: string;
  readonly #restMs: number;
  /** By directory, relative to the root ('' for the root). */
  readonly #watches = new Map<string, DirWatch>();
  #closed = false;

  constructor(root: string, opts: TreeWatcherOptions) {
    super();
    this.#root = root;
    this.#restMs = opts.restMs;
  }

  /** Sets the watches on every directory below the root; changes are reported from here on. */
  start(): void {
    this.#watchTree('', false);
  }

  close(): void {
    this.#closed = true;
    for (const w of this.#watches.values()) stop(w);
    this.#watches.clear();
  }

  /** Watched directories. */
  get size(): number {
    return this.#watches.size;
  }

  /** Watches `rel` and every directory below it; with `report`, every entry found counts as created (it may have been, before the watch was set). */
  #watchTree(rel: string, report: boolean): void {
    const pending = [rel];
    while (pending.length > 0 && !this.#closed) {
      const dir = pending.pop()!;
      if (this.#watches.has(dir)) continue;
      const full = path.join(this.#root, dir);
      let w: DirWatch;
      try {
        const ino = fs.statSync(full).ino;
        w = { watcher: this.#arm(dir), ino, events: 0, since: performance.now(), timer: undefined };
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (dir !== '' && (code === 'ENOENT' || code === 'ENOTDIR')) continue; // gone meanwhile: its parent reports it
        this.emit('error', err);
        return;
      }
      this.#watches.set(dir, w);
      for (const e of this.#entries(dir)) {
        const child = join(dir, e.name);
        if (report) this.emit('change', child, true);
        if (e.isDirectory()) pending.push(child);
      }
    }
  }

  #arm(dir: string): fs.FSWatcher {
    const watcher = fs.watch(path.join(this.#root, dir), { persistent: true }, (event, name) => this.#event(dir, event, name));
    watcher.on('error', (err) => this.#failed(dir, err as NodeJS.ErrnoException));
    return watcher;
  }

  /** A directory's entries; none when it is gone (its parent's watch reports that). */
  #entries(dir: string): fs.Dirent[] {
    try {
      return fs.readdirSync(path.join(this.#root, dir), { withFileTypes: true });
    } catch {
      return [];
    }
  }

  /** Closes a hot directory's watch for a while; the events it would have woken the agent for are not read. */
  #rest(dir: string, w: DirWatch): void {
    w.watcher!.close();
    w.watcher = null;
    w.timer = setTimeout(() => this.#wake(dir, w), this.#restMs);
  }

  /**
   * Sets a rested watch again, then says the directory's entries may have
   * changed: a change before the watch was set is covered by what is said
   * after. Subdirectories made (or replaced) meanwhile are watched from here.
   */
  #wake(dir: string, w: DirWatch): void {
    w.timer = undefined;
    if (this.#closed || this.#watches.get(dir) !== w) return;
    try {
      w.watcher = this.#arm(dir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') return void this.emit('error', err);
      this.#unwatchTree(dir);
      this.emit('change', dir, true); // gone meanwhile
      return;
    }
    w.events = 0;
    w.since = performance.now();
    for (const e of this.#entries(dir)) {
      if (!e.isDirectory()) continue;
      const child = join(dir, e.name);
      const known = this.#watches.get(child);
      if (known && known.ino !== fs.statSync(path.join(this.#root, child), { throwIfNoEntry: false })?.ino) this.#unwatchTree(child);
      if (!this.#watches.has(child)) this.#watchTree(child, true);
    }
    this.emit('rested', dir);
  }

  #event(dir: string, event: string, name: string | Buffer | null): void {
    if (this.#closed) return;
    const w = this.#watches.get(dir);
    if (w?.watcher) {
      const now = performance.now();
      if (now - w.since > this.#restMs) {
        w.since = now;
        w.events = 0;
      }
      if (++w.events > HOT_EVENTS) this.#rest(dir, w);
    }
    if (name === null) {
      // the kernel did not say which entry: the whole directory may have changed
      this.emit('change', dir, true);
      return;
    }
    const rel = join(dir, name.toString());
    if (event === 'change') {
      this.emit('change', rel, false);
      return;
    }
    this.emit('change', rel, true);
    let st: fs.Stats | undefined;
    try {
      st = fs.lstatSync(path.join(this.#root, rel));
    } catch {
      st = undefined;
    }
    if (st?.isDirectory()) this.#watchTree(rel, true);
    else if (this.#watches.has(rel)) this.#unwatchTree(rel);
  }

  #unwatchTree(rel: string): void {
    for (const [dir, w] of this.#watches) {
      if (dir === rel || dir.startsWith(`${rel}/`)) {
        stop(w);
        this.#watches.delete(dir);
      }
    }
  }

  #failed(dir: string, err: NodeJS.ErrnoException): void {
    // a directory removed under its watch ends it; its parent reports the removal
    if (err.code === 'ENOENT' || err.code === 'EPERM' || !fs.existsSync(path.join(this.#root, dir))) {
      this.#unwatchTree(dir);
      return;
    }
    this.emit('error', err);
  }
}

function stop(w: DirWatch): void {
  w.watcher?.close();
  clearTimeout(w.timer);
}

const join = (dir: string, name: string): string => (dir === '' ? name : `${dir}/${name}`);
