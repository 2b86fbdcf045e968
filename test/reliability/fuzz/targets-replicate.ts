/**
 * The fuzz targets for what a peer sends: every protocol message decoder,
 * and a replica session driven by a hostile source (a mutated hello, blobs
 * never asked for, damaged blobs, refs to nothing, commits of snapshots it
 * lacks). The session must refuse with a typed error, write nothing outside
 * its replica directory, and never index a tree whose refs are not there.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { generateMasterKeys, wrapKeys } from '../../../src/repo/keys.ts';
import { BlobType, type BlobId } from '../../../src/repo/ids.ts';
import { SEAL_OVERHEAD } from '../../../src/repo/crypto.ts';
import {
  decodeAnswer,
  decodeBlob,
  decodeCommit,
  decodeCommitted,
  decodeError,
  decodeFetched,
  decodeFlushed,
  decodeHello,
  decodeIds,
  decodeWelcome,
  encodeBlob,
  encodeCommit,
  encodeHello,
  encodeIds,
  type Hello,
} from '../../../src/replicate/messages.ts';
import { ReplicaSession } from '../../../src/replicate/replica.ts';
import type { Snapshot } from '../../../src/repo/snapshot.ts';
import { registerTarget } from './fuzz.ts';
import { mutated, wrongValue } from './mutate.ts';
import { INDEX_DB } from '../../../src/repo/index-db.ts';

const id32 = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b) as BlobId);
const hex64 = id32.map((b) => b.toString('hex'));
const PROTOCOL = ['LB_ERR_PROTOCOL'];

const keyText = JSON.stringify(wrapKeys(generateMasterKeys(), 'pw', { N: 1024, r: 8, p: 1 } as unknown as Parameters<typeof wrapKeys>[2]));
const validHello: Hello = { protocol: 1, config: { lifeboat_repository: 1, id: 'ab'.repeat(16), created: '2026-11-30T00:00:00.000Z' }, keys: [{ name: '0123456789abcdef.json', text: keyText }] };

const snapshot = (tree: BlobId, meta: BlobId | null): Snapshot => ({
  id: crypto.randomBytes(32).toString('hex'),
  time: new Date().toISOString(),
  host: 'fuzz',
  source: '/src',
  volume: null,
  parent: null,
  tree,
  meta,
  tags: [],
  splitter: { kind: 'fixed', size: 65536 },
  stats: { files: 1, dirs: 1, files_new: 1, files_changed: 0, files_unchanged: 0, bytes_read: 1, bytes_new: 1, bytes_stored: 1, blobs_new: 1, bytes_total: 1, errors: 0, examined: 1, duration_ms: 1 },
});

/** Valid encodings of every control message, to mutate. */
const controlMessages = fc.oneof(
  fc.constant({ decode: decodeHello, bytes: encodeHello(validHello) }),
  fc.array(hex64, { maxLength: 5 }).map((snapshots) => ({ decode: decodeWelcome, bytes: Buffer.from(JSON.stringify({ snapshots })) })),
  fc.array(hex64, { maxLength: 5 }).map((rejected) => ({ decode: decodeFlushed, bytes: Buffer.from(JSON.stringify({ rejected })) })),
  fc.array(hex64, { maxLength: 5 }).map((missing) => ({ decode: decodeFetched, bytes: Buffer.from(JSON.stringify({ missing })) })),
  hex64.map((s) => ({ decode: decodeCommitted, bytes: Buffer.from(JSON.stringify({ snapshot: s })) })),
  fc.constant({ decode: decodeError, bytes: Buffer.from(JSON.stringify({ code: 'LB_ERR_NO_SPACE', message: 'full' })) }),
  fc.tuple(id32, fc.option(id32, { nil: null })).map(([t, m]) => ({ decode: decodeCommit, bytes: encodeCommit(snapshot(t, m)) })),
);

