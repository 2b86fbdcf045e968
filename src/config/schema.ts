/**
 * The agent's one TOML file. Keys stay snake_case in the typed result so that
 * error messages and code name them exactly as the operator wrote them.
 * Every leaf carries its own message: zod's defaults ("Invalid input: expected
 * int") are not something an operator should have to decode.
 */
import os from 'node:os';
import path from 'node:path';
import cronLib from 'node-cron';
import * as z from 'zod';
import { parseId } from '../util/peer-id.ts';
import { type Bytes, KiB, type Millis, MiB, parseDuration, parseSize } from '../util/units.ts';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;

export function defaultStateDir(platform: NodeJS.Platform = process.platform): string {
  return platform === 'win32' ? 'C:\\ProgramData\\Lifeboat' : '/var/lib/lifeboat';
}

const text = () => z.string({ error: 'must be a string' }).min(1, { error: 'must not be empty' });

const oneOf = <const T extends readonly [string, ...string[]]>(values: T) =>
  z.enum(values, { error: `must be one of ${values.map((v) => JSON.stringify(v)).join(', ')}` });

function int(min: number, max?: number) {
  const error = max === undefined ? `must be an integer >= ${min}` : `must be an integer between ${min} and ${max}`;
  const s = z.int({ error }).min(min, { error });
  return max === undefined ? s : s.max(max, { error });
}

/** A size string such as "64KiB", checked and turned into Bytes inside the schema. */
function size(o: { min: number; max: number; powerOfTwo?: boolean; example: string }) {
  const range = `${o.powerOfTwo ? 'a power of two ' : ''}between ${human(o.min)} and ${human(o.max)}`;
  const malformed = `must be a size such as "${o.example}" or a number of bytes, ${range}`;
  // a plain integer is a number of bytes (what config check prints back)
  return z.union([z.string(), z.number()], { error: malformed }).transform((s, ctx): Bytes => {
    const n = typeof s === 'number' ? (Number.isSafeInteger(s) && s >= 0 ? (s as Bytes) : undefined) : parseSize(s);
    if (n === undefined) {
      ctx.issues.push({ code: 'custom', message: malformed, input: s });
    } else if (n < o.min || n > o.max || (o.powerOfTwo && (n & (n - 1)) !== 0)) {
      ctx.issues.push({ code: 'custom', message: `must be ${range}`, input: s });
    } else {
      return n;
    }
    return z.NEVER;
  });
}

/** A duration string such as "5m", checked and turned into Millis inside the schema. */
function duration(o: { min: number; example: string }) {
  const malformed = `must be a duration such as "${o.example}" (units ms, s, m, h, d, w; "1h30m" adds them up)`;
  return z.string({ error: malformed }).transform((s, ctx): Millis => {
    const n = parseDuration(s);
    if (n === undefined) {
      ctx.issues.push({ code: 'custom', message: malformed, input: s });
    } else if (n < o.min) {
      ctx.issues.push({ code: 'custom', message: `must be at least ${o.min >= 1000 ? `${o.min / 1000}s` : `${o.min}ms`}`, input: s });
    } else {
      return n;
    }
    return z.NEVER;
  });
}

const human = (n: number) => (n % MiB === 0 ? `${n / MiB}MiB` : `${n / KiB}KiB`);

/** "host:port" for the agent's HTTP endpoint; an empty string turns it off. */
function listenAddress() {
  const error = 'must be "host:port" (port 1-65535), or "" to turn the endpoint off';
  return z.string({ error }).refine((v) => v === '' || /^(\[[0-9a-fA-F:.]+\]|[^\s:]+):(\d{1,5})$/.test(v) && Number(v.split(':').at(-1)) <= 65535 && Number(v.split(':').at(-1)) > 0, { error });
}

const cronValidate = (v: string): boolean => cronLib.validate(v);

/** A five- or six-field cron expression, validated by node-cron itself. */
function cron(example: string) {
  const error = `must be a cron expression such as "${example}"`;
  return z.string({ error }).refine((v) => cronValidate(v), { error });
}

const agent = z.strictObject({
  host: text().default(() => os.hostname()),
  state_dir: text().default(() => defaultStateDir()),
  log_level: oneOf(LOG_LEVELS).default('info'),
  listen: listenAddress().default('127.0.0.1:9317'),
  /**
   * A file whose first line is the token (or password) the HTTP endpoint asks
   * for: as `Authorization: Bearer`, or typed into the console's sign-in.
   * Required when `listen` is not a loopback address.
   */
  token_file: text().optional(),
  /**
   * The CPU priority the agent runs at (nice, 0-19): above 0 the applications
   * on the host get the cores first when they compete for them.
   */
  nice: int(0, 19).default(10),
}).refine((a) => a.token_file !== undefined || a.listen === '' || !/:\d+$/.test(a.listen) || isLoopback(a.listen), {
  error: 'is required when listen is not a loopback address (the console, its actions and the metrics would be open to the network)',
  path: ['token_file'],
});

