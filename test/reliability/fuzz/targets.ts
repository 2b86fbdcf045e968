/**
 * The fuzz targets for what Lifeboat reads from disk, from a peer or from an
 * operator: repository blobs and packs, key files, the config, protocol
 * frames, and a damaged index.db. Each mixes three kinds of input: valid
 * encodings mutated at the byte level (mutate.ts), values of the right shape
 * with wrong contents, and plain random bytes. Where a target accepts an
 * input it also checks what came out, so "accepted" means "accepted and
 * sane", not merely "did not throw".
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import fc from 'fast-check';
import { loadConfig, parseConfig } from '../../../src/config/load.ts';
import { ConfigError, LifeboatError } from '../../../src/errors/errors.ts';
import { FrameDecoder, encodeFrame, MAX_FRAME } from '../../../src/replicate/frames.ts';
import { decodeList, encodeList, LIST_SPAN } from '../../../src/repo/content.ts';
import { blobId, Codec, type MasterKeys, NONCE_BYTES, seal, sealSecret, unseal } from '../../../src/repo/crypto.ts';
import { BLOB_ID_BYTES, type BlobId, type BlobType } from '../../../src/repo/ids.ts';
import { generateMasterKeys, KDF_MAX_MEMORY, parseKeyFile, unwrapKeys, wrapKeys } from '../../../src/repo/keys.ts';
import { encodeTrailer, entriesFromTrailer, type PackEntry, readPackTrailer } from '../../../src/repo/pack.ts';
import { Repository } from '../../../src/repo/repository.ts';
import { findSnapshot, listSnapshots } from '../../../src/repo/snapshots.ts';
import { backupDir, openTestRepo, TEST_PASSWORD } from '../../../src/repo/testing/fixture.ts';
import { decodeTree, encodeTree, type TreeNode } from '../../../src/repo/tree.ts';
import { verify } from '../../../src/repo/verify.ts';
import { openRepoWorkers } from '../../../src/agent/workers.ts';
import type { WorkerPool } from '../../../src/workers/pool.ts';
import { registerTarget } from './fuzz.ts';
import { applyMutations, maybeWrong, mutated, mutations, wrongValue } from './mutate.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const bytes = (max: number) => fc.uint8Array({ maxLength: max });
const id32 = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b) as BlobId);
const hexId = id32.map((b) => b.toString('hex'));

/** An invariant of an accepted result; a plain Error, so the harness counts it as a failure. */
function expectThat(ok: boolean, what: string): void {
  if (!ok) throw new Error(`accepted, but ${what}`);
}

function tempDir(name: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `lifeboat-fuzz-${name}-`));
}

// ---------------------------------------------------------------------------------------------
// Trees

const decimal = (min: bigint) => fc.bigInt({ min, max: 10n ** 24n - 1n }).map(String);
const NODE_TYPES = ['file', 'dir', 'symlink', 'fifo', 'chardev', 'blockdev', 'socket'] as const;
const TREE_FIELDS = ['name', 'type', 'mode', 'uid', 'gid', 'mtime', 'ctime', 'ino', 'dev', 'nlink', 'size', 'blocks', 'lists', 'subtree', 'files', 'dirs', 'bytes', 'target', 'rdev', '__proto__', 'extra'] as const;

const validNode: fc.Arbitrary<TreeNode> = fc
  .record({
    name: fc.oneof({ weight: 9, arbitrary: fc.string({ minLength: 1, maxLength: 16 }) }, { weight: 1, arbitrary: fc.constantFrom('.', '..', 'a/b', 'x\0y', '', '.hidden', 'C:x', 'a\\b', '\ud800') }),
    type: fc.constantFrom(...NODE_TYPES),
    mode: fc.nat({ max: 0o177777 }),
    uid: fc.nat(),
    gid: fc.nat(),
    mtime: decimal(-(10n ** 23n)),
    ctime: decimal(0n),
    ino: decimal(0n),
    dev: decimal(0n),
    nlink: fc.nat({ max: 10 }),
    size: fc.nat(),
    ids: fc.array(hexId, { maxLength: 4 }),
    inline: fc.boolean(),
    subtree: hexId,
    target: fc.string({ maxLength: 20 }),
    totals: fc.option(fc.record({ files: fc.nat(), dirs: fc.nat(), bytes: fc.nat() }), { nil: undefined }),
  })
  .map(({ ids, inline, subtree, target, totals, ...n }) => ({
    ...n,
    ...(n.type === 'file' ? (inline ? { blocks: ids } : { lists: ids }) : {}),
    ...(n.type === 'dir' ? { subtree, ...totals } : {}),
    ...(n.type === 'symlink' ? { target } : {}),
    ...(n.type === 'chardev' || n.type === 'blockdev' ? { rdev: n.size } : {}),
  }));

