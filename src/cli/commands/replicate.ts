import path from 'node:path';
import type { Command } from 'commander';
import { AgentCatalog } from '../../catalog/agent-catalog.ts';
import { ReplicationFailedError, UsageError } from '../../errors/errors.ts';
import type { PushOutcome } from '../../replicate/replicator.ts';
import { formatBytes } from '../../util/units.ts';
import { askAgent } from '../agent-client.ts';
import { type Context, type GlobalOptions, makeContext, openRepo, type RepoOptions } from '../context.ts';
import { ProgressLine } from '../progress.ts';

export function registerReplicate(program: Command): void {
  program
    .command('replicate')
    .description('push the snapshots a peer lacks to it now (all [[peer]] entries pushed to, or PEER); through the running agent when one answers')
    .argument('[peer]', 'the name of a [[peer]]')
    .option('--password-file <file>', 'without a running agent: the repository password')
    .action(async (peer: string | undefined, opts: Pick<RepoOptions, 'passwordFile'>, cmd: Command) => {
      const ctx = makeContext(cmd.optsWithGlobals<GlobalOptions>());
      if (!ctx.configFile) throw new UsageError('replicate needs --config FILE (its [[peer]] entries)');
      if (peer !== undefined && !ctx.config.peer.some((p) => p.name === peer)) {
        throw new UsageError(`no [[peer]] named ${JSON.stringify(peer)}; the peers are: ${ctx.config.peer.map((p) => p.name).join(', ') || 'none'}`);
      }
      if (ctx.config.peer.length === 0) throw new UsageError('the config has no [[peer]] to replicate to');
      const outcomes = (await throughAgent(ctx, peer)) ?? (await inProcess(ctx, peer, opts));
      ctx.out(outcomes, () => outcomes.map(describe).join('\n'));
      const failed = outcomes.find((o) => !o.ok);
      if (failed) throw new ReplicationFailedError(failed.peer, failed.error?.message ?? 'unknown error', failed.error?.code ?? 'LB_ERR_INTERNAL');
    });
}

/** POST /replicate on the running agent: it owns the peers' state and the repository. Undefined when no agent answers. */
async function throughAgent(ctx: Context, peer: string | undefined): Promise<PushOutcome[] | undefined> {
  const listen = ctx.config.agent.listen;
  if (listen === '') return undefined;
  // a first push of a large volume takes as long as it takes
  const a = await askAgent(ctx.config.agent, 'POST', `/replicate${peer ? `?peer=${encodeURIComponent(peer)}` : ''}`, 24 * 3600_000);
  if ('unreachable' in a) return undefined;
  if (a.status !== 200) {
    const e = a.body as { error?: string; code?: string };
    throw new UsageError(`the agent refused: ${e.error ?? `HTTP ${a.status}`}`);
  }
  return a.body as PushOutcome[];
}

async function inProcess(ctx: Context, peer: string | undefined, opts: Pick<RepoOptions, 'passwordFile'>): Promise<PushOutcome[]> {
  const config = ctx.config;
  // loaded here: the other commands need none of TLS, the x509 encoder or the protocol
  const [{ Replicator }, { PeerStateStore }, { loadOrCreateIdentity }] = await Promise.all([
    import('../../replicate/replicator.ts'),
    import('../../replicate/peer-state.ts'),
    import('../../replicate/identity.ts'),
  ]);
  const repo = await openRepo(ctx, opts);
  const catalog = AgentCatalog.open(config.agent.state_dir);
  const progress = new ProgressLine(ctx.interactive);
  const replicator = new Replicator({
    config,
    identity: await loadOrCreateIdentity(config.agent.state_dir),
    repo,
    state: new PeerStateStore(catalog.db),
    log: ctx.log,
    scratchDir: path.join(config.agent.state_dir, 'tmp'),
    retries: false,
    onProgress: (p, tally) => progress.update(tally.blobs_sent, tally.bytes_sent, `to ${p.name}: sent`, undefined, 'blobs'),
  });
  try {
    return await replicator.replicate(peer);
  } finally {
    progress.done();
    await replicator.stop();
    catalog.close();
    repo.close();
  }
}

function describe(o: PushOutcome): string {
  if (!o.ok || !o.report) return `${o.peer}: failed: ${o.error?.message} [${o.error?.code}]`;
  const r = o.report;
  if (r.snapshots === 0) return `${o.peer}: up to date (${r.already} snapshots)`;
  return `${o.peer}: ${r.snapshots} snapshots sent (${r.blobs_sent} blobs, ${formatBytes(r.bytes_sent)}) in ${(r.duration_ms / 1000).toFixed(2)} s; it now holds ${r.already + r.snapshots}`;
}
