import type { Command } from 'commander';
import { AgentCatalog, type HistoryRow, type ObjectKind } from '../../catalog/agent-catalog.ts';
import { EngineUnavailableError, UsageError } from '../../errors/errors.ts';
import { formatBytes } from '../../util/units.ts';
import { type Context, type GlobalOptions, makeContext } from '../context.ts';
import { table } from './snapshots.ts';

interface InventoryOptions {
  history?: boolean;
  limit?: string;
}

const KIND_ARGS: Readonly<Record<string, ObjectKind>> = {
  containers: 'container',
  container: 'container',
  volumes: 'volume',
  volume: 'volume',
  images: 'image',
  image: 'image',
  networks: 'network',
  network: 'network',
};

export function registerInventory(program: Command): void {
  program
    .command('inventory')
    .description('sync and list the Docker host\'s containers, volumes, images and networks, or their history')
    .argument('[kind]', 'containers, volumes, images or networks (default: all)')
    .option('--history', 'print what changed and when instead of what is there now')
    .option('--limit <n>', 'with --history: only the newest N changes')
    .action(async (kindArg: string | undefined, opts: InventoryOptions, cmd: Command) => {
      const ctx = makeContext(cmd.optsWithGlobals<GlobalOptions>());
      if (!ctx.configFile) throw new UsageError('inventory needs --config FILE (for the state directory and the Docker engine)');
      const kind = kindArg === undefined ? undefined : KIND_ARGS[kindArg];
      if (kindArg !== undefined && kind === undefined) {
        throw new UsageError(`unknown kind ${JSON.stringify(kindArg)}: expected containers, volumes, images or networks`);
      }
      let limit: number | undefined;
      if (opts.limit !== undefined) {
        limit = Number(opts.limit);
        if (!Number.isInteger(limit) || limit < 1) throw new UsageError(`--limit must be a positive integer, got ${JSON.stringify(opts.limit)}`);
      }

      const catalog = await syncedCatalog(ctx);
      try {
        if (opts.history) printHistory(ctx, catalog, kind, limit);
        else printInventory(ctx, catalog, kind);
      } finally {
        catalog.close();
      }
    });
}

/**
 * The catalog after one reconcile with the engine; when the engine does not
 * answer, the catalog as it was (with a warning), or a failure if there is none yet.
 */
async function syncedCatalog(ctx: Context): Promise<AgentCatalog> {
  const [{ connectEngine, engineAddress }, { META_LAST_RECONCILE, reconcile }] = await Promise.all([import('../../docker/connect.ts'), import('../../inventory/sync.ts')]);
  const stateDir = ctx.config.agent.state_dir;
  const engine = connectEngine(ctx.config);
  let down: EngineUnavailableError | undefined;
  try {
    await engine.ping();
  } catch (err) {
    if (!(err instanceof EngineUnavailableError)) throw err;
    down = err;
  }
  if (down && !AgentCatalog.exists(stateDir)) {
    throw new EngineUnavailableError(
      `the Docker engine at ${engineAddress(ctx.config)} does not answer and there is no catalog yet in ${stateDir}`,
      { cause: down },
    );
  }
  const catalog = AgentCatalog.open(stateDir);
  try {
    if (!down) await reconcile(engine, catalog);
  } catch (err) {
    if (!(err instanceof EngineUnavailableError)) {
      catalog.close();
      throw err;
    }
    down = err;
  }
  if (down) {
    const last = catalog.getMeta(META_LAST_RECONCILE);
    process.stderr.write(
      `lifeboat: warning: the Docker engine at ${engineAddress(ctx.config)} does not answer; ` +
        `showing the catalog as last known${last ? ` (synced ${last})` : ' (never synced)'} [${down.code}]\n`,
    );
  }
  return catalog;
}

