import type Database from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';
import type { ContainerSpec, ContainerState, Mount } from '../docker/engine.ts';
import type { QuiesceAction, QuiescedRow, QuiesceJournal } from '../docker/consistency.ts';
import { recordedSpec } from '../docker/runtime.ts';
import { agentMigrations } from './agent-schema.ts';
import { type SourceFingerprints, sourceFingerprints } from './fingerprints.ts';
import { type Db, openDatabase } from '../db/database.ts';

export type ObjectKind = 'container' | 'image' | 'volume' | 'network';

export interface ContainerRow {
  readonly id: string;
  readonly name: string;
  readonly image: string;
  readonly imageId: string;
  readonly state: ContainerState;
  readonly labels: Readonly<Record<string, string>>;
  readonly mounts: readonly Mount[];
  /** Null only if the container vanished between list and inspect the first time it was seen. */
  readonly spec: ContainerSpec | null;
  readonly created: string;
  readonly firstSeen: string;
  readonly lastSeen: string;
  readonly removedAt: string | null;
}

export interface ImageRow {
  readonly id: string;
  readonly tags: readonly string[];
  readonly os: string;
  readonly architecture: string;
  readonly osVersion: string | null;
  readonly size: number;
  readonly layers: readonly string[];
  readonly created: string;
  readonly firstSeen: string;
  readonly lastSeen: string;
  readonly removedAt: string | null;
}

export interface VolumeRow {
  readonly name: string;
  readonly driver: string;
  readonly mountpoint: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly created: string;
  readonly firstSeen: string;
  readonly lastSeen: string;
  readonly removedAt: string | null;
}

export interface NetworkRow {
  readonly id: string;
  readonly name: string;
  readonly driver: string;
  readonly internal: boolean;
  readonly labels: Readonly<Record<string, string>>;
  readonly firstSeen: string;
  readonly lastSeen: string;
  readonly removedAt: string | null;
}

export interface HistoryEntry {
  /** When the change was observed (ISO). */
  readonly time: string;
  readonly kind: ObjectKind;
  /** Container id, image id, volume name, network id. */
  readonly object: string;
  /** Container or network name, volume name, image's first tag (or short id). */
  readonly name: string;
  readonly action: string;
  readonly detail: Readonly<Record<string, unknown>>;
}

export interface HistoryRow extends HistoryEntry {
  readonly seq: number;
}

export interface HistoryQuery {
  readonly kind?: ObjectKind;
  readonly object?: string;
  /** Only the newest N rows (still returned oldest first). */
  readonly limit?: number;
}

const FILE = 'catalog.db';

/** Every row of a table as stored: JSON columns still text. */
type Raw = Record<string, unknown>;

/**
 * The agent's SQLite catalog: inventory of the Docker host and its change
 * history. Plain typed reads and writes; the diffing lives in
 * src/docker/inventory.ts. better-sqlite3 is synchronous, so a transaction
 * passed to transaction() cannot interleave with anything else in the process.
 */
export class AgentCatalog implements QuiesceJournal {
  readonly file: string;
  readonly #db: Db;
  #unsyncedDb: Db | undefined;
  readonly #stmts = new Map<string, Database.Statement<unknown[]>>();

  private constructor(file: string, db: Db) {
    this.file = file;
    this.#db = db;
  }

  static path(stateDir: string): string {
    return path.join(stateDir, FILE);
  }

  static exists(stateDir: string): boolean {
    return fs.existsSync(AgentCatalog.path(stateDir));
  }

  /** Opens (creating the state directory and the file, mode 0600, if needed) and migrates. */
  static open(stateDir: string): AgentCatalog {
    fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    const file = AgentCatalog.path(stateDir);
    // create it ourselves so it never exists with a wider mode; SQLite gives -wal and -shm the same mode
    fs.closeSync(fs.openSync(file, 'a', 0o600));
    if (process.platform !== 'win32') fs.chmodSync(file, 0o600);
    return new AgentCatalog(file, openDatabase(file, { migrations: agentMigrations, what: 'agent catalog' }));
  }

  close(): void {
    this.#unsyncedDb?.close();
    this.#db.close();
  }

  /** The database, for parts with tables of their own (replication state). */
  get db(): Db {
    return this.#db;
  }

  /**
   * A second connection to the same file whose commits are not fsynced, for
   * rows a power loss may take back at no cost: the change journal (an agent
   * that starts distrusts it, whatever it holds) and block fingerprints (a
   * cache). The journal commits a batch every aggregate interval, a backup a
   * row per large file: fsyncs that would compete with those of the
   * databases the agent protects.
   */
  get unsyncedDb(): Db {
    this.#unsyncedDb ??= openDatabase(this.file, { migrations: agentMigrations, what: 'agent catalog', synced: false });
    return this.#unsyncedDb;
  }

  /** Runs fn in one IMMEDIATE transaction (so a concurrent writer in another process waits, not fails midway). */
  transaction<T>(fn: () => T): T {
    return this.#db.transaction(fn).immediate();
  }