/** "127.0.0.1:9317", "[::1]:9317", "localhost:9317": only this host can connect. */
export function isLoopback(listen: string): boolean {
  const host = listen.slice(0, listen.lastIndexOf(':')).replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

const schedule = z.strictObject({
  backup: cron('0 * * * *').default('0 * * * *'),
  retention: cron('30 3 * * *').default('30 3 * * *'),
});

const journal = z.strictObject({
  enabled: z.boolean({ error: 'must be true or false' }).default(true),
  aggregate: duration({ min: 100, example: '1s' }).prefault('1s'),
  max_paths: int(1).default(10_000),
  full_scan_interval: duration({ min: 60_000, example: '24h' }).prefault('24h'),
});

const volumes = z.strictObject({
  track: oneOf(['all', 'listed']).default('all'),
});

const retention = z.strictObject({
  keep_last: int(0).optional(),
  keep_hourly: int(0).optional(),
  keep_daily: int(0).optional(),
  keep_weekly: int(0).optional(),
  keep_monthly: int(0).optional(),
  keep_yearly: int(0).optional(),
  keep_within: duration({ min: 0, example: '30d' }).optional(),
  keep_tag: z.array(z.string().min(1)).optional(),
});

/** A bandwidth such as "8MiB" (per second); "0" is no limit. */
function bandwidth() {
  const error = 'must be a size per second such as "8MiB", or "0" for no limit';
  return z.string({ error }).transform((s, ctx): Bytes => {
    const n = parseSize(s);
    if (n !== undefined) return n;
    ctx.issues.push({ code: 'custom', message: error, input: s });
    return z.NEVER;
  });
}

const replication = z.strictObject({
  listen: listenAddress().default(''),
  /** Pushes run after every backup; this schedule catches up on anything left (a peer that was down). */
  schedule: cron('*/10 * * * *').default('*/10 * * * *'),
  bandwidth: bandwidth().prefault('0'),
  timeout: duration({ min: 1000, example: '60s' }).prefault('60s'),
  retry: duration({ min: 100, example: '5s' }).prefault('5s'),
  /** The peer's own policy for the replicas it holds; unset, [retention] applies. */
  retention: retention.optional(),
});

/** A peer agent: where it listens and the id it must present (`lifeboat id` on that host). */
const peer = z.strictObject({
  name: text(),
  address: listenAddress().refine((v) => v !== '', { error: 'must be "host:port"' }),
  id: z.string({ error: 'must be a peer id as `lifeboat id` prints it (64 hex characters)' }).transform((v, ctx) => {
    const id = parseId(v);
    if (id !== undefined) return id;
    ctx.issues.push({ code: 'custom', message: 'must be a peer id as `lifeboat id` prints it (64 hex characters)', input: v });
    return z.NEVER;
  }),
  /** Whether this agent pushes its repository to the peer (false: the peer only pushes here). */
  push: z.boolean({ error: 'must be true or false' }).default(true),
  /** The peer's own repository password, kept here so that its replica can be recovered (recover, drill). */
  password_file: text().optional(),
  /**
   * A warm standby of the peer here: the images its snapshots record are
   * loaded into this engine as they arrive, so a recovery need not. Needs
   * password_file (the replica is read to load them).
   */
  standby: z.boolean({ error: 'must be true or false' }).default(false),
}).refine((p) => !p.standby || p.password_file !== undefined, { error: 'standby = true needs password_file (the peer\'s repository password, to read its replica)', path: ['standby'] });

/** An S3-compatible bucket (AWS S3, Ceph RGW, MinIO, B2) holding a copy of the repository. */
const target = z.strictObject({
  name: text(),
  /** e.g. "https://s3.example.net"; absent: AWS's endpoint for the region. */
  endpoint: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' }).optional(),
  bucket: z.string({ error: 'must be a string' }).regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, { error: 'must be a bucket name: 3-63 lowercase letters, digits, dots and hyphens' }),
  /** Where in the bucket, e.g. "lifeboat/db-host-1": one repository per prefix. */
  prefix: z.string({ error: 'must be a string' }).regex(/^[A-Za-z0-9._\/-]*$/, { error: 'must be letters, digits and . _ - / only' }).default(''),
  region: text().default('us-east-1'),
  /** Path-style requests (endpoint/bucket/key), which most self-hosted stores need. */
  path_style: z.boolean({ error: 'must be true or false' }).default(false),
  /**
   * An AWS shared-credentials file (`aws_access_key_id`, `aws_secret_access_key`
   * under [profile]); absent: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
   */
  credentials_file: text().optional(),
  profile: text().default('default'),
  /** Files in flight at once. */
  concurrency: int(1, 64).default(4),
  /** How long a connection may take, and a request stay unanswered, before it fails (and is retried). */
  timeout: duration({ min: 1000, example: '60s' }).prefault('60s'),
  /**
   * Every object written gets this many days of object-lock retention (the
   * bucket must have object lock enabled): the source cannot delete or
   * overwrite its history there, whatever happens to it.
   */
  object_lock_days: int(1, 36500).optional(),
  object_lock_mode: oneOf(['compliance', 'governance']).default('compliance'),
});

