import type { Readable } from 'node:stream';
import type { ExecSession } from './exec-session.ts';
import type { RuntimeSettings } from './runtime.ts';

/**
 * The narrow view of a Docker engine that Lifeboat needs. The one
 * implementation over the Engine API is dockerode-engine.ts (the only module
 * that imports dockerode); fake-engine.ts is its in-memory twin for unit
 * tests; test/docker/conformance.ts holds both to the same behaviour.
 */
export interface DockerEngine {
  /** The engine's platform, for portability checks and the catalog. */
  info(): Promise<EngineInfo>;
  /** Resolves when the engine answers; rejects with EngineUnavailableError otherwise. */
  ping(): Promise<void>;

  listContainers(): Promise<ContainerSummary[]>;
  /** Undefined when no container has this id or name. */
  inspectContainer(idOrName: string): Promise<ContainerDetail | undefined>;
  createContainer(spec: ContainerSpec): Promise<string>;
  removeContainer(id: string, opts?: { force?: boolean }): Promise<void>;
  /** A running container is left as it is; a paused one is refused (EngineRequestError). */
  start(id: string): Promise<void>;
  /** Waits up to timeoutSeconds for a clean exit, then kills, as `docker stop -t`. A stopped container is left as it is. */
  stop(id: string, timeoutSeconds: number): Promise<void>;
  /** Refused (EngineRequestError) unless the container is running. */
  pause(id: string): Promise<void>;
  /** Refused (EngineRequestError) unless the container is paused. */
  unpause(id: string): Promise<void>;
  /**
   * Runs a command inside a running container; never throws for a non-zero
   * exit (a command that cannot start exits 126). Refused (EngineRequestError)
   * when the container is stopped or paused.
   */
  exec(id: string, cmd: readonly string[], opts: { timeoutMs: number }): Promise<ExecResult>;
  /**
   * Starts a command inside a running container with its stdin open, for a
   * conversation (a database client); refused like exec. The command ends
   * when its stdin is closed (close()) or it exits.
   */
  session(id: string, cmd: readonly string[]): Promise<ExecSession>;

  listVolumes(): Promise<VolumeInfo[]>;
  inspectVolume(name: string): Promise<VolumeInfo | undefined>;
  /** An existing volume of that name is answered as it is (labels unchanged). */
  createVolume(name: string, opts?: { driver?: string; labels?: Record<string, string> }): Promise<VolumeInfo>;
  /** Refused (EngineRequestError) when missing or mounted by any container. */
  removeVolume(name: string): Promise<void>;

  listImages(): Promise<ImageInfo[]>;
  inspectImage(idOrRef: string): Promise<ImageInfo | undefined>;
  /** `docker save` of one image as a tar stream. */
  saveImage(id: string): Promise<Readable>;
  /** `docker load` of a tar stream made by saveImage. */
  loadImage(tar: Readable): Promise<void>;
  /** `docker rmi` (not forced): refused (EngineRequestError) when missing or used by a container. */
  removeImage(idOrRef: string): Promise<void>;

  listNetworks(): Promise<NetworkInfo[]>;
  /** `docker network create` (driver default bridge); refused (EngineRequestError) when the name is taken. */
  createNetwork(opts: { name: string; driver?: string; internal?: boolean; labels?: Record<string, string> }): Promise<NetworkInfo>;
  /** Refused (EngineRequestError) when missing, predefined (bridge, host, none) or in use by a running container. */
  removeNetwork(idOrName: string): Promise<void>;

  /**
   * The engine's event stream from `since` (unix seconds, fractions allowed;
   * the engine replays only its last 256 events), until the signal aborts
   * (the iteration just ends) or the connection drops, which ends the
   * iteration with EngineUnavailableError. Without `since`, only events from
   * when the stream opened (at the first next()) on.
   */
  events(opts: { since?: number; signal: AbortSignal }): AsyncIterable<EngineEvent>;
}

export interface EngineInfo {
  readonly name: string;
  readonly serverVersion: string;
  readonly apiVersion: string;
  /** "linux" or "windows". */
  readonly os: string;
  /** GOARCH spelling: amd64, arm64, ... */
  readonly architecture: string;
  /** Kernel version on Linux; the Windows build (10.0.20348) on Windows. */
  readonly osVersion: string;
  /** Volume drivers this engine has (`local` and installed plugins). */
  readonly volumeDrivers: readonly string[];
  /** Windows: the isolation containers get by default; null on Linux. */
  readonly isolation: 'process' | 'hyperv' | null;
  /** CPUs the engine can give containers. */
  readonly cpus: number;
  readonly memoryBytes: number;
}

