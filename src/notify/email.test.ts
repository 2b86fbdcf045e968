import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { SMTPServer } from 'smtp-server';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../config/load.ts';
import { Notifier } from './notifier.ts';

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Mail {
  readonly from: string;
  readonly to: readonly string[];
  readonly raw: string;
}

/** A local SMTP server without TLS that keeps every message, and every login tried. */
async function smtpServer(o: { password?: string } = {}) {
  const mails: Mail[] = [];
  const logins: { method: string; username: string; password: string }[] = [];
  const server = new SMTPServer({
    logger: false,
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    allowInsecureAuth: true,
    authMethods: ['PLAIN'],
    onAuth(auth, _session, callback) {
      logins.push({ method: auth.method, username: auth.username ?? '', password: auth.password ?? '' });
      if (auth.password === o.password) callback(null, { user: auth.username });
      else callback(new Error('Invalid username or password'));
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const from = session.envelope.mailFrom;
        mails.push({ from: from ? from.address : '', to: session.envelope.rcptTo.map((r) => r.address), raw: Buffer.concat(chunks).toString('utf8') });
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { mails, logins, port: (server.server.address() as AddressInfo).port };
}

function mailNotifier(port: number, more: string[] = [], secrets: string[] = []) {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug', base: undefined }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  const toml = ['[[notify]]', 'name = "mail"', 'type = "email"', 'smtp_host = "127.0.0.1"', `smtp_port = ${port}`, 'smtp_security = "none"', 'from = "lifeboat@example.net"', 'to = ["ops@example.net", "dba@example.net"]', ...more];
  const n = new Notifier({ host: 'host-1', entries: parseConfig(toml.join('\n'), 'test.toml').notify, store: new Map(), log, secrets, firstRetryMs: 1 });
  cleanups.push(() => n.close());
  return { n, lines };
}

function passwordFile(password: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lifeboat-smtp-'));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'password');
  fs.writeFileSync(file, `${password}\n`, { mode: 0o600 });
  return file;
}

/** The headers with folded lines joined, then the body. */
function parse(raw: string): { headers: string; body: string } {
  const at = raw.indexOf('\r\n\r\n');
  return { headers: raw.slice(0, at).replace(/\r\n[ \t]+/g, ' '), body: raw.slice(at + 4).replaceAll('\r\n', '\n') };
}

describe('Notifier: email', () => {
  it('mails the alert to every recipient: the subject and summary, the details, and no secret', async () => {
    const smtp = await smtpServer();
    const { n } = mailNotifier(smtp.port, [], ['tok_ABCDEF123']);
    n.report([{ event: 'backup_failed', subject: 'pgdata', firing: true, summary: 'volume pgdata: backup failed: bad token tok_ABCDEF123', detail: { volume: 'pgdata', code: 'LB_ERR_X' } }]);
    expect(await n.flush(20_000)).toBe(true);
    expect(smtp.mails).toHaveLength(1);
    const mail = smtp.mails[0]!;
    expect([mail.from, mail.to]).toEqual(['lifeboat@example.net', ['ops@example.net', 'dba@example.net']]);
    const { headers, body } = parse(mail.raw);
    expect(headers).toContain('Subject: [Lifeboat host-1] FIRING: volume pgdata: backup failed: bad token [redacted]');
    // 7bit: the body is as written, so looking for the secret in it means something
    expect(headers).toContain('Content-Transfer-Encoding: 7bit');
    expect(body).toMatch(/^volume pgdata: backup failed: bad token \[redacted\]\n\nEvent: {4}backup_failed \(backup failed\)\nState: {4}firing\n/);
    expect(body).toContain('\nDetails:\n  volume: pgdata\n  code: LB_ERR_X\n');
    expect(mail.raw).not.toContain('tok_ABCDEF123');
    expect(smtp.logins).toEqual([]);
  });

  it('logs in with the user and the password file\'s first line, and never sends that password on', async () => {
    const smtp = await smtpServer({ password: 'smtp-pa55word' });
    const { n } = mailNotifier(smtp.port, ['smtp_user = "lifeboat"', `smtp_password_file = "${passwordFile('smtp-pa55word')}"`]);
    n.recovered('site-a', 'recovered 2 containers of site-a (smtp-pa55word leaked here)');
    expect(await n.flush(20_000)).toBe(true);
    expect(smtp.logins).toEqual([{ method: 'PLAIN', username: 'lifeboat', password: 'smtp-pa55word' }]);
    expect(smtp.mails).toHaveLength(1);
    expect(parse(smtp.mails[0]!.raw).headers).toContain('Subject: [Lifeboat host-1] RECOVERED: recovered 2 containers of site-a ([redacted] leaked here)');
    expect(smtp.mails[0]!.raw).not.toContain('smtp-pa55word');
  });

  it('does not retry a login the server refuses (535)', async () => {
    const smtp = await smtpServer({ password: 'right' });
    const { n, lines } = mailNotifier(smtp.port, ['smtp_user = "lifeboat"', `smtp_password_file = "${passwordFile('wrong')}"`]);
    n.recovered('site-a', 'recovered');
    expect(await n.flush(20_000)).toBe(true);
    expect(smtp.logins).toHaveLength(1);
    expect(smtp.mails).toEqual([]);
    expect(lines.filter((l) => l.level === 50).map((l) => l.msg)).toEqual(['notification refused; not retried']);
    expect(JSON.stringify(lines)).not.toContain('wrong');
  });
});
