import type http from 'node:http';
import { describeFailure } from '../errors/errors.ts';
import type { Logger } from '../log/logger.ts';
import { listenOn } from '../util/listen.ts';
import type { Access } from '../console/access.ts';
import { CONSOLE_HEADERS, consoleAsset } from '../console/assets.ts';


export interface Health {
  readonly ok: boolean;
  readonly reasons: readonly string[];
}

/** What the endpoint serves; each is asked afresh per request. */
export interface Endpoints {
  metrics(): Promise<{ readonly contentType: string; readonly body: string }>;
  health(): Health;
  status(): unknown;
  /** GET /history?hours=N: each tracked volume's snapshots of the last N hours (and the one before), for the console's charts. */
  history?(hours: number): unknown;
  /** GET /plan?source=NAME: the dry run of recovering a source whose replica is held here. */
  plan?(source: string): Promise<unknown>;
  /** POST /drill[?source=NAME]: a DR drill of the replicas held here now, answered when it has ended. */
  drill?(source: string | undefined): Promise<unknown>;
  /** POST /replicate[?peer=NAME]: a push now, answered when it has ended. */
  replicate?(peer: string | undefined): Promise<unknown>;
  /** POST /backup?volume=NAME: a backup of a tracked volume now (after one under way), answered when it has ended. */
  backup?(volume: string): Promise<unknown>;
  /** POST /restore?volume=NAME&snapshot=ID[&force=1][&include=P...][&exclude=P...]: a restore into a tracked volume, never beside its backups. */
  restore?(volume: string, snapshot: string, opts: { force: boolean; include: readonly string[]; exclude: readonly string[] }): Promise<unknown>;
}

/**
 * node:http without its ESM namespace: `import http from 'node:http'` makes
 * the namespace read the module's lazy getters (WebSocket, CloseEvent,
 * MessageEvent), which load undici: 12-14 MB of RSS the agent never uses.
 */
export const nodeHttp = (): typeof http => process.getBuiltinModule('node:http');

const POSTS = new Set(['/replicate', '/backup', '/restore', '/drill', '/login', '/logout']);
const ENDPOINTS = 'try / (the console), /metrics, /healthz, /status, /history, /plan, POST /backup, /restore, /replicate or /drill';
/** A wrong token is answered this late: guessing costs time. */
const SIGN_IN_FAILURE_MS = 500;
const MAX_BODY = 4096;

/**
 * The node:http request handler: the console (/, its script and style), the
 * reads (/metrics, /healthz, /status, /history, /plan) and the actions
 * (POST /backup, /restore, /replicate, /drill), each past `access` (see
 * src/console/access.ts).
 */
