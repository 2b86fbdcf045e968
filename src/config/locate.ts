/**
 * Finds the line where a key path is defined in TOML text, so schema errors
 * (which only know the path) can say `file:line`. Not a TOML parser: it only
 * reads headers and keys, and skips values just well enough (strings, nested
 * brackets, comments) not to mistake their contents for keys. The text is
 * assumed to have parsed already.
 */

type Path = readonly (string | number)[];

/**
 * 1-based line of `path` in `text`. Array-of-tables elements are numbered from
 * 0 in file order, as in the parsed result. When the exact key is absent, the
 * line of its closest defined parent (its table header, or an inline value that
 * holds it); 0 when nothing on the path is in the text.
 */
export function locateKey(text: string, path: Path): number {
  const firstLine = new Map<string, number>();
  const arrayCount = new Map<string, number>();
  const define = (p: Path, line: number) => {
    const id = JSON.stringify(p);
    if (!firstLine.has(id)) firstLine.set(id, line);
  };

  let table: (string | number)[] = [];
  let open: ValueState | null = null; // a value that continues onto the next line
  const lines = text.split(/\r?\n/);

  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const lineNo = i + 1;
    if (open) {
      if (scanValue(line, 0, open)) open = null;
      continue;
    }
    const start = skipSpace(line, 0);
    const c = line[start];
    if (c === undefined || c === '#') continue;

    if (c === '[') {
      const isArray = line[start + 1] === '[';
      const key = readKey(line, start + (isArray ? 2 : 1));
      if (!key || !line.startsWith(isArray ? ']]' : ']', key.end)) continue;
      table = [];
      key.keys.forEach((k, j) => {
        table.push(k);
        const id = JSON.stringify(table);
        if (isArray && j === key.keys.length - 1) {
          define(table, lineNo); // the array itself: its first element
          const n = arrayCount.get(id) ?? 0;
          arrayCount.set(id, n + 1);
          table.push(n);
        } else {
          const n = arrayCount.get(id);
          if (n !== undefined) table.push(n - 1); // `[a.b]` under `[[a]]` means the last a
        }
      });
      define(table, lineNo);
      continue;
    }

    const key = readKey(line, start);
    if (!key || line[key.end] !== '=') continue;
    // dotted keys define each intermediate table on this line too
    for (let n = 1; n <= key.keys.length; n++) define([...table, ...key.keys.slice(0, n)], lineNo);
    const state: ValueState = { depth: 0, str: null };
    if (!scanValue(line, key.end + 1, state)) open = state;
  }

  for (let n = path.length; n > 0; n--) {
    const line = firstLine.get(JSON.stringify(path.slice(0, n)));
    if (line !== undefined) return line;
  }
  return 0;
}

const BARE = /[A-Za-z0-9_-]/;

function skipSpace(s: string, i: number): number {
  while (s[i] === ' ' || s[i] === '\t') i++;
  return i;
}

/** Reads `a . "b.c" . 'd'`; `end` is the first non-space index after the key. */
function readKey(s: string, i: number): { keys: string[]; end: number } | null {
  const keys: string[] = [];
  for (;;) {
    i = skipSpace(s, i);
    const q = s[i];
    if (q === '"' || q === "'") {
      const close = findClose(s, i + 1, q);
      if (close < 0) return null;
      const raw = s.slice(i + 1, close);
      keys.push(q === '"' ? unescape(raw) : raw);
      i = close + 1;
    } else {
      const from = i;
      while (i < s.length && BARE.test(s[i]!)) i++;
      if (i === from) return null;
      keys.push(s.slice(from, i));
    }
    i = skipSpace(s, i);
    if (s[i] !== '.') return { keys, end: i };
    i++;
  }
}

/** Index of the quote closing a single-line string opened before `i`, or -1. */
function findClose(s: string, i: number, quote: string): number {
  for (; i < s.length; i++) {
    if (quote === '"' && s[i] === '\\') i++;
    else if (s[i] === quote) return i;
  }
  return -1;
}

function unescape(raw: string): string {
  try {
    // JSON covers TOML's escapes except \UXXXXXXXX, which keys practically never use
    return JSON.parse(`"${raw}"`) as string;
  } catch {
    return raw;
  }
}

interface ValueState {
  depth: number; // open [ and { brackets
  str: '"""' | "'''" | null; // inside a multi-line string
}

/** Skips a value from `i`; returns true when it ends on this line. */
function scanValue(s: string, i: number, st: ValueState): boolean {
  while (i < s.length) {
    if (st.str) {
      const close = findTriple(s, i, st.str);
      if (close < 0) return false;
      i = close + 3;
      while (s[i] === st.str[0] && i < close + 5) i++; // `""""` ends with up to two quotes of content
      st.str = null;
      continue;
    }
    const c = s[i]!;
    if (c === '#') break;
    if (c === '"' || c === "'") {
      const triple = c.repeat(3);
      if (s.startsWith(triple, i)) {
        st.str = triple as '"""' | "'''";
        i += 3;
        continue;
      }
      const close = findClose(s, i + 1, c);
      i = close < 0 ? s.length : close + 1;
      continue;
    }
    if (c === '[' || c === '{') st.depth++;
    else if (c === ']' || c === '}') st.depth--;
    i++;
  }
  return st.str === null && st.depth <= 0;
}

function findTriple(s: string, i: number, triple: string): number {
  for (; i < s.length; i++) {
    if (triple === '"""' && s[i] === '\\') i++;
    else if (s.startsWith(triple, i)) return i;
  }
  return -1;
}
