import type { Transporter } from 'nodemailer';
import type { Config } from '../config/schema.ts';
import { NotificationFailedError } from '../errors/errors.ts';

type NotifyConfig = Config['notify'][number];

export interface EmailMessage {
  readonly subject: string;
  readonly text: string;
  /** The alert's id: one Message-ID for every attempt of one alert. */
  readonly id: string;
}

/**
 * Mail through an [[notify]] entry's SMTP server. nodemailer (tens of MB
 * resident) is loaded by the first message, so an agent that never mails
 * never carries it; one connection per message, as alerts are rare.
 */
export class EmailSender {
  readonly #entry: NotifyConfig;
  readonly #password: string | undefined;
  #transport: Promise<Transporter> | undefined;

  constructor(entry: NotifyConfig, password: string | undefined) {
    this.#entry = entry;
    this.#password = password;
  }

  async send(msg: EmailMessage, signal: AbortSignal): Promise<void> {
    const transport = await (this.#transport ??= this.#open());
    const e = this.#entry;
    try {
      await transport.sendMail({
        from: e.from,
        to: e.to,
        subject: msg.subject,
        text: msg.text,
        messageId: `<${msg.id}@lifeboat>`,
        headers: { 'X-Lifeboat-Alert-Id': msg.id },
        signal,
      });
    } catch (err) {
      const n = err as { message: string; code?: string; permanent?: boolean };
      // nodemailer sets `permanent` from the SMTP reply: 5xx (but 503) will be refused again
      throw new NotificationFailedError(`${n.message}${n.code && !n.message.includes(n.code) ? ` (${n.code})` : ''}`, { permanent: n.permanent === true, cause: err });
    }
  }

  close(): void {
    void this.#transport?.then((t) => t.close(), () => {});
  }

  async #open(): Promise<Transporter> {
    const { default: nodemailer } = await import('nodemailer');
    const e = this.#entry;
    const security = e.smtp_security;
    return nodemailer.createTransport({
      host: e.smtp_host,
      port: e.smtp_port ?? (security === 'tls' ? 465 : 587),
      secure: security === 'tls',
      requireTLS: security === 'starttls',
      ignoreTLS: security === 'none',
      auth: e.smtp_user === undefined ? undefined : { user: e.smtp_user, pass: this.#password },
      connectionTimeout: e.timeout,
      greetingTimeout: e.timeout,
      socketTimeout: e.timeout,
      // alerts carry no attachments: nothing in a message may make nodemailer read a file or fetch a URL
      disableFileAccess: true,
      disableUrlAccess: true,
    });
  }
}
