import type { Command } from 'commander';
import { RepairIncompleteError, UsageError } from '../../errors/errors.ts';
import { type BlobId, BlobType } from '../../repo/ids.ts';
import type { Repository } from '../../repo/repository.ts';
import { type Problem, verify } from '../../repo/verify.ts';
import type { IdRef } from '../../replicate/messages.ts';
import { parseListen } from '../../util/listen.ts';
import { type GlobalOptions, makeContext, type RepoOptions, withRepo } from '../context.ts';
import { repoCommand } from '../program.ts';

interface RepairOptions extends RepoOptions {
  peer?: string;
}

interface RepairReport {
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
  repoCommand(program, 'repair', "verify every blob, and fetch good copies of the damaged or missing ones from the peers' replicas of this repository")
    .option('--peer <name>', 'ask only this [[peer]] (default: every peer this agent pushes to)')
    .action(async (opts: RepairOptions, cmd: Command) => {
      const ctx = makeContext(cmd.optsWithGlobals<GlobalOptions>());
      if (!ctx.configFile) throw new UsageError('repair needs --config FILE (its [[peer]] entries and the agent identity)');
      const peers = ctx.config.peer.filter((p) => (opts.peer === undefined ? p.push : p.name === opts.peer));
      if (peers.length === 0) throw new UsageError(opts.peer === undefined ? 'no [[peer]] holds a replica of this repository (none has push = true)' : `no [[peer]] named ${JSON.stringify(opts.peer)}`);
      const [{ connectToPeer }, { fetchBlobs }, { loadOrCreateIdentity }, { BlobMender }] = await Promise.all([
        import('../../replicate/transport.ts'),
        import('../../replicate/fetch.ts'),
        import('../../replicate/identity.ts'),
        import('../../repo/mend.ts'),
      ]);
      const identity = await loadOrCreateIdentity(ctx.config.agent.state_dir);
      const report = await withRepo(ctx, opts, async (repo, pool): Promise<RepairReport> => {
        const wanted = wantedBlobs(repo, (await verify(repo, pool(), { readData: true })).problems);
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
          const after = await verify(repo, pool(), { readData: true });
          return { wanted: wanted.length, repaired, from, failed, problems: after.problems };
        } catch (err) {
          mender.abort();
          throw err;
        }
      });
      ctx.out(report, () => describe(report));
      if (report.problems.length > 0) {
        throw new RepairIncompleteError(`${report.problems.length} problems remain after repair (${report.repaired} of ${report.wanted} blobs mended); run verify --read-data for where they are used`);
      }
    });
}

/** The blobs verify found damaged or missing, and every blob the index places in a pack that is gone or damaged. */
function wantedBlobs(repo: Repository, problems: readonly Problem[]): IdRef[] {
  const out = new Map<string, IdRef>();
  const add = (hex: string, type: BlobType) => out.set(hex, { id: Buffer.from(hex, 'hex') as BlobId, type });
  const inPack = repo.db.prepare('SELECT b.id, b.type FROM blobs b JOIN packs p ON p.id = b.pack WHERE p.name = ?');
  for (const p of problems) {
    if (p.blob) add(p.blob, (repo.locate(Buffer.from(p.blob, 'hex') as BlobId)?.type ?? BlobType.data) as BlobType);
    if (p.pack) for (const r of inPack.all(p.pack) as { id: Buffer; type: BlobType }[]) add(r.id.toString('hex'), r.type);
  }
  return [...out.values()];
}

function describe(r: RepairReport): string {
  const lines = [r.wanted === 0 ? 'nothing to repair: every blob authenticated' : `mended ${r.repaired} of ${r.wanted} damaged or missing blobs`];
  for (const [peer, n] of Object.entries(r.from)) lines.push(`  ${n} from ${peer}`);
  for (const [peer, why] of Object.entries(r.failed)) lines.push(`  ${peer} could not be asked: ${why}`);
  for (const p of r.problems) lines.push(`error: ${p.message}`);
  return lines.join('\n');
}
