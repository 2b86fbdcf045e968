import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ReceiveStats } from '../replicate/replica.ts';
import type { PeerStatus, PushOutcome } from '../replicate/replicator.ts';
import type { BackupResult } from './backups.ts';
import type { DrillRecord } from './drills.ts';

export interface MetricsSource {
  /** Volumes tracked now, with the time of their newest snapshot (ISO) if any. */
  volumes(): Iterable<{ readonly name: string; readonly lastSnapshotTime: string | null; readonly dirtyPaths: number | null; readonly journalTrusted: boolean | null }>;
  engineUp(): boolean;
  peers(): readonly PeerStatus[];
  /** The repository's snapshots and the bytes of its packs (cheap: the packs and snapshots tables, never the blobs). */
  repository(): { readonly snapshots: number; readonly packBytes: number };
}

/**
 * The agent's Prometheus metrics, in a registry of its own. Per-volume gauges
 * describe the last backup; recovery point age is computed at each scrape
 * (now - newest snapshot), so it grows while nothing is backed up, which is
 * what an alert on RPO needs.
 */
export class AgentMetrics {
  readonly registry = new Registry();
  readonly #lastSuccess: Gauge<'volume'>;
  readonly #duration: Gauge<'volume'>;
  readonly #bytesRead: Gauge<'volume'>;
  readonly #bytesNew: Gauge<'volume'>;
  readonly #bytesStored: Gauge<'volume'>;
  readonly #examined: Gauge<'volume'>;
  readonly #lag: Gauge<'volume'>;
  readonly #lagHistogram: Histogram<'volume'>;
  readonly #backups: Counter<'volume' | 'result'>;
  readonly #missed: Counter<'job' | 'volume'>;
  readonly #pushes: Counter<'peer' | 'result'>;
  readonly #sent: Counter<'peer'>;
  readonly #received: Counter<'peer'>;
  readonly #drillPassed: Gauge<'peer'>;
  readonly #drillTime: Gauge<'peer'>;
  readonly #drillDuration: Gauge<'peer'>;

