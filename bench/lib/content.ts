// Content generators: incompressible ("random") and compressible text-like records.
import { RandomStream, Sfc32 } from './prng.ts';

export type Kind = 'random' | 'text';

const LEVELS = ['INFO ', 'INFO ', 'INFO ', 'DEBUG', 'WARN ', 'ERROR'];
const SERVICES = ['orders', 'billing', 'auth', 'catalog', 'search', 'mailer', 'gateway', 'inventory'];
const USERS = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan', 'judy'];
const STATUS = ['pending', 'paid', 'shipped', 'delivered', 'cancelled', 'refunded'];
const ACTIONS = ['create', 'update', 'read', 'delete', 'list', 'sync'];

/**
 * Log/table-like records: same shape every line, fields vary (ids increase, times drift,
 * amounts and names vary), so the data compresses well (~4x) but does not deduplicate.
 */
export function textBytes(rng: Sfc32, n: number): Buffer {
  const lines: string[] = [];
  let len = 0;
  let seq = rng.int(1_000_000_000);
  let ts = 1_700_000_000_000 + rng.int(1_000_000_000);
  while (len < n) {
    seq += 1 + rng.int(3);
    ts += rng.int(2000);
    const line =
      `${ts} ${rng.pick(LEVELS)} svc=${rng.pick(SERVICES)} op=${rng.pick(ACTIONS)} id=${seq} ` +
      `user=${rng.pick(USERS)}${rng.int(500)} amount=${rng.int(100_000) / 100} ` +
      `status=${rng.pick(STATUS)} sku=SKU-${rng.int(10_000)}\n`;
    lines.push(line);
    len += line.length;
  }
  return Buffer.from(lines.join(''), 'latin1').subarray(0, n);
}

/** Whole-file content of a given kind, determined by (seed, label). */
export function contentFor(kind: Kind, seed: string, label: string, n: number): Buffer {
  return kind === 'random' ? new RandomStream(seed, label).bytes(n) : textBytes(new Sfc32(seed, label), n);
}
