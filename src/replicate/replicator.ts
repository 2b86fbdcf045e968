import fs from 'node:fs';
import path from 'node:path';
import type tls from 'node:tls';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import { describeFailure, UsageError } from '../errors/errors.ts';
import type { Repository } from '../repo/repository.ts';
import type { Snapshot } from '../repo/snapshot.ts';
import { listSnapshotHeads, type SnapshotHead, snapshotSummary } from '../repo/snapshots.ts';
import { Store } from '../repo/store.ts';
import { boundAddress, parseListen } from '../util/listen.ts';
import type { Identity } from './identity.ts';
import { RateLimiter } from './limiter.ts';
import type { PeerStateStore } from './peer-state.ts';
import { newTally, push, type PushReport, type PushTally } from './push.ts';
import { type ReceiveStats } from './replica.ts';
import { replicaDir } from './replica-path.ts';
import { Receiver } from './receiver.ts';
import { connectToPeer, listenForPeers } from './transport.ts';

export type PeerConfig = Config['peer'][number];

/** The longest wait between retries of a failing push. */
const RETRY_MAX_MS = 5 * 60_000;

export interface PushOutcome {
  readonly peer: string;
  readonly ok: boolean;
  readonly report: PushReport | null;
  readonly error: { readonly code: string; readonly message: string } | null;
}

/** A peer as `lifeboat peers` and /status show it. */
export interface PeerStatus {
  readonly name: string;
  readonly address: string;
  readonly id: string;
  readonly push: boolean;
  /** pushing, idle, retrying (waiting for the next try after a failure), or off (push = false). */
  readonly state: 'pushing' | 'idle' | 'retrying' | 'off';
  /** Snapshots of this repository the peer is not known to hold (null: unknown, the repository could not be read). */
  readonly pending: number | null;
  /** How long the oldest of those has waited (s); 0 when none. */
  readonly lag_s: number | null;
  /**
   * Per volume, the capture time of the newest snapshot the peer holds: the
   * recovery point a disaster here would leave (null: unknown).
   */
  readonly recovery_points: Readonly<Record<string, string>> | null;
  readonly last_attempt: string | null;
  readonly last_success: string | null;
  readonly last_error: string | null;
  readonly failures: number;
  readonly next_retry: string | null;
  readonly bytes_sent_total: number;
  readonly last_push: Record<string, number> | null;
  /** What this agent holds of the peer's own repository (when the peer pushes here). */
  readonly replica: ReplicaStatus | null;
}

export interface ReplicaStatus {
  readonly snapshots: number;
  readonly newest: string | null;
  readonly last_received: string | null;
}

export interface ReplicatorOptions {
  readonly config: Config;
  readonly identity: Identity;
  readonly repo: Repository;
  readonly state: PeerStateStore;
  readonly log: Logger;
  /** Scratch files of pushes. */
  readonly scratchDir: string;
  /** Retry a failed push after [replication] retry (the agent); false for a one-shot command. */
  readonly retries?: boolean;
  readonly onPushed?: (peer: PeerConfig, outcome: PushOutcome) => void;
  /** A push's tally as it grows (a command's progress line). */
  readonly onProgress?: (peer: PeerConfig, tally: Readonly<PushTally>) => void;
  readonly onReceived?: (source: { id: string; name: string }, snapshot: Snapshot, stats: ReceiveStats) => void;
}

/**
 * Both sides of replication for one agent: a push runner per [[peer]]
 * (after each backup, on [replication] schedule, on demand; one push per
 * peer at a time, triggers during a push coalesce into one more; a failed
 * push is retried after [replication] retry, doubling up to 5 min), and the
 * listener through which configured peers push into their replicas here.
 */
export class Replicator {
  readonly #opts: ReplicatorOptions;
  readonly #runners: Map<string, PeerRunner>;
  readonly #receiver: Receiver;
  readonly #lastReceived = new Map<string, string>();
  #server: tls.Server | undefined;
  /** Set while something needs the repository alone (retention): pushes wait for it. */
  #hold: Promise<unknown> = Promise.resolve();

