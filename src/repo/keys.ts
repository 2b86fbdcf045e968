import crypto from 'node:crypto';
import { z } from 'zod';
import { NotARepositoryError, WrongPasswordError } from '../errors/errors.ts';
import { type MasterKeys, sealSecret, unsealSecret } from './crypto.ts';

/**
 * scrypt at N=2^15, r=8 costs about 100 ms and 32 MiB: slow enough to make a
 * guess expensive, fast enough for a CLI call. Parameters live in the key file
 * so a later default can change without breaking old repositories.
 */
const DEFAULT_KDF = { N: 1 << 15, r: 8, p: 1 } as const;

const keyFileSchema = z.object({
  version: z.literal(1),
  kdf: z.literal('scrypt'),
  N: z.number().int().min(1024).max(1 << 22),
  r: z.number().int().min(1).max(32),
  p: z.number().int().min(1).max(16),
  salt: z.base64(),
  sealed: z.base64(),
  created: z.string(),
});
export type KeyFile = z.infer<typeof keyFileSchema>;

const payloadSchema = z.object({ enc: z.base64(), mac: z.base64() });

export function generateMasterKeys(): MasterKeys {
  return { enc: crypto.randomBytes(32), mac: crypto.randomBytes(32) };
}

function derive(password: string, salt: Buffer, kdf: { N: number; r: number; p: number }): Buffer {
  return crypto.scryptSync(password.normalize('NFC'), salt, 32, { ...kdf, maxmem: 256 * kdf.N * kdf.r + (1 << 20) });
}

export function wrapKeys(keys: MasterKeys, password: string, kdf = DEFAULT_KDF): KeyFile {
  const salt = crypto.randomBytes(32);
  const payload = Buffer.from(JSON.stringify({ enc: keys.enc.toString('base64'), mac: keys.mac.toString('base64') }));
  return {
    version: 1,
    kdf: 'scrypt',
    ...kdf,
    salt: salt.toString('base64'),
    sealed: sealSecret(derive(password, salt, kdf), payload).toString('base64'),
    created: new Date().toISOString(),
  };
}

export function parseKeyFile(text: string, repo: string): KeyFile {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new NotARepositoryError(repo, 'its key file is not JSON');
  }
  const parsed = keyFileSchema.safeParse(json);
  if (!parsed.success) throw new NotARepositoryError(repo, 'its key file is malformed');
  return parsed.data;
}

export function unwrapKeys(file: KeyFile, password: string, repo: string): MasterKeys {
  const wrapping = derive(password, Buffer.from(file.salt, 'base64'), file);
  const plain = unsealSecret(wrapping, Buffer.from(file.sealed, 'base64'));
  if (!plain) throw new WrongPasswordError(repo);
  const payload = payloadSchema.parse(JSON.parse(plain.toString('utf8')));
  return { enc: Buffer.from(payload.enc, 'base64'), mac: Buffer.from(payload.mac, 'base64') };
}
