import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';

/**
 * Watches a directory tree with one inotify watch per directory (fs.watch)
 * and reports changed paths, relative to the root with '/' separators,
 * without a system call per event: a database rewriting its files thousands
 * of times a second costs a callback each, not a stat (chokidar stats the
 * file on every event and rereads a directory on every entry added or
 * removed: half a core under pgbench). Only an entry created or removed is
 * looked at, to follow directories as they come and go.
 *
 * Emits 'change' (rel, listing): listing is true when an entry was created or
 * removed (its directory's listing changed); 'error' (err) when a watch could
 * not be set (ENOSPC: out of inotify watches) or failed: from then on
 * changes may be missed.
 */
export class TreeWatcher extends EventEmitter {
  readonly #root: string;
  /** By directory, relative to the root ('' for the root). */
  readonly #watches = new Map<string, fs.FSWatcher>();
  #closed = false;

  constructor(root: string) {
    super();
    this.#root = root;
  }

  /** Sets the watches on every directory below the root; changes are reported from here on. */
  start(): void {
    this.#watchTree('', false);
  }

  close(): void {
    this.#closed = true;
    for (const w of this.#watches.values()) w.close();
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
      let watcher: fs.FSWatcher;
      try {
        watcher = fs.watch(full, { persistent: true }, (event, name) => this.#event(dir, event, name));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (dir !== '' && (code === 'ENOENT' || code === 'ENOTDIR')) continue; // gone meanwhile: its parent reports it
        this.emit('error', err);
        return;
      }
      watcher.on('error', (err) => this.#failed(dir, err as NodeJS.ErrnoException));
      this.#watches.set(dir, watcher);
      let entries: fs.Dirent[];
      try {
        entries = fs.readdirSync(full, { withFileTypes: true });
      } catch {
        continue; // removed meanwhile: its parent's watch reports it
      }
      for (const e of entries) {
        const child = join(dir, e.name);
        if (report) this.emit('change', child, true);
        if (e.isDirectory()) pending.push(child);
      }
    }
  }

  #event(dir: string, event: string, name: string | Buffer | null): void {
    if (this.#closed) return;
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
        w.close();
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

const join = (dir: string, name: string): string => (dir === '' ? name : `${dir}/${name}`);
