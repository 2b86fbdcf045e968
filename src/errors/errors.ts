/**
 * Every failure a user can see is one of these classes, with a stable `code`
 * (as undici and fastify do) so scripts and tests match on codes, not prose.
 * `exitCode` follows the CLI contract: 2 for bad usage or config, 1 otherwise.
 */
export abstract class LifeboatError extends Error {
  abstract readonly code: string;
  readonly exitCode: 1 | 2 = 1;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class UsageError extends LifeboatError {
  readonly code = 'LB_ERR_USAGE';
  override readonly exitCode = 2;
}

export class ConfigError extends LifeboatError {
  readonly code = 'LB_ERR_CONFIG';
  override readonly exitCode = 2;
  /** Where the problem is: file, 1-based line (0 when unknown), dotted key path. */
  readonly file: string;
  readonly line: number;
  readonly keyPath: string;

  constructor(file: string, line: number, keyPath: string, detail: string) {
    super(`${file}${line > 0 ? `:${line}` : ''}${keyPath ? `: ${keyPath}` : ''}: ${detail}`);
    this.file = file;
    this.line = line;
    this.keyPath = keyPath;
  }
}

export class PasswordMissingError extends LifeboatError {
  readonly code = 'LB_ERR_PASSWORD_MISSING';
  override readonly exitCode = 2;
  constructor() {
    super('no repository password: pass --password-file, or set LIFEBOAT_PASSWORD_FILE, LIFEBOAT_PASSWORD_COMMAND or LIFEBOAT_PASSWORD, or repository.password_file in the config');
  }
}

export class WrongPasswordError extends LifeboatError {
  readonly code = 'LB_ERR_WRONG_PASSWORD';
  constructor(repo: string) {
    super(`wrong password for repository ${repo}`);
  }
}

export class NotARepositoryError extends LifeboatError {
  readonly code = 'LB_ERR_NOT_A_REPOSITORY';
  constructor(path: string, why: string) {
    super(`${path} is not a Lifeboat repository: ${why}`);
  }
}

export class RepositoryExistsError extends LifeboatError {
  readonly code = 'LB_ERR_REPOSITORY_EXISTS';
  constructor(path: string) {
    super(`${path} already holds a repository or other files; refusing to initialise it`);
  }
}

export class RepositoryLockedError extends LifeboatError {
  readonly code = 'LB_ERR_REPOSITORY_LOCKED';
  constructor(repo: string, holder: string) {
    super(`repository ${repo} is locked by ${holder}`);
  }
}

/** Stored data failed authentication or does not hash to its id. */
export class CorruptDataError extends LifeboatError {
  readonly code = 'LB_ERR_CORRUPT_DATA';
}

/** The index or a pack's structure is damaged (as opposed to one blob's bytes). */
export class CorruptIndexError extends LifeboatError {
  readonly code = 'LB_ERR_CORRUPT_INDEX';
}

export class SnapshotNotFoundError extends LifeboatError {
  readonly code = 'LB_ERR_SNAPSHOT_NOT_FOUND';
  constructor(ref: string) {
    super(`no snapshot matches ${JSON.stringify(ref)}`);
  }
}

/** A snapshot reference that names more than one: a short prefix, or "latest" over several sources. */
/** A path that the snapshot does not hold (ls, dump). */
export class PathNotFoundError extends LifeboatError {
  readonly code = 'LB_ERR_PATH_NOT_FOUND';
}

/** A key file that cannot be removed: the one in use, or one the repository does not have. */
export class KeyRemovalError extends LifeboatError {
  readonly code = 'LB_ERR_KEY_REMOVAL';
}

export class AmbiguousSnapshotError extends LifeboatError {
  readonly code = 'LB_ERR_SNAPSHOT_AMBIGUOUS';
  override readonly exitCode = 2;
}

export class TargetNotEmptyError extends LifeboatError {
  readonly code = 'LB_ERR_TARGET_NOT_EMPTY';
  constructor(target: string) {
    super(`restore target ${target} is not empty; choose an empty or new directory`);
  }
}

/** A tree entry name that would leave the restore target (.., /, NUL, empty). */
export class UnsafePathError extends LifeboatError {
  readonly code = 'LB_ERR_UNSAFE_PATH';
  constructor(name: string, where: string) {
    super(`refusing tree entry ${JSON.stringify(name)} in ${where}: the name would escape the restore target`);
  }
}

export class SourceError extends LifeboatError {
  readonly code = 'LB_ERR_SOURCE';
}

/** The Docker engine did not answer, or the connection to it dropped. */
export class EngineUnavailableError extends LifeboatError {
  readonly code = 'LB_ERR_ENGINE_UNAVAILABLE';
}

/** The engine answered with an error for a request (not a connection problem). */
export class EngineRequestError extends LifeboatError {
  readonly code = 'LB_ERR_ENGINE_REQUEST';
}

/** A command in a container kept its session open but did not answer in time (a database that does not answer). */
export class SessionTimeoutError extends EngineRequestError {}

export class VolumeNotFoundError extends LifeboatError {
  readonly code = 'LB_ERR_VOLUME_NOT_FOUND';
  constructor(name: string) {
    super(`no Docker volume named ${JSON.stringify(name)}`);
  }
}

export class VolumeNotEmptyError extends LifeboatError {
  readonly code = 'LB_ERR_VOLUME_NOT_EMPTY';
  constructor(name: string) {
    super(`Docker volume ${JSON.stringify(name)} is not empty; pass --force to replace its contents`);
  }
}

/** A volume whose containers (or itself) carry lifeboat.exclude. */
export class VolumeExcludedError extends LifeboatError {
  readonly code = 'LB_ERR_VOLUME_EXCLUDED';
}

/** A database's online-backup protocol (PostgreSQL's pg_backup_start / pg_backup_stop) failed or could not run. */
export class DatabaseBackupError extends LifeboatError {
  readonly code = 'LB_ERR_DATABASE_BACKUP';
}

/** A container's lifeboat.* label has a value this version does not know. */
export class LabelError extends LifeboatError {
  readonly code = 'LB_ERR_LABEL';
  override readonly exitCode = 2;
}

/** The point-in-time copy made while a volume's containers were frozen could not be written (its scratch file system is full). */
export class CaptureFailedError extends LifeboatError {
  readonly code = 'LB_ERR_CAPTURE_FAILED';
}

/** A lifeboat.backup-pre or -post command failed, timed out, or could not run. */
export class HookFailedError extends LifeboatError {
  readonly code = 'LB_ERR_HOOK_FAILED';
}

/** No service manager to install into: systemctl missing, or systemd not running this host. */
export class ServiceManagerUnavailableError extends LifeboatError {
  readonly code = 'LB_ERR_NO_SERVICE_MANAGER';
  override readonly exitCode = 2;
}

/** systemctl or WinSW failed while installing or removing the service. */
export class ServiceCommandError extends LifeboatError {
  readonly code = 'LB_ERR_SERVICE_COMMAND';
}

/** A listen address (the endpoint, the peer listener) could not be bound: a configuration problem. */
export class ListenError extends LifeboatError {
  readonly code = 'LB_ERR_LISTEN';
  override readonly exitCode = 2;
}

/** A peer presented an id other than the one configured for it, or one nobody configured. */
export class PeerIdentityError extends LifeboatError {
  readonly code = 'LB_ERR_PEER_IDENTITY';
}

/** A peer sent something the protocol does not allow (an oversized or malformed frame). */
export class ProtocolError extends LifeboatError {
  readonly code = 'LB_ERR_PROTOCOL';
}

/** The connection to a peer ended: closed by the peer, or the network. */
export class PeerClosedError extends LifeboatError {
  readonly code = 'LB_ERR_PEER_CLOSED';
}

/** Nothing moved on a peer connection for the configured [replication] timeout. */
export class PeerTimeoutError extends LifeboatError {
  readonly code = 'LB_ERR_PEER_TIMEOUT';
}

/** The peer could not be reached at its address (refused, unreachable, no route). */
export class PeerUnreachableError extends LifeboatError {
  readonly code = 'LB_ERR_PEER_UNREACHABLE';
}

/** The peer refused a request and said why; `peerCode` is its own error code. */
export class PeerRefusedError extends LifeboatError {
  readonly code = 'LB_ERR_PEER_REFUSED';
  readonly peerCode: string;
  constructor(peerCode: string, message: string) {
    super(message);
    this.peerCode = peerCode;
  }
}

/** The repository holds no volume snapshot of the host to recover (at or before the time asked for). */
export class NothingToRecoverError extends LifeboatError {
  readonly code = 'LB_ERR_NOTHING_TO_RECOVER';
}

/** A recovery's dry run found blockers: containers that could not be recovered here. */
export class RecoveryBlockedError extends LifeboatError {
  readonly code = 'LB_ERR_RECOVERY_BLOCKED';
}

/** A recovery ran, but some containers were skipped (each with its reason in the report). */
export class RecoveryIncompleteError extends LifeboatError {
  readonly code = 'LB_ERR_RECOVERY_INCOMPLETE';
}

/** A drill ran, and some container did not come up, was not healthy, or its data did not match. */
export class DrillFailedError extends LifeboatError {
  readonly code = 'LB_ERR_DRILL_FAILED';
}

/**
 * SIGINT or SIGTERM stopped a command (src/cli/interrupt.ts). It put back
 * what it had changed first (containers it paused or stopped, the repository
 * lock); the message says what it could not.
 */
export class InterruptedError extends LifeboatError {
  readonly code = 'LB_ERR_INTERRUPTED';
}

/** A push to a peer failed; the code is the failure's own (the network's, or the peer's refusal). */
export class ReplicationFailedError extends LifeboatError {
  readonly code: string;
  constructor(peer: string, message: string, code: string) {
    super(`replication to ${peer} failed: ${message}`);
    this.code = code;
  }
}

/** The running agent does not track the volume a command asked it to back up. */
export class VolumeNotTrackedError extends LifeboatError {
  readonly code = 'LB_ERR_VOLUME_NOT_TRACKED';
  override readonly exitCode = 2;
}

/** Work the running agent did for a command failed there: the agent's code and message. */
export class AgentJobError extends LifeboatError {
  readonly code: string;
  constructor(message: string, code: string) {
    super(`the running agent: ${message}`);
    this.code = code;
  }
}

/** `repair` could not find a good copy of every damaged or missing blob. */
export class RepairIncompleteError extends LifeboatError {
  readonly code = 'LB_ERR_REPAIR_INCOMPLETE';
}

/** An object store (an S3 target) refused or failed a request: credentials, permissions, a missing bucket, the store itself. */
export class ObjectStoreError extends LifeboatError {
  readonly code = 'LB_ERR_OBJECT_STORE';
}

/** A peer's replica of a source belongs to another repository than the one the source now pushes. */
export class ReplicaMismatchError extends LifeboatError {
  readonly code = 'LB_ERR_REPLICA_MISMATCH';
}

/** Prune could not account for what some snapshot needs (a tree or list no pack holds intact), so it deleted nothing. */
export class PruneRefusedError extends LifeboatError {
  readonly code = 'LB_ERR_PRUNE_REFUSED';
}

/** The file system holding the repository is full (or over quota). */
export class NoSpaceError extends LifeboatError {
  readonly code = 'LB_ERR_NO_SPACE';
}

/** A storage backend was asked to write a file that already exists: files are written once and never replaced. */
export class FileExistsError extends LifeboatError {
  readonly code = 'LB_ERR_FILE_EXISTS';
}

/** A storage backend has no file of that kind and name. */
export class FileNotFoundError extends LifeboatError {
  readonly code = 'LB_ERR_FILE_NOT_FOUND';
}

/** A file name a storage backend cannot hold safely (a path, a dot name, a temporary file's suffix). */
export class InvalidFileNameError extends LifeboatError {
  readonly code = 'LB_ERR_INVALID_FILE_NAME';
}

/**
 * An alert or heartbeat did not reach a [[notify]] entry. `permanent` when
 * sending it again cannot help (an HTTP 4xx other than 408 and 429, an SMTP 5xx).
 */
export class NotificationFailedError extends LifeboatError {
  readonly code = 'LB_ERR_NOTIFICATION_FAILED';
  readonly permanent: boolean;
  /** How long the receiver asked to be left alone (Retry-After), when it said. */
  readonly retryAfterMs: number | undefined;

