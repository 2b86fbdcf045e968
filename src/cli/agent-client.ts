import { nodeHttp } from '../agent/http.ts';
import { parseListen } from '../util/listen.ts';

export type AgentAnswer = { readonly status: number; readonly body: unknown } | { readonly unreachable: string };

/**
 * Asks the running agent at its [agent] listen address (an unspecified
 * address, 0.0.0.0 or ::, is asked on loopback). Answers `unreachable` with
 * the reason when nothing answers, so a command can do the work itself.
 */
export function askAgent(listen: string, method: 'GET' | 'POST', path: string, timeoutMs: number): Promise<AgentAnswer> {
  const { host, port } = parseListen(listen);
  const target = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return new Promise((resolve) => {
    const req = nodeHttp().request({ host: target, port, method, path, timeout: timeoutMs, headers: { Accept: 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) });
        } catch {
          resolve({ unreachable: `HTTP ${res.statusCode}: not a Lifeboat agent's answer` });
        }
      });
      res.on('error', (err) => resolve({ unreachable: err.message }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ unreachable: err.code === 'ECONNREFUSED' ? 'connection refused' : err.message }));
    req.end();
  });
}
