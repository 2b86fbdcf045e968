/**
 * Inventory sync: what the engine has, written into the agent catalog, with
 * history derived from the DIFFERENCE between the engine's state and the
 * catalog's, never from events. An event only says where to look
 * (reconcileObject); a full reconcile looks everywhere. So a reconcile run
 * twice, or an event replayed, finds nothing different and records nothing,
 * and a change the events missed (the engine keeps only its last 256) is found
 * by the next full reconcile and recorded once.
 *
 * Each call fetches first (async, engine), then applies in one synchronous
 * catalog transaction. Every row carries last_seen, the time of the
 * observation that wrote it; an observation older than the row's is dropped,
 * so a slow reconcile (or another process's) cannot undo a newer one and
 * record a change back and forth.
 *
 * History actions, by kind (detail in brackets):
 *   container  discovered | created [image, image_id, created]
 *              recreated  [image, image_id, previous_id, previous_image, previous_image_id, image_changed]
 *              renamed [from, to] · state-changed [from, to] · removed [image, image_id]
 *   volume     discovered | created [driver, mountpoint] · removed (a volume is its name and driver)
 *              mounted-by | unmounted-by [container, container_id, destination, read_only]
 *   image      discovered | added [tags] (pulled, loaded, built or imported) · retagged [from, to] · deleted [tags]
 *   network    discovered | created [driver] · removed
 * "discovered" is the first full sync of an empty catalog: the object existed
 * before the agent looked, so it is not reported as created then.
 */
import type { AgentCatalog, ContainerRow, HistoryEntry, ImageRow, NetworkRow, ObjectKind, VolumeRow } from '../catalog/agent-catalog.ts';
import type { ContainerDetail, DockerEngine, ImageInfo, Mount, NetworkInfo, VolumeInfo } from '../docker/engine.ts';

export interface ReconcileOptions {
  /** Clock for observation times; tests pass a fixed or stepping one. */
  readonly now?: () => Date;
}

export interface ReconcileResult {
  /** The observation time (ISO): when the engine was read. */
  readonly at: string;
  /** History rows this call added, in order. */
  readonly changes: readonly HistoryEntry[];
}

export interface InventoryCounts {
  readonly containers: number;
  readonly images: number;
  readonly volumes: number;
  readonly networks: number;
}

/** meta key: time (ISO) of the last completed full reconcile. */
export const META_LAST_RECONCILE = 'inventory.last_reconcile';
/** meta key: the latest observation time handed out (ISO), which keeps them increasing. */
const META_CLOCK = 'inventory.clock';

/**
 * The time of an observation that starts now: the clock, but always after
 * every observation already handed out (by this process or another), so a
 * wall clock stepped back (NTP) cannot make new observations look older than
 * the rows they must update.
 */
function observationTime(catalog: AgentCatalog, now: (() => Date) | undefined): string {
  const wall = (now ?? (() => new Date()))().getTime();
  return catalog.transaction(() => {
    const last = catalog.getMeta(META_CLOCK);
    const at = new Date(last === undefined ? wall : Math.max(wall, Date.parse(last) + 1)).toISOString();
    catalog.setMeta(META_CLOCK, at);
    return at;
  });
}

const INSPECT_PARALLEL = 8;

/** Lists and inspects everything the engine has and applies the difference to the catalog. */
export async function reconcile(engine: DockerEngine, catalog: AgentCatalog, opts: ReconcileOptions = {}): Promise<ReconcileResult> {
  const at = observationTime(catalog, opts.now);
  const [summaries, images, volumes, networks] = await Promise.all([
    engine.listContainers(),
    engine.listImages(),
    engine.listVolumes(),
    engine.listNetworks(),
  ]);
  // a container listed but gone by the time it is inspected is absent, as it would be a moment later
  const containers = (await mapLimit(summaries, INSPECT_PARALLEL, (s) => engine.inspectContainer(s.id))).filter(
    (d): d is ContainerDetail => d !== undefined,
  );

  return catalog.transaction(() => {
    const tx = new Applier(catalog, at, catalog.getMeta(META_LAST_RECONCILE) === undefined);
    // additions and changes of what containers use, then containers, then removals of what they used
    for (const v of volumes) tx.volume(v);
    for (const i of images) tx.image(i);
    for (const n of networks) tx.network(n);

    const present = new Map(containers.map((c) => [c.id, c]));
    for (const row of catalog.containers()) if (!present.has(row.id)) tx.containerGone(row);
    // known containers first, so a rename frees its old name before a new container takes it
    const known = containers.filter((c) => isCurrent(catalog.container(c.id)));
    const fresh = containers.filter((c) => !isCurrent(catalog.container(c.id)));
    for (const c of known) tx.container(c);
    for (const c of fresh) tx.container(c);

    const volumeNames = new Set(volumes.map((v) => v.name));
    for (const row of catalog.volumes()) if (!volumeNames.has(row.name)) tx.volumeGone(row);
    const imageIds = new Set(images.map((i) => i.id));
    for (const row of catalog.images()) if (!imageIds.has(row.id)) tx.imageGone(row);
    const networkIds = new Set(networks.map((n) => n.id));
    for (const row of catalog.networks()) if (!networkIds.has(row.id)) tx.networkGone(row);

    if ((catalog.getMeta(META_LAST_RECONCILE) ?? '') < at) catalog.setMeta(META_LAST_RECONCILE, at);
    return { at, changes: tx.changes };
  });
}

