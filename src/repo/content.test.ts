import { describe, expect, it } from 'vitest';
import { CorruptDataError } from '../errors/errors.ts';
import { blockGroups, decodeList, encodeList, LIST_SPAN, listGroups } from './content.ts';
import type { TreeNode } from './tree.ts';

const id = (i: number) => i.toString(16).padStart(64, '0');

describe('block lists', () => {
  it('round-trips ids through the binary list form', () => {
    const ids = Array.from({ length: 300 }, (_, i) => id(i * 7919));
    expect(decodeList(encodeList(ids), 'f')).toEqual(ids);
    expect(encodeList(ids).length).toBe(300 * 32);
  });

  it('refuses an empty list, a torn id, or more than LIST_SPAN ids', () => {
    expect(() => decodeList(Buffer.alloc(0), 'f')).toThrow(CorruptDataError);
    expect(() => decodeList(Buffer.alloc(33), 'f')).toThrow(CorruptDataError);
    expect(() => decodeList(Buffer.alloc((LIST_SPAN + 1) * 32), 'f')).toThrow(CorruptDataError);
  });

  it('cuts groups at fixed positions, so a change in one span leaves the others equal', () => {
    const ids = Array.from({ length: LIST_SPAN * 2 + 5 }, (_, i) => id(i));
    const changed = [...ids];
    changed[LIST_SPAN + 3] = id(999_999);
    const [a, b] = [listGroups(ids), listGroups(changed)];
    expect(a.map((g) => g.length)).toEqual([LIST_SPAN, LIST_SPAN, 5]);
    expect(b[0]).toEqual(a[0]);
    expect(b[1]).not.toEqual(a[1]);
    expect(b[2]).toEqual(a[2]);
  });

  it('yields a node\'s blocks inline or list by list, in order', async () => {
    const ids = Array.from({ length: 5 }, (_, i) => id(i));
    const inline = { blocks: ids } as unknown as TreeNode;
    const load = async () => encodeList(ids.slice(2));
    const listed = { lists: [id(1), id(2)] } as unknown as TreeNode;
    const collect = async (n: TreeNode) => {
      const out: string[][] = [];
      for await (const g of blockGroups(load, n, 'f')) out.push(g);
      return out;
    };
    expect(await collect(inline)).toEqual([ids]);
    expect(await collect(listed)).toEqual([ids.slice(2), ids.slice(2)]);
  });
});
