import type { AgentCatalog } from '../catalog/agent-catalog.ts';
import type { Config } from '../config/schema.ts';
import { flag, LABEL } from '../docker/consistency.ts';

export interface TrackedVolume {
  readonly name: string;
  readonly mountpoint: string;
  /** Cron expression of its scheduled backups. */
  readonly schedule: string;
  readonly continuous: boolean;
  readonly debounceMs: number;
  /**
   * Continuous mode's ceiling: a volume that never goes quiet is backed up at
   * least this often (back to back when a backup takes longer). Its rpo, else
   * 10 x its debounce.
   */
  readonly rpoMs: number;
}

export interface Tracking {
  readonly volumes: ReadonlyMap<string, TrackedVolume>;
  /** [[volume]] names the inventory does not hold (a runtime problem: logged, the rest goes on). */
  readonly missing: readonly string[];
  /** Volumes left out by a lifeboat.exclude label, with the reason; only those named in [[volume]] are worth a log line. */
  readonly excluded: readonly { readonly name: string; readonly reason: string; readonly listed: boolean }[];
}

/**
 * Which volumes the agent backs up, from the catalog's inventory: with
 * [volumes] track = "all" every current volume not excluded by a label (on
 * the volume, or on a container that mounts it), else only the [[volume]]
 * entries. A [[volume]] entry gives its volume its own schedule, continuous
 * mode and debounce either way.
 */
export function trackedVolumes(catalog: AgentCatalog, config: Config): Tracking {
  const entries = new Map(config.volume.map((v) => [v.name, v]));
  const current = new Map(catalog.volumes().map((v) => [v.name, v]));
  const candidates = config.volumes.track === 'all' ? [...new Set([...current.keys(), ...entries.keys()])] : [...entries.keys()];
  const volumes = new Map<string, TrackedVolume>();
  const missing: string[] = [];
  const excluded: { name: string; reason: string; listed: boolean }[] = [];
  for (const name of candidates.sort()) {
    const row = current.get(name);
    if (!row) {
      missing.push(name);
      continue;
    }
    const reason = exclusionReason(catalog, row.name, row.labels);
    if (reason) {
      excluded.push({ name, reason, listed: entries.has(name) });
      continue;
    }
    const entry = entries.get(name);
    volumes.set(name, {
      name,
      mountpoint: row.mountpoint,
      schedule: entry?.schedule ?? config.schedule.backup,
      // a target recovery point is continuous mode with that ceiling
      continuous: (entry?.continuous ?? false) || entry?.rpo !== undefined,
      debounceMs: Math.min(entry?.debounce ?? 5000, entry?.rpo ?? Infinity),
      rpoMs: entry?.rpo ?? 10 * (entry?.debounce ?? 5000),
    });
  }
  return { volumes, missing, excluded };
}

function exclusionReason(catalog: AgentCatalog, name: string, labels: Readonly<Record<string, string>>): string | undefined {
  if (flag(labels, LABEL.exclude)) return `volume ${name} carries ${LABEL.exclude}`;
  const c = catalog.containersMounting(name).find((x) => flag(x.labels, LABEL.exclude));
  return c && `container ${c.name}, which mounts volume ${name}, carries ${LABEL.exclude}`;
}

/** Whether two trackings of one volume differ in anything the agent set up for it. */
export function sameTracking(a: TrackedVolume, b: TrackedVolume): boolean {
  return a.mountpoint === b.mountpoint && a.schedule === b.schedule && a.continuous === b.continuous && a.debounceMs === b.debounceMs && a.rpoMs === b.rpoMs;
}
