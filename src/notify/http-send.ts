import type http from 'node:http';
import { NotificationFailedError } from '../errors/errors.ts';
import { formatDuration } from '../util/units.ts';

export interface HttpSend {
  readonly url: string;
  readonly method: 'GET' | 'POST';
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string | undefined;
  readonly timeoutMs: number;
  readonly signal: AbortSignal;
}

/** How much of a refusal's body the error quotes. */
const BODY_QUOTED = 200;

/**
 * One request, through node:http(s) taken when the first delivery happens:
 * importing node:http as an ES module, or calling fetch, loads undici, 12-14
 * MB of resident memory an idle agent should not carry. Resolves on a 2xx;
 * else rejects with a NotificationFailedError, permanent unless the status
 * says trying later may help (408, 429, 5xx). Redirects are not followed.
 */
export function httpSend(r: HttpSend): Promise<void> {
  const url = new URL(r.url);
  const mod = process.getBuiltinModule(url.protocol === 'https:' ? 'node:https' : 'node:http') as typeof http;
  const body = r.body === undefined ? undefined : Buffer.from(r.body, 'utf8');
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (err?: NotificationFailedError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) {
        req.destroy();
        reject(err);
      } else {
        resolve();
      }
    };
    const headers = { 'user-agent': 'lifeboat', ...r.headers, ...(body ? { 'content-length': String(body.length) } : {}) };
    // url carries any user:password@ as basic authentication
    const req = mod.request(url, { method: r.method, headers, signal: r.signal }, (res) => {
      const chunks: Buffer[] = [];
      let kept = 0;
      res.on('data', (c: Buffer) => {
        if (kept < BODY_QUOTED) chunks.push(c);
        kept += c.length;
      });
      res.on('error', (err) => settle(new NotificationFailedError(networkMessage(err), { permanent: false, cause: err })));
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 300) return settle();
        const text = Buffer.concat(chunks).toString('utf8').slice(0, BODY_QUOTED).replace(/\s+/g, ' ').trim();
        const retryable = status === 408 || status === 429 || status >= 500;
        settle(new NotificationFailedError(`HTTP ${status}${text ? `: ${text}` : ''}`, { permanent: !retryable, retryAfterMs: retryAfter(res.headers['retry-after']) }));
      });
    });
    const timer = setTimeout(() => settle(new NotificationFailedError(`no answer within ${formatDuration(r.timeoutMs)}`, { permanent: false })), r.timeoutMs);
    req.on('error', (err) => settle(new NotificationFailedError(networkMessage(err), { permanent: false, cause: err })));
    req.end(body);
  });
}

function networkMessage(err: NodeJS.ErrnoException): string {
  return err.code && !err.message.includes(err.code) ? `${err.message} (${err.code})` : err.message;
}

/** Retry-After: seconds, or an HTTP date. */
function retryAfter(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}
