import type http from 'node:http';
import path from 'node:path';
import { AgentCatalog } from '../catalog/agent-catalog.ts';
import { type Config, poolSettings } from '../config/schema.ts';
import { returnAbandoned } from '../docker/consistency.ts';
import type { DockerEngine } from '../docker/engine.ts';
import { PsqlSessions } from '../docker/postgres-backup.ts';
import { InventoryWatcher, type WatcherOptions } from '../inventory/events.ts';
import type { Logger } from '../log/logger.ts';
import { Repository } from '../repo/repository.ts';
import type { Snapshot } from '../repo/snapshot.ts';
import { findSnapshot, listSnapshots, repositorySize } from '../repo/snapshots.ts';
import type { RestoreStats } from '../restore/restorer.ts';
import { ChangeJournal, type JournalStatus, type JournalTake } from '../watch/journal.ts';
import { type BackupResult, VolumeBackups } from './backups.ts';
import { Debouncer } from './debounce.ts';
import { Standby } from './standby.ts';
import { boundAddress } from '../util/listen.ts';
import { closeServer, handler, type Health, listen } from './http.ts';
import { AgentMetrics } from './metrics.ts';
import { JobCancelledError, JobQueue } from './queue.ts';
import { runRetention } from './retention.ts';
import { Scheduler } from './scheduler.ts';
import { journalView, lastBackupView, nextCronRun, policyView, rpoTargetSeconds, snapshotView, type StatusReport, type VolumeStatus } from './status.ts';
import { sameTracking, type TrackedVolume, trackedVolumes } from './tracked.ts';
import { openRepoWorkers, PoolKeeper } from './workers.ts';
import type { PushOutcome, Replicator, ReplicatorOptions } from '../replicate/replicator.ts';
import type { TargetPusher } from '../replicate/target-pusher.ts';
import { type DrillRecord, drillHistory, drillReplicas, heldReplicas, rememberDrill, withReplica } from './drills.ts';
import type { RecoveryReport } from '../recover/recover.ts';
import { readPasswordFile } from '../config/password.ts';
import { Access } from '../console/access.ts';
import { cronIntervalMs, UNREACHABLE_FAILURES } from '../notify/conditions.ts';
import { AgentAlerts, type AlertInputs } from './alerts.ts';
import { UsageError, VolumeNotTrackedError } from '../errors/errors.ts';

/** The part of ChangeJournal (src/watch/journal.ts) the agent uses; tests pass a fake. */
export interface Journal {
  watch(volume: string, mountpoint: string): Promise<void>;
  unwatch(volume: string): Promise<void>;
  take(volume: string): JournalTake;
  status(volume: string): JournalStatus;
  close(): Promise<void>;
  on(event: 'changed', listener: (volume: string, dirty: number) => void): unknown;
}

export interface AgentOptions {
  readonly config: Config;
  readonly password: string;
  readonly log: Logger;
  readonly version: string;
  /** The Docker engine; default connectEngine(config). */
  readonly engine?: DockerEngine;
  /** Where `engine` is, for messages. */
  readonly engineAddress?: string;
  /** The change journal: default a ChangeJournal when [journal] enabled is true; null for none. */
  readonly journal?: Journal | null;
  /** The config's file, for messages about it. */
  readonly configFile?: string;
  /** How long stop() lets a backup in flight finish before abandoning it (ms); default 60 s. */
  readonly graceMs?: number;
  /** Worker threads are closed after this long without a backup (ms); default 15 s. */
  readonly poolIdleMs?: number;
  /** First retry of a failed continuous backup (ms; doubling up to 5 min); default 10 s. */
  readonly retryMs?: number;
  /** Process metrics (collectDefaultMetrics) in /metrics; default true. */
  readonly processMetrics?: boolean;
  readonly watcher?: Pick<WatcherOptions, 'backoff' | 'pingTimeoutMs'>;
}

export const DEFAULT_GRACE_MS = 60_000;
const DEFAULT_POOL_IDLE_MS = 15_000;
const RETRY_FIRST_MS = 10_000;
const RETRY_MAX_MS = 5 * 60_000;
/** Snapshots per volume the console's charts get at most. */
const HISTORY_POINTS = 1000;

/** One snapshot of a volume as the console charts it. */
export interface HistoryPoint {
  readonly id: string;
  readonly time: string;
  readonly duration_ms: number;
  readonly files: number;
  readonly bytes_new: number;
  readonly bytes_stored: number;
  readonly bytes_total: number;
}

/**
 * The daemon: the repository (opened once), the catalog, the inventory
 * watcher, the change journal on each tracked volume, the scheduler and
 * continuous mode feeding one job queue, and the HTTP endpoint. start() binds
 * the endpoint before anything runs, so a bad address fails the start cleanly;
 * stop() lets a backup in flight end (see stop).
 */