function printInventory(ctx: Context, catalog: AgentCatalog, kind: ObjectKind | undefined): void {
  const sections = {
    containers: () => {
      const rows = catalog.containers();
      return {
        json: rows.map((c) => ({
          id: c.id,
          name: c.name,
          image: c.image,
          image_id: c.imageId,
          state: c.state,
          labels: c.labels,
          mounts: c.mounts,
          spec: c.spec,
          created: c.created,
          first_seen: c.firstSeen,
          last_seen: c.lastSeen,
        })),
        text: () =>
          rows.length === 0
            ? 'no containers'
            : table(
                ['ID', 'Name', 'Image', 'State', 'Volumes', 'Created (UTC)'],
                rows.map((c) => [
                  c.id.slice(0, 12),
                  c.name,
                  c.image,
                  c.state,
                  c.mounts.filter((m) => m.type === 'volume').map((m) => `${m.name}:${m.destination}`).join(',') || '-',
                  when(c.created),
                ]),
              ),
      };
    },
    volumes: () => {
      const rows = catalog.volumes().map((v) => ({ v, users: catalog.containersMounting(v.name).map((c) => c.name) }));
      return {
        json: rows.map(({ v, users }) => ({
          name: v.name,
          driver: v.driver,
          mountpoint: v.mountpoint,
          labels: v.labels,
          created: v.created,
          first_seen: v.firstSeen,
          last_seen: v.lastSeen,
          containers: users,
        })),
        text: () =>
          rows.length === 0
            ? 'no volumes'
            : table(
                ['Name', 'Driver', 'Used by', 'Mountpoint', 'Created (UTC)'],
                rows.map(({ v, users }) => [v.name, v.driver, users.join(',') || '-', v.mountpoint, when(v.created)]),
              ),
      };
    },
    images: () => {
      const rows = catalog.images();
      return {
        json: rows.map((i) => ({
          id: i.id,
          tags: i.tags,
          os: i.os,
          architecture: i.architecture,
          os_version: i.osVersion,
          size: i.size,
          layers: i.layers,
          created: i.created,
          first_seen: i.firstSeen,
          last_seen: i.lastSeen,
        })),
        text: () =>
          rows.length === 0
            ? 'no images'
            : table(
                ['ID', 'Tags', 'Platform', 'Size', 'Created (UTC)'],
                rows.map((i) => [
                  i.id.replace(/^sha256:/, '').slice(0, 12),
                  i.tags.join(',') || '<none>',
                  `${i.os}/${i.architecture}${i.osVersion ? ` ${i.osVersion}` : ''}`,
                  formatBytes(i.size),
                  when(i.created),
                ]),
              ),
      };
    },
    networks: () => {
      const rows = catalog.networks();
      return {
        json: rows.map((n) => ({ id: n.id, name: n.name, driver: n.driver, internal: n.internal, labels: n.labels, first_seen: n.firstSeen, last_seen: n.lastSeen })),
        text: () =>
          rows.length === 0
            ? 'no networks'
            : table(['ID', 'Name', 'Driver'], rows.map((n) => [n.id.slice(0, 12), n.name, `${n.driver}${n.internal ? ' (internal)' : ''}`])),
      };
    },
  };
  if (kind !== undefined) {
    const s = sections[`${kind}s`]();
    ctx.out(s.json, s.text);
    return;
  }
  const all = Object.entries(sections).map(([name, make]) => [name, make()] as const);
  ctx.out(Object.fromEntries(all.map(([name, s]) => [name, s.json])), () =>
    all.map(([name, s]) => `${name[0]!.toUpperCase()}${name.slice(1)}\n${s.text()}`).join('\n\n'),
  );
}

function printHistory(ctx: Context, catalog: AgentCatalog, kind: ObjectKind | undefined, limit: number | undefined): void {
  const rows = catalog.history({ ...(kind ? { kind } : {}), ...(limit ? { limit } : {}) });
  ctx.out(rows, () =>
    rows.length === 0
      ? 'no history'
      : table(
          ['Time (UTC)', 'Kind', 'Name', 'Action', 'Detail'],
          rows.map((h) => [when(h.time), h.kind, h.name, h.action, describeDetail(h)]),
        ),
  );
}

const when = (iso: string) => iso.replace('T', ' ').slice(0, 19);
const shortImage = (id: unknown) => (typeof id === 'string' ? id.replace(/^sha256:/, '').slice(0, 12) : '?');

/** One line a person can read for each history action. */
export function describeDetail(h: Pick<HistoryRow, 'kind' | 'action' | 'detail'>): string {
  const d = h.detail as Record<string, unknown>;
  const list = (v: unknown) => (Array.isArray(v) && v.length ? v.join(',') : '<none>');
  switch (`${h.kind} ${h.action}`) {
    case 'container created':
    case 'container discovered':
      return `image ${String(d.image)} (${shortImage(d.image_id)})`;
    case 'container recreated':
      return (
        `image ${String(d.previous_image)} (${shortImage(d.previous_image_id)}) -> ${String(d.image)} (${shortImage(d.image_id)})` +
        `${d.image_changed ? '' : ', same image'}; replaces ${String(d.previous_id).slice(0, 12)}` +
        `${d.renamed_from ? `; renamed from ${String(d.renamed_from)}` : ''}`
      );
    case 'container removed':
      return `was image ${String(d.image)} (${shortImage(d.image_id)})`;
    case 'container renamed':
      return `${String(d.from)} -> ${String(d.to)}`;
    case 'container state-changed':
      return `${String(d.from)} -> ${String(d.to)}`;
    case 'volume mounted-by':
    case 'volume unmounted-by':
      return `${String(d.container)} at ${String(d.destination)}${d.read_only ? ' (read-only)' : ''}`;
    case 'volume created':
    case 'volume discovered':
      return `driver ${String(d.driver)}, ${String(d.mountpoint)}`;
    case 'image added':
    case 'image discovered':
    case 'image deleted':
      return `tags ${list(d.tags)}`;
    case 'image retagged':
      return `${list(d.from)} -> ${list(d.to)}`;
    case 'network created':
    case 'network discovered':
      return `driver ${String(d.driver)}`;
    default:
      return Object.keys(d).length ? JSON.stringify(d) : '';
  }
}