/** A node with some fields replaced by wrong values or removed. */
const damagedNode = fc
  .tuple(validNode, fc.array(fc.record({ field: fc.constantFrom(...TREE_FIELDS), value: fc.oneof(wrongValue, fc.constant(undefined)) }), { maxLength: 3 }))
  .map(([node, damage]) => {
    const out: Record<string, unknown> = { ...node };
    for (const d of damage) {
      if (d.value === undefined) delete out[d.field];
      else Object.defineProperty(out, d.field, { value: d.value, enumerable: true, writable: true, configurable: true });
    }
    return out;
  });

/** {"nodes":[...]}: sorted unique names unless `shuffle`, sometimes the wrong top-level shape. */
const treeJson = fc
  .record({
    nodes: fc.array(fc.oneof({ weight: 6, arbitrary: validNode }, { weight: 1, arbitrary: damagedNode }), { maxLength: 8 }),
    shuffle: fc.boolean().chain((b) => (b ? fc.boolean() : fc.constant(false))),
    top: fc.oneof({ weight: 12, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: wrongValue }),
  })
  .map(({ nodes, shuffle, top }) => {
    const seen = new Set<unknown>();
    const key = (n: { name?: unknown }) => (typeof n.name === 'string' ? n.name : '');
    const list = shuffle ? nodes : nodes.filter((n) => !seen.has(n.name) && seen.add(n.name)).sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
    return Buffer.from(JSON.stringify(top === undefined ? { nodes: list } : top) ?? 'undefined');
  });

const SAFE = (n: string) => n !== '' && n !== '.' && n !== '..' && !n.includes('/') && !n.includes('\0');
const HEX64 = /^[0-9a-f]{64}$/;

registerTarget({
  name: 'tree',
  description: 'decodeTree (src/repo/tree.ts): tree blob plaintext',
  codes: ['LB_ERR_CORRUPT_DATA', 'LB_ERR_UNSAFE_PATH'],
  input: () =>
    fc.oneof(
      { weight: 4, arbitrary: treeJson },
      { weight: 2, arbitrary: mutated(treeJson) },
      { weight: 1, arbitrary: fc.json({ maxDepth: 4 }).map((s) => Buffer.from(s)) },
      { weight: 1, arbitrary: bytes(512).map((b) => Buffer.from(b)) },
    ),
  run(input: Buffer) {
    const tree = decodeTree(input, 'fuzz');
    let previous: string | undefined;
    for (const n of tree.nodes) {
      expectThat(typeof n.name === 'string' && SAFE(n.name), `kept the unsafe name ${JSON.stringify(n.name)}`);
      expectThat(previous === undefined || previous < n.name, 'kept names out of order');
      previous = n.name;
      if (n.type === 'dir') expectThat(typeof n.subtree === 'string' && HEX64.test(n.subtree), 'kept a directory without a subtree id');
      if (n.type === 'file') expectThat([...(n.blocks ?? n.lists ?? [null])].every((b) => typeof b === 'string' && HEX64.test(b)), 'kept a file with bad block ids');
    }
    expectThat(decodeTree(encodeTree(tree), 'again').nodes.length === tree.nodes.length, 'its re-encoding decodes differently');
  },
});

// ---------------------------------------------------------------------------------------------
// Block lists

registerTarget({
  name: 'list',
  description: 'decodeList (src/repo/content.ts): list blob plaintext',
  codes: ['LB_ERR_CORRUPT_DATA'],
  input: () =>
    fc.oneof(
      fc.array(id32, { maxLength: 40 }).map((ids) => Buffer.concat(ids)),
      mutated(fc.array(id32, { minLength: 1, maxLength: 40 }).map((ids) => Buffer.concat(ids))),
      fc.constantFrom(LIST_SPAN, LIST_SPAN + 1, 0).map((n) => crypto.randomBytes(n * BLOB_ID_BYTES)),
      bytes(300).map((b) => Buffer.from(b)),
    ),
  run(input: Buffer) {
    const ids = decodeList(input, 'fuzz');
    expectThat(ids.length > 0 && ids.length <= LIST_SPAN && ids.every((h) => HEX64.test(h)), 'returned malformed ids');
    expectThat(encodeList(ids).equals(input), 'does not re-encode to its input');
  },
});

// ---------------------------------------------------------------------------------------------
// Pack trailers

