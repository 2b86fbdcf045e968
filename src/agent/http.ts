import type http from 'node:http';
import { describeFailure } from '../errors/errors.ts';
import type { Logger } from '../log/logger.ts';
import { listenOn } from '../util/listen.ts';


export interface Health {
  readonly ok: boolean;
  readonly reasons: readonly string[];
}

/** What the endpoint serves; each is asked afresh per request. */
export interface Endpoints {
  metrics(): Promise<{ readonly contentType: string; readonly body: string }>;
  health(): Health;
  status(): unknown;
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

/** The node:http request handler: GET /metrics, /healthz, /status; nothing else. */
export function handler(endpoints: Endpoints, log: Logger): http.RequestListener {
  return (req, res) => {
    const url = new URL(req.url ?? '/', 'http://agent');
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    const json = (status: number, value: unknown) => send(status, 'application/json; charset=utf-8', `${JSON.stringify(value)}\n`);
    const action = url.pathname === '/replicate' || url.pathname === '/backup' || url.pathname === '/restore';
    if (action ? req.method !== 'POST' : req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', action ? 'POST' : 'GET, HEAD');
      json(405, { error: `method ${req.method ?? '?'} not allowed` });
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
    const serve = async () => {
      switch (url.pathname) {
        case '/backup': {
          const volume = url.searchParams.get('volume');
          if (!endpoints.backup || !volume) {
            json(endpoints.backup ? 400 : 404, { error: endpoints.backup ? 'POST /backup needs ?volume=NAME' : 'this agent backs nothing up on request' });
            return;
          }
          await act(() => endpoints.backup!(volume));
          return;
        }
        case '/restore': {
          const volume = url.searchParams.get('volume');
          const snapshot = url.searchParams.get('snapshot');
          if (!endpoints.restore || !volume || !snapshot) {
            json(endpoints.restore ? 400 : 404, { error: endpoints.restore ? 'POST /restore needs ?volume=NAME&snapshot=ID' : 'this agent restores nothing on request' });
            return;
          }
          const q = url.searchParams;
          await act(() => endpoints.restore!(volume, snapshot, { force: q.get('force') === '1', include: q.getAll('include'), exclude: q.getAll('exclude') }));
          return;
        }
        case '/replicate': {
          if (!endpoints.replicate) {
            json(404, { error: 'this agent has no [[peer]] to replicate to' });
            return;
          }
          await act(() => endpoints.replicate!(url.searchParams.get('peer') ?? undefined));
          return;
        }
        case '/metrics': {
          const m = await endpoints.metrics();
          send(200, m.contentType, m.body);
          return;
        }
        case '/healthz': {
          const h = endpoints.health();
          json(h.ok ? 200 : 503, h.ok ? { status: 'ok' } : { status: 'degraded', reasons: h.reasons });
          return;
        }
        case '/status':
          json(200, endpoints.status());
          return;
        default:
          json(404, { error: `no such endpoint ${url.pathname}; try /metrics, /healthz, /status, POST /backup, POST /restore or POST /replicate` });
      }
    };
    serve().catch((err: unknown) => {
      log.error({ err, path: url.pathname }, 'HTTP endpoint failed');
      if (!res.headersSent) json(500, { error: err instanceof Error ? err.message : String(err) });
      else res.destroy();
    });
  };
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
