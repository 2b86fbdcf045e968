import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentCatalog } from '../catalog/agent-catalog.ts';
import { parseConfig } from '../config/load.ts';
import type { Alert } from './alert.ts';
import type { Condition } from './conditions.ts';
import { Notifier, type NotifierOptions } from './notifier.ts';
import { catalogAlertStore } from './store.ts';

interface Received {
  readonly method: string;
  readonly path: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

/** What the receiver does with a request: answer with a status, or take it and never answer. */
type Answer = number | 'hang' | ((r: Received) => number);

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A local HTTP server that records every request and answers as told (200 once the list runs out). */
async function receiver(answers: Answer[] = []) {
  const requests: Received[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const r = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      requests.push(r);
      const a = answers.shift() ?? 200;
      if (a === 'hang') return;
      const status = typeof a === 'function' ? a(r) : a;
      res.writeHead(status, { 'content-type': 'text/plain' }).end(status < 300 ? 'ok' : 'no good');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise((resolve) => {
    server.closeAllConnections();
    server.close(resolve);
  }));
  const { port } = server.address() as AddressInfo;
  return { requests, url: (p: string) => `http://127.0.0.1:${port}${p}` };
}

function capture() {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug', base: undefined }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { log, lines, text: () => lines.map((l) => JSON.stringify(l)).join('\n') };
}

const entries = (...toml: string[]) => parseConfig(toml.join('\n'), 'test.toml').notify;

function notifier(o: Partial<NotifierOptions> & Pick<NotifierOptions, 'entries'>) {
  const { log, lines, text } = capture();
  const store = new Map<string, string>();
  const n = new Notifier({ host: 'host-1', store, log, firstRetryMs: 1, ...o });
  cleanups.push(() => n.close());
  return { n, store, lines, logText: text };
}

const condition = (firing: boolean, event: Condition['event'] = 'backup_failed', subject = 'pgdata'): Condition => ({
  event,
  subject,
  firing,
  summary: firing ? `volume ${subject}: backup failed: disk full` : `volume ${subject}: backups succeed`,
  detail: { volume: subject, failures: 2, ok: !firing, error: null },
});

/** Waits for every delivery queued so far; fails the test when they take longer than a test may. */
async function settled(n: Notifier): Promise<void> {
  expect(await n.flush(20_000)).toBe(true);
}

describe('Notifier: deliveries', () => {
  it('POSTs the alert as JSON to a webhook, with its id as the Idempotency-Key', async () => {
    const r = await receiver();
    const { n, store } = notifier({ entries: entries('[[notify]]', 'name = "hook"', 'type = "webhook"', `url = "${r.url('/hook')}"`), now: () => Date.parse('2025-06-02T12:00:00Z') });
    n.report([condition(true)]);
    await settled(n);
    expect(r.requests).toHaveLength(1);
    const [req] = r.requests;
    expect([req!.method, req!.path, req!.headers['content-type']]).toEqual(['POST', '/hook', 'application/json']);
    const alert = JSON.parse(req!.body) as Alert;
    expect(alert).toEqual({
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      host: 'host-1',
      event: 'backup_failed',
      state: 'firing',
      subject: 'pgdata',
      time: '2025-06-02T12:00:00.000Z',
      summary: 'volume pgdata: backup failed: disk full',
      detail: { volume: 'pgdata', failures: 2, ok: false, error: null },
    });
    expect(req!.headers['idempotency-key']).toBe(alert.id);
    expect(store.get(JSON.stringify(['hook', 'backup_failed', 'pgdata']))).toBe('firing');
  });

  it('sends Slack a { text } of one or two lines with a plain prefix, escaping its markup', async () => {
    const r = await receiver();
    const { n } = notifier({ entries: entries('[[notify]]', 'name = "chat"', 'type = "slack"', `url = "${r.url('/services/T0/B0/x')}"`) });
    n.report([{ ...condition(true), summary: 'volume pgdata: backup failed: <a> & <b>' }]);
    await settled(n);
    n.report([condition(false)]);
    await settled(n);
    const texts = r.requests.map((q) => (JSON.parse(q.body) as { text: string }).text);
    expect(texts).toHaveLength(2);
    expect(texts[0]).toMatch(/^\*\[FIRING\]\* volume pgdata: backup failed: &lt;a&gt; &amp; &lt;b&gt;\nbackup failed \| pgdata \| host host-1 \| \d{4}-/);
    expect(texts[1]).toMatch(/^\*\[RESOLVED\]\* volume pgdata: backups succeed\n/);
    expect(Object.keys(JSON.parse(r.requests[0]!.body) as object)).toEqual(['text']);
  });

  it('sends ntfy the summary and details as text, and the title, priority and tags as headers', async () => {
    const r = await receiver();
    const { n } = notifier({ entries: entries('[[notify]]', 'name = "phone"', 'type = "ntfy"', `url = "${r.url('/lifeboat-alerts')}"`) });
    n.report([condition(true), condition(true, 'peer_unreachable', 'dr-site')]);
    await settled(n);
    n.report([condition(false)]);
    await settled(n);
    expect(r.requests.map((q) => [q.path, q.headers.title, q.headers.priority, q.headers.tags])).toEqual([
      ['/lifeboat-alerts', '[FIRING] host-1: backup failed: pgdata', 'urgent', 'lifeboat,backup_failed,firing'],
      ['/lifeboat-alerts', '[FIRING] host-1: peer unreachable: dr-site', 'high', 'lifeboat,peer_unreachable,firing'],
      ['/lifeboat-alerts', '[RESOLVED] host-1: backup failed: pgdata', 'default', 'lifeboat,backup_failed,resolved'],
    ]);
    expect(r.requests[0]!.body).toBe('volume pgdata: backup failed: disk full\nvolume: pgdata\nfailures: 2\nok: false\nerror: -');
    expect(r.requests[0]!.headers['content-type']).toBe('text/plain; charset=utf-8');
  });

  it('retries a 5xx with the same id, and delivers once', async () => {
    const r = await receiver([500, 503]);
    const { n, lines } = notifier({ entries: entries('[[notify]]', 'name = "hook"', 'type = "webhook"', `url = "${r.url('/hook')}"`) });
    n.report([condition(true)]);
    await settled(n);
    expect(r.requests).toHaveLength(3);
    const ids = r.requests.map((q) => (JSON.parse(q.body) as Alert).id);
    expect(new Set(ids).size).toBe(1);
    expect(r.requests.map((q) => q.headers['idempotency-key'])).toEqual(ids);
    expect(lines.filter((l) => l.msg === 'notification failed; retrying').map((l) => l.err)).toEqual(['HTTP 500: no good', 'HTTP 503: no good']);
    n.report([condition(true)]);
    await settled(n);
    expect(r.requests).toHaveLength(3);
  });

  it('gives up after `retries` more attempts, logging an error, and retries 408 and 429', async () => {
    const r = await receiver([429, 408, 500]);
    const { n, lines } = notifier({ entries: entries('[[notify]]', 'name = "hook"', 'type = "webhook"', `url = "${r.url('/hook')}"`, 'retries = 2') });
    n.report([condition(true)]);
    await settled(n);
    expect(r.requests).toHaveLength(3);
    expect(lines.filter((l) => l.msg === 'notification failed; giving up')).toMatchObject([{ level: 50, notify: 'hook', attempts: 3, err: 'HTTP 500: no good' }]);
  });

  it('does not retry a 400, and does not send that transition again', async () => {
    const r = await receiver([400]);
    const { n, lines } = notifier({ entries: entries('[[notify]]', 'name = "hook"', 'type = "webhook"', `url = "${r.url('/hook')}"`) });
    n.report([condition(true)]);
    await settled(n);
    expect(r.requests).toHaveLength(1);
    expect(lines.filter((l) => l.level === 50).map((l) => [l.msg, l.err])).toEqual([['notification refused; not retried', 'HTTP 400: no good']]);
    n.report([condition(true)]);
    await settled(n);
    expect(r.requests).toHaveLength(1);
    // the entry never heard it fire, so not its end either; firing anew is news again
    n.report([condition(false)]);
    n.report([condition(true)]);
    await settled(n);
    const alerts = r.requests.map((q) => JSON.parse(q.body) as Alert);
    expect(alerts.map((a) => a.state)).toEqual(['firing', 'firing']);
    expect(alerts[0]!.id).not.toBe(alerts[1]!.id);
  });

  it('times out on a receiver that never answers, then retries', async () => {
    const r = await receiver(['hang']);
    const { n, lines } = notifier({ entries: entries('[[notify]]', 'name = "hook"', 'type = "webhook"', `url = "${r.url('/hook')}"`, 'timeout = "200ms"') });
    n.report([condition(true)]);
    await settled(n);
    expect(r.requests).toHaveLength(2);
    expect(lines.filter((l) => l.msg === 'notification failed; retrying').map((l) => l.err)).toEqual(['no answer within 200ms']);
  });
});

describe('Notifier: conditions', () => {
  const hook = (url: string, ...more: string[]) => entries('[[notify]]', 'name = "hook"', 'type = "webhook"', `url = "${url}"`, ...more);
  const states = (rs: readonly Received[]) => rs.map((q) => `${(JSON.parse(q.body) as Alert).event}:${(JSON.parse(q.body) as Alert).state}`);

  it('sends a condition reported firing three times once, and its resolution once', async () => {
    const r = await receiver();
    const { n } = notifier({ entries: hook(r.url('/hook')) });
    for (let i = 0; i < 3; i++) {
      n.report([condition(true)]);
      await settled(n);
    }
    expect(states(r.requests)).toEqual(['backup_failed:firing']);
    n.report([condition(false)]);
    n.report([condition(false)]);
    await settled(n);
    expect(states(r.requests)).toEqual(['backup_failed:firing', 'backup_failed:resolved']);
    const [fired, resolved] = r.requests.map((q) => JSON.parse(q.body) as Alert);
    expect(fired!.id).not.toBe(resolved!.id);
  });

  it('sends nothing for a condition that was never firing', async () => {
    const r = await receiver();
    const { n } = notifier({ entries: hook(r.url('/hook')) });
    n.report([condition(false), condition(false, 'overdue')]);
    await settled(n);
    expect(r.requests).toEqual([]);
  });

  it('without send_resolved, tells only the firing, and a new firing after a resolution again', async () => {
    const r = await receiver();
    const { n } = notifier({ entries: hook(r.url('/hook'), 'send_resolved = false') });
    for (const firing of [true, false, true]) {
      n.report([condition(firing)]);
      await settled(n);
    }
    expect(states(r.requests)).toEqual(['backup_failed:firing', 'backup_failed:firing']);
  });

  it('sends only the events an entry lists', async () => {
    const r = await receiver();
    const { n } = notifier({ entries: hook(r.url('/hook'), 'events = ["drill_failed", "overdue"]') });
    n.report([condition(true), condition(true, 'drill_failed', 'site-a'), condition(true, 'overdue')]);
    n.recovered('site-a', 'recovered 3 containers of site-a');
    await settled(n);
    expect(states(r.requests)).toEqual(['drill_failed:firing', 'overdue:firing']);
  });

  it('after a restart over the same store, says nothing of a condition still firing, and tells its end', async () => {
    const r = await receiver();
    const first = notifier({ entries: hook(r.url('/hook')) });
    first.n.report([condition(true)]);
    await settled(first.n);
    await first.n.close();
    const second = notifier({ entries: hook(r.url('/hook')), store: first.store });
    second.n.report([condition(true)]);
    await settled(second.n);
    expect(states(r.requests)).toEqual(['backup_failed:firing']);
    second.n.report([condition(false)]);
    await settled(second.n);
    expect(states(r.requests)).toEqual(['backup_failed:firing', 'backup_failed:resolved']);
  });

  it('keeps what it told in the agent catalog, across a restart', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lifeboat-notify-'));
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const r = await receiver();
    for (let run = 0; run < 2; run++) {
      const catalog = AgentCatalog.open(dir);
      const { n } = notifier({ entries: hook(r.url('/hook')), store: catalogAlertStore(catalog) });
      n.report([condition(true)]);
      await settled(n);
      await n.close();
      if (run === 0) expect(catalog.getMeta(`notify.${JSON.stringify(['hook', 'backup_failed', 'pgdata'])}`)).toBe('firing');
      catalog.close();
    }
    expect(states(r.requests)).toEqual(['backup_failed:firing']);
  });

  it('sends nothing for a condition that fires and resolves while the entry is busy', async () => {
    let live: Notifier | undefined;
    const r = await receiver([
      () => {
        // the entry is delivering a recovery: the condition comes and goes meanwhile
        live!.report([condition(true)]);
        live!.report([condition(false)]);
        return 200;
      },
    ]);
    live = notifier({ entries: hook(r.url('/hook')) }).n;
    live.recovered('site-a', 'recovered');
    await settled(live);
    expect(states(r.requests)).toEqual(['recovered:firing']);
  });

  it('tells the end of a condition that resolved while its start was delivered, without waiting for another check', async () => {
    let live: Notifier | undefined;
    const r = await receiver([
      () => {
        live!.report([condition(false)]);
        return 200;
      },
    ]);
    live = notifier({ entries: hook(r.url('/hook')) }).n;
    live.report([condition(true)]);
    await settled(live);
    expect(states(r.requests)).toEqual(['backup_failed:firing', 'backup_failed:resolved']);
  });

  it('abandons the retries of a condition that resolved meanwhile, sending neither', async () => {
    let live: Notifier | undefined;
    const r = await receiver([
      () => {
        // resolved while the first attempt is answered with a failure
        live!.report([condition(false)]);
        return 500;
      },
    ]);
    live = notifier({ entries: hook(r.url('/hook')) }).n;
    live.report([condition(true)]);
    await settled(live);
    expect(states(r.requests)).toEqual(['backup_failed:firing']);
    live.report([condition(false)]);
    await settled(live);
    expect(r.requests).toHaveLength(1);
  });
});