  constructor(source: MetricsSource, opts: { processMetrics?: boolean; version?: string; peers?: readonly string[] } = {}) {
    const registers = [this.registry];
    // event loop lag sampled once a second, not every 10 ms (prom-client's default): an idle agent should not wake 100 times a second
    if (opts.processMetrics ?? true) collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 1000 });
    const volumeGauge = (name: string, help: string) => new Gauge({ name, help, labelNames: ['volume'] as const, registers });
    this.#lastSuccess = volumeGauge('lifeboat_volume_last_success_timestamp_seconds', 'When the last successful backup of the volume ended (unix time).');
    this.#duration = volumeGauge('lifeboat_volume_last_backup_duration_seconds', 'How long the last successful backup of the volume took.');
    this.#bytesRead = volumeGauge('lifeboat_volume_last_backup_read_bytes', 'File content the last backup of the volume read.');
    this.#bytesNew = volumeGauge('lifeboat_volume_last_backup_new_bytes', 'Plaintext bytes the last backup of the volume added to the repository.');
    this.#bytesStored = volumeGauge('lifeboat_volume_last_backup_stored_bytes', 'Bytes on disk the last backup of the volume added (sealed, compressed).');
    this.#examined = volumeGauge('lifeboat_volume_last_backup_examined_entries', 'Entries whose metadata the last backup of the volume read (all in a full scan, the dirty ones with the journal).');
    this.#lag = volumeGauge('lifeboat_volume_last_backup_lag_seconds', 'Recovery point lag of the last backup: from the first change it covers (as the change journal reported it) to its snapshot being committed.');
    this.#lagHistogram = new Histogram({
      name: 'lifeboat_write_to_snapshot_seconds',
      help: 'Recovery point lag of each backup that covered journalled changes: first change to committed snapshot.',
      labelNames: ['volume'] as const,
      buckets: [1, 2, 5, 10, 20, 30, 60, 120, 300, 900, 3600, 4 * 3600, 86_400],
      registers,
    });
    this.#backups = new Counter({ name: 'lifeboat_backups_total', help: 'Backups by volume and result (success, failure, skipped: the volume was busy, cancelled: the agent stopped first).', labelNames: ['volume', 'result'] as const, registers });
    this.#missed = new Counter({ name: 'lifeboat_scheduled_runs_missed_total', help: 'Scheduled runs that did not start: the previous one had not ended, or the agent was too busy.', labelNames: ['job', 'volume'] as const, registers });

    new Gauge({
      name: 'lifeboat_volume_recovery_point_age_seconds',
      help: 'Age of the newest snapshot of the volume (now - its time); absent for a volume never backed up.',
      labelNames: ['volume'] as const,
      registers,
      collect() {
        this.reset();
        const now = Date.now();
        for (const v of source.volumes()) {
          if (v.lastSnapshotTime !== null) this.set({ volume: v.name }, Math.max(0, (now - Date.parse(v.lastSnapshotTime)) / 1000));
        }
      },
    });
    new Gauge({
      name: 'lifeboat_volume_journal_dirty_paths',
      help: 'Changed paths the change journal holds for the next backup of the volume.',
      labelNames: ['volume'] as const,
      registers,
      collect() {
        this.reset();
        for (const v of source.volumes()) if (v.dirtyPaths !== null) this.set({ volume: v.name }, v.dirtyPaths);
      },
    });
    new Gauge({
      name: 'lifeboat_volume_journal_trusted',
      help: '1 when the next backup of the volume may rely on the change journal, 0 when it will scan the whole volume.',
      labelNames: ['volume'] as const,
      registers,
      collect() {
        this.reset();
        for (const v of source.volumes()) if (v.journalTrusted !== null) this.set({ volume: v.name }, v.journalTrusted ? 1 : 0);
      },
    });
    this.#pushes = new Counter({ name: 'lifeboat_replication_pushes_total', help: 'Pushes to each peer by result (success, failure).', labelNames: ['peer', 'result'] as const, registers });
    this.#sent = new Counter({ name: 'lifeboat_replication_sent_bytes_total', help: 'Stored bytes of the blobs pushed to each peer.', labelNames: ['peer'] as const, registers });
    this.#received = new Counter({ name: 'lifeboat_replica_received_bytes_total', help: 'Stored bytes received from each peer into its replica here.', labelNames: ['peer'] as const, registers });
    // one label name for a remote agent across every metric: peer
    const sourceGauge = (name: string, help: string) => new Gauge({ name, help, labelNames: ['peer'] as const, registers });
    this.#drillPassed = sourceGauge('lifeboat_drill_passed', "1 when the last scheduled drill of the source's replica passed, 0 when it failed or could not run.");
    this.#drillTime = sourceGauge('lifeboat_drill_last_timestamp_seconds', 'When the last scheduled drill of the source began (unix time).');
    this.#drillDuration = sourceGauge('lifeboat_drill_duration_seconds', 'How long the last scheduled drill of the source took.');
    // one status read per scrape, shared by the gauges below
    let peers: readonly PeerStatus[] = [];
    const peerGauge = (name: string, help: string, value: (p: PeerStatus) => number | null, first = false) =>
      new Gauge({
        name,
        help,
        labelNames: ['peer'] as const,
        registers,
        collect() {
          if (first) peers = source.peers();
          this.reset();
          for (const p of peers) {
            const v = value(p);
            if (v !== null) this.set({ peer: p.name }, v);
          }
        },
      });
    peerGauge('lifeboat_peer_pending_snapshots', 'Snapshots of this repository the peer is not known to hold yet.', (p) => (p.push ? p.pending : null), true);
    peerGauge('lifeboat_peer_lag_seconds', 'How long the oldest snapshot not yet on the peer has waited; 0 when it has them all.', (p) => (p.push ? p.lag_s : null));
    peerGauge('lifeboat_peer_last_success_timestamp_seconds', 'When the last successful push to the peer ended (unix time).', (p) => (p.last_success ? Date.parse(p.last_success) / 1000 : null));
    peerGauge('lifeboat_peer_failures', 'Failed pushes to the peer since its last success.', (p) => (p.push ? p.failures : null));
    new Gauge({
      name: 'lifeboat_rpo_seconds',
      help: 'Per volume and peer: the age of the newest snapshot of the volume the peer holds (now - its capture time), the data a disaster here would lose; absent until the peer holds one.',
      labelNames: ['volume', 'peer'] as const,
      registers,
      collect() {
        this.reset();
        const now = Date.now();
        for (const p of peers) {
          for (const [volume, time] of Object.entries(p.recovery_points ?? {})) this.set({ volume, peer: p.name }, Math.max(0, (now - Date.parse(time)) / 1000));
        }
      },
    });
    peerGauge('lifeboat_replica_snapshots', "Snapshots held here in the replica of the peer's repository.", (p) => p.replica?.snapshots ?? null);
    new Gauge({ name: 'lifeboat_build_info', help: 'Always 1; the labels say which Lifeboat and Node run.', labelNames: ['version', 'node'] as const, registers }).set({ version: opts.version ?? 'unknown', node: process.versions.node }, 1);
    let repository = { snapshots: 0, packBytes: 0 };
    new Gauge({
      name: 'lifeboat_repository_snapshots',
      help: 'Snapshots in the repository.',
      registers,
      collect() {
        repository = source.repository();
        this.set(repository.snapshots);
      },
    });
    new Gauge({
      name: 'lifeboat_repository_size_bytes',
      help: "Bytes of the repository's packs.",
      registers,
      collect() {
        this.set(repository.packBytes);
      },
    });
    // a counter seen only once it moves cannot show its first increase: every known peer starts at 0
    for (const peer of opts.peers ?? []) for (const result of ['success', 'failure']) this.#pushes.inc({ peer, result }, 0);
    new Gauge({
      name: 'lifeboat_engine_up',
      help: '1 while the agent is connected to the Docker engine.',
      registers,
      collect() {
        this.set(source.engineUp() ? 1 : 0);
      },
    });
  }

  backup(r: BackupResult): void {
    this.#backups.inc({ volume: r.volume, result: r.outcome });
    if (r.outcome !== 'success' || !r.snapshot) return;
    const v = { volume: r.volume };
    const s = r.snapshot.stats;
    this.#lastSuccess.set(v, Date.now() / 1000);
    this.#duration.set(v, (r.durationMs ?? s.duration_ms) / 1000);
    this.#bytesRead.set(v, s.bytes_read);
    this.#bytesNew.set(v, s.bytes_new);
    this.#bytesStored.set(v, s.bytes_stored);
    if (s.examined !== undefined) this.#examined.set(v, s.examined);
    if (r.lagMs !== undefined) {
      this.#lag.set(v, r.lagMs / 1000);
      this.#lagHistogram.observe(v, r.lagMs / 1000);
    }
  }

  missed(job: string, volume: string | undefined): void {
    this.#missed.inc({ job, volume: volume ?? '' });
  }

  pushed(peer: string, o: PushOutcome): void {
    this.#pushes.inc({ peer, result: o.ok ? 'success' : 'failure' });
    if (o.report) this.#sent.inc({ peer }, o.report.bytes_sent);
  }

  received(peer: string, stats: ReceiveStats): void {
    this.#received.inc({ peer }, stats.bytes);
  }

  drilled(r: DrillRecord): void {
    const s = { peer: r.source };
    this.#drillPassed.set(s, r.ok ? 1 : 0);
    this.#drillTime.set(s, Date.parse(r.at) / 1000);
    if (r.duration_ms !== null) this.#drillDuration.set(s, r.duration_ms / 1000);
  }

  /** A volume now tracked: its backup counters start at 0, so its first failure is an increase. */
  track(volume: string): void {
    for (const result of ['success', 'failure']) this.#backups.inc({ volume, result }, 0);
  }

  /** A volume no longer tracked: its series go. */
  forget(volume: string): void {
    for (const g of [this.#lastSuccess, this.#duration, this.#bytesRead, this.#bytesNew, this.#bytesStored, this.#examined, this.#lag]) g.remove({ volume });
    for (const result of ['success', 'failure']) this.#backups.remove({ volume, result });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