  constructor(message: string, o: { permanent: boolean; retryAfterMs?: number | undefined; cause?: unknown }) {
    super(message, { cause: o.cause });
    this.permanent = o.permanent;
    this.retryAfterMs = o.retryAfterMs;
  }
}

// SQLITE_IOERR_SHMSIZE: SQLite could not grow its shared-memory file, which on a full disk is what opening needs first
const NO_SPACE_CODES: ReadonlySet<string> = new Set(['ENOSPC', 'EDQUOT', 'SQLITE_FULL', 'SQLITE_IOERR_SHMSIZE']);

/** `err` as a NoSpaceError naming what could not be written when it says the disk is full; any other error as it is. */
export function noSpace(err: unknown, what: string): unknown {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !NO_SPACE_CODES.has(code)) return err;
  return new NoSpaceError(`no space left on the repository's file system to write ${what}; free some, or prune`, { cause: err });
}

/** Turns anything thrown into a one-line message and an exit code for the CLI. */
export function describeFailure(err: unknown): { message: string; code: string; exitCode: 1 | 2 } {
  if (err instanceof LifeboatError) return { message: err.message, code: err.code, exitCode: err.exitCode };
  const e = err as NodeJS.ErrnoException;
  if (e && typeof e === 'object' && typeof e.code === 'string' && typeof e.message === 'string') {
    return { message: e.message, code: `LB_ERR_SYSTEM_${e.code}`, exitCode: 1 };
  }
  return { message: String(err instanceof Error ? err.message : err), code: 'LB_ERR_INTERNAL', exitCode: 1 };
}
