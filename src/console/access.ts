import crypto from 'node:crypto';
import type http from 'node:http';

/** Why a request is turned away, with the status it gets. */
export interface Refusal {
  readonly status: 401 | 403;
  readonly error: string;
}

export const SESSION_COOKIE = 'lifeboat_session';
/** The header every POST must carry: a browser sends it cross-site only after a CORS preflight, which this endpoint never grants. */
export const REQUEST_HEADER = 'x-lifeboat-request';
const SESSION_MS = 12 * 3600_000;
const MAX_SESSIONS = 64;

export interface AccessOptions {
  /** The token (or password) of [agent] token_file; undefined when the endpoint is loopback-only and open. */
  readonly token: string | undefined;
  readonly now?: () => number;
}

const digest = (s: string) => crypto.createHash('sha256').update(s).digest();
const LOOPBACK_HOST = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$/i;

/**
 * Who may talk to the agent's HTTP endpoint, in three checks:
 * - without a token (loopback only), the Host header must name loopback, so a
 *   web page whose domain was rebound to 127.0.0.1 cannot read or drive it;
 * - a POST must carry X-Lifeboat-Request, and an Origin or Sec-Fetch-Site that
 *   says it came from this origin, so no other site can submit an action;
 * - with a token, everything but the console's static files, /healthz and
 *   sign-in needs `Authorization: Bearer TOKEN` or a session cookie that
 *   signing in with the token gave.
 */
export class Access {
  readonly #token: Buffer | undefined;
  readonly #now: () => number;
  /** Session id to expiry (ms); in memory, so a restart signs everybody out. */
  readonly #sessions = new Map<string, number>();

  constructor(opts: AccessOptions) {
    this.#token = opts.token === undefined ? undefined : digest(opts.token);
    this.#now = opts.now ?? Date.now;
  }

  get protected(): boolean {
    return this.#token !== undefined;
  }

  /** The checks that hold for every request, signed in or not. */
  screen(req: http.IncomingMessage): Refusal | undefined {
    const host = req.headers.host ?? '';
    if (!this.#token && !LOOPBACK_HOST.test(host)) {
      return { status: 403, error: `Host ${JSON.stringify(host)} is not a loopback name: this agent listens on loopback only (set [agent] token_file to serve other names)` };
    }
    if (req.method !== 'POST') return undefined;
    if (req.headers[REQUEST_HEADER] === undefined) return { status: 403, error: `a POST needs the ${REQUEST_HEADER} header (refused as a possible cross-site request)` };
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== `http://${host}` && origin !== `https://${host}`) return { status: 403, error: `cross-site request from ${origin} refused` };
    const site = req.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin' && site !== 'none') return { status: 403, error: `cross-site request (${site}) refused` };
    return undefined;
  }

  /** Whether the request proves it knows the token (always, when there is none). */
  authenticated(req: http.IncomingMessage): boolean {
    if (!this.#token) return true;
    const auth = req.headers.authorization;
    if (auth?.startsWith('Bearer ')) return this.#matches(auth.slice(7).trim());
    const sid = cookie(req.headers.cookie, SESSION_COOKIE);
    if (sid === undefined) return false;
    const expiry = this.#sessions.get(sid);
    if (expiry === undefined) return false;
    if (expiry > this.#now()) return true;
    this.#sessions.delete(sid);
    return false;
  }

  /** Signs in with the token: the Set-Cookie header value of a new session, or undefined for a wrong token. */
  signIn(presented: string): string | undefined {
    if (!this.#token || !this.#matches(presented)) return undefined;
    const now = this.#now();
    for (const [sid, expiry] of this.#sessions) if (expiry <= now) this.#sessions.delete(sid);
    // the oldest session goes first: a script signing in in a loop cannot grow the map
    while (this.#sessions.size >= MAX_SESSIONS) this.#sessions.delete(this.#sessions.keys().next().value!);
    const sid = crypto.randomBytes(32).toString('base64url');
    this.#sessions.set(sid, now + SESSION_MS);
    return `${SESSION_COOKIE}=${sid}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${SESSION_MS / 1000}`;
  }

  /** Ends the request's session; the Set-Cookie header value that clears it. */
  signOut(req: http.IncomingMessage): string {
    const sid = cookie(req.headers.cookie, SESSION_COOKIE);
    if (sid !== undefined) this.#sessions.delete(sid);
    return `${SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`;
  }

  #matches(presented: string): boolean {
    return crypto.timingSafeEqual(digest(presented), this.#token!);
  }
}

function cookie(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
