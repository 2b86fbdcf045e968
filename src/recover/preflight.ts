import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { imageTag } from '../backup/images.ts';
import type { ContainerSpec, ContainerSummary, DockerEngine, EngineInfo, VolumeInfo } from '../docker/engine.ts';
import { highestCpu, type RuntimeSettings } from '../docker/runtime.ts';
import { SnapshotNotFoundError } from '../errors/errors.ts';
import { formatBytes } from '../util/units.ts';
import type { Repository } from '../repo/repository.ts';
import { findSnapshot, snapshotsTagged } from '../repo/snapshots.ts';
import type { PlannedContainer, RecoveryPlan } from './plan.ts';
import { type HostPort, formatHostPort, hostPortOf, overlaps, portProblem } from './ports.ts';
import { portability } from './portability.ts';
import { BUILTIN_NETWORKS, hardDependencies, plannedBy, type Target } from './target.ts';

/**
 * What recovering a plan on this engine would do, and everything that stands
 * in its way, found without changing anything. A blocker stops the container
 * (or volume) it names, and the containers that depend on it; a warning does
 * not.
 */
export interface Preflight {
  readonly engine: Pick<EngineInfo, 'name' | 'os' | 'architecture' | 'osVersion' | 'isolation' | 'volumeDrivers'>;
  readonly images: readonly ImageCheck[];
  readonly volumes: readonly VolumeCheck[];
  /** In start order. */
  readonly containers: readonly ContainerCheck[];
  readonly networks: readonly NetworkCheck[];
  /** Every blocker, "container NAME: why" or "volume NAME: why". */
  readonly blockers: readonly string[];
  readonly warnings: readonly string[];
}

export interface ImageCheck {
  readonly id: string;
  readonly repoTags: readonly string[];
  /** "linux/amd64", with the Windows build when there is one. */
  readonly platform: string;
  /** engine: here already; repository: to be loaded from its image snapshot; missing: neither. */
  readonly source: 'engine' | 'repository' | 'missing';
  /** The image snapshot to load from (source repository). */
  readonly snapshot: string | null;
  readonly blockers: readonly string[];
  readonly warnings: readonly string[];
}

export interface VolumeCheck {
  readonly name: string;
  /** Its name on this engine. */
  readonly target: string;
  readonly driver: string;
  readonly snapshot: string;
  readonly time: string;
  /**
   * create: a new volume; restore: into an existing empty one (or one an
   * interrupted recovery made); replace: empty a non-empty one first
   * (--force); keep: a recovered container already uses it.
   */
  readonly action: 'create' | 'restore' | 'replace' | 'keep';
  readonly blockers: readonly string[];
  readonly warnings: readonly string[];
}

export interface ContainerCheck {
  readonly name: string;
  readonly target: string;
  readonly imageId: string;
  /** create: new; replace: remove the existing one of that name first (--force); keep: a recovery made it already. */
  readonly action: 'create' | 'replace' | 'keep';
  /** It was running at backup time, so recovery starts it. */
  readonly start: boolean;
  /** The container of that name on this engine now. */
  readonly existingId: string | null;
  readonly blockers: readonly string[];
  readonly warnings: readonly string[];
}

export interface NetworkCheck {
  readonly name: string;
  readonly action: 'create' | 'exists';
}

