import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { readPasswordFile } from '../config/password.ts';
import type { Config } from '../config/schema.ts';
import { describeFailure, NotificationFailedError } from '../errors/errors.ts';
import type { Logger } from '../log/logger.ts';
import type { Alert, AlertDetail, AlertState, ConditionEvent } from './alert.ts';
import type { Condition } from './conditions.ts';
import { EmailSender } from './email.ts';
import { emailMessage, type HttpMessage, ntfyMessage, slackMessage, webhookMessage } from './formats.ts';
import { httpSend } from './http-send.ts';
import { type Redact, redactDetail, redactor, urlSecrets } from './redact.ts';
import type { AlertStore } from './store.ts';

export type NotifyConfig = Config['notify'][number];
export type HeartbeatKind = 'start' | 'success' | 'fail';

/** The longest wait between two attempts of one delivery. */
const RETRY_MAX_MS = 5 * 60_000;
/** The most of a heartbeat's message sent (healthchecks.io keeps 100 kB). */
const PING_MESSAGE_MAX = 10_000;

export interface NotifierOptions {
  /** This agent's [agent] host, in every alert. */
  readonly host: string;
  /** The [[notify]] entries. */
  readonly entries: readonly NotifyConfig[];
  readonly store: AlertStore;
  readonly log: Logger;
  /** Strings no alert may carry (passwords, tokens); the entries' URLs and SMTP passwords are added. */
  readonly secrets?: readonly string[];
  /** The wait before an entry's first retry; each further one doubles, up to 5 minutes. Default 1 s. */
  readonly firstRetryMs?: number;
  /** The clock of the alerts' times (ms since the epoch). */
  readonly now?: () => number;
}

/** One state of one condition: what every entry is told about it, with one id. */
interface Transition {
  readonly event: ConditionEvent;
  readonly subject: string;
  readonly state: AlertState;
  readonly id: string;
  readonly time: string;
  readonly summary: string;
  readonly detail: AlertDetail;
}

type Item =
  | { readonly kind: 'condition'; readonly key: string }
  | { readonly kind: 'alert'; readonly alert: Alert }
  | { readonly kind: 'ping'; readonly volume: string; readonly ping: HeartbeatKind; readonly message: string | undefined };

/** One entry's deliveries: in order, one at a time. */
interface Channel {
  readonly entry: NotifyConfig;
  readonly queue: Item[];
  /** Condition keys in the queue: a condition is queued once, and sent as it is when its turn comes. */
  readonly queued: Set<string>;
  /** Per condition key, the transition whose delivery failed for good: not tried again until the condition moves. */
  readonly gaveUp: Map<string, string>;
  readonly email: EmailSender | undefined;
  busy: Promise<void> | undefined;
}

/**
 * Tells the [[notify]] entries what happens. Conditions (from
 * evaluateConditions, every check) are sent when they start firing and, with
 * send_resolved, when they resolve; never again while their state holds, and
 * not after a restart either: the state each entry was last told is kept in
 * the AlertStore. A condition that changes back before its turn is sent as it
 * is then, or not at all when that is what the entry last heard. `recovered`
 * and heartbeats are sent each time. Each entry delivers one message at a
 * time, in order, retrying with a doubling wait; nothing sent or logged
 * carries a secret or an entry's URL.
 */
export class Notifier {
  readonly #opts: NotifierOptions;
  readonly #channels: readonly Channel[];
  readonly #redact: Redact;
  readonly #current = new Map<string, Transition>();
  readonly #abort = new AbortController();
  readonly #now: () => number;
  #closed = false;

