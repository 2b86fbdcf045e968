/**
 * Secrets stay secret: real CLI commands and the agent, all at log level
 * trace, never print the password, the master keys (hex or base64) or the
 * agent's identity private key, on stdout, stderr, in the agent's log, or on
 * /metrics, /status and /healthz. And every file Lifeboat creates in a
 * repository or a state directory is 0600, every directory 0700, although
 * the process runs with the common umask 022.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DockerodeEngine } from '../../src/docker/dockerode-engine.ts';
import { Repository } from '../../src/repo/repository.ts';
import { type Daemon, freePort, startDaemon, until } from '../agent/daemon.ts';
import { cleanup as cleanupDirs, lifeboat, PASSWORD, type RunResult, tempDir } from '../cli/run.ts';
import { makeSmallTree } from '../cli/tree.ts';
import { cleanup, ensureEngine, TEST_LABELS, uniqueName } from '../docker/harness.ts';
import { writeSummary } from './report.ts';

/** Everything Lifeboat printed or served, by where it came from. */
const outputs: { where: string; text: string }[] = [];
let dir: string;
let repo: string;
let stateDir: string;
let config: string;
let volume: { name: string; mountpoint: string };
let daemon: Daemon | undefined;
let engine: DockerodeEngine;
const previousUmask = process.umask(0o022);

async function run(args: readonly string[], opts: Parameters<typeof lifeboat>[1] = {}, expectCode = 0): Promise<RunResult> {
  const r = await lifeboat(args, opts);
  outputs.push({ where: `lifeboat ${args.join(' ')} (stdout)`, text: r.stdout }, { where: `lifeboat ${args.join(' ')} (stderr)`, text: r.stderr });
  expect(r.code, `lifeboat ${args.join(' ')}\n${r.stderr}`).toBe(expectCode);
  return r;
}

beforeAll(async () => {
  engine = await ensureEngine();
  dir = await tempDir('lifeboat-secrets-');
  repo = path.join(dir, 'repo');
  stateDir = path.join(dir, 'state');
  await fsp.mkdir(path.join(dir, 'src'));
  await makeSmallTree(path.join(dir, 'src'));
  const v = await engine.createVolume(uniqueName('secrets'), { labels: { ...TEST_LABELS } });
  volume = { name: v.name, mountpoint: v.mountpoint };
  await fsp.writeFile(path.join(volume.mountpoint, 'data.txt'), 'volume contents\n');
  config = path.join(dir, 'lifeboat.toml');
  const address = `127.0.0.1:${await freePort()}`;
  await fsp.writeFile(
    config,
    [
      '[agent]',
      `state_dir = ${JSON.stringify(stateDir)}`,
      'log_level = "trace"',
      `listen = ${JSON.stringify(address)}`,
      '[repository]',
      `path = ${JSON.stringify(repo)}`,
      '[backup]',
      'workers = 2',
      '[journal]',
      'aggregate = "200ms"',
      '[volumes]',
      'track = "listed"',
      '[[volume]]',
      `name = ${JSON.stringify(volume.name)}`,
      'continuous = true',
      'debounce = "500ms"',
    ].join('\n'),
  );
});

afterAll(async () => {
  process.umask(previousUmask);
  daemon?.kill();
  await cleanup();
  await cleanupDirs();
});