export type ContainerState = 'created' | 'running' | 'paused' | 'restarting' | 'removing' | 'exited' | 'dead';

export interface Mount {
  readonly type: 'volume' | 'bind' | 'tmpfs';
  /** Volume name for type volume. */
  readonly name?: string;
  /** Host path (the volume's mountpoint, or the bind source). */
  readonly source: string;
  readonly destination: string;
  readonly readOnly: boolean;
}

export interface ContainerSummary {
  readonly id: string;
  /** Without the leading slash. */
  readonly name: string;
  /** The reference it was created from, e.g. "postgres:16". */
  readonly image: string;
  readonly imageId: string;
  readonly state: ContainerState;
  readonly labels: Readonly<Record<string, string>>;
  /** Sorted by destination. */
  readonly mounts: readonly Mount[];
  /** ISO time to the second (lists and inspects differ below that). */
  readonly created: string;
}

export interface PortBinding {
  /** "5432/tcp" */
  readonly containerPort: string;
  readonly hostIp: string;
  readonly hostPort: string;
}

/** Everything needed to create the container again, elsewhere. */
export interface ContainerSpec {
  readonly name: string;
  readonly image: string;
  readonly env: readonly string[];
  readonly cmd: readonly string[] | null;
  readonly entrypoint: readonly string[] | null;
  readonly workingDir: string;
  readonly user: string;
  readonly hostname: string;
  readonly labels: Readonly<Record<string, string>>;
  /** Exposed container ports, e.g. "80/tcp". */
  readonly exposedPorts: readonly string[];
  readonly portBindings: readonly PortBinding[];
  readonly mounts: readonly Mount[];
  readonly restartPolicy: { readonly name: string; readonly maximumRetryCount: number };
  /** "bridge", "none", "host", "container:<id>", or a user network's name. */
  readonly networkMode: string;
  readonly networks: readonly { readonly name: string; readonly aliases: readonly string[] }[];
  /** Legacy links, "container:alias". */
  readonly links: readonly string[];
  readonly stopSignal: string | null;
  readonly healthcheck: Healthcheck | null;
  readonly runtime: RuntimeSettings;
}

export interface Healthcheck {
  readonly test: readonly string[];
  readonly intervalNs: number;
  readonly timeoutNs: number;
  readonly retries: number;
  /** Failures in this time after a start do not count against the retries (a database replaying its log); 0: none. */
  readonly startPeriodNs: number;
}

/** A running container's healthcheck state, as `docker inspect` reports it. */
export type ContainerHealth = 'starting' | 'healthy' | 'unhealthy';

export interface ContainerDetail extends ContainerSummary {
  readonly spec: ContainerSpec;
  /** Only while running, and only for a container with a healthcheck. */
  readonly health?: ContainerHealth;
}

export interface ExecResult {
  /** -1 when timedOut. */
  readonly exitCode: number;
  /** stdout and stderr interleaved, at most 64 KiB (the tail is kept). */
  readonly output: string;
  /** True when the command was still running at the timeout (the real engine leaves it running; the fake kills it). */
  readonly timedOut: boolean;
}

export interface VolumeInfo {
  readonly name: string;
  readonly driver: string;
  /** Where the engine keeps the volume's data: the only path Lifeboat reads or writes it at. */
  readonly mountpoint: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly created: string;
}

export interface ImageInfo {
  /** sha256:... */
  readonly id: string;
  readonly repoTags: readonly string[];
  readonly os: string;
  readonly architecture: string;
  /** Windows images carry the build they need, e.g. "10.0.17763.5329". */
  readonly osVersion: string | null;
  readonly size: number;
  readonly created: string;
  /** Diff ids of the layers, base first. */
  readonly layers: readonly string[];
}

export interface NetworkInfo {
  readonly id: string;
  readonly name: string;
  readonly driver: string;
  readonly internal: boolean;
  readonly labels: Readonly<Record<string, string>>;
}

export interface EngineEvent {
  readonly type: 'container' | 'image' | 'volume' | 'network' | 'daemon' | 'plugin' | 'service' | 'node' | 'secret' | 'config';
  /** "create", "start", "die", "destroy", "pull", "delete", "mount", ... */
  readonly action: string;
  /** Container or image id, volume name, network id. */
  readonly id: string;
  readonly attributes: Readonly<Record<string, string>>;
  /** Nanoseconds since the epoch, as the engine reports it. */
  readonly timeNano: bigint;
}
