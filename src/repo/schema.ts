import type { Migration } from '../db/database.ts';

/**
 * The repository's own SQLite index (index.db inside the repository), so a
 * repository directory, or a peer's replica of one, is complete by itself.
 * Snapshot rows keep host, path and stats in clear, so a peer can list and
 * prune a replica without the password; file names and contents stay sealed.
 */
export const repositoryMigrations: readonly Migration[] = [
  (db) =>
    db.exec(`
      CREATE TABLE packs (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        size INTEGER NOT NULL,
        created TEXT NOT NULL
      );
      CREATE TABLE blobs (
        id BLOB PRIMARY KEY,
        type INTEGER NOT NULL,
        pack INTEGER NOT NULL REFERENCES packs(id),
        offset INTEGER NOT NULL,
        length INTEGER NOT NULL,
        raw_length INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE INDEX blobs_by_pack ON blobs(pack);
      CREATE TABLE snapshots (
        id TEXT PRIMARY KEY,
        time TEXT NOT NULL,
        host TEXT NOT NULL,
        source TEXT NOT NULL,
        volume TEXT,
        parent TEXT,
        tree BLOB NOT NULL,
        tags TEXT NOT NULL,
        splitter TEXT NOT NULL,
        stats TEXT NOT NULL
      );
      CREATE INDEX snapshots_by_time ON snapshots(time);
      CREATE TABLE locks (
        id TEXT PRIMARY KEY,
        exclusive INTEGER NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        created TEXT NOT NULL,
        refreshed INTEGER NOT NULL
      );
    `),
  // Sealed metadata of a snapshot (container specs and images of a volume backup).
  (db) => db.exec('ALTER TABLE snapshots ADD COLUMN meta BLOB'),
  // What each tree and list blob names, as its source declared it. Only a
  // replica fills this: it cannot open trees, and marks live blobs through it.
  (db) =>
    db.exec(`
      CREATE TABLE refs (
        parent BLOB NOT NULL,
        child BLOB NOT NULL,
        PRIMARY KEY (parent, child)
      ) WITHOUT ROWID;
    `),
  // Which repository the index belongs to (key 'repository'): one copied from another is refused.
  (db) => db.exec('CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID'),
];
