/**
 * DockerodeEngine: the DockerEngine over the Docker Engine API, through
 * dockerode. This is the only module that imports dockerode.
 *
 * Errors: a request the engine could not be reached for (refused, missing
 * socket, reset, broken pipe, hang-up, TLS failure...) rejects with
 * EngineUnavailableError; an answer with an HTTP error status rejects with
 * EngineRequestError carrying the engine's message, except a 404 from an
 * inspect, which is `undefined`, and a 304 from start/stop, which is success.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import Docker from 'dockerode';
import { EngineRequestError, EngineUnavailableError, LifeboatError, UsageError } from '../errors/errors.ts';
import { type ExecSession, SessionLines } from './exec-session.ts';
import { capability, type RuntimeSettings } from './runtime.ts';
import type {
  ContainerDetail,
  ContainerHealth,
  ContainerSpec,
  ContainerState,
  ContainerSummary,
  DockerEngine,
  EngineEvent,
  EngineInfo,
  ExecResult,
  ImageInfo,
  Mount,
  NetworkInfo,
  PortBinding,
  VolumeInfo,
} from './engine.ts';

/** The most exec output kept (the tail). */
export const EXEC_OUTPUT_LIMIT = 64 * 1024;

// ---- endpoints --------------------------------------------------------------

export type DockerEndpoint =
  | { readonly kind: 'unix'; readonly path: string }
  /** path in Windows form: \\.\pipe\docker_engine */
  | { readonly kind: 'npipe'; readonly path: string }
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number };

/** PEM files for a tcp endpoint with TLS (as `docker --tlsverify --tlscacert --tlscert --tlskey`). */
export interface DockerTlsFiles {
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
}

const DEFAULT_UNIX = '/var/run/docker.sock';
const DEFAULT_NPIPE = '\\\\.\\pipe\\docker_engine';

/**
 * Parses a Docker host as `docker -H` takes it: unix:///path.sock,
 * npipe:////./pipe/name, tcp://host[:port] (port 2375 when left out) or a bare
 * host:port. Without a value, DOCKER_HOST; without that, the platform's default
 * socket (unix:///var/run/docker.sock, or npipe:////./pipe/docker_engine on win32).
 * Anything else is refused with a UsageError naming the accepted forms.
 */
export function parseDockerHost(
  value: string | undefined,
  platform: NodeJS.Platform = process.platform,
  env: NodeJS.ProcessEnv = process.env,
): DockerEndpoint {
  let source = 'docker host';
  let raw = value;
  if (raw === undefined) {
    raw = env.DOCKER_HOST;
    source = 'DOCKER_HOST';
    if (raw === undefined || raw.trim() === '') {
      return platform === 'win32' ? { kind: 'npipe', path: DEFAULT_NPIPE } : { kind: 'unix', path: DEFAULT_UNIX };
    }
  }
  const text = raw.trim();
  const bad = (why: string): never => {
    throw new UsageError(
      `${source} ${JSON.stringify(raw)} is not usable: ${why} (expected unix:///path/docker.sock, npipe:////./pipe/docker_engine or tcp://host:port)`,
    );
  };
  if (text === '') return bad('it is empty');
  if (/[\s\u0000]/.test(text)) return bad('it contains whitespace');
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(text)?.[1]?.toLowerCase();
  if (scheme === 'unix') {
    const p = text.slice('unix://'.length);
    if (p === '') return { kind: 'unix', path: DEFAULT_UNIX };
    if (!p.startsWith('/')) return bad('the socket path must be absolute');
    return { kind: 'unix', path: p };
  }
  if (scheme === 'npipe') {
    const p = text.slice('npipe://'.length);
    if (p === '') return { kind: 'npipe', path: DEFAULT_NPIPE };
    const m = /^[/\\]{2}([^/\\]+)[/\\]pipe[/\\]([^/\\]+)$/i.exec(p);
    if (!m) return bad('a named pipe looks like //./pipe/docker_engine');
    return { kind: 'npipe', path: `\\\\${m[1]}\\pipe\\${m[2]}` };
  }
  if (scheme !== undefined && scheme !== 'tcp') return bad(`the scheme ${scheme}:// is not supported`);
  if (scheme === undefined && /^[/\\.]/.test(text)) return bad('a socket path needs the unix:// (or npipe://) prefix');
  const hostPart = scheme === 'tcp' ? text.slice('tcp://'.length) : text;
  if (hostPart.includes('://')) return bad('the scheme is not supported');
  let url: URL;
  try {
    url = new URL(`tcp://${hostPart}`);
  } catch {
    return bad('it is not a host:port');
  }
  if (url.username || url.password || url.search || url.hash) return bad('user, query and fragment are not allowed');
  if (url.pathname !== '' && url.pathname !== '/') return bad('a path is not allowed after host:port');
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (host === '') return bad('the host is missing');
  if (scheme === undefined && url.port === '') return bad('a bare host needs a port (or write tcp://host)');
  if (/:\/?$/.test(hostPart)) return bad('the port is empty');
  const port = url.port === '' ? 2375 : Number(url.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) return bad('the port is out of range');
  return { kind: 'tcp', host, port };
}

/** The endpoint back in `docker -H` form, for messages and the catalog. */
export function formatEndpoint(endpoint: DockerEndpoint): string {
  switch (endpoint.kind) {
    case 'unix':
      return `unix://${endpoint.path}`;
    case 'npipe':
      return `npipe://${endpoint.path.replace(/\\/g, '/')}`;
    case 'tcp':
      return `tcp://${endpoint.host.includes(':') ? `[${endpoint.host}]` : endpoint.host}:${endpoint.port}`;
  }
}

