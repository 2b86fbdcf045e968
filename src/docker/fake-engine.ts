/**
 * FakeEngine: an in-memory DockerEngine for unit tests, held to the real
 * engine's behaviour by test/docker/conformance.ts.
 *
 * What it models, after dockerd 20.10 (API 1.41):
 * - containers with the engine's state machine and its refusals (pause of a
 *   container that is not running, start of a paused one, removal of a
 *   running one without force, exec in a stopped or paused one...);
 * - volumes whose mountpoint is a real directory, <root>/volumes/<name>/_data,
 *   so backups and restores can read and write them;
 * - images seeded with addImage(), saved and loaded in the `docker save`
 *   tar format (manifest.json, config blob, one layer.tar per layer), so the
 *   fake can also load a tar the real engine saved;
 * - the default networks (bridge, host, none), created ones, and their refusals;
 * - health: a running container with a healthcheck reports healthy, unless
 *   setHealth() says otherwise (the fake runs no healthcheck command);
 * - the event stream with the real engine's type/action names and attribute
 *   keys, strictly increasing timeNano, `since` replay of the last
 *   `replayLimit` (256, as dockerd) events;
 * - exec: ['sh', '-c', script] runs `/bin/sh -c script` on the host (any other
 *   command runs as is), in <root>/exec/<container name>, with
 *   LIFEBOAT_FAKE_CONTAINER=<name>, so hooks have real exit codes, output and
 *   timeouts. A timed-out command is killed (the real engine leaves it running).
 *
 * Test controls: goDown()/comeUp() (engine unreachable; restart), dropEvents()
 * (lost events), simulateExit() (a container's process ends on its own),
 * failNext() (one call fails), setHealth(), and `calls`, the log of mutating
 * calls. removeImage() and createNetwork() double as test controls.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { EngineRequestError, EngineUnavailableError } from '../errors/errors.ts';
import { type ExecSession, SessionLines } from './exec-session.ts';
import { capability, highestCpu, type RuntimeSettings } from './runtime.ts';
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
  VolumeInfo,
} from './engine.ts';

/** The most output an exec keeps (the tail), as the real implementation. */
const EXEC_OUTPUT_LIMIT = 64 * 1024;

export interface FakeEngineOptions {
  /** Directory that holds volume data and exec working directories; created if missing. */
  readonly root: string;
  /** Overrides of what info() reports (default: a linux/amd64 engine on this kernel). */
  readonly info?: Partial<EngineInfo>;
  /** How many past events `since` can replay (dockerd keeps 256). */
  readonly replayLimit?: number;
  /** The engine's clock in milliseconds (default Date.now): a test moves time instead of waiting for it. */
  readonly now?: () => number;
}

/** What addImage() needs; everything else is derived as the engine would. */
export interface FakeImageSeed {
  /** "name:tag" references; a reference without a tag gets ":latest". */
  readonly repoTags: readonly string[];
  readonly os?: string;
  readonly architecture?: string;
  readonly osVersion?: string | null;
  /** ISO time; default 2024-01-01T00:00:00Z, so equal seeds give equal ids. */
  readonly created?: string;
  /**
   * Layer contents, base first: each is a map of path -> file content, packed
   * as one layer tar. Equal layers give equal diff ids, so images can share
   * layers. Default: one layer with /etc/fake-image naming the first tag.
   */
  readonly layers?: readonly Readonly<Record<string, string | Uint8Array>>[];
  /** Image config defaults that containers inherit. */
  readonly config?: {
    readonly env?: readonly string[];
    readonly cmd?: readonly string[];
    readonly entrypoint?: readonly string[];
    readonly workingDir?: string;
    readonly user?: string;
    readonly labels?: Readonly<Record<string, string>>;
    readonly exposedPorts?: readonly string[];
    readonly stopSignal?: string;
  };
}

/** One mutating call the fake received (for assertions on order). */
export interface FakeCall {
  readonly method: string;
  /** The container id, volume name or image reference the call was about. */
  readonly target: string;
}

type EngineMethod = {
  [K in keyof DockerEngine]: DockerEngine[K] extends (...args: never[]) => unknown ? K : never;
}[keyof DockerEngine];

interface FakeContainer {
  readonly id: string;
  readonly name: string;
  readonly imageRef: string;
  readonly imageId: string;
  state: ContainerState;
  readonly spec: ContainerSpec;
  readonly created: string;
  readonly execs: Set<ChildProcess>;
  /** What a healthcheck would report while running (setHealth); healthy by default. */
  health: ContainerHealth;
}

interface FakeImage {
  readonly id: string;
  repoTags: string[];
  /** The config blob as saved (its sha256 is the id). */
  readonly configJson: Buffer;
  readonly layerTars: readonly Buffer[];
  readonly info: Omit<ImageInfo, 'repoTags'>;
  readonly containerConfig: FakeImageSeed['config'] & object;
}

interface Subscriber {
  push(event: EngineEvent): void;
  fail(err: Error): void;
}

export class FakeEngine implements DockerEngine {
  readonly root: string;
  /** Mutating calls in the order received (containers by id, volumes by name, images by reference). */
  readonly calls: FakeCall[] = [];

  readonly #info: EngineInfo;
  readonly #replayLimit: number;
  readonly #containers = new Map<string, FakeContainer>();
  readonly #volumes = new Map<string, VolumeInfo>();
  readonly #images = new Map<string, FakeImage>();
  readonly #networks = new Map<string, NetworkInfo>();
  readonly #log: EngineEvent[] = [];
  readonly #subscribers = new Set<Subscriber>();
  readonly #failures = new Map<string, Error[]>();
  #down = false;
  #dropping = false;
  #lastTime = 0n;
  readonly #now: () => number;

