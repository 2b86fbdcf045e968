import { nodeHttp } from '../agent/http.ts';
import { AgentJobError, UsageError } from '../errors/errors.ts';
import { parseListen } from '../util/listen.ts';
import { readPasswordFile } from '../config/password.ts';
import type { Config } from '../config/schema.ts';

export type AgentAnswer = { readonly status: number; readonly body: unknown } | { readonly unreachable: string };

/** Where the agent listens and the token it asks for: the config's [agent] table. */
export type AgentAddress = Pick<Config['agent'], 'listen' | 'token_file'>;

/**
 * Asks the running agent at its [agent] listen address (with its token, when
 * [agent] token_file is set) (an unspecified
 * address, 0.0.0.0 or ::, is asked on loopback). Answers `unreachable` with
 * the reason when nothing answers, so a command can do the work itself.
 */
export function askAgent(agent: AgentAddress, method: 'GET' | 'POST', path: string, timeoutMs: number): Promise<AgentAnswer> {
  const { host, port } = parseListen(agent.listen);
  const target = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  const headers: Record<string, string> = { Accept: 'application/json', 'X-Lifeboat-Request': 'cli' };
  if (agent.token_file !== undefined) headers.Authorization = `Bearer ${readPasswordFile(agent.token_file)}`;
  return new Promise((resolve) => {
    const req = nodeHttp().request({ host: target, port, method, path, timeout: timeoutMs, headers }, (res) => {
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

/**
 * Work on a volume the running agent does for a command (POST /backup,
 * /restore): its answer, or undefined when no agent answers, there is no
 * config to find it by, or it does not track the volume (the command then
 * does the work). A refusal of the caller's request is a usage error; a
 * failure there keeps the agent's code.
 */
export async function volumeWorkThroughAgent<T>(agent: AgentAddress, configFile: string | undefined, path: string): Promise<T | undefined> {
  if (!configFile || agent.listen === '') return undefined;
  const a = await askAgent(agent, 'POST', path, 24 * 3600_000);
  if ('unreachable' in a) return undefined;
  const body = a.body as { error?: string; code?: string };
  if (body.code === 'LB_ERR_VOLUME_NOT_TRACKED') return undefined;
  if (a.status === 400) throw new UsageError(`the running agent refused: ${body.error ?? 'HTTP 400'}`);
  if (a.status !== 200) throw new AgentJobError(body.error ?? `HTTP ${a.status}`, body.code ?? 'LB_ERR_INTERNAL');
  return a.body as T;
}