/**
 * TLS as the docker CLI takes it from the environment: on when DOCKER_TLS_VERIFY
 * is set (non-empty), with ca.pem, cert.pem and key.pem from DOCKER_CERT_PATH
 * (default ~/.docker).
 */
export function tlsFromEnvironment(env: NodeJS.ProcessEnv = process.env): DockerTlsFiles | undefined {
  if (!env.DOCKER_TLS_VERIFY) return undefined;
  const dir = env.DOCKER_CERT_PATH || path.join(os.homedir(), '.docker');
  return { ca: path.join(dir, 'ca.pem'), cert: path.join(dir, 'cert.pem'), key: path.join(dir, 'key.pem') };
}

// ---- the event stream's JSON lines -----------------------------------------

/** Splits a byte stream into lines, whatever the chunk boundaries (also inside a UTF-8 character). */
export class JsonLineSplitter {
  readonly #decoder = new StringDecoder('utf8');
  #pending = '';

  /** The complete, non-blank lines this chunk finishes. */
  push(chunk: Buffer | string): string[] {
    this.#pending += typeof chunk === 'string' ? chunk : this.#decoder.write(chunk);
    const parts = this.#pending.split('\n');
    this.#pending = parts.pop() ?? '';
    return parts.map((l) => l.trim()).filter((l) => l !== '');
  }

  /** What is left when the stream ends (a last line without a newline). */
  end(): string[] {
    const rest = (this.#pending + this.#decoder.end()).trim();
    this.#pending = '';
    return rest === '' ? [] : [rest];
  }
}

const EVENT_TYPES = new Set<EngineEvent['type']>(['container', 'image', 'volume', 'network', 'daemon', 'plugin', 'service', 'node', 'secret', 'config']);

/**
 * One line of /events as an EngineEvent; undefined for a line that is not an
 * event of a known type. timeNano is read from the text, as JSON numbers lose
 * nanoseconds past 2^53.
 */
export function parseEventLine(line: string): EngineEvent | undefined {
  let raw: {
    Type?: string;
    Action?: string;
    status?: string;
    id?: string;
    Actor?: { ID?: string; Attributes?: Record<string, string> | null };
    time?: number;
  };
  try {
    raw = JSON.parse(line) as typeof raw;
  } catch {
    return undefined;
  }
  if (!raw || typeof raw !== 'object') return undefined;
  const type = (raw.Type ?? (raw.id && raw.status ? 'container' : undefined)) as EngineEvent['type'] | undefined;
  const action = raw.Action ?? raw.status;
  if (!type || !EVENT_TYPES.has(type) || typeof action !== 'string') return undefined;
  const nano = /"timeNano"\s*:\s*(\d+)/.exec(line)?.[1];
  const timeNano = nano !== undefined ? BigInt(nano) : BigInt(Math.trunc(raw.time ?? 0)) * 1_000_000_000n;
  const attributes: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw.Actor?.Attributes ?? {})) attributes[k] = String(v);
  return { type, action, id: raw.Actor?.ID ?? raw.id ?? '', attributes, timeNano };
}

// ---- spec mapping -----------------------------------------------------------

interface RawMount {
  Type?: string;
  Name?: string;
  Source?: string;
  Destination?: string;
  RW?: boolean;
}

interface RawInspect {
  Id: string;
  Name: string;
  Image: string;
  Created: string;
  State: { Status: string; Health?: { Status?: string } | null };
  Config: {
    Hostname?: string;
    User?: string;
    Env?: string[] | null;
    Cmd?: string[] | string | null;
    Entrypoint?: string[] | string | null;
    Image: string;
    WorkingDir?: string;
    Labels?: Record<string, string> | null;
    ExposedPorts?: Record<string, unknown> | null;
    StopSignal?: string;
    StopTimeout?: number | null;
    Tty?: boolean;
    OpenStdin?: boolean;
    Healthcheck?: { Test?: string[] | null; Interval?: number; Timeout?: number; Retries?: number; StartPeriod?: number } | null;
  };
  HostConfig: RawHostConfig;
  Mounts?: RawMount[] | null;
  NetworkSettings?: { Networks?: Record<string, { Aliases?: string[] | null }> | null } | null;
}

/** HostConfig as inspect reports it; the runtime settings are also what create takes, by the same names. */
interface RawHostConfig {
  NetworkMode?: string;
  PortBindings?: Record<string, { HostIp?: string; HostPort?: string }[] | null> | null;
  RestartPolicy?: { Name?: string; MaximumRetryCount?: number } | null;
  Links?: string[] | null;
  Privileged?: boolean;
  CapAdd?: string[] | null;
  CapDrop?: string[] | null;
  SecurityOpt?: string[] | null;
  Devices?: { PathOnHost?: string; PathInContainer?: string; CgroupPermissions?: string }[] | null;
  ReadonlyRootfs?: boolean;
  Init?: boolean | null;
  ShmSize?: number;
  Tmpfs?: Record<string, string> | null;
  Sysctls?: Record<string, string> | null;
  Ulimits?: { Name?: string; Soft?: number; Hard?: number }[] | null;
  ExtraHosts?: string[] | null;
  Dns?: string[] | null;
  DnsSearch?: string[] | null;
  DnsOptions?: string[] | null;
  GroupAdd?: string[] | null;
  IpcMode?: string;
  PidMode?: string;
  Memory?: number;
  MemoryReservation?: number;
  MemorySwap?: number;
  NanoCpus?: number;
  CpuShares?: number;
  CpuQuota?: number;
  CpuPeriod?: number;
  CpusetCpus?: string;
  CpusetMems?: string;
  PidsLimit?: number | null;
}

