import path from 'node:path';
import type { Command } from 'commander';
import { DrillFailedError, InterruptedError } from '../../errors/errors.ts';
import type { DrillResult } from '../../recover/drill.ts';
import { formatBytes } from '../../util/units.ts';
import { type GlobalOptions, makeContext } from '../context.ts';
import { type Interrupt, interruptible } from '../interrupt.ts';
import { type SourceOptions, sourceCommand, withSource } from './recover.ts';
import { table } from './snapshots.ts';
import { ProgressLine } from '../progress.ts';

export function registerDrill(program: Command): void {
  sourceCommand(program, 'drill', 'recover a host\'s containers into isolation here, check they come up on their data, then remove them')
    .action(async (opts: SourceOptions, cmd: Command) => {
      const ctx = makeContext(cmd.optsWithGlobals<GlobalOptions>());
      const [{ drill, drillRunId }, { connectEngine }, { RECOVERY_LABEL }] = await Promise.all([
        import('../../recover/drill.ts'),
        import('../../docker/connect.ts'),
        import('../../recover/labels.ts'),
      ]);
      // Ctrl+C or a stop ends the waiting and abandons a restore under way; the drill still removes what it made.
      // A second signal exits at once: it names what is left, by the run id every name and label carries.
      const runId = drillRunId();
      let interrupt: Interrupt | undefined;
      let cleaned = false;
      const result: DrillResult = await interruptible(
        { what: `drill ${runId} of host ${opts.from}`, stopped: 'it made nothing yet', interactive: ctx.interactive },
        (i) => {
          interrupt = i;
          i.onAbandon(() =>
            cleaned
              ? undefined
              : `exiting without removing what it made: remove the containers, volumes and networks labelled ${RECOVERY_LABEL.drill}=${runId}`,
          );
          const progress = new ProgressLine(ctx.interactive);
          return withSource(
            ctx,
            opts,
            'drill',
            (repo, pool, onlyHostSnapshots) =>
              drill(connectEngine(ctx.config), repo, opts.from, {
                onProgress: (volume, done, total) => progress.update(done.files, done.bytes, `volume ${volume}: restored`, { count: total.files, bytes: total.bytes }),
                onlyHostSnapshots,
                pool: pool(),
                workDir: path.join(ctx.config.agent.state_dir, 'tmp'),
                log: ctx.log,
                signal: i.signal,
                runId,
              }).finally(() => {
                cleaned = true;
                progress.done();
              }),
            i,
          );
        },
      );
      ctx.out(result, () => describeDrill(result));
      if (interrupt?.reason) {
        const cleanup = result.cleanup.ok ? 'everything it made was removed' : `NOT cleaned up: ${result.cleanup.left.join(', ')}`;
        throw new InterruptedError(`${interrupt.reason.message}: ${cleanup}`);
      }
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
      ['CONTAINER', 'STARTED', 'CAME UP', 'HEALTHY', 'ANSWERED', 'DATA MATCHED', 'UP AFTER', 'WHY NOT'],
      r.containers.map((c) => [c.name, c.started ? 'yes' : 'no', yesNo(c.came_up), yesNo(c.healthy), yesNo(c.answered), yesNo(c.data_matched), c.up_ms === null ? '' : `${(c.up_ms / 1000).toFixed(2)} s`, c.reason ?? '']),
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