registerTarget({
  name: 'replicate-control',
  description: 'the JSON control messages of the peer protocol (src/replicate/messages.ts): hello, welcome, flushed, fetched, committed, error, commit',
  codes: PROTOCOL,
  input: () =>
    fc.oneof(
      { weight: 3, arbitrary: controlMessages.chain((m) => mutated(fc.constant(new Uint8Array(m.bytes))).map((bytes) => ({ decode: m.decode, bytes }))) },
      { weight: 2, arbitrary: fc.tuple(controlMessages, fc.jsonValue({ maxDepth: 3 })).map(([m, v]) => ({ decode: m.decode, bytes: Buffer.from(JSON.stringify(v) ?? 'null') })) },
      { weight: 1, arbitrary: fc.tuple(controlMessages, wrongValue).map(([m, v]) => ({ decode: m.decode, bytes: Buffer.from(JSON.stringify({ protocol: 1, config: v, keys: v, snapshots: v, snapshot: v }) ?? '') })) },
    ),
  run(input: { decode: (p: Buffer) => unknown; bytes: Buffer }) {
    input.decode(Buffer.from(input.bytes));
  },
});

const blobMessage = fc
  .record({ type: fc.constantFrom(BlobType.data, BlobType.tree, BlobType.list, BlobType.meta), id: id32, raw: fc.nat(), refs: fc.array(id32, { maxLength: 4 }), stored: fc.uint8Array({ minLength: 0, maxLength: 200 }) })
  .map((b) => {
    const stored = Buffer.from(b.stored);
    return Buffer.concat(encodeBlob({ type: b.type, id: b.id, rawLength: b.raw, sha256: crypto.createHash('sha256').update(stored).digest(), refs: b.type === BlobType.tree || b.type === BlobType.list ? b.refs : [], stored }));
  });

registerTarget({
  name: 'replicate-binary',
  description: 'the binary messages of the peer protocol: id lists (query, fetch), answers, blob frames',
  codes: PROTOCOL,
  input: () =>
    fc.oneof(
      mutated(blobMessage).map((bytes) => ({ kind: 'blob' as const, bytes, n: 0 })),
      mutated(fc.array(fc.record({ type: fc.nat({ max: 3 }), id: id32 }), { minLength: 1, maxLength: 6 }).map((ids) => encodeIds(ids.map((r) => ({ type: r.type as BlobType, id: r.id }))))).map((bytes) => ({ kind: 'ids' as const, bytes, n: 0 })),
      fc.tuple(fc.uint8Array({ maxLength: 8 }), fc.nat({ max: 80 })).map(([b, n]) => ({ kind: 'answer' as const, bytes: Buffer.from(b), n })),
    ),
  run(input: { kind: 'blob' | 'ids' | 'answer'; bytes: Buffer; n: number }) {
    const p = Buffer.from(input.bytes);
    if (input.kind === 'blob') {
      const b = decodeBlob(p);
      if (b.refs.length > 0 && b.type !== BlobType.tree && b.type !== BlobType.list) throw new Error('accepted refs on a blob that cannot have any');
    } else if (input.kind === 'ids') decodeIds(p);
    else decodeAnswer(p, input.n);
  },
});

/** One step of a hostile source, in terms of the session's calls. */
type Step =
  | { readonly op: 'query'; readonly ids: { id: BlobId; type: BlobType }[] }
  | { readonly op: 'blob'; readonly type: BlobType; readonly id: BlobId; readonly refs: BlobId[]; readonly size: number; readonly damage: boolean }
  | { readonly op: 'flush' }
  | { readonly op: 'commit'; readonly tree: BlobId; readonly meta: BlobId | null };

interface SessionCtx {
  readonly root: string;
  count: number;
}

const ids = fc.array(id32, { minLength: 1, maxLength: 6 });

