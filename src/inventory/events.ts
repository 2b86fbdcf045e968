/**
 * Keeps the catalog's inventory current while the agent runs: a full
 * reconcile on start, then the engine's events (each one a reconcileObject),
 * then, whenever the engine goes away, backoff and ping until it answers, a
 * full reconcile (the engine replays only its last 256 events, and none from
 * before its own restart), and the events again. A full reconcile also runs
 * every reconcile_interval. All catalog work is serialized, and it is all
 * idempotent, so an event replayed or seen after a reconcile that already
 * found its change records nothing.
 */
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AgentCatalog, ObjectKind } from '../catalog/agent-catalog.ts';
import { EngineUnavailableError } from '../errors/errors.ts';
import type { Logger } from '../log/logger.ts';
import type { DockerEngine, EngineEvent } from '../docker/engine.ts';
import { META_LAST_RECONCILE, reconcile, reconcileObject, type ReconcileResult } from './sync.ts';

/** meta key: timeNano (decimal) of the last engine event handled. */
export const META_LAST_EVENT = 'inventory.last_event_nano';

export interface BackoffOptions {
  /** First delay after a failure (ms); doubles per failed attempt. */
  readonly initialMs?: number;
  /** Longest delay (ms). */
  readonly maxMs?: number;
}

export interface WatcherOptions {
  readonly engine: DockerEngine;
  readonly catalog: AgentCatalog;
  readonly log: Logger;
  /** Full reconcile period while connected (ms); default 5 minutes. */
  readonly reconcileIntervalMs?: number;
  /** Default 500 ms doubling to 30 s. */
  readonly backoff?: BackoffOptions;
  /** Jitter source in [0, 1); default Math.random. */
  readonly random?: () => number;
  readonly now?: () => Date;
  /** How long a ping may take before the engine counts as down (ms); default 10 s. */
  readonly pingTimeoutMs?: number;
}

export interface WatcherState {
  readonly connected: boolean;
  /** ISO time of the last completed full reconcile, by this watcher or before it (from the catalog). */
  readonly lastReconcile: string | null;
  /** ISO time of the last engine event handled. */
  readonly lastEvent: string | null;
  readonly lastError: string | null;
  /** Connections made after the first. */
  readonly reconnects: number;
}

export interface ReconciledEvent extends ReconcileResult {
  readonly full: boolean;
  /** "start", "reconnect", "periodic", "request", or the engine event ("container destroy"). */
  readonly reason: string;
}

export interface WatcherEvents {
  state: [WatcherState];
  reconciled: [ReconciledEvent];
  /** A failure the watcher recovers from by itself (it logs them too). */
  failure: [Error];
}

/** Container event actions that change nothing the inventory keeps. */
const IGNORED_ACTIONS = /^(exec_|health_status|attach|detach|resize|top|copy|archive-path|extract-to-dir|export|commit|save|push)/;
const KINDS: Partial<Record<EngineEvent['type'], ObjectKind>> = {
  container: 'container',
  image: 'image',
  volume: 'volume',
  network: 'network',
};

export class InventoryWatcher extends EventEmitter<WatcherEvents> {
  readonly #engine: DockerEngine;
  readonly #catalog: AgentCatalog;
  readonly #log: Logger;
  readonly #interval: number;
  readonly #initialMs: number;
  readonly #maxMs: number;
  readonly #random: () => number;
  readonly #now: () => Date;
  readonly #pingTimeout: number;

  #abort = new AbortController();
  /** The current connection's controller: aborting it drops the event stream and reconnects. */
  #connection: AbortController | undefined;
  #loop: Promise<void> | undefined;
  /** Tail of the serialized catalog work. */
  #chain: Promise<unknown> = Promise.resolve();
  #periodic: NodeJS.Timeout | undefined;
  #state: WatcherState;
  #connectedOnce = false;
  #lastEventNano: bigint | undefined;
  #persistedEventNano: bigint | undefined;
  #persistedAt = 0;

