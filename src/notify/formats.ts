/** How each entry type renders an alert: pure, so the shapes are tested without a network. */
import { type Alert, EVENT_TITLES } from './alert.ts';

/** FIRING, RESOLVED, or RECOVERED for the one-off event (a recovery is news, not a fire). */
function stateLabel(alert: Alert): string {
  return alert.event === 'recovered' ? 'RECOVERED' : alert.state.toUpperCase();
}

export interface HttpMessage {
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/** The alert itself, as JSON; the Idempotency-Key lets a receiver drop a retried delivery it already has. */
export function webhookMessage(alert: Alert): HttpMessage {
  return { headers: { 'content-type': 'application/json', 'idempotency-key': alert.id }, body: JSON.stringify(alert) };
}

/** A Slack incoming webhook's `{ text }`: the summary, then what it is about. */
export function slackMessage(alert: Alert): HttpMessage {
  const text = `*[${stateLabel(alert)}]* ${slackEscape(alert.summary)}\n${EVENT_TITLES[alert.event]} | ${slackEscape(alert.subject)} | host ${slackEscape(alert.host)} | ${alert.time}`;
  return { headers: { 'content-type': 'application/json', 'idempotency-key': alert.id }, body: JSON.stringify({ text }) };
}

/** Slack reads &, < and > as markup (links, mentions): written as entities they are text. */
const slackEscape = (s: string) => s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');

/** Events whose firing means data is not being protected now: ntfy's top priority. */
const URGENT: ReadonlySet<Alert['event']> = new Set(['backup_failed', 'overdue', 'rpo_over_target']);

/** ntfy: the summary and details as the message, what it is in the headers. */
export function ntfyMessage(alert: Alert): HttpMessage {
  const priority = alert.state === 'resolved' ? 'default' : URGENT.has(alert.event) ? 'urgent' : 'high';
  return {
    headers: {
      'content-type': 'text/plain; charset=utf-8',
      'idempotency-key': alert.id,
      title: headerText(`[${stateLabel(alert)}] ${alert.host}: ${EVENT_TITLES[alert.event]}: ${alert.subject}`),
      priority,
      tags: headerText(`lifeboat,${alert.event},${alert.state}`),
    },
    body: [alert.summary, ...detailLines(alert)].join('\n'),
  };
}

/** A header value as ntfy reads it: printable ASCII as it is, anything else RFC 2047-encoded. */
function headerText(s: string): string {
  return /^[\x20-\x7e]*$/.test(s) ? s : `=?UTF-8?B?${Buffer.from(s, 'utf8').toString('base64')}?=`;
}

export function emailMessage(alert: Alert): { readonly subject: string; readonly text: string } {
  const lines = [
    alert.summary,
    '',
    `Event:    ${alert.event} (${EVENT_TITLES[alert.event]})`,
    `State:    ${alert.state}`,
    `Subject:  ${alert.subject}`,
    `Host:     ${alert.host}`,
    `Time:     ${alert.time}`,
    `Alert id: ${alert.id}`,
  ];
  const detail = detailLines(alert);
  if (detail.length > 0) lines.push('', 'Details:', ...detail.map((l) => `  ${l}`));
  return { subject: `[Lifeboat ${alert.host}] ${stateLabel(alert)}: ${alert.summary}`, text: `${lines.join('\n')}\n` };
}

function detailLines(alert: Alert): string[] {
  return Object.entries(alert.detail ?? {}).map(([k, v]) => `${k}: ${v ?? '-'}`);
}
