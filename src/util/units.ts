/**
 * Branded primitives: a number that is a byte count or a duration cannot be
 * passed where the other is expected, and parsing happens once, at the edge.
 */
export type Bytes = number & { readonly __unit: 'bytes' };
export type Millis = number & { readonly __unit: 'ms' };

export const bytes = (n: number): Bytes => n as Bytes;
export const millis = (n: number): Millis => n as Millis;

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

const SIZE_RE = /^(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB|K|M|G|T|KB|MB|GB|TB)?$/i;
/** KiB, MiB, ... and restic's bare K, M, ... are powers of 1024; KB, MB, ... are SI, powers of 1000: 16MB is 16,000,000 bytes. */
const SIZE_UNITS: Record<string, number> = {
  b: 1, k: KiB, kib: KiB, m: MiB, mib: MiB, g: GiB, gib: GiB, t: 1024 * GiB, tib: 1024 * GiB,
  kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12,
};

/** Parses "64KiB", "16 MiB", "16MB" (16,000,000), "4096". Returns undefined when malformed. */
export function parseSize(text: string): Bytes | undefined {
  const m = SIZE_RE.exec(text.trim());
  if (!m) return undefined;
  const value = Number(m[1]) * (SIZE_UNITS[(m[2] ?? 'b').toLowerCase()] ?? NaN);
  return Number.isSafeInteger(value) ? bytes(value) : undefined;
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

const DURATION_RE = /^(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d|w)\s*)+$/;
const DURATION_PART = /(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)/g;
const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 };

/**
 * Parses "500ms", "5s", "10m", "2h", "7d", "2w", and sums of them as people
 * write them: "1h30m", "2d 12h". Returns undefined when malformed.
 */
export function parseDuration(text: string): Millis | undefined {
  const t = text.trim();
  if (!DURATION_RE.test(t)) return undefined;
  let ms = 0;
  for (const [, n, unit] of t.matchAll(DURATION_PART)) ms += Number(n) * DURATION_UNITS[unit!]!;
  return millis(ms);
}

const FORMAT_UNITS = [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const;

/**
 * A duration for people, in the syntax parseDuration reads: its two largest
 * units, the rest dropped ("1h30m", "2d3h", "45s"), or milliseconds under a second.
 */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  const i = FORMAT_UNITS.findIndex(([, size]) => ms >= size);
  const [unit, size] = FORMAT_UNITS[i]!;
  const next = FORMAT_UNITS[i + 1];
  const rest = next ? Math.floor((ms % size) / next[1]) : 0;
  return `${Math.floor(ms / size)}${unit}${rest > 0 ? `${rest}${next![0]}` : ''}`;
}