  constructor(opts: WatcherOptions) {
    super();
    this.#engine = opts.engine;
    this.#catalog = opts.catalog;
    this.#log = opts.log;
    this.#interval = opts.reconcileIntervalMs ?? 5 * 60_000;
    this.#initialMs = opts.backoff?.initialMs ?? 500;
    this.#maxMs = opts.backoff?.maxMs ?? 30_000;
    this.#random = opts.random ?? Math.random;
    this.#now = opts.now ?? (() => new Date());
    this.#pingTimeout = opts.pingTimeoutMs ?? 10_000;
    const stored = this.#catalog.getMeta(META_LAST_EVENT);
    this.#lastEventNano = this.#persistedEventNano = stored === undefined ? undefined : BigInt(stored);
    this.#state = {
      connected: false,
      lastReconcile: this.#catalog.getMeta(META_LAST_RECONCILE) ?? null,
      lastEvent: this.#lastEventNano === undefined ? null : nanoToIso(this.#lastEventNano),
      lastError: null,
      reconnects: 0,
    };
  }

  get state(): WatcherState {
    return this.#state;
  }

  get running(): boolean {
    return this.#loop !== undefined;
  }

  start(): void {
    if (this.#loop) return;
    this.#abort = new AbortController();
    this.#loop = this.#run().catch((err: unknown) => {
      // the loop handles its own failures; anything here is a bug, not an engine problem
      this.#log.error({ err }, 'inventory watcher stopped unexpectedly');
    });
  }

  /** Stops watching: drops the event stream, cancels timers, waits for catalog work in flight. */
  async stop(): Promise<void> {
    if (!this.#loop) return;
    this.#abort.abort();
    this.#clearPeriodic();
    await this.#loop;
    await this.#chain.catch(() => {});
    this.#loop = undefined;
    this.#persistLastEvent(true);
    if (this.#state.connected) this.#update({ connected: false });
  }

  /** A full reconcile now, after any catalog work in flight. */
  reconcileNow(): Promise<ReconciledEvent> {
    return this.#full('request');
  }

  async #run(): Promise<void> {
    const signal = this.#abort.signal;
    let attempt = 0;
    while (!signal.aborted) {
      const connection = new AbortController();
      this.#connection = connection;
      const stop = () => connection.abort();
      signal.addEventListener('abort', stop, { once: true });
      try {
        await this.#ping(connection.signal);
        const reason = this.#connectedOnce ? 'reconnect' : 'start';
        this.#update({ connected: true, lastError: null, reconnects: this.#state.reconnects + (this.#connectedOnce ? 1 : 0) });
        this.#connectedOnce = true;
        // events since the last one handled; on a first start, since now (the reconcile covers what came before)
        const since = this.#lastEventNano === undefined ? Math.floor(this.#now().getTime() / 1000) - 1 : Number(this.#lastEventNano / 1_000_000_000n);
        await this.#full(reason);
        if (connection.signal.aborted) throw connection.signal.reason;
        attempt = 0;
        this.#log.info({ since }, 'docker engine connected; following its events');
        this.#schedulePeriodic(connection);
        for await (const event of this.#engine.events({ since, signal: connection.signal })) {
          await this.#onEvent(event);
        }
        if (!connection.signal.aborted) throw new EngineUnavailableError('the engine closed its event stream');
      } catch (err) {
        if (!signal.aborted) {
          this.#clearPeriodic();
          const delay = this.#backoff(attempt++);
          // a connection dropped on purpose (a periodic reconcile found the engine gone) carries its reason
          const cause: unknown = connection.signal.aborted ? connection.signal.reason : err;
          const message = cause instanceof Error ? cause.message : String(cause);
          const wasConnected = this.#state.connected;
          this.#update({ connected: false, lastError: message });
          if (!(cause instanceof EngineUnavailableError)) this.#fail(cause);
          // one warning per outage, then quieter
          if (wasConnected || attempt === 1) this.#log.warn({ err: message, retryInMs: delay }, 'docker engine unavailable; will reconnect');
          else this.#log.debug({ err: message, retryInMs: delay, attempt }, 'docker engine still unavailable');
          await sleep(delay, undefined, { signal }).catch(() => {});
        }
      } finally {
        signal.removeEventListener('abort', stop);
        this.#connection = undefined;
      }
    }
  }

  #backoff(attempt: number): number {
    return backoffDelay(attempt, this.#initialMs, this.#maxMs, this.#random);
  }

  async #ping(signal: AbortSignal): Promise<void> {
    const timer = new AbortController();
    const timeout = sleep(this.#pingTimeout, undefined, { signal: AbortSignal.any([timer.signal, signal]) }).then(
      () => Promise.reject(new EngineUnavailableError(`the engine did not answer a ping within ${this.#pingTimeout} ms`)),
      () => Promise.reject(signal.reason as Error),
    );
    try {
      await Promise.race([this.#engine.ping(), timeout]);
    } finally {
      timer.abort();
      timeout.catch(() => {});
    }
  }

  async #onEvent(event: EngineEvent): Promise<void> {
    const kind = KINDS[event.type];
    if (kind !== undefined && !IGNORED_ACTIONS.test(event.action) && event.id !== '') {
      const reason = `${event.type} ${event.action}`;
      try {
        await this.#serial(async () => {
          const r = await reconcileObject(this.#engine, this.#catalog, kind, event.id, { now: this.#now });
          if (r.changes.length > 0) {
            this.#log.debug({ event: reason, id: event.id, changes: r.changes.length }, 'inventory updated');
            this.emit('reconciled', { ...r, full: false, reason });
          }
        });
      } catch (err) {
        // the engine going away ends the stream too; anything else is one object's problem, and the next full reconcile retries it
        if (err instanceof EngineUnavailableError) throw err;
        this.#fail(err);
      }
    }
    if (this.#lastEventNano === undefined || event.timeNano > this.#lastEventNano) {
      this.#lastEventNano = event.timeNano;
      this.#update({ lastEvent: nanoToIso(event.timeNano) });
      this.#persistLastEvent(false);
    }
  }

  /** Writes the last event time at most once a second (a replay after a crash is harmless), and on stop. */
  #persistLastEvent(force: boolean): void {
    if (this.#lastEventNano === undefined || this.#lastEventNano === this.#persistedEventNano) return;
    const now = Date.now();
    if (!force && now - this.#persistedAt < 1000) return;
    try {
      this.#catalog.setMeta(META_LAST_EVENT, this.#lastEventNano.toString());
      this.#persistedEventNano = this.#lastEventNano;
      this.#persistedAt = now;
    } catch (err) {
      this.#fail(err);
    }
  }

  #full(reason: string): Promise<ReconciledEvent> {
    return this.#serial(async () => {
      const started = performance.now();
      const r = await reconcile(this.#engine, this.#catalog, { now: this.#now });
      this.#persistLastEvent(true);
      this.#update({ lastReconcile: r.at });
      this.#log.info({ reason, changes: r.changes.length, ms: Math.round(performance.now() - started) }, 'inventory reconciled');
      const event: ReconciledEvent = { ...r, full: true, reason };
      this.emit('reconciled', event);
      return event;
    });
  }

  /** Arms the next periodic reconcile for this connection; a reconcile that ends after the connection dropped arms nothing. */
  #schedulePeriodic(connection: AbortController): void {
    this.#clearPeriodic();
    if (connection.signal.aborted || this.#connection !== connection) return;
    this.#periodic = setTimeout(() => {
      this.#periodic = undefined;
      this.#full('periodic').then(
        () => this.#schedulePeriodic(connection),
        (err: unknown) => {
          // a dead engine may leave the event stream hanging (tcp): drop it and reconnect
          if (err instanceof EngineUnavailableError) connection.abort(err);
          else {
            this.#fail(err);
            this.#schedulePeriodic(connection);
          }
        },
      );
    }, this.#interval);
  }

  #clearPeriodic(): void {
    if (this.#periodic !== undefined) clearTimeout(this.#periodic);
    this.#periodic = undefined;
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#chain.then(fn);
    this.#chain = p.catch(() => {});
    return p;
  }

  #update(change: Partial<WatcherState>): void {
    this.#state = { ...this.#state, ...change };
    this.emit('state', this.#state);
  }

  #fail(err: unknown): void {
    const e = err instanceof Error ? err : new Error(String(err));
    this.#log.error({ err: e }, 'inventory watcher');
    this.emit('failure', e);
  }
}

/**
 * Delay before reconnect attempt `attempt` (0-based): initialMs doubling up to
 * maxMs, with "equal jitter" (half fixed, half random) so that many agents do
 * not reconnect in step after an engine restart.
 */
export function backoffDelay(attempt: number, initialMs: number, maxMs: number, random: () => number): number {
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

function nanoToIso(nano: bigint): string {
  return new Date(Number(nano / 1_000_000n)).toISOString();
}