/** DR drills of the replicas this agent holds. */
const drill = z.strictObject({
  schedule: cron('0 4 * * 0').optional(),
});

/** What a [[notify]] entry can be told about; all but `recovered` are conditions that fire and resolve. */
export const NOTIFY_EVENTS = ['backup_failed', 'rpo_over_target', 'overdue', 'peer_unreachable', 'target_unreachable', 'drill_failed', 'recovered'] as const;

const NOTIFY_TYPES = ['webhook', 'slack', 'ntfy', 'email', 'heartbeat'] as const;
/** The keys only some types take, and which: absent from another type's entry, so a misplaced one is reported. */
const NOTIFY_KEYS_OF: Readonly<Record<string, readonly (typeof NOTIFY_TYPES)[number][]>> = {
  url: ['webhook', 'slack', 'ntfy', 'heartbeat'],
  smtp_host: ['email'],
  smtp_port: ['email'],
  smtp_user: ['email'],
  smtp_password_file: ['email'],
  from: ['email'],
  to: ['email'],
  volumes: ['heartbeat'],
};

/** Where alerts go: an HTTP endpoint (JSON, Slack, ntfy), mail, or backup heartbeats (healthchecks.io). */
const notify = z.strictObject({
  name: text(),
  type: oneOf(NOTIFY_TYPES),
  url: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' }).optional(),
  events: z.array(oneOf(NOTIFY_EVENTS), { error: 'must be an array of event names' }).min(1, { error: 'must name at least one event' }).default([...NOTIFY_EVENTS]),
  /** Also tell when a condition is over. */
  send_resolved: z.boolean({ error: 'must be true or false' }).default(true),
  /** Attempts after the first, each after twice the previous wait. */
  retries: int(0).default(5),
  timeout: duration({ min: 100, example: '10s' }).prefault('10s'),
  smtp_host: text().optional(),
  /** Absent: 465 with smtp_security = "tls", else 587. */
  smtp_port: int(1, 65535).optional(),
  smtp_security: oneOf(['starttls', 'tls', 'none']).default('starttls'),
  smtp_user: text().optional(),
  smtp_password_file: text().optional(),
  from: text().optional(),
  to: z.array(text(), { error: 'must be an array of addresses' }).min(1, { error: 'must name at least one address' }).optional(),
  /** Heartbeats of these volumes only; absent: all. */
  volumes: z.array(text(), { error: 'must be an array of volume names' }).optional(),
}).superRefine((n, ctx) => {
  const required = n.type === 'email' ? (['smtp_host', 'from', 'to'] as const) : (['url'] as const);
  for (const key of required) if (n[key] === undefined) ctx.addIssue({ code: 'custom', path: [key], message: `is required for type = "${n.type}"` });
  for (const [key, types] of Object.entries(NOTIFY_KEYS_OF)) {
    if (n[key as keyof typeof n] !== undefined && !types.includes(n.type)) {
      ctx.addIssue({ code: 'custom', path: [key], message: `is only for type = ${types.map((t) => `"${t}"`).join(' or ')}` });
    }
  }
  // a login is a pair; one half alone is a mistake
  if ((n.smtp_user === undefined) !== (n.smtp_password_file === undefined)) {
    const missing = n.smtp_user === undefined ? 'smtp_user' : 'smtp_password_file';
    ctx.addIssue({ code: 'custom', path: [missing], message: `is required when ${missing === 'smtp_user' ? 'smtp_password_file' : 'smtp_user'} is set` });
  }
});

/** When the agent checks the conditions it notifies about. */
const alerts = z.strictObject({
  /** A volume is overdue when its last success is older than this many schedule intervals. */
  overdue_factor: z.number({ error: 'must be a number >= 1' }).min(1, { error: 'must be a number >= 1' }).default(2),
  check_interval: duration({ min: 1000, example: '30s' }).prefault('30s'),
});