registerTarget<{ hello: Buffer; steps: Step[] }, SessionCtx>({
  name: 'replica-session',
  description: 'a replica session (src/replicate/replica.ts) driven by a hostile source: mutated hellos, blobs never asked for or damaged, refs to nothing, commits of what it lacks',
  codes: ['LB_ERR_PROTOCOL', 'LB_ERR_REPLICA_MISMATCH'],
  timeoutMs: 20_000,
  setup: () => ({ root: fs.mkdtempSync(path.join(os.tmpdir(), 'lifeboat-fuzz-replica-')), count: 0 }),
  teardown: (ctx) => fs.rmSync(ctx.root, { recursive: true, force: true }),
  input: () =>
    ids.chain((pool) => {
      const known = fc.constantFrom(...pool);
      const type = fc.constantFrom(BlobType.data, BlobType.tree, BlobType.list, BlobType.meta);
      const step: fc.Arbitrary<Step> = fc.oneof(
        fc.array(fc.record({ id: known, type }), { minLength: 1, maxLength: 4 }).map((q) => ({ op: 'query' as const, ids: q })),
        fc.record({ type, id: fc.oneof(known, id32), refs: fc.array(fc.oneof(known, id32), { maxLength: 3 }), size: fc.integer({ min: 0, max: 400 }), damage: fc.boolean() }).map((b) => ({ op: 'blob' as const, ...b })),
        fc.constant({ op: 'flush' as const }),
        fc.record({ tree: fc.oneof(known, id32), meta: fc.option(known, { nil: null }) }).map((c) => ({ op: 'commit' as const, ...c })),
      );
      return fc.record({
        hello: fc.oneof({ weight: 6, arbitrary: fc.constant(encodeHello(validHello)) }, { weight: 1, arbitrary: mutated(fc.constant(new Uint8Array(encodeHello(validHello)))) }),
        steps: fc.array(step, { maxLength: 25 }),
      });
    }),
  async run({ hello, steps }, ctx) {
    const home = path.join(ctx.root, `r${ctx.count++}`);
    const dir = path.join(home, 'replicas', 'source');
    fs.mkdirSync(home);
    let session: ReplicaSession | undefined;
    try {
      session = await ReplicaSession.open(dir, decodeHello(Buffer.from(hello)), { packSize: 4096 });
      const s = session;
      for (const step of steps) {
        if (step.op === 'query') s.answer(step.ids);
        else if (step.op === 'flush') await s.flush();
        else if (step.op === 'commit') await s.commit(snapshot(step.tree, step.meta));
        else {
          const stored = crypto.randomBytes(SEAL_OVERHEAD + step.size);
          const sha = crypto.createHash('sha256').update(stored).digest();
          if (step.damage) stored[0]! ^= 1;
          await s.accept(decodeBlob(Buffer.concat(encodeBlob({ type: step.type, id: step.id, rawLength: step.size, sha256: sha, refs: step.type === BlobType.tree || step.type === BlobType.list ? step.refs : [], stored }))));
        }
      }
      await s.flush();
    } finally {
      await session?.close();
      // nothing outside the replica's own directory
      const outside = [...fs.readdirSync(home).filter((n) => n !== 'replicas'), ...(fs.existsSync(path.dirname(dir)) ? fs.readdirSync(path.dirname(dir)).filter((n) => n !== 'source') : [])];
      if (outside.length > 0) throw new Error(`wrote outside the replica: ${outside.join(', ')}`);
    }
    // every indexed tree or list names only what is indexed: a later push may skip it whole
    const { Store } = await import('../../../src/repo/store.ts');
    const store = Store.openStore(dir);
    try {
      const dangling = store[INDEX_DB].prepare('SELECT count(*) FROM refs r WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = r.child)').pluck().get() as number;
      if (dangling > 0) throw new Error(`indexed ${dangling} refs to blobs it does not hold`);
      const orphanSnapshots = store[INDEX_DB].prepare('SELECT count(*) FROM snapshots s WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = s.tree)').pluck().get() as number;
      if (orphanSnapshots > 0) throw new Error('committed a snapshot whose tree it does not hold');
    } finally {
      store.close();
    }
  },
});