const packEntry = fc.record({
  type: fc.nat({ max: 3 }),
  id: id32,
  length: fc.nat({ max: 200 }),
  rawLength: fc.nat({ max: 0xffffffff }),
  refs: fc.array(id32, { maxLength: 4 }),
});
const validPack = fc.array(packEntry, { maxLength: 10 }).map((specs) => {
  let offset = 0;
  const entries: PackEntry[] = specs.map((e) => {
    // only trees (1) and lists (2) name other blobs
    const entry = { ...e, type: e.type as BlobType, offset, refs: e.type === 1 || e.type === 2 ? e.refs.map((r) => Buffer.from(r) as BlobId) : [] };
    offset += e.length;
    return entry;
  });
  return Buffer.concat([crypto.randomBytes(offset), encodeTrailer(entries)]);
});

/** The trailer's size its footer claims (entries, edges, footer), by format; -1 when there is no footer to read. */
function claimedTrailer(pack: Buffer): number {
  const magic = pack.length >= 4 ? pack.subarray(-4).toString('latin1') : '';
  if (magic === 'LBP1' && pack.length >= 12) return pack.readUInt32LE(pack.length - 12) * 41 + 12;
  if (magic === 'LBP2' && pack.length >= 16) return pack.readUInt32LE(pack.length - 12) * 41 + pack.readUInt32LE(pack.length - 16) * 36 + 16;
  return -1;
}

/** Recomputes the CRC over what the (mutated) counts say the table is, so mutations get past it. */
function fixCrc(pack: Buffer): Buffer {
  const trailer = claimedTrailer(pack);
  if (trailer < 0 || trailer > pack.length) return pack;
  const out = Buffer.from(pack);
  // LBP1: the entries; LBP2: the entries, the edges and the edge count: either way up to the last 12 bytes
  out.writeUInt32LE(zlib.crc32(out.subarray(out.length - trailer, out.length - 12)), out.length - 8);
  return out;
}

registerTarget<{ pack: Buffer; via: 'file' | 'report'; cut: number }, { dir: string }>({
  name: 'pack-trailer',
  description: 'readPackTrailer / entriesFromTrailer (src/repo/pack.ts): pack files and worker-reported trailers',
  codes: ['LB_ERR_CORRUPT_INDEX'],
  setup: () => ({ dir: tempDir('pack') }),
  teardown: (ctx) => fs.rmSync(ctx.dir, { recursive: true, force: true }),
  input: () =>
    fc.record({
      pack: fc.oneof(
        { weight: 1, arbitrary: validPack },
        { weight: 4, arbitrary: fc.tuple(mutated(validPack, 4), fc.boolean()).map(([p, fix]) => (fix ? fixCrc(p) : p)) },
        { weight: 1, arbitrary: bytes(200).map((b) => Buffer.from(b)) },
      ),
      via: fc.constantFrom('file' as const, 'report' as const),
      cut: fc.nat(),
    }),
  run({ pack, via, cut }, ctx) {
    let entries: PackEntry[];
    if (via === 'file') {
      const file = path.join(ctx.dir, 'pack');
      fs.writeFileSync(file, pack);
      entries = readPackTrailer(file, 'fuzz');
    } else {
      entries = entriesFromTrailer('fuzz', pack.length, pack.subarray(cut % (pack.length + 1)));
    }
    let offset = 0;
    for (const e of entries) {
      expectThat(e.offset === offset && e.id.length === 32 && e.type >= 0 && e.type <= 3, 'returned an inconsistent entry');
      offset += e.length;
    }
    expectThat(offset + claimedTrailer(pack) === pack.length, 'entries do not cover the pack');
    for (const e of entries) expectThat(e.refs === undefined || e.refs.length === 0 || e.type === 1 || e.type === 2, 'a blob that names nothing names blobs');
  },
});

// ---------------------------------------------------------------------------------------------
// Key files

const PASSWORD = 'fuzz password';
/** The cheapest parameters the schema takes: a key file costs a millisecond to open. */
const CHEAP = { N: 1024, r: 8, p: 1 } as const;

interface KeyCtx {
  readonly keys: MasterKeys;
  readonly text: string;
  readonly file: ReturnType<typeof wrapKeys>;
}

type KeyInput = { kind: 'text'; text: string; password: string } | { kind: 'payload'; payload: Buffer };

const kdfValue = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(1024, 2048, 8, 1, 16) },
  { weight: 1, arbitrary: fc.constantFrom(1 << 14, 1 << 16, 1 << 20, 1 << 22, 1 << 23, 32, 17) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 1 << 22 }) },
);

/** A master key in base64: mostly 32 bytes, sometimes another length. */
const keyBase64 = fc.oneof({ weight: 4, arbitrary: fc.uint8Array({ minLength: 32, maxLength: 32 }) }, { weight: 1, arbitrary: bytes(40) }).map((b) => Buffer.from(b).toString('base64'));

