import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type BlobId, BlobType } from '../repo/ids.ts';
import { Frontier, type NeedRow } from './frontier.ts';

const id = (n: number) => Buffer.alloc(32, n) as BlobId;
const name = (r: NeedRow) => r.id[0]!;

describe('Frontier', () => {
  let dir: string;
  let f: Frontier;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lifeboat-frontier-'));
    f = new Frontier(dir);
  });
  afterEach(() => {
    f.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const need = (n: number, type: BlobType, children: number[], at: { pack?: string; offset: number; length?: number }) =>
    f.need({ id: id(n), type, pack: at.pack ?? 'p1', offset: at.offset, length: at.length ?? 10, raw: 10 }, children.map(id));

  it('asks about an id once per push, however many levels name it', () => {
    f.enqueue(0, id(1), BlobType.tree);
    f.enqueue(0, id(1), BlobType.tree);
    expect(f.take(0, 10).map((r) => r.id[0])).toEqual([1]);
    f.enqueue(1, id(1), BlobType.tree);
    f.enqueue(1, id(2), BlobType.data);
    expect(f.take(1, 10).map((r) => r.id[0])).toEqual([2]);
    expect(f.take(1, 10)).toEqual([]);
  });

  it('sends every blob after everything it names, also a subtree met at two depths, and in pack order within a round', () => {
    // root(1) -> a(2) -> shared(4) -> block(5); root(1) -> shared(4) directly too; a list(3) -> block(6)
    need(1, BlobType.tree, [2, 4, 3], { offset: 0 });
    need(2, BlobType.tree, [4], { offset: 10 });
    need(4, BlobType.tree, [5], { offset: 20 });
    need(3, BlobType.list, [6], { offset: 30 });
    need(6, BlobType.data, [], { offset: 50 });
    need(5, BlobType.data, [], { offset: 40 });
    const order = [...f.sendOrder()].map(name);
    const before = (a: number, b: number) => order.indexOf(a) < order.indexOf(b);
    expect(order).toHaveLength(6);
    for (const [child, parent] of [[2, 1], [4, 2], [4, 1], [3, 1], [5, 4], [6, 3]] as const) expect(before(child, parent), `${child} before ${parent} in ${order}`).toBe(true);
    // the leaves first, in pack order
    expect(order.slice(0, 2)).toEqual([5, 6]);
  });

  it('groups blobs stored back to back in one pack into runs of at most maxBytes, one read each', () => {
    need(1, BlobType.data, [], { offset: 0 });
    need(2, BlobType.data, [], { offset: 10 });
    need(3, BlobType.data, [], { offset: 25 }); // a gap: a new run
    need(4, BlobType.data, [], { offset: 35 });
    need(5, BlobType.data, [], { pack: 'p2', offset: 45 });
    need(6, BlobType.data, [], { pack: 'p2', offset: 55, length: 100 });
    expect([...f.sendRuns(25)].map((run) => run.map(name))).toEqual([[1, 2], [3, 4], [5], [6]]);
  });
});