  #stmt(sql: string): Database.Statement<unknown[]> {
    let s = this.#stmts.get(sql);
    if (!s) {
      s = this.#db.prepare(sql);
      this.#stmts.set(sql, s);
    }
    return s;
  }

  // --- containers

  container(id: string): ContainerRow | undefined {
    const r = this.#stmt('SELECT * FROM containers WHERE id = ?').get(id) as Raw | undefined;
    return r && toContainer(r);
  }

  /** Current containers by name, or with includeRemoved every container ever seen. */
  containers(opts: { includeRemoved?: boolean } = {}): ContainerRow[] {
    const where = opts.includeRemoved ? '' : 'WHERE removed_at IS NULL';
    return (this.#stmt(`SELECT * FROM containers ${where} ORDER BY name, first_seen`).all() as Raw[]).map(toContainer);
  }

  putContainer(c: ContainerRow): void {
    this.#stmt(
      `INSERT OR REPLACE INTO containers (id, name, image, image_id, state, labels, mounts, spec, created, first_seen, last_seen, removed_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      c.id, c.name, c.image, c.imageId, c.state, JSON.stringify(c.labels), JSON.stringify(c.mounts),
      c.spec === null ? null : JSON.stringify(c.spec), c.created, c.firstSeen, c.lastSeen, c.removedAt,
    );
  }

  /**
   * The container that held `name` before `exceptId`: the last one created
   * under that name or renamed to it, per the history. Undefined if none.
   */
  previousHolderOf(name: string, exceptId: string): ContainerRow | undefined {
    const r = this.#stmt(
      `SELECT object FROM history
       WHERE kind = 'container' AND object != ?
         AND ((name = ? AND action IN ('created', 'recreated', 'discovered'))
              OR (action = 'renamed' AND json_extract(detail, '$.to') = ?))
       ORDER BY seq DESC LIMIT 1`,
    ).get(exceptId, name, name) as { object: string } | undefined;
    return r && this.container(r.object);
  }

  /** Current containers that mount the named volume. */
  containersMounting(volume: string): ContainerRow[] {
    return (
      this.#stmt(
        `SELECT * FROM containers c WHERE removed_at IS NULL
           AND EXISTS (SELECT 1 FROM json_each(c.mounts) m
                       WHERE json_extract(m.value, '$.type') = 'volume' AND json_extract(m.value, '$.name') = ?)
         ORDER BY name`,
      ).all(volume) as Raw[]
    ).map(toContainer);
  }

  // --- images

  image(id: string): ImageRow | undefined {
    const r = this.#stmt('SELECT * FROM images WHERE id = ?').get(id) as Raw | undefined;
    return r && toImage(r);
  }

  /** The current image carrying this tag ("busybox:latest"), if any. */
  imageByTag(tag: string): ImageRow | undefined {
    const r = this.#stmt(
      `SELECT * FROM images i WHERE removed_at IS NULL AND EXISTS (SELECT 1 FROM json_each(i.tags) t WHERE t.value = ?)`,
    ).get(tag) as Raw | undefined;
    return r && toImage(r);
  }

  images(opts: { includeRemoved?: boolean } = {}): ImageRow[] {
    const where = opts.includeRemoved ? '' : 'WHERE removed_at IS NULL';
    return (this.#stmt(`SELECT * FROM images ${where} ORDER BY created, id`).all() as Raw[]).map(toImage);
  }

  putImage(i: ImageRow): void {
    this.#stmt(
      `INSERT OR REPLACE INTO images (id, tags, os, architecture, os_version, size, layers, created, first_seen, last_seen, removed_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      i.id, JSON.stringify(i.tags), i.os, i.architecture, i.osVersion, i.size, JSON.stringify(i.layers), i.created,
      i.firstSeen, i.lastSeen, i.removedAt,
    );
  }

  // --- volumes

  volume(name: string): VolumeRow | undefined {
    const r = this.#stmt('SELECT * FROM volumes WHERE name = ?').get(name) as Raw | undefined;
    return r && toVolume(r);
  }

  volumes(opts: { includeRemoved?: boolean } = {}): VolumeRow[] {
    const where = opts.includeRemoved ? '' : 'WHERE removed_at IS NULL';
    return (this.#stmt(`SELECT * FROM volumes ${where} ORDER BY name`).all() as Raw[]).map(toVolume);
  }

  putVolume(v: VolumeRow): void {
    this.#stmt(
      `INSERT OR REPLACE INTO volumes (name, driver, mountpoint, labels, created, first_seen, last_seen, removed_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(v.name, v.driver, v.mountpoint, JSON.stringify(v.labels), v.created, v.firstSeen, v.lastSeen, v.removedAt);
  }

  // --- networks

  network(id: string): NetworkRow | undefined {
    const r = this.#stmt('SELECT * FROM networks WHERE id = ?').get(id) as Raw | undefined;
    return r && toNetwork(r);
  }

  networks(opts: { includeRemoved?: boolean } = {}): NetworkRow[] {
    const where = opts.includeRemoved ? '' : 'WHERE removed_at IS NULL';
    return (this.#stmt(`SELECT * FROM networks ${where} ORDER BY name, id`).all() as Raw[]).map(toNetwork);
  }

  putNetwork(n: NetworkRow): void {
    this.#stmt(
      `INSERT OR REPLACE INTO networks (id, name, driver, internal, labels, first_seen, last_seen, removed_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(n.id, n.name, n.driver, n.internal ? 1 : 0, JSON.stringify(n.labels), n.firstSeen, n.lastSeen, n.removedAt);
  }

  // --- history

  addHistory(e: HistoryEntry): number {
    const r = this.#stmt('INSERT INTO history (time, kind, object, name, action, detail) VALUES (?, ?, ?, ?, ?, ?)').run(
      e.time, e.kind, e.object, e.name, e.action, JSON.stringify(e.detail),
    );
    return Number(r.lastInsertRowid);
  }

  /** History rows, oldest first, optionally of one kind or one object, optionally only the newest N. */
  history(q: HistoryQuery = {}): HistoryRow[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (q.kind !== undefined) {
      where.push('kind = ?');
      args.push(q.kind);
    }
    if (q.object !== undefined) {
      where.push('object = ?');
      args.push(q.object);
    }
    const sql =
      `SELECT * FROM history ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC` +
      (q.limit !== undefined ? ` LIMIT ${Math.max(0, Math.floor(q.limit))}` : '');
    const rows = this.#stmt(sql).all(...args) as Raw[];
    return rows.reverse().map((r) => ({
      seq: r.seq as number,
      time: r.time as string,
      kind: r.kind as ObjectKind,
      object: r.object as string,
      name: r.name as string,
      action: r.action as string,
      detail: JSON.parse(r.detail as string) as Record<string, unknown>,
    }));
  }

  // --- meta

  getMeta(key: string): string | undefined {
    const r = this.#stmt('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined;
    return r?.value;
  }

  setMeta(key: string, value: string): void {
    this.#stmt('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)').run(key, value);
  }

  // --- the quiesce journal (QuiesceJournal: src/docker/consistency.ts writes and replays it)

  noteQuiesced(row: { container: string; name: string; action: QuiesceAction; owner: string }): void {
    this.#stmt('INSERT OR REPLACE INTO quiesced (container, name, action, since, owner) VALUES (?, ?, ?, ?, ?)').run(
      row.container, row.name, row.action, new Date().toISOString(), row.owner,
    );
  }

  clearQuiesced(container: string): void {
    this.#stmt('DELETE FROM quiesced WHERE container = ?').run(container);
  }

  releaseQuiesced(container: string): void {
    this.#stmt('UPDATE quiesced SET owner = NULL WHERE container = ?').run(container);
  }

  claimQuiesced(owner: string, abandoned: (owner: string | null) => boolean): QuiescedRow[] {
    return this.transaction(() => {
      const rows = (this.#stmt('SELECT * FROM quiesced ORDER BY since, container').all() as QuiescedRow[]).filter((r) => abandoned(r.owner));
      for (const r of rows) this.#stmt('UPDATE quiesced SET owner = ? WHERE container = ?').run(owner, r.container);
      return rows.map((r) => ({ ...r, owner }));
    });
  }

  quiesced(): QuiescedRow[] {
    return this.#stmt('SELECT * FROM quiesced ORDER BY since, container').all() as QuiescedRow[];
  }

  // --- block fingerprints (src/backup/ reads and writes them through this view)

  /** A volume's block fingerprints by path: what its last backup read of each large file. */
  fingerprints(volume: string): SourceFingerprints {
    return sourceFingerprints(this.unsyncedDb, volume);
  }
}

const json = <T>(v: unknown): T => JSON.parse(v as string) as T;

function toContainer(r: Raw): ContainerRow {
  return {
    id: r.id as string,
    name: r.name as string,
    image: r.image as string,
    imageId: r.image_id as string,
    state: r.state as ContainerState,
    labels: json(r.labels),
    mounts: json(r.mounts),
    spec: r.spec === null ? null : recordedSpec(json(r.spec)),
    created: r.created as string,
    firstSeen: r.first_seen as string,
    lastSeen: r.last_seen as string,
    removedAt: r.removed_at as string | null,
  };
}

function toImage(r: Raw): ImageRow {
  return {
    id: r.id as string,
    tags: json(r.tags),
    os: r.os as string,
    architecture: r.architecture as string,
    osVersion: r.os_version as string | null,
    size: r.size as number,
    layers: json(r.layers),
    created: r.created as string,
    firstSeen: r.first_seen as string,
    lastSeen: r.last_seen as string,
    removedAt: r.removed_at as string | null,
  };
}

function toVolume(r: Raw): VolumeRow {
  return {
    name: r.name as string,
    driver: r.driver as string,
    mountpoint: r.mountpoint as string,
    labels: json(r.labels),
    created: r.created as string,
    firstSeen: r.first_seen as string,
    lastSeen: r.last_seen as string,
    removedAt: r.removed_at as string | null,
  };
}

function toNetwork(r: Raw): NetworkRow {
  return {
    id: r.id as string,
    name: r.name as string,
    driver: r.driver as string,
    internal: r.internal === 1,
    labels: json(r.labels),
    firstSeen: r.first_seen as string,
    lastSeen: r.last_seen as string,
    removedAt: r.removed_at as string | null,
  };
}