registerTarget<KeyInput, KeyCtx>({
  name: 'key-file',
  description: 'parseKeyFile + unwrapKeys (src/repo/keys.ts): keys/*.json, before and after authentication',
  codes: ['LB_ERR_NOT_A_REPOSITORY', 'LB_ERR_WRONG_PASSWORD'],
  timeoutMs: 15_000,
  // scrypt may take what the key file's limit allows, no more
  memLimitBytes: KDF_MAX_MEMORY + 64 * 2 ** 20,
  setup() {
    const keys = generateMasterKeys();
    const file = wrapKeys(keys, PASSWORD, CHEAP);
    return { keys, file, text: JSON.stringify(file, null, 2) };
  },
  input: (ctx) =>
    fc.oneof(
      // the file's bytes mutated
      mutated(fc.constant(Buffer.from(ctx.text))).map((b): KeyInput => ({ kind: 'text', text: b.toString('utf8'), password: PASSWORD })),
      // right shape, wrong values (costs included: a hostile file must not make opening expensive)
      fc
        .record({
          version: maybeWrong(fc.constant(1)),
          kdf: maybeWrong(fc.constant('scrypt')),
          N: fc.oneof({ weight: 3, arbitrary: fc.constant(CHEAP.N) }, { weight: 1, arbitrary: maybeWrong(kdfValue) }),
          r: fc.oneof({ weight: 3, arbitrary: fc.constant(CHEAP.r) }, { weight: 1, arbitrary: maybeWrong(kdfValue) }),
          p: fc.oneof({ weight: 3, arbitrary: fc.constant(CHEAP.p) }, { weight: 1, arbitrary: maybeWrong(kdfValue) }),
          salt: maybeWrong(fc.constant(ctx.file.salt)),
          sealed: maybeWrong(fc.oneof(fc.constant(ctx.file.sealed), bytes(80).map((b) => Buffer.from(b).toString('base64')))),
          created: maybeWrong(fc.constant(ctx.file.created)),
        })
        .map((f): KeyInput => ({ kind: 'text', text: JSON.stringify(f), password: PASSWORD })),
      // a wrong password
      fc.oneof(fc.constant(PASSWORD), fc.string({ maxLength: 20 })).map((password): KeyInput => ({ kind: 'text', text: ctx.text, password })),
      // authentic but malformed payload: what a key holder (or a bug) could write
      fc
        .oneof(
          fc.json().map((s) => Buffer.from(s)),
          fc.record({ enc: maybeWrong(keyBase64), mac: maybeWrong(keyBase64) }).map((o) => Buffer.from(JSON.stringify(o))),
          bytes(100).map((b) => Buffer.from(b)),
        )
        .map((payload): KeyInput => ({ kind: 'payload', payload })),
    ),
  run(input, ctx) {
    if (input.kind === 'payload') {
      const wrapping = crypto.scryptSync(PASSWORD, Buffer.from(ctx.file.salt, 'base64'), 32, CHEAP);
      const file = { ...ctx.file, sealed: sealSecret(wrapping, input.payload).toString('base64') };
      const keys = unwrapKeys(parseKeyFile(JSON.stringify(file), 'fuzz'), PASSWORD, 'fuzz');
      expectThat(keys.enc.length === 32 && keys.mac.length === 32, 'returned keys that are not 32 bytes');
      return;
    }
    const keys = unwrapKeys(parseKeyFile(input.text, 'fuzz'), input.password, 'fuzz');
    expectThat(keys.enc.equals(ctx.keys.enc) && keys.mac.equals(ctx.keys.mac), 'returned keys other than the ones sealed');
  },
});

// ---------------------------------------------------------------------------------------------
// Sealed blobs

interface SealCtx {
  readonly keys: MasterKeys;
}

type SealInput =
  | { kind: 'stored'; id: BlobId; type: number; stored: Buffer; original?: Buffer; checkId: boolean }
  | { kind: 'forged'; id: BlobId; codec: number; payload: Buffer; rawLength: number | undefined };

/** An authentic blob with any codec byte and payload: what only a key holder can make. */
function forge(keys: MasterKeys, id: BlobId, type: number, codec: number, payload: Buffer): Buffer {
  const nonce = crypto.randomBytes(NONCE_BYTES);
  const c = crypto.createCipheriv('aes-256-gcm', keys.enc, nonce);
  c.setAAD(Buffer.concat([Buffer.of(type), id]));
  const body = Buffer.concat([c.update(Buffer.concat([Buffer.of(codec), payload])), c.final()]);
  return Buffer.concat([nonce, body, c.getAuthTag()]);
}

