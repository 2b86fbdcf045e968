import crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { NotARepositoryError, WrongPasswordError } from '../errors/errors.ts';
import { sealSecret } from './crypto.ts';
import { generateMasterKeys, KDF_MAX_MEMORY, KDF_MAX_WORK, type KeyFile, parseKeyFile, unwrapKeys, wrapKeys } from './keys.ts';

/** The smallest cost the key file schema accepts, so these tests take milliseconds. */
const FAST = { N: 1024, r: 8, p: 1 } as const;
const REPO = '/repo/under/test';

const roundTrip = (file: KeyFile) => parseKeyFile(JSON.stringify(file), REPO);

describe('key file', () => {
  it('wraps and unwraps the master keys with the right password', () => {
    const keys = generateMasterKeys();
    const file = wrapKeys(keys, 'hunter2', FAST);
    expect(file).toMatchObject({ version: 1, kdf: 'scrypt', ...FAST });
    const back = unwrapKeys(roundTrip(file), 'hunter2', REPO);
    expect(back.enc.equals(keys.enc)).toBe(true);
    expect(back.mac.equals(keys.mac)).toBe(true);
  });

  it('never stores the keys or the password in clear', () => {
    const keys = generateMasterKeys();
    const text = JSON.stringify(wrapKeys(keys, 'hunter2', FAST));
    expect(text).not.toContain(keys.enc.toString('base64'));
    expect(text).not.toContain(keys.mac.toString('base64'));
    expect(text).not.toContain('hunter2');
  });

  it('uses a fresh salt each time', () => {
    const keys = generateMasterKeys();
    expect(wrapKeys(keys, 'pw', FAST).salt).not.toBe(wrapKeys(keys, 'pw', FAST).salt);
  });

  it('refuses a wrong password with WrongPasswordError', () => {
    const file = roundTrip(wrapKeys(generateMasterKeys(), 'hunter2', FAST));
    for (const wrong of ['hunter3', '', 'Hunter2', 'hunter2 ']) {
      expect(() => unwrapKeys(file, wrong, REPO)).toThrow(WrongPasswordError);
    }
  });

  it('normalises the password (NFC), so a composed and a decomposed é both open it', () => {
    const keys = generateMasterKeys();
    const file = roundTrip(wrapKeys(keys, 'caf\u00e9', FAST));
    expect(unwrapKeys(file, 'cafe\u0301', REPO).enc.equals(keys.enc)).toBe(true);
  });

  it('treats an altered sealed payload or salt like a wrong password', () => {
    const file = roundTrip(wrapKeys(generateMasterKeys(), 'pw', FAST));
    const sealed = Buffer.from(file.sealed, 'base64');
    sealed[20]! ^= 1;
    expect(() => unwrapKeys({ ...file, sealed: sealed.toString('base64') }, 'pw', REPO)).toThrow(WrongPasswordError);
    const salt = Buffer.from(file.salt, 'base64');
    salt[0]! ^= 1;
    expect(() => unwrapKeys({ ...file, salt: salt.toString('base64') }, 'pw', REPO)).toThrow(WrongPasswordError);
  });

  it('refuses a malformed key file with NotARepositoryError naming the repository', () => {
    const good = wrapKeys(generateMasterKeys(), 'pw', FAST);
    const bad: string[] = [
      '',
      'not json',
      '[]',
      'null',
      '{}',
      JSON.stringify({ ...good, version: 2 }),
      JSON.stringify({ ...good, kdf: 'argon2' }),
      JSON.stringify({ ...good, N: 16 }),
      JSON.stringify({ ...good, N: 1.5 }),
      JSON.stringify({ ...good, r: 0 }),
      JSON.stringify({ ...good, salt: 'not base64!' }),
      JSON.stringify({ ...good, sealed: 42 }),
      JSON.stringify({ ...good, created: undefined }),
    ];
    for (const text of bad) {
      let err: unknown;
      try {
        parseKeyFile(text, REPO);
      } catch (e) {
        err = e;
      }
      expect(err, text).toBeInstanceOf(NotARepositoryError);
      expect((err as Error).message).toContain(REPO);
    }
  });

  // Found by the fuzz harness (test/reliability/fuzz): scrypt threw a raw RangeError on an N that is
  // not a power of two, and N=2^22 r=32 made opening the repository allocate 16 GiB.
  it('refuses scrypt parameters scrypt cannot take or that would cost too much, before deriving anything', () => {
    const good = wrapKeys(generateMasterKeys(), 'pw', FAST);
    const tooCostly = [
      { N: 1025, r: 8, p: 1 },
      { N: 3 << 10, r: 8, p: 1 },
      { N: 1 << 22, r: 32, p: 16 },
      { N: KDF_MAX_MEMORY / 128, r: 2, p: 1 },
      { N: 1 << 16, r: 8, p: 16 },
    ];
    for (const kdf of tooCostly) {
      expect(128 * kdf.N * kdf.r > KDF_MAX_MEMORY || kdf.N * kdf.r * kdf.p > KDF_MAX_WORK || (kdf.N & (kdf.N - 1)) !== 0).toBe(true);
      const started = performance.now();
      expect(() => parseKeyFile(JSON.stringify({ ...good, ...kdf }), REPO), JSON.stringify(kdf)).toThrow(NotARepositoryError);
      expect(performance.now() - started).toBeLessThan(1000);
    }
    // the largest settings within the limits still open
    const strong = { N: 1 << 18, r: 8, p: 2 };
    expect(128 * strong.N * strong.r).toBeLessThanOrEqual(KDF_MAX_MEMORY);
    expect(parseKeyFile(JSON.stringify({ ...good, ...strong }), REPO)).toMatchObject(strong);
  });

  // Found by the fuzz harness: a payload that authenticates but is not two base64 keys escaped as a
  // SyntaxError or ZodError, and keys of the wrong length failed later inside AES.
  it('refuses an authentic payload that does not hold two 32-byte keys with NotARepositoryError', () => {
    const good = wrapKeys(generateMasterKeys(), 'pw', FAST);
    const salt = Buffer.from(good.salt, 'base64');
    const wrapping = crypto.scryptSync('pw', salt, 32, FAST);
    const k32 = crypto.randomBytes(32).toString('base64');
    const payloads = ['not json', 'null', '{}', JSON.stringify({ enc: k32 }), JSON.stringify({ enc: k32, mac: 'AAAA' }), JSON.stringify({ enc: 5, mac: k32 })];
    for (const payload of payloads) {
      const file = { ...good, sealed: sealSecret(wrapping, Buffer.from(payload)).toString('base64') };
      expect(() => unwrapKeys(parseKeyFile(JSON.stringify(file), REPO), 'pw', REPO), payload).toThrow(NotARepositoryError);
    }
  });
});
