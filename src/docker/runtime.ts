import type { ContainerSpec, Healthcheck } from './engine.ts';

/**
 * What a container is allowed and limited to, beyond its image, mounts and
 * networks: privileges, devices, resource limits, kernel settings, DNS. A
 * container recreated without them may not run at all (a VPN without
 * NET_ADMIN, a shell without a TTY) or may run unbounded, so the spec records
 * them as the engine reports them and recovery passes them back.
 *
 * Empty, zero and null mean "the engine's default": that is what a spec
 * recorded before these settings were gets, and what recreation leaves out.
 * The log driver is deliberately not recorded: on the peer, logs go where
 * that host sends them (the lost host's log endpoint may be gone with it).
 */
export interface RuntimeSettings {
  readonly privileged: boolean;
  /** Capabilities in the engine's spelling, "CAP_NET_ADMIN". */
  readonly capAdd: readonly string[];
  readonly capDrop: readonly string[];
  /** "no-new-privileges", "seccomp=unconfined", "apparmor=..." */
  readonly securityOpt: readonly string[];
  readonly devices: readonly DeviceMapping[];
  readonly readonlyRootfs: boolean;
  /** Run an init process as PID 1; null: the engine's default. */
  readonly init: boolean | null;
  readonly tty: boolean;
  readonly openStdin: boolean;
  /** Seconds the engine waits after the stop signal; null: its default. */
  readonly stopTimeoutS: number | null;
  /** /dev/shm; 0: the engine's default. */
  readonly shmSizeBytes: number;
  /** `--tmpfs` mounts, destination to options. */
  readonly tmpfs: Readonly<Record<string, string>>;
  readonly sysctls: Readonly<Record<string, string>>;
  readonly ulimits: readonly Ulimit[];
  /** "name:address" */
  readonly extraHosts: readonly string[];
  readonly dns: readonly string[];
  readonly dnsSearch: readonly string[];
  readonly dnsOptions: readonly string[];
  readonly groupAdd: readonly string[];
  /** "private", "shareable", "host", "container:<id or name>"; "": the engine's default. */
  readonly ipcMode: string;
  /** "host", "container:<id or name>"; "": a namespace of its own. */
  readonly pidMode: string;
  readonly resources: Resources;
}

export interface DeviceMapping {
  readonly pathOnHost: string;
  readonly pathInContainer: string;
  /** "rwm" */
  readonly cgroupPermissions: string;
}

export interface Ulimit {
  readonly name: string;
  readonly soft: number;
  readonly hard: number;
}

/** Limits; 0 (and "" for the cpusets) means none. */
export interface Resources {
  readonly memoryBytes: number;
  readonly memoryReservationBytes: number;
  /** Memory plus swap; -1: unlimited swap. */
  readonly memorySwapBytes: number;
  /** CPUs in billionths (--cpus 1.5 is 1.5e9). */
  readonly nanoCpus: number;
  readonly cpuShares: number;
  readonly cpuQuota: number;
  readonly cpuPeriod: number;
  /** "0-3,6" */
  readonly cpusetCpus: string;
  readonly cpusetMems: string;
  readonly pidsLimit: number;
}

export const NO_LIMITS: Resources = Object.freeze({
  memoryBytes: 0,
  memoryReservationBytes: 0,
  memorySwapBytes: 0,
  nanoCpus: 0,
  cpuShares: 0,
  cpuQuota: 0,
  cpuPeriod: 0,
  cpusetCpus: '',
  cpusetMems: '',
  pidsLimit: 0,
});

/** Everything at the engine's default: what a spec recorded before runtime settings were has. */
export const ENGINE_DEFAULTS: RuntimeSettings = Object.freeze({
  privileged: false,
  capAdd: [],
  capDrop: [],
  securityOpt: [],
  devices: [],
  readonlyRootfs: false,
  init: null,
  tty: false,
  openStdin: false,
  stopTimeoutS: null,
  shmSizeBytes: 0,
  tmpfs: {},
  sysctls: {},
  ulimits: [],
  extraHosts: [],
  dns: [],
  dnsSearch: [],
  dnsOptions: [],
  groupAdd: [],
  ipcMode: '',
  pidMode: '',
  resources: NO_LIMITS,
});

/** A capability as the engine reports it: "net_admin" and "NET_ADMIN" are "CAP_NET_ADMIN"; "ALL" stays. */
export function capability(name: string): string {
  const upper = name.toUpperCase();
  return upper === 'ALL' || upper.startsWith('CAP_') ? upper : `CAP_${upper}`;
}

/** The containers whose namespaces a spec joins: network, IPC and PID modes "container:X". */
export function namespaceOwners(modes: { readonly networkMode: string; readonly runtime: RuntimeSettings }): string[] {
  const modesOf = [modes.networkMode, modes.runtime.ipcMode, modes.runtime.pidMode];
  return [...new Set(modesOf.filter((m) => m.startsWith('container:')).map((m) => m.slice('container:'.length)))];
}

/** The highest CPU a cpuset such as "0-3,6" names; undefined for one that does not parse. */
export function highestCpu(cpuset: string): number | undefined {
  let highest = -1;
  for (const part of cpuset.split(',')) {
    const m = /^\s*(\d+)(?:-(\d+))?\s*$/.exec(part);
    if (!m) return undefined;
    highest = Math.max(highest, Number(m[2] ?? m[1]));
  }
  return highest;
}

type Stored<T, K extends keyof T> = Omit<T, K> & Partial<Pick<T, K>>;

/**
 * A spec as stored. One recorded before runtime settings (and the
 * healthcheck's start period) were gets the engine's defaults for them,
 * which is what it ran with as far as anyone knows.
 */
export function recordedSpec(stored: Stored<Omit<ContainerSpec, 'healthcheck'>, 'runtime'> & { readonly healthcheck?: Stored<Healthcheck, 'startPeriodNs'> | null }): ContainerSpec {
  const hc = stored.healthcheck ?? null;
  return { ...stored, runtime: stored.runtime ?? ENGINE_DEFAULTS, healthcheck: hc && { ...hc, startPeriodNs: hc.startPeriodNs ?? 0 } };
}