/** The plaintext length a blob of this codec and payload has, as its writer would have indexed it. */
function trueLength(codec: number, payload: Buffer): number {
  if (payload === BOMB) return 65536;
  if (codec !== Codec.zstd) return payload.length;
  try {
    return zlib.zstdDecompressSync(payload, { maxOutputLength: 1 << 20 }).length;
  } catch {
    return payload.length;
  }
}

const plaintext = fc.oneof(bytes(300).map((b) => Buffer.from(b)), fc.nat({ max: 5000 }).map((n) => Buffer.alloc(n, n % 7)));
const BOMB = zlib.zstdCompressSync(Buffer.alloc(1 << 30));

registerTarget<SealInput, SealCtx>({
  name: 'unseal',
  description: 'unseal (src/repo/crypto.ts): stored blobs, altered or forged',
  codes: ['LB_ERR_CORRUPT_DATA'],
  setup: () => ({ keys: generateMasterKeys() }),
  input: (ctx) =>
    fc.oneof(
      // random bytes: must never authenticate
      fc.record({ id: id32, type: fc.nat({ max: 3 }), stored: bytes(120).map((b) => Buffer.from(b)), checkId: fc.boolean() }).map((s): SealInput => ({ kind: 'stored', ...s })),
      // a real blob, altered (or left alone by a mutation that cancels out)
      fc
        .record({ data: plaintext, type: fc.nat({ max: 3 }), level: fc.constantFrom(0, 3), ms: mutations(3), checkId: fc.boolean() })
        .map(({ data, type, level, ms, checkId }): SealInput => {
          const id = blobId(ctx.keys, data);
          const stored = seal(ctx.keys, id, type as BlobType, data, { level });
          const altered = applyMutations(stored, ms);
          return { kind: 'stored', id, type, stored: altered, checkId, ...(altered.equals(stored) ? { original: data } : {}) };
        }),
      // authentic plaintext with a hostile codec byte or payload: damaged zstd, a 1 GiB zstd bomb
      fc
        .record({
          id: id32,
          codec: fc.oneof(fc.constantFrom(Codec.raw, Codec.zstd), fc.nat({ max: 255 })),
          payload: fc.oneof(
            bytes(200).map((b) => Buffer.from(b)),
            mutated(plaintext.map((p) => zlib.zstdCompressSync(p)), 3),
            fc.constant(BOMB),
          ),
          // mostly what the index would say (the payload's true length), sometimes nothing or a lie
          rawLength: fc.oneof({ weight: 4, arbitrary: fc.constant('true' as const) }, { weight: 1, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.nat({ max: 1 << 20 }) }),
        })
        .map((f): SealInput => ({ kind: 'forged', ...f, rawLength: f.rawLength === 'true' ? trueLength(f.codec, f.payload) : f.payload === BOMB ? (f.rawLength ?? 65536) : f.rawLength })),
    ),
  run(input, ctx) {
    if (input.kind === 'stored') {
      const out = unseal(ctx.keys, input.id, input.type as BlobType, input.stored, input.checkId);
      expectThat(input.original !== undefined && out.equals(input.original), 'opened bytes that were not sealed as they are');
      return;
    }
    // Callers pass the index's raw length (as they should): the bomb must stop there.
    const out = unseal(ctx.keys, input.id, 0, forge(ctx.keys, input.id, 0, input.codec, input.payload), false, input.rawLength);
    expectThat(input.rawLength === undefined || out.length === input.rawLength, 'returned a length other than the index says');
  },
});

// ---------------------------------------------------------------------------------------------
// The config file

const EXAMPLE = fs.readFileSync(path.join(ROOT, 'config.example.toml'));
const TABLES: Record<string, readonly string[]> = {
  agent: ['host', 'state_dir', 'log_level', 'listen'],
  repository: ['path', 'password_file', 'pack_size', 'compression', 'compression_level'],
  backup: ['block_size', 'chunker', 'workers'],
  retention: ['keep_last', 'keep_hourly', 'keep_daily', 'keep_weekly', 'keep_monthly'],
  docker: ['host', 'tls_ca', 'tls_cert', 'tls_key', 'reconcile_interval', 'hook_timeout', 'stop_timeout'],
  schedule: ['backup', 'retention'],
  journal: ['enabled', 'aggregate', 'max_paths', 'full_scan_interval'],
  volumes: ['track'],
  replication: ['listen'],
  volume: ['name', 'schedule', 'continuous', 'debounce'],
  peer: ['name', 'address', 'id'],
};
const KEYS = [...new Set(Object.values(TABLES).flat())];