/**
 * Brings one object's catalog row up to date with the engine: what an event
 * triggers. `id` is what the event names: container id, image id or
 * reference, volume name, network id. Also looks at the objects the change
 * touches (a container's volumes and image, the previous holder of its name,
 * the image a moved tag came from), so their history comes in order.
 */
export async function reconcileObject(
  engine: DockerEngine,
  catalog: AgentCatalog,
  kind: ObjectKind,
  id: string,
  opts: ReconcileOptions = {},
): Promise<ReconcileResult> {
  const at = observationTime(catalog, opts.now);
  let apply: (tx: Applier) => void;
  switch (kind) {
    case 'container':
      apply = await fetchContainer(engine, catalog, id);
      break;
    case 'image':
      apply = await fetchImage(engine, catalog, id);
      break;
    case 'volume': {
      const v = await engine.inspectVolume(id);
      apply = (tx) => {
        if (v) tx.volume(v);
        else {
          const row = catalog.volume(id);
          if (row) tx.volumeGone(row);
        }
      };
      break;
    }
    case 'network': {
      const n = (await engine.listNetworks()).find((x) => x.id === id);
      apply = (tx) => {
        if (n) tx.network(n);
        else {
          const row = catalog.network(id);
          if (row) tx.networkGone(row);
        }
      };
      break;
    }
  }
  return catalog.transaction(() => {
    const tx = new Applier(catalog, at, false);
    apply(tx);
    return { at, changes: tx.changes };
  });
}

/** Counts of current objects in the catalog. */
export function inventoryCounts(catalog: AgentCatalog): InventoryCounts {
  return {
    containers: catalog.containers().length,
    images: catalog.images().length,
    volumes: catalog.volumes().length,
    networks: catalog.networks().length,
  };
}

async function fetchContainer(engine: DockerEngine, catalog: AgentCatalog, id: string): Promise<(tx: Applier) => void> {
  const d = await engine.inspectContainer(id);
  if (!d) {
    return (tx) => {
      const row = catalog.container(id);
      if (row) tx.containerGone(row);
    };
  }
  // the catalog may still hold another container under this name (its events were missed): look at it first
  const others = catalog.containers().filter((r) => r.name === d.name && r.id !== d.id);
  const othersNow = await Promise.all(others.map((r) => engine.inspectContainer(r.id)));
  const volumes = await Promise.all(
    volumeMounts(d.mounts)
      .filter((m) => !isCurrent(catalog.volume(m.name)))
      .map((m) => engine.inspectVolume(m.name)),
  );
  const image = isCurrent(catalog.image(d.imageId)) ? undefined : await engine.inspectImage(d.imageId);
  return (tx) => {
    for (const v of volumes) if (v) tx.volume(v);
    if (image) tx.image(image);
    others.forEach((row, i) => {
      const now = othersNow[i];
      if (now) tx.container(now);
      else tx.containerGone(row);
    });
    tx.container(d);
  };
}

