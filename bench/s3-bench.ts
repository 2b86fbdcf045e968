// Object-storage benchmark (issue 17): Lifeboat's backup + `target push` and restic's backup to
// the same real Ceph RADOS Gateway, side by side in one run, on the repository benchmark's tree:
// the first upload, then a 1% in-place change. Per step: wall time, bytes and objects the bucket
// gained, and the requests the gateway served (its log's "req done" lines).
//
//   node bench/s3-bench.ts [--size-mib 1024] [--seed S] [--work bench/work]
// (root; Ceph and restic from Debian: bench/s3.sh installs them.)
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { createBucket, s3Client, startRgw, type Rgw } from '../test/lib/ceph-rgw.ts';
import { ensureTree } from './gen-tree.ts';
import { table } from './lib/report.ts';
import { ensureOk, runTimed, type TimedResult } from './lib/timed.ts';
import { mutateTree } from './mutate.ts';

const { values } = parseArgs({ options: { 'size-mib': { type: 'string', default: '1024' }, seed: { type: 'string', default: 'lifeboat-bench' }, work: { type: 'string', default: 'bench/work' } } });
const sizeMib = Number(values['size-mib']);
const work = resolve(values.work);
const log = (m: string) => process.stderr.write(`[s3-bench] ${m}\n`);
const LIFEBOAT = resolve('bin/lifeboat');
const PASSWORD = 'bench';

interface Bucket {
  readonly objects: number;
  readonly bytes: number;
}

