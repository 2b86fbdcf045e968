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

/**
 * The key file is read before anything is authenticated, so its cost fields
 * are bounded: scrypt allocates 128*N*r bytes and works N*r*p, and a file
 * claiming N=2^22, r=32 would make opening the repository take 16 GiB. The
 * limits leave 8x the default's memory and 16x its work for stronger settings.
 */
export const KDF_MAX_MEMORY = 256 * 1024 * 1024;
export const KDF_MAX_WORK = 1 << 22;

const keyFileSchema = z.object({
  version: z.literal(1),
  kdf: z.literal('scrypt'),
  // scrypt needs a power of two; anything else would fail inside node:crypto, untyped
  N: z.number().int().min(1024).max(1 << 22).refine((n) => (n & (n - 1)) === 0),
  r: z.number().int().min(1).max(32),
  p: z.number().int().min(1).max(16),
  salt: z.base64(),
  sealed: z.base64(),
  created: z.string(),
});
export type KeyFile = z.infer<typeof keyFileSchema>;

const masterKey = z.base64().refine((k) => Buffer.from(k, 'base64').length === 32);
const payloadSchema = z.object({ enc: masterKey, mac: masterKey });

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
  const { N, r, p } = parsed.data;
  if (128 * N * r > KDF_MAX_MEMORY || N * r * p > KDF_MAX_WORK) {
    throw new NotARepositoryError(repo, `its key file asks for scrypt N=${N} r=${r} p=${p}, beyond the limits of 256 MiB and 16x the default work`);
  }
  return parsed.data;
}

/** The password opened the key file, so its payload was written by a key holder; still, it must hold two 32-byte keys. */
export function unwrapKeys(file: KeyFile, password: string, repo: string): MasterKeys {
  const wrapping = derive(password, Buffer.from(file.salt, 'base64'), file);
  const plain = unsealSecret(wrapping, Buffer.from(file.sealed, 'base64'));
  if (!plain) throw new WrongPasswordError(repo);
  let json: unknown;
  try {
    json = JSON.parse(plain.toString('utf8'));
  } catch {
    json = undefined;
  }
  const payload = payloadSchema.safeParse(json);
  if (!payload.success) throw new NotARepositoryError(repo, 'its key file holds malformed master keys');
  return { enc: Buffer.from(payload.data.enc, 'base64'), mac: Buffer.from(payload.data.mac, 'base64') };
}
