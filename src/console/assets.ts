import fs from 'node:fs';
import path from 'node:path';

export interface Asset {
  readonly type: string;
  readonly body: Buffer;
}

const FILES: Readonly<Record<string, { file: string; type: string }>> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/console.js': { file: 'console.js', type: 'text/javascript; charset=utf-8' },
  '/console.css': { file: 'console.css', type: 'text/css; charset=utf-8' },
};

/**
 * Headers of every console response: only this origin's own script, style and
 * requests, no framing (an action's confirmation cannot be clickjacked), no
 * referrer, no sniffing.
 */
export const CONSOLE_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'X-Frame-Options': 'DENY',
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
};

const DIR = path.join(import.meta.dirname, 'assets');
const loaded = new Map<string, Asset>();

/** The console's page, script or style sheet at `pathname`, read once on first use; undefined for any other path. */
export function consoleAsset(pathname: string): Asset | undefined {
  const f = FILES[pathname];
  if (!f) return undefined;
  let a = loaded.get(pathname);
  if (!a) {
    a = { type: f.type, body: fs.readFileSync(path.join(DIR, f.file)) };
    loaded.set(pathname, a);
  }
  return a;
}
