import type { Migration } from '../db/database.ts';
import { FINGERPRINTS_TABLE } from './fingerprints.ts';

/**
 * The agent catalog (`<state_dir>/catalog.db`): what the agent knows about its
 * Docker host, and what changed there and when. Separate from the
 * repository's own index, which belongs to the repository and travels with it.
 *
 * Inventory rows are never deleted: an object that disappears gets removed_at,
 * so history rows keep pointing at something, and a name's earlier container
 * (for "recreated") can still be found. JSON columns hold the engine's values
 * as the DockerEngine interface spells them. Times are ISO 8601 UTC strings;
 * last_seen is the time of the observation that last wrote the row, which
 * lets an older observation (a slow reconcile, another process) be recognised
 * and dropped instead of undoing a newer one.
 *
 * Append-only: entry i moves a catalog from user_version i to i+1.
 */
export const agentMigrations: readonly Migration[] = [
  (db) => {
    db.exec(`
      CREATE TABLE containers (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        image       TEXT NOT NULL,
        image_id    TEXT NOT NULL,
        state       TEXT NOT NULL,
        labels      TEXT NOT NULL,
        mounts      TEXT NOT NULL,
        spec        TEXT,
        created     TEXT NOT NULL,
        first_seen  TEXT NOT NULL,
        last_seen   TEXT NOT NULL,
        removed_at  TEXT
      ) STRICT;
      CREATE INDEX containers_name ON containers (name);

      CREATE TABLE images (
        id            TEXT PRIMARY KEY,
        tags          TEXT NOT NULL,
        os            TEXT NOT NULL,
        architecture  TEXT NOT NULL,
        os_version    TEXT,
        size          INTEGER NOT NULL,
        layers        TEXT NOT NULL,
        created       TEXT NOT NULL,
        first_seen    TEXT NOT NULL,
        last_seen     TEXT NOT NULL,
        removed_at    TEXT
      ) STRICT;

      CREATE TABLE volumes (
        name        TEXT PRIMARY KEY,
        driver      TEXT NOT NULL,
        mountpoint  TEXT NOT NULL,
        labels      TEXT NOT NULL,
        created     TEXT NOT NULL,
        first_seen  TEXT NOT NULL,
        last_seen   TEXT NOT NULL,
        removed_at  TEXT
      ) STRICT;

      CREATE TABLE networks (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        driver      TEXT NOT NULL,
        internal    INTEGER NOT NULL,
        labels      TEXT NOT NULL,
        first_seen  TEXT NOT NULL,
        last_seen   TEXT NOT NULL,
        removed_at  TEXT
      ) STRICT;

      CREATE TABLE history (
        seq     INTEGER PRIMARY KEY AUTOINCREMENT,
        time    TEXT NOT NULL,
        kind    TEXT NOT NULL,
        object  TEXT NOT NULL,
        name    TEXT NOT NULL,
        action  TEXT NOT NULL,
        detail  TEXT NOT NULL
      ) STRICT;
      CREATE INDEX history_kind ON history (kind, seq);
      CREATE INDEX history_object ON history (kind, object, seq);
      CREATE INDEX history_name ON history (kind, name, seq);

      CREATE TABLE meta (
        key    TEXT PRIMARY KEY,
        value  TEXT NOT NULL
      ) STRICT;
    `);
  },
  // The change journal: paths changed in each watched volume since its last backup.
  (db) =>
    db.exec(`
      CREATE TABLE journal (
        volume  TEXT NOT NULL,
        path    TEXT NOT NULL,
        seq     INTEGER NOT NULL,
        PRIMARY KEY (volume, path)
      ) STRICT, WITHOUT ROWID;
      CREATE TABLE journal_state (
        volume          TEXT PRIMARY KEY,
        trusted         INTEGER NOT NULL,
        reason          TEXT,
        last_full_scan  TEXT
      ) STRICT;
    `),
  // Replication: which snapshots each peer has committed, and each peer's last push.
  (db) =>
    db.exec(`
      CREATE TABLE replicated (
        peer      TEXT NOT NULL,
        snapshot  TEXT NOT NULL,
        time      TEXT NOT NULL,
        PRIMARY KEY (peer, snapshot)
      ) STRICT, WITHOUT ROWID;
      CREATE TABLE peer_state (
        peer          TEXT PRIMARY KEY,
        last_attempt  TEXT,
        last_success  TEXT,
        last_error    TEXT,
        failures      INTEGER NOT NULL DEFAULT 0,
        bytes_sent    INTEGER NOT NULL DEFAULT 0,
        last_push     TEXT
      ) STRICT;
    `),
  // The quiesce journal: containers a backup paused or stopped and has not returned to running
  // yet. owner is the process returning them ("pid/start time"), NULL once it gave up.
  (db) =>
    db.exec(`
      CREATE TABLE quiesced (
        container  TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        action     TEXT NOT NULL CHECK (action IN ('paused', 'stopped')),
        since      TEXT NOT NULL,
        owner      TEXT
      ) STRICT;
    `),
  // Per-block fingerprints (xxh64) of the large files a volume's backup read, so the next copies
  // (a capture) or hashes (a read) only the blocks that changed; key names the snapshot content they describe.
  (db) => db.exec(FINGERPRINTS_TABLE),
];