export async function preflight(engine: DockerEngine, repo: Repository, plan: RecoveryPlan, target: Target): Promise<Preflight> {
  const info = await engine.info();
  const [containers, volumes, networks] = await Promise.all([engine.listContainers(), engine.listVolumes(), engine.listNetworks()]);
  const images = await checkImages(engine, repo, plan, info, target);
  const imageById = new Map(images.map((i) => [i.id, i]));

  // Name conflicts first: a container being replaced frees its name, its ports and its volumes.
  const existingOf = (name: string) => containers.find((c) => c.name === name);
  const replaced = new Set<string>();
  for (const c of plan.containers) {
    const existing = existingOf(target.spec(c).name);
    if (existing && !target.owns(existing.labels) && target.force) replaced.add(existing.id);
  }

  const volumeChecks = await Promise.all(plan.volumes.map((v) => checkVolume(v, target, info, volumes, containers, replaced)));
  const volumeByTarget = new Map(volumeChecks.map((v) => [v.target, v]));
  const networkChecks = new Map<string, NetworkCheck>();
  const claimed: Published[] = [];
  const published = plan.containers.some((c) => target.spec(c).portBindings.length > 0) ? await publishedPorts(engine, containers) : [];

  const checks: ContainerCheck[] = [];
  for (const c of plan.containers) {
    const spec = target.spec(c);
    const existing = existingOf(spec.name);
    const blockers: string[] = [];
    const warnings: string[] = [];
    const action = !existing ? 'create' : target.owns(existing.labels) ? 'keep' : target.force ? 'replace' : undefined;
    if (action === undefined) {
      blockers.push(`a container named ${spec.name} exists here and was not made by a recovery of ${target.host}; remove or rename it, or pass --force to replace it`);
    } else if (action === 'replace') {
      warnings.push(`replaces the existing container ${spec.name} (${existing!.id.slice(0, 12)})`);
    }
    if (action !== 'keep') {
      const image = imageById.get(c.imageId)!;
      blockers.push(...image.blockers.map((b) => `image ${imageName(image)}: ${b}`));
      warnings.push(...image.warnings.map((w) => `image ${imageName(image)}: ${w}`));
      for (const m of spec.mounts) {
        if (m.type === 'volume' && m.name) {
          const v = volumeByTarget.get(m.name);
          if (v) blockers.push(...v.blockers.map((b) => `volume ${v.target}: ${b}`));
          else if (volumes.some((x) => x.name === m.name)) warnings.push(`volume ${m.name} has no snapshot; the container uses this engine's volume ${m.name} as it is`);
          else warnings.push(`volume ${m.name} has no snapshot; it is created empty`);
        } else if (m.type === 'bind') {
          if (!fs.existsSync(m.source)) blockers.push(`bind mount source ${m.source} does not exist on this host`);
          else warnings.push(`bind mount ${m.source} is this host's directory; its contents are not recovered`);
        }
      }
      const runtime = runtimeProblems(spec.runtime, info);
      blockers.push(...runtime.blockers);
      warnings.push(...runtime.warnings);
      for (const dep of hardDependencies(spec)) blockers.push(...dependencyProblems(dep, c, plan, checks, target, containers));
      for (const b of spec.portBindings) {
        const p = hostPortOf(b);
        if (!p) continue;
        const rival = [...claimed, ...published].find((x) => overlaps(x, p) && !replaced.has(x.id));
        // A container being replaced holds its ports until it is removed: do not probe those.
        const freed = published.some((x) => overlaps(x, p) && replaced.has(x.id));
        const problem = rival ? `host port ${formatHostPort(p)} is taken by container ${rival.container}` : freed ? undefined : await portProblem(p);
        if (problem) blockers.push(problem);
        claimed.push({ ...p, id: '', container: spec.name });
      }
      for (const name of networkNames(spec)) {
        if (!networkChecks.has(name)) networkChecks.set(name, { name, action: networks.some((n) => n.name === name) ? 'exists' : 'create' });
      }
    }
    checks.push({
      name: c.name,
      target: spec.name,
      imageId: c.imageId,
      action: action ?? 'create',
      start: c.start,
      existingId: existing?.id ?? null,
      blockers: [...new Set(blockers)],
      warnings: [...new Set(warnings)],
    });
  }
  return {
    engine: { name: info.name, os: info.os, architecture: info.architecture, osVersion: info.osVersion, isolation: info.isolation, volumeDrivers: info.volumeDrivers },
    images,
    volumes: volumeChecks,
    containers: checks,
    networks: [...networkChecks.values()],
    blockers: [
      ...volumeChecks.flatMap((v) => v.blockers.map((b) => `volume ${v.target}: ${b}`)),
      ...checks.flatMap((c) => c.blockers.map((b) => `container ${c.target}: ${b}`)),
    ],
    warnings: [
      ...volumeChecks.flatMap((v) => v.warnings.map((w) => `volume ${v.target}: ${w}`)),
      ...checks.flatMap((c) => c.warnings.map((w) => `container ${c.target}: ${w}`)),
    ],
  };
}

