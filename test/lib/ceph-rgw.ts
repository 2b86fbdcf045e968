/**
 * A real S3 endpoint for tests: a one-node Ceph (one monitor, one memstore
 * OSD, radosgw on loopback) from Debian's packages, everything under one
 * directory, started in a few seconds and SIGKILLed when done. The settings
 * are the ones ../shared/notes/ceph-rgw.md found necessary; each says why.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { freePort } from '../../src/util/testing/ports.ts';

export interface Rgw {
  /** http://127.0.0.1:PORT, path-style, any region name. */
  readonly endpoint: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** SIGKILLs the daemons (a SIGTERMed memstore OSD first writes its RAM to disk) and removes the directory. */
  stop(): Promise<void>;
}

const BINARIES = ['ceph-mon', 'ceph-osd', 'radosgw', 'radosgw-admin', 'ceph', 'monmaptool', 'ceph-authtool'];

/** Why this machine cannot run the gateway, or undefined when it can: tests skip with this reason. */
export function cephUnavailableReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'Ceph RGW tests need root (the Ceph daemons run as root here)';
  const dirs = (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
  const missing = BINARIES.filter((b) => !dirs.some((d) => isExecutable(path.join(d, b))));
  if (missing.length > 0) {
    return `Ceph is not installed (no ${missing.join(', ')}): apt-get install -y --no-install-recommends ceph-mon ceph-osd radosgw ceph-common`;
  }
  return undefined;
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** `n` consecutive loopback ports nothing listens on: the OSD binds several from its `ms bind port` range. */
async function freePortRange(n: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + crypto.randomInt(40_000);
    let ok = true;
    for (let p = base; p < base + n && ok; p++) ok = await portFree(p);
    if (ok) return base;
  }
  throw new Error(`no ${n} consecutive free ports on 127.0.0.1`);
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

function conf(dir: string, fsid: string, monPort: number, osdPorts: number, rgwPort: number): string {
  return `[global]
fsid = ${fsid}
mon host = v2:127.0.0.1:${monPort}
mon initial members = a
# no cephx; and every messenger mode crc, or radosgw's "secure" monitor client waits 300 s for auth
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
ms mon service mode = crc
ms mon cluster mode = crc
ms client mode = crc
ms service mode = crc
ms cluster mode = crc
ms bind msgr1 = false
ms bind msgr2 = true
ms bind port min = ${osdPorts}
ms bind port max = ${osdPorts + 7}
# each pool radosgw creates waits for a Paxos round: 12.5 s to start at the default 1 s
paxos propose interval = 0.01
# one OSD holds every pool alone
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd objectstore = memstore
memstore device bytes = ${2 * 1024 ** 3}
# nothing outside the directory
run dir = ${dir}/run
admin socket = ${dir}/run/$cluster-$name.asok
pid file = ${dir}/run/$cluster-$name.pid
log file = ${dir}/log/$cluster-$name.log
mon cluster log file = ${dir}/log/$cluster.log
crash dir = ${dir}/crash
keyring = ${dir}/keyring
mon data = ${dir}/mon/$cluster-$id
osd data = ${dir}/osd/$cluster-$id
rgw data = ${dir}/rgw/$cluster-$id

[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:${rgwPort}
`;
}

/** Brings up a monitor, a memstore OSD and radosgw under `dir` (made if missing) with an S3 user. */
export async function startRgw(dir: string): Promise<Rgw> {
  dir = path.resolve(dir);
  for (const sub of ['run', 'log', 'crash', 'mon', 'osd/ceph-0', 'rgw']) await fsp.mkdir(path.join(dir, sub), { recursive: true });
  const [monPort, rgwPort, osdPorts] = [await freePort(), await freePort(), await freePortRange(8)];
  const confFile = path.join(dir, 'ceph.conf');
  const fsid = crypto.randomUUID();
  await fsp.writeFile(confFile, conf(dir, fsid, monPort, osdPorts, rgwPort));

  const daemons: { name: string; child: ChildProcess; exited: boolean }[] = [];
  const stop = async () => {
    await Promise.all(
      daemons.map(async (d) => {
        if (d.exited) return;
        const gone = new Promise((r) => d.child.once('exit', r));
        d.child.kill('SIGKILL');
        await gone;
      }),
    );
    await fsp.rm(dir, { recursive: true, force: true });
  };

  // a daemon that died makes every later step fail (or hang): say which and show its log's end
  const deathOf = async (): Promise<Error | undefined> => {
    const dead = daemons.find((d) => d.exited);
    if (!dead) return undefined;
    const log = await tail(path.join(dir, 'log', `ceph-${dead.name}.log`));
    const err = await tail(path.join(dir, 'log', `${dead.name}.stderr`));
    return new Error(`${dead.name} exited (${dead.child.exitCode ?? dead.child.signalCode}) while Ceph started in ${dir}\n--- its log:\n${log}\n--- its stderr:\n${err}`);
  };

  const start = async (name: string, cmd: string, args: string[]) => {
    // stdio to files: a daemon holding a pipe open would keep a caller's $(...) or read waiting forever
    const out = fs.openSync(path.join(dir, 'log', `${name}.stderr`), 'a');
    const child = spawn(cmd, ['-c', confFile, '-f', ...args], { stdio: ['ignore', out, out] });
    fs.closeSync(out);
    const d = { name, child, exited: false };
    child.once('exit', () => (d.exited = true));
    daemons.push(d);
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
  };

  const run = async (cmd: string, args: string[]): Promise<string> => {
    const done = new Promise<string>((resolve, reject) => {
      execFile(cmd, ['-c', confFile, ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}\n${stdout}${stderr}`));
        else resolve(stdout);
      });
    });
    // a command that needs a daemon waits for it (up to its timeout): stop waiting as soon as one dies
    for (;;) {
      const result = await Promise.race([done.then((s) => ({ s })), sleep(100).then(() => undefined)]);
      if (result) return result.s;
      const died = await deathOf();
      if (died) throw died;
    }
  };

  try {
    const keyring = path.join(dir, 'keyring');
    const monmap = path.join(dir, 'monmap');
    await run('ceph-authtool', ['--create-keyring', keyring, '--gen-key', '-n', 'mon.', '--cap', 'mon', 'allow *']);
    await run('monmaptool', ['--create', '--fsid', fsid, '--addv', 'a', `[v2:127.0.0.1:${monPort}]`, monmap]);
    await run('ceph-mon', ['--mkfs', '-i', 'a', '--monmap', monmap, '--keyring', keyring]);
    await start('mon.a', 'ceph-mon', ['-i', 'a']);

    const osdUuid = crypto.randomUUID();
    const id = (await run('ceph', ['--connect-timeout', '60', 'osd', 'new', osdUuid])).trim();
    if (id !== '0') throw new Error(`ceph osd new gave id ${JSON.stringify(id)}, not 0`);
    await run('ceph-osd', ['-i', '0', '--mkfs', '--osd-uuid', osdUuid]);
    await start('osd.0', 'ceph-osd', ['-i', '0']);

    // radosgw creates its pools itself and serves once the OSD has them
    await start('client.rgw', 'radosgw', ['-n', 'client.rgw']);
    const endpoint = `http://127.0.0.1:${rgwPort}`;
    const deadline = Date.now() + 90_000;
    for (;;) {
      const died = await deathOf();
      if (died) throw died;
      const body = await fetch(`${endpoint}/`, { signal: AbortSignal.timeout(2000) })
        .then((r) => r.text())
        .catch(() => '');
      if (body.includes('ListAllMyBucketsResult')) break;
      if (Date.now() > deadline) throw new Error(`radosgw did not answer at ${endpoint} within 90 s\n${await tail(path.join(dir, 'log', 'ceph-client.rgw.log'))}`);
      await sleep(100);
    }

    const accessKeyId = `LB${crypto.randomBytes(9).toString('hex').toUpperCase()}`;
    const secretAccessKey = crypto.randomBytes(30).toString('base64url');
    // as the default client.admin: under client.rgw it would take the running gateway's admin socket
    await run('radosgw-admin', ['user', 'create', '--uid=lifeboat', '--display-name=Lifeboat tests', `--access-key=${accessKeyId}`, `--secret-key=${secretAccessKey}`]);
    return { endpoint, accessKeyId, secretAccessKey, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function tail(file: string, lines = 30): Promise<string> {
  const text = await fsp.readFile(file, 'utf8').catch(() => '(none)');
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

/**
 * Makes a bucket on the gateway, as an operator's tool would: Lifeboat never
 * creates one. us-east-1: any other region name becomes a LocationConstraint,
 * which RGW refuses.
 */
export async function createBucket(rgw: Rgw, bucket: string, opts: { objectLock?: boolean } = {}): Promise<void> {
  const client = s3Client(rgw);
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket, ...(opts.objectLock ? { ObjectLockEnabledForBucket: true } : {}) }));
  } finally {
    client.destroy();
  }
}

/** A client of the gateway's S3 user, for what a test does behind Lifeboat's back (us-east-1: see createBucket). */
export function s3Client(rgw: Rgw): S3Client {
  return new S3Client({ endpoint: rgw.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey } });
}
