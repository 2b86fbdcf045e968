/**
 * A real PostgreSQL 15 image for integration tests and benchmarks, built on
 * this machine from Debian's packages (no image can be pulled):
 *
 *   debootstrap --variant=minbase bookworm <root> <the mirror apt uses here>
 *   chroot <root> apt-get install --no-install-recommends postgresql-15
 *     (postgresql-15 holds the server, pgbench and the amcheck extension; its
 *     dependency postgresql-client-15 holds psql, pg_isready and pg_amcheck)
 *   + an entrypoint that initialises an empty data directory (a volume) and
 *     runs postgres in the foreground as the postgres user
 *   → `docker import` with Dockerfile-style changes (ENV, ENTRYPOINT,
 *     HEALTHCHECK, LABEL...).
 *
 * Building takes a minute or more, so the root filesystem is kept as a tarball
 * under a cache directory (LIFEBOAT_TEST_CACHE, else /var/cache/lifeboat-test
 * when writable, else <tmpdir>/lifeboat-test-cache), named by a hash of the
 * recipe: a later call on another engine, or after `docker rmi`, is an import.
 * Parallel test files are safe: one build and one import per engine at a time
 * (flock(1) locks, released by the kernel if a holder dies).
 *
 * Needs root, debootstrap (installed with apt-get when missing; .ci/run does
 * it), chroot, unshare, flock and tar (util-linux, coreutils, tar: essential
 * on Debian), and the Debian mirror reachable.
 *
 * Using the image:
 *   docker run -d --network none -v VOL:/var/lib/postgresql/data IMAGE [postgres options, e.g. -c fsync=on]
 *   docker exec C pg_isready | psql | pgbench | pg_amcheck   (as root: PGHOST and PGUSER are set; auth is trust)
 * The data directory is initialised only when empty (a restored volume starts
 * from its data); postgres listens on the unix socket in /run/postgresql and
 * on 127.0.0.1:5432 inside the container. No JIT (LLVM is left out).
 * The stop signal is the default SIGTERM, postgres's "smart" shutdown, which
 * waits for clients to leave: the engine here (20.10) takes no STOPSIGNAL
 * change on import, so pass `--stop-signal SIGINT` to `docker run` for a fast
 * shutdown.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { api } from '../docker/harness.ts';

export const POSTGRES_TAG = 'lifeboat-test/postgres:15';
/** The image label holding the recipe's hash: an image under the tag with another hash is replaced. */
export const POSTGRES_RECIPE_LABEL = 'lifeboat-test.postgres.recipe';
export const POSTGRES_DATA_DIR = '/var/lib/postgresql/data';
const PG_BIN = '/usr/lib/postgresql/15/bin';
const SUITE = 'bookworm';
const PACKAGES = ['postgresql-15'];

const ENTRYPOINT_PATH = '/usr/local/bin/lifeboat-postgres-entrypoint';
const ENTRYPOINT = `#!/bin/sh
# Lifeboat's PostgreSQL 15 test image. Arguments starting with "-" go to
# postgres (e.g. -c shared_buffers=64MB); anything else is run as a command.
set -eu
: "\${PGDATA:=${POSTGRES_DATA_DIR}}"
export PGDATA
if [ $# -gt 0 ] && [ "$1" = postgres ]; then shift; fi
if [ $# -gt 0 ] && [ "\${1#-}" = "$1" ]; then exec "$@"; fi
case "\${1:-}" in -V|--version|--help|-\\?) exec postgres "$@" ;; esac

if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /run/postgresql
  chown postgres:postgres /run/postgresql
  chmod 2775 /run/postgresql
  # Only an empty directory is taken over; restored data keeps its owner and mode.
  if [ -z "$(ls -A "$PGDATA")" ]; then
    chown postgres:postgres "$PGDATA"
    chmod 700 "$PGDATA"
  fi
  export HOME=/var/lib/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ -z "$(ls -A "$PGDATA")" ]; then
  echo "lifeboat-postgres: initialising an empty data directory $PGDATA"
  initdb --pgdata="$PGDATA" --username=postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8
  cat >>"$PGDATA/postgresql.conf" <<'EOF'

# lifeboat test image
listen_addresses = '127.0.0.1'
unix_socket_directories = '/run/postgresql'
jit = off
EOF
elif [ ! -s "$PGDATA/PG_VERSION" ]; then
  echo "lifeboat-postgres: $PGDATA is neither empty nor a PostgreSQL data directory (no PG_VERSION)" >&2
  exit 1
else
  echo "lifeboat-postgres: starting from the data in $PGDATA (PostgreSQL $(cat "$PGDATA/PG_VERSION"))"
fi
exec postgres "$@"
`;