async function bucketTotals(rgw: Rgw, bucket: string): Promise<Bucket> {
  const s3 = s3Client(rgw);
  let objects = 0;
  let bytes = 0;
  let token: string | undefined;
  try {
    do {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
      for (const o of page.Contents ?? []) {
        objects++;
        bytes += o.Size ?? 0;
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  } finally {
    s3.destroy();
  }
  return { objects, bytes };
}

/** Requests the gateway has finished so far (one "req done" line each in its log). */
const requests = (logFile: string) => readFileSync(logFile, 'utf8').split('\n').filter((l) => l.includes('req done')).length;

interface Row {
  readonly tool: string;
  readonly step: string;
  readonly wallS: number;
  readonly parts: string;
  readonly cpuS: number;
  readonly bytes: number;
  readonly objects: number;
  readonly requests: number;
}

async function main(): Promise<void> {
  const tree = join(work, 'tree');
  const { layout } = ensureTree(tree, { sizeMib, seed: values.seed });
  const dir = join(work, 's3');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  log(`tree ${tree}: ${layout.fileCount} files; starting Ceph RGW`);
  const rgw = await startRgw(join(dir, 'ceph'));
  const rgwLog = join(dir, 'ceph', 'log', 'ceph-client.rgw.log');
  try {
    await createBucket(rgw, 'lifeboat');
    await createBucket(rgw, 'restic');
    const credentials = join(dir, 'aws-credentials');
    writeFileSync(credentials, `[default]\naws_access_key_id = ${rgw.accessKeyId}\naws_secret_access_key = ${rgw.secretAccessKey}\n`, { mode: 0o600 });
    const config = join(dir, 'lifeboat.toml');
    writeFileSync(
      config,
      ['[agent]', `state_dir = ${JSON.stringify(join(dir, 'state'))}`, '[repository]', `path = ${JSON.stringify(join(dir, 'repo'))}`, '[[target]]', 'name = "bench"', `endpoint = ${JSON.stringify(rgw.endpoint)}`, 'bucket = "lifeboat"', 'path_style = true', `credentials_file = ${JSON.stringify(credentials)}`, ''].join('\n'),
    );
    const env = { ...process.env, LIFEBOAT_PASSWORD: PASSWORD, RESTIC_PASSWORD: PASSWORD, LIFEBOAT_CACHE_DIR: join(dir, 'cache'), XDG_CACHE_HOME: join(dir, 'cache'), AWS_ACCESS_KEY_ID: rgw.accessKeyId, AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey };
    const restic = `s3:${rgw.endpoint}/restic`;
    ensureOk(runTimed([LIFEBOAT, '--config', config, 'init'], { env }), 'lifeboat init');
    ensureOk(runTimed(['restic', '-r', restic, 'init'], { env }), 'restic init');
    spawnSync('sync');

    const rows: Row[] = [];
    const measure = async (tool: string, step: string, bucket: string, commands: readonly (readonly [string, readonly string[]])[]) => {
      const before = { totals: await bucketTotals(rgw, bucket), requests: requests(rgwLog) };
      const runs: [string, TimedResult][] = [];
      for (const [name, argv] of commands) {
        spawnSync('sync');
        runs.push([name, ensureOk(runTimed(argv, { env }), `${tool} ${name}`)]);
      }
      const after = { totals: await bucketTotals(rgw, bucket), requests: requests(rgwLog) };
      const row: Row = {
        tool,
        step,
        wallS: runs.reduce((n, [, r]) => n + r.wallS, 0),
        parts: runs.length > 1 ? runs.map(([name, r]) => `${name} ${r.wallS.toFixed(2)}`).join(' + ') : '',
        cpuS: runs.reduce((n, [, r]) => n + r.userS + r.sysS, 0),
        bytes: after.totals.bytes - before.totals.bytes,
        objects: after.totals.objects - before.totals.objects,
        requests: after.requests - before.requests,
      };
      rows.push(row);
      log(`${step}: ${tool} ${row.wallS.toFixed(2)} s, ${row.bytes} bytes, ${row.objects} objects, ${row.requests} requests`);
    };
    const steps = async (step: string) => {
      await measure('lifeboat', step, 'lifeboat', [
        ['backup', [LIFEBOAT, '--config', config, 'backup', '--path', tree]],
        ['push', [LIFEBOAT, '--config', config, 'target', 'push', 'bench']],
      ]);
      await measure('restic', step, 'restic', [['backup', ['restic', '-r', restic, 'backup', '--quiet', tree]]]);
    };
    await steps('first upload');
    const mutation = mutateTree(tree, { sizeMib, seed: values.seed, round: Date.now() % 100_000 });
    log(`mutated: ${mutation.changedBytes} bytes truly changed`);
    await steps('1% in-place change');

    const versions = {
      lifeboat: spawnSync(LIFEBOAT, ['--version'], { encoding: 'utf8' }).stdout.trim(),
      restic: spawnSync('restic', ['version'], { encoding: 'utf8' }).stdout.trim(),
      ceph: spawnSync('radosgw', ['--version'], { encoding: 'utf8' }).stdout.trim(),
    };
    const mb = (n: number) => `${(n / 1e6).toFixed(2)} MB`;
    const out = [
      `## Object-storage benchmark: ${layout.fileCount} files, ${sizeMib} MiB, ${cpus().length} × ${cpus()[0]?.model ?? '?'}, ${Math.round(totalmem() / 2 ** 30)} GiB RAM`,
      '',
      `- lifeboat ${versions.lifeboat} (backup to a local repository, then \`target push\`); ${versions.restic} (backup straight to the bucket)`,
      `- ${versions.ceph}: one monitor, one memstore OSD, radosgw (beast) on loopback; each tool its own bucket`,
      `- the 1% change: ${mb(mutation.changedBytes)} truly changed`,
      '',
      table(
        ['step', 'tool', 'wall (s)', 'of which', 'CPU (s)', 'bucket grew', 'objects added', 'requests'],
        rows.map((r) => [r.step, r.tool, r.wallS.toFixed(2), r.parts || '-', r.cpuS.toFixed(2), mb(r.bytes), String(r.objects), String(r.requests)]),
        false,
      ),
    ].join('\n');
    process.stdout.write(`${out}\n`);
    mkdirSync(join('bench', 'results'), { recursive: true });
    writeFileSync(join('bench', 'results', 's3-latest.json'), JSON.stringify({ date: new Date().toISOString(), versions, sizeMib, changedBytes: mutation.changedBytes, rows }, null, 2));
  } finally {
    await rgw.stop();
  }
}

await main();
