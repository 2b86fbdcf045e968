import crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CorruptDataError } from '../errors/errors.ts';
import { BlockListBuilder, blockGroups, decodeList, encodeList, INLINE_MAX, LIST_SPAN } from './content.ts';
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

  /** Runs ids through a builder whose list blobs are named by their contents; returns the reference and the lists. */
  function build(ids: readonly string[]) {
    const saved: string[][] = [];
    const b = new BlockListBuilder((list) => {
      saved.push(decodeList(list, 'f'));
      return crypto.createHash('sha256').update(list).digest('hex');
    });
    for (const hex of ids) b.add(hex);
    return { ref: b.finish(), saved };
  }

  it('keeps up to INLINE_MAX ids inline, and puts more into lists', () => {
    const few = Array.from({ length: INLINE_MAX }, (_, i) => id(i));
    expect(build(few)).toEqual({ ref: { blocks: few }, saved: [] });
    expect(build([])).toEqual({ ref: { blocks: [] }, saved: [] });
    const more = [...few, id(INLINE_MAX)];
    expect(build(more).saved).toEqual([more]);
    expect(build(more).ref).toEqual({ lists: [expect.stringMatching(/^[0-9a-f]{64}$/)] });
  });

  it('cuts lists at fixed positions as ids arrive, so a change in one span leaves the others equal', () => {
    const ids = Array.from({ length: LIST_SPAN * 2 + 5 }, (_, i) => id(i));
    const changed = [...ids];
    changed[LIST_SPAN + 3] = id(999_999);
    const [a, b] = [build(ids), build(changed)];
    expect(a.saved.map((g) => g.length)).toEqual([LIST_SPAN, LIST_SPAN, 5]);
    expect(a.saved.flat()).toEqual(ids);
    const [la, lb] = [(a.ref as { lists: string[] }).lists, (b.ref as { lists: string[] }).lists];
    expect(lb[0]).toBe(la[0]);
    expect(lb[1]).not.toBe(la[1]);
    expect(lb[2]).toBe(la[2]);
    expect(build(ids.slice(0, LIST_SPAN)).saved).toEqual([ids.slice(0, LIST_SPAN)]);
  });

  it('holds at most one list of ids however long the file', () => {
    let held = 0;
    const b = new BlockListBuilder((list) => {
      held = Math.max(held, list.length / 32);
      return id(0);
    });
    for (let i = 0; i < LIST_SPAN * 50; i++) b.add(id(i));
    expect(held).toBe(LIST_SPAN);
    expect((b.finish() as { lists: string[] }).lists).toHaveLength(50);
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