/** Kept out of the image (dpkg path-exclude, and removed from what debootstrap left). */
const DPKG_EXCLUDES = `path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/usr/share/lintian/*
# The JIT (LLVM, 130 MB of the image): never used by the tests' queries, and
# jit = off in the clusters the entrypoint makes. Without it postgres runs
# without JIT whatever the setting.
path-exclude=/usr/lib/postgresql/15/lib/llvmjit*
path-exclude=/usr/lib/postgresql/15/lib/bitcode/*
path-exclude=/usr/lib/x86_64-linux-gnu/libLLVM-*
path-exclude=/usr/lib/x86_64-linux-gnu/libz3.so*
path-exclude=/usr/lib/aarch64-linux-gnu/libLLVM-*
path-exclude=/usr/lib/aarch64-linux-gnu/libz3.so*
`;

/** Dockerfile-style changes for `docker import`, less the recipe label. */
const CHANGES: readonly string[] = [
  `ENV PATH=${PG_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
  `ENV PGDATA=${POSTGRES_DATA_DIR}`,
  'ENV PGHOST=/run/postgresql',
  'ENV PGUSER=postgres',
  'ENV LANG=C.UTF-8',
  `VOLUME ["${POSTGRES_DATA_DIR}"]`,
  `ENTRYPOINT ["${ENTRYPOINT_PATH}"]`,
  `HEALTHCHECK --interval=2s --timeout=5s --start-period=120s --retries=3 CMD ["${PG_BIN}/pg_isready", "-q"]`,
  'LABEL org.opencontainers.image.title="lifeboat-test postgresql 15" org.opencontainers.image.description="PostgreSQL 15 from Debian bookworm packages, for Lifeboat tests"',
];

/** What the image is made of; its hash names the cached tarball and labels the image. */
function recipe() {
  return {
    v: 1,
    suite: SUITE,
    variant: 'minbase',
    arch: process.arch,
    components: 'main',
    extraSuites: ['-updates', '-security'],
    packages: PACKAGES,
    dpkgExcludes: DPKG_EXCLUDES,
    entrypoint: ENTRYPOINT,
    changes: CHANGES,
  };
}

export function postgresRecipeHash(): string {
  return createHash('sha256').update(JSON.stringify(recipe())).digest('hex').slice(0, 16);
}

/** Where the root filesystem tarballs (and build logs) are kept. */
export function postgresImageCacheDir(): string {
  if (process.env.LIFEBOAT_TEST_CACHE) return process.env.LIFEBOAT_TEST_CACHE;
  const system = '/var/cache/lifeboat-test';
  try {
    fs.mkdirSync(system, { recursive: true });
    fs.accessSync(system, fs.constants.W_OK);
    return system;
  } catch {
    return path.join(os.tmpdir(), 'lifeboat-test-cache');
  }
}

/** The cached tarball of the current recipe (it may not exist yet). */
export function postgresTarballPath(): string {
  return path.join(postgresImageCacheDir(), `postgres15-${postgresRecipeHash()}.rootfs.tar`);
}

const imports = new Map<string, Promise<string>>();
let tarballBuilt: Promise<string> | undefined;

/**
 * The image id of `tag` on the engine at `socket` (a unix socket path),
 * importing it from the cached root filesystem, and building that first, only
 * when the engine lacks the tag (or holds an image of another recipe under it).
 */
export function ensurePostgresImage(socket: string, tag = POSTGRES_TAG): Promise<string> {
  const key = `${socket}\0${tag}`;
  let p = imports.get(key);
  if (!p) {
    p = ensureOn(socket, tag);
    imports.set(key, p);
    // A failure is not remembered: a later call tries again.
    p.catch(() => imports.delete(key));
  }
  return p;
}

async function ensureOn(socket: string, tag: string): Promise<string> {
  const hash = postgresRecipeHash();
  const have = await inspectTag(socket, tag);
  if (have?.hash === hash) return have.id;
  const tarball = await (tarballBuilt ??= ensureTarball().catch((err: unknown) => {
    tarballBuilt = undefined;
    throw err;
  }));
  const lockName = `import-${createHash('sha256').update(`${socket}\0${tag}`).digest('hex').slice(0, 16)}.lock`;
  return withFileLock(path.join(postgresImageCacheDir(), lockName), async () => {
    const now = await inspectTag(socket, tag);
    if (now?.hash === hash) return now.id;
    const id = await importTarball(socket, tarball, tag, [...CHANGES, `LABEL ${POSTGRES_RECIPE_LABEL}=${hash}`]);
    // The image of an older recipe, now untagged: removed unless a container still uses it.
    if (now && now.id !== id) await api(socket, 'DELETE', `/images/${now.id}`).catch(() => undefined);
    return id;
  });
}

async function inspectTag(socket: string, tag: string): Promise<{ id: string; hash: string | undefined } | undefined> {
  const res = await api(socket, 'GET', `/images/${encodeURIComponent(tag)}/json`);
  if (res.status === 404) return undefined;
  if (res.status !== 200) throw new Error(`inspecting ${tag} on ${socket}: HTTP ${res.status}: ${res.body.trim()}`);
  const info = JSON.parse(res.body) as { Id: string; Config?: { Labels?: Record<string, string> | null } };
  return { id: info.Id, hash: info.Config?.Labels?.[POSTGRES_RECIPE_LABEL] };
}

/** `docker import TARBALL TAG --change ...` through the Engine API; returns the image id. */
async function importTarball(socket: string, tarball: string, tag: string, changes: readonly string[]): Promise<string> {
  const i = tag.lastIndexOf(':');
  const [repo, t] = i > tag.lastIndexOf('/') ? [tag.slice(0, i), tag.slice(i + 1)] : [tag, 'latest'];
  const q = new URLSearchParams({ fromSrc: '-', repo, tag: t, message: `lifeboat test postgresql 15 (recipe ${postgresRecipeHash()})` });
  for (const c of changes) q.append('changes', c);
  const res = await api(socket, 'POST', `/images/create?${q}`, fs.createReadStream(tarball));
  const failed = res.body.split('\n').find((line) => line.includes('"errorDetail"'));
  if (res.status >= 300 || failed) throw new Error(`importing ${tarball} as ${tag} on ${socket}: HTTP ${res.status}: ${(failed ?? res.body).trim()}`);
  const now = await inspectTag(socket, tag);
  if (!now) throw new Error(`importing ${tarball} as ${tag} on ${socket}: the tag is missing afterwards`);
  return now.id;
}

// ---- building the root filesystem ---------------------------------------------

/** The cached tarball, built first when missing; one build at a time across processes. */
async function ensureTarball(): Promise<string> {
  const tarball = postgresTarballPath();
  if (fs.existsSync(tarball)) return tarball;
  const dir = postgresImageCacheDir();
  await fsp.mkdir(dir, { recursive: true });
  return withFileLock(path.join(dir, 'build.lock'), async () => {
    if (fs.existsSync(tarball)) return tarball;
    await buildTarball(dir, tarball);
    return tarball;
  });
}

async function buildTarball(cacheDir: string, tarball: string): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('building the PostgreSQL test image needs root (debootstrap, chroot)');
  // Build directories left by a builder that died (we hold the build lock).
  for (const name of await fsp.readdir(cacheDir)) {
    if (name.startsWith('build-')) await run('rm', ['-rf', '--one-file-system', path.join(cacheDir, name)], { log: undefined });
  }
  const log = tarball.replace(/\.rootfs\.tar$/, '.build.log');
  await fsp.writeFile(log, `recipe ${postgresRecipeHash()}: ${JSON.stringify(recipe())}\n`);
  const work = path.join(cacheDir, `build-${randomBytes(4).toString('hex')}`);
  const root = path.join(work, 'root');
  await fsp.mkdir(work);
  try {
    await ensureDebootstrap(log);
    const mirrors = debianMirrors();
    await fsp.appendFile(log, `mirrors: ${JSON.stringify(mirrors)}\n`);
    const started = Date.now();
    await run('debootstrap', ['--variant=minbase', '--components=main', SUITE, root, mirrors.main], { log, timeoutMs: 20 * 60_000 });
    await fsp.appendFile(log, `debootstrap took ${Date.now() - started} ms\n`);

    const sources = [
      `deb ${mirrors.main} ${SUITE} main`,
      `deb ${mirrors.main} ${SUITE}-updates main`,
      ...(mirrors.security ? [`deb ${mirrors.security} ${SUITE}-security main`] : []),
    ];
    await fsp.writeFile(path.join(root, 'etc/apt/sources.list'), `${sources.join('\n')}\n`);
    // No service starts in the chroot, no cluster is made by postgresql-common, no docs.
    await fsp.writeFile(path.join(root, 'usr/sbin/policy-rc.d'), '#!/bin/sh\nexit 101\n', { mode: 0o755 });
    await fsp.mkdir(path.join(root, 'etc/postgresql-common/createcluster.d'), { recursive: true });
    await fsp.writeFile(path.join(root, 'etc/postgresql-common/createcluster.d/lifeboat.conf'), 'create_main_cluster = false\n');
    await fsp.writeFile(path.join(root, 'etc/dpkg/dpkg.cfg.d/lifeboat-excludes'), DPKG_EXCLUDES);
    await fsp.writeFile(path.join(root, 'etc/apt/apt.conf.d/lifeboat-no-recommends'), 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n');
    await inChroot(
      root,
      [
        'apt-get update -qq',
        `apt-get install -y -qq --no-install-recommends ${PACKAGES.join(' ')}`,
        'apt-get clean',
        `test -x ${PG_BIN}/postgres && test -x ${PG_BIN}/pg_amcheck && test -x ${PG_BIN}/pgbench && test -x ${PG_BIN}/pg_isready`,
        `test -f /usr/lib/postgresql/15/lib/amcheck.so`,
      ].join(' && '),
      log,
    );
    await fsp.rm(path.join(root, 'usr/sbin/policy-rc.d'));

    // The entrypoint, and the data directory (a named volume made from the image copies its owner and mode).
    await fsp.writeFile(path.join(root, ENTRYPOINT_PATH.slice(1)), ENTRYPOINT, { mode: 0o755 });
    const { uid, gid } = userIds(root, 'postgres');
    const data = path.join(root, POSTGRES_DATA_DIR.slice(1));
    await fsp.mkdir(data, { recursive: true });
    await fsp.chown(data, uid, gid);
    await fsp.chmod(data, 0o700);
    await fsp.mkdir(path.join(root, 'run/postgresql'), { recursive: true });
    await fsp.chown(path.join(root, 'run/postgresql'), uid, gid);
    await fsp.chmod(path.join(root, 'run/postgresql'), 0o2775);

    // Caches, package lists, logs, docs; device nodes (the engine makes /dev).
    await inChroot(
      root,
      [
        'rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/cache/debconf/*-old /var/lib/dpkg/*-old /var/log/apt /var/log/*.log /tmp/* /var/tmp/*',
        'rm -rf /usr/share/man/* /usr/share/info/* /usr/share/lintian',
        'find /usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete',
        'find /usr/share/doc -mindepth 1 -type d -empty -delete',
        'find /usr/share/locale -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +',
      ].join(' && '),
      log,
    );
    await run('find', [path.join(root, 'dev'), '-mindepth', '1', '-delete'], { log });

    const partial = `${tarball}.partial-${process.pid}`;
    await run('tar', ['-C', root, '--numeric-owner', '-cf', partial, '.'], { log });
    await fsp.rename(partial, tarball);
    await fsp.appendFile(log, `built ${tarball} (${fs.statSync(tarball).size} bytes) in ${Date.now() - started} ms\n`);
    // Tarballs of other recipes.
    for (const name of await fsp.readdir(cacheDir)) {
      const p = path.join(cacheDir, name);
      if (/^postgres15-[0-9a-f]+\.(rootfs\.tar(\.partial-\d+)?|build\.log)$/.test(name) && p !== tarball && p !== log) await fsp.rm(p, { force: true });
    }
  } finally {
    await run('rm', ['-rf', '--one-file-system', work], { log: undefined }).catch(() => undefined);
  }
}

/** Runs `script` with sh inside the chroot, in a mount namespace of its own holding /proc (gone when it ends). */
function inChroot(root: string, script: string, log: string): Promise<void> {
  return run(
    'unshare',
    ['--mount', '--propagation', 'private', '--', 'sh', '-c', 'mount -t proc proc "$1/proc" && exec chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 HOME=/root sh -c "$2"', 'sh', root, `set -e; ${script}`],
    { log, timeoutMs: 20 * 60_000 },
  );
}

async function ensureDebootstrap(log: string): Promise<void> {
  if (await commandExists('debootstrap')) return;
  if (!(await commandExists('apt-get'))) throw new Error('debootstrap is missing, and there is no apt-get to install it with');
  await fsp.appendFile(log, 'debootstrap is missing: installing it with apt-get\n');
  await run('apt-get', ['update', '-qq'], { log, env: { DEBIAN_FRONTEND: 'noninteractive' } });
  await run('apt-get', ['install', '-y', '-qq', 'debootstrap'], { log, env: { DEBIAN_FRONTEND: 'noninteractive' } });
}

async function commandExists(name: string): Promise<boolean> {
  return run('sh', ['-c', `command -v ${name}`], { log: undefined }).then(
    () => true,
    () => false,
  );
}

/**
 * The Debian mirror apt uses on this machine (and its security mirror), read
 * from /etc/apt/sources.list and /etc/apt/sources.list.d/ (one-line and
 * deb822 formats). LIFEBOAT_TEST_DEBIAN_MIRROR overrides the main one.
 */
export function debianMirrors(): { main: string; security: string | undefined } {
  const entries: { uri: string; suites: string[] }[] = [];
  const files = ['/etc/apt/sources.list'];
  try {
    for (const f of fs.readdirSync('/etc/apt/sources.list.d').sort()) files.push(path.join('/etc/apt/sources.list.d', f));
  } catch {
    // no sources.list.d
  }
  for (const file of files) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    if (file.endsWith('.sources')) {
      for (const stanza of text.split(/\n\s*\n/)) {
        const fields = new Map<string, string>();
        let last = '';
        for (const line of stanza.split('\n')) {
          if (line.startsWith('#') || !line.trim()) continue;
          const m = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
          if (m) fields.set((last = m[1]!.toLowerCase()), m[2]!.trim());
          else if (/^\s/.test(line) && last) fields.set(last, `${fields.get(last)} ${line.trim()}`);
        }
        if (!/\bdeb\b/.test(fields.get('types') ?? '') || /^(no|false)$/i.test(fields.get('enabled') ?? 'yes')) continue;
        const suites = (fields.get('suites') ?? '').split(/\s+/).filter(Boolean);
        for (const uri of (fields.get('uris') ?? '').split(/\s+/).filter(Boolean)) entries.push({ uri, suites });
      }
    } else if (file === '/etc/apt/sources.list' || file.endsWith('.list')) {
      for (const line of text.split('\n')) {
        const m = /^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(line);
        if (m) entries.push({ uri: m[1]!, suites: [m[2]!] });
      }
    }
  }
  const debian = entries.filter((e) => /^https?:\/\//.test(e.uri) && e.suites.some((s) => /^[a-z]+(-updates|-security|-backports)?$/.test(s)));
  const security = debian.find((e) => e.suites.some((s) => s.endsWith('-security')))?.uri;
  const main =
    process.env.LIFEBOAT_TEST_DEBIAN_MIRROR ??
    debian.find((e) => e.suites.some((s) => /^[a-z]+$/.test(s)) && e.uri !== security)?.uri ??
    debian.find((e) => e.uri !== security)?.uri;
  if (!main) throw new Error(`no Debian mirror found in ${files.join(', ')}; set LIFEBOAT_TEST_DEBIAN_MIRROR`);
  return { main: main.replace(/\/+$/, ''), security: security?.replace(/\/+$/, '') };
}

function userIds(root: string, user: string): { uid: number; gid: number } {
  const line = fs
    .readFileSync(path.join(root, 'etc/passwd'), 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${user}:`));
  if (!line) throw new Error(`no user ${user} in the built root filesystem`);
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

