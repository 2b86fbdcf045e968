/**
 * Splitter throughput on 256 MiB of random data (random data is CDC's worst case: no
 * long runs, and every byte is hashed past min). The fixed splitter never reads the bytes, so
 * its figure only shows that it is never the bottleneck.
 * Usage: node bench/splitter-speed.ts [MiB] [runs]
 */
import { randomFillSync } from 'node:crypto';
import { cdcSplitter, fixedSplitter, type Splitter } from '../src/repo/splitter.ts';

const MiB = 1024 * 1024;
const sizeMiB = Number(process.argv[2] ?? 256);
const runs = Number(process.argv[3] ?? 5);
const data = new Uint8Array(sizeMiB * MiB);
for (let off = 0; off < data.length; off += 64 * MiB) {
  randomFillSync(data, off, Math.min(64 * MiB, data.length - off));
}
const seed = randomFillSync(new Uint8Array(32));

const cases: [string, Splitter][] = [
  ['fixed 64 KiB', fixedSplitter(64 * 1024)],
  ['cdc avg 8 KiB', cdcSplitter({ avg: 8 * 1024, seed })],
  ['cdc avg 64 KiB', cdcSplitter({ avg: 64 * 1024, seed })],
  ['cdc avg 1 MiB', cdcSplitter({ avg: MiB, seed })],
];

/** Feeds data in 4 MiB reads with carry, as a backup does, so the carry path is measured too. */
function run(sp: Splitter): number {
  const read = Math.max(4 * MiB, 2 * sp.maxBlock);
  let blocks = 0;
  let start = 0; // absolute offset of the carried tail
  let pos = 0;
  for (;;) {
    pos = Math.min(data.length, pos + read);
    const final = pos === data.length;
    const offs = sp.cut(data.subarray(start, pos), final);
    blocks += offs.length;
    if (offs.length > 0) start += offs[offs.length - 1]!;
    if (final) return blocks;
  }
}

for (const [name, sp] of cases) {
  run(sp); // warm up the JIT
  let best = 0;
  let blocks = 0;
  for (let r = 0; r < runs; r++) {
    // Repeat until 0.2 s has passed so the fixed splitter, which never reads the data, still
    // gets a measurable time.
    const t0 = process.hrtime.bigint();
    let passes = 0;
    let secs = 0;
    do {
      blocks = run(sp);
      passes++;
      secs = Number(process.hrtime.bigint() - t0) / 1e9;
    } while (secs < 0.2);
    best = Math.max(best, (sizeMiB * passes) / secs);
  }
  const avgKiB = data.length / blocks / 1024;
  console.log(`${name.padEnd(16)} ${best.toFixed(0).padStart(7)} MiB/s  (${blocks} blocks, mean ${avgKiB.toFixed(1)} KiB)`);
}
