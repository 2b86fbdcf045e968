import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ObjectStoreError } from '../errors/errors.ts';
import { S3Backend } from './s3.ts';

const servers: net.Server[] = [];
const sockets: net.Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

/** A "gateway" that accepts connections and never says a word. */
async function silent(): Promise<{ port: number; connections: () => number }> {
  let connections = 0;
  const server = net.createServer((s) => {
    connections++;
    sockets.push(s);
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  servers.push(server);
  return { port: (server.address() as net.AddressInfo).port, connections: () => connections };
}

const backend = (port: number, timeoutMs: number) =>
  new S3Backend({ endpoint: `http://127.0.0.1:${port}`, bucket: 'b', forcePathStyle: true, credentials: { accessKeyId: 'k', secretAccessKey: 's' }, timeoutMs });

async function listAll(b: S3Backend): Promise<unknown> {
  for await (const _ of b.list('pack'));
  return undefined;
}

describe('S3Backend against a store that does not answer', () => {
  it('a gateway that accepts and says nothing fails the request after the timeout (retried), with the store named', async () => {
    const gw = await silent();
    const err = await listAll(backend(gw.port, 300)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ObjectStoreError);
    expect((err as Error).message).toBe(`list pack files in s3://b/ at http://127.0.0.1:${gw.port}: no answer within 0.3 s`);
    expect(gw.connections()).toBeGreaterThanOrEqual(1);
  });

  it('a closed port is a typed failure naming the connection error', async () => {
    const gw = await silent();
    const port = gw.port;
    await new Promise((r) => servers.pop()!.close(r));
    const err = await listAll(backend(port, 300)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ObjectStoreError);
    expect((err as Error).message).toMatch(/cannot reach the store \(ECONNREFUSED\)$/);
  });
});