// ---- processes and locks ------------------------------------------------------

/** Runs a command; output goes to `log` (appended) when given. Rejects on a non-zero exit, with the log's tail. */
function run(cmd: string, args: readonly string[], opts: { log: string | undefined; timeoutMs?: number; env?: Record<string, string> }): Promise<void> {
  return new Promise((resolve, reject) => {
    const out = opts.log ? fs.openSync(opts.log, 'a') : 'ignore';
    if (opts.log) fs.writeSync(out as number, `$ ${cmd} ${args.join(' ')}\n`);
    // chroot and debootstrap live in sbin, which a PATH may lack.
    const PATH = `${process.env.PATH ?? '/usr/bin:/bin'}:/usr/local/sbin:/usr/sbin:/sbin`;
    const child = spawn(cmd, args, { stdio: ['ignore', out, out], detached: true, env: { ...process.env, PATH, ...opts.env } });
    if (typeof out === 'number') fs.closeSync(out);
    const timer = opts.timeoutMs
      ? setTimeout(() => {
          try {
            process.kill(-child.pid!, 'SIGKILL');
          } catch {
            child.kill('SIGKILL');
          }
        }, opts.timeoutMs)
      : undefined;
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) return resolve();
      const tail = opts.log ? fs.readFileSync(opts.log, 'utf8').split('\n').slice(-30).join('\n') : '';
      reject(new Error(`${cmd} ${args.join(' ')} failed (${signal ?? `exit ${code}`})${opts.log ? `; the end of ${opts.log}:\n${tail}` : ''}`));
    });
  });
}

/**
 * Runs fn holding an exclusive flock(2) on `file`, taken by a flock(1) child
 * that holds it until its stdin closes: when this process dies, the kernel
 * closes the pipe and the lock is released.
 */
async function withFileLock<T>(file: string, fn: () => Promise<T>, waitSeconds = 40 * 60): Promise<T> {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  const child = spawn('flock', ['--exclusive', '--wait', String(waitSeconds), file, 'sh', '-c', 'echo locked; exec cat >/dev/null'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const exited = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? -1)));
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const locked = await new Promise<boolean>((resolve, reject) => {
    child.on('error', reject);
    child.stdout.on('data', (c: Buffer) => {
      if (c.toString().includes('locked')) resolve(true);
    });
    void exited.then(() => resolve(false));
  });
  if (!locked) throw new Error(`could not lock ${file} within ${waitSeconds} s (flock exited ${await exited}): ${stderr.trim()}`);
  try {
    return await fn();
  } finally {
    child.stdin.end();
    await exited;
  }
}
