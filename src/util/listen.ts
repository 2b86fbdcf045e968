import type net from 'node:net';
import type { AddressInfo } from 'node:net';
import { ListenError } from '../errors/errors.ts';

/** "host:port" or "[v6]:port" into its parts; the config schema has checked the form. */
export function parseListen(address: string, key = 'agent.listen'): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(address);
  if (!m) throw new ListenError(`${key}: ${JSON.stringify(address)} is not "host:port"`);
  return { host: m[1] ?? m[2]!, port: Number(m[3]) };
}

/**
 * Binds a server (the HTTP endpoint, the peer listener); a failure to bind
 * names the address and the config key (ListenError, exit 2).
 */
export function listenOn<S extends net.Server>(server: S, address: string, key: string): Promise<S> {
  const { host, port } = parseListen(address, key);
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
      reject(new ListenError(`${key}: cannot listen on ${address}: ${why}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen({ host, port }, () => {
      server.off('error', onError);
      resolve(server);
    });
  });
}

/** Where a server listens, as "host:port" (the port the system chose when the config said 0). */
export function boundAddress(server: net.Server): string {
  const a = server.address() as AddressInfo;
  return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}
