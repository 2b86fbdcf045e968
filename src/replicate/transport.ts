import { EventEmitter } from 'node:events';
import tls from 'node:tls';
import type { Logger } from 'pino';
import { PeerIdentityError } from '../errors/errors.ts';
import { encodeFrame, type Frame, FrameDecoder, MAX_FRAME } from './frames.ts';
import { certificateId, type Identity } from './identity.ts';

/**
 * Agents talk over TLS 1.3 with both sides presenting their certificate, and
 * each side checks the other's id (the certificate's SHA-256) against its
 * configuration before a single frame moves: no CA, as Syncthing's devices.
 * Certificate chains are not checked at all (self-signed by design); the pin
 * is the check.
 */
const TLS = { minVersion: 'TLSv1.3', rejectUnauthorized: false } as const;

/** One authenticated connection to a peer: frames out, frames in. */
export class PeerConnection extends EventEmitter {
  readonly peerId: string;
  readonly #socket: tls.TLSSocket;
  readonly #decoder: FrameDecoder;

  constructor(socket: tls.TLSSocket, peerId: string, maxFrame = MAX_FRAME) {
    super();
    this.peerId = peerId;
    this.#socket = socket;
    this.#decoder = new FrameDecoder(maxFrame);
    socket.on('data', (chunk: Buffer) => {
      let frames: Frame[];
      try {
        frames = this.#decoder.push(chunk);
      } catch (err) {
        this.emit('error', err);
        socket.destroy();
        return;
      }
      for (const f of frames) this.emit('frame', f);
    });
    socket.on('error', (err) => this.emit('error', err));
    socket.on('close', () => this.emit('close'));
  }

  /** Sends a frame; resolves when the socket has taken it (backpressure for bulk transfers). */
  send(type: number, payload: Uint8Array = new Uint8Array(0)): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#socket.write(encodeFrame(type, payload), (err) => (err ? reject(err) : resolve()));
    });
  }

  close(): void {
    this.#socket.end();
  }

  destroy(): void {
    this.#socket.destroy();
  }
}

export interface PeerServerOptions {
  readonly identity: Identity;
  readonly host: string;
  readonly port: number;
  /** Ids allowed in, to their configured names. */
  readonly peers: ReadonlyMap<string, string>;
  readonly onPeer: (conn: PeerConnection, name: string) => void;
  readonly log: Logger;
  readonly maxFrame?: number;
}

/** Accepts connections from configured peers only; anyone else is dropped at the handshake and logged. */
export async function listenForPeers(opts: PeerServerOptions): Promise<tls.Server> {
  const server = tls.createServer({ ...TLS, cert: opts.identity.certPem, key: opts.identity.keyPem, requestCert: true });
  server.on('secureConnection', (socket) => {
    const cert = socket.getPeerX509Certificate();
    const id = cert ? certificateId(cert.raw) : null;
    const name = id === null ? undefined : opts.peers.get(id);
    if (name === undefined) {
      opts.log.warn({ remote: socket.remoteAddress, id }, id === null ? 'refused a connection without a certificate' : 'refused a peer whose id is not configured');
      socket.destroy();
      return;
    }
    opts.onPeer(new PeerConnection(socket, id!, opts.maxFrame), name);
  });
  // A failed handshake (no TLS, old TLS) is the client's problem; log it and go on.
  server.on('tlsClientError', (err, socket) => {
    opts.log.warn({ remote: socket.remoteAddress, err: err.message }, 'a peer connection failed its TLS handshake');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}

export interface ConnectOptions {
  readonly identity: Identity;
  readonly host: string;
  readonly port: number;
  /** The id the peer must present. */
  readonly expectedId: string;
  readonly timeoutMs?: number;
  readonly maxFrame?: number;
}

/** Connects to a peer; resolves only once the peer has proved the expected id. */
export function connectToPeer(opts: ConnectOptions): Promise<PeerConnection> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ ...TLS, host: opts.host, port: opts.port, cert: opts.identity.certPem, key: opts.identity.keyPem });
    const timer = setTimeout(() => fail(new PeerIdentityError(`peer ${opts.host}:${opts.port} did not complete the handshake in time`)), opts.timeoutMs ?? 10_000);
    const fail = (err: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    socket.once('error', fail);
    socket.once('secureConnect', () => {
      const cert = socket.getPeerX509Certificate();
      const id = cert ? certificateId(cert.raw) : null;
      if (id !== opts.expectedId) {
        fail(new PeerIdentityError(`peer ${opts.host}:${opts.port} presented id ${id ?? '(none)'}, not the configured ${opts.expectedId}`));
        return;
      }
      clearTimeout(timer);
      socket.off('error', fail);
      resolve(new PeerConnection(socket, id, opts.maxFrame));
    });
    // The server drops an unknown client right after the handshake: that is a refusal, not a connection.
    socket.once('close', () => fail(new PeerIdentityError(`peer ${opts.host}:${opts.port} closed the connection (it does not know this agent's id?)`)));
  });
}
