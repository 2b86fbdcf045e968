import type { AlertDetail } from './alert.ts';

const REDACTED = '[redacted]';

/** The credentials of a URL, `scheme://user:password@`, up to the host. */
const USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#@]*@/gi;

export type Redact = (text: string) => string;

/**
 * Replaces every secret in a text with "[redacted]" (the longest first, so a
 * secret holding another goes whole), then strips credentials from URLs:
 * `https://user:pass@host` → `https://host`.
 */
export function redactor(secrets: readonly string[]): Redact {
  const list = [...new Set(secrets.filter((s) => s !== ''))].sort((a, b) => b.length - a.length);
  return (text) => {
    let out = text;
    for (const s of list) out = out.replaceAll(s, REDACTED);
    return out.replace(USERINFO, '$1');
  };
}

export function redactDetail(detail: AlertDetail, redact: Redact): AlertDetail {
  return Object.fromEntries(Object.entries(detail).map(([k, v]) => [k, typeof v === 'string' ? redact(v) : v]));
}

/** What of an entry's URL is secret: all of it (a Slack or ntfy URL is a password), and its password in either spelling. */
export function urlSecrets(url: string): string[] {
  const u = new URL(url);
  return [url, url.replace(USERINFO, '$1'), u.href, u.password, decoded(u.password)];
}

function decoded(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s; // a stray % the URL parser kept as it was
  }
}
