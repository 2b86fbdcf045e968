import fsp from 'node:fs/promises';
import type http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeServer, handler, listen } from '../agent/http.ts';
import { captureLog } from '../agent/testing/log.ts';
import { Access } from '../console/access.ts';
import { boundAddress } from '../util/listen.ts';
import { askAgent, volumeWorkThroughAgent } from './agent-client.ts';

const TOKEN = 'cli-token-9d2e';
let server: http.Server;
let address: string;
let dir: string;
const asked: string[] = [];

beforeAll(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lifeboat-client-'));
  await fsp.writeFile(path.join(dir, 'token'), `${TOKEN}\n`);
  await fsp.writeFile(path.join(dir, 'wrong'), 'another token\n');
  const endpoints = {
    metrics: async () => ({ contentType: 'text/plain', body: '' }),
    health: () => ({ ok: true, reasons: [] }),
    status: () => ({ agent: { running: true } }),
    backup: async (volume: string) => (asked.push(volume), { volume, outcome: 'success' }),
  };
  server = await listen('127.0.0.1:0', handler(endpoints, captureLog().log, new Access({ token: TOKEN })));
  address = boundAddress(server);
});
afterAll(async () => {
  await closeServer(server);
  await fsp.rm(dir, { recursive: true, force: true });
});

describe('the CLI asking a running agent that wants a token', () => {
  it('sends the token of [agent] token_file, and the header a POST needs', async () => {
    const a = await askAgent({ listen: address, token_file: path.join(dir, 'token') }, 'GET', '/status', 3000);
    expect(a).toEqual({ status: 200, body: { agent: { running: true } } });
    const r = await volumeWorkThroughAgent({ listen: address, token_file: path.join(dir, 'token') }, '/etc/lifeboat.toml', '/backup?volume=pg');
    expect(r).toEqual({ volume: 'pg', outcome: 'success' });
    expect(asked).toEqual(['pg']);
  });

  it('without the token, or with another, is refused with the agent\'s code and nothing is done', async () => {
    for (const token_file of [undefined, path.join(dir, 'wrong')]) {
      const a = await askAgent({ listen: address, token_file }, 'GET', '/status', 3000);
      expect(a).toMatchObject({ status: 401, body: { code: 'LB_ERR_UNAUTHORIZED' } });
      const err = await volumeWorkThroughAgent({ listen: address, token_file }, '/etc/lifeboat.toml', '/backup?volume=pg').catch((e: unknown) => e);
      expect((err as { code: string }).code).toBe('LB_ERR_UNAUTHORIZED');
    }
    expect(asked).toEqual(['pg']);
  });
});
