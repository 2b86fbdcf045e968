/**
 * Every error code the CLI can print is documented in README.md's error-code
 * table, and the table documents no code the sources cannot raise. The codes
 * are the `LB_ERR_...` literals under src/ (tests excluded); one that ends in
 * `_` is built from a template (`LB_ERR_SYSTEM_${errno}`) and is a family,
 * written `LB_ERR_SYSTEM_*` in the README. Fast: reads files, runs nothing.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '../..');
const CODE = /LB_ERR_[A-Z0-9_]+/g;

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      // test fixtures and fakes are not the product
      if (entry.name !== 'testing') out.push(...sourceFiles(p));
    } else if (/\.ts$/.test(entry.name) && !/\.test\.ts$/.test(entry.name)) {
      out.push(p);
    }
  }
  return out;
}

/** Each code literal in src/, with the files it appears in. */
function sourceCodes(): Map<string, string[]> {
  const codes = new Map<string, string[]>();
  for (const file of sourceFiles(path.join(ROOT, 'src'))) {
    for (const [code] of fs.readFileSync(file, 'utf8').matchAll(CODE)) {
      const files = codes.get(code) ?? [];
      const rel = path.relative(ROOT, file);
      if (!files.includes(rel)) files.push(rel);
      codes.set(code, files);
    }
  }
  return codes;
}

interface Documented {
  /** The codes of the table, as written: `LB_ERR_X`, or `LB_ERR_X_*` for a family. */
  readonly entries: string[];
  /** Each entry's row. */
  readonly rows: Map<string, string>;
}

/** The README's table with the header `| code | meaning |`: every backquoted code in its first column. */
function readmeCodes(): Documented {
  const lines = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8').split('\n');
  const start = lines.findIndex((l) => /^\|\s*code\s*\|\s*meaning\s*\|\s*$/.test(l));
  expect(start, 'README.md has no "| code | meaning |" table').toBeGreaterThanOrEqual(0);
  const entries: string[] = [];
  const rows = new Map<string, string>();
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break;
    const first = line.split('|')[1] ?? '';
    for (const [, code] of first.matchAll(/`(LB_ERR_[A-Z0-9_]+\*?)`/g)) {
      entries.push(code!);
      rows.set(code!, line);
    }
  }
  return { entries, rows };
}

const isFamily = (code: string) => code.endsWith('_');

describe("README.md's error-code table", () => {
  const source = sourceCodes();
  const { entries, rows } = readmeCodes();
  const families = [...source.keys()].filter(isFamily);

  test('the sources are read (sanity)', () => {
    expect(source.has('LB_ERR_USAGE')).toBe(true);
    expect(source.has('LB_ERR_SYSTEM_')).toBe(true);
    expect(entries.length).toBeGreaterThan(20);
  });

  test('documents every code the sources can raise', () => {
    const missing: string[] = [];
    for (const [code, files] of source) {
      const documented = isFamily(code)
        ? entries.includes(`${code}*`)
        : // a member of a family the sources build (LB_ERR_SYSTEM_ENOENT) is covered by the family's entry
          entries.includes(code) || families.some((f) => code.startsWith(f) && entries.includes(`${f}*`));
      if (!documented) missing.push(`${isFamily(code) ? `${code}*` : code} (${files.join(', ')})`);
    }
    expect(missing, 'codes the CLI can print that README.md\'s "| code | meaning |" table does not document: add a row (one line, "(exit 2)" when it exits 2)').toEqual([]);
  });

  test('documents no code the sources cannot raise, and each once', () => {
    const unknown = entries.filter((e) => (e.endsWith('*') ? !source.has(e.slice(0, -1)) : !source.has(e) && !families.some((f) => e.startsWith(f))));
    expect(unknown, 'README.md documents codes nothing under src/ raises').toEqual([]);
    expect(entries.filter((e, i) => entries.indexOf(e) !== i), 'codes documented twice').toEqual([]);
  });

  test('a code whose error exits 2 says so in its row', () => {
    // `code = 'LB_ERR_X'` and `exitCode = 2` in the same class body
    const exit2: string[] = [];
    for (const file of sourceFiles(path.join(ROOT, 'src'))) {
      for (const rest of fs.readFileSync(file, 'utf8').split(/\bclass\s+/).slice(1)) {
        const body = rest.split(/\n}\n/)[0]!;
        const code = /\bcode\s*=\s*'(LB_ERR_[A-Z0-9_]+)'/.exec(body)?.[1];
        if (code && /\bexitCode\s*=\s*2\b/.test(body)) exit2.push(code);
      }
    }
    expect(exit2).toContain('LB_ERR_USAGE');
    const unsaid = exit2.filter((code) => !/\(exit 2\)/.test(rows.get(code) ?? ''));
    expect(unsaid, 'rows that should say "(exit 2)"').toEqual([]);
    const wrong = entries.filter((code) => /\(exit 2\)/.test(rows.get(code)!) && !exit2.includes(code));
    expect(wrong, 'rows that say "(exit 2)" of a code that exits 1').toEqual([]);
  });
});
