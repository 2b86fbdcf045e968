import type { Logger } from 'pino';
import { describeFailure, PeerClosedError, ProtocolError } from '../errors/errors.ts';
import type { Snapshot } from '../repo/snapshot.ts';
import {
  decodeBlob,
  decodeCommit,
  decodeError,
  decodeHello,
  decodeIds,
  encodeAnswer,
  encodeBlob,
  encodeCommitted,
  encodeError,
  encodeFetched,
  encodeFlushed,
  encodeWelcome,
  Msg,
} from './messages.ts';
import { type ReceiveStats, ReplicaSession } from './replica.ts';
import { replicaDir } from './replica-path.ts';
import type { PeerConnection } from './transport.ts';

export interface ReceiverOptions {
  readonly stateDir: string;
  /** Pack size of the replicas this peer writes. */
  readonly packSize: number;
  readonly log: Logger;
  /** Told about every snapshot a source committed here. */
  readonly onCommitted?: (source: { id: string; name: string }, snapshot: Snapshot, stats: ReceiveStats) => void;
}

interface Active {
  readonly conn: PeerConnection;
  readonly done: Promise<void>;
}

/**
 * The peer's side of replication: one session per connected source, into
 * that source's own replica (named by the id its certificate proved, never
 * by anything it says). A new connection from a source that still has one
 * (a link cut the peer has not noticed yet) replaces it: the old session is
 * ended, its unflushed pack dropped, before the new one opens the replica.
 */
export class Receiver {
  readonly #opts: ReceiverOptions;
  readonly #active = new Map<string, Active>();

  constructor(opts: ReceiverOptions) {
    this.#opts = opts;
  }

  /** Serves a source's connection until it ends; never rejects. */
  accept(conn: PeerConnection, name: string): Promise<void> {
    const previous = this.#active.get(conn.peerId);
    const done = (async () => {
      if (previous) {
        previous.conn.destroy();
        await previous.done;
      }
      await this.#serve(conn, name);
    })();
    const entry = { conn, done };
    this.#active.set(conn.peerId, entry);
    void done.finally(() => {
      if (this.#active.get(conn.peerId) === entry) this.#active.delete(conn.peerId);
    });
    return done;
  }

  /** Resolves once no session is open (each ends when its source hangs up). */
  async settled(): Promise<void> {
    while (this.#active.size > 0) await Promise.all([...this.#active.values()].map((a) => a.done));
  }

  /** Ends every session (the agent is stopping). */
  async close(): Promise<void> {
    const all = [...this.#active.values()];
    for (const a of all) a.conn.destroy();
    await Promise.all(all.map((a) => a.done));
  }

  async #serve(conn: PeerConnection, name: string): Promise<void> {
    const log = this.#opts.log.child({ source: name, source_id: conn.peerId });
    let session: ReplicaSession | undefined;
    try {
      const first = await conn.receive();
      if (first.type !== Msg.hello) throw new ProtocolError(`the source began with message ${first.type}, not hello`);
      session = await ReplicaSession.open(replicaDir(this.#opts.stateDir, conn.peerId), decodeHello(first.payload), { packSize: this.#opts.packSize });
      await conn.send(Msg.welcome, encodeWelcome({ snapshots: session.snapshots() }));
      for (;;) {
        const f = await conn.receive();
        switch (f.type) {
          case Msg.query:
            await conn.send(Msg.answer, encodeAnswer(session.answer(decodeIds(f.payload))));
            break;
          case Msg.blob:
            await session.accept(decodeBlob(f.payload));
            break;
          case Msg.flush:
            await conn.send(Msg.flushed, encodeFlushed({ rejected: await session.flush() }));
            break;
          case Msg.commit: {
            const snapshot = decodeCommit(f.payload);
            await session.commit(snapshot);
            await conn.send(Msg.committed, encodeCommitted(snapshot.id));
            const stats = session.takeStats();
            log.info({ snapshot: snapshot.id, volume: snapshot.volume, ...stats }, `replica of ${name}: snapshot ${snapshot.id.slice(0, 8)} committed`);
            this.#opts.onCommitted?.({ id: conn.peerId, name }, snapshot, stats);
            break;
          }
          case Msg.fetch: {
            const missing: string[] = [];
            for (const r of decodeIds(f.payload)) {
              const b = await session.fetch(r);
              if (b) await conn.send(Msg.blob, ...encodeBlob(b));
              else missing.push(r.id.toString('hex'));
            }
            await conn.send(Msg.fetched, encodeFetched(missing));
            break;
          }
          case Msg.error: {
            const e = decodeError(f.payload);
            log.warn({ code: e.code }, `the source ended the push: ${e.message}`);
            return;
          }
          default:
            throw new ProtocolError(`the source sent message type ${f.type}, which a peer does not take`);
        }
      }
    } catch (err) {
      // The source hanging up between snapshots is how a push ends.
      if (err instanceof PeerClosedError) return;
      const f = describeFailure(err);
      log.warn({ code: f.code, err: f.message }, `push from ${name} failed: ${f.message}`);
      // the session's pack goes first: a full disk gets its space back before anything else
      await session?.close();
      await conn.send(Msg.error, encodeError({ code: f.code, message: f.message })).catch(() => {});
      await lingerThenClose(conn);
    } finally {
      await session?.close();
    }
  }
}

/** How long a refused source gets to read the refusal before the connection is cut. */
const LINGER_MS = 5_000;

/**
 * After an ERROR: the source may still be streaming blobs and reads the
 * refusal only between them; closing at once could lose it to a reset. Read
 * and drop what it sends until it hangs up, or LINGER_MS.
 */
async function lingerThenClose(conn: PeerConnection): Promise<void> {
  conn.close();
  const deadline = Date.now() + LINGER_MS;
  const timer = setTimeout(() => conn.destroy(), LINGER_MS);
  try {
    while (Date.now() < deadline) await conn.receive();
  } catch {
    // the source hung up: done
  } finally {
    clearTimeout(timer);
  }
}
