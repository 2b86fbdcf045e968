/**
 * The README's commands table is true: every command it documents answers
 * --help, and every flag its row names is one the command takes.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { ok, ROOT } from './run.ts';

const README = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
const FILTER_FLAGS = ['--host', '--volume', '--path', '--tag'];

interface Row {
  readonly commands: string[][];
  readonly flags: string[];
}

/** The rows of the table under "| command | does |": the command words (alternatives spelled a\|b) and the flags. */
function rows(): Row[] {
  const table = README.slice(README.indexOf('| command | does |'));
  const out: Row[] = [];
  for (const line of table.split('\n').slice(2)) {
    if (!line.startsWith('| `')) break;
    const cell = /^\| `([^`]+)`/.exec(line)![1]!.replaceAll('\\|', '|');
    // the words before the first flag or option: "key list|add|remove NAME|passwd" is four commands
    const words: string[] = [];
    for (const token of cell.split(' ')) {
      if (token.startsWith('-') || token.startsWith('[')) break;
      words.push(...token.split('|').filter((w) => /^[a-z][a-z-]*$/.test(w)));
    }
    const [head, ...rest] = words;
    const subs = rest.length > 0 ? rest.map((w) => [head!, w]) : [[head!]];
    const flags = [...cell.matchAll(/(--?[a-z][a-z-]*)((?:\/[a-z]+)*)/g)].flatMap(([, flag, alternatives]) => {
      const more = (alternatives ?? '').split('/').filter(Boolean);
      return [flag!, ...more.map((m) => flag!.replace(/[a-z]+$/, m))];
    });
    if (cell.includes('FILTERS')) flags.push(...FILTER_FLAGS);
    if (line.includes('(or `check`)')) subs.push(['check']);
    out.push({ commands: subs, flags });
  }
  return out;
}

describe("the README's commands table", () => {
  const table = rows();

  test('is read whole (a sanity check of the parser)', () => {
    expect(table.length).toBeGreaterThan(25);
    expect(table.flatMap((r) => r.commands.map((c) => c.join(' ')))).toEqual(expect.arrayContaining(['init', 'key list', 'key passwd', 'service uninstall', 'config check', 'check']));
  });

  test.each(table.map((r) => [r.commands.map((c) => c.join(' ')).join(', '), r] as const))('%s: --help answers and names every flag of the row', async (_name, row) => {
    const global = (await ok(['--help'])).stdout;
    const helps = await Promise.all(row.commands.map(async (c) => (await ok([...c, '--help'])).stdout));
    for (const flag of row.flags) {
      const known = helps.some((h) => new RegExp(`(^|[\\s,])${flag}[\\s,<\\[]`, 'm').test(h)) || new RegExp(`(^|\\s)${flag}\\b`, 'm').test(global);
      expect(known, `${row.commands.map((c) => c.join(' ')).join('/')} does not take ${flag}`).toBe(true);
    }
  });
});
