import type { Command } from 'commander';
import { CorruptIndexError, RepairIncompleteError, UsageError } from '../../errors/errors.ts';
import { type BlobId, BlobType } from '../../repo/ids.ts';
import { rebuildIndex, type RebuildReport } from '../../repo/rebuild.ts';
import { Repository } from '../../repo/repository.ts';
import { INDEX_PROBLEMS, type Problem, verify } from '../../repo/verify.ts';
import type { IdRef } from '../../replicate/messages.ts';
import { parseListen } from '../../util/listen.ts';
import { type Context, type GlobalOptions, makeContext, readPassword, type RepoOptions, repoPath, withRepo } from '../context.ts';
import { repoCommand } from '../program.ts';
import { ProgressLine } from '../progress.ts';

interface RepairOptions extends RepoOptions {
  peer?: string;
  rebuildIndex?: boolean;
}

interface RepairReport {
  /** The index rebuilt from the packs and snapshot records, when it was. */
  readonly rebuilt: RebuildReport | null;
  readonly wanted: number;
  readonly repaired: number;
  /** Blobs fetched per peer. */
  readonly from: Record<string, number>;
  /** Peers that could not be asked, and why. */
  readonly failed: Record<string, string>;
  /** What verify still finds afterwards. */
  readonly problems: readonly Problem[];
}

export function registerRepair(program: Command): void {
  repoCommand(program, 'repair', "mend the repository: rebuild a damaged index from the packs, and fetch good copies of damaged or missing blobs from the peers' replicas")
    .option('--rebuild-index', 'rebuild index.db from the packs and snapshot records first (the old one is kept beside it)')
    .option('--peer <name>', 'ask only this [[peer]] (default: every peer this agent pushes to)')
    .action(async (opts: RepairOptions, cmd: Command) => {
      const ctx = makeContext(cmd.optsWithGlobals<GlobalOptions>());
      const peers = ctx.configFile ? ctx.config.peer.filter((p) => (opts.peer === undefined ? p.push : p.name === opts.peer)) : [];
      if (opts.peer !== undefined && peers.length === 0) throw new UsageError(ctx.configFile ? `no [[peer]] named ${JSON.stringify(opts.peer)}` : '--peer needs --config FILE');
      const check = () => withRepo(ctx, opts, async (repo, pool) => (await verify(repo, pool(), { readData: true, onProgress: readProgress(ctx) })).problems);
      let rebuilt = opts.rebuildIndex ? await rebuild(ctx, opts) : null;
      // an index that does not open, or that verify finds damaged, is rebuilt: it is only a cache of the packs and records
      let found = await check().catch((err: unknown) => {
        if (rebuilt || !(err instanceof CorruptIndexError)) throw err;
        return undefined;
      });
      if (!rebuilt && (found === undefined || found.some((p) => INDEX_PROBLEMS.has(p.kind)))) {
        rebuilt = await rebuild(ctx, opts);
        found = await check();
      }
      found ??= [];
      const report = found.length === 0 || peers.length === 0 ? { rebuilt, wanted: 0, repaired: 0, from: {}, failed: {}, problems: found } : { rebuilt, ...(await fetchFromPeers(ctx, opts, peers, found)) };
      ctx.out(report, () => describe(report));
      if (report.problems.length > 0) {
        const how = peers.length === 0 ? '; no [[peer]] with push = true holds a replica to fetch good copies from (pass --config)' : '';
        throw new RepairIncompleteError(`${report.problems.length} problems remain after repair (${report.repaired} of ${report.wanted} blobs mended)${how}; run verify --read-data for where they are used`);
      }
    });
}

/** The verify's reading of every pack, on the terminal's status line (each call its own line, erased when done). */
function readProgress(ctx: Context): (done: { packs: number; bytes: number }, total: { packs: number; bytes: number }) => void {
  const line = new ProgressLine(ctx.interactive);
  return (done, total) => (done.packs === total.packs ? line.done() : line.update(done.packs, done.bytes, 'read', { count: total.packs, bytes: total.bytes }, 'packs'));
}