  constructor(rootOrOptions: string | FakeEngineOptions) {
    const options = typeof rootOrOptions === 'string' ? { root: rootOrOptions } : rootOrOptions;
    this.root = path.resolve(options.root);
    fs.mkdirSync(path.join(this.root, 'volumes'), { recursive: true });
    fs.mkdirSync(path.join(this.root, 'exec'), { recursive: true });
    this.#replayLimit = options.replayLimit ?? 256;
    this.#now = options.now ?? Date.now;
    this.#info = {
      name: 'fake-host',
      serverVersion: '20.10.24-fake',
      apiVersion: '1.41',
      os: 'linux',
      architecture: 'amd64',
      osVersion: os.release(),
      volumeDrivers: ['local'],
      isolation: null,
      cpus: os.availableParallelism(),
      memoryBytes: os.totalmem(),
      ...options.info,
    };
    for (const [name, driver] of [['bridge', 'bridge'], ['host', 'host'], ['none', 'null']] as const) {
      this.#putNetwork({ name, driver });
    }
  }

  // ---- test controls ------------------------------------------------------

  /** Seeds an image (as if pulled) and returns it; no event, as a pull would be replaced by this. */
  addImage(seed: FakeImageSeed): ImageInfo {
    const image = buildImage(seed);
    this.#storeImage(image);
    return this.#imageInfo(image);
  }

  /** `docker rmi`: untags the reference, deletes the image with its last tag (or when given by id). */
  async removeImage(idOrRef: string): Promise<void> {
    this.#check('removeImage');
    this.#record('removeImage', idOrRef);
    const image = this.#findImage(idOrRef);
    if (!image) throw new EngineRequestError(`No such image: ${idOrRef}`);
    const ref = normalizeRef(idOrRef);
    if (image.repoTags.includes(ref) && image.repoTags.length > 1) {
      image.repoTags = image.repoTags.filter((t) => t !== ref);
      this.#emit('image', 'untag', image.id, { name: ref });
      return;
    }
    const user = [...this.#containers.values()].find((c) => c.imageId === image.id);
    if (user) {
      throw new EngineRequestError(
        `conflict: unable to delete ${image.id.slice(7, 19)} (must be forced) - image is being used by ${user.state === 'running' ? 'running' : 'stopped'} container ${user.id.slice(0, 12)}`,
      );
    }
    for (const tag of image.repoTags) this.#emit('image', 'untag', image.id, { name: tag });
    this.#images.delete(image.id);
    this.#emit('image', 'delete', image.id, { name: image.id });
  }

  /** Adds a user network (as `docker network create`, with its event). */
  addNetwork(net: { name: string; driver?: string; internal?: boolean; labels?: Record<string, string> }): NetworkInfo {
    if ([...this.#networks.values()].some((n) => n.name === net.name)) throw new EngineRequestError(`network with name ${net.name} already exists`);
    const info = this.#putNetwork(net);
    this.#emit('network', 'create', info.id, { name: info.name, type: info.driver });
    return info;
  }

  /** What the container's healthcheck reports from now on while it runs (it needs one). */
  setHealth(idOrName: string, health: ContainerHealth): void {
    this.#mustContainer(idOrName).health = health;
  }

  #putNetwork(net: { name: string; driver?: string; internal?: boolean; labels?: Record<string, string> }): NetworkInfo {
    const info: NetworkInfo = {
      id: randomId(),
      name: net.name,
      driver: net.driver ?? 'bridge',
      internal: net.internal ?? false,
      labels: { ...net.labels },
    };
    this.#networks.set(info.id, info);
    return info;
  }

  /** The engine stops answering: calls reject and event streams end with EngineUnavailableError. */
  goDown(): void {
    this.#down = true;
    const err = new EngineUnavailableError('fake Docker engine is down');
    for (const sub of [...this.#subscribers]) sub.fail(err);
    this.#subscribers.clear();
  }

  /**
   * The engine answers again. With `restarted`, it behaves as a dockerd that
   * restarted: the replay buffer is empty, running and paused containers died
   * with the daemon (no events reached anyone), and those whose restart policy
   * is always or unless-stopped are started again (with events).
   */
  comeUp(opts: { restarted?: boolean } = {}): void {
    this.#down = false;
    if (!opts.restarted) return;
    this.#log.length = 0;
    const revive: FakeContainer[] = [];
    for (const c of this.#containers.values()) {
      if (c.state === 'running' || c.state === 'paused' || c.state === 'restarting') {
        killAll(c);
        c.state = 'exited';
        if (c.spec.restartPolicy.name === 'always' || c.spec.restartPolicy.name === 'unless-stopped') revive.push(c);
      }
    }
    for (const c of revive) this.#doStart(c);
  }

  get isDown(): boolean {
    return this.#down;
  }

  /** While on, mutations happen without any event (neither live nor in the replay buffer). */
  dropEvents(drop = true): void {
    this.#dropping = drop;
  }

  /** The container's main process exits on its own with this code (die event, no stop event). */
  simulateExit(idOrName: string, exitCode = 0): void {
    const c = this.#findContainer(idOrName);
    if (!c) throw new EngineRequestError(`No such container: ${idOrName}`);
    if (c.state !== 'running' && c.state !== 'paused') return;
    this.#die(c, exitCode);
  }

  /** The next call of `method` rejects with `error` (default: an EngineRequestError). Stacks. */
  failNext(method: EngineMethod, error?: Error): void {
    const list = this.#failures.get(method) ?? [];
    list.push(error ?? new EngineRequestError(`injected failure of ${method}`));
    this.#failures.set(method, list);
  }

  // ---- DockerEngine -------------------------------------------------------

  async info(): Promise<EngineInfo> {
    this.#check('info');
    return { ...this.#info };
  }

  async ping(): Promise<void> {
    this.#check('ping');
  }

  async listContainers(): Promise<ContainerSummary[]> {
    this.#check('listContainers');
    return [...this.#containers.values()].map((c) => this.#summary(c));
  }

  async inspectContainer(idOrName: string): Promise<ContainerDetail | undefined> {
    this.#check('inspectContainer');
    const c = this.#findContainer(idOrName);
    if (!c) return undefined;
    const checked = c.state === 'running' && c.spec.healthcheck !== null && c.spec.healthcheck.test[0] !== 'NONE';
    return { ...this.#summary(c), spec: cloneSpec(c.spec), ...(checked ? { health: c.health } : {}) };
  }

  async createContainer(spec: ContainerSpec): Promise<string> {
    this.#check('createContainer');
    this.#record('createContainer', spec.name);
    if (spec.name && !/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(spec.name)) {
      throw new EngineRequestError(`Invalid container name (${spec.name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
    }
    const image = this.#findImage(spec.image);
    if (!image) throw new EngineRequestError(`No such image: ${spec.image}`);
    const id = randomId();
    const name = spec.name || `fake_${id.slice(0, 8)}`;
    const clash = [...this.#containers.values()].find((c) => c.name === name);
    if (clash) {
      throw new EngineRequestError(
        `Conflict. The container name "/${name}" is already in use by container "${clash.id}". You have to remove (or rename) that container to be able to reuse that name.`,
      );
    }
    // The engine keeps container:<name> as container:<id> when that container exists (else as given: start fails).
    const joined = (mode: string) => {
      const owner = mode.startsWith('container:') ? this.#findContainer(mode.slice('container:'.length)) : undefined;
      return owner ? `container:${owner.id}` : mode;
    };
    const networkMode = joined(spec.networkMode) || 'default';
    const netName = networkMode === 'default' ? 'bridge' : networkMode;
    if (!netName.startsWith('container:') && ![...this.#networks.values()].some((n) => n.name === netName)) {
      throw new EngineRequestError(`network ${netName} not found`);
    }
    for (const link of spec.links) {
      const target = link.split(':')[0]!;
      if (!this.#findContainer(target)) throw new EngineRequestError(`could not get container for ${target}`);
    }
    for (const extra of spec.networks) {
      if (![...this.#networks.values()].some((n) => n.name === extra.name)) throw new EngineRequestError(`network ${extra.name} not found`);
    }
    const cpus = this.#info.cpus;
    if (spec.runtime.resources.nanoCpus > cpus * 1e9) {
      throw new EngineRequestError(`Range of CPUs is from 0.01 to ${cpus}.00, as there are only ${cpus} CPUs available`);
    }
    const cpuset = spec.runtime.resources.cpusetCpus;
    const highest = cpuset ? highestCpu(cpuset) : -1;
    if (highest === undefined || highest >= cpus) throw new EngineRequestError(`Requested CPUs are not available - requested ${cpuset}, available: 0-${cpus - 1}`);
    const mounts: Mount[] = [];
    for (const m of spec.mounts) {
      if (m.type === 'volume') {
        const volName = m.name || randomId();
        const known = this.#volumes.get(volName);
        // The engine reports a `create` for every named volume a new container mounts, existing or not.
        if (known) this.#emit('volume', 'create', volName, { driver: known.driver });
        const vol = known ?? (await this.#makeVolume(volName, 'local', {}));
        mounts.push({ type: 'volume', name: volName, source: vol.mountpoint, destination: m.destination, readOnly: m.readOnly });
      } else if (m.type === 'bind') {
        if (!fs.existsSync(m.source)) {
          throw new EngineRequestError(`invalid mount config for type "bind": bind source path does not exist: ${m.source}`);
        }
        mounts.push({ type: 'bind', source: m.source, destination: m.destination, readOnly: m.readOnly });
      } else {
        mounts.push({ type: 'tmpfs', source: '', destination: m.destination, readOnly: m.readOnly });
      }
    }
    mounts.sort((a, b) => a.destination.localeCompare(b.destination));
    const ic = image.containerConfig;
    const env = mergeEnv(ic.env ?? [], spec.env);
    const useImageCmd = spec.cmd === null && spec.entrypoint === null;
    const networks =
      spec.networks.length > 0
        ? spec.networks.map((n) => ({ name: n.name, aliases: [...n.aliases] }))
        : netName.startsWith('container:')
          ? []
          : [{ name: netName, aliases: [] }];
    const stored: ContainerSpec = {
      name,
      image: spec.image,
      env,
      cmd: useImageCmd ? (ic.cmd ? [...ic.cmd] : null) : spec.cmd ? [...spec.cmd] : null,
      entrypoint: spec.entrypoint ? [...spec.entrypoint] : ic.entrypoint ? [...ic.entrypoint] : null,
      workingDir: spec.workingDir || ic.workingDir || '',
      user: spec.user || ic.user || '',
      hostname: spec.hostname || id.slice(0, 12),
      labels: { ...ic.labels, ...spec.labels },
      exposedPorts: [...new Set([...(ic.exposedPorts ?? []), ...spec.exposedPorts, ...spec.portBindings.map((p) => p.containerPort)])].sort(),
      portBindings: [...spec.portBindings].map((p) => ({ ...p })).sort((a, b) => a.containerPort.localeCompare(b.containerPort)),
      mounts,
      restartPolicy: { ...spec.restartPolicy },
      networkMode,
      networks,
      links: [...spec.links],
      stopSignal: spec.stopSignal ?? ic.stopSignal ?? null,
      healthcheck: spec.healthcheck ? { ...spec.healthcheck, test: [...spec.healthcheck.test] } : null,
      runtime: asEngineKeeps(spec.runtime, joined),
    };
    const c: FakeContainer = {
      id,
      name,
      imageRef: spec.image,
      imageId: image.id,
      state: 'created',
      spec: stored,
      created: isoSeconds(new Date(this.#now())),
      execs: new Set(),
      health: 'healthy',
    };
    this.#containers.set(id, c);
    this.#emitContainer(c, 'create');
    return id;
  }

  async removeContainer(id: string, opts: { force?: boolean } = {}): Promise<void> {
    this.#check('removeContainer');
    const c = this.#mustContainer(id);
    this.#record('removeContainer', c.id);
    if (c.state === 'running' || c.state === 'paused' || c.state === 'restarting') {
      if (!opts.force) {
        throw new EngineRequestError(
          `You cannot remove a ${c.state} container ${c.id}. Stop the container before attempting removal or force remove`,
        );
      }
      this.#emitContainer(c, 'kill', { signal: '9' });
      this.#die(c, 137);
    }
    this.#containers.delete(c.id);
    this.#emitContainer(c, 'destroy');
  }

  async start(id: string): Promise<void> {
    this.#check('start');
    const c = this.#mustContainer(id);
    this.#record('start', c.id);
    if (c.state === 'running') return; // 304 Not Modified
    if (c.state === 'paused') throw new EngineRequestError('cannot start a paused container, try unpause instead');
    for (const m of c.spec.mounts) {
      if (m.type === 'volume' && m.name && !this.#volumes.has(m.name)) {
        throw new EngineRequestError(`error while mounting volume '${m.source}': volume ${m.name} not found`);
      }
    }
    for (const d of c.spec.runtime.devices) {
      if (!fs.existsSync(d.pathOnHost)) {
        throw new EngineRequestError(`error gathering device information while adding custom device "${d.pathOnHost}": no such file or directory`);
      }
    }
    this.#doStart(c);
  }

  async stop(id: string, _timeoutSeconds: number): Promise<void> {
    this.#check('stop');
    const c = this.#mustContainer(id);
    this.#record('stop', c.id);
    if (c.state !== 'running' && c.state !== 'paused') return; // 304 Not Modified
    const signal = signalNumber(c.spec.stopSignal);
    this.#emitContainer(c, 'kill', { signal: String(signal) });
    if (c.state === 'paused') this.#emitContainer(c, 'unpause');
    // A process that handles its stop signal exits 0; one killed by SIGKILL, 137.
    this.#die(c, signal === 9 ? 137 : 0);
    this.#emitContainer(c, 'stop');
  }

  async pause(id: string): Promise<void> {
    this.#check('pause');
    const c = this.#mustContainer(id);
    this.#record('pause', c.id);
    if (c.state === 'paused') throw new EngineRequestError(`Container ${c.id} is already paused`);
    if (c.state !== 'running') throw new EngineRequestError(`Container ${c.id} is not running`);
    c.state = 'paused';
    for (const child of c.execs) signalTree(child, 'SIGSTOP');
    this.#emitContainer(c, 'pause');
  }

  async unpause(id: string): Promise<void> {
    this.#check('unpause');
    const c = this.#mustContainer(id);
    this.#record('unpause', c.id);
    if (c.state !== 'paused') throw new EngineRequestError(`Container ${c.id} is not paused`);
    c.state = 'running';
    for (const child of c.execs) signalTree(child, 'SIGCONT');
    this.#emitContainer(c, 'unpause');
  }

  /** The running container a command may be exec'd in, refused as the engine refuses it. */
  #execIn(id: string, cmd: readonly string[]): FakeContainer {
    this.#check('exec');
    const c = this.#mustContainer(id);
    this.#record('exec', c.id);
    if (c.state === 'paused') throw new EngineRequestError(`Container ${c.name} is paused, unpause the container before exec`);
    if (c.state !== 'running') throw new EngineRequestError(`Container ${c.id} is not running`);
    if (cmd.length === 0) throw new EngineRequestError('No exec command specified');
    return c;
  }

  /** As exec, with the command's stdin open to the session (a host process, as exec's are). */
  async session(id: string, cmd: readonly string[]): Promise<ExecSession> {
    const c = this.#execIn(id, cmd);
    const cwd = path.join(this.root, 'exec', c.name);
    await fsp.mkdir(cwd, { recursive: true });
    const [file, args] = cmd[0] === 'sh' && cmd[1] === '-c' ? ['/bin/sh', cmd.slice(1)] : [cmd[0]!, cmd.slice(1)];
    const child = spawn(file, args, { cwd, env: { ...process.env, LIFEBOAT_FAKE_CONTAINER: c.name }, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    c.execs.add(child);
    const what = `session ${JSON.stringify(cmd.join(' '))} in container ${c.name}`;
    const lines = new SessionLines();
    child.stdout.on('data', (b: Buffer) => lines.push(b));
    child.stderr.on('data', (b: Buffer) => lines.push(b));
    child.stdin.on('error', () => {});
    const ended = new Promise<void>((resolve) => {
      child.on('error', (err) => {
        lines.end(err.message);
        resolve();
      });
      child.on('close', (code) => {
        c.execs.delete(child);
        lines.end(`it exited with ${code}`);
        resolve();
      });
    });
    return {
      write: (text) =>
        new Promise((resolve, reject) => {
          if (lines.ended) return reject(new EngineRequestError(`${what} has ended`));
          child.stdin.write(text, (err) => (err ? reject(new EngineRequestError(`${what}: ${err.message}`)) : resolve()));
        }),
      readUntil: (match, timeoutMs) => lines.readUntil(match, timeoutMs, what),
      close: async (timeoutMs) => {
        child.stdin.end();
        const timer = new Promise<void>((resolve) => setTimeout(resolve, timeoutMs).unref());
        await Promise.race([ended, timer]);
        signalTree(child, 'SIGKILL');
      },
    };
  }

  async exec(id: string, cmd: readonly string[], opts: { timeoutMs: number }): Promise<ExecResult> {
    const c = this.#execIn(id, cmd);
    const execId = randomId();
    const shown = `${cmd[0]} ${cmd.slice(1).join(' ')}`; // as the engine prints it: "true " for ['true']
    this.#emitContainer(c, `exec_create: ${shown}`, { execID: execId });
    this.#emitContainer(c, `exec_start: ${shown}`, { execID: execId });
    const cwd = path.join(this.root, 'exec', c.name);
    await fsp.mkdir(cwd, { recursive: true });
    const [file, args] = cmd[0] === 'sh' && cmd[1] === '-c' ? ['/bin/sh', cmd.slice(1)] : [cmd[0]!, cmd.slice(1)];
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const entry of c.spec.env) {
      const eq = entry.indexOf('=');
      const key = eq < 0 ? entry : entry.slice(0, eq);
      if (key !== 'PATH' && key !== 'HOME') env[key] = eq < 0 ? '' : entry.slice(eq + 1);
    }
    env.LIFEBOAT_FAKE_CONTAINER = c.name;
    env.LIFEBOAT_FAKE_CONTAINER_ID = c.id;
    const result = await runHostCommand(file, args, { cwd, env, timeoutMs: opts.timeoutMs, track: c.execs });
    if (!result.timedOut && !result.failedToStart) this.#emitContainer(c, 'exec_die', { execID: execId, exitCode: String(result.exitCode) });
    return { exitCode: result.exitCode, output: result.output, timedOut: result.timedOut };
  }

  async listVolumes(): Promise<VolumeInfo[]> {
    this.#check('listVolumes');
    return [...this.#volumes.values()].map((v) => ({ ...v, labels: { ...v.labels } }));
  }

  async inspectVolume(name: string): Promise<VolumeInfo | undefined> {
    this.#check('inspectVolume');
    const v = this.#volumes.get(name);
    return v ? { ...v, labels: { ...v.labels } } : undefined;
  }

  async createVolume(name: string, opts: { driver?: string; labels?: Record<string, string> } = {}): Promise<VolumeInfo> {
    this.#check('createVolume');
    this.#record('createVolume', name);
    if (name && !/^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/.test(name)) {
      throw new EngineRequestError(
        `create ${name}: "${name}" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path`,
      );
    }
    const driver = opts.driver ?? 'local';
    if (!this.#info.volumeDrivers.includes(driver)) throw new EngineRequestError(`create ${name}: error looking up volume plugin ${driver}: plugin "${driver}" not found`);
    const existing = this.#volumes.get(name);
    if (existing) {
      this.#emit('volume', 'create', name, { driver });
      return { ...existing, labels: { ...existing.labels } };
    }
    const v = await this.#makeVolume(name || randomId(), driver, opts.labels ?? {});
    return { ...v, labels: { ...v.labels } };
  }

  async removeVolume(name: string): Promise<void> {
    this.#check('removeVolume');
    this.#record('removeVolume', name);
    const v = this.#volumes.get(name);
    if (!v) throw new EngineRequestError(`get ${name}: no such volume`);
    const users = [...this.#containers.values()].filter((c) => c.spec.mounts.some((m) => m.type === 'volume' && m.name === name));
    if (users.length > 0) throw new EngineRequestError(`remove ${name}: volume is in use - [${users.map((c) => c.id).join(', ')}]`);
    await fsp.rm(path.dirname(v.mountpoint), { recursive: true, force: true });
    this.#volumes.delete(name);
    this.#emit('volume', 'destroy', name, { driver: v.driver });
  }

  async listImages(): Promise<ImageInfo[]> {
    this.#check('listImages');
    return [...this.#images.values()].map((i) => this.#imageInfo(i));
  }

  async inspectImage(idOrRef: string): Promise<ImageInfo | undefined> {
    this.#check('inspectImage');
    const image = this.#findImage(idOrRef);
    return image ? this.#imageInfo(image) : undefined;
  }

  async saveImage(id: string): Promise<Readable> {
    this.#check('saveImage');
    this.#record('saveImage', id);
    const image = this.#findImage(id);
    if (!image) throw new EngineRequestError(`reference does not exist`);
    const ref = normalizeRef(id);
    const tags = image.repoTags.includes(ref) ? [ref] : [];
    const hex = image.id.slice('sha256:'.length);
    const entries: TarEntry[] = [];
    const layerPaths: string[] = [];
    for (const layer of image.layerTars) {
      const dir = sha256Hex(Buffer.concat([Buffer.from(hex), layer]));
      entries.push({ name: `${dir}/`, type: 'dir' });
      entries.push({ name: `${dir}/VERSION`, data: Buffer.from('1.0') });
      entries.push({ name: `${dir}/layer.tar`, data: layer });
      layerPaths.push(`${dir}/layer.tar`);
    }
    entries.push({ name: `${hex}.json`, data: image.configJson });
    entries.push({ name: 'manifest.json', data: Buffer.from(JSON.stringify([{ Config: `${hex}.json`, RepoTags: tags.length ? tags : null, Layers: layerPaths }])) });
    const repositories: Record<string, Record<string, string>> = {};
    for (const tag of tags) {
      const [repo, t] = splitRef(tag);
      (repositories[repo] ??= {})[t] = layerPaths.at(-1)?.split('/')[0] ?? '';
    }
    if (tags.length) entries.push({ name: 'repositories', data: Buffer.from(JSON.stringify(repositories)) });
    this.#emit('image', 'save', image.id, { name: image.id });
    return Readable.from([writeTar(entries)], { objectMode: false });
  }

  async loadImage(tar: Readable): Promise<void> {
    this.#check('loadImage');
    this.#record('loadImage', '-');
    const chunks: Buffer[] = [];
    for await (const chunk of tar) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array));
    this.#check('loadImage');
    let files: Map<string, Buffer>;
    try {
      files = readTar(Buffer.concat(chunks));
    } catch (err) {
      throw new EngineRequestError(`Error processing tar file: ${(err as Error).message}`);
    }
    const manifestBuf = files.get('manifest.json');
    if (!manifestBuf) throw new EngineRequestError('Error processing tar file: open manifest.json: no such file or directory');
    const manifest = JSON.parse(manifestBuf.toString('utf8')) as { Config: string; RepoTags: string[] | null; Layers: string[] }[];
    for (const entry of manifest) {
      const configJson = files.get(entry.Config);
      if (!configJson) throw new EngineRequestError(`Error processing tar file: open ${entry.Config}: no such file or directory`);
      const layerTars = entry.Layers.map((p) => {
        const layer = files.get(p);
        if (!layer) throw new EngineRequestError(`Error processing tar file: open ${p}: no such file or directory`);
        return layer;
      });
      const image = imageFromConfig(configJson, layerTars, entry.RepoTags ?? []);
      this.#storeImage(image);
      this.#emit('image', 'load', image.id, { name: image.id });
    }
  }

  async listNetworks(): Promise<NetworkInfo[]> {
    this.#check('listNetworks');
    return [...this.#networks.values()].map((n) => ({ ...n, labels: { ...n.labels } }));
  }

  async createNetwork(opts: { name: string; driver?: string; internal?: boolean; labels?: Record<string, string> }): Promise<NetworkInfo> {
    this.#check('createNetwork');
    this.#record('createNetwork', opts.name);
    const info = this.addNetwork(opts);
    return { ...info, labels: { ...info.labels } };
  }

  async removeNetwork(idOrName: string): Promise<void> {
    this.#check('removeNetwork');
    this.#record('removeNetwork', idOrName);
    const net = this.#networks.get(idOrName) ?? [...this.#networks.values()].find((n) => n.name === idOrName);
    if (!net) throw new EngineRequestError(`network ${idOrName} not found`);
    if (['bridge', 'host', 'none'].includes(net.name)) throw new EngineRequestError(`${net.name} is a pre-defined network and cannot be removed`);
    const users = [...this.#containers.values()].filter((c) => c.state === 'running' && c.spec.networks.some((n) => n.name === net.name));
    if (users.length > 0) throw new EngineRequestError(`error while removing network: network ${net.name} id ${net.id} has active endpoints`);
    this.#networks.delete(net.id);
    this.#emit('network', 'destroy', net.id, { name: net.name, type: net.driver });
  }

  events(opts: { since?: number; signal: AbortSignal }): AsyncIterable<EngineEvent> {
    const engine = this;
    return {
      [Symbol.asyncIterator]: () => engine.#subscribe(opts),
    };
  }

  // ---- internals ----------------------------------------------------------

  #subscribe(opts: { since?: number; signal: AbortSignal }): AsyncIterator<EngineEvent> {
    const queue: EngineEvent[] = [];
    let failure: Error | undefined = this.#down ? new EngineUnavailableError('fake Docker engine is down') : undefined;
    let wake: (() => void) | undefined;
    let done = false;
    const sub: Subscriber = {
      push: (e) => {
        queue.push(e);
        wake?.();
      },
      fail: (err) => {
        failure = err;
        wake?.();
      },
    };
    const finish = () => {
      done = true;
      this.#subscribers.delete(sub);
      opts.signal.removeEventListener('abort', onAbort);
    };
    const onAbort = () => wake?.();
    if (!failure && !opts.signal.aborted) {
      if (opts.since !== undefined) {
        const sinceNs = BigInt(Math.floor(opts.since * 1e6)) * 1000n;
        queue.push(...this.#log.filter((e) => e.timeNano >= sinceNs));
      }
      this.#subscribers.add(sub);
      opts.signal.addEventListener('abort', onAbort);
    }
    return {
      next: async (): Promise<IteratorResult<EngineEvent>> => {
        for (;;) {
          if (done || opts.signal.aborted) {
            finish();
            return { done: true, value: undefined };
          }
          const event = queue.shift();
          if (event) return { done: false, value: event };
          if (failure) {
            finish();
            throw failure;
          }
          await new Promise<void>((resolve) => (wake = resolve));
          wake = undefined;
        }
      },
      return: async (): Promise<IteratorResult<EngineEvent>> => {
        finish();
        return { done: true, value: undefined };
      },
    };
  }

  #check(method: string): void {
    const injected = this.#failures.get(method)?.shift();
    if (injected) throw injected;
    if (this.#down) throw new EngineUnavailableError('fake Docker engine is down');
  }

  #record(method: string, target: string): void {
    this.calls.push({ method, target });
  }

  #emit(type: EngineEvent['type'], action: string, id: string, attributes: Record<string, string>): void {
    if (this.#dropping) return;
    const now = BigInt(this.#now()) * 1_000_000n;
    this.#lastTime = now > this.#lastTime ? now : this.#lastTime + 1n;
    const event: EngineEvent = { type, action, id, attributes, timeNano: this.#lastTime };
    this.#log.push(event);
    if (this.#log.length > this.#replayLimit) this.#log.splice(0, this.#log.length - this.#replayLimit);
    for (const sub of this.#subscribers) sub.push(event);
  }

  #emitContainer(c: FakeContainer, action: string, extra: Record<string, string> = {}): void {
    this.#emit('container', action, c.id, { ...c.spec.labels, image: c.imageRef, name: c.name, ...extra });
  }

  #doStart(c: FakeContainer): void {
    for (const net of this.#attachedNetworks(c)) {
      this.#emit('network', 'connect', net.id, { container: c.id, name: net.name, type: net.driver });
    }
    for (const m of c.spec.mounts) {
      if (m.type !== 'volume' || !m.name) continue;
      this.#emit('volume', 'mount', m.name, {
        container: c.id,
        destination: m.destination,
        driver: 'local',
        propagation: '',
        'read/write': String(!m.readOnly),
      });
    }
    c.state = 'running';
    this.#emitContainer(c, 'start');
  }

  #die(c: FakeContainer, exitCode: number): void {
    killAll(c);
    c.state = 'exited';
    this.#emitContainer(c, 'die', { exitCode: String(exitCode) });
    for (const net of this.#attachedNetworks(c)) {
      this.#emit('network', 'disconnect', net.id, { container: c.id, name: net.name, type: net.driver });
    }
    for (const m of c.spec.mounts) {
      if (m.type === 'volume' && m.name) this.#emit('volume', 'unmount', m.name, { container: c.id, driver: 'local' });
    }
  }

  #attachedNetworks(c: FakeContainer): NetworkInfo[] {
    const byName = new Map([...this.#networks.values()].map((n) => [n.name, n]));
    return c.spec.networks.flatMap((n) => {
      const net = byName.get(n.name);
      return net ? [net] : [];
    });
  }

  async #makeVolume(name: string, driver: string, labels: Record<string, string>): Promise<VolumeInfo> {
    const mountpoint = path.join(this.root, 'volumes', name, '_data');
    await fsp.mkdir(mountpoint, { recursive: true });
    const v: VolumeInfo = { name, driver, mountpoint, labels: { ...labels }, created: isoSeconds(new Date(this.#now())) };
    this.#volumes.set(name, v);
    this.#emit('volume', 'create', name, { driver });
    return v;
  }

  #findContainer(idOrName: string): FakeContainer | undefined {
    const byId = this.#containers.get(idOrName);
    if (byId) return byId;
    const name = idOrName.replace(/^\//, '');
    const all = [...this.#containers.values()];
    const byName = all.find((c) => c.name === name);
    if (byName) return byName;
    const byPrefix = idOrName.length > 0 ? all.filter((c) => c.id.startsWith(idOrName)) : [];
    return byPrefix.length === 1 ? byPrefix[0] : undefined;
  }

  #mustContainer(idOrName: string): FakeContainer {
    const c = this.#findContainer(idOrName);
    if (!c) throw new EngineRequestError(`No such container: ${idOrName}`);
    return c;
  }

  #findImage(idOrRef: string): FakeImage | undefined {
    const full = idOrRef.startsWith('sha256:') ? idOrRef : `sha256:${idOrRef}`;
    const byId = this.#images.get(full);
    if (byId) return byId;
    const ref = normalizeRef(idOrRef);
    const all = [...this.#images.values()];
    const byTag = all.find((i) => i.repoTags.includes(ref));
    if (byTag) return byTag;
    if (/^(sha256:)?[0-9a-f]{1,64}$/.test(idOrRef)) {
      const matches = all.filter((i) => i.id.startsWith(full));
      if (matches.length === 1) return matches[0];
    }
    return undefined;
  }

  #storeImage(image: FakeImage): void {
    for (const tag of image.repoTags) {
      for (const other of this.#images.values()) {
        if (other.id !== image.id && other.repoTags.includes(tag)) other.repoTags = other.repoTags.filter((t) => t !== tag);
      }
    }
    const existing = this.#images.get(image.id);
    if (existing) existing.repoTags = [...new Set([...existing.repoTags, ...image.repoTags])];
    else this.#images.set(image.id, image);
  }

  #imageInfo(image: FakeImage): ImageInfo {
    return { ...image.info, layers: [...image.info.layers], repoTags: [...image.repoTags] };
  }

  #summary(c: FakeContainer): ContainerSummary {
    return {
      id: c.id,
      name: c.name,
      image: c.imageRef,
      imageId: c.imageId,
      state: c.state,
      labels: { ...c.spec.labels },
      mounts: c.spec.mounts.map((m) => ({ ...m })),
      created: c.created,
    };
  }
}

// ---- images -----------------------------------------------------------------

function buildImage(seed: FakeImageSeed): FakeImage {
  const tags = seed.repoTags.map(normalizeRef);
  const layers = seed.layers ?? [{ 'etc/fake-image': `${tags[0] ?? 'untagged'}\n` }];
  const layerTars = layers.map((files) =>
    writeTar(
      Object.entries(files)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([name, data]) => ({ name: name.replace(/^\/+/, ''), data: Buffer.from(data) })),
    ),
  );
  const c = seed.config ?? {};
  const config = {
    architecture: seed.architecture ?? 'amd64',
    os: seed.os ?? 'linux',
    ...(seed.osVersion ? { 'os.version': seed.osVersion } : {}),
    created: seed.created ?? '2024-01-01T00:00:00Z',
    config: {
      Env: c.env ? [...c.env] : null,
      Cmd: c.cmd ? [...c.cmd] : null,
      Entrypoint: c.entrypoint ? [...c.entrypoint] : null,
      WorkingDir: c.workingDir ?? '',
      User: c.user ?? '',
      Labels: c.labels ? { ...c.labels } : null,
      ExposedPorts: c.exposedPorts ? Object.fromEntries(c.exposedPorts.map((p) => [p, {}])) : null,
      ...(c.stopSignal ? { StopSignal: c.stopSignal } : {}),
    },
    rootfs: { type: 'layers', diff_ids: layerTars.map((t) => `sha256:${sha256Hex(t)}`) },
    history: layerTars.map(() => ({ created: seed.created ?? '2024-01-01T00:00:00Z', created_by: 'fake' })),
  };
  return imageFromConfig(Buffer.from(JSON.stringify(config)), layerTars, tags);
}

interface ImageConfigJson {
  architecture?: string;
  os?: string;
  'os.version'?: string;
  created?: string;
  config?: {
    Env?: string[] | null;
    Cmd?: string[] | null;
    Entrypoint?: string[] | null;
    WorkingDir?: string;
    User?: string;
    Labels?: Record<string, string> | null;
    ExposedPorts?: Record<string, unknown> | null;
    StopSignal?: string;
  };
  rootfs?: { diff_ids?: string[] };
}

function imageFromConfig(configJson: Buffer, layerTars: readonly Buffer[], repoTags: readonly string[]): FakeImage {
  const config = JSON.parse(configJson.toString('utf8')) as ImageConfigJson;
  const diffIds = config.rootfs?.diff_ids ?? [];
  if (diffIds.length !== layerTars.length) throw new EngineRequestError('invalid manifest, layers length mismatch');
  layerTars.forEach((t, i) => {
    const actual = `sha256:${sha256Hex(t)}`;
    if (actual !== diffIds[i]) throw new EngineRequestError(`layer ${i} digest mismatch: expected ${diffIds[i]}, got ${actual}`);
  });
  const id = `sha256:${sha256Hex(configJson)}`;
  const cc = config.config ?? {};
  return {
    id,
    repoTags: repoTags.map(normalizeRef),
    configJson,
    layerTars,
    info: {
      id,
      os: config.os ?? 'linux',
      architecture: config.architecture ?? 'amd64',
      osVersion: config['os.version'] ?? null,
      size: layerTars.reduce((n, t) => n + t.length, 0),
      created: isoSeconds(new Date(config.created ?? 0)),
      layers: [...diffIds],
    },
    containerConfig: {
      ...(cc.Env ? { env: cc.Env } : {}),
      ...(cc.Cmd ? { cmd: cc.Cmd } : {}),
      ...(cc.Entrypoint ? { entrypoint: cc.Entrypoint } : {}),
      ...(cc.WorkingDir ? { workingDir: cc.WorkingDir } : {}),
      ...(cc.User ? { user: cc.User } : {}),
      ...(cc.Labels ? { labels: cc.Labels } : {}),
      ...(cc.ExposedPorts ? { exposedPorts: Object.keys(cc.ExposedPorts) } : {}),
      ...(cc.StopSignal ? { stopSignal: cc.StopSignal } : {}),
    },
  };
}

/** "busybox" -> "busybox:latest"; ids and digests are left alone. */
function normalizeRef(ref: string): string {
  if (ref.startsWith('sha256:') || ref.includes('@')) return ref;
  const lastSlash = ref.lastIndexOf('/');
  return ref.slice(lastSlash + 1).includes(':') ? ref : `${ref}:latest`;
}

function splitRef(ref: string): [string, string] {
  const colon = ref.lastIndexOf(':');
  return [ref.slice(0, colon), ref.slice(colon + 1)];
}

// ---- exec -------------------------------------------------------------------

function runHostCommand(
  file: string,
  args: readonly string[],
  opts: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs: number; track: Set<ChildProcess> },
): Promise<ExecResult & { failedToStart?: boolean }> {
  return new Promise((resolve) => {
    let output = Buffer.alloc(0);
    const append = (chunk: Buffer) => {
      output = Buffer.concat([output, chunk]);
      if (output.length > EXEC_OUTPUT_LIMIT) output = output.subarray(output.length - EXEC_OUTPUT_LIMIT);
    };
    let settled = false;
    const child = spawn(file, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    opts.track.add(child);
    const finish = (result: ExecResult & { failedToStart?: boolean }) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.track.delete(child);
      resolve(result);
    };
    const timer = setTimeout(() => {
      signalTree(child, 'SIGKILL');
      finish({ exitCode: -1, output: output.toString('utf8'), timedOut: true });
    }, opts.timeoutMs);
    child.stdout.on('data', append);
    child.stderr.on('data', append);
    child.on('error', (err: NodeJS.ErrnoException) => {
      // As runc reports a command it cannot start.
      append(Buffer.from(`OCI runtime exec failed: exec failed: unable to start container process: exec: ${JSON.stringify(file)}: ${err.code === 'ENOENT' ? 'executable file not found in $PATH' : err.message}: unknown\r\n`));
      finish({ exitCode: 126, output: output.toString('utf8'), timedOut: false, failedToStart: true });
    });
    child.on('close', (code, signal) => {
      finish({ exitCode: code ?? 128 + signalNumber(signal), output: output.toString('utf8'), timedOut: false });
    });
  });
}

function signalTree(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

function killAll(c: FakeContainer): void {
  for (const child of c.execs) {
    signalTree(child, 'SIGCONT');
    signalTree(child, 'SIGKILL');
  }
}

function signalNumber(signal: string | null | undefined): number {
  if (!signal) return 15;
  if (/^\d+$/.test(signal)) return Number(signal);
  const name = signal.startsWith('SIG') ? signal : `SIG${signal}`;
  return (os.constants.signals as Record<string, number>)[name] ?? 15;
}

// ---- small helpers ----------------------------------------------------------

function randomId(): string {
  return randomBytes(32).toString('hex');
}

function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** ISO time truncated to the second, as every engine time Lifeboat keeps. */
function isoSeconds(date: Date): string {
  return new Date(Math.floor(date.getTime() / 1000) * 1000).toISOString();
}

function mergeEnv(base: readonly string[], over: readonly string[]): string[] {
  const out = new Map<string, string>();
  for (const entry of [...base, ...over]) out.set(entry.split('=')[0]!, entry);
  return [...out.values()];
}

/** Runtime settings as dockerd 20.10 reports them back: its defaults filled in, capabilities spelled CAP_X, namespace owners by id. */
function asEngineKeeps(r: RuntimeSettings, joined: (mode: string) => string): RuntimeSettings {
  const res = r.resources;
  return {
    ...structuredClone(r),
    capAdd: r.capAdd.map(capability),
    capDrop: r.capDrop.map(capability),
    shmSizeBytes: r.shmSizeBytes || 64 * 1024 * 1024,
    ipcMode: joined(r.ipcMode || 'private'),
    pidMode: joined(r.pidMode),
    // a memory limit without a swap limit gets as much swap again
    resources: { ...res, memorySwapBytes: res.memorySwapBytes || (res.memoryBytes > 0 ? 2 * res.memoryBytes : 0) },
  };
}

function cloneSpec(spec: ContainerSpec): ContainerSpec {
  return structuredClone(spec) as ContainerSpec;
}

// ---- a minimal ustar writer and reader (enough for `docker save` archives) ---

interface TarEntry {
  readonly name: string;
  readonly type?: 'file' | 'dir';
  readonly data?: Buffer;
}

function writeTar(entries: readonly TarEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const data = entry.type === 'dir' ? Buffer.alloc(0) : (entry.data ?? Buffer.alloc(0));
    const header = Buffer.alloc(512);
    let name = entry.name;
    let prefix = '';
    if (Buffer.byteLength(name) > 100) {
      const cut = name.lastIndexOf('/', name.length - 2);
      prefix = name.slice(0, cut);
      name = name.slice(cut + 1);
      if (Buffer.byteLength(name) > 100 || Buffer.byteLength(prefix) > 155) throw new Error(`tar name too long: ${entry.name}`);
    }
    header.write(name, 0, 100, 'utf8');
    header.write(octal(entry.type === 'dir' ? 0o755 : 0o644, 8), 100);
    header.write(octal(0, 8), 108);
    header.write(octal(0, 8), 116);
    header.write(octal(data.length, 12), 124);
    header.write(octal(0, 12), 136);
    header.write('        ', 148);
    header.write(entry.type === 'dir' ? '5' : '0', 156);
    header.write('ustar\u000000', 257, 'binary');
    header.write(prefix, 345, 155, 'utf8');
    let sum = 0;
    for (const byte of header) sum += byte;
    header.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 'binary');
    blocks.push(header, data);
    const pad = (512 - (data.length % 512)) % 512;
    if (pad) blocks.push(Buffer.alloc(pad));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\u0000`;
}

/** Regular files of a tar archive by path (ustar, GNU long names and pax path records). */
function readTar(buf: Buffer): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  let offset = 0;
  let longName: string | undefined;
  while (offset + 512 <= buf.length) {
    const header = buf.subarray(offset, offset + 512);
    if (header.every((b) => b === 0)) break;
    const size = parseOctal(header.subarray(124, 136));
    const type = String.fromCharCode(header[156] ?? 48);
    const magic = header.subarray(257, 262).toString('binary');
    let name = cString(header.subarray(0, 100));
    if (magic === 'ustar') {
      const prefix = cString(header.subarray(345, 500));
      if (prefix) name = `${prefix}/${name}`;
    }
    const dataStart = offset + 512;
    if (dataStart + size > buf.length) throw new Error('unexpected end of tar archive');
    const data = buf.subarray(dataStart, dataStart + size);
    offset = dataStart + Math.ceil(size / 512) * 512;
    if (type === 'L') {
      longName = cString(data);
      continue;
    }
    if (type === 'x') {
      const m = /\d+ path=([^\n]*)\n/.exec(data.toString('utf8'));
      if (m) longName = m[1];
      continue;
    }
    if (longName !== undefined) {
      name = longName;
      longName = undefined;
    }
    if (type === '0' || type === '\u0000' || type === '7') files.set(name.replace(/^\.\//, ''), Buffer.from(data));
  }
  return files;
}

function cString(b: Buffer): string {
  const nul = b.indexOf(0);
  return b.subarray(0, nul < 0 ? b.length : nul).toString('utf8');
}

function parseOctal(b: Buffer): number {
  if ((b[0] ?? 0) & 0x80) {
    // GNU base-256 for big sizes
    let value = 0;
    for (let i = 1; i < b.length; i++) value = value * 256 + (b[i] ?? 0);
    return value;
  }
  const s = cString(b).trim();
  return s ? parseInt(s, 8) : 0;
}