export class Agent {
  readonly #config: Config;
  readonly #log: Logger;
  readonly #version: string;
  readonly #repo: Repository;
  readonly #catalog: AgentCatalog;
  readonly #engine: DockerEngine;
  readonly #engineAddress: string;
  readonly #journal: Journal | undefined;
  readonly #graceMs: number;
  readonly #retryMs: number;
  readonly #queue = new JobQueue();
  readonly #pools: PoolKeeper;
  /** Open between a PostgreSQL volume's backups, so each asks where the WAL is without an exec. */
  readonly #psql = new PsqlSessions();
  readonly #backups: VolumeBackups;
  readonly #metrics: AgentMetrics;
  readonly #scheduler: Scheduler;
  readonly #debouncer: Debouncer<string>;
  readonly #watcher: InventoryWatcher;
  /** Replication, when [[peer]] entries or [replication] listen are configured. */
  readonly #replicator: Replicator | undefined;
  /** Peers' images loaded here as they arrive ([[peer]] standby = true). */
  readonly #standby: Standby;
  /** Pushes to the object-storage targets ([[target]]), when there are any. */
  #targets: readonly TargetPusher[] = [];
  /** Alerts to the [[notify]] entries, when there are any. */
  #alerts: AgentAlerts | undefined;
  readonly #started = new Date();
  #server: http.Server | undefined;
  #listen: string | null = null;
  #tracked: ReadonlyMap<string, TrackedVolume> = new Map();
  #missing: readonly string[] = [];
  readonly #reported = new Set<string>();
  #retracking: Promise<void> = Promise.resolve();
  #engineVersion: string | null = null;
  #retention: { lastRun: string | null; lastError: string | null } = { lastRun: null, lastError: null };
  #stopping: Promise<void> | undefined;
  #abandoned = false;
  /** The last scheduled drill of each source whose replica is held here. */
  readonly #drills = new Map<string, DrillRecord>();
  readonly #stopDrills = new AbortController();
  /** Failed backups in a row, per volume: continuous mode retries them with a growing delay. */
  readonly #failures = new Map<string, number>();