function runtimeFromInspect(config: RawInspect['Config'], h: RawHostConfig): RuntimeSettings {
  return {
    privileged: h.Privileged ?? false,
    capAdd: (h.CapAdd ?? []).map(capability),
    capDrop: (h.CapDrop ?? []).map(capability),
    securityOpt: [...(h.SecurityOpt ?? [])],
    devices: (h.Devices ?? []).map((d) => ({ pathOnHost: d.PathOnHost ?? '', pathInContainer: d.PathInContainer ?? '', cgroupPermissions: d.CgroupPermissions ?? '' })),
    readonlyRootfs: h.ReadonlyRootfs ?? false,
    init: h.Init ?? null,
    tty: config.Tty ?? false,
    openStdin: config.OpenStdin ?? false,
    stopTimeoutS: config.StopTimeout ?? null,
    shmSizeBytes: h.ShmSize ?? 0,
    tmpfs: { ...h.Tmpfs },
    sysctls: { ...h.Sysctls },
    ulimits: (h.Ulimits ?? []).map((u) => ({ name: u.Name ?? '', soft: u.Soft ?? 0, hard: u.Hard ?? 0 })),
    extraHosts: [...(h.ExtraHosts ?? [])],
    dns: [...(h.Dns ?? [])],
    dnsSearch: [...(h.DnsSearch ?? [])],
    dnsOptions: [...(h.DnsOptions ?? [])],
    groupAdd: [...(h.GroupAdd ?? [])],
    ipcMode: h.IpcMode ?? '',
    pidMode: h.PidMode ?? '',
    resources: {
      memoryBytes: h.Memory ?? 0,
      memoryReservationBytes: h.MemoryReservation ?? 0,
      memorySwapBytes: h.MemorySwap ?? 0,
      nanoCpus: h.NanoCpus ?? 0,
      cpuShares: h.CpuShares ?? 0,
      cpuQuota: h.CpuQuota ?? 0,
      cpuPeriod: h.CpuPeriod ?? 0,
      cpusetCpus: h.CpusetCpus ?? '',
      cpusetMems: h.CpusetMems ?? '',
      pidsLimit: h.PidsLimit ?? 0,
    },
  };
}

/** The create body's parts for runtime settings. What is at the engine's default is left out: the peer's engine applies its own. */
function runtimeBody(r: RuntimeSettings): { config: Record<string, unknown>; host: Record<string, unknown> } {
  const res = r.resources;
  const host: Record<string, unknown> = {
    Privileged: r.privileged,
    CapAdd: r.capAdd,
    CapDrop: r.capDrop,
    SecurityOpt: r.securityOpt,
    Devices: r.devices.map((d) => ({ PathOnHost: d.pathOnHost, PathInContainer: d.pathInContainer, CgroupPermissions: d.cgroupPermissions })),
    ReadonlyRootfs: r.readonlyRootfs,
    ShmSize: r.shmSizeBytes,
    Tmpfs: r.tmpfs,
    Sysctls: r.sysctls,
    Ulimits: r.ulimits.map((u) => ({ Name: u.name, Soft: u.soft, Hard: u.hard })),
    ExtraHosts: r.extraHosts,
    Dns: r.dns,
    DnsSearch: r.dnsSearch,
    DnsOptions: r.dnsOptions,
    GroupAdd: r.groupAdd,
    IpcMode: r.ipcMode,
    PidMode: r.pidMode,
    Memory: res.memoryBytes,
    MemoryReservation: res.memoryReservationBytes,
    MemorySwap: res.memorySwapBytes,
    NanoCpus: res.nanoCpus,
    CpuShares: res.cpuShares,
    CpuQuota: res.cpuQuota,
    CpuPeriod: res.cpuPeriod,
    CpusetCpus: res.cpusetCpus,
    CpusetMems: res.cpusetMems,
    PidsLimit: res.pidsLimit,
  };
  const config: Record<string, unknown> = { Tty: r.tty, OpenStdin: r.openStdin, StopTimeout: r.stopTimeoutS };
  const isDefault = (v: unknown) => v === null || v === false || v === 0 || v === '' || (typeof v === 'object' && Object.keys(v!).length === 0);
  const set = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).filter(([, v]) => !isDefault(v)));
  // false is a choice for init (an engine may default to true); null is the default
  return { config: set(config), host: { ...set(host), ...(r.init === null ? {} : { Init: r.init }) } };
}

function mapMounts(raw: readonly RawMount[] | null | undefined): Mount[] {
  const out: Mount[] = [];
  for (const m of raw ?? []) {
    if (m.Type !== 'volume' && m.Type !== 'bind' && m.Type !== 'tmpfs') continue;
    out.push({
      type: m.Type,
      ...(m.Type === 'volume' && m.Name ? { name: m.Name } : {}),
      source: m.Source ?? '',
      destination: m.Destination ?? '',
      readOnly: m.RW === false,
    });
  }
  return out.sort((a, b) => a.destination.localeCompare(b.destination));
}