export const imageName = (i: Pick<ImageCheck, 'id' | 'repoTags'>): string => i.repoTags[0] ?? i.id.replace(/^sha256:/, '').slice(0, 12);

async function checkImages(engine: DockerEngine, repo: Repository, plan: RecoveryPlan, info: EngineInfo, target: Target): Promise<ImageCheck[]> {
  const out: ImageCheck[] = [];
  for (const id of new Set(plan.containers.map((c) => c.imageId))) {
    const saved = plan.images.get(id);
    const local = await engine.inspectImage(id);
    const snapshot = local ? null : imageSnapshot(repo, id, saved?.snapshot);
    const about = local ?? saved;
    const blockers: string[] = [];
    const warnings: string[] = [];
    if (!local && !snapshot) {
      blockers.push(saved ? 'not on this engine, and its image snapshot is not in the repository' : 'not on this engine, and the backup recorded no copy of it');
    }
    if (about) {
      const verdict = portability(about, { os: info.os, architecture: info.architecture, osVersion: info.osVersion, isolation: info.isolation });
      blockers.push(...verdict.blockers);
      warnings.push(...verdict.warnings);
    }
    if (snapshot && target.kind === 'recover') {
      for (const tag of about?.repoTags ?? []) {
        const other = await engine.inspectImage(tag);
        if (other && other.id !== id) warnings.push(`tag ${tag} names another image here and is left as it is; containers are created from the image by id`);
      }
    }
    out.push({
      id,
      repoTags: about?.repoTags ?? [],
      platform: about ? `${about.os}/${about.architecture}${about.osVersion ? ` ${about.osVersion}` : ''}` : 'unknown',
      source: local ? 'engine' : snapshot ? 'repository' : 'missing',
      snapshot,
      blockers,
      warnings,
    });
  }
  return out;
}

/** The snapshot holding an image: the one the backup recorded, else any tagged with the image's id. */
function imageSnapshot(repo: Repository, id: string, recorded: string | undefined): string | null {
  if (recorded) {
    try {
      return findSnapshot(repo, recorded).id;
    } catch (err) {
      if (!(err instanceof SnapshotNotFoundError)) throw err;
    }
  }
  return snapshotsTagged(repo, imageTag(id))[0]?.id ?? null;
}

async function checkVolume(
  v: RecoveryPlan['volumes'][number],
  target: Target,
  info: EngineInfo,
  volumes: readonly VolumeInfo[],
  containers: readonly ContainerSummary[],
  replaced: ReadonlySet<string>,
): Promise<VolumeCheck> {
  const name = target.volumeName(v.name);
  const existing = volumes.find((x) => x.name === name);
  const blockers: string[] = [];
  const warnings: string[] = [];
  let action: VolumeCheck['action'] = 'create';
  if (!existing) {
    if (info.volumeDrivers.length > 0 && !info.volumeDrivers.includes(v.driver)) {
      blockers.push(`volume driver ${v.driver} is not available on this engine (it has ${info.volumeDrivers.join(', ')})`);
    }
  } else {
    const users = containers.filter((c) => c.mounts.some((m) => m.type === 'volume' && m.name === name));
    if (users.some((c) => target.owns(c.labels))) {
      action = 'keep';
    } else {
      const entries = await fsp.readdir(existing.mountpoint).catch((err: NodeJS.ErrnoException) => {
        blockers.push(`cannot read the volume at ${existing.mountpoint}: ${err.code ?? err.message}`);
        return [];
      });
      // A volume a recovery made that no recovered container uses yet: that run stopped before its containers.
      if (entries.length === 0 || target.owns(existing.labels)) action = 'restore';
      else if (target.force) action = 'replace';
      else blockers.push(`volume ${name} exists here and is not empty; pass --force to replace its contents`);
      if (action === 'replace') warnings.push(`replaces the contents of the existing volume ${name}`);
      if (existing.driver !== v.driver) warnings.push(`exists here with driver ${existing.driver}; the source used ${v.driver}`);
      const running = users.filter((c) => (c.state === 'running' || c.state === 'paused') && !replaced.has(c.id));
      if (running.length > 0) blockers.push(`volume ${name} is in use by running containers here (${running.map((c) => c.name).join(', ')})`);
    }
  }
  return { name: v.name, target: name, driver: v.driver, snapshot: v.snapshot.id, time: v.snapshot.time, action, blockers, warnings };
}