describe('secrets never leave, and what Lifeboat creates is private', () => {
  it('runs the repository commands at log level trace', async () => {
    const c = ['--config', config];
    await run([...c, 'init', '--repo', repo]);
    await run([...c, '--json', 'backup', '--repo', repo, '--path', path.join(dir, 'src')]);
    await run([...c, 'backup', '--repo', repo, '--path', path.join(dir, 'src')]);
    await run([...c, '--json', 'snapshots', '--repo', repo]);
    await run([...c, '--json', 'verify', '--repo', repo, '--read-data']);
    await run([...c, 'restore', 'latest', '--repo', repo, '--target', path.join(dir, 'restored')]);
    const passwordFile = path.join(dir, 'password');
    await fsp.writeFile(passwordFile, `${PASSWORD}\n`, { mode: 0o600 });
    await run([...c, 'snapshots', '--repo', repo, '--password-file', passwordFile], { password: null });
    await run([...c, '--json', 'forget', '--repo', repo, '--keep-last', '1', '--prune']);
    await run([...c, '--json', 'id']);
    await run([...c, 'config', 'check']);
    // failures print their message; a wrong password must not be echoed either
    await run([...c, 'snapshots', '--repo', repo], { password: `${PASSWORD} but wrong` }, 1);
    await run([...c, 'init', '--repo', repo], {}, 1);
  });

  it('runs the agent at log level trace: a volume backup, then /metrics, /status, /healthz', async () => {
    const address = /listen = "(.*)"/.exec(await fsp.readFile(config, 'utf8'))![1]!;
    const d = (daemon = startDaemon(config, address));
    await until(
      'the agent to back the volume up',
      async () => {
        const s = JSON.parse((await d.get('/status')).body) as { volumes: { name: string; last_snapshot: unknown; running: boolean }[] };
        return s.volumes.some((v) => v.name === volume.name && v.last_snapshot && !v.running);
      },
      { daemon: d, timeoutMs: 60_000 },
    );
    // an engine event, which the agent logs at debug: proof that the quiet levels were on
    await engine.createVolume(uniqueName('event'), { labels: { ...TEST_LABELS } });
    await until('a debug line in the agent log', () => d.logs.some((l) => l.level === 'debug' || l.level === 'trace'), { daemon: d, timeoutMs: 30_000 });
    for (const p of ['/metrics', '/status', '/healthz']) {
      const r = await d.get(p);
      expect(r.status, p).toBe(200);
      outputs.push({ where: `GET ${p}`, text: r.body });
    }
    const cli = await run(['--config', config, '--json', 'status']);
    expect(cli.json<{ agent: { running: boolean } }>().agent.running).toBe(true);
    d.child.kill('SIGTERM');
    expect(await d.exited).toEqual({ code: 0, signal: null });
    daemon = undefined;
    outputs.push({ where: 'agent log (stdout)', text: d.logs.map((l) => JSON.stringify(l)).join('\n') }, { where: 'agent stderr', text: d.stderr() });
  });

  it('printed and served no password, master key or identity private key, in any encoding', async () => {
    const r = await Repository.open(repo, PASSWORD);
    const { enc, mac } = r.keys;
    r.close();
    const keyPem = await fsp.readFile(path.join(stateDir, 'identity', 'key.pem'), 'utf8');
    const jwk = crypto.createPrivateKey(keyPem).export({ format: 'jwk' });
    const pemBody = keyPem.split('\n').filter((l) => l && !l.startsWith('-----'));
    const secrets: [string, string][] = [
      ['password', PASSWORD],
      ...[enc, mac].flatMap((k, i): [string, string][] =>
        (['hex', 'base64', 'base64url'] as const).map((e) => [`master key ${i === 0 ? 'enc' : 'mac'} (${e})`, k.toString(e)]),
      ),
      ['identity private key (PEM)', pemBody.join('')],
      ...pemBody.filter((l) => l.length >= 32).map((l, i): [string, string] => [`identity private key (PEM line ${i + 1})`, l]),
      ['identity private key (d, base64url)', jwk.d!],
      ['identity private key (d, hex)', Buffer.from(jwk.d!, 'base64url').toString('hex')],
    ];
    expect(outputs.length).toBeGreaterThan(20);
    const leaks = outputs.flatMap((o) => secrets.filter(([, value]) => o.text.includes(value)).map(([what]) => `${what} in ${o.where}`));
    expect(leaks).toEqual([]);
  });

  it('created every file 0600 and every directory 0700 in the repository and the state directory (umask 022)', async () => {
    const wrong: string[] = [];
    const walk = async (p: string): Promise<void> => {
      const st = await fsp.lstat(p);
      const mode = st.mode & 0o777;
      if (st.isDirectory()) {
        if (mode !== 0o700) wrong.push(`${p}: directory ${mode.toString(8)}`);
        for (const name of await fsp.readdir(p)) await walk(path.join(p, name));
      } else if (!st.isSymbolicLink() && mode !== 0o600) {
        wrong.push(`${p}: file ${mode.toString(8)}`);
      }
    };
    await walk(repo);
    await walk(stateDir);
    expect(fs.existsSync(path.join(stateDir, 'identity', 'key.pem'))).toBe(true);
    writeSummary({ suite: 'secrets', part: 'cli-agent', counts: {}, failures: wrong });
    expect(wrong).toEqual([]);
  });
});
