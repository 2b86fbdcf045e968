import path from 'node:path';
import type { Command } from 'commander';
import { DrillFailedError } from '../../errors/errors.ts';
import type { DrillResult } from '../../recover/drill.ts';
import { formatBytes } from '../../util/units.ts';
import { type GlobalOptions, makeContext } from '../context.ts';
import { type SourceOptions, sourceCommand, withSource } from './recover.ts';
import { table } from './snapshots.ts';

export function registerDrill(program: Command): void {
  sourceCommand(program, 'drill', 'recover a host\'s containers into isolation here, check they come up on their data, then remove them')
    .action(async (opts: SourceOptions, cmd: Command) => {
      const ctx = makeContext(cmd.optsWithGlobals<GlobalOptions>());
      // Ctrl+C or a stop ends the waiting; the drill still removes what it made.
      const abort = new AbortController();
      const stop = () => abort.abort();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      const [{ drill }, { connectEngine }] = await Promise.all([import('../../recover/drill.ts'), import('../../docker/connect.ts')]);
      let result: DrillResult;
      try {
        result = await withSource(ctx, opts, 'drill', (repo, pool, onlyHostSnapshots) =>
          drill(connectEngine(ctx.config), repo, opts.from, {
            onlyHostSnapshots,
            pool: pool(),
            workDir: path.join(ctx.config.agent.state_dir, 'tmp'),
            log: ctx.log,
            signal: abort.signal,
          }),
        );
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      }
      ctx.out(result, () => describeDrill(result));
      if (!result.ok) {
        const down = result.containers.filter((c) => c.came_up === false || (c.reason !== null && !c.started)).length;
        const bad = result.volumes.filter((v) => v.data_matched !== true).length;
        const why = [
          down > 0 ? `${down} of ${result.containers.length} containers did not come up` : '',
          bad > 0 ? `${bad} volumes did not match their snapshots` : '',
          result.error ? `it failed: ${result.error}` : '',
          result.cleanup.ok ? '' : `left behind: ${result.cleanup.left.join(', ')}`,
        ].filter(Boolean);
        throw new DrillFailedError(`drill of host ${opts.from} failed: ${why.join('; ') || 'see the report'}`);
      }
    });
}

const yesNo = (v: boolean | null) => (v === null ? '-' : v ? 'yes' : 'NO');

function describeDrill(r: DrillResult): string {
  const lines = [`drill ${r.run_id} of host ${r.host} on ${r.engine.name}: ${r.ok ? 'passed' : 'FAILED'} in ${(r.duration_ms / 1000).toFixed(2)} s`, ''];
  lines.push(
    table(
      ['CONTAINER', 'STARTED', 'CAME UP', 'HEALTHY', 'DATA MATCHED', 'UP AFTER', 'WHY NOT'],
      r.containers.map((c) => [c.name, c.started ? 'yes' : 'no', yesNo(c.came_up), yesNo(c.healthy), yesNo(c.data_matched), c.up_ms === null ? '' : `${(c.up_ms / 1000).toFixed(2)} s`, c.reason ?? '']),
    ),
    '',
    table(
      ['VOLUME', 'DATA MATCHED', 'FILES', 'BYTES', 'DIFFERENCES'],
      r.volumes.map((v) => [v.name, yesNo(v.data_matched), v.files === null ? '' : String(v.files), v.bytes === null ? '' : formatBytes(v.bytes), v.reason ?? v.differences.join('; ')]),
    ),
  );
  if (r.error) lines.push('', `error: ${r.error}`);
  lines.push('', r.cleanup.ok ? 'cleaned up: nothing left behind' : `NOT cleaned up: ${r.cleanup.left.join(', ')}`);
  return lines.join('\n');
}
