/**
 * Byte-level mutators and "right shape, wrong value" generators for the fuzz
 * targets, as fast-check arbitraries so that every input comes from the run's
 * seed and a failure shrinks to a small case. Positions are drawn as plain
 * numbers and taken modulo the input's length when applied, so one mutation
 * list fits any input.
 */
import fc from 'fast-check';

export type Mutation =
  | { readonly op: 'flip'; readonly at: number; readonly bit: number }
  | { readonly op: 'set'; readonly at: number; readonly value: number }
  /** A 32-bit length-like field set to a value a parser must not trust (huge, zero, off by one). */
  | { readonly op: 'u32'; readonly at: number; readonly value: number; readonly bigEndian: boolean }
  | { readonly op: 'truncate'; readonly at: number }
  | { readonly op: 'delete'; readonly at: number; readonly length: number }
  | { readonly op: 'insert'; readonly at: number; readonly bytes: Uint8Array }
  /** Splice: a copy of one range of the input inserted elsewhere (repeats structure, shifts offsets). */
  | { readonly op: 'splice'; readonly from: number; readonly length: number; readonly at: number };

/** Values a length or count field is worth lying with. */
export const INTERESTING_U32 = [0, 1, 2, 0x7f, 0xff, 0x100, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff] as const;

const position = fc.nat({ max: 1 << 24 });

export const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('flip' as const), at: position, bit: fc.integer({ min: 0, max: 7 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('set' as const), at: position, value: fc.oneof(fc.constantFrom(0, 0xff, 0x7f, 0x80), fc.integer({ min: 0, max: 255 })) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('u32' as const),
      at: position,
      value: fc.oneof(fc.constantFrom(...INTERESTING_U32), fc.nat({ max: 0xffffffff })),
      bigEndian: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('truncate' as const), at: position }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('delete' as const), at: position, length: fc.integer({ min: 1, max: 64 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('insert' as const), at: position, bytes: fc.uint8Array({ minLength: 1, maxLength: 32 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('splice' as const), from: position, length: fc.integer({ min: 1, max: 256 }), at: position }) },
);

export function applyMutation(input: Uint8Array, m: Mutation): Buffer {
  const b = Buffer.from(input);
  const len = b.length;
  switch (m.op) {
    case 'flip':
      if (len > 0) b[m.at % len]! ^= 1 << m.bit;
      return b;
    case 'set':
      if (len > 0) b[m.at % len] = m.value;
      return b;
    case 'u32': {
      if (len < 4) return b;
      const at = m.at % (len - 3);
      if (m.bigEndian) b.writeUInt32BE(m.value, at);
      else b.writeUInt32LE(m.value, at);
      return b;
    }
    case 'truncate':
      return b.subarray(0, len === 0 ? 0 : m.at % len);
    case 'delete': {
      if (len === 0) return b;
      const at = m.at % len;
      return Buffer.concat([b.subarray(0, at), b.subarray(at + m.length)]);
    }
    case 'insert': {
      const at = m.at % (len + 1);
      return Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]);
    }
    case 'splice': {
      if (len === 0) return b;
      const from = m.from % len;
      const at = m.at % (len + 1);
      return Buffer.concat([b.subarray(0, at), b.subarray(from, from + m.length), b.subarray(at)]);
    }
  }
}

export function applyMutations(input: Uint8Array, ms: readonly Mutation[]): Buffer {
  let b: Buffer = Buffer.from(input);
  for (const m of ms) b = applyMutation(b, m);
  return b;
}

export const mutations = (maxLength = 8): fc.Arbitrary<Mutation[]> => fc.array(mutation, { minLength: 1, maxLength });

/** A valid input from `base`, then one to `maxMutations` mutations of it. */
export function mutated(base: fc.Arbitrary<Uint8Array>, maxMutations = 8): fc.Arbitrary<Buffer> {
  return fc.tuple(base, mutations(maxMutations)).map(([b, ms]) => applyMutations(b, ms));
}

/** Values of every JSON type and the numbers and strings parsers trip on. */
export const wrongValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(null, true, false, 0, -1, -0.5, 1.5, 2 ** 31, 2 ** 32, 2 ** 53, -(2 ** 53), 1e308, -1e308, '', '..', '.', '/', 'a/b', '\0', '\u0000x', '\ud800', ' ', '-', '1e400'),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.string({ maxLength: 40 }),
  fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 4 }),
  fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }),
);

/** Mostly the valid value, sometimes a wrong one, sometimes absent (undefined: left out of the JSON). */
export function maybeWrong<T>(valid: fc.Arbitrary<T>): fc.Arbitrary<T | unknown> {
  return fc.oneof({ weight: 12, arbitrary: valid }, { weight: 2, arbitrary: wrongValue }, { weight: 1, arbitrary: fc.constant(undefined) });
}
