import tls from 'node:tls';
import type { Logger } from 'pino';
import { PeerClosedError, PeerIdentityError, PeerTimeoutError, PeerUnreachableError } from '../errors/errors.ts';
import { encodeFrame, type Frame, FrameDecoder, MAX_FRAME } from './frames.ts';
import { listenOn } from '../util/listen.ts';
import { certificateId, type Identity } from './identity.ts';

/**
 * Agents talk over TLS 1.3 with both sides presenting their certificate, and
 * each side checks the other's id (the certificate's SHA-256) against its
 * configuration before a single frame moves: no CA, as Syncthing's devices.
 * Certificate chains are not checked at all (self-signed by design); the pin
 * is the check.
 */
const TLS = { minVersion: 'TLSv1.3', rejectUnauthorized: false } as const;

/** Frames held back before the socket is paused: the reader, not the peer, sets the pace. */
const QUEUE_HIGH = 32 * 1024 * 1024;

/**
 * One authenticated connection to a peer: frames out with the socket's
 * backpressure, frames in through receive(), in order. Received frames are
 * queued only up to QUEUE_HIGH bytes; past that the socket is paused until
 * the reader catches up, so a fast peer cannot fill our memory.
 */
export class PeerConnection {
  readonly peerId: string;
  readonly #socket: tls.TLSSocket;
  readonly #decoder: FrameDecoder;
  readonly #queue: Frame[] = [];
  #queued = 0;
  #waiter: { resolve: (f: Frame) => void; reject: (e: Error) => void } | undefined;
  #ended: Error | undefined;
  /** Bytes written to and read from the socket, frame headers included. */
  bytesSent = 0;
  bytesReceived = 0;

  constructor(socket: tls.TLSSocket, peerId: string, opts: { maxFrame?: number; idleTimeoutMs?: number } = {}) {
    this.peerId = peerId;
    this.#socket = socket;
    this.#decoder = new FrameDecoder(opts.maxFrame ?? MAX_FRAME);
    socket.on('data', (chunk: Buffer) => {
      this.bytesReceived += chunk.length;
      let frames: Frame[];
      try {
        frames = this.#decoder.push(chunk);
      } catch (err) {
        this.#end(err as Error);
        socket.destroy();
        return;
      }
      for (const f of frames) this.#deliver(f);
    });
    socket.on('error', (err) => this.#end(err));
    socket.on('close', () => this.#end(new PeerClosedError('the peer closed the connection')));
    if (opts.idleTimeoutMs) {
      socket.setTimeout(opts.idleTimeoutMs, () => {
        this.#end(new PeerTimeoutError(`nothing moved on the connection to the peer for ${opts.idleTimeoutMs! / 1000} s`));
        socket.destroy();
      });
    }
  }

  #deliver(f: Frame): void {
    if (this.#waiter) {
      const w = this.#waiter;
      this.#waiter = undefined;
      w.resolve(f);
      return;
    }
    this.#queue.push(f);
    this.#queued += f.payload.length;
    if (this.#queued > QUEUE_HIGH) this.#socket.pause();
  }

  #end(err: Error): void {
    this.#ended ??= err;
    if (this.#waiter) {
      const w = this.#waiter;
      this.#waiter = undefined;
      w.reject(this.#ended);
    }
  }

  /** The next frame; rejects once the connection has ended and nothing is left. */
  receive(): Promise<Frame> {
    const f = this.#queue.shift();
    if (f) {
      this.#queued -= f.payload.length;
      if (this.#queued <= QUEUE_HIGH / 2 && this.#socket.isPaused()) this.#socket.resume();
      return Promise.resolve(f);
    }
    if (this.#ended) return Promise.reject(this.#ended);
    return new Promise((resolve, reject) => (this.#waiter = { resolve, reject }));
  }

  /** A frame of this type among those received and not read yet (a refusal that came while we were sending). */
  peek(type: number): Frame | undefined {
    return this.#queue.find((f) => f.type === type);
  }

  /** Sends a frame of the payload `parts` back to back; resolves at once while the socket takes more, else when it drains. */
  send(type: number, ...parts: readonly Uint8Array[]): Promise<void> {
    if (this.#ended) return Promise.reject(this.#ended);
    const frame = encodeFrame(type, ...parts);
    this.bytesSent += frame.length;
    if (this.#socket.write(frame)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = (err?: Error) => {
        this.#socket.off('drain', onDrain);
        this.#socket.off('close', onClose);
        if (err) reject(err);
        else resolve();
      };
      const onDrain = () => done();
      const onClose = () => done(this.#ended ?? new PeerClosedError('the peer closed the connection'));
      this.#socket.on('drain', onDrain);
      this.#socket.on('close', onClose);
    });
  }

  /** Ends the connection after what was sent is flushed. */
  close(): void {
    this.#socket.end();
  }

  destroy(): void {
    this.#socket.destroy();
  }
}

export interface PeerServerOptions {
  readonly identity: Identity;
  /** "host:port", as [replication] listen says. */
  readonly listen: string;
  /** Ids allowed in, to their configured names. */
  readonly peers: ReadonlyMap<string, string>;
  readonly onPeer: (conn: PeerConnection, name: string) => void;
  readonly log: Logger;
  readonly maxFrame?: number;
  readonly idleTimeoutMs?: number;
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
    opts.onPeer(new PeerConnection(socket, id!, opts), name);
  });
  // A failed handshake (no TLS, old TLS) is the client's problem; log it and go on.
  server.on('tlsClientError', (err, socket) => {
    opts.log.warn({ remote: socket.remoteAddress, err: err.message }, 'a peer connection failed its TLS handshake');
  });
  return listenOn(server, opts.listen, 'replication.listen');
}

export interface ConnectOptions {
  readonly identity: Identity;
  readonly host: string;
  readonly port: number;
  /** The id the peer must present. */
  readonly expectedId: string;
  readonly timeoutMs?: number;
  readonly maxFrame?: number;
  readonly idleTimeoutMs?: number;
}

/** Connects to a peer; resolves only once the peer has proved the expected id. */
export function connectToPeer(opts: ConnectOptions): Promise<PeerConnection> {
  const where = `${opts.host}:${opts.port}`;
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ ...TLS, host: opts.host, port: opts.port, cert: opts.identity.certPem, key: opts.identity.keyPem });
    const timer = setTimeout(() => fail(new PeerUnreachableError(`peer ${where} did not complete the handshake within ${(opts.timeoutMs ?? 10_000) / 1000} s`)), opts.timeoutMs ?? 10_000);
    const fail = (err: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    const onError = (err: NodeJS.ErrnoException) => fail(err.code ? new PeerUnreachableError(`cannot reach peer ${where}: ${err.code}`, { cause: err }) : err);
    // The server drops an unknown client during the handshake: that is a refusal, not a connection.
    const onClose = () => fail(new PeerIdentityError(`peer ${where} closed the connection during the handshake (it does not know this agent's id?)`));
    socket.once('error', onError);
    socket.once('close', onClose);
    socket.once('secureConnect', () => {
      const cert = socket.getPeerX509Certificate();
      const id = cert ? certificateId(cert.raw) : null;
      if (id !== opts.expectedId) {
        fail(new PeerIdentityError(`peer ${where} presented id ${id ?? '(none)'}, not the configured ${opts.expectedId}`));
        return;
      }
      clearTimeout(timer);
      socket.off('error', onError);
      socket.off('close', onClose);
      resolve(new PeerConnection(socket, id, opts));
    });
  });
}