const volume = z.strictObject({
  name: text(),
  schedule: cron('*/15 * * * *').optional(),
  continuous: z.boolean({ error: 'must be true or false' }).default(false),
  debounce: duration({ min: 100, example: '5s' }).prefault('5s'),
  /** The target recovery point: in continuous mode a change is in a snapshot at most this long after it was written. */
  rpo: duration({ min: 1000, example: '5s' }).optional(),
});

const repository = z.strictObject({
  /** Defaults to `<state_dir>/repository`, filled in after the whole file is parsed. */
  path: text().optional(),
  password_file: text().optional(),
  pack_size: size({ min: 1 * MiB, max: 256 * MiB, example: '16MiB' }).prefault('16MiB'),
  compression: oneOf(['auto', 'off']).default('auto'),
  compression_level: int(1, 19).default(3),
});

const backup = z.strictObject({
  block_size: size({ min: 4 * KiB, max: 8 * MiB, powerOfTwo: true, example: '64KiB' }).prefault('64KiB'),
  chunker: oneOf(['fixed', 'cdc']).default('fixed'),
  workers: int(1).default(() => os.availableParallelism()),
  /**
   * Where a frozen volume's files are copied before its containers thaw;
   * defaults to `<state_dir>/tmp`. On the XFS or btrfs file system of Docker's
   * data root the copies are reflinks.
   */
  capture_dir: text().optional(),
});


const docker = z.strictObject({
  /** Engine address; unset means DOCKER_HOST, else the platform's default socket or pipe (see src/docker/connect.ts). */
  host: text().optional(),
  tls_ca: text().optional(),
  tls_cert: text().optional(),
  tls_key: text().optional(),
  reconcile_interval: duration({ min: 1000, example: '5m' }).prefault('5m'),
  hook_timeout: duration({ min: 1000, example: '60s' }).prefault('60s'),
  stop_timeout: duration({ min: 0, example: '30s' }).prefault('30s'),
}).superRefine((d, ctx) => {
  // a client certificate is a pair; one half alone is a mistake, not a choice
  if ((d.tls_cert === undefined) !== (d.tls_key === undefined)) {
    const missing = d.tls_cert === undefined ? 'tls_cert' : 'tls_key';
    ctx.addIssue({ code: 'custom', path: [missing], message: `is required when ${missing === 'tls_cert' ? 'tls_key' : 'tls_cert'} is set` });
  }
});

// prefault (not default) so an absent table is parsed as {} and its own defaults fill in.
export const configSchema = z
  .strictObject({
    agent: agent.prefault({}),
    repository: repository.prefault({}),
    backup: backup.prefault({}),
    retention: retention.prefault({}),
    docker: docker.prefault({}),
    schedule: schedule.prefault({}),
    journal: journal.prefault({}),
    volumes: volumes.prefault({}),
    volume: z.array(volume, { error: 'must be an array of tables ([[volume]])' }).default([]),
    replication: replication.prefault({}),
    peer: z.array(peer, { error: 'must be an array of tables ([[peer]])' }).default([]),
    target: z.array(target, { error: 'must be an array of tables ([[target]])' }).default([]),
    drill: drill.prefault({}),
    notify: z.array(notify, { error: 'must be an array of tables ([[notify]])' }).default([]),
    alerts: alerts.prefault({}),
  })
  .superRefine((c, ctx) => {
    // each kind of entry is named by its name: two of one name would be one entry said twice
    for (const kind of ['volume', 'peer', 'target', 'notify'] as const) {
      const seen = new Set<string>();
      c[kind].forEach((e, i) => {
        if (seen.has(e.name)) ctx.addIssue({ code: 'custom', path: [kind, i, 'name'], message: `${kind} ${JSON.stringify(e.name)} is listed twice` });
        seen.add(e.name);
      });
    }
  })
  .transform((c) => ({
    ...c,
    repository: { ...c.repository, path: c.repository.path ?? path.join(c.agent.state_dir, 'repository') },
    backup: { ...c.backup, capture_dir: c.backup.capture_dir ?? path.join(c.agent.state_dir, 'tmp') },
  }));

export type Config = z.output<typeof configSchema>;

/** The zstd level blocks are stored with: 0 when compression is off. */
export function compressionLevel(config: Pick<Config, 'repository'>): number {
  return config.repository.compression === 'off' ? 0 : config.repository.compression_level;
}

/** What a worker pool of this configuration's repository is opened with. */
export function poolSettings(config: Pick<Config, 'repository' | 'backup'>): { workers: number; level: number; packSize: number } {
  return { workers: config.backup.workers, level: compressionLevel(config), packSize: config.repository.pack_size };
}
