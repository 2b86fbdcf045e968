import { readFileSync } from 'node:fs';
import { parse, TomlError } from 'smol-toml';
import type * as z from 'zod';
import { ConfigError } from '../errors/errors.ts';
import { locateKey } from './locate.ts';
import { type Config, configSchema } from './schema.ts';

export function loadConfig(file: string): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    // "ENOENT: no such file or directory, open 'x'" → "no such file or directory (ENOENT)"
    const msg = (err as Error).message;
    const m = /^(E[A-Z]+): (.*?)(?:, \w+(?: '.*')?)?$/.exec(msg);
    throw new ConfigError(file, 0, '', `cannot read: ${m ? `${m[2]} (${m[1]})` : msg}`);
  }
  return parseConfig(text, file);
}

/** The line of a key path in a config file (0 when it is not written there, or the file cannot be read). */
export function lineOf(file: string, path: readonly (string | number)[]): number {
  try {
    return locateKey(readFileSync(file, 'utf8'), path);
  } catch {
    return 0;
  }
}

export function parseConfig(text: string, file: string): Config {
  return parseTomlWith(configSchema, text, file);
}

/**
 * Parses TOML and validates it against any schema, reporting the first problem
 * in file order as one ConfigError. Exported so other parts (and tests) can
 * validate TOML against their own schemas with the same messages.
 */
export function parseTomlWith<S extends z.ZodType>(schema: S, text: string, file: string): z.output<S> {
  let data: unknown;
  try {
    data = parse(text);
  } catch (err) {
    if (err instanceof TomlError) {
      // smol-toml's message carries a multi-line code frame; keep the first line only
      const detail = err.message.split('\n', 1)[0]!.replace(/^Invalid TOML document: /, '');
      throw new ConfigError(file, err.line, '', `invalid TOML: ${detail} (column ${err.column})`);
    }
    throw err;
  }

  const result = schema.safeParse(data);
  if (result.success) return result.data;

  const problems = result.error.issues.flatMap((issue) => {
    // an unknown-keys issue sits on the enclosing table; point at each stray key itself
    const paths = issue.code === 'unrecognized_keys' ? issue.keys.map((k) => [...issue.path, k]) : [issue.path];
    return paths.map((p) => {
      const path = p as (string | number)[]; // TOML data has no symbol keys
      return { issue, path, line: locateKey(text, path) };
    });
  });
  // earliest line first (unknown line last); sort is stable, so schema order breaks ties
  problems.sort((a, b) => (a.line || Infinity) - (b.line || Infinity));
  const { issue, path, line } = problems[0]!;
  throw new ConfigError(file, line, formatKeyPath(path), describe(issue, valueAt(data, path)));
}

/** `["peer", 1, "address"]` → `peer[1].address`; keys that are not bare are quoted as in TOML. */
export function formatKeyPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const k of path) {
    if (typeof k === 'number') out += `[${k}]`;
    else {
      const s = String(k);
      const key = /^[A-Za-z0-9_-]+$/.test(s) ? s : JSON.stringify(s);
      out += out ? `.${key}` : key;
    }
  }
  return out;
}

function describe(issue: z.core.$ZodIssue, value: unknown): string {
  if (issue.code === 'unrecognized_keys') return 'unknown key';
  // a key the schema's own rule asks for says why ("is required when ..."); a plain missing key just is
  if (value === undefined) return issue.code === 'custom' ? issue.message : 'is required';
  const expectation =
    issue.code === 'invalid_type' && issue.expected === 'object'
      ? 'must be a table'
      : issue.code === 'invalid_type' && issue.expected === 'array'
        ? 'must be an array'
        : issue.message;
  return `${expectation}, got ${formatValue(value)}`;
}

function formatValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Date) return v.toISOString(); // smol-toml's TomlDate prints as written via toISOString
  if (v !== null && typeof v === 'object') return 'a table';
  return String(v);
}

function valueAt(data: unknown, path: readonly PropertyKey[]): unknown {
  let v = data;
  for (const k of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  return v;
}
