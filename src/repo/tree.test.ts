import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CorruptDataError, UnsafePathError } from '../errors/errors.ts';
import { byName, checkName, decodeTree, encodeTree, type Tree, type TreeNode } from './tree.ts';

const HEX = 'ab'.repeat(32);

function node(name: string, over: Partial<Record<keyof TreeNode, unknown>> = {}): TreeNode {
  return {
    name,
    type: 'file',
    mode: 0o644,
    uid: 1000,
    gid: 1000,
    mtime: '1700000000123456789',
    ctime: '1700000000123456789',
    ino: '42',
    dev: '2049',
    nlink: 1,
    size: 3,
    blocks: [HEX],
    ...over,
  } as TreeNode;
}

const enc = (nodes: unknown[]) => Buffer.from(JSON.stringify({ nodes }));

function decodeError(nodes: unknown[]): unknown {
  try {
    decodeTree(enc(nodes), '/some/dir');
  } catch (e) {
    return e;
  }
  return undefined;
}

describe('decodeTree', () => {
  it('accepts a valid tree of every node type and returns it unchanged', () => {
    const tree: Tree = {
      nodes: [
        node('a file'),
        node('dir', { type: 'dir', subtree: HEX, blocks: undefined, size: 0 }),
        node('empty', { blocks: [], size: 0 }),
        node('fifo', { type: 'fifo', blocks: undefined, size: 0, rdev: 0 }),
        node('link', { type: 'symlink', target: '../anything/even/..', blocks: undefined, size: 0 }),
        node('é日😀', { blocks: [HEX, 'cd'.repeat(32)], size: 9 }),
      ],
    };
    const back = decodeTree(encodeTree(tree), '/');
    expect(back).toEqual(JSON.parse(JSON.stringify(tree)));
  });

  it('takes a file\'s blocks inline or as lists, never both or neither', () => {
    expect(decodeTree(enc([node('big', { blocks: undefined, lists: [HEX] })]), '/').nodes[0]!.lists).toEqual([HEX]);
    expect(decodeError([node('both', { lists: [HEX] })])).toBeInstanceOf(CorruptDataError);
    expect(decodeError([node('neither', { blocks: undefined })])).toBeInstanceOf(CorruptDataError);
    expect(decodeError([node('bad list id', { blocks: undefined, lists: ['xyz'] })])).toBeInstanceOf(CorruptDataError);
  });

  it('accepts times before 1970 (negative), but no sign on inode or device', () => {
    const tree = { nodes: [node('old', { mtime: '-630719999123456789', ctime: '-1' })] };
    expect(decodeTree(enc(tree.nodes), '/').nodes[0]!.mtime).toBe('-630719999123456789');
    for (const over of [{ ino: '-1' }, { dev: '-5' }, { mtime: '-' }, { mtime: '--5' }, { mtime: '+5' }]) {
      expect(decodeError([node('n', over)]), JSON.stringify(over)).toBeInstanceOf(CorruptDataError);
    }
  });

  it('accepts an empty directory', () => {
    expect(decodeTree(enc([]), '/').nodes).toEqual([]);
  });

  it.each(['..', '.', '', 'a/b', '/', '/etc', 'a\0b', '\0', '../x'])('refuses the name %j with UnsafePathError', (name) => {
    const err = decodeError([node(name)]);
    expect(err).toBeInstanceOf(UnsafePathError);
    expect((err as Error).message).toContain('/some/dir');
  });

  it('refuses an unsafe name anywhere in the list, not only first', () => {
    expect(decodeError([node('a'), node('b'), node('..')])).toBeInstanceOf(UnsafePathError);
  });

  it('accepts names that only look unusual', () => {
    for (const name of ['...', '.hidden', 'a..b', ' ', 'back\\slash', 'colon:', '-']) {
      expect(() => decodeTree(enc([node(name)]), '/')).not.toThrow();
    }
  });

  it('refuses unsorted and duplicate names', () => {
    expect(decodeError([node('b'), node('a')])).toBeInstanceOf(CorruptDataError);
    expect(decodeError([node('a'), node('a')])).toBeInstanceOf(CorruptDataError);
    expect((decodeError([node('a'), node('c'), node('b')]) as Error).message).toMatch(/sorted/);
  });

  it('sorts in the order it checks (byName): any set of names sorted by byName decodes', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.string({ unit: 'binary', minLength: 1, maxLength: 6 }).filter((s) => !s.includes('/') && !s.includes('\0') && s !== '.' && s !== '..'), { maxLength: 20 }), (names) => {
        const nodes = names.map((n) => node(n)).sort(byName);
        expect(decodeTree(enc(nodes), '/').nodes.map((n) => n.name)).toEqual(nodes.map((n) => n.name));
      }),
      { numRuns: 100 },
    );
  });

  it('refuses bad block ids and bad subtrees', () => {
    for (const blocks of [HEX, [HEX.toUpperCase()], [HEX.slice(2)], [`${HEX}00`], [42], ['zz'.repeat(32)], null]) {
      expect(decodeError([node('f', { blocks })]), JSON.stringify(blocks)).toBeInstanceOf(CorruptDataError);
    }
    expect(decodeError([node('f', { blocks: undefined })])).toBeInstanceOf(CorruptDataError);
    for (const subtree of [undefined, 'ab', HEX.toUpperCase(), 7]) {
      expect(decodeError([node('d', { type: 'dir', subtree, blocks: undefined })])).toBeInstanceOf(CorruptDataError);
    }
  });

  it('refuses bad metadata', () => {
    const bad: Partial<Record<keyof TreeNode, unknown>>[] = [
      { type: 'hardlink' },
      { type: undefined },
      { mode: -1 },
      { mode: 1.5 },
      { mode: '420' },
      { size: 2 ** 53 },
      { uid: null },
      { mtime: 1700000000 },
      { mtime: '1e9' },
      { mtime: '' },
      { ino: '0x10' },
      { type: 'symlink', target: 'a\0b', blocks: undefined },
      { type: 'symlink', target: 5, blocks: undefined },
      { rdev: 'x' },
    ];
    for (const over of bad) expect(decodeError([node('n', over)]), JSON.stringify(over)).toBeInstanceOf(CorruptDataError);
  });

  it('refuses what is not a tree', () => {
    for (const text of ['', 'not json', '[]', 'null', '{}', '{"nodes":{}}', '{"nodes":[null]}', '{"nodes":[1]}', '{"nodes":[{}]}']) {
      let err: unknown;
      try {
        decodeTree(Buffer.from(text), '/x');
      } catch (e) {
        err = e;
      }
      expect(err, text).toBeInstanceOf(CorruptDataError);
    }
  });
});

describe('checkName', () => {
  it('passes ordinary names and throws UnsafePathError for escaping ones', () => {
    expect(() => checkName('file.txt', '/')).not.toThrow();
    for (const name of ['', '.', '..', 'a/b', 'x\0']) expect(() => checkName(name, '/')).toThrow(UnsafePathError);
  });

  it('also refuses \\ and : on Windows, where they are separators, and allows them elsewhere', () => {
    for (const name of ['a\\b', '..\\x', 'C:', 'file:stream', 'a/b', '..']) expect(() => checkName(name, '/', 'win32'), name).toThrow(UnsafePathError);
    expect(() => checkName('_data', '/', 'win32')).not.toThrow();
    for (const name of ['a\\b', 'file:stream']) expect(() => checkName(name, '/', 'linux')).not.toThrow();
  });
});
