/**
 * Agents for replication tests: each with its own state directory,
 * repository, password, ports and (optionally) engine, configured to know
 * each other by the ids `lifeboat id` prints.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { StatusReport } from '../../src/agent/status.ts';
import type { PeerStatus } from '../../src/replicate/replicator.ts';
import { type Daemon, type DaemonOptions, freePort, startDaemon } from '../agent/daemon.ts';
import { lifeboat, tempDir } from '../cli/run.ts';

export interface TestAgent {
  readonly name: string;
  readonly dir: string;
  readonly state: string;
  readonly repo: string;
  readonly config: string;
  readonly password: string;
  /** [agent] listen. */
  readonly http: string;
  /** [replication] listen. */
  readonly replication: string;
  /** What its endpoint asks for, if anything. */
  readonly token: string | undefined;
  readonly id: string;
}

export interface AgentSetup {
  /** Host the agent listens on (its netns address in a namespace). */
  readonly host?: string;
  /** The engine, as [docker] host; default the machine's. */
  readonly docker?: string;
  /** Keys of [repository] besides path (pack_size). */
  readonly repository?: string;
  /** Keys of [replication] besides listen (bandwidth, timeout, retry). */
  readonly replication?: string;
  /** More TOML tables: [[volume]] entries, ... */
  readonly extra?: string;
  /** The endpoint's token ([agent] token_file); an agent off loopback gets one by default, as the config requires. */
  readonly token?: string;
}

/** Makes an agent's directories and repository, and learns its id; peers are written by connect(). */
export async function makeAgent(name: string, setup: AgentSetup = {}): Promise<TestAgent & { readonly setup: AgentSetup }> {
  const dir = await tempDir(`lifeboat-agent-${name}-`);
  const host = setup.host ?? '127.0.0.1';
  const token = setup.token ?? (/^127\./.test(host) ? undefined : `token of ${name}`);
  if (token !== undefined) await fsp.writeFile(path.join(dir, 'token'), `${token}\n`, { mode: 0o600 });
  const agent = {
    name,
    dir,
    token,
    state: path.join(dir, 'state'),
    repo: path.join(dir, 'repo'),
    config: path.join(dir, 'lifeboat.toml'),
    password: `password of ${name}`,
    http: `${host}:${await freePort()}`,
    replication: `${host}:${await freePort()}`,
    id: '',
    setup,
  };
  await writeConfig(agent, []);
  const init = await lifeboat(['init', '--repo', agent.repo], { password: agent.password });
  if (init.code !== 0) throw new Error(init.stderr);
  const id = await lifeboat(['--config', agent.config, '--json', 'id'], { password: null });
  if (id.code !== 0) throw new Error(id.stderr);
  return { ...agent, id: id.json<{ id: string }>().id };
}

export interface PeerEntry {
  readonly agent: TestAgent;
  readonly push?: boolean;
  /** Address to reach it at, when not its own listen address. */
  readonly address?: string;
  /** A file holding its repository password, to read its replica here (recover, drill). */
  readonly passwordFile?: string;
}

/** Writes the agent's config with these peers. */
export async function writeConfig(agent: Omit<TestAgent, 'id'> & { setup: AgentSetup }, peers: readonly PeerEntry[]): Promise<void> {
  const lines = [
    '[agent]',
    `host = ${JSON.stringify(agent.name)}`,
    `state_dir = ${JSON.stringify(agent.state)}`,
    `listen = ${JSON.stringify(agent.http)}`,
    ...(agent.token !== undefined ? [`token_file = ${JSON.stringify(path.join(agent.dir, 'token'))}`] : []),
    '[repository]',
    `path = ${JSON.stringify(agent.repo)}`,
    agent.setup.repository ?? '',
    '[backup]',
    'workers = 2',
    '[docker]',
    ...(agent.setup.docker ? [`host = ${JSON.stringify(agent.setup.docker)}`] : []),
    'stop_timeout = "2s"',
    '[journal]',
    'aggregate = "200ms"',
    '[volumes]',
    'track = "listed"',
    '[replication]',
    `listen = ${JSON.stringify(agent.replication)}`,
    agent.setup.replication ?? '',
    agent.setup.extra ?? '',
    ...peers.flatMap((p) => [
      '[[peer]]',
      `name = ${JSON.stringify(p.agent.name)}`,
      `address = ${JSON.stringify(p.address ?? p.agent.replication)}`,
      `id = ${JSON.stringify(p.agent.id)}`,
      `push = ${p.push ?? true}`,
      ...(p.passwordFile ? [`password_file = ${JSON.stringify(p.passwordFile)}`] : []),
    ]),
  ];
  await fsp.writeFile(agent.config, `${lines.join('\n')}\n`);
}

export function run(agent: TestAgent, opts: Omit<DaemonOptions, 'password'> = {}): Daemon {
  return startDaemon(agent.config, agent.http, { ...opts, password: agent.password, ...(agent.token !== undefined ? { token: agent.token } : {}) });
}

/** The agents a test file starts, all killed by stopAll() (its afterAll), whatever happened. */
export class Fleet {
  readonly #daemons: Daemon[] = [];

  start(agent: TestAgent, opts: Omit<DaemonOptions, 'password'> = {}): Daemon {
    const d = run(agent, opts);
    this.#daemons.push(d);
    return d;
  }

  async stopAll(): Promise<void> {
    for (const d of this.#daemons) d.kill();
    await Promise.all(this.#daemons.map((d) => d.exited));
  }
}

export async function status(d: Daemon): Promise<StatusReport> {
  return JSON.parse((await d.get('/status')).body) as StatusReport;
}

export async function peer(d: Daemon, name: string): Promise<PeerStatus> {
  const p = (await status(d)).peers.find((x) => x.name === name);
  if (!p) throw new Error(`no peer ${name} in the status`);
  return p;
}

/** Where `holder` keeps its replica of `source`. */
export const replicaOf = (holder: TestAgent, source: TestAgent): string => path.join(holder.state, 'replicas', source.id);

/** Pack files (finished ones, not .tmp) in a repository or replica. */
export function packFiles(repo: string): number {
  const root = path.join(repo, 'packs');
  if (!fs.existsSync(root)) return 0;
  return fs.readdirSync(root).reduce((n, sub) => n + fs.readdirSync(path.join(root, sub)).filter((f) => !f.endsWith('.tmp')).length, 0);
}