async function fetchImage(engine: DockerEngine, catalog: AgentCatalog, idOrRef: string): Promise<(tx: Applier) => void> {
  let info = await engine.inspectImage(idOrRef);
  let gone: ImageRow | undefined;
  if (!info) {
    // an id that is gone, or a reference that no longer resolves (untag, delete by tag): the image that carried it
    gone = catalog.image(idOrRef) ?? catalog.imageByTag(idOrRef);
    if (gone && gone.id !== idOrRef) {
      info = await engine.inspectImage(gone.id);
      if (info) gone = undefined;
    }
  }
  // a tag this image has that the catalog puts on another one moved from there: look at that one too
  const found = info;
  const losers = found
    ? [...new Map(found.repoTags.map((t) => catalog.imageByTag(t)).filter((r): r is ImageRow => r !== undefined && r.id !== found.id).map((r) => [r.id, r])).values()]
    : [];
  const losersNow = await Promise.all(losers.map((r) => engine.inspectImage(r.id)));
  return (tx) => {
    losers.forEach((row, i) => {
      const now = losersNow[i];
      if (now) tx.image(now);
      else tx.imageGone(row);
    });
    if (found) tx.image(found);
    else if (gone) tx.imageGone(gone);
  };
}

const isCurrent = (row: { removedAt: string | null } | undefined): boolean => row !== undefined && row.removedAt === null;

type VolumeMount = Mount & { readonly name: string };
const volumeMounts = (mounts: readonly Mount[]): VolumeMount[] =>
  mounts.filter((m): m is VolumeMount => m.type === 'volume' && typeof m.name === 'string' && m.name !== '');

const shortImageId = (id: string) => id.replace(/^sha256:/, '').slice(0, 12);
const imageName = (tags: readonly string[], id: string) => tags[0] ?? shortImageId(id);
const sameSet = (a: readonly string[], b: readonly string[]) => a.length === b.length && [...a].sort().join('\n') === [...b].sort().join('\n');

/**
 * Applies observations made at `at` to the catalog, inside a transaction the
 * caller holds, and records the differences as history.
 */
class Applier {
  readonly changes: HistoryEntry[] = [];
  readonly #cat: AgentCatalog;
  readonly #at: string;
  /** First sync of an empty catalog: objects are "discovered", mounts not reported. */
  readonly #initial: boolean;

  constructor(catalog: AgentCatalog, at: string, initial: boolean) {
    this.#cat = catalog;
    this.#at = at;
    this.#initial = initial;
  }

  #record(kind: ObjectKind, object: string, name: string, action: string, detail: Record<string, unknown>): void {
    const e: HistoryEntry = { time: this.#at, kind, object, name, action, detail };
    this.#cat.addHistory(e);
    this.changes.push(e);
  }