async function rebuild(ctx: Context, opts: RepoOptions): Promise<RebuildReport> {
  const dir = repoPath(ctx, opts);
  return rebuildIndex(dir, await Repository.keysOf(dir, readPassword(ctx, opts)));
}

async function fetchFromPeers(ctx: Context, opts: RepoOptions, peers: Context['config']['peer'], found: readonly Problem[]): Promise<Omit<RepairReport, 'rebuilt'>> {
  const [{ connectToPeer }, { fetchBlobs }, { loadOrCreateIdentity }, { BlobMender }] = await Promise.all([
    import('../../replicate/transport.ts'),
    import('../../replicate/fetch.ts'),
    import('../../replicate/identity.ts'),
    import('../../repo/mend.ts'),
  ]);
  const identity = await loadOrCreateIdentity(ctx.config.agent.state_dir);
  return withRepo(ctx, opts, async (repo, pool) => {
    const wanted = wantedBlobs(repo, found);
    const from: Record<string, number> = {};
    const failed: Record<string, string> = {};
    const mender = new BlobMender(repo);
    try {
      for (const p of peers) {
        const left = wanted.filter((r) => !mender.has(r.id));
        if (left.length === 0) break;
        const { host, port } = parseListen(p.address, `peer ${p.name} address`);
        try {
          const conn = await connectToPeer({ identity, host, port, expectedId: p.id, idleTimeoutMs: ctx.config.replication.timeout });
          try {
            let n = 0;
            await fetchBlobs(conn, repo, left, (b) => {
              if (mender.offer(b)) n++;
            });
            from[p.name] = n;
          } finally {
            conn.destroy();
          }
        } catch (err) {
          failed[p.name] = (err as Error).message;
        }
      }
      const repaired = await mender.finish();
      const after = await verify(repo, pool(), { readData: true, onProgress: readProgress(ctx) });
      return { wanted: wanted.length, repaired, from, failed, problems: after.problems };
    } catch (err) {
      mender.abort();
      throw err;
    }
  });
}

/** The blobs verify found damaged or missing, and every blob the index places in a pack that is gone or damaged. */
function wantedBlobs(repo: Repository, problems: readonly Problem[]): IdRef[] {
  const out = new Map<string, IdRef>();
  const add = (id: BlobId, type: BlobType) => out.set(id.toString('hex'), { id, type });
  for (const p of problems) {
    if (p.blob) {
      const id = Buffer.from(p.blob, 'hex') as BlobId;
      add(id, repo.locate(id)?.type ?? BlobType.data);
    }
    if (p.pack) for (const r of repo.blobsInPack(p.pack)) add(r.id, r.type);
  }
  return [...out.values()];
}

function describe(r: RepairReport): string {
  const lines: string[] = [];
  if (r.rebuilt) {
    lines.push(`rebuilt the index from ${r.rebuilt.packs} packs: ${r.rebuilt.blobs} blobs, ${r.rebuilt.snapshots} snapshots${r.rebuilt.old_index ? `; the old index is kept as ${r.rebuilt.old_index}` : ''}`);
    for (const p of r.rebuilt.damaged_packs) lines.push(`  pack ${p} is damaged: its blobs are not indexed`);
  }
  lines.push(r.wanted === 0 ? (r.problems.length === 0 ? 'nothing left to repair: every blob authenticated' : 'no peer to fetch good copies from') : `mended ${r.repaired} of ${r.wanted} damaged or missing blobs`);
  for (const [peer, n] of Object.entries(r.from)) lines.push(`  ${n} from ${peer}`);
  for (const [peer, why] of Object.entries(r.failed)) lines.push(`  ${peer} could not be asked: ${why}`);
  for (const p of r.problems) lines.push(`error: ${p.message}`);
  return lines.join('\n');
}
