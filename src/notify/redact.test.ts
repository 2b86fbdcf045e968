import { describe, expect, it } from 'vitest';
import { redactDetail, redactor, urlSecrets } from './redact.ts';

describe('redactor', () => {
  it('replaces every secret, the longest first, and ignores an empty one', () => {
    const redact = redactor(['abc', 'abcdef', '']);
    expect(redact('x abcdef y abc z abcabc')).toBe('x [redacted] y [redacted] z [redacted][redacted]');
    expect(redact('nothing here')).toBe('nothing here');
  });

  it('strips the credentials of any URL, keeping the rest', () => {
    const redact = redactor([]);
    expect(redact('see https://user:pass@host.example/p?q=1 and ftp://anon@files.example')).toBe('see https://host.example/p?q=1 and ftp://files.example');
    expect(redact('https://host.example/a@b')).toBe('https://host.example/a@b');
  });

  it('redacts the strings of a detail only', () => {
    expect(redactDetail({ a: 'key=k3y', n: 3, b: true, z: null }, redactor(['k3y']))).toEqual({ a: 'key=[redacted]', n: 3, b: true, z: null });
  });

  it('takes an entry URL whole, without its credentials, and its password in both spellings', () => {
    const secrets = urlSecrets('https://u:p%40ss@ntfy.example/topic');
    expect(secrets).toEqual(expect.arrayContaining(['https://u:p%40ss@ntfy.example/topic', 'https://ntfy.example/topic', 'p%40ss', 'p@ss']));
    expect(redactor(secrets)('posting to https://ntfy.example/topic failed')).toBe('posting to [redacted] failed');
  });
});