  /** True when the row was written by an observation newer than this one. */
  #stale(row: { lastSeen: string } | undefined): boolean {
    return row !== undefined && row.lastSeen > this.#at;
  }

  container(d: ContainerDetail): void {
    const row = this.#cat.container(d.id);
    if (this.#stale(row)) return;
    const at = this.#at;
    let oldMounts: readonly Mount[] = [];
    if (!isCurrent(row)) {
      const image = { image: d.image, image_id: d.imageId, created: d.created };
      if (this.#initial) {
        this.#record('container', d.id, d.name, 'discovered', image);
      } else {
        const prev = this.#cat.previousHolderOf(d.name, d.id);
        if (prev) this.#record('container', d.id, d.name, 'recreated', { ...image, ...replaced(prev, d) });
        else this.#record('container', d.id, d.name, 'created', image);
      }
    } else {
      oldMounts = row!.mounts;
      if (row!.name !== d.name) {
        // renamed onto a name another container held (compose's create-then-rename): that is a recreation
        const prev = this.#cat.previousHolderOf(d.name, d.id);
        if (prev && prev.removedAt !== null) {
          this.#record('container', d.id, d.name, 'recreated', { image: d.image, image_id: d.imageId, renamed_from: row!.name, ...replaced(prev, d) });
        } else {
          this.#record('container', d.id, d.name, 'renamed', { from: row!.name, to: d.name });
        }
      }
      if (row!.state !== d.state) this.#record('container', d.id, d.name, 'state-changed', { from: row!.state, to: d.state });
    }
    this.#cat.putContainer({
      id: d.id,
      name: d.name,
      image: d.image,
      imageId: d.imageId,
      state: d.state,
      labels: d.labels,
      mounts: d.mounts,
      spec: d.spec,
      created: d.created,
      firstSeen: isCurrent(row) ? row!.firstSeen : at,
      lastSeen: at,
      removedAt: null,
    });
    if (!this.#initial) this.#mountDiff(d.id, d.name, oldMounts, d.mounts);
  }

  containerGone(row: ContainerRow): void {
    if (!isCurrent(row) || this.#stale(row)) return;
    this.#record('container', row.id, row.name, 'removed', { image: row.image, image_id: row.imageId });
    this.#cat.putContainer({ ...row, lastSeen: this.#at, removedAt: this.#at });
    this.#mountDiff(row.id, row.name, row.mounts, []);
  }

  #mountDiff(containerId: string, containerName: string, before: readonly Mount[], after: readonly Mount[]): void {
    const key = (m: VolumeMount) => `${m.name}\n${m.destination}`;
    const had = new Map(volumeMounts(before).map((m) => [key(m), m]));
    const has = new Map(volumeMounts(after).map((m) => [key(m), m]));
    for (const [k, m] of had) {
      if (!has.has(k)) this.#record('volume', m.name, m.name, 'unmounted-by', mountDetail(containerId, containerName, m));
    }
    for (const [k, m] of has) {
      if (!had.has(k)) this.#record('volume', m.name, m.name, 'mounted-by', mountDetail(containerId, containerName, m));
    }
  }

  volume(v: VolumeInfo): void {
    const row = this.#cat.volume(v.name);
    if (this.#stale(row)) return;
    let firstSeen = this.#at;
    const created = { driver: v.driver, mountpoint: v.mountpoint };
    if (!isCurrent(row)) {
      this.#record('volume', v.name, v.name, this.#initial ? 'discovered' : 'created', created);
    } else if (row!.driver !== v.driver) {
      // removed and created again under the same name between two looks. Not told by CreatedAt:
      // the local driver reports its _data directory's mtime, which every write at its top moves.
      this.#record('volume', v.name, v.name, 'removed', {});
      this.#record('volume', v.name, v.name, 'created', created);
    } else {
      firstSeen = row!.firstSeen;
    }
    this.#cat.putVolume({ ...v, firstSeen, lastSeen: this.#at, removedAt: null });
  }

  volumeGone(row: VolumeRow): void {
    if (!isCurrent(row) || this.#stale(row)) return;
    this.#record('volume', row.name, row.name, 'removed', {});
    this.#cat.putVolume({ ...row, lastSeen: this.#at, removedAt: this.#at });
  }

  image(i: ImageInfo): void {
    const row = this.#cat.image(i.id);
    if (this.#stale(row)) return;
    if (!isCurrent(row)) {
      this.#record('image', i.id, imageName(i.repoTags, i.id), this.#initial ? 'discovered' : 'added', { tags: i.repoTags });
    } else if (!sameSet(row!.tags, i.repoTags)) {
      this.#record('image', i.id, imageName(i.repoTags.length ? i.repoTags : row!.tags, i.id), 'retagged', { from: row!.tags, to: i.repoTags });
    }
    this.#cat.putImage({
      id: i.id,
      tags: i.repoTags,
      os: i.os,
      architecture: i.architecture,
      osVersion: i.osVersion,
      size: i.size,
      layers: i.layers,
      created: i.created,
      firstSeen: isCurrent(row) ? row!.firstSeen : this.#at,
      lastSeen: this.#at,
      removedAt: null,
    });
  }

  imageGone(row: ImageRow): void {
    if (!isCurrent(row) || this.#stale(row)) return;
    this.#record('image', row.id, imageName(row.tags, row.id), 'deleted', { tags: row.tags });
    this.#cat.putImage({ ...row, lastSeen: this.#at, removedAt: this.#at });
  }

  network(n: NetworkInfo): void {
    const row = this.#cat.network(n.id);
    if (this.#stale(row)) return;
    if (!isCurrent(row)) this.#record('network', n.id, n.name, this.#initial ? 'discovered' : 'created', { driver: n.driver });
    this.#cat.putNetwork({ ...n, firstSeen: isCurrent(row) ? row!.firstSeen : this.#at, lastSeen: this.#at, removedAt: null });
  }

  networkGone(row: NetworkRow): void {
    if (!isCurrent(row) || this.#stale(row)) return;
    this.#record('network', row.id, row.name, 'removed', {});
    this.#cat.putNetwork({ ...row, lastSeen: this.#at, removedAt: this.#at });
  }
}

function replaced(prev: ContainerRow, d: ContainerDetail): Record<string, unknown> {
  return {
    previous_id: prev.id,
    previous_image: prev.image,
    previous_image_id: prev.imageId,
    image_changed: prev.imageId !== d.imageId,
  };
}

function mountDetail(containerId: string, containerName: string, m: VolumeMount): Record<string, unknown> {
  return { container: containerName, container_id: containerId, destination: m.destination, read_only: m.readOnly };
}

/** Like Promise.all over items.map(fn), at most `limit` at a time, results in order. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
