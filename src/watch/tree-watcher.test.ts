import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { TreeWatcher } from './tree-watcher.ts';

const REST_MS = 300;

let root: string;
let w: TreeWatcher;
let seen: Map<string, boolean>;

/** Resolves once `rel` has been reported. */
const reported = (rel: string) =>
  new Promise<boolean>((resolve) => {
    if (seen.has(rel)) return resolve(seen.get(rel)!);
    const on = (r: string, listing: boolean) => {
      if (r !== rel) return;
      w.off('change', on);
      resolve(listing);
    };
    w.on('change', on);
  });

beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'lifeboat-treewatch-'));
  fs.mkdirSync(path.join(root, 'a', 'b'), { recursive: true });
  fs.writeFileSync(path.join(root, 'a', 'b', 'f'), 'one');
  w = new TreeWatcher(root, { restMs: REST_MS });
  seen = new Map();
  w.on('change', (rel: string, listing: boolean) => seen.set(rel, seen.get(rel) || listing));
  w.start();
});
afterEach(() => {
  w.close();
  fs.rmSync(root, { recursive: true, force: true });
});

it('watches every directory, and reports a rewrite as a change and a new or removed entry as a listing change', async () => {
  expect(w.size).toBe(3);
  fs.appendFileSync(path.join(root, 'a', 'b', 'f'), 'two');
  expect(await reported('a/b/f')).toBe(false);
  fs.writeFileSync(path.join(root, 'a', 'new'), 'x');
  expect(await reported('a/new')).toBe(true);
  fs.rmSync(path.join(root, 'a', 'new'));
  fs.writeFileSync(path.join(root, 'top'), 'x');
  await reported('top');
  expect(seen.get('a/new')).toBe(true);
});

it('follows directories as they come, with what was written in them before the watch was set, and drops them as they go', async () => {
  // made in one go: the files may be there before the new directories are watched
  fs.mkdirSync(path.join(root, 'n', 'm'), { recursive: true });
  fs.writeFileSync(path.join(root, 'n', 'm', 'early'), 'x');
  expect(await reported('n/m/early')).toBe(true);
  expect(w.size).toBe(5);
  fs.writeFileSync(path.join(root, 'n', 'm', 'late'), 'x');
  expect(await reported('n/m/late')).toBe(true);

  fs.renameSync(path.join(root, 'n'), path.join(root, 'moved'));
  fs.writeFileSync(path.join(root, 'moved', 'm', 'after'), 'x');
  expect(await reported('moved/m/after')).toBe(true);
  fs.rmSync(path.join(root, 'moved'), { recursive: true });
  await reported('moved');
  // the removal's events settle as the watches close: the count follows
  await new Promise<void>((resolve) => {
    const check = () => (w.size === 3 ? resolve() : setImmediate(check));
    check();
  });
});

it('rests the watch of a hot directory, then says its entries may have changed and follows what was made meanwhile', async () => {
  const events: string[] = [];
  w.on('change', (rel: string) => events.push(rel));
  const rested = new Promise<string>((resolve) => w.once('rested', resolve));
  // two files in turn: the kernel merges only an event identical to the one before it
  const fds = ['f', 'g'].map((n) => fs.openSync(path.join(root, 'a', 'b', n), 'a'));
  for (let i = 0; i < 2000; i++) fs.writeSync(fds[i % 2]!, 'x');
  for (const fd of fds) fs.closeSync(fd);
  // written while the watch rests: not reported one by one, but covered by 'rested'
  fs.writeFileSync(path.join(root, 'a', 'b', 'quiet'), 'q');
  fs.mkdirSync(path.join(root, 'a', 'b', 'made'));
  expect(await rested).toBe('a/b');
  expect(events.length).toBeLessThan(100);
  expect(events).not.toContain('a/b/quiet');
  // the directory made while its parent's watch rested is watched from the wake on
  fs.writeFileSync(path.join(root, 'a', 'b', 'made', 'later'), 'x');
  expect(await reported('a/b/made/later')).toBe(true);
  // and the rested directory's own watch is back
  fs.writeFileSync(path.join(root, 'a', 'b', 'after'), 'x');
  expect(await reported('a/b/after')).toBe(true);
});

it('reports a hot directory removed while its watch rested, and stops watching it', async () => {
  const hot = path.join(root, 'a', 'b');
  const rested = new Promise<string>((resolve) => w.once('rested', resolve));
  const fds = ['f', 'g'].map((n) => fs.openSync(path.join(hot, n), 'a'));
  for (let i = 0; i < 200; i++) fs.writeSync(fds[i % 2]!, 'x');
  for (const fd of fds) fs.closeSync(fd);
  seen.clear();
  fs.rmSync(hot, { recursive: true });
  // its parent's watch reports the removal; the wake finds it gone and says so rather than 'rested'
  expect(await Promise.race([reported('a/b'), rested])).toBe(true);
  await new Promise<void>((resolve) => {
    const check = () => (w.size === 2 ? resolve() : setImmediate(check));
    check();
  });
});

it('says when the root cannot be watched', () => {
  const lost = new TreeWatcher(path.join(root, 'missing'), { restMs: REST_MS });
  const errors: NodeJS.ErrnoException[] = [];
  lost.on('error', (e: NodeJS.ErrnoException) => errors.push(e));
  lost.start();
  expect(errors.map((e) => e.code)).toEqual(['ENOENT']);
  expect(lost.size).toBe(0);
  lost.close();
});