  private constructor(opts: AgentOptions, repo: Repository, catalog: AgentCatalog, engine: DockerEngine, journal: Journal | undefined, replicator: Replicator | undefined) {
    const config = opts.config;
    this.#config = config;
    this.#log = opts.log;
    this.#version = opts.version;
    this.#repo = repo;
    this.#catalog = catalog;
    this.#engine = engine;
    this.#engineAddress = opts.engineAddress ?? config.docker.host ?? 'default';
    this.#journal = journal;
    this.#replicator = replicator;
    this.#standby = new Standby({ engine, stateDir: opts.config.agent.state_dir, workDir: path.join(opts.config.agent.state_dir, 'tmp'), log: opts.log });
    this.#graceMs = opts.graceMs ?? DEFAULT_GRACE_MS;
    this.#retryMs = opts.retryMs ?? RETRY_FIRST_MS;
    this.#pools = new PoolKeeper(
      () => openRepoWorkers(repo, poolSettings(config)),
      opts.poolIdleMs ?? DEFAULT_POOL_IDLE_MS,
    );
    this.#metrics = new AgentMetrics(
      {
        volumes: () =>
          [...this.#tracked.keys()].map((name) => {
            const j = this.#journalStatus(name);
            return {
              name,
              lastSnapshotTime: this.#backups.record(name).lastSnapshot?.time ?? null,
              dirtyPaths: j ? j.dirty : null,
              journalTrusted: j ? j.watching && j.trusted : null,
            };
          }),
        engineUp: () => this.#watcher.state.connected,
        peers: () => this.#replicator?.status() ?? [],
        repository: () => repositorySize(this.#repo),
      },
      { processMetrics: opts.processMetrics ?? true, version: opts.version, peers: config.peer.map((p) => p.name) },
    );
    this.#backups = new VolumeBackups({
      queue: this.#queue,
      log: this.#log,
      take: (volume) => this.#journal?.take(volume),
      run: (volume, take) => this.#backupVolume(volume, take),
      onStart: (volume) => this.#alerts?.backupStarted(volume),
      onResult: (r) => this.#onResult(r),
    });
    this.#scheduler = new Scheduler({
      log: this.#log,
      backup: (volume) => this.#backups.trigger(volume, 'schedule'),
      retention: () => this.runRetention(),
      onMissed: ({ job, volume }) => this.#metrics.missed(job, volume),
    });
    this.#debouncer = new Debouncer((volume) => {
      if (this.#tracked.has(volume)) void this.#backups.trigger(volume, 'continuous');
    });
    this.#watcher = new InventoryWatcher({
      engine,
      catalog,
      log: this.#log,
      reconcileIntervalMs: config.docker.reconcile_interval,
      ...(opts.watcher ?? {}),
    });
  }

  /**
   * Opens the repository and catalog, binds the endpoint (a ListenError, exit
   * 2, leaves nothing running), then starts the watcher, journal and schedules.
   */
  static async start(opts: AgentOptions): Promise<Agent> {
    const { config, log } = opts;
    // the agent writes backups: it leaves the reserve of free space to prune and verify
    const repo = await Repository.open(config.repository.path, opts.password, { reserve: 'keep' });
    let catalog: AgentCatalog | undefined;
    let server: http.Server | undefined;
    let replicator: Replicator | undefined;
    try {
      catalog = AgentCatalog.open(config.agent.state_dir);
      let agent: Agent | undefined;
      const token = config.agent.token_file === undefined ? undefined : readPasswordFile(config.agent.token_file);
      if (config.agent.listen !== '') {
        const access = new Access({ token });
        const starting = () => Promise.reject(new UsageError('the agent is starting'));
        // bound first, answering through the agent once it exists: a port in use stops the start before anything runs
        server = await listen(
          config.agent.listen,
          handler(
            {
              metrics: async () => agent!.#metricsText(),
              health: () => agent?.health() ?? { ok: false, reasons: ['the agent is starting'] },
              status: () => agent?.status() ?? { starting: true },
              history: (hours) => agent?.history(hours) ?? { volumes: {} },
              backup: (volume: string) => (agent ? agent.backupNow(volume) : starting()),
              restore: (volume, snapshot, o) => (agent ? agent.restoreNow(volume, snapshot, o) : starting()),
              ...(config.peer.length > 0
                ? {
                    replicate: (peer: string | undefined) => (agent ? agent.replicate(peer) : starting()),
                    drill: (source: string | undefined) => (agent ? agent.drillNow(source) : starting()),
                    plan: (source: string) => (agent ? agent.plan(source) : starting()),
                  }
                : {}),
            },
            log,
            access,
          ),
        );
      }
      replicator = await startReplication(config, catalog, repo, log, {
        onPushed: (peer, outcome) => {
          if (agent) agent.#metrics.pushed(peer.name, outcome);
        },
        onReceived: (source, snapshot, stats) => {
          if (!agent) return;
          agent.#metrics.received(source.name, stats);
          const peer = config.peer.find((p) => p.id === source.id);
          if (peer) agent.#standby.arrived(peer, snapshot);
        },
      });
      const engine = opts.engine ?? (await import('../docker/connect.ts')).connectEngine(config);
      const engineAddress = opts.engineAddress ?? (opts.engine ? undefined : (await import('../docker/connect.ts')).engineAddress(config));
      const journal = opts.journal === undefined ? makeJournal(config, catalog, log) : (opts.journal ?? undefined);
      agent = new Agent({ ...opts, ...(engineAddress ? { engineAddress } : {}) }, repo, catalog, engine, journal, replicator);
      agent.#targets = await targetPushers(config, repo, log, opts.configFile, opts.retryMs);
      const self = agent;
      agent.#alerts = await AgentAlerts.start(config, catalog, log, [opts.password, ...(token ? [token] : [])], () => self.#alertInputs());
      if (server) {
        agent.#server = server;
        agent.#listen = boundAddress(server);
      }
      agent.#begin();
      return agent;
    } catch (err) {
      await replicator?.stop();
      if (server) await closeServer(server);
      catalog?.close();
      repo.close();
      throw err;
    }
  }

  #begin(): void {
    const config = this.#config;
    this.#seedSnapshots();
    this.#journal?.on('changed', (volume) => this.#onChanged(volume));
    this.#watcher.on('reconciled', (e) => {
      if (e.full || e.changes.length > 0) this.#retrack();
      // once the engine answers, what an interrupted backup left paused or stopped goes back to running
      if (e.reason === 'start' || e.reason === 'reconnect') {
        returnAbandoned(this.#engine, this.#catalog, this.#log).catch((err: unknown) => this.#log.error({ err }, 'could not read the quiesce journal'));
      }
    });
    this.#watcher.on('state', (s) => {
      if (s.connected && this.#engineVersion === null) {
        this.#engine.info().then(
          (i) => (this.#engineVersion = i.serverVersion),
          () => {},
        );
      }
    });
    this.#scheduler.setRetention(config.schedule.retention);
    if (this.#replicator && this.#replicator.targets.length > 0) {
      this.#scheduler.setJob('replication', config.replication.schedule, () => this.replicate());
      // what the last run left unsent (or what was backed up while the agent was down) goes now
      void this.replicate();
    }
    if (this.#targets.length > 0) {
      this.#scheduler.setJob('targets', config.replication.schedule, () => this.#pushToTargets());
      void this.#pushToTargets();
    }
    this.#scheduler.setJob('drill', config.drill.schedule ?? null, () => this.runDrills());
    const continuous = config.volume.filter((v) => v.continuous).map((v) => v.name);
    if (!this.#journal && continuous.length > 0) {
      this.#log.warn({ volumes: continuous }, 'continuous mode needs the change journal ([journal] enabled = true); these volumes are backed up on their schedule only');
    }
    // the catalog as last known, until the first reconcile says more
    this.#retrack();
    this.#alerts?.check();
    this.#watcher.start();
    this.#log.info(
      { pid: process.pid, version: this.#version, listen: this.#listen, repository: this.#repo.dir, state_dir: config.agent.state_dir, journal: this.#journal !== undefined },
      `lifeboat agent started${this.#listen ? `; metrics, health and status on http://${this.#listen}` : ''}`,
    );
  }

  /** Where the HTTP endpoint listens ("host:port"), or null when it is off. */
  get listenAddress(): string | null {
    return this.#listen;
  }

  get tracked(): ReadonlyMap<string, TrackedVolume> {
    return this.#tracked;
  }

  /** Waits for any re-evaluation of the tracked volumes in progress (tests). */
  async settled(): Promise<void> {
    await this.#retracking;
  }

  /** A backup of one tracked volume now (shares the volume's mutex with schedule and continuous mode). */
  backupNow(volume: string): Promise<BackupResult> {
    if (!this.#tracked.has(volume)) return Promise.reject(new VolumeNotTrackedError(`volume ${volume} is not tracked by the running agent (see [volumes] track and [[volume]] in its config)`));
    return this.#backups.trigger(volume, 'manual');
  }

  /**
   * Restores a snapshot into a tracked volume now, as the CLI's restore asks:
   * never beside a backup of the volume (after the one under way), and the
   * volume is backed up again once the journal has seen the restore's writes.
   */
  restoreNow(volume: string, snapshotId: string, opts: { force: boolean; include: readonly string[]; exclude: readonly string[] }): Promise<RestoreStats & { snapshot: string }> {
    if (!this.#tracked.has(volume)) return Promise.reject(new VolumeNotTrackedError(`volume ${volume} is not tracked by the running agent (see [volumes] track and [[volume]] in its config)`));
    const snapshot = findSnapshot(this.#repo, snapshotId);
    return this.#backups.exclusive(volume, `restore into volume ${volume}`, async () => {
      const { restoreToVolume } = await import('../restore/volume.ts');
      const pool = await this.#pools.acquire();
      try {
        const r = await restoreToVolume(this.#engine, this.#repo, snapshot, { volume, force: opts.force, include: opts.include, exclude: opts.exclude, pool });
        this.#log.info({ volume, snapshot: snapshot.id.slice(0, 8), files: r.stats.files, errors: r.stats.errors }, `restored snapshot ${snapshot.id.slice(0, 8)} into volume ${volume}`);
        return { snapshot: snapshot.id, ...r.stats };
      } finally {
        this.#pools.release();
      }
    });
  }

  /** Pushes to one [[peer]] (by name) or to every peer pushed to, now; resolves with each outcome. */
  replicate(peer?: string): Promise<PushOutcome[]> {
    if (!this.#replicator) return Promise.reject(new UsageError('this agent has no [[peer]] to replicate to'));
    return this.#replicator.replicate(peer);
  }

  /**
   * A drill of the replicas held here (or of `only`), through the job queue
   * (it competes with backups for the disks and cores); each verdict is kept
   * in the catalog's history.
   */
  async runDrills(only?: string): Promise<DrillRecord[]> {
    try {
      const records = await this.#queue.run('drill', () => drillReplicas(this.#config, this.#engine, this.#log, this.#stopDrills.signal, only));
      for (const r of records) {
        this.#drills.set(r.source, r);
        this.#metrics.drilled(r);
        rememberDrill(this.#catalog, r);
      }
      this.#alerts?.check();
      return records;
    } catch (err) {
      if (err instanceof JobCancelledError) return [];
      throw err;
    }
  }

  /** A drill asked for (POST /drill): of one source whose replica is held here, or of all. */
  drillNow(source: string | undefined): Promise<DrillRecord[]> {
    if (source !== undefined && !heldReplicas(this.#config).some((p) => p.name === source)) {
      return Promise.reject(new UsageError(`no replica of ${source} is held here (the sources are the [[peer]] entries that push to this agent)`));
    }
    return this.runDrills(source);
  }

  /** The dry run of recovering a source from its replica here: what would be made, and every blocker. */
  async plan(source: string): Promise<RecoveryReport> {
    const peer = heldReplicas(this.#config).find((p) => p.name === source);
    if (!peer) throw new UsageError(`no replica of ${source} is held here (the sources are the [[peer]] entries that push to this agent)`);
    const { recover } = await import('../recover/recover.ts');
    const workDir = path.join(this.#config.agent.state_dir, 'tmp');
    return withReplica(this.#config, peer, (repo, pool) => recover(this.#engine, repo, peer.name, { dryRun: true, onlyHostSnapshots: false, pool, workDir, log: this.#log }));
  }

  /**
   * Each tracked volume's snapshots of the last `hours` (and the newest one
   * before, where the recovery point's age starts), newest 1000 at most: the
   * console's charts.
   */
  history(hours: number): { readonly since: string; readonly volumes: Record<string, HistoryPoint[]> } {
    const since = new Date(Date.now() - hours * 3600_000).toISOString();
    const host = this.#config.agent.host;
    const byVolume = new Map<string, Snapshot[]>();
    for (const s of listSnapshots(this.#repo)) {
      if (s.host !== host || s.volume === null || !this.#tracked.has(s.volume)) continue;
      const list = byVolume.get(s.volume);
      if (list) list.push(s);
      else byVolume.set(s.volume, [s]);
    }
    const volumes: Record<string, HistoryPoint[]> = {};
    for (const [volume, snaps] of byVolume) {
      snaps.sort((a, b) => a.time.localeCompare(b.time));
      const inWindow = snaps.findIndex((s) => s.time >= since);
      const first = inWindow === -1 ? snaps.length - 1 : Math.max(0, inWindow - 1);
      volumes[volume] = snaps.slice(first).slice(-HISTORY_POINTS).map((s) => ({
        id: s.id,
        time: s.time,
        duration_ms: s.stats.duration_ms,
        files: s.stats.files,
        bytes_new: s.stats.bytes_new,
        bytes_stored: s.stats.bytes_stored,
        bytes_total: s.stats.bytes_total,
      }));
    }
    return { since, volumes };
  }

  /** One retention run, through the job queue: this host's snapshots (while no push reads them), then the replicas held here. */
  async runRetention(): Promise<void> {
    try {
      const own = () => runRetention(this.#repo, this.#config, this.#log);
      await this.#queue.run('retention', async () => {
        await (this.#replicator ? this.#replicator.exclusive(own) : own());
        if (this.#replicator) await runReplicaRetention(this.#config, this.#log);
      });
      this.#retention = { lastRun: new Date().toISOString(), lastError: null };
    } catch (err) {
      if (err instanceof JobCancelledError) return;
      const message = err instanceof Error ? err.message : String(err);
      this.#retention = { lastRun: new Date().toISOString(), lastError: message };
      this.#log.error({ err: message }, 'retention failed');
    }
  }

  health(): Health {
    const reasons: string[] = [];
    const w = this.#watcher.state;
    if (!w.connected) reasons.push(`docker engine at ${this.#engineAddress} unreachable${w.lastError ? `: ${w.lastError}` : ' (not connected yet)'}`);
    for (const p of this.#replicator?.status() ?? []) {
      if (p.failures >= UNREACHABLE_FAILURES) reasons.push(`replication to ${p.name} failed ${p.failures} times in a row (last success ${p.last_success ?? 'never'}): ${p.last_error}`);
    }
    return { ok: reasons.length === 0, reasons };
  }

  status(): StatusReport {
    const now = Date.now();
    const w = this.#watcher.state;
    const volumes: VolumeStatus[] = [...this.#tracked.values()].map((v) => {
      const r = this.#backups.record(v.name);
      return {
        name: v.name,
        last_snapshot: snapshotView(r.lastSnapshot, now),
        journal: journalView(this.#journalStatus(v.name)),
        schedule: v.schedule,
        next_run: this.#scheduler.nextRun(v.name)?.toISOString() ?? null,
        rpo_target_s: rpoTargetSeconds(v, r.lastDurationMs),
        continuous: v.continuous,
        debounce_ms: v.continuous ? v.debounceMs : null,
        running: r.running,
        last_backup: lastBackupView(r),
        last_error: r.lastError,
      };
    });
    return {
      agent: {
        running: true,
        pid: process.pid,
        uptime_s: Math.round((now - this.#started.getTime()) / 1000),
        version: this.#version,
        host: this.#config.agent.host,
        started: this.#started.toISOString(),
        listen: this.#listen,
        jobs: { running: this.#queue.running ?? null, waiting: this.#queue.waiting },
      },
      engine: {
        address: this.#engineAddress,
        reachable: w.connected,
        version: this.#engineVersion,
        last_error: w.lastError,
        last_reconcile: w.lastReconcile,
      },
      volumes,
      missing: this.#missing,
      peers: this.#replicator?.status() ?? [],
      targets: this.#targets.map((t) => t.status()),
      drills: {
        schedule: this.#config.drill.schedule ?? null,
        next_run: this.#scheduler.nextJob('drill')?.toISOString() ?? null,
        last: [...this.#drills.values()],
        history: Object.fromEntries(heldReplicas(this.#config).map((p) => [p.name, drillHistory(this.#catalog, p.name)])),
      },
      retention: {
        schedule: this.#config.schedule.retention,
        next_run: this.#scheduler.nextRetention()?.toISOString() ?? nextCronRun(this.#config.schedule.retention),
        policy: policyView(this.#config.retention),
        last_run: this.#retention.lastRun,
        last_error: this.#retention.lastError,
      },
      notes: [],
    };
  }

  /**
   * Stops taking new jobs (schedules, continuous mode, the queue), lets a
   * backup in flight end for up to the grace period, then abandons it (it
   * fails at its next block write, which returns its containers to their
   * state), and closes the watcher, journal, endpoint, workers, catalog and
   * repository. Idempotent; resolves when all is closed.
   */
  stop(): Promise<void> {
    this.#stopping ??= this.#shutdown();
    return this.#stopping;
  }

  /** Abandons the backup in flight now instead of at the end of the grace period (a second signal). */
  abandon(): void {
    if (this.#abandoned) return;
    this.#abandoned = true;
    const running = this.#queue.running;
    if (running) this.#log.warn({ job: running }, `abandoning ${running}; its containers are returned to their state first`);
    void this.#pools.abort(new JobCancelledError(`${running ?? 'backup'} abandoned: the agent is stopping`));
  }

  async #shutdown(): Promise<void> {
    const log = this.#log;
    this.#scheduler.stop();
    this.#debouncer.clear();
    // a drill under way stops waiting and removes what it made
    this.#stopDrills.abort();
    const running = this.#queue.running;
    const drained = this.#queue.close();
    let grace: NodeJS.Timeout | undefined;
    if (running) {
      log.info({ job: running, grace_s: this.#graceMs / 1000 }, `stopping: waiting for ${running} to finish`);
      grace = setTimeout(() => {
        log.warn({ job: running }, `${running} did not finish within the grace period`);
        this.abandon();
      }, this.#graceMs);
    }
    await drained;
    await this.#backups.settled();
    if (grace) clearTimeout(grace);
    await this.#retracking.catch(() => {});
    await this.#watcher.stop();
    await this.#journal?.close().catch((err: unknown) => log.error({ err }, 'closing the change journal failed'));
    if (this.#server) await closeServer(this.#server);
    await this.#alerts?.stop();
    await this.#replicator?.stop();
    await Promise.all(this.#targets.map((t) => t.stop()));
    await this.#pools.close();
    await this.#psql.close();
    this.#catalog.close();
    this.#repo.close();
    log.info('lifeboat agent stopped');
  }

  // --- internals

  #alertInputs(): ReturnType<AlertInputs> {
    return {
      volumes: [...this.#tracked.values()].map((v) => {
        const r = this.#backups.record(v.name);
        return {
          name: v.name,
          // after a restart, the newest snapshot is the last success known
          lastSuccess: r.lastSuccess ?? r.lastSnapshot?.time ?? null,
          lastSnapshotTime: r.lastSnapshot?.time ?? null,
          lastError: r.lastError,
          rpoTargetMs: this.#config.volume.find((e) => e.name === v.name)?.rpo ?? null,
          scheduleIntervalMs: v.continuous ? v.rpoMs : cronIntervalMs(v.schedule),
        };
      }),
      peers: (this.#replicator?.status() ?? []).filter((p) => p.push),
      targets: this.#targets.map((t) => t.status()),
      drills: [...this.#drills.values()],
      agentStarted: this.#started.toISOString(),
    };
  }

  #journalStatus(volume: string): JournalStatus | undefined {
    if (!this.#journal) return undefined;
    try {
      return this.#journal.status(volume);
    } catch {
      return undefined;
    }
  }

  /** Every target gets what it lacks (a push under way is followed by one more). */
  async #pushToTargets(): Promise<void> {
    await Promise.all(this.#targets.map((t) => t.request()));
  }

  async #metricsText(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.#metrics.contentType, body: await this.#metrics.text() };
  }

  #onResult(r: BackupResult): void {
    this.#metrics.backup(r);
    this.#alerts?.backupEnded(r);
    if (r.outcome === 'success') {
      this.#failures.delete(r.volume);
      // seconds of lag to the peers, not minutes: every snapshot goes out as soon as it is committed
      if (!this.#stopping && this.#replicator && this.#replicator.targets.length > 0) void this.replicate();
      if (!this.#stopping) void this.#pushToTargets();
    }
    if (r.outcome !== 'failure') return;
    const failures = (this.#failures.get(r.volume) ?? 0) + 1;
    this.#failures.set(r.volume, failures);
    const v = this.#tracked.get(r.volume);
    // a continuous volume's changes are still pending: try again (10 s, 20 s, ... up to 5 min), not only at the next change
    if (v?.continuous && this.#journal && !this.#stopping) {
      const delay = Math.min(RETRY_MAX_MS, this.#retryMs * 2 ** (failures - 1));
      this.#log.info({ volume: r.volume, failures, retry_in_s: delay / 1000 }, `retrying the backup of volume ${r.volume} in ${delay / 1000} s`);
      this.#debouncer.touch(r.volume, delay, delay);
    }
  }

  #onChanged(volume: string): void {
    const v = this.#tracked.get(volume);
    if (!v) return;
    this.#backups.noteChange(volume);
    if (!v.continuous || this.#stopping) return;
    // The journal reports a batch every `aggregate` while writes go on: quiet is a debounce without one.
    const quiet = v.debounceMs + this.#config.journal.aggregate;
    // The change that opened the burst must be in a snapshot within the rpo, backup included.
    const ceiling = Math.max(v.debounceMs, v.rpoMs - (this.#backups.record(volume).lastDurationMs ?? 0));
    this.#debouncer.touch(volume, quiet, ceiling);
  }

  /** The newest snapshot of each volume this host has in the repository, for status and recovery point age. */
  #seedSnapshots(): void {
    const host = this.#config.agent.host;
    for (const s of listSnapshots(this.#repo)) {
      if (s.host === host && s.volume !== null) this.#backups.seed(s.volume, s);
    }
  }

  async #backupVolume(volume: string, take: JournalTake | undefined): Promise<{ snapshot: Snapshot; warnings: readonly string[]; frozenMs: number }> {
    const config = this.#config;
    // loaded on the first backup: an agent with nothing to do never pays for the archiver
    const { backupVolume, configuredVolumeBackup } = await import('../backup/volume.ts');
    const pool = await this.#pools.acquire();
    try {
      const opts = {
        ...configuredVolumeBackup(config, this.#catalog, volume),
        pool,
        log: this.#log,
        psqlSessions: this.#psql,
        onWarning: (p: string, err: Error) => this.#log.warn({ volume, path: p, err: err.message }, 'skipped an entry it could not read'),
        onDamage: (message: string) => this.#log.error({ volume }, `repository damaged: ${message}`),
        ...(take ? { changes: take } : {}),
      };
      // `changes` is the journal's take (backupVolume examines only its paths when it is in paths mode)
      const r = await backupVolume(this.#engine, this.#repo, opts);
      // containers frozen together: the longest of them is how long the application stood still
      const frozenMs = Math.max(0, ...r.report.actions.map((a) => a.ms));
      return { snapshot: r.snapshot, warnings: r.report.warnings, frozenMs };
    } finally {
      this.#pools.release();
    }
  }

  /** Re-evaluates the tracked volumes (serialized): watches new ones, unwatches gone ones, sets their schedules. */
  #retrack(): void {
    this.#retracking = this.#retracking.then(() => this.#applyTracking()).catch((err: unknown) => {
      this.#log.error({ err }, 'could not update the tracked volumes');
    });
  }

  async #applyTracking(): Promise<void> {
    if (this.#stopping) return;
    const log = this.#log;
    const t = trackedVolumes(this.#catalog, this.#config);
    const known = this.#watcher.state.lastReconcile !== null;

    // bad input that is a runtime resource: one error per name, the rest goes on
    for (const name of t.missing) {
      if (!known || this.#reported.has(`missing:${name}`)) continue;
      this.#reported.add(`missing:${name}`);
      log.error({ volume: name }, `volume ${name} is listed in [[volume]] but the Docker engine has no volume of that name; the other volumes are backed up as usual`);
    }
    for (const e of t.excluded) {
      if (!e.listed || this.#reported.has(`excluded:${e.name}`)) continue;
      this.#reported.add(`excluded:${e.name}`);
      log.error({ volume: e.name }, `volume ${e.name} is listed in [[volume]] but not backed up: ${e.reason}`);
    }
    for (const key of [...this.#reported]) {
      const [kind, name] = [key.slice(0, key.indexOf(':')), key.slice(key.indexOf(':') + 1)];
      const still = kind === 'missing' ? t.missing.includes(name) : t.excluded.some((e) => e.name === name);
      if (!still) this.#reported.delete(key);
    }

    const before = this.#tracked;
    for (const [name, old] of before) {
      const now = t.volumes.get(name);
      if (now && sameTracking(old, now)) continue;
      this.#debouncer.cancel(name);
      if (now?.mountpoint !== old.mountpoint) await this.#unwatch(name);
      if (!now) {
        this.#backups.drop(name);
        this.#metrics.forget(name);
        log.info({ volume: name }, `volume ${name} is no longer tracked`);
      }
    }
    this.#tracked = t.volumes;
    this.#missing = t.missing;
    this.#scheduler.setVolumes(new Map([...t.volumes.values()].map((v) => [v.name, v.schedule])));
    for (const v of t.volumes.values()) {
      const old = before.get(v.name);
      if (old && sameTracking(old, v)) continue;
      if (!old) {
        log.info({ volume: v.name, schedule: v.schedule, continuous: v.continuous }, `tracking volume ${v.name}`);
        this.#metrics.track(v.name);
      }
      if (!old || old.mountpoint !== v.mountpoint) await this.#watch(v);
      // continuous mode starts with a backup: what changed while the agent was not watching is unknown
      if (v.continuous && this.#journal && (!old || !old.continuous || old.mountpoint !== v.mountpoint)) this.#debouncer.touch(v.name, v.debounceMs);
    }
  }

  async #watch(v: TrackedVolume): Promise<void> {
    if (!this.#journal) return;
    try {
      await this.#journal.watch(v.name, v.mountpoint);
    } catch (err) {
      this.#log.error({ volume: v.name, mountpoint: v.mountpoint, err: err instanceof Error ? err.message : String(err) }, `cannot watch volume ${v.name}; its backups scan the whole volume`);
    }
  }

  async #unwatch(volume: string): Promise<void> {
    if (!this.#journal) return;
    try {
      await this.#journal.unwatch(volume);
    } catch (err) {
      this.#log.warn({ volume, err: err instanceof Error ? err.message : String(err) }, `stopping the watch of volume ${volume} failed`);
    }
  }
}

/** A ChangeJournal when [journal] enabled. */
function makeJournal(config: Config, catalog: AgentCatalog, log: Logger): Journal | undefined {
  if (!config.journal.enabled) return undefined;
  return new ChangeJournal({
    catalog,
    log,
    aggregateMs: config.journal.aggregate,
    maxPaths: config.journal.max_paths,
    fullScanIntervalMs: config.journal.full_scan_interval,
  });
}

/** Replication's two sides, when configured (loaded only then: TLS and the x509 encoder are not free). */
async function startReplication(
  config: Config,
  catalog: AgentCatalog,
  repo: Repository,
  log: Logger,
  hooks: Pick<ReplicatorOptions, 'onPushed' | 'onReceived'>,
): Promise<Replicator | undefined> {
  if (config.peer.length === 0 && config.replication.listen === '') return undefined;
  const [{ Replicator }, { PeerStateStore }, { loadOrCreateIdentity }] = await Promise.all([
    import('../replicate/replicator.ts'),
    import('../replicate/peer-state.ts'),
    import('../replicate/identity.ts'),
  ]);
  const replicator = new Replicator({
    config,
    identity: await loadOrCreateIdentity(config.agent.state_dir),
    repo,
    state: new PeerStateStore(catalog.db),
    log,
    scratchDir: path.join(config.agent.state_dir, 'tmp'),
    ...hooks,
  });
  await replicator.listen();
  return replicator;
}

async function runReplicaRetention(config: Config, log: Logger): Promise<void> {
  const { replicaRetention } = await import('../replicate/replica-retention.ts');
  await replicaRetention(config, log);
}

/** The pushes to the config's object-storage targets; the S3 client loads only when there are some. */
async function targetPushers(config: Config, repo: Repository, log: Logger, configFile: string | undefined, retryMs: number | undefined): Promise<TargetPusher[]> {
  if (config.target.length === 0) return [];
  const [{ openTarget }, { TargetPusher }] = await Promise.all([import('../replicate/targets.ts'), import('../replicate/target-pusher.ts')]);
  return config.target.map(
    (t) => new TargetPusher(repo, { name: t.name, backend: openTarget(t, configFile), concurrency: t.concurrency, retryMs: retryMs ?? config.replication.retry, log }),
  );
}
