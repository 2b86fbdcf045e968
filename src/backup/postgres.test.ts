import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { brokenChain, type PostgresChain, segmentOffset, WAL_PER_BASE } from './postgres.ts';

let volume: string;
const chain: PostgresChain = {
  walDir: 'data/pg_wal',
  start: { lsn: '0/33000028', segment: '000000010000000000000033' },
  system: '7445566778899001122',
  segment: '000000010000000000000035',
  base: null,
};
const now = { lsn: '0/36000100', segment: '000000010000000000000036', bytesSince: 50_000_000, system: chain.system };

beforeEach(() => {
  volume = fs.mkdtempSync(path.join(os.tmpdir(), 'lifeboat-pgchain-'));
  fs.mkdirSync(path.join(volume, 'data', 'pg_wal'), { recursive: true });
  fs.writeFileSync(path.join(volume, 'data', 'pg_wal', chain.segment), '');
});
afterEach(() => fs.rmSync(volume, { recursive: true, force: true }));

it('goes on while the same cluster writes on, on its timeline, near its base, with nothing recycled unread', () => {
  expect(brokenChain(chain, now, volume)).toBeUndefined();
});

it('breaks on another cluster, another timeline, WAL behind or far past the base, or a segment recycled unread', () => {
  expect(brokenChain(chain, { ...now, system: '1' }, volume)).toMatch(/another cluster/);
  expect(brokenChain(chain, { ...now, segment: '000000020000000000000036' }, volume)).toMatch(/timeline changed \(00000002\)/);
  expect(brokenChain(chain, { ...now, bytesSince: -8192 }, volume)).toMatch(/behind the base/);
  expect(brokenChain(chain, { ...now, bytesSince: WAL_PER_BASE + 1 }, volume)).toMatch(/MiB of WAL since the base backup/);
  fs.rmSync(path.join(volume, 'data', 'pg_wal', chain.segment));
  expect(brokenChain(chain, now, volume)).toMatch(/000000010000000000000035 was recycled/);
});

it('finds where an LSN falls in its segment file, and only in its own', () => {
  const MiB16 = 16 * 1024 * 1024;
  expect(segmentOffset('0/36000100', '000000010000000000000036', MiB16)).toBe(0x100);
  expect(segmentOffset('0/36000100', '000000010000000000000035', MiB16)).toBeUndefined();
  expect(segmentOffset('1/2000028', '000000010000000100000002', MiB16)).toBe(0x28);
  expect(segmentOffset('1/2000028', '000000010000000000000002', MiB16)).toBeUndefined();
  // 64 MiB segments (initdb --wal-segsize=64): four to each 4 GiB
  expect(segmentOffset('0/C1000000', '000000010000000000000030', 4 * MiB16)).toBe(0x1000000);
  expect(segmentOffset('0/36000100', '000000010000000000000036', 0)).toBeUndefined();
  expect(segmentOffset('0/36000100', '000000010000000000000036', 3 * MiB16)).toBeUndefined();
});
