import type net from 'node:net';
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
  /** How long an authenticated connection may stay silent (its hello included); default DEFAULT_IDLE_TIMEOUT_MS. */
  readonly idleTimeoutMs?: number;
  /** How long a connection has to complete the TLS handshake and prove a configured id; default DEFAULT_HANDSHAKE_TIMEOUT_MS. */
  readonly handshakeTimeoutMs?: number;
  /** Connections not yet authenticated held at once; past it, new ones are closed at once. Default DEFAULT_MAX_UNAUTHENTICATED. */
  readonly maxUnauthenticated?: number;
  /** The window of the rate limit on the log lines about refused and failed connections (tests); default 60 s. */
  readonly logWindowMs?: number;
}

/** A TLS 1.3 handshake is one round trip: ten seconds is generous even on a poor link, and short for a connection that says nothing. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
/** Peers are a handful of agents: 64 handshakes at once is far more than they make, and bounds what strangers can hold. */
export const DEFAULT_MAX_UNAUTHENTICATED = 64;
/** [replication] timeout's default, for a server given none. */
export const DEFAULT_IDLE_TIMEOUT_MS = 60_000;
/** Lines of one kind logged per window; the rest are counted and told in one line at the window's end. */
const LOG_BURST = 5;

/**
 * Accepts connections from configured peers only; anyone else is dropped at
 * the handshake and logged. A connection that has not completed the TLS
 * handshake and proved a configured id within the handshake timeout is
 * closed, as is every connection that arrives while the cap of such
 * connections is reached (it never reaches TLS). Once authenticated, the
 * idle timeout applies: a peer that sends nothing, its hello included, is
 * dropped. Refusals and failed handshakes are logged with the remote
 * address, a few lines per minute and then a count, so a flood of
 * connections does not flood the log.
 */
export async function listenForPeers(opts: PeerServerOptions): Promise<tls.Server> {
  const handshakeTimeout = opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  const cap = opts.maxUnauthenticated ?? DEFAULT_MAX_UNAUTHENTICATED;
  const conn = { ...opts, idleTimeoutMs: opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS };
  const server = tls.createServer({ ...TLS, cert: opts.identity.certPem, key: opts.identity.keyPem, requestCert: true, handshakeTimeout });
  const window = opts.logWindowMs ?? 60_000;
  const logged = {
    refused: new ThrottledLog(opts.log, window, (n, remotes) => [
      { count: n, remotes, cap },
      `refused ${n} more connections over the cap of ${cap} not yet authenticated in the last ${window / 1000} s`,
    ]),
    handshake: new ThrottledLog(opts.log, window, (n, remotes) => [
      { count: n, remotes },
      `${n} more peer connections failed their TLS handshake or timed out in the last ${window / 1000} s`,
    ]),
    stranger: new ThrottledLog(opts.log, window, (n, remotes) => [{ count: n, remotes }, `refused ${n} more agents whose id is not configured in the last ${window / 1000} s`]),
  };
  server.on('close', () => {
    for (const l of Object.values(logged)) l.flush();
  });

  // Connections open and not yet authenticated: every one the TCP listener took, less those that proved a configured id.
  let open = 0;
  let authenticated = 0;
  // The TLS server's own listener starts the handshake; it runs only for connections under the cap, so the rest cost nothing.
  const handshake = server.listeners('connection') as ((socket: net.Socket) => void)[];
  if (handshake.length === 0) throw new Error('tls.Server has no connection listener to start handshakes with');
  server.removeAllListeners('connection');
  server.on('connection', (socket: net.Socket) => {
    if (open - authenticated >= cap) {
      logged.refused.note({ remote: remoteOf(socket), cap }, `refused a connection: ${cap} connections are already waiting to authenticate`);
      socket.destroy();
      return;
    }
    open++;
    socket.once('close', () => open--);
    for (const start of handshake) start.call(server, socket);
  });

  server.on('secureConnection', (socket) => {
    const cert = socket.getPeerX509Certificate();
    const id = cert ? certificateId(cert.raw) : null;
    const name = id === null ? undefined : opts.peers.get(id);
    if (name === undefined) {
      logged.stranger.note({ remote: remoteOf(socket), id }, id === null ? 'refused a connection without a certificate' : 'refused a peer whose id is not configured');
      socket.destroy();
      return;
    }
    authenticated++;
    socket.once('close', () => authenticated--);
    opts.onPeer(new PeerConnection(socket, id!, conn), name);
  });
  // A failed handshake (no TLS, old TLS, silence past the timeout) is the client's problem: log it, close it, go on.
  // (With a listener here, Node leaves the socket open: without the destroy, a silent connection stays forever.)
  server.on('tlsClientError', (err, socket) => {
    logged.handshake.note({ remote: remoteOf(socket), err: err.message }, 'a peer connection failed its TLS handshake');
    socket.destroy();
  });
  return listenOn(server, opts.listen, 'replication.listen');
}

function remoteOf(socket: net.Socket): string {
  const a = socket.remoteAddress;
  if (a === undefined) return 'unknown';
  return `${a.includes(':') ? `[${a}]` : a}:${socket.remotePort}`;
}

/**
 * Warnings of one kind, at most LOG_BURST per window; beyond that they are
 * counted, and one line at the window's end says how many and from where.
 */
class ThrottledLog {
  readonly #log: Logger;
  readonly #windowMs: number;
  readonly #summary: (count: number, remotes: string[]) => [object, string];
  #windowStart = -Infinity;
  #lines = 0;
  #suppressed = 0;
  readonly #remotes = new Set<string>();
  #timer: NodeJS.Timeout | undefined;

  constructor(log: Logger, windowMs: number, summary: (count: number, remotes: string[]) => [object, string]) {
    this.#log = log;
    this.#windowMs = windowMs;
    this.#summary = summary;
  }

  note(fields: { remote: string } & Record<string, unknown>, msg: string): void {
    const now = performance.now();
    if (now - this.#windowStart >= this.#windowMs) {
      this.flush();
      this.#windowStart = now;
      this.#lines = 0;
    }
    if (this.#lines < LOG_BURST) {
      this.#lines++;
      this.#log.warn(fields, msg);
      return;
    }
    this.#suppressed++;
    // a few addresses are enough to tell one flooding host from many
    if (this.#remotes.size < 10) this.#remotes.add(fields.remote.replace(/:\d+$/, ''));
    this.#timer ??= setTimeout(() => this.flush(), this.#windowStart + this.#windowMs - now).unref();
  }

  /** Logs the count of what was held back, if anything. */
  flush(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#suppressed === 0) return;
    const [fields, msg] = this.#summary(this.#suppressed, [...this.#remotes]);
    this.#suppressed = 0;
    this.#remotes.clear();
    this.#log.warn(fields, msg);
  }
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
