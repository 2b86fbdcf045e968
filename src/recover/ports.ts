import dgram from 'node:dgram';
import net from 'node:net';
import type { PortBinding } from '../docker/engine.ts';

/** A published host port, as the engine would bind it. */
export interface HostPort {
  readonly ip: string;
  readonly port: number;
  readonly protocol: 'tcp' | 'udp' | 'sctp';
}

/** The host port a binding publishes; undefined when the engine picks one (no host port, 0, or a range). */
export function hostPortOf(b: PortBinding): HostPort | undefined {
  if (!/^\d+$/.test(b.hostPort)) return undefined;
  const port = Number(b.hostPort);
  if (port < 1 || port > 65535) return undefined;
  const protocol = (b.containerPort.split('/')[1] ?? 'tcp') as HostPort['protocol'];
  return { ip: b.hostIp, port, protocol };
}

export const formatHostPort = (p: HostPort): string => `${p.ip.includes(':') ? `[${p.ip}]` : p.ip || '0.0.0.0'}:${p.port}/${p.protocol}`;

/** Whether two bindings would compete for the same socket (an empty or unspecified address takes every address). */
export function overlaps(a: HostPort, b: HostPort): boolean {
  const any = (ip: string) => ip === '' || ip === '0.0.0.0' || ip === '::';
  return a.port === b.port && a.protocol === b.protocol && (any(a.ip) || any(b.ip) || a.ip === b.ip);
}

/**
 * Binds the port for a moment, as the engine's proxy would; undefined when it
 * is free, else why not (in use, or an address this host does not have).
 * sctp is not probed.
 */
export async function portProblem(p: HostPort): Promise<string | undefined> {
  if (p.protocol === 'sctp') return undefined;
  const host = p.ip || '0.0.0.0';
  const error = await (p.protocol === 'tcp' ? bindTcp(host, p.port) : bindUdp(host, p.port));
  if (!error) return undefined;
  if (error.code === 'EADDRINUSE') return `host port ${formatHostPort(p)} is in use on this host`;
  if (error.code === 'EADDRNOTAVAIL') return `host address ${host} of port ${formatHostPort(p)} is not an address of this host`;
  return `host port ${formatHostPort(p)} cannot be bound: ${error.code ?? error.message}`;
}

function bindTcp(host: string, port: number): Promise<NodeJS.ErrnoException | undefined> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', (err: NodeJS.ErrnoException) => resolve(err));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(undefined)));
  });
}

function bindUdp(host: string, port: number): Promise<NodeJS.ErrnoException | undefined> {
  return new Promise((resolve) => {
    const socket = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
    socket.once('error', (err: NodeJS.ErrnoException) => {
      socket.close();
      resolve(err);
    });
    socket.bind({ address: host, port, exclusive: true }, () => socket.close(() => resolve(undefined)));
  });
}