export function handler(endpoints: Endpoints, log: Logger, access: Access): http.RequestListener {
  return (req, res) => {
    const url = new URL(req.url ?? '/', 'http://agent');
    const send = (status: number, type: string, body: string | Buffer, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store', ...headers });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    const json = (status: number, value: unknown, headers?: Record<string, string>) => send(status, 'application/json; charset=utf-8', `${JSON.stringify(value)}\n`, headers);
    const refused = access.screen(req);
    if (refused) {
      json(refused.status, { error: refused.error, code: 'LB_ERR_FORBIDDEN' });
      return;
    }
    const post = POSTS.has(url.pathname);
    if (post ? req.method !== 'POST' : req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', post ? 'POST' : 'GET, HEAD');
      json(405, { error: `method ${req.method ?? '?'} not allowed` });
      return;
    }
    const asset = consoleAsset(url.pathname);
    if (asset) {
      send(200, asset.type, asset.body, CONSOLE_HEADERS);
      return;
    }
    /** An action's answer: its result, or its failure with the code (400 for what the caller got wrong). */
    const act = async (work: () => Promise<unknown>) => {
      try {
        json(200, await work());
      } catch (err) {
        const f = describeFailure(err);
        json(f.exitCode === 2 ? 400 : 500, { error: f.message, code: f.code });
      }
    };
    const missing = (name: string, what: string) => json(404, { error: `this agent ${what}`, path: name });
    const serve = async () => {
      const q = url.searchParams;
      switch (url.pathname) {
        case '/login': {
          const presented = (await readJson(req)).token;
          const cookie = typeof presented === 'string' ? access.signIn(presented) : undefined;
          if (cookie || !access.protected) {
            json(200, { signed_in: true }, cookie ? { 'Set-Cookie': cookie } : {});
            return;
          }
          await new Promise((r) => setTimeout(r, SIGN_IN_FAILURE_MS));
          json(401, { error: 'wrong token', code: 'LB_ERR_UNAUTHORIZED' });
          return;
        }
        case '/logout':
          json(200, { signed_in: false }, { 'Set-Cookie': access.signOut(req) });
          return;
        case '/healthz': {
          const h = endpoints.health();
          // what is wrong (volume and peer names, errors) is for those who may know it
          const reasons = access.authenticated(req) ? { reasons: h.reasons } : {};
          json(h.ok ? 200 : 503, h.ok ? { status: 'ok' } : { status: 'degraded', ...reasons });
          return;
        }
      }
      if (!access.authenticated(req)) {
        json(401, { error: 'this agent asks for its token: Authorization: Bearer TOKEN (the first line of [agent] token_file), or sign in at /', code: 'LB_ERR_UNAUTHORIZED' }, { 'WWW-Authenticate': 'Bearer realm="lifeboat"' });
        return;
      }
      switch (url.pathname) {
        case '/backup': {
          const volume = q.get('volume');
          if (!endpoints.backup) return missing('/backup', 'backs nothing up on request');
          if (!volume) return json(400, { error: 'POST /backup needs ?volume=NAME' });
          return act(() => endpoints.backup!(volume));
        }
        case '/restore': {
          const volume = q.get('volume');
          const snapshot = q.get('snapshot');
          if (!endpoints.restore) return missing('/restore', 'restores nothing on request');
          if (!volume || !snapshot) return json(400, { error: 'POST /restore needs ?volume=NAME&snapshot=ID' });
          return act(() => endpoints.restore!(volume, snapshot, { force: q.get('force') === '1', include: q.getAll('include'), exclude: q.getAll('exclude') }));
        }
        case '/replicate':
          if (!endpoints.replicate) return missing('/replicate', 'has no [[peer]] to replicate to');
          return act(() => endpoints.replicate!(q.get('peer') ?? undefined));
        case '/drill':
          if (!endpoints.drill) return missing('/drill', 'drills nothing on request');
          return act(() => endpoints.drill!(q.get('source') ?? undefined));
        case '/plan': {
          const source = q.get('source');
          if (!endpoints.plan) return missing('/plan', 'holds no replica to plan a recovery from');
          if (!source) return json(400, { error: 'GET /plan needs ?source=NAME' });
          return act(() => endpoints.plan!(source));
        }
        case '/history': {
          const hours = Number(q.get('hours') ?? '24');
          if (!endpoints.history) return missing('/history', 'keeps no history');
          if (!Number.isFinite(hours) || hours <= 0 || hours > 24 * 366) return json(400, { error: 'GET /history takes ?hours=N, 0 < N <= 8784' });
          return json(200, endpoints.history(hours));
        }
        case '/metrics': {
          const m = await endpoints.metrics();
          return send(200, m.contentType, m.body);
        }
        case '/status':
          return json(200, endpoints.status());
        default:
          return json(404, { error: `no such endpoint ${url.pathname}; ${ENDPOINTS}` });
      }
    };
    serve().catch((err: unknown) => {
      log.error({ err, path: url.pathname }, 'HTTP endpoint failed');
      if (!res.headersSent) json(500, { error: err instanceof Error ? err.message : String(err) });
      else res.destroy();
    });
  };
}

/** A small JSON body (sign-in); anything else, or more than 4 KiB, is an empty object. */
async function readJson(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_BODY) return {};
    chunks.push(c);
  }
  try {
    const v: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    return v !== null && typeof v === 'object' ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/**
 * Binds the endpoint; a failure to bind names the address and the config key
 * (ListenError, exit 2). Resolves with the server once it listens.
 */
export function listen(address: string, onRequest: http.RequestListener): Promise<http.Server> {
  const server = nodeHttp().createServer(onRequest);
  // the endpoint answers small requests; a client that sends nothing must not hold a socket for long
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.keepAliveTimeout = 5_000;
  return listenOn(server, address, 'agent.listen');
}

/** Stops listening and closes every connection, idle or not, so shutdown does not wait for a scraper. */
export function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
