import type { SavedImage } from '../backup/images.ts';
import type { VolumeSnapshotMeta } from '../backup/volume.ts';
import { startOrder } from '../docker/consistency.ts';
import type { ContainerDetail, ContainerSpec, ContainerState } from '../docker/engine.ts';
import { recordedSpec } from '../docker/runtime.ts';
import { CorruptDataError, NothingToRecoverError, UsageError } from '../errors/errors.ts';
import type { Repository } from '../repo/repository.ts';
import { shortId, type Snapshot } from '../repo/snapshot.ts';
import { listSnapshots, loadSnapshotMeta } from '../repo/snapshots.ts';

/**
 * What to bring back, read from a repository (a local one or a replica: the
 * code does not care): the newest volume snapshot of each volume, or the
 * newest at or before a point in time; the containers those snapshots
 * recorded, one per name (the newest record wins); and the images they use.
 * Containers come in dependency order.
 */
export interface RecoveryPlan {
  /** Whose snapshots; null: every host in the repository. */
  readonly host: string | null;
  /** The point in time asked for (ISO), or null for the latest. */
  readonly at: string | null;
  readonly volumes: readonly PlannedVolume[];
  /** Dependencies first. */
  readonly containers: readonly PlannedContainer[];
  /** The images the containers use, by id. */
  readonly images: ReadonlyMap<string, SavedImage>;
}

export interface PlannedVolume {
  readonly name: string;
  readonly driver: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly snapshot: Snapshot;
}

export interface PlannedContainer {
  readonly name: string;
  /** Its id on the source host (network mode container:<id> names containers by it). */
  readonly sourceId: string;
  /** At backup time. */
  readonly state: ContainerState;
  /** Running (or paused or restarting) at backup time: recovery starts it; otherwise it stays stopped. */
  readonly start: boolean;
  readonly imageId: string;
  readonly spec: ContainerSpec;
  /** The snapshot whose record of it is used. */
  readonly snapshot: string;
}

export interface PlanOptions {
  /** Only this host's snapshots; null: all of them (a replica holds one source's, whatever host names it used). */
  readonly host: string | null;
  /** The newest snapshot at or before this time, per volume; default the newest. */
  readonly at?: Date;
  /** Only these containers (and the volumes and images they use). */
  readonly containers?: readonly string[];
}

export async function buildPlan(repo: Repository, opts: PlanOptions): Promise<RecoveryPlan> {
  const at = opts.at?.getTime();
  const newest = new Map<string, Snapshot>();
  // Oldest first, so the last one seen per volume is the newest.
  for (const s of listSnapshots(repo)) {
    if (s.volume === null || !s.tags.includes('volume')) continue;
    if (opts.host !== null && s.host !== opts.host) continue;
    if (at !== undefined && Date.parse(s.time) > at) continue;
    newest.set(s.volume, s);
  }
  if (newest.size === 0) {
    const whose = opts.host === null ? 'in the repository' : `of host ${opts.host}`;
    throw new NothingToRecoverError(`no volume snapshot ${whose}${opts.at ? ` at or before ${opts.at.toISOString()}` : ''}`);
  }

  const chosen = [...newest.values()].sort((a, b) => a.time.localeCompare(b.time) || a.id.localeCompare(b.id));
  const volumes: PlannedVolume[] = [];
  const containers = new Map<string, PlannedContainer>();
  const images = new Map<string, SavedImage>();
  for (const snapshot of chosen) {
    const meta = volumeMeta(await loadSnapshotMeta(repo, snapshot), snapshot);
    volumes.push({ name: meta.volume.name, driver: meta.volume.driver, labels: meta.volume.labels, snapshot });
    for (const c of meta.containers) {
      containers.set(c.spec.name, {
        name: c.spec.name,
        sourceId: c.id,
        state: c.state,
        start: c.state === 'running' || c.state === 'paused' || c.state === 'restarting',
        imageId: c.imageId,
        spec: c.spec,
        snapshot: snapshot.id,
      });
    }
    for (const image of meta.images) images.set(image.id, image);
  }

  let selected = [...containers.values()];
  if (opts.containers && opts.containers.length > 0) {
    const unknown = opts.containers.filter((n) => !containers.has(n));
    if (unknown.length > 0) {
      throw new UsageError(`no container named ${unknown.join(', ')} in the snapshots; known: ${[...containers.keys()].sort().join(', ') || 'none'}`);
    }
    selected = opts.containers.map((n) => containers.get(n)!);
    const mounted = new Set(selected.flatMap((c) => c.spec.mounts.flatMap((m) => (m.type === 'volume' && m.name ? [m.name] : []))));
    volumes.splice(0, volumes.length, ...volumes.filter((v) => mounted.has(v.name)));
  }
  const used = new Set(selected.map((c) => c.imageId));
  return {
    host: opts.host,
    at: opts.at?.toISOString() ?? null,
    volumes: volumes.sort((a, b) => a.name.localeCompare(b.name)),
    containers: inStartOrder(selected),
    images: new Map([...images].filter(([id]) => used.has(id))),
  };
}

/** startOrder works on inspected containers; a recorded one carries all it looks at. */
function inStartOrder(containers: readonly PlannedContainer[]): PlannedContainer[] {
  const byDetail = new Map<ContainerDetail, PlannedContainer>();
  for (const c of containers) {
    const detail: ContainerDetail = {
      id: c.sourceId,
      name: c.name,
      image: c.spec.image,
      imageId: c.imageId,
      state: c.state,
      labels: c.spec.labels,
      mounts: c.spec.mounts,
      created: '',
      spec: c.spec,
    };
    byDetail.set(detail, c);
  }
  return startOrder([...byDetail.keys()]).map((d) => byDetail.get(d)!);
}

/** The sealed meta of a volume snapshot, checked for the parts recovery relies on. */
function volumeMeta(raw: unknown, s: Snapshot): VolumeSnapshotMeta {
  const m = raw as Partial<VolumeSnapshotMeta> | null;
  if (!m || m.kind !== 'volume' || !m.volume || !Array.isArray(m.containers) || !Array.isArray(m.images)) {
    throw new CorruptDataError(`snapshot ${shortId(s.id)} of volume ${s.volume} carries no volume metadata`);
  }
  const meta = m as VolumeSnapshotMeta;
  return { ...meta, containers: meta.containers.map((c) => ({ ...c, spec: recordedSpec(c.spec) })) };
}