  constructor(opts: NotifierOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
    const secrets = [...(opts.secrets ?? [])];
    this.#channels = opts.entries.map((entry) => {
      if (entry.url !== undefined) secrets.push(...urlSecrets(entry.url));
      // read once, at start: a missing file is a configuration problem to report now, not at the first alert
      const password = entry.smtp_password_file === undefined ? undefined : readPasswordFile(entry.smtp_password_file);
      if (password !== undefined) secrets.push(password);
      const email = entry.type === 'email' ? new EmailSender(entry, password) : undefined;
      return { entry, queue: [], queued: new Set(), gaveUp: new Map(), email, busy: undefined };
    });
    this.#redact = redactor(secrets);
  }

  /** The conditions as they are now, every subject's (evaluateConditions' result). */
  report(conditions: readonly Condition[]): void {
    if (this.#closed) return;
    for (const c of conditions) {
      const key = JSON.stringify([c.event, c.subject]);
      const state: AlertState = c.firing ? 'firing' : 'resolved';
      if (this.#current.get(key)?.state !== state) {
        this.#current.set(key, {
          event: c.event,
          subject: c.subject,
          state,
          id: randomUUID(),
          time: new Date(this.#now()).toISOString(),
          summary: this.#line(c.summary),
          detail: redactDetail(c.detail, this.#redact),
        });
      }
      for (const ch of this.#channels) this.#consider(ch, key);
    }
  }

  /** `recover` brought a source's containers back here: sent once per call. */
  recovered(source: string, summary: string, detail?: AlertDetail): void {
    if (this.#closed) return;
    const alert: Alert = {
      id: randomUUID(),
      host: this.#opts.host,
      event: 'recovered',
      state: 'firing',
      subject: source,
      time: new Date(this.#now()).toISOString(),
      summary: this.#line(summary),
      ...(detail ? { detail: redactDetail(detail, this.#redact) } : {}),
    };
    for (const ch of this.#channels) {
      if (ch.entry.type !== 'heartbeat' && ch.entry.events.includes('recovered')) this.#enqueue(ch, { kind: 'alert', alert });
    }
  }

  /** A backup of `volume` started, succeeded or failed: pinged to the heartbeat entries that cover it. */
  heartbeat(volume: string, kind: HeartbeatKind, message?: string): void {
    if (this.#closed) return;
    const text = message === undefined ? undefined : this.#redact(message).slice(0, PING_MESSAGE_MAX);
    for (const ch of this.#channels) {
      if (ch.entry.type === 'heartbeat' && (ch.entry.volumes === undefined || ch.entry.volumes.includes(volume))) {
        this.#enqueue(ch, { kind: 'ping', volume, ping: kind, message: text });
      }
    }
  }

  /** Waits for what is queued and in flight, for at most `timeoutMs`; true when all of it was dealt with. */
  async flush(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    try {
      for (;;) {
        const busy = this.#channels.flatMap((ch) => (ch.busy ? [ch.busy] : []));
        if (busy.length === 0) return true;
        if ((await Promise.race([Promise.all(busy), expired])) === false) return false;
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /** Takes nothing more, drops what waits, abandons what is in flight. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#abort.abort();
    for (const ch of this.#channels) {
      ch.queue.length = 0;
      ch.queued.clear();
    }
    await Promise.all(this.#channels.map((ch) => ch.busy));
    for (const ch of this.#channels) ch.email?.close();
  }

  /** Queues the condition for the entry when the entry takes it and was last told otherwise. */
  #consider(ch: Channel, key: string): void {
    const t = this.#current.get(key);
    if (!t || ch.entry.type === 'heartbeat' || !ch.entry.events.includes(t.event)) return;
    if (ch.queued.has(key) || ch.gaveUp.get(key) === t.id || t.state === this.#told(ch, t)) return;
    ch.queued.add(key);
    this.#enqueue(ch, { kind: 'condition', key });
  }

  /** What the entry last heard of a condition; nothing counts as resolved (a first start tells nobody "all is well"). */
  #told(ch: Channel, t: Transition): AlertState {
    return this.#opts.store.get(storeKey(ch, t)) === 'firing' ? 'firing' : 'resolved';
  }

  #enqueue(ch: Channel, item: Item): void {
    if (this.#closed) return;
    ch.queue.push(item);
    if (ch.busy) return;
    ch.busy = (async () => {
      try {
        for (let next = ch.queue.shift(); next; next = ch.queue.shift()) await this.#process(ch, next);
      } finally {
        ch.busy = undefined;
      }
    })();
  }

  async #process(ch: Channel, item: Item): Promise<void> {
    try {
      if (item.kind === 'condition') await this.#sendCondition(ch, item.key);
      else if (item.kind === 'alert') await this.#attempts(ch, alertContext(item.alert), () => this.#sendAlert(ch, item.alert));
      else await this.#attempts(ch, { volume: item.volume, ping: item.ping }, () => this.#ping(ch, item.ping, item.message));
    } catch (err) {
      // the store failed: the entry may be told again, which is better than never
      this.#opts.log.error({ notify: ch.entry.name, err: this.#redact(describeFailure(err).message) }, 'what the entry was told could not be read or saved');
    }
  }

  async #sendCondition(ch: Channel, key: string): Promise<void> {
    ch.queued.delete(key);
    const t = this.#current.get(key)!;
    if (t.state === this.#told(ch, t)) return;
    if (t.state === 'resolved' && !ch.entry.send_resolved) {
      this.#opts.store.set(storeKey(ch, t), 'resolved');
      return;
    }
    const alert: Alert = { id: t.id, host: this.#opts.host, event: t.event, state: t.state, subject: t.subject, time: t.time, summary: t.summary, detail: t.detail };
    // a condition that moves on between attempts is not sent as it was
    const sent = await this.#attempts(ch, alertContext(alert), () => this.#sendAlert(ch, alert), () => this.#current.get(key) === t);
    if (sent) this.#opts.store.set(storeKey(ch, t), t.state);
    else if (this.#current.get(key) === t) ch.gaveUp.set(key, t.id);
    this.#consider(ch, key);
  }

  /** Runs one delivery until it succeeds, is refused for good, runs out of retries, is no longer wanted, or the notifier closes. */
  async #attempts(ch: Channel, context: Record<string, string>, attempt: () => Promise<void>, wanted: () => boolean = () => true): Promise<boolean> {
    const { name, retries } = ch.entry;
    const log = this.#opts.log;
    for (let failures = 1; ; failures++) {
      try {
        await attempt();
        return true;
      } catch (err) {
        if (this.#closed) return false;
        // anything but a NotificationFailedError is a fault here, which another attempt would meet again
        const f = err instanceof NotificationFailedError ? err : undefined;
        const permanent = f?.permanent ?? true;
        const message = this.#redact(describeFailure(err).message);
        if (permanent) {
          log.error({ notify: name, ...context, err: message }, 'notification refused; not retried');
          return false;
        }
        if (failures > retries) {
          log.error({ notify: name, ...context, err: message, attempts: failures }, 'notification failed; giving up');
          return false;
        }
        const first = this.#opts.firstRetryMs ?? 1000;
        const wait = Math.min(RETRY_MAX_MS, Math.max(first * 2 ** (failures - 1), f?.retryAfterMs ?? 0));
        log.warn({ notify: name, ...context, err: message, attempt: failures, retry_in_ms: wait }, 'notification failed; retrying');
        try {
          await sleep(wait, undefined, { signal: this.#abort.signal });
        } catch {
          return false; // closed
        }
        if (!wanted()) return false;
      }
    }
  }

  #sendAlert(ch: Channel, alert: Alert): Promise<void> {
    const e = ch.entry;
    if (ch.email) return ch.email.send({ ...emailMessage(alert), id: alert.id }, this.#abort.signal);
    const message: HttpMessage = e.type === 'slack' ? slackMessage(alert) : e.type === 'ntfy' ? ntfyMessage(alert) : webhookMessage(alert);
    return httpSend({ url: urlOf(e), method: 'POST', ...message, timeoutMs: e.timeout, signal: this.#abort.signal });
  }

  /** healthchecks.io's protocol: URL/start, URL, URL/fail; the message, when there is one, as the body. */
  #ping(ch: Channel, kind: HeartbeatKind, message: string | undefined): Promise<void> {
    const url = new URL(urlOf(ch.entry));
    url.pathname = url.pathname.replace(/\/$/, '') + (kind === 'start' ? '/start' : kind === 'fail' ? '/fail' : '');
    const body = message === undefined ? {} : { body: message, headers: { 'content-type': 'text/plain; charset=utf-8' } };
    return httpSend({ url: url.href, method: message === undefined ? 'GET' : 'POST', ...body, timeoutMs: ch.entry.timeout, signal: this.#abort.signal });
  }

  /** One line, without secrets. */
  #line(text: string): string {
    return this.#redact(text).replace(/\s*[\r\n]+\s*/g, ' ');
  }
}

/** The schema requires a url of every type but email. */
const urlOf = (e: NotifyConfig): string => e.url!;

/** ["entry","event","subject"]: readable in the catalog, and no name can make two keys one. */
const storeKey = (ch: Channel, t: Transition) => JSON.stringify([ch.entry.name, t.event, t.subject]);

const alertContext = (a: Alert): Record<string, string> => ({ event: a.event, subject: a.subject, state: a.state });
