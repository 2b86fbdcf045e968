import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { UsageError } from '../errors/errors.ts';
import { certificateId, identityDir, loadOrCreateIdentity } from './identity.ts';
import { parseId } from '../util/peer-id.ts';

describe('agent identity', () => {
  let state: string;
  beforeEach(() => {
    state = fs.mkdtempSync(path.join(os.tmpdir(), 'lifeboat-id-'));
  });
  afterEach(() => fs.rmSync(state, { recursive: true, force: true }));

  it('is made once, kept 0600, and its id is the certificate\'s SHA-256', async () => {
    const a = await loadOrCreateIdentity(state);
    expect(a.id).toMatch(/^[0-9a-f]{64}$/);
    const fingerprint = new crypto.X509Certificate(a.certPem).fingerprint256.replaceAll(':', '').toLowerCase();
    expect(a.id).toBe(fingerprint);
    for (const f of ['cert.pem', 'key.pem']) expect(fs.statSync(path.join(identityDir(state), f)).mode & 0o777).toBe(0o600);
    const b = await loadOrCreateIdentity(state);
    expect(b).toEqual(a);
    const other = fs.mkdtempSync(path.join(os.tmpdir(), 'lifeboat-id-'));
    try {
      expect((await loadOrCreateIdentity(other)).id).not.toBe(a.id);
    } finally {
      fs.rmSync(other, { recursive: true, force: true });
    }
  });

  it('is a key pair TLS accepts, and a peer sees the same id', async () => {
    const me = await loadOrCreateIdentity(state);
    const server = tls.createServer({ cert: me.certPem, key: me.keyPem, minVersion: 'TLSv1.3' }, (s) => s.end('hi'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    try {
      const seen = await new Promise<string>((resolve, reject) => {
        // No CA: the client trusts nothing but the pinned id.
        const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
          resolve(certificateId(s.getPeerX509Certificate()!.raw));
          s.end();
        });
        s.on('error', reject);
      });
      expect(seen).toBe(me.id);
    } finally {
      server.close();
    }
  });

  it('refuses a half-present or mismatched identity rather than making a new one', async () => {
    await loadOrCreateIdentity(state);
    const dir = identityDir(state);
    const key = fs.readFileSync(path.join(dir, 'key.pem'));
    fs.rmSync(path.join(dir, 'key.pem'));
    await expect(loadOrCreateIdentity(state)).rejects.toBeInstanceOf(UsageError);
    const other = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' });
    fs.writeFileSync(path.join(dir, 'key.pem'), other, { mode: 0o600 });
    await expect(loadOrCreateIdentity(state)).rejects.toThrow(/does not belong/);
    fs.writeFileSync(path.join(dir, 'key.pem'), key, { mode: 0o600 });
    expect((await loadOrCreateIdentity(state)).id).toMatch(/^[0-9a-f]{64}$/);
  });

  it('parses ids as printed or as OpenSSL writes fingerprints', () => {
    const id = 'ab'.repeat(32);
    expect(parseId(id)).toBe(id);
    expect(parseId(id.toUpperCase().match(/../g)!.join(':'))).toBe(id);
    expect(parseId('ab-cd')).toBeUndefined();
    expect(parseId('zz'.repeat(32))).toBeUndefined();
  });
});
