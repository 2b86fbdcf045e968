import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { LifeboatError } from '../errors/errors.ts';
import type { Logger } from '../log/logger.ts';

/** [agent].listen could not be bound (in use, not permitted, no such address): a configuration problem. */
export class ListenError extends LifeboatError {
  readonly code = 'LB_ERR_LISTEN';
  override readonly exitCode = 2;
}

export interface Health {
  readonly ok: boolean;
  readonly reasons: readonly string[];
}

/** What the endpoint serves; each is asked afresh per request. */
export interface Endpoints {
  metrics(): Promise<{ readonly contentType: string; readonly body: string }>;
  health(): Health;
  status(): unknown;
}

/**
 * node:http without its ESM namespace: `import http from 'node:http'` makes
 * the namespace read the module's lazy getters (WebSocket, CloseEvent,
 * MessageEvent), which load undici: 12-14 MB of RSS the agent never uses.
 */
export const nodeHttp = (): typeof http => process.getBuiltinModule('node:http');

/** "host:port" or "[v6]:port" into its parts; the schema has checked the form. */
export function parseListen(address: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(address);
  if (!m) throw new ListenError(`agent.listen: ${JSON.stringify(address)} is not "host:port"`);
  return { host: m[1] ?? m[2]!, port: Number(m[3]) };
}

/** The node:http request handler: GET /metrics, /healthz, /status; nothing else. */
export function handler(endpoints: Endpoints, log: Logger): http.RequestListener {
  return (req, res) => {
    const url = new URL(req.url ?? '/', 'http://agent');
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    const json = (status: number, value: unknown) => send(status, 'application/json; charset=utf-8', `${JSON.stringify(value)}\n`);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      json(405, { error: `method ${req.method ?? '?'} not allowed` });
      return;
    }
    const serve = async () => {
      switch (url.pathname) {
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
          json(404, { error: `no such endpoint ${url.pathname}; try /metrics, /healthz or /status` });
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
  const { host, port } = parseListen(address);
  const server = nodeHttp().createServer(onRequest);
  // the endpoint answers small requests; a client that sends nothing must not hold a socket for long
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.keepAliveTimeout = 5_000;
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      const why =
        err.code === 'EADDRINUSE'
          ? 'the address is in use (is another agent running?)'
          : err.code === 'EACCES'
            ? 'permission denied (ports below 1024 need privileges)'
            : err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND'
              ? 'no such local address'
              : err.message;
      reject(new ListenError(`agent.listen: cannot listen on ${address}: ${why}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen({ host, port }, () => {
      server.off('error', onError);
      resolve(server);
    });
  });
}

/** Where the server listens, as "host:port" (the port the system chose when the config said 0). */
export function boundAddress(server: http.Server): string {
  const a = server.address() as AddressInfo;
  return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

/** Stops listening and closes every connection, idle or not, so shutdown does not wait for a scraper. */
export function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