const tomlString = fc.oneof(
  fc.string({ maxLength: 30 }).map((s) => JSON.stringify(s)),
  fc.stringMatching(/^[^'\n\r]{0,20}$/).map((s) => `'${s}'`),
  fc.string({ maxLength: 30 }).map((s) => `"""${s.replace(/"/g, '')}"""`),
  fc.constantFrom('"64KiB"', '"16MiB"', '"0B"', '"9999999999999GiB"', '"5m"', '"0s"', '"1d"', '"-1s"', '"*/5 * * * *"', '"1-0 * * * *"', '"61 * * * *"', '"127.0.0.1:9317"', '"[::1]:0"', '":70000"', '"info"', '"trace"', '"auto"', '"cdc"', '"all"', '"listed"', `"${'ab'.repeat(32)}"`, '"\\u0000"', '"\\uD800"'),
);
const tomlScalar = fc.oneof(
  tomlString,
  fc.integer().map(String),
  fc.constantFrom('0', '-0', '+1', '0x7fffffff', '0o777', '0b101', '9223372036854775807', '9223372036854775808', '1_000', '1e400', 'inf', '-inf', 'nan', '3.14', 'true', 'false', '1979-05-27T07:32:00Z', '1979-05-27', '07:32:00', '2024-02-30T00:00:00Z'),
);
const tomlValue: fc.Arbitrary<string> = fc.letrec<{ value: string; array: string; inline: string }>((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, tomlScalar, tie('array'), tie('inline')),
  array: fc.array(tie('value'), { maxLength: 4 }).map((vs) => `[${vs.join(', ')}]`),
  inline: fc.array(fc.tuple(fc.constantFrom(...KEYS), tie('value')), { maxLength: 3 }).map((kvs) => `{ ${kvs.map(([k, v]) => `${k} = ${v}`).join(', ')} }`),
})).value;
const tomlKey = fc.oneof({ weight: 8, arbitrary: fc.constantFrom(...KEYS) }, { weight: 1, arbitrary: fc.constantFrom('"quoted key"', "'lit'", 'a.b', 'agent.host', '__proto__', 'constructor', '""') }, { weight: 1, arbitrary: fc.string({ maxLength: 8 }) });
const tomlLine = fc.oneof(
  { weight: 2, arbitrary: fc.constantFrom(...Object.keys(TABLES)).map((t) => (t === 'volume' || t === 'peer' ? `[[${t}]]` : `[${t}]`)) },
  { weight: 8, arbitrary: fc.tuple(tomlKey, tomlValue).map(([k, v]) => `${k} = ${v}`) },
  { weight: 1, arbitrary: fc.constantFrom('', '# comment', '[agent', '[[peer]', 'key =', '= 1', '[a.b.c]', '[agent.host]', '[[agent]]', '[ "agent" ]') },
  { weight: 1, arbitrary: fc.string({ maxLength: 20 }) },
);
const tomlDoc = fc.array(tomlLine, { maxLength: 25 }).map((lines) => lines.join('\n'));

registerTarget<{ text: string; viaFile: boolean }, { dir: string }>({
  name: 'config',
  description: 'parseConfig / loadConfig (src/config/load.ts): random TOML and mutated config.example.toml',
  codes: ['LB_ERR_CONFIG'],
  setup: () => ({ dir: tempDir('config') }),
  teardown: (ctx) => fs.rmSync(ctx.dir, { recursive: true, force: true }),
  input: () =>
    fc.record({
      text: fc.oneof(
        { weight: 3, arbitrary: tomlDoc },
        { weight: 3, arbitrary: mutated(fc.constant(EXAMPLE)).map((b) => b.toString('utf8')) },
        { weight: 1, arbitrary: fc.string({ maxLength: 200 }) },
      ),
      viaFile: fc.boolean(),
    }),
  run({ text, viaFile }, ctx) {
    const file = path.join(ctx.dir, 'lifeboat.toml');
    try {
      if (viaFile) {
        fs.writeFileSync(file, text);
        loadConfig(file);
      } else {
        parseConfig(text, file);
      }
    } catch (err) {
      if (err instanceof ConfigError) {
        // the line a message points at must exist
        expectThat(err.file === file && err.line >= 0 && err.line <= text.split(/\r?\n/).length, `a ConfigError points at line ${err.line} of ${text.split(/\r?\n/).length}`);
      }
      throw err;
    }
  },
});

// ---------------------------------------------------------------------------------------------
// Peer protocol frames

interface FrameInput {
  readonly stream: Buffer;
  /** Sizes the stream arrives in (the rest comes last); 'bytes': one byte per chunk. */
  readonly cuts: readonly number[] | 'bytes';
  readonly maxFrame: number;
}