/**
 * What this host lacks of what a container was given. A missing device, or
 * more CPUs than the host has, and the engine refuses the container; a
 * memory limit above the host's memory only stops limiting it.
 */
function runtimeProblems(r: RuntimeSettings, info: EngineInfo): { blockers: string[]; warnings: string[] } {
  const blockers: string[] = [];
  const warnings: string[] = [];
  if (info.os === 'linux') {
    for (const d of r.devices) if (!fs.existsSync(d.pathOnHost)) blockers.push(`device ${d.pathOnHost} does not exist on this host`);
  }
  const { nanoCpus, cpusetCpus, memoryBytes } = r.resources;
  if (info.cpus > 0 && nanoCpus > info.cpus * 1e9) blockers.push(`it was given ${nanoCpus / 1e9} CPUs (--cpus), and this engine has ${info.cpus}`);
  const highest = cpusetCpus ? highestCpu(cpusetCpus) : undefined;
  if (info.cpus > 0 && highest !== undefined && highest >= info.cpus) blockers.push(`it is pinned to CPUs ${cpusetCpus}, and this engine has CPUs 0-${info.cpus - 1}`);
  if (info.memoryBytes > 0 && memoryBytes > info.memoryBytes) {
    warnings.push(`its memory limit (${formatBytes(memoryBytes)}) is above this host's memory (${formatBytes(info.memoryBytes)})`);
  }
  return { blockers, warnings };
}

/** Why a container's hard dependency (a namespace mode container:X, a link to X) stops it, if it does. */
function dependencyProblems(
  dep: string,
  c: PlannedContainer,
  plan: RecoveryPlan,
  earlier: readonly ContainerCheck[],
  target: Target,
  containers: readonly ContainerSummary[],
): string[] {
  const planned = plannedBy(plan, dep) ?? plan.containers.find((p) => target.spec(p).name === dep);
  if (planned && planned !== c) {
    const check = earlier.find((x) => x.name === planned.name);
    if (!check) return [`needs container ${planned.name} first, but they depend on each other`];
    return check.blockers.length > 0 ? [`needs container ${planned.name}, which cannot be recovered`] : [];
  }
  const here = containers.some((x) => x.name === dep || x.id === dep);
  return here ? [] : [`needs container ${dep}, which is neither being recovered nor on this engine`];
}

/** User networks a spec joins. */
function networkNames(spec: ContainerSpec): string[] {
  const names = spec.networks.map((n) => n.name);
  if (!spec.networkMode.startsWith('container:')) names.push(spec.networkMode);
  return [...new Set(names)].filter((n) => !BUILTIN_NETWORKS.has(n));
}

/** A host port and the container (id, name) that publishes it or will. */
type Published = HostPort & { readonly id: string; readonly container: string };

/** Host ports published by running containers (without the userland proxy, no socket shows them). */
async function publishedPorts(engine: DockerEngine, containers: readonly ContainerSummary[]): Promise<Published[]> {
  const out: Published[] = [];
  for (const c of containers) {
    if (c.state !== 'running') continue;
    const detail = await engine.inspectContainer(c.id);
    for (const b of detail?.spec.portBindings ?? []) {
      const p = hostPortOf(b);
      if (p) out.push({ ...p, id: c.id, container: c.name });
    }
  }
  return out;
}