describe('Notifier: recovered and heartbeats', () => {
  it('sends recovered once per call, each with its own id', async () => {
    const r = await receiver();
    const { n } = notifier({ entries: entries('[[notify]]', 'name = "hook"', 'type = "webhook"', `url = "${r.url('/hook')}"`) });
    n.recovered('site-a', 'recovered 3 containers of site-a', { containers: 3 });
    n.recovered('site-a', 'recovered 3 containers of site-a', { containers: 3 });
    await settled(n);
    const alerts = r.requests.map((q) => JSON.parse(q.body) as Alert);
    expect(alerts.map((a) => [a.event, a.state, a.subject, a.detail])).toEqual([
      ['recovered', 'firing', 'site-a', { containers: 3 }],
      ['recovered', 'firing', 'site-a', { containers: 3 }],
    ]);
    expect(alerts[0]!.id).not.toBe(alerts[1]!.id);
  });

  it('pings URL/start, URL and URL/fail with the message, for the volumes listed', async () => {
    const r = await receiver();
    const { n } = notifier({
      entries: entries('[[notify]]', 'name = "hc"', 'type = "heartbeat"', `url = "${r.url('/ping/abc')}"`, 'volumes = ["pgdata"]', '[[notify]]', 'name = "hook"', 'type = "webhook"', `url = "${r.url('/hook')}"`),
    });
    n.heartbeat('pgdata', 'start');
    n.heartbeat('other', 'start');
    n.heartbeat('pgdata', 'success', 'snapshot 1a2b3c, 12 MiB new');
    n.heartbeat('pgdata', 'fail', 'engine gone');
    n.heartbeat('other', 'fail', 'engine gone');
    await settled(n);
    expect(r.requests.map((q) => [q.method, q.path, q.body])).toEqual([
      ['GET', '/ping/abc/start', ''],
      ['POST', '/ping/abc', 'snapshot 1a2b3c, 12 MiB new'],
      ['POST', '/ping/abc/fail', 'engine gone'],
    ]);
  });

  it('pings every volume\'s backups when no volumes are listed', async () => {
    const r = await receiver();
    const { n } = notifier({ entries: entries('[[notify]]', 'name = "hc"', 'type = "heartbeat"', `url = "${r.url('/ping/abc/')}"`) });
    n.heartbeat('a', 'success');
    n.heartbeat('b', 'success');
    n.report([condition(true)]);
    await settled(n);
    expect(r.requests.map((q) => q.path)).toEqual(['/ping/abc', '/ping/abc']);
  });
});