/** 1 MiB a byte at a time: what a peer sending one-byte TLS records does. Held as ~100x its size before frames.ts merged small chunks. */
const BYTEWISE: FrameInput = { stream: encodeFrame(1, Buffer.alloc(1024 * 1024, 1)), cuts: 'bytes', maxFrame: MAX_FRAME };

/** The protocol's rule, written plainly: the frames a stream holds, then an error or the bytes left. */
function referenceFrames(stream: Buffer, maxFrame: number): { frames: { type: number; payload: Buffer }[]; error: boolean; rest: number } {
  const frames: { type: number; payload: Buffer }[] = [];
  let o = 0;
  while (stream.length - o >= 4) {
    const length = stream.readUInt32BE(o);
    if (length === 0 || length > maxFrame) return { frames, error: true, rest: 0 };
    if (stream.length - o - 4 < length) break;
    frames.push({ type: stream[o + 4]!, payload: stream.subarray(o + 5, o + 4 + length) });
    o += 4 + length;
  }
  return { frames, error: false, rest: stream.length - o };
}

const frameStream = fc.array(fc.record({ type: fc.nat({ max: 255 }), payload: bytes(300) }), { maxLength: 8 }).map((fs) => Buffer.concat(fs.map((f) => encodeFrame(f.type, f.payload))));

function* repeat(value: number, times: number): Generator<number> {
  for (let i = 0; i < times; i++) yield value;
}

registerTarget<FrameInput>({
  name: 'frames',
  description: 'FrameDecoder (src/replicate/frames.ts): peer byte streams in any chunking',
  codes: ['LB_ERR_PROTOCOL'],
  // a decoder holds about one frame (1 MiB here), plus the garbage of a million pushes until a collection
  // (measured 44-63 MiB; the decoder before chunk merging grew by 240 MiB)
  memLimitBytes: 128 * 2 ** 20,
  timeoutMs: 20_000,
  input: () =>
    fc.oneof(
      {
        weight: 100,
        arbitrary: fc.record({
          stream: fc.oneof(frameStream, mutated(frameStream), bytes(200).map((b) => Buffer.from(b))),
          cuts: fc.array(fc.nat({ max: 400 }), { maxLength: 12 }),
          maxFrame: fc.oneof(fc.constant(MAX_FRAME), fc.integer({ min: 1, max: 400 })),
        }),
      },
      { weight: 1, arbitrary: fc.constant(BYTEWISE) },
    ),
  run({ stream, cuts, maxFrame }) {
    const want = referenceFrames(stream, maxFrame);
    const decoder = new FrameDecoder(maxFrame);
    const got: { type: number; payload: Buffer }[] = [];
    // made one at a time: an array of half a million one-byte chunks would itself hold 60 MB
    const chunks = function* (): Generator<Buffer> {
      let o = 0;
      for (const n of cuts === 'bytes' ? repeat(1, stream.length) : cuts) {
        yield stream.subarray(o, (o = Math.min(stream.length, o + n)));
      }
      yield stream.subarray(o);
    };
    try {
      for (const chunk of chunks()) {
        got.push(...decoder.push(chunk));
        // bounded before buffered: never more than one incomplete frame's worth held back
        expectThat(decoder.pending < 4 + maxFrame, `holds ${decoder.pending} bytes with a limit of ${maxFrame}`);
      }
    } catch (err) {
      expectThat(want.error, 'refused a stream the protocol allows');
      expectThat(got.every((f, i) => f.type === want.frames[i]?.type && f.payload.equals(want.frames[i]!.payload)), 'returned frames the stream does not hold');
      throw err;
    }
    expectThat(!want.error, 'accepted a stream with a forbidden frame');
    expectThat(got.length === want.frames.length && got.every((f, i) => f.type === want.frames[i]!.type && f.payload.equals(want.frames[i]!.payload)), 'returned other frames than the stream holds');
    expectThat(decoder.pending === want.rest, `holds ${decoder.pending} bytes, the stream left ${want.rest}`);
  },
});

// ---------------------------------------------------------------------------------------------
// A repository whose index.db has damaged bytes

interface IndexCtx {
  readonly temp: string;
  /** The repository's files, relative path → bytes, as a backup left them. */
  readonly files: ReadonlyMap<string, Buffer>;
  readonly indexSize: number;
  count: number;
  /** The damaged repository of the latest failure, kept for replay. */
  kept?: string;
}

interface IndexInput {
  readonly flips: readonly { readonly at: number; readonly xor: number }[];
  /** Truncate index.db to this fraction (of 1000), or leave its length. */
  readonly truncate: number | undefined;
}

