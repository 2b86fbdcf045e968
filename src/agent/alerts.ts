import type { AgentCatalog } from '../catalog/agent-catalog.ts';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../log/logger.ts';
import type { ConditionsInput } from '../notify/conditions.ts';
import type { Notifier } from '../notify/notifier.ts';
import type { BackupResult } from './backups.ts';

/** What the agent's alerts look at, asked afresh at each check. */
export type AlertInputs = () => Omit<ConditionsInput, 'now' | 'overdueFactor'>;

/** How long stopping waits for alerts still being delivered. */
const FLUSH_ON_STOP_MS = 5_000;

/**
 * The agent's side of [[notify]]: the conditions checked every
 * [alerts] check_interval (and at once after a backup ends), heartbeats
 * around every backup. The Notifier (and with it node:https and nodemailer)
 * is loaded only when the config has [[notify]] entries: an agent that alerts
 * nobody pays nothing for it.
 */
export class AgentAlerts {
  readonly #notifier: Notifier;
  readonly #inputs: AlertInputs;
  readonly #overdueFactor: number;
  readonly #timer: NodeJS.Timeout;
  readonly #log: Logger;

  private constructor(notifier: Notifier, config: Config, inputs: AlertInputs, log: Logger) {
    this.#notifier = notifier;
    this.#inputs = inputs;
    this.#overdueFactor = config.alerts.overdue_factor;
    this.#log = log;
    this.#timer = setInterval(() => this.check(), config.alerts.check_interval);
    this.#timer.unref();
  }

  /** Undefined when the config has no [[notify]] entry. */
  static async start(config: Config, catalog: AgentCatalog, log: Logger, secrets: readonly string[], inputs: AlertInputs): Promise<AgentAlerts | undefined> {
    if (config.notify.length === 0) return undefined;
    const [{ Notifier }, { catalogAlertStore }] = await Promise.all([import('../notify/notifier.ts'), import('../notify/store.ts')]);
    const notifier = new Notifier({ host: config.agent.host, entries: config.notify, store: catalogAlertStore(catalog), log, secrets });
    return new AgentAlerts(notifier, config, inputs, log);
  }

  /** Reports every condition as it is now; the Notifier sends only what changed. */
  check(): void {
    void this.#evaluate().catch((err: unknown) => this.#log.error({ err }, 'checking the alert conditions failed'));
  }

  async #evaluate(): Promise<void> {
    const { evaluateConditions } = await import('../notify/conditions.ts');
    this.#notifier.report(evaluateConditions({ ...this.#inputs(), now: Date.now(), overdueFactor: this.#overdueFactor }));
  }

  backupStarted(volume: string): void {
    this.#notifier.heartbeat(volume, 'start');
  }

  /** Pings the heartbeats, and checks at once: a failure (or the success that ends one) is told now, not at the next check. */
  backupEnded(r: BackupResult): void {
    if (r.outcome === 'success') this.#notifier.heartbeat(r.volume, 'success', `snapshot ${r.snapshot!.id.slice(0, 8)} in ${r.durationMs} ms`);
    else if (r.outcome === 'failure') this.#notifier.heartbeat(r.volume, 'fail', `${r.error!.message} [${r.error!.code}]`);
    else return;
    this.check();
  }

  /** Stops checking; what is being delivered gets a few seconds to arrive. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#notifier.flush(FLUSH_ON_STOP_MS);
    await this.#notifier.close();
  }
}