describe('Notifier: secrets', () => {
  it('never sends or logs a secret, a URL\'s credentials, or an entry\'s URL', async () => {
    const r = await receiver([500, 500]);
    const secretPath = '/services/T0SECRET/B0SECRET/xyzzy';
    const hookUrl = r.url(secretPath).replace('http://', 'http://hookuser:hookpass@');
    const { n, logText } = notifier({
      entries: entries(
        '[[notify]]', 'name = "hook"', 'type = "webhook"', `url = "${hookUrl}"`,
        '[[notify]]', 'name = "chat"', 'type = "slack"', `url = "${r.url('/slack')}"`,
        '[[notify]]', 'name = "phone"', 'type = "ntfy"', `url = "${r.url('/topic')}"`,
        '[[notify]]', 'name = "hc"', 'type = "heartbeat"', `url = "${r.url('/ping')}"`,
      ),
      secrets: ['s3cr3t-password', 'tok_ABCDEF123'],
    });
    const leaky = 'failed with s3cr3t-password at https://u:p@db.example.net/x using tok_ABCDEF123';
    n.report([{ event: 'backup_failed', subject: 'pgdata', firing: true, summary: `volume pgdata: ${leaky}`, detail: { error: leaky, url: 'https://u:p@db.example.net/x' } }]);
    n.recovered('site-a', `recovered; ${leaky}`, { note: leaky });
    n.heartbeat('pgdata', 'fail', leaky);
    await settled(n);
    // two alerts to each of three entries and a ping, two of them retried
    expect(r.requests).toHaveLength(9);
    // the webhook's credentials went as basic authentication, and nowhere else
    expect(r.requests.find((q) => q.path === secretPath)!.headers.authorization).toBe(`Basic ${Buffer.from('hookuser:hookpass').toString('base64')}`);
    const sent = r.requests.map((q) => `${q.body}\n${JSON.stringify({ ...q.headers, authorization: undefined })}`).join('\n');
    for (const secret of ['s3cr3t-password', 'tok_ABCDEF123', 'u:p@', 'hookpass']) expect(sent).not.toContain(secret);
    expect(sent).toContain('[redacted]');
    expect(sent).toContain('https://db.example.net/x');
    const logged = logText();
    expect(logged).toContain('"notify":"hook"');
    for (const secret of [secretPath, 'hookpass', '/slack', '/topic', '/ping', r.url('')]) expect(logged).not.toContain(secret);
  });
});

describe('Notifier: flush and close', () => {
  it('flush gives up after its timeout on a delivery that hangs; close abandons it', async () => {
    const r = await receiver(['hang']);
    const { n } = notifier({ entries: entries('[[notify]]', 'name = "hook"', 'type = "webhook"', `url = "${r.url('/hook')}"`, 'timeout = "1h"') });
    n.report([condition(true)]);
    expect(await n.flush(50)).toBe(false);
    expect(r.requests).toHaveLength(1);
    await n.close();
    expect(await n.flush(50)).toBe(true);
    n.report([condition(false)]);
    n.recovered('a', 'b');
    expect(await n.flush(50)).toBe(true);
    expect(r.requests).toHaveLength(1);
  });
});