function readTree(dir: string, rel = ''): [string, Buffer][] {
  return fs.readdirSync(path.join(dir, rel), { withFileTypes: true }).flatMap((e) => {
    const r = path.join(rel, e.name);
    return e.isDirectory() ? readTree(dir, r) : [[r, fs.readFileSync(path.join(dir, r))] as [string, Buffer]];
  });
}

registerTarget<IndexInput, IndexCtx>({
  name: 'index-db',
  description: 'Repository.open, listSnapshots, findSnapshot, verify (src/repo/): a repository whose index.db has flipped bytes',
  timeoutMs: 20_000,
  async setup() {
    const t = await openTestRepo({ workers: 1, packSize: 64 * 1024 });
    const src = tempDir('index-src');
    try {
      // A few directories, a file with a block list blob (more than 64 blocks), two snapshots.
      fs.mkdirSync(path.join(src, 'a', 'b'), { recursive: true });
      fs.writeFileSync(path.join(src, 'a', 'b', 'big'), crypto.randomBytes(70 * 4096));
      for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(src, 'a', `f${i}`), `file ${i}\n`.repeat(i * 10));
      fs.symlinkSync('a/f1', path.join(src, 'link'));
      await backupDir(t, src, { splitter: { kind: 'fixed', size: 4096 } });
      fs.writeFileSync(path.join(src, 'a', 'f3'), 'changed');
      await backupDir(t, src, { splitter: { kind: 'fixed', size: 4096 } });
      const { dir, repo } = t;
      await t.pool.close();
      repo.close();
      // A cheap key file instead of the default (100 ms of scrypt per open).
      for (const name of fs.readdirSync(path.join(dir, 'keys'))) fs.rmSync(path.join(dir, 'keys', name));
      fs.writeFileSync(path.join(dir, 'keys', 'cheap.json'), JSON.stringify(wrapKeys(repo.keys, TEST_PASSWORD, CHEAP)));
      const files = new Map(readTree(dir));
      await t.close();
      return { temp: tempDir('index'), files, indexSize: files.get('index.db')!.length, count: 0 };
    } finally {
      fs.rmSync(src, { recursive: true, force: true });
    }
  },
  // keeps ctx.temp when a damaged repository was kept in it for replay
  teardown: (ctx) => {
    if (fs.readdirSync(ctx.temp).length === 0) fs.rmSync(ctx.temp, { recursive: true, force: true });
  },
  input: () =>
    fc.record({
      // mostly one to three flips: many make SQLite refuse the file at once, a few let damage through to what reads rows
      flips: fc.array(fc.record({ at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }), { minLength: 1, maxLength: 3 }),
      truncate: fc.oneof({ weight: 8, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 999 }) }),
    }),
  async run({ flips, truncate }, ctx) {
    const dir = path.join(ctx.temp, `r${ctx.count++}`);
    for (const [rel, data] of ctx.files) {
      fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
      fs.writeFileSync(path.join(dir, rel), data);
    }
    let index = Buffer.from(ctx.files.get('index.db')!);
    for (const f of flips) index[f.at % index.length]! ^= f.xor;
    if (truncate !== undefined) index = index.subarray(0, Math.floor((index.length * truncate) / 1000));
    fs.writeFileSync(path.join(dir, 'index.db'), index);
    let repo: Repository | undefined;
    let pool: WorkerPool | undefined;
    let keep = false;
    try {
      repo = await Repository.open(dir, TEST_PASSWORD);
      pool = openRepoWorkers(repo, { workers: 1, level: 3, packSize: 64 * 1024 });
      for (const s of listSnapshots(repo)) findSnapshot(repo, s.id.slice(0, 8));
      await verify(repo, pool, { readData: false });
    } catch (err) {
      // The base repository is made afresh each run (random keys and names), so the flips alone
      // do not replay a failure: the damaged repository is kept for that.
      if (!(err instanceof LifeboatError) && err instanceof Error) {
        // only the latest failure's: while shrinking, each failing input replaces the one before
        if (ctx.kept) fs.rmSync(ctx.kept, { recursive: true, force: true });
        ctx.kept = dir;
        keep = true;
        err.message += ` [index.db bytes ${flips.map((f) => f.at % ctx.indexSize).join(', ')} flipped${truncate === undefined ? '' : `, cut to ${index.length}`}; damaged repository kept in ${dir}]`;
      }
      throw err;
    } finally {
      await pool?.close();
      repo?.close();
      if (!keep) fs.rmSync(dir, { recursive: true, force: true });
    }
  },
});