  constructor(opts: ReplicatorOptions) {
    this.#opts = opts;
    const limiter = opts.config.replication.bandwidth > 0 ? new RateLimiter(opts.config.replication.bandwidth) : undefined;
    this.#runners = new Map(opts.config.peer.map((p) => [p.name, new PeerRunner(p, opts, limiter, () => this.#hold)]));
    this.#receiver = new Receiver({
      stateDir: opts.config.agent.state_dir,
      packSize: opts.config.repository.pack_size,
      log: opts.log,
      onCommitted: (source, snapshot, stats) => {
        this.#lastReceived.set(source.id, new Date().toISOString());
        opts.onReceived?.(source, snapshot, stats);
      },
    });
  }

  /** Binds [replication] listen (a ListenError, exit 2, when it cannot). */
  async listen(): Promise<void> {
    const { config, identity, log } = this.#opts;
    if (config.replication.listen === '') return;
    this.#server = await listenForPeers({
      identity,
      listen: config.replication.listen,
      peers: new Map(config.peer.map((p) => [p.id, p.name])),
      log,
      idleTimeoutMs: config.replication.timeout,
      onPeer: (conn, name) => void this.#receiver.accept(conn, name),
    });
    log.info({ listen: this.listenAddress, peers: config.peer.map((p) => p.name) }, `accepting pushes from peers on ${this.listenAddress}`);
  }

  get listenAddress(): string | null {
    return this.#server ? boundAddress(this.#server) : null;
  }

  /** Peers this agent pushes to. */
  get targets(): readonly string[] {
    return [...this.#runners.values()].filter((r) => r.peer.push).map((r) => r.peer.name);
  }

  /** Pushes to one peer (by name) or to every peer pushed to; resolves with each outcome, never rejects for a failed push. */
  replicate(name?: string): Promise<PushOutcome[]> {
    if (name !== undefined) {
      const r = this.#runners.get(name);
      if (!r) throw new UsageError(`no [[peer]] named ${JSON.stringify(name)}; the peers are: ${[...this.#runners.keys()].join(', ') || 'none'}`);
      return r.trigger().then((o) => [o]);
    }
    return Promise.all(this.targets.map((n) => this.#runners.get(n)!.trigger()));
  }

  /** Runs fn once no push is under way, holding new ones until it ends (retention's prune needs the repository alone). */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#hold.then(async () => {
      await Promise.all([...this.#runners.values()].map((r) => r.idle()));
      return fn();
    });
    this.#hold = run.catch(() => {});
    return run;
  }

  status(): PeerStatus[] {
    const { config, state, repo } = this.#opts;
    const snapshots = listSnapshotHeads(repo);
    return [...this.#runners.values()].map((r) =>
      peerView(r.peer, state, snapshots, replicaOf(config.agent.state_dir, r.peer, this.#lastReceived.get(r.peer.id) ?? null), r.live()),
    );
  }

  /** Stops pushing (a push under way is abandoned: it resumes at the next start) and listening. */
  async stop(): Promise<void> {
    await Promise.all([...this.#runners.values()].map((r) => r.stop()));
    this.#server?.close();
    await this.#receiver.close();
  }
}

/** What this agent holds of a peer's repository, read without the password (snapshot rows are in clear); null when nothing. */
export function replicaOf(stateDir: string, peer: PeerConfig, lastReceived: string | null): ReplicaStatus | null {
  const dir = replicaDir(stateDir, peer.id);
  if (!fs.existsSync(path.join(dir, 'config.json'))) return null;
  try {
    const store = Store.openStore(dir);
    try {
      const { count, newest } = snapshotSummary(store);
      return { snapshots: count, newest, last_received: lastReceived };
    } finally {
      store.close();
    }
  } catch {
    return null;
  }
}

/**
 * A peer as status shows it, from the catalog (and, in a running agent, the
 * push under way or the retry waiting). `snapshots` is this repository's, or
 * null when it could not be read (status without the password).
 */
export function peerView(
  peer: PeerConfig,
  state: PeerStateStore,
  snapshots: readonly SnapshotHead[] | null,
  replica: ReplicaStatus | null,
  live: { readonly running: boolean; readonly retryAt: Date | null } | null,
): PeerStatus {
  const r = state.record(peer.id);
  const pending = !peer.push ? [] : snapshots === null ? null : state.pending(peer.id, snapshots);
  const oldest = pending?.reduce<string | null>((t, s) => (t === null || s.time < t ? s.time : t), null) ?? null;
  let points: Record<string, string> | null = null;
  if (peer.push && snapshots !== null && pending !== null) {
    points = {};
    const missing = new Set(pending.map((s) => s.id));
    for (const s of snapshots) {
      if (s.volume === null || missing.has(s.id)) continue;
      const seen = points[s.volume];
      if (seen === undefined || s.time > seen) points[s.volume] = s.time;
    }
  }
  return {
    name: peer.name,
    address: peer.address,
    id: peer.id,
    push: peer.push,
    state: !peer.push ? 'off' : live?.running ? 'pushing' : (live?.retryAt ?? null) !== null ? 'retrying' : 'idle',
    pending: pending === null ? null : pending.length,
    lag_s: pending === null ? null : oldest === null ? 0 : Math.max(0, Math.round((Date.now() - Date.parse(oldest)) / 1000)),
    recovery_points: points,
    last_attempt: r.lastAttempt,
    last_success: r.lastSuccess,
    last_error: r.lastError,
    failures: r.failures,
    next_retry: live?.retryAt?.toISOString() ?? null,
    bytes_sent_total: r.bytesSent,
    last_push: r.lastPush,
    replica,
  };
}

class PeerRunner {
  readonly peer: PeerConfig;
  readonly #opts: ReplicatorOptions;
  readonly #limiter: RateLimiter | undefined;
  readonly #hold: () => Promise<unknown>;
  #running: Promise<PushOutcome> | undefined;
  #followUp: Promise<PushOutcome> | undefined;
  #abort: AbortController | undefined;
  #retry: { timer: NodeJS.Timeout; at: Date } | undefined;
  #stopped = false;

  constructor(peer: PeerConfig, opts: ReplicatorOptions, limiter: RateLimiter | undefined, hold: () => Promise<unknown>) {
    this.peer = peer;
    this.#opts = opts;
    this.#limiter = limiter;
    this.#hold = hold;
  }

  /** A push that covers every snapshot committed before this call: the one under way if it has not begun listing, else one more after it. */
  trigger(): Promise<PushOutcome> {
    if (!this.#running) return this.#start();
    this.#followUp ??= this.#running.then(() => {
      this.#followUp = undefined;
      return this.#start();
    });
    return this.#followUp;
  }

  /** Resolves when no push is under way. */
  async idle(): Promise<void> {
    await this.#running;
  }

  #start(): Promise<PushOutcome> {
    if (this.#retry) clearTimeout(this.#retry.timer);
    this.#retry = undefined;
    this.#running = this.#hold()
      .then(() => this.#push())
      .finally(() => (this.#running = undefined));
    return this.#running;
  }

  async #push(): Promise<PushOutcome> {
    const { config, identity, repo, state, log } = this.#opts;
    const peer = this.peer;
    const tally = newTally();
    const started = new Date();
    state.attempted(peer.id, started.toISOString());
    const ac = new AbortController();
    this.#abort = ac;
    let conn;
    let outcome: PushOutcome;
    try {
      if (this.#stopped) throw new UsageError('the agent is stopping');
      const { host, port } = parseListen(peer.address, `peer ${peer.name} address`);
      conn = await connectToPeer({ identity, host, port, expectedId: peer.id, timeoutMs: config.replication.timeout, idleTimeoutMs: config.replication.timeout });
      const report = await push(conn, repo, {
        scratchDir: this.#opts.scratchDir,
        log,
        ...(this.#limiter ? { limiter: this.#limiter } : {}),
        signal: ac.signal,
        tally,
        ...(this.#opts.onProgress ? { onSent: () => this.#opts.onProgress!(peer, tally) } : {}),
        onWelcome: (held) => state.markReplicated(peer.id, held),
        onCommitted: (s) => state.markReplicated(peer.id, [s.id]),
      });
      state.succeeded(peer.id, new Date().toISOString(), { ...report });
      if (report.snapshots > 0) {
        log.info({ peer: peer.name, ...report }, `replicated ${report.snapshots} snapshots to ${peer.name}: ${report.blobs_sent} blobs, ${report.bytes_sent} bytes`);
      }
      outcome = { peer: peer.name, ok: true, report, error: null };
    } catch (err) {
      const f = describeFailure(err);
      state.failed(peer.id, `${f.message} [${f.code}]`, tally.bytes_sent);
      const failures = state.record(peer.id).failures;
      const delay = Math.min(RETRY_MAX_MS, config.replication.retry * 2 ** (failures - 1));
      const retrying = !this.#stopped && this.#opts.retries !== false;
      // a one-shot command reports the outcome itself; the agent's log is where an operator looks
      (retrying ? log.warn : log.debug).call(log, { peer: peer.name, code: f.code, err: f.message, sent: tally.bytes_sent, ...(retrying ? { retry_in_s: delay / 1000 } : {}) }, `replication to ${peer.name} failed: ${f.message}`);
      if (retrying) {
        const timer = setTimeout(() => void this.trigger(), delay);
        timer.unref();
        this.#retry = { timer, at: new Date(Date.now() + delay) };
      }
      outcome = { peer: peer.name, ok: false, report: null, error: { code: f.code, message: f.message } };
    } finally {
      conn?.destroy();
      this.#abort = undefined;
    }
    this.#opts.onPushed?.(peer, outcome);
    return outcome;
  }

  /** What only the running agent knows: a push under way, a retry waiting. */
  live(): { running: boolean; retryAt: Date | null } {
    return { running: this.#running !== undefined, retryAt: this.#retry?.at ?? null };
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#retry) clearTimeout(this.#retry.timer);
    this.#retry = undefined;
    this.#abort?.abort();
    await this.#running?.catch(() => {});
  }
}
