import type http from 'node:http';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { Snapshot } from '../repo/snapshot.ts';
import { ListenError, VolumeNotTrackedError } from '../errors/errors.ts';
import { boundAddress, parseListen } from '../util/listen.ts';
import { closeServer, type Endpoints, handler, listen, nodeHttp } from './http.ts';
import { AgentMetrics } from './metrics.ts';
import { captureLog } from './testing/log.ts';
import { Access } from '../console/access.ts';

interface Answer {
  readonly status: number;
  readonly type: string;
  readonly body: string;
  readonly headers: http.IncomingHttpHeaders;
}

function get(address: string, path: string, method = 'GET', headers: Record<string, string> = {}, body?: string): Promise<Answer> {
  const { host, port } = parseListen(address);
  return new Promise((resolve, reject) => {
    const req = nodeHttp().request({ host, port, path, method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A POST as the CLI and the console send it. */
const post = (address: string, path: string, headers: Record<string, string> = {}, body?: string) => get(address, path, 'POST', { 'X-Lifeboat-Request': 'test', ...headers }, body);

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

const servers: http.Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await closeServer(s);
});

async function serve(endpoints: Endpoints, token?: string): Promise<string> {
  const { log } = captureLog();
  const server = await listen(`127.0.0.1:${await freePort()}`, handler(endpoints, log, new Access({ token })));
  servers.push(server);
  return boundAddress(server);
}

function metricsFor(opts: { engineUp: boolean }): AgentMetrics {
  // fixed before any scrape, so the age a scrape reports is at least 90 s whatever the clock does between the calls
  const lastSnapshotTime = new Date(Date.now() - 90_000).toISOString();
  return new AgentMetrics({
    volumes: () => [
      { name: 'pgdata', lastSnapshotTime, dirtyPaths: 3, journalTrusted: true },
      { name: 'never', lastSnapshotTime: null, dirtyPaths: null, journalTrusted: null },
    ],
    engineUp: () => opts.engineUp,
    peers: () => [],
    repository: () => ({ snapshots: 12, packBytes: 34_567 }),
  }, { version: '9.8.7', peers: ['dr-site'] });
}

/** Endpoints that answer with nothing to say, for tests about the others. */
const QUIET: Endpoints = { metrics: async () => ({ contentType: 'text/plain', body: '' }), health: () => ({ ok: true, reasons: [] }), status: () => ({}) };

const snap = {
  id: 'a'.repeat(64),
  time: new Date().toISOString(),
  stats: { files: 10, bytes_read: 4096, bytes_new: 2048, bytes_stored: 1500, examined: 2, duration_ms: 40, errors: 0 },
} as unknown as Snapshot;

describe('HTTP endpoint', () => {
  it('GET /metrics: the per-volume metrics, the lag, results and process metrics', async () => {
    const metrics = metricsFor({ engineUp: true });
    metrics.backup({ volume: 'pgdata', reason: 'continuous', outcome: 'success', snapshot: snap, durationMs: 40, lagMs: 6_500 });
    metrics.backup({ volume: 'pgdata', reason: 'schedule', outcome: 'failure', durationMs: 3 });
    metrics.backup({ volume: 'pgdata', reason: 'schedule', outcome: 'skipped' });
    metrics.missed('backup', 'pgdata');
    const address = await serve({ metrics: async () => ({ contentType: metrics.contentType, body: await metrics.text() }), health: () => ({ ok: true, reasons: [] }), status: () => ({}) });
    const r = await get(address, '/metrics');
    expect(r.status).toBe(200);
    expect(r.type).toMatch(/^text\/plain; version=0\.0\.4/);
    const body = r.body;
    for (const name of [
      'lifeboat_volume_last_success_timestamp_seconds',
      'lifeboat_volume_last_backup_duration_seconds',
      'lifeboat_volume_last_backup_read_bytes',
      'lifeboat_volume_last_backup_new_bytes',
      'lifeboat_volume_last_backup_stored_bytes',
      'lifeboat_volume_last_backup_examined_entries',
      'lifeboat_volume_recovery_point_age_seconds',
      'lifeboat_volume_last_backup_lag_seconds',
      'lifeboat_write_to_snapshot_seconds_bucket',
      'lifeboat_backups_total',
      'lifeboat_scheduled_runs_missed_total',
      'lifeboat_volume_journal_dirty_paths',
      'lifeboat_volume_journal_trusted',
      'lifeboat_engine_up',
      'lifeboat_build_info',
      'lifeboat_repository_snapshots',
      'lifeboat_repository_size_bytes',
      'process_resident_memory_bytes',
      'nodejs_heap_size_used_bytes',
    ]) {
      expect(body, name).toContain(`\n${name}`);
    }
    expect(body).toContain('lifeboat_volume_last_backup_read_bytes{volume="pgdata"} 4096');
    expect(body).toContain('lifeboat_volume_last_backup_stored_bytes{volume="pgdata"} 1500');
    expect(body).toContain('lifeboat_volume_last_backup_lag_seconds{volume="pgdata"} 6.5');
    expect(body).toContain('lifeboat_backups_total{volume="pgdata",result="success"} 1');
    expect(body).toContain('lifeboat_backups_total{volume="pgdata",result="failure"} 1');
    expect(body).toContain('lifeboat_backups_total{volume="pgdata",result="skipped"} 1');
    expect(body).toContain('lifeboat_scheduled_runs_missed_total{job="backup",volume="pgdata"} 1');
    expect(body).toContain('lifeboat_engine_up 1');
    expect(body).toContain(`lifeboat_build_info{version="9.8.7",node="${process.versions.node}"} 1`);
    expect(body).toContain('lifeboat_repository_snapshots 12');
    expect(body).toContain('lifeboat_repository_size_bytes 34567');
    const age = Number(/lifeboat_volume_recovery_point_age_seconds\{volume="pgdata"\} ([\d.]+)/.exec(body)?.[1]);
    expect(age).toBeGreaterThanOrEqual(90);
    expect(age).toBeLessThan(120);
    // a volume never backed up has no age (not 0, which would look fine)
    expect(body).not.toContain('lifeboat_volume_recovery_point_age_seconds{volume="never"}');
    metrics.forget('pgdata');
    expect(await metrics.text()).not.toContain('lifeboat_volume_last_backup_read_bytes{volume="pgdata"}');
  });

  it('has every counter an alert uses at 0 from the start: a first failure is an increase', async () => {
    const metrics = metricsFor({ engineUp: true });
    metrics.track('fresh');
    const body = await metrics.text();
    expect(body).toContain('lifeboat_backups_total{volume="fresh",result="failure"} 0');
    expect(body).toContain('lifeboat_backups_total{volume="fresh",result="success"} 0');
    expect(body).toContain('lifeboat_replication_pushes_total{peer="dr-site",result="failure"} 0');
    metrics.forget('fresh');
    expect(await metrics.text()).not.toContain('volume="fresh"');
  });

  it('POST /backup?volume=NAME answers with the backup once it has ended; a caller\'s mistake is 400 with its code', async () => {
    const asked: string[] = [];
    const address = await serve({
      ...QUIET,
      backup: async (volume) => {
        asked.push(volume);
        if (volume === 'untracked') throw new VolumeNotTrackedError(`volume ${volume} is not tracked by the running agent`);
        return { volume, outcome: 'success' };
      },
    });
    const ok = await post(address, '/backup?volume=pg%20data');
    expect([ok.status, JSON.parse(ok.body)]).toEqual([200, { volume: 'pg data', outcome: 'success' }]);
    const refused = await post(address, '/backup?volume=untracked');
    expect([refused.status, JSON.parse(refused.body).code]).toEqual([400, 'LB_ERR_VOLUME_NOT_TRACKED']);
    expect((await post(address, '/backup')).status).toBe(400);
    expect((await get(address, '/backup?volume=x', 'GET')).status).toBe(405);
    expect(asked).toEqual(['pg data', 'untracked']);
  });

  it('POST /restore?volume=NAME&snapshot=ID passes the options on; without both names it is 400', async () => {
    const asked: unknown[] = [];
    const address = await serve({
      ...QUIET,
      restore: async (volume, snapshot, o) => {
        asked.push({ volume, snapshot, ...o });
        return { snapshot, files: 1 };
      },
    });
    const r = await post(address, '/restore?volume=db&snapshot=abc&force=1&include=%2Fa&include=*.sql&exclude=tmp');
    expect([r.status, JSON.parse(r.body)]).toEqual([200, { snapshot: 'abc', files: 1 }]);
    expect(asked).toEqual([{ volume: 'db', snapshot: 'abc', force: true, include: ['/a', '*.sql'], exclude: ['tmp'] }]);
    expect((await post(address, '/restore?volume=db')).status).toBe(400);
  });

  it('GET /healthz: 200 ok, or 503 degraded with the reasons', async () => {
    let health = { ok: true, reasons: [] as string[] };
    const address = await serve({ metrics: async () => ({ contentType: 'text/plain', body: '' }), health: () => health, status: () => ({}) });
    const ok = await get(address, '/healthz');
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toEqual({ status: 'ok' });
    health = { ok: false, reasons: ['docker engine at unix:///var/run/docker.sock unreachable: connect ENOENT'] };
    const down = await get(address, '/healthz');
    expect(down.status).toBe(503);
    expect(down.type).toMatch(/^application\/json/);
    expect(JSON.parse(down.body)).toEqual({ status: 'degraded', reasons: ['docker engine at unix:///var/run/docker.sock unreachable: connect ENOENT'] });
  });

  it('GET /status answers the status as JSON; other paths 404, other methods 405, a failing handler 500', async () => {
    const address = await serve({
      metrics: async () => {
        throw new Error('registry broke');
      },
      health: () => ({ ok: true, reasons: [] }),
      status: () => ({ agent: { running: true } }),
    });
    const s = await get(address, '/status');
    expect(s.status).toBe(200);
    expect(JSON.parse(s.body)).toEqual({ agent: { running: true } });
    expect((await get(address, '/nope')).status).toBe(404);
    expect((await post(address, '/status')).status).toBe(405);
    const failed = await get(address, '/metrics');
    expect(failed.status).toBe(500);
    expect(JSON.parse(failed.body)).toEqual({ error: 'registry broke' });
  });

  it('serves the console page, its script and style with a strict content policy, no framing', async () => {
    const address = await serve(QUIET, 'sekrit-token');
    for (const [path, type] of [['/', /^text\/html/], ['/console.js', /^text\/javascript/], ['/console.css', /^text\/css/]] as const) {
      const r = await get(address, path);
      expect([path, r.status]).toEqual([path, 200]);
      expect(r.type).toMatch(type);
      expect(r.headers['content-security-policy']).toContain("script-src 'self'");
      expect(r.headers['x-frame-options']).toBe('DENY');
    }
    expect((await get(address, '/')).body).toContain('<script src="/console.js"');
  });

  describe('access', () => {
    const STATUS: Endpoints = { ...QUIET, status: () => ({ agent: { host: 'a' } }), health: () => ({ ok: false, reasons: ['peer dr-site unreachable'] }), backup: async (volume) => ({ volume }) };

    it('without a token: only loopback Host names (a rebound DNS name is refused), every read open', async () => {
      const address = await serve(STATUS);
      const port = parseListen(address).port;
      expect((await get(address, '/status')).status).toBe(200);
      expect((await get(address, '/status', 'GET', { Host: `localhost:${port}` })).status).toBe(200);
      const rebound = await get(address, '/status', 'GET', { Host: `attacker.example:${port}` });
      expect([rebound.status, JSON.parse(rebound.body).code]).toEqual([403, 'LB_ERR_FORBIDDEN']);
      expect((await post(address, '/backup?volume=v', { Host: `attacker.example:${port}` })).status).toBe(403);
    });

    it('a POST without X-Lifeboat-Request, from another origin or another site is refused before it runs', async () => {
      const asked: string[] = [];
      const address = await serve({ ...STATUS, backup: async (volume) => (asked.push(volume), { volume }) });
      const bare = await get(address, '/backup?volume=v', 'POST');
      expect([bare.status, JSON.parse(bare.body).error]).toEqual([403, expect.stringContaining('x-lifeboat-request')]);
      expect((await post(address, '/backup?volume=v', { Origin: 'http://attacker.example' })).status).toBe(403);
      expect((await post(address, '/backup?volume=v', { Origin: 'null' })).status).toBe(403);
      expect((await post(address, '/backup?volume=v', { 'Sec-Fetch-Site': 'cross-site' })).status).toBe(403);
      expect((await post(address, '/backup?volume=v', { 'Sec-Fetch-Site': 'same-site' })).status).toBe(403);
      expect(asked).toEqual([]);
      expect((await post(address, '/backup?volume=v', { Origin: `http://${address}`, 'Sec-Fetch-Site': 'same-origin' })).status).toBe(200);
      expect(asked).toEqual(['v']);
    });

    it('with a token: reads and actions need it (bearer or a signed-in session); /healthz says no more than ok or degraded', async () => {
      const asked: string[] = [];
      const address = await serve({ ...STATUS, backup: async (volume) => (asked.push(volume), { volume }) }, 'sekrit-token');
      for (const path of ['/status', '/metrics', '/history', '/plan?source=a']) {
        const r = await get(address, path);
        expect([path, r.status, r.headers['www-authenticate']]).toEqual([path, 401, 'Bearer realm="lifeboat"']);
      }
      expect((await post(address, '/backup?volume=v')).status).toBe(401);
      expect((await get(address, '/status', 'GET', { Authorization: 'Bearer wrong' })).status).toBe(401);
      expect(asked).toEqual([]);
      expect((await get(address, '/status', 'GET', { Authorization: 'Bearer sekrit-token' })).status).toBe(200);
      // any Host name: the token protects it
      expect((await get(address, '/status', 'GET', { Authorization: 'Bearer sekrit-token', Host: 'dr.example:9317' })).status).toBe(200);
      expect((await post(address, '/backup?volume=v', { Authorization: 'Bearer sekrit-token' })).status).toBe(200);
      expect(asked).toEqual(['v']);
      const health = await get(address, '/healthz');
      expect([health.status, JSON.parse(health.body)]).toEqual([503, { status: 'degraded' }]);
      expect(JSON.parse((await get(address, '/healthz', 'GET', { Authorization: 'Bearer sekrit-token' })).body).reasons).toEqual(['peer dr-site unreachable']);
    });

    it('signing in with the token gives an HttpOnly, SameSite=Strict session; a wrong token none; signing out ends it', async () => {
      const address = await serve(STATUS, 'sekrit-token');
      const wrong = await post(address, '/login', { 'Content-Type': 'application/json' }, JSON.stringify({ token: 'guess' }));
      expect([wrong.status, wrong.headers['set-cookie']]).toEqual([401, undefined]);
      expect((await get(address, '/login')).status).toBe(405);
      expect((await get(address, '/login', 'POST', {}, JSON.stringify({ token: 'sekrit-token' }))).status).toBe(403);
      const ok = await post(address, '/login', { 'Content-Type': 'application/json' }, JSON.stringify({ token: 'sekrit-token' }));
      expect(ok.status).toBe(200);
      const cookie = ok.headers['set-cookie']![0]!;
      expect(cookie).toMatch(/^lifeboat_session=[\w-]{43}; HttpOnly; SameSite=Strict; Path=\/; Max-Age=43200$/);
      const session = { Cookie: cookie.split(';')[0]! };
      expect((await get(address, '/status', 'GET', session)).status).toBe(200);
      expect((await get(address, '/status', 'GET', { Cookie: 'lifeboat_session=forged' })).status).toBe(401);
      expect((await post(address, '/logout', session)).status).toBe(200);
      expect((await get(address, '/status', 'GET', session)).status).toBe(401);
    });
  });

  it('GET /history checks its hours; POST /drill and GET /plan pass the source on', async () => {
    const asked: unknown[] = [];
    const address = await serve({
      ...QUIET,
      history: (hours) => ({ hours }),
      drill: async (source) => (asked.push(['drill', source]), []),
      plan: async (source) => (asked.push(['plan', source]), { host: source }),
    });
    expect(JSON.parse((await get(address, '/history?hours=6')).body)).toEqual({ hours: 6 });
    expect((await get(address, '/history?hours=-1')).status).toBe(400);
    expect((await get(address, '/history?hours=x')).status).toBe(400);
    expect((await post(address, '/drill?source=a')).status).toBe(200);
    expect((await get(address, '/plan')).status).toBe(400);
    expect(JSON.parse((await get(address, '/plan?source=b')).body)).toEqual({ host: 'b' });
    expect(asked).toEqual([['drill', 'a'], ['plan', 'b']]);
  });

  it('a port in use: ListenError naming the key and the address, exit code 2', async () => {
    const address = await serve(QUIET);
    const err = await listen(address, () => {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ListenError);
    expect((err as ListenError).exitCode).toBe(2);
    expect((err as ListenError).code).toBe('LB_ERR_LISTEN');
    expect((err as ListenError).message).toBe(`agent.listen: cannot listen on ${address}: the address is in use (is another agent running?)`);
  });

  it('parseListen takes host:port and [v6]:port', () => {
    expect(parseListen('127.0.0.1:9317')).toEqual({ host: '127.0.0.1', port: 9317 });
    expect(parseListen('[::1]:80')).toEqual({ host: '::1', port: 80 });
    expect(parseListen('localhost:1')).toEqual({ host: 'localhost', port: 1 });
    expect(() => parseListen('nonsense')).toThrow(ListenError);
  });
});