function asList(v: string[] | string | null | undefined): string[] | null {
  if (v === null || v === undefined) return null;
  return typeof v === 'string' ? [v] : [...v];
}

/** The recreatable spec of an inspected container (GET /containers/{id}/json). */
export function specFromInspect(raw: RawInspect): ContainerSpec {
  const name = raw.Name.replace(/^\//, '');
  const shortId = raw.Id.slice(0, 12);
  const portBindings: PortBinding[] = [];
  for (const [containerPort, list] of Object.entries(raw.HostConfig.PortBindings ?? {})) {
    for (const b of list ?? []) portBindings.push({ containerPort, hostIp: b.HostIp ?? '', hostPort: b.HostPort ?? '' });
  }
  portBindings.sort((a, b) => a.containerPort.localeCompare(b.containerPort) || a.hostPort.localeCompare(b.hostPort));
  const hc = raw.Config.Healthcheck;
  return {
    name,
    image: raw.Config.Image,
    env: [...(raw.Config.Env ?? [])],
    cmd: asList(raw.Config.Cmd),
    entrypoint: asList(raw.Config.Entrypoint),
    workingDir: raw.Config.WorkingDir ?? '',
    user: raw.Config.User ?? '',
    hostname: raw.Config.Hostname ?? '',
    labels: { ...raw.Config.Labels },
    exposedPorts: Object.keys(raw.Config.ExposedPorts ?? {}).sort(),
    portBindings,
    mounts: mapMounts(raw.Mounts),
    restartPolicy: { name: raw.HostConfig.RestartPolicy?.Name ?? '', maximumRetryCount: raw.HostConfig.RestartPolicy?.MaximumRetryCount ?? 0 },
    networkMode: raw.HostConfig.NetworkMode ?? '',
    networks: Object.entries(raw.NetworkSettings?.Networks ?? {})
      .map(([netName, n]) => ({ name: netName, aliases: (n.Aliases ?? []).filter((a) => a !== shortId && a !== raw.Id) }))
      .sort((a, b) => a.name.localeCompare(b.name)),
    // The engine keeps links as "/db:/web/db".
    links: (raw.HostConfig.Links ?? []).map((l) => {
      const [target = '', alias = ''] = l.split(':');
      return `${target.replace(/^\//, '')}:${alias.slice(alias.lastIndexOf('/') + 1)}`;
    }),
    stopSignal: raw.Config.StopSignal || null,
    healthcheck: hc
      ? { test: [...(hc.Test ?? [])], intervalNs: hc.Interval ?? 0, timeoutNs: hc.Timeout ?? 0, retries: hc.Retries ?? 0, startPeriodNs: hc.StartPeriod ?? 0 }
      : null,
    runtime: runtimeFromInspect(raw.Config, raw.HostConfig),
  };
}

/** The body of POST /containers/create for a spec (the primary network's endpoint included). */
export function createBodyFromSpec(spec: ContainerSpec): Record<string, unknown> {
  const exposed: Record<string, object> = {};
  for (const p of [...spec.exposedPorts, ...spec.portBindings.map((b) => b.containerPort)]) exposed[p] = {};
  const bindings: Record<string, { HostIp: string; HostPort: string }[]> = {};
  for (const b of spec.portBindings) (bindings[b.containerPort] ??= []).push({ HostIp: b.hostIp, HostPort: b.hostPort });
  const primary = primaryNetwork(spec);
  const primaryEntry = spec.networks.find((n) => n.name === primary);
  const runtime = runtimeBody(spec.runtime);
  const body: Record<string, unknown> = {
    ...runtime.config,
    Image: spec.image,
    Env: [...spec.env],
    WorkingDir: spec.workingDir,
    User: spec.user,
    Hostname: spec.hostname,
    Labels: { ...spec.labels },
    ExposedPorts: exposed,
    HostConfig: {
      Mounts: spec.mounts.map((m) => ({
        Type: m.type,
        Target: m.destination,
        ReadOnly: m.readOnly,
        ...(m.type === 'volume' ? (m.name ? { Source: m.name } : {}) : m.type === 'bind' ? { Source: m.source } : {}),
      })),
      PortBindings: bindings,
      RestartPolicy: { Name: spec.restartPolicy.name, MaximumRetryCount: spec.restartPolicy.maximumRetryCount },
      NetworkMode: spec.networkMode,
      ...(spec.links.length ? { Links: [...spec.links] } : {}),
      ...runtime.host,
    },
  };
  if (spec.cmd !== null) body.Cmd = [...spec.cmd];
  if (spec.entrypoint !== null) body.Entrypoint = [...spec.entrypoint];
  if (spec.stopSignal) body.StopSignal = spec.stopSignal;
  if (spec.healthcheck) {
    body.Healthcheck = {
      Test: [...spec.healthcheck.test],
      Interval: spec.healthcheck.intervalNs,
      Timeout: spec.healthcheck.timeoutNs,
      Retries: spec.healthcheck.retries,
      StartPeriod: spec.healthcheck.startPeriodNs,
    };
  }
  if (primary && primaryEntry && primaryEntry.aliases.length > 0 && primary !== 'bridge') {
    body.NetworkingConfig = { EndpointsConfig: { [primary]: { Aliases: [...primaryEntry.aliases] } } };
  }
  return body;
}

/** The network a container is created on (undefined for none/host/container: modes). */
function primaryNetwork(spec: ContainerSpec): string | undefined {
  const mode = spec.networkMode;
  if (mode === 'none' || mode === 'host' || mode.startsWith('container:')) return undefined;
  if (mode === '' || mode === 'default') return 'bridge';
  return mode;
}

// ---- errors -----------------------------------------------------------------

interface ModemError extends Error {
  statusCode?: number;
  json?: unknown;
  code?: string;
}

function engineMessage(err: ModemError): string {
  const json = err.json;
  if (json && typeof json === 'object' && 'message' in json && typeof json.message === 'string') return json.message;
  if (Buffer.isBuffer(json)) {
    const text = json.toString('utf8').trim();
    try {
      const parsed = JSON.parse(text) as { message?: unknown };
      if (typeof parsed.message === 'string') return parsed.message;
    } catch {
      // not JSON
    }
    if (text) return text;
  }
  return err.message.replace(/^\(HTTP code \d+\) [^-]*- /, '').trim();
}

// ---- the engine -------------------------------------------------------------

export interface DockerodeEngineOptions {
  /** Where the engine listens; default parseDockerHost(undefined). */
  readonly endpoint?: DockerEndpoint;
  /** TLS for a tcp endpoint; default from DOCKER_TLS_VERIFY / DOCKER_CERT_PATH. */
  readonly tls?: DockerTlsFiles;
}

export class DockerodeEngine implements DockerEngine {
  readonly endpoint: DockerEndpoint;
  readonly #docker: Docker;
  readonly #where: string;

  constructor(options: DockerodeEngineOptions = {}) {
    this.endpoint = options.endpoint ?? parseDockerHost(undefined);
    this.#where = formatEndpoint(this.endpoint);
    const tls = this.endpoint.kind === 'tcp' ? (options.tls ?? tlsFromEnvironment()) : undefined;
    const read = (file: string | undefined, what: string): Buffer | undefined => {
      if (file === undefined) return undefined;
      try {
        return fs.readFileSync(file);
      } catch (err) {
        throw new UsageError(`cannot read the Docker TLS ${what} ${file}: ${(err as Error).message}`, { cause: err });
      }
    };
    const opts: Docker.DockerOptions =
      this.endpoint.kind === 'tcp'
        ? {
            host: this.endpoint.host,
            port: this.endpoint.port,
            protocol: tls ? 'https' : 'http',
            ca: read(tls?.ca, 'CA certificate'),
            cert: read(tls?.cert, 'certificate'),
            key: read(tls?.key, 'key'),
          }
        : { socketPath: this.endpoint.path, host: undefined };
    this.#docker = withoutDockerEnv(() => new Docker(opts));
  }

  async info(): Promise<EngineInfo> {
    const [info, version] = await Promise.all([
      this.#call('read the engine info', () => this.#docker.info() as Promise<Record<string, unknown>>),
      this.#call('read the engine version', () => this.#docker.version() as unknown as Promise<Record<string, unknown>>),
    ]);
    const os = String(version.Os ?? info.OSType ?? '');
    const kernel = String(version.KernelVersion ?? info.KernelVersion ?? '');
    return {
      name: String(info.Name ?? ''),
      serverVersion: String(version.Version ?? info.ServerVersion ?? ''),
      apiVersion: String(version.ApiVersion ?? ''),
      os,
      architecture: String(version.Arch ?? ''),
      osVersion: os === 'windows' ? windowsBuild(String(info.OSVersion ?? ''), kernel) : kernel,
      volumeDrivers: [...((info.Plugins as { Volume?: string[] | null } | undefined)?.Volume ?? [])],
      isolation: info.Isolation === 'process' || info.Isolation === 'hyperv' ? info.Isolation : null,
      cpus: Number(info.NCPU ?? 0),
      memoryBytes: Number(info.MemTotal ?? 0),
    };
  }

  async ping(): Promise<void> {
    await this.#call('ping the engine', () => this.#docker.ping());
  }

  async listContainers(): Promise<ContainerSummary[]> {
    const list = await this.#call('list containers', () => this.#docker.listContainers({ all: true }));
    return list.map((c) => ({
      id: c.Id,
      name: (c.Names[0] ?? '').replace(/^\//, ''),
      image: c.Image,
      imageId: c.ImageID,
      state: c.State as ContainerState,
      labels: { ...c.Labels },
      mounts: mapMounts(c.Mounts as RawMount[]),
      created: isoSeconds(c.Created * 1000),
    }));
  }

  async inspectContainer(idOrName: string): Promise<ContainerDetail | undefined> {
    if (idOrName === '') return undefined;
    const raw = await this.#inspect('inspect container', () => this.#docker.getContainer(idOrName).inspect() as unknown as Promise<RawInspect>);
    if (!raw) return undefined;
    const spec = specFromInspect(raw);
    const state = raw.State.Status as ContainerState;
    // The engine keeps the last health of a stopped container; it says nothing about now.
    const health = state === 'running' ? raw.State.Health?.Status : undefined;
    return {
      id: raw.Id,
      name: spec.name,
      image: spec.image,
      imageId: raw.Image,
      state,
      labels: spec.labels,
      mounts: spec.mounts,
      created: isoSeconds(Date.parse(raw.Created)),
      spec,
      ...(health === 'starting' || health === 'healthy' || health === 'unhealthy' ? { health: health as ContainerHealth } : {}),
    };
  }

  async createContainer(spec: ContainerSpec): Promise<string> {
    const body = { ...createBodyFromSpec(spec), ...(spec.name ? { name: spec.name } : {}) };
    const container = await this.#call(`create container ${spec.name}`, () =>
      this.#docker.createContainer(body as Docker.ContainerCreateOptions),
    );
    const primary = primaryNetwork(spec);
    try {
      for (const net of spec.networks) {
        if (net.name === primary || net.name === 'none' || net.name === 'host' || primary === undefined) continue;
        await this.#call(`connect container ${spec.name} to network ${net.name}`, () =>
          this.#docker.getNetwork(net.name).connect({ Container: container.id, EndpointConfig: { Aliases: [...net.aliases] } }),
        );
      }
    } catch (err) {
      await this.#docker.getContainer(container.id).remove({ force: true }).catch(() => undefined);
      throw err;
    }
    return container.id;
  }

  async removeContainer(id: string, opts: { force?: boolean } = {}): Promise<void> {
    await this.#call(`remove container ${id}`, () => this.#docker.getContainer(id).remove({ force: opts.force ?? false }));
  }

  async start(id: string): Promise<void> {
    await this.#call(`start container ${id}`, () => this.#docker.getContainer(id).start(), [304]);
  }

  async stop(id: string, timeoutSeconds: number): Promise<void> {
    await this.#call(`stop container ${id}`, () => this.#docker.getContainer(id).stop({ t: Math.max(0, Math.round(timeoutSeconds)) }), [304]);
  }

  async pause(id: string): Promise<void> {
    await this.#call(`pause container ${id}`, () => this.#docker.getContainer(id).pause());
  }

  async unpause(id: string): Promise<void> {
    await this.#call(`unpause container ${id}`, () => this.#docker.getContainer(id).unpause());
  }

  async exec(id: string, cmd: readonly string[], opts: { timeoutMs: number }): Promise<ExecResult> {
    const what = `exec in container ${id}`;
    const deadline = Date.now() + opts.timeoutMs;
    const exec = await this.#call(what, () =>
      this.#docker.getContainer(id).exec({ Cmd: [...cmd], AttachStdout: true, AttachStderr: true, AttachStdin: false, Tty: false }),
    );
    const stream = (await this.#call(what, () => exec.start({ hijack: true, stdin: false }))) as NodeJS.ReadWriteStream & Readable;
    const tail = new OutputTail(EXEC_OUTPUT_LIMIT);
    const sink = () =>
      new Writable({
        write(chunk: Buffer, _enc, done) {
          tail.push(chunk);
          done();
        },
      });
    this.#docker.modem.demuxStream(stream, sink(), sink());
    const finished = await new Promise<'done' | 'timeout' | Error>((resolve) => {
      const timer = setTimeout(() => resolve('timeout'), Math.max(0, deadline - Date.now()));
      const end = (result: 'done' | Error) => {
        clearTimeout(timer);
        resolve(result);
      };
      stream.once('end', () => end('done'));
      stream.once('close', () => end('done'));
      stream.once('error', (err: Error) => end(err));
    });
    if (finished === 'timeout') {
      // The command goes on in the container; we only stop waiting for it.
      stream.destroy();
      return { exitCode: -1, output: tail.text(), timedOut: true };
    }
    if (finished instanceof Error) throw this.#map(finished, what);
    // The stream ends as the process exits; the engine records the exit code a moment later.
    for (let i = 0; ; i++) {
      const state = await this.#call(what, () => exec.inspect());
      if (!state.Running || i >= 100) return { exitCode: state.ExitCode ?? -1, output: tail.text(), timedOut: false };
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async session(id: string, cmd: readonly string[]): Promise<ExecSession> {
    const what = `session ${JSON.stringify(cmd.join(' '))} in container ${id}`;
    const exec = await this.#call(what, () =>
      this.#docker.getContainer(id).exec({ Cmd: [...cmd], AttachStdout: true, AttachStderr: true, AttachStdin: true, Tty: false }),
    );
    const stream = (await this.#call(what, () => exec.start({ hijack: true, stdin: true }))) as NodeJS.ReadWriteStream & Readable & Writable;
    const lines = new SessionLines();
    const sink = () =>
      new Writable({
        write(chunk: Buffer, _enc, done) {
          lines.push(chunk);
          done();
        },
      });
    this.#docker.modem.demuxStream(stream, sink(), sink());
    const ended = new Promise<void>((resolve) => {
      const end = (why: string) => {
        lines.end(why);
        resolve();
      };
      stream.once('end', () => end('its output closed'));
      stream.once('close', () => end('the connection closed'));
      stream.once('error', (err: Error) => end(err.message));
    });
    return {
      write: (text) =>
        new Promise((resolve, reject) => {
          if (lines.ended) return reject(new EngineRequestError(`${what} has ended`));
          stream.write(text, (err) => (err ? reject(this.#map(err, what)) : resolve()));
        }),
      readUntil: (match, timeoutMs) => lines.readUntil(match, timeoutMs, what),
      close: async (timeoutMs) => {
        // stdin closed is the command's end of input; the connection goes once it exits, or at the deadline
        stream.end();
        const timer = new Promise<void>((resolve) => setTimeout(resolve, timeoutMs).unref());
        await Promise.race([ended, timer]);
        stream.destroy();
      },
    };
  }

  async listVolumes(): Promise<VolumeInfo[]> {
    const res = await this.#call('list volumes', () => this.#docker.listVolumes());
    return (res.Volumes ?? []).map((v) => volumeInfo(v as unknown as RawVolume));
  }

  async inspectVolume(name: string): Promise<VolumeInfo | undefined> {
    if (name === '') return undefined;
    const raw = await this.#inspect(`inspect volume ${name}`, () => this.#docker.getVolume(name).inspect() as unknown as Promise<RawVolume>);
    return raw ? volumeInfo(raw) : undefined;
  }

  async createVolume(name: string, opts: { driver?: string; labels?: Record<string, string> } = {}): Promise<VolumeInfo> {
    const volume = await this.#call(`create volume ${name}`, () =>
      this.#docker.createVolume({ Name: name, Driver: opts.driver ?? 'local', Labels: { ...opts.labels } }),
    );
    const raw = await this.#call(`inspect volume ${name}`, () => volume.inspect() as unknown as Promise<RawVolume>);
    return volumeInfo(raw);
  }

  async removeVolume(name: string): Promise<void> {
    await this.#call(`remove volume ${name}`, () => this.#docker.getVolume(name).remove());
  }

  async listImages(): Promise<ImageInfo[]> {
    const list = await this.#call('list images', () => this.#docker.listImages({ all: false }));
    const out: ImageInfo[] = [];
    for (const summary of list) {
      const info = await this.inspectImage(summary.Id);
      if (info) out.push(info);
    }
    return out;
  }

  async inspectImage(idOrRef: string): Promise<ImageInfo | undefined> {
    if (idOrRef === '') return undefined;
    const raw = await this.#inspect(`inspect image ${idOrRef}`, () => this.#docker.getImage(idOrRef).inspect() as unknown as Promise<RawImage>);
    if (!raw) return undefined;
    return {
      id: raw.Id,
      repoTags: [...(raw.RepoTags ?? [])],
      os: raw.Os ?? '',
      architecture: raw.Architecture ?? '',
      osVersion: raw.OsVersion || null,
      size: raw.Size ?? 0,
      created: isoSeconds(Date.parse(raw.Created ?? '')),
      layers: [...(raw.RootFS?.Layers ?? [])],
    };
  }

  async saveImage(id: string): Promise<Readable> {
    const what = `save image ${id}`;
    const res = (await this.#call(what, () => this.#docker.getImage(id).get())) as Readable;
    const out = new PassThrough();
    res.on('error', (err) => out.destroy(this.#map(err, what)));
    res.on('aborted', () => out.destroy(new EngineUnavailableError(`${what}: the connection to the Docker engine at ${this.#where} dropped`)));
    res.pipe(out);
    return out;
  }

  async loadImage(tar: Readable): Promise<void> {
    const what = 'load an image';
    let inputError: Error | undefined;
    tar.once('error', (err) => (inputError = err));
    let res: Readable;
    try {
      res = (await this.#call(what, () => this.#docker.loadImage(tar, { quiet: true }))) as Readable;
    } catch (err) {
      if (inputError) throw inputError;
      throw err;
    }
    const splitter = new JsonLineSplitter();
    const lines: string[] = [];
    try {
      for await (const chunk of res) lines.push(...splitter.push(chunk as Buffer));
    } catch (err) {
      throw inputError ?? this.#map(err, what);
    }
    if (inputError) throw inputError;
    lines.push(...splitter.end());
    for (const line of lines) {
      let msg: { error?: string; errorDetail?: { message?: string } };
      try {
        msg = JSON.parse(line) as typeof msg;
      } catch {
        continue;
      }
      if (msg.error || msg.errorDetail) throw new EngineRequestError(`${what}: ${msg.errorDetail?.message ?? msg.error}`);
    }
  }

  async removeImage(idOrRef: string): Promise<void> {
    await this.#call(`remove image ${idOrRef}`, () => this.#docker.getImage(idOrRef).remove({ force: false }));
  }

  async listNetworks(): Promise<NetworkInfo[]> {
    const list = await this.#call('list networks', () => this.#docker.listNetworks());
    return list.map(networkInfo);
  }

  async createNetwork(opts: { name: string; driver?: string; internal?: boolean; labels?: Record<string, string> }): Promise<NetworkInfo> {
    const what = `create network ${opts.name}`;
    const network = await this.#call(what, () =>
      this.#docker.createNetwork({
        Name: opts.name,
        Driver: opts.driver ?? 'bridge',
        Internal: opts.internal ?? false,
        Labels: { ...opts.labels },
        CheckDuplicate: true,
      }),
    );
    return networkInfo(await this.#call(what, () => network.inspect() as Promise<Docker.NetworkInspectInfo>));
  }

  async removeNetwork(idOrName: string): Promise<void> {
    await this.#call(`remove network ${idOrName}`, () => this.#docker.getNetwork(idOrName).remove());
  }

  events(opts: { since?: number; signal: AbortSignal }): AsyncIterable<EngineEvent> {
    return { [Symbol.asyncIterator]: () => this.#eventStream(opts)[Symbol.asyncIterator]() };
  }

  async *#eventStream(opts: { since?: number; signal: AbortSignal }): AsyncGenerator<EngineEvent> {
    const { signal } = opts;
    if (signal.aborted) return;
    const query: Record<string, unknown> = { abortSignal: signal };
    if (opts.since !== undefined) query.since = formatSince(opts.since);
    let res: Readable;
    try {
      res = (await this.#docker.getEvents(query as Docker.GetEventsOptions)) as Readable;
    } catch (err) {
      if (signal.aborted) return;
      throw this.#map(err, 'watch engine events');
    }
    const splitter = new JsonLineSplitter();
    try {
      for await (const chunk of res) {
        for (const line of splitter.push(chunk as Buffer)) {
          const event = parseEventLine(line);
          if (event) yield event;
        }
      }
    } catch (err) {
      if (signal.aborted) return;
      throw new EngineUnavailableError(`the event stream of the Docker engine at ${this.#where} failed: ${(err as Error).message}`, { cause: err });
    } finally {
      res.destroy();
    }
    if (signal.aborted) return;
    for (const line of splitter.end()) {
      const event = parseEventLine(line);
      if (event) yield event;
    }
    throw new EngineUnavailableError(`the event stream of the Docker engine at ${this.#where} ended`);
  }

  /** Runs a dockerode call, mapping its failure; `okStatus` codes count as success. */
  async #call<T>(what: string, fn: () => Promise<T>, okStatus: readonly number[] = []): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (okStatus.includes((err as ModemError).statusCode ?? -1)) return undefined as T;
      throw this.#map(err, what);
    }
  }

  /** An inspect: 404 is undefined. */
  async #inspect<T>(what: string, fn: () => Promise<T>): Promise<T | undefined> {
    try {
      return await fn();
    } catch (err) {
      if ((err as ModemError).statusCode === 404) return undefined;
      throw this.#map(err, what);
    }
  }

  #map(err: unknown, what: string): Error {
    if (err instanceof LifeboatError) return err;
    const e = err as ModemError;
    if (typeof e?.statusCode === 'number') {
      return new EngineRequestError(`${what}: ${engineMessage(e)}`, { cause: err });
    }
    const detail = e?.code ? `${e.code}: ${e.message}` : String(e?.message ?? err);
    return new EngineUnavailableError(`cannot ${what}: the Docker engine at ${this.#where} is unavailable (${detail})`, { cause: err });
  }
}

interface RawVolume {
  Name: string;
  Driver?: string;
  Mountpoint?: string;
  Labels?: Record<string, string> | null;
  CreatedAt?: string;
}

interface RawImage {
  Id: string;
  RepoTags?: string[] | null;
  Os?: string;
  Architecture?: string;
  OsVersion?: string;
  Size?: number;
  Created?: string;
  RootFS?: { Layers?: string[] | null };
}

function networkInfo(n: Docker.NetworkInspectInfo): NetworkInfo {
  return { id: n.Id, name: n.Name, driver: n.Driver, internal: n.Internal ?? false, labels: { ...n.Labels } };
}

function volumeInfo(v: RawVolume): VolumeInfo {
  return {
    name: v.Name,
    driver: v.Driver ?? 'local',
    mountpoint: v.Mountpoint ?? '',
    labels: { ...v.Labels },
    created: isoSeconds(Date.parse(v.CreatedAt ?? '')),
  };
}

/** ISO time to the second: list and inspect report times at different precisions. */
function isoSeconds(ms: number): string {
  return Number.isFinite(ms) ? new Date(Math.floor(ms / 1000) * 1000).toISOString() : new Date(0).toISOString();
}

/** The `since` query value: seconds with up to nanoseconds, as the engine parses it. */
export function formatSince(seconds: number): string {
  if (Number.isInteger(seconds)) return String(seconds);
  const whole = Math.floor(seconds);
  const nanos = Math.round((seconds - whole) * 1e9);
  return nanos >= 1e9 ? String(whole + 1) : `${whole}.${String(nanos).padStart(9, '0')}`;
}

/** "10.0.20348" from the engine's OSVersion, or from a kernel version "10.0 20348 (20348.1.amd64fre...)". */
function windowsBuild(osVersion: string, kernel: string): string {
  if (/^\d+\.\d+\.\d+/.test(osVersion)) return osVersion;
  const m = /^(\d+)\.(\d+)\s+(\d+)/.exec(kernel);
  return m ? `${m[1]}.${m[2]}.${m[3]}` : kernel;
}

/** Keeps the last `limit` bytes written to it. */
class OutputTail {
  #chunks: Buffer[] = [];
  #size = 0;
  readonly #limit: number;

  constructor(limit: number) {
    this.#limit = limit;
  }

  push(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#size += chunk.length;
    while (this.#size - (this.#chunks[0]?.length ?? 0) >= this.#limit && this.#chunks.length > 1) {
      this.#size -= this.#chunks.shift()!.length;
    }
  }

  text(): string {
    const all = Buffer.concat(this.#chunks);
    return all.subarray(Math.max(0, all.length - this.#limit)).toString('utf8');
  }
}

/**
 * docker-modem reads DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH while
 * it is constructed (and throws on a malformed DOCKER_HOST) even when given an
 * explicit endpoint; the endpoint here was already resolved, so hide them.
 */
function withoutDockerEnv<T>(fn: () => T): T {
  const keys = ['DOCKER_HOST', 'DOCKER_TLS_VERIFY', 'DOCKER_CERT_PATH', 'DOCKER_PATH_PREFIX', 'DOCKER_CLIENT_TIMEOUT'];
  const saved = new Map<string, string>();
  for (const k of keys) {
    const v = process.env[k];
    if (v !== undefined) {
      saved.set(k, v);
      delete process.env[k];
    }
  }
  try {
    return fn();
  } finally {
    for (const [k, v] of saved) process.env[k] = v;
  }
}
