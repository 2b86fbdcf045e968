import { describe, expect, it } from 'vitest';
import { NotARepositoryError, WrongPasswordError } from '../errors/errors.ts';
import { generateMasterKeys, type KeyFile, parseKeyFile, unwrapKeys, wrapKeys } from './keys.ts';

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
});
