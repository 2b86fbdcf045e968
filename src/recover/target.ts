import { LABEL } from '../docker/consistency.ts';
import type { ContainerSpec } from '../docker/engine.ts';
import { namespaceOwners } from '../docker/runtime.ts';
import { RECOVERY_LABEL } from './labels.ts';
import type { PlannedContainer, PlannedVolume, RecoveryPlan } from './plan.ts';

/**
 * How a plan lands on this engine: a recovery recreates everything as it was
 * (names, ports, networks), a drill makes an isolated copy. Preflight and
 * apply work on what this says, so they serve both.
 */
export interface Target {
  readonly kind: 'recover' | 'drill';
  /** The host recovered from. */
  readonly host: string;
  /** Replace existing containers and non-empty volumes not made by a recovery (recover --force). */
  readonly force: boolean;
  volumeName(name: string): string;
  volumeLabels(v: PlannedVolume): Record<string, string>;
  /** The spec to create the container with (the image reference as recorded; apply picks id or tag). */
  spec(c: PlannedContainer): ContainerSpec;
  /** How networks the specs name and this engine lacks are created. */
  readonly network: { readonly internal: boolean; readonly labels: Readonly<Record<string, string>> };
  /** Was an existing object with these labels made by a recovery of this host? A re-run keeps it. */
  owns(labels: Readonly<Record<string, string>>): boolean;
}

/** Networks every engine has; never created or removed. */
export const BUILTIN_NETWORKS: ReadonlySet<string> = new Set(['bridge', 'host', 'none', 'default', '']);

/** The planned container a `container:<id or name>` reference or a link target names, if any. */
export function plannedBy(plan: RecoveryPlan, ref: string): PlannedContainer | undefined {
  const key = ref.replace(/^\//, '');
  return plan.containers.find((c) => c.sourceId === key || c.name === key);
}

/** The containers a spec needs to exist before it can be created: the owners of namespaces it joins (mode container:X) and link targets. */
export function hardDependencies(spec: ContainerSpec): string[] {
  return [...namespaceOwners(spec), ...spec.links.map((l) => l.split(':')[0]!.replace(/^\//, ''))];
}

/** The spec with its container references renamed; an unplanned reference is kept (preflight reports it). */
function renamed(spec: ContainerSpec, plan: RecoveryPlan, rename: (name: string) => string): Pick<ContainerSpec, 'networkMode' | 'links' | 'hostname' | 'runtime'> {
  const ref = (r: string) => {
    const c = plannedBy(plan, r);
    return c ? rename(c.name) : r;
  };
  const mode = (m: string) => (m.startsWith('container:') ? `container:${ref(m.slice('container:'.length))}` : m);
  const shared = spec.networkMode.startsWith('container:');
  return {
    networkMode: mode(spec.networkMode),
    links: spec.links.map((l) => {
      const [target = '', alias = ''] = l.split(':');
      return `${ref(target)}:${alias}`;
    }),
    // The engine refuses a hostname for a container that shares another's network namespace.
    hostname: shared ? '' : spec.hostname,
    runtime: { ...spec.runtime, ipcMode: mode(spec.runtime.ipcMode), pidMode: mode(spec.runtime.pidMode) },
  };
}

export function recoveryTarget(plan: RecoveryPlan, host: string, force: boolean): Target {
  const mark = { [RECOVERY_LABEL.recoveredFrom]: host };
  return {
    kind: 'recover',
    host,
    force,
    volumeName: (name) => name,
    volumeLabels: (v) => ({ ...v.labels, ...mark }),
    spec: (c) => ({ ...c.spec, ...renamed(c.spec, plan, (n) => n), labels: { ...c.spec.labels, ...mark } }),
    network: { internal: false, labels: mark },
    owns: (labels) => labels[RECOVERY_LABEL.recoveredFrom] === host,
  };
}

/**
 * A drill's copy: every container and volume renamed with the run's prefix,
 * no published ports, bind mounts read-only (a drill must not change this
 * host), no restart policy, and one internal network in place of whatever
 * network the container had ("none" stays none; container:X points at X's
 * copy). On that network a copy answers to its original name and aliases,
 * so the copies find each other as the originals did. Everything carries
 * lifeboat.exclude, so an agent on this host does not back the copies up.
 */
export function drillTarget(plan: RecoveryPlan, host: string, runId: string): Target & { readonly networkName: string } {
  const prefixed = (name: string) => `${runId}-${name}`;
  const labels = { [RECOVERY_LABEL.drill]: runId, [RECOVERY_LABEL.drillFrom]: host, [LABEL.exclude]: 'true' };
  return {
    kind: 'drill',
    host,
    force: false,
    networkName: runId,
    volumeName: prefixed,
    volumeLabels: (v) => ({ ...v.labels, ...labels }),
    spec: (c) => {
      const s = c.spec;
      const own = renamed(s, plan, prefixed);
      const isolated = s.networkMode !== 'none' && !own.networkMode.startsWith('container:');
      const aliases = [...new Set([c.name, ...s.networks.flatMap((n) => n.aliases)])];
      return {
        ...s,
        ...own,
        name: prefixed(s.name),
        labels: { ...s.labels, ...labels },
        portBindings: [],
        mounts: s.mounts.map((m) =>
          m.type === 'volume' && m.name ? { ...m, name: prefixed(m.name) } : m.type === 'bind' ? { ...m, readOnly: true } : m,
        ),
        restartPolicy: { name: 'no', maximumRetryCount: 0 },
        networkMode: isolated ? runId : own.networkMode,
        networks: isolated ? [{ name: runId, aliases }] : own.networkMode.startsWith('container:') ? [] : s.networks,
      };
    },
    network: { internal: true, labels },
    owns: () => false,
  };
}
