import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import * as z from 'zod';
import { ConfigError } from '../errors/errors.ts';
import { KiB, MiB } from '../util/units.ts';
import { formatKeyPath, loadConfig, parseConfig, parseTomlWith } from './load.ts';
import { configSchema, defaultStateDir } from './schema.ts';

const EXAMPLE = fileURLToPath(new URL('../../config.example.toml', import.meta.url));
const lines = (...l: string[]) => l.join('\n');

/** Runs `fn`, expects a ConfigError, returns it for exact assertions. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError, nothing was thrown');
}

const fail = (text: string) => configError(() => parseConfig(text, 'lifeboat.toml'));

describe('parseConfig: defaults', () => {
  it('fills every default for an empty file', () => {
    expect(parseConfig('', 'lifeboat.toml')).toEqual({
      agent: { host: os.hostname(), state_dir: defaultStateDir(), log_level: 'info', listen: '127.0.0.1:9317', nice: 10 },
      repository: {
        path: path.join(defaultStateDir(), 'repository'),
        pack_size: 16 * MiB,
        compression: 'auto',
        compression_level: 3,
      },
      backup: { block_size: 64 * KiB, chunker: 'fixed', workers: os.availableParallelism(), capture_dir: path.join(defaultStateDir(), 'tmp') },
      retention: {},
      docker: { reconcile_interval: 5 * 60_000, hook_timeout: 60_000, stop_timeout: 30_000 },
      schedule: { backup: '0 * * * *', retention: '30 3 * * *' },
      journal: { enabled: true, aggregate: 1000, max_paths: 10_000, full_scan_interval: 24 * 3_600_000 },
      volumes: { track: 'all' },
      volume: [],
      replication: { listen: '', schedule: '*/10 * * * *', bandwidth: 0, timeout: 60_000, retry: 5_000 },
      peer: [],
      target: [],
      drill: {},
      notify: [],
      alerts: { overdue_factor: 2, check_interval: 30_000 },
    });
  });

  it('checks cron expressions, listen addresses and [[volume]] entries, naming the key', () => {
    const bad = (text: string) => {
      try {
        parseConfig(text, 'f.toml');
      } catch (e) {
        return (e as Error).message;
      }
      return 'no error';
    };
    expect(bad('[schedule]\nbackup = "every hour"')).toBe('f.toml:2: schedule.backup: must be a cron expression such as "0 * * * *", got "every hour"');
    expect(bad('[[volume]]\nname = "a"\nschedule = "61 * * * *"')).toMatch(/^f\.toml:3: volume\[0\]\.schedule: must be a cron expression/);
    expect(bad('[agent]\nlisten = "localhost"')).toMatch(/^f\.toml:2: agent\.listen: must be "host:port"/);
    expect(bad('[agent]\nlisten = "127.0.0.1:70000"')).toMatch(/^f\.toml:2: agent\.listen:/);
    // an endpoint off loopback must ask for a token: the console's actions and the metrics would be open
    expect(bad('[agent]\nlisten = "0.0.0.0:9317"')).toBe('f.toml:1: agent.token_file: is required when listen is not a loopback address (the console, its actions and the metrics would be open to the network)');
    expect(bad('[agent]\nlisten = "[::]:9317"')).toMatch(/agent\.token_file: is required when listen/);
    expect(parseConfig('[agent]\nlisten = "0.0.0.0:9317"\ntoken_file = "/etc/lifeboat/agent.token"', 'f.toml').agent.token_file).toBe('/etc/lifeboat/agent.token');
    for (const listen of ['127.0.0.1:1', '127.0.0.2:1', 'localhost:1', '[::1]:1', '']) expect(parseConfig(`[agent]\nlisten = "${listen}"`, 'f.toml').agent.listen).toBe(listen);
    expect(bad('[[volume]]\nname = "a"\n[[volume]]\nname = "a"')).toMatch(/^f\.toml:4: volume\[1\]\.name: volume "a" is listed twice/);
    expect(bad('[[volume]]\nname = "a"\ncontinous = true')).toBe('f.toml:3: volume[0].continous: unknown key');
    expect(bad('[[peer]]\nname = "b"\naddress = "10.0.0.2:9318"\nid = "nope"')).toMatch(/^f\.toml:4: peer\[0\]\.id: must be a peer id/);
    const withPeer = parseConfig(`[[peer]]\nname = "b"\naddress = "10.0.0.2:9318"\nid = "${'AB:'.repeat(31)}AB"`, 'f.toml');
    expect(withPeer.peer).toEqual([{ name: 'b', address: '10.0.0.2:9318', id: 'ab'.repeat(32), push: true, standby: false }]);
    expect(bad(`[[peer]]\nname = "b"\naddress = "10.0.0.2:9318"\nid = "${'ab'.repeat(32)}"\nstandby = true`)).toMatch(/peer\[0\]\.standby: standby = true needs password_file/);
    const withPassword = parseConfig(`[[peer]]\nname = "b"\naddress = "10.0.0.2:9318"\nid = "${'ab'.repeat(32)}"\npassword_file = "/etc/lifeboat/b.pw"`, 'f.toml');
    expect(withPassword.peer[0]!.password_file).toBe('/etc/lifeboat/b.pw');
    expect(bad('[[peer]]\nname = "b"\naddress = "10.0.0.2:9318"\nid = "' + 'ab'.repeat(32) + '"\npassword_file = ""')).toBe('f.toml:5: peer[0].password_file: must not be empty, got ""');
    expect(parseConfig('[drill]\nschedule = "0 4 * * 0"', 'f.toml').drill).toEqual({ schedule: '0 4 * * 0' });
    expect(bad('[drill]\nschedule = "weekly"')).toBe('f.toml:2: drill.schedule: must be a cron expression such as "0 4 * * 0", got "weekly"');
    const ok = parseConfig('[agent]\nlisten = ""\n[[volume]]\nname = "pg"\ncontinuous = true\ndebounce = "2s"\n[[volume]]\nname = "db"\nrpo = "5s"', 'f.toml');
    expect(ok.agent.listen).toBe('');
    expect(ok.volume).toEqual([{ name: 'pg', continuous: true, debounce: 2000 }, { name: 'db', continuous: false, debounce: 5000, rpo: 5000 }]);
    expect(bad('[[volume]]\nname = "a"\nrpo = "10ms"')).toMatch(/^f\.toml:3: volume\[0\]\.rpo:/);
  });

  it('picks the state directory by platform', () => {
    expect(defaultStateDir('linux')).toBe('/var/lib/lifeboat');
    expect(defaultStateDir('win32')).toBe('C:\\ProgramData\\Lifeboat');
  });

  it('derives repository.path from state_dir unless it is set', () => {
    const derived = parseConfig('[agent]\nstate_dir = "/srv/lb"', 'f');
    expect(derived.repository.path).toBe(path.join('/srv/lb', 'repository'));
    const set = parseConfig('[agent]\nstate_dir = "/srv/lb"\n[repository]\npath = "/mnt/repo"', 'f');
    expect(set.repository.path).toBe('/mnt/repo');
  });

  it('turns size strings into byte counts and keeps given values', () => {
    const c = parseConfig(
      lines(
        'agent.log_level = "debug"',
        '[repository]',
        'pack_size = "1.5 MiB"',
        'compression = "off"',
        'compression_level = 19',
        'password_file = "/etc/lifeboat/pw"',
        '[backup]',
        'block_size = "8MiB"',
        'chunker = "cdc"',
        'workers = 1',
        '[retention]',
        'keep_last = 0',
        'keep_daily = 7',
      ),
      'f',
    );
    expect(c.agent.log_level).toBe('debug');
    expect(c.repository).toMatchObject({ pack_size: 1.5 * MiB, compression: 'off', compression_level: 19 });
    expect(c.repository.password_file).toBe('/etc/lifeboat/pw');
    expect(c.backup).toMatchObject({ block_size: 8 * MiB, chunker: 'cdc', workers: 1 });
    expect(c.retention).toEqual({ keep_last: 0, keep_daily: 7 });
  });
});

describe('[[target]]', () => {
  it('takes an S3 target with its defaults, and refuses a bad bucket name, a bad endpoint and a name listed twice', () => {
    const c = parseConfig(lines('[[target]]', 'name = "offsite"', 'bucket = "dr-copies"'), 'lifeboat.toml');
    expect(c.target).toEqual([{ name: 'offsite', bucket: 'dr-copies', prefix: '', region: 'us-east-1', path_style: false, profile: 'default', concurrency: 4, timeout: 60_000, object_lock_mode: 'compliance' }]);
    expect(fail(lines('[[target]]', 'name = "a"', 'bucket = "B"')).message).toBe('lifeboat.toml:3: target[0].bucket: must be a bucket name: 3-63 lowercase letters, digits, dots and hyphens, got "B"');
    expect(fail(lines('[[target]]', 'name = "a"', 'bucket = "b-1"', 'endpoint = "ftp://x"')).keyPath).toBe('target[0].endpoint');
    expect(fail(lines('[[target]]', 'name = "a"', 'bucket = "b-1"', '[[target]]', 'name = "a"', 'bucket = "b-2"')).message).toContain('target "a" is listed twice');
  });
});

describe('[[notify]] and [alerts]', () => {
  const ALL_EVENTS = ['backup_failed', 'rpo_over_target', 'overdue', 'peer_unreachable', 'target_unreachable', 'drill_failed', 'recovered'];

  it('takes an HTTP entry with its defaults and an email entry with all its keys', () => {
    const c = parseConfig(
      lines(
        '[[notify]]', 'name = "ops"', 'type = "slack"', 'url = "https://hooks.example.net/T0/B0/x"',
        '[[notify]]', 'name = "mail"', 'type = "email"', 'smtp_host = "smtp.example.net"', 'smtp_port = 465', 'smtp_security = "tls"',
        'smtp_user = "lb"', 'smtp_password_file = "/etc/lifeboat/smtp"', 'from = "lb@example.net"', 'to = ["a@example.net", "b@example.net"]',
        'events = ["backup_failed", "recovered"]', 'send_resolved = false', 'retries = 0', 'timeout = "3s"',
        '[[notify]]', 'name = "hc"', 'type = "heartbeat"', 'url = "https://hc-ping.com/abc"', 'volumes = ["pgdata"]',
      ),
      'f',
    );
    expect(c.notify).toEqual([
      { name: 'ops', type: 'slack', url: 'https://hooks.example.net/T0/B0/x', events: ALL_EVENTS, send_resolved: true, retries: 5, timeout: 10_000, smtp_security: 'starttls' },
      {
        name: 'mail', type: 'email', smtp_host: 'smtp.example.net', smtp_port: 465, smtp_security: 'tls', smtp_user: 'lb', smtp_password_file: '/etc/lifeboat/smtp',
        from: 'lb@example.net', to: ['a@example.net', 'b@example.net'], events: ['backup_failed', 'recovered'], send_resolved: false, retries: 0, timeout: 3000,
      },
      { name: 'hc', type: 'heartbeat', url: 'https://hc-ping.com/abc', volumes: ['pgdata'], events: ALL_EVENTS, send_resolved: true, retries: 5, timeout: 10_000, smtp_security: 'starttls' },
    ]);
    expect(parseConfig('[alerts]\noverdue_factor = 1.5\ncheck_interval = "1m"', 'f').alerts).toEqual({ overdue_factor: 1.5, check_interval: 60_000 });
  });

  it('wants the keys of each type, naming the missing or misplaced one', () => {
    expect(fail(lines('[[notify]]', 'name = "a"', 'type = "ntfy"')).message).toBe('lifeboat.toml:1: notify[0].url: is required for type = "ntfy"');
    expect(fail(lines('[[notify]]', 'name = "a"', 'type = "webhook"', 'url = "ftp://x/y"')).message).toBe('lifeboat.toml:4: notify[0].url: must be an http:// or https:// URL, got "ftp://x/y"');
    expect(fail(lines('[[notify]]', 'name = "a"', 'type = "pager"')).message).toBe('lifeboat.toml:3: notify[0].type: must be one of "webhook", "slack", "ntfy", "email", "heartbeat", got "pager"');
    const mail = ['[[notify]]', 'name = "m"', 'type = "email"'];
    expect(fail(lines(...mail, 'from = "a@x"', 'to = ["b@x"]')).keyPath).toBe('notify[0].smtp_host');
    expect(fail(lines(...mail, 'smtp_host = "h"', 'to = ["b@x"]')).keyPath).toBe('notify[0].from');
    expect(fail(lines(...mail, 'smtp_host = "h"', 'from = "a@x"')).keyPath).toBe('notify[0].to');
    expect(fail(lines(...mail, 'smtp_host = "h"', 'from = "a@x"', 'to = []')).message).toBe('lifeboat.toml:6: notify[0].to: must name at least one address, got an array');
    expect(fail(lines(...mail, 'smtp_host = "h"', 'from = "a@x"', 'to = ["b@x"]', 'smtp_user = "u"')).keyPath).toBe('notify[0].smtp_password_file');
    expect(fail(lines(...mail, 'smtp_host = "h"', 'from = "a@x"', 'to = ["b@x"]', 'smtp_security = "ssl"')).message).toMatch(/notify\[0\]\.smtp_security: must be one of "starttls", "tls", "none"/);
    expect(fail(lines(...mail, 'smtp_host = "h"', 'from = "a@x"', 'to = ["b@x"]', 'url = "https://x"')).message).toBe('lifeboat.toml:7: notify[0].url: is only for type = "webhook" or "slack" or "ntfy" or "heartbeat", got "https://x"');
    expect(fail(lines('[[notify]]', 'name = "a"', 'type = "slack"', 'url = "https://x"', 'volumes = ["v"]')).message).toBe('lifeboat.toml:5: notify[0].volumes: is only for type = "heartbeat", got an array');
  });

  it('names the allowed events when one is unknown, and refuses a name listed twice', () => {
    expect(fail(lines('[[notify]]', 'name = "a"', 'type = "webhook"', 'url = "https://x"', 'events = ["overdue", "backup_fail"]')).message).toBe(
      `lifeboat.toml:5: notify[0].events[1]: must be one of ${ALL_EVENTS.map((e) => `"${e}"`).join(', ')}, got "backup_fail"`,
    );
    const entry = ['[[notify]]', 'name = "a"', 'type = "webhook"', 'url = "https://x"'];
    expect(fail(lines(...entry, ...entry)).message).toBe('lifeboat.toml:6: notify[1].name: notify "a" is listed twice, got "a"');
  });

  it('checks [alerts]', () => {
    expect(fail('[alerts]\noverdue_factor = 0.5').message).toBe('lifeboat.toml:2: alerts.overdue_factor: must be a number >= 1, got 0.5');
    expect(fail('[alerts]\ncheck_interval = "500ms"').message).toBe('lifeboat.toml:2: alerts.check_interval: must be at least 1s, got "500ms"');
  });
});

describe('config.example.toml', () => {
  const text = readFileSync(EXAMPLE, 'utf8');

  it('loads, and its values are exactly the defaults', () => {
    expect(loadConfig(EXAMPLE)).toEqual(parseConfig('', 'empty.toml'));
  });

  it('documents every key of the schema', () => {
    const tables = configSchema.in.shape;
    for (const [table, schema] of Object.entries(tables)) {
      const inner = schema.unwrap();
      // An array of tables ([[volume]]) is documented commented out, as an example entry.
      const [header, shape] = inner instanceof z.ZodArray ? [`^(# )?\\[\\[${table}\\]\\]$`, (inner.element as z.ZodObject).shape] : [`^\\[${table}\\]$`, (inner as z.ZodObject).shape];
      expect(text, table).toMatch(new RegExp(header, 'm'));
      for (const key of Object.keys(shape)) {
        expect(text, `${table}.${key}`).toMatch(new RegExp(`^(# )?${key} = `, 'm'));
      }
    }
  });
});

describe('parseConfig: errors', () => {
  it('names the line and key path of an unknown key', () => {
    const e = fail(lines('[agent]', 'host = "a"', '', '[backup]', 'workers = 2', 'blok_size = "64KiB"'));
    expect(e.message).toBe('lifeboat.toml:6: backup.blok_size: unknown key');
    expect([e.file, e.line, e.keyPath]).toEqual(['lifeboat.toml', 6, 'backup.blok_size']);
    expect(e.code).toBe('LB_ERR_CONFIG');
    expect(e.exitCode).toBe(2);
  });

  it('reports an unknown table and an unknown top-level key', () => {
    expect(fail('\n[bakup]\nworkers = 2').message).toBe('lifeboat.toml:2: bakup: unknown key');
    expect(fail('agent.host = "a"\nverbose = true').message).toBe('lifeboat.toml:2: verbose: unknown key');
  });

  it('rejects a block size that is not a power of two, quoting what was written', () => {
    const e = fail(lines('# backups', '[agent]', 'host = "h"', '', '[backup]', 'workers = 2', 'block_size = "100KiB"'));
    expect(e.message).toBe(
      'lifeboat.toml:7: backup.block_size: must be a power of two between 4KiB and 8MiB, got "100KiB"',
    );
  });

  it('rejects sizes out of range or malformed', () => {
    expect(fail('[backup]\nblock_size = "16MiB"').message).toBe(
      'lifeboat.toml:2: backup.block_size: must be a power of two between 4KiB and 8MiB, got "16MiB"',
    );
    expect(fail('[repository]\npack_size = "512KiB"').message).toBe(
      'lifeboat.toml:2: repository.pack_size: must be between 1MiB and 256MiB, got "512KiB"',
    );
    expect(fail('[repository]\npack_size = "lots"').message).toBe(
      'lifeboat.toml:2: repository.pack_size: must be a size such as "16MiB" or a number of bytes, between 1MiB and 256MiB, got "lots"',
    );
    // a plain integer is bytes, held to the same range
    expect(parseConfig('[backup]\nblock_size = 65536\n[repository]\npack_size = 16777216', 'lifeboat.toml')).toMatchObject({ backup: { block_size: 65536 }, repository: { pack_size: 16777216 } });
    expect(fail('[backup]\n\nblock_size = 65535').message).toBe('lifeboat.toml:3: backup.block_size: must be a power of two between 4KiB and 8MiB, got 65535');
    expect(fail('[backup]\nblock_size = 1.5').message).toBe(
      'lifeboat.toml:2: backup.block_size: must be a size such as "64KiB" or a number of bytes, a power of two between 4KiB and 8MiB, got 1.5',
    );
  });

  it('lists the allowed values of an enum', () => {
    expect(fail('[agent]\nlog_level = "verbose"').message).toBe(
      'lifeboat.toml:2: agent.log_level: must be one of "fatal", "error", "warn", "info", "debug", "trace", got "verbose"',
    );
    expect(fail('[backup]\nchunker = "rabin"').message).toBe(
      'lifeboat.toml:2: backup.chunker: must be one of "fixed", "cdc", got "rabin"',
    );
  });

  it('checks integer ranges and types', () => {
    expect(fail('[repository]\ncompression_level = 20').message).toBe(
      'lifeboat.toml:2: repository.compression_level: must be an integer between 1 and 19, got 20',
    );
    expect(fail('[repository]\ncompression_level = "3"').message).toBe(
      'lifeboat.toml:2: repository.compression_level: must be an integer between 1 and 19, got "3"',
    );
    expect(fail('[backup]\nworkers = 0').message).toBe('lifeboat.toml:2: backup.workers: must be an integer >= 1, got 0');
    expect(fail('[retention]\nkeep_daily = 1.5').message).toBe(
      'lifeboat.toml:2: retention.keep_daily: must be an integer >= 0, got 1.5',
    );
    expect(fail('[agent]\nhost = ""').message).toBe('lifeboat.toml:2: agent.host: must not be empty, got ""');
  });

  it('says a table must be a table', () => {
    expect(fail('x = 1\nbackup = 5').message).toBe('lifeboat.toml:1: x: unknown key');
    expect(fail('\nbackup = 5').message).toBe('lifeboat.toml:2: backup: must be a table, got 5');
    expect(fail('agent = [1]').message).toBe('lifeboat.toml:1: agent: must be a table, got an array');
  });

  it('reports the problem that comes first in the file', () => {
    const e = fail(lines('[backup]', 'workers = 0', '[agent]', 'log_level = "loud"', 'extra = 1'));
    expect([e.line, e.keyPath]).toEqual([2, 'backup.workers']);
  });

  it('reports a TOML syntax error with its line and no key path, on one line', () => {
    const e = fail(lines('[agent]', 'host = "a"', '', 'log_level = info', '[backup]'));
    expect([e.line, e.keyPath]).toEqual([4, '']);
    expect(e.message).toMatch(/^lifeboat\.toml:4: invalid TOML: .+ \(column \d+\)$/);
    expect(e.message).not.toContain('\n');
  });

  it('reports a duplicate key as a syntax error on its line', () => {
    const e = fail('[backup]\nworkers = 1\nworkers = 2');
    expect(e.line).toBe(3);
  });
});

describe('parseConfig: [docker]', () => {
  it('turns durations into milliseconds and keeps the connection keys', () => {
    const c = parseConfig(
      lines('[docker]', 'host = "tcp://10.0.0.5:2376"', 'tls_ca = "/ca.pem"', 'tls_cert = "/c.pem"', 'tls_key = "/k.pem"', 'reconcile_interval = "90s"', 'stop_timeout = "0s"'),
      'f',
    );
    expect(c.docker).toEqual({
      host: 'tcp://10.0.0.5:2376',
      tls_ca: '/ca.pem',
      tls_cert: '/c.pem',
      tls_key: '/k.pem',
      reconcile_interval: 90_000,
      hook_timeout: 60_000,
      stop_timeout: 0,
    });
  });

  it('rejects malformed or too short durations', () => {
    expect(fail('[docker]\nreconcile_interval = "5 minutes"').message).toBe(
      'lifeboat.toml:2: docker.reconcile_interval: must be a duration such as "5m" (units ms, s, m, h, d, w; "1h30m" adds them up), got "5 minutes"',
    );
    expect(fail('[docker]\nhook_timeout = "10ms"').message).toBe('lifeboat.toml:2: docker.hook_timeout: must be at least 1s, got "10ms"');
    expect(fail('[docker]\nreconcile_interval = 300').message).toBe(
      'lifeboat.toml:2: docker.reconcile_interval: must be a duration such as "5m" (units ms, s, m, h, d, w; "1h30m" adds them up), got 300',
    );
  });

  it('wants tls_cert and tls_key together', () => {
    expect(fail('[docker]\ntls_cert = "/c.pem"').message).toMatch(/docker\.tls_key: is required when tls_cert is set$/);
    expect(fail('[docker]\ntls_key = "/k.pem"').message).toMatch(/docker\.tls_cert: is required when tls_key is set$/);
  });
});

describe('parseTomlWith: arrays of tables', () => {
  const schema = z.strictObject({
    peer: z.array(z.strictObject({ address: z.string({ error: 'must be a string' }), name: z.string().optional() })),
  });
  const text = lines(
    '[[peer]]', //              1
    'address = "a:1"', //       2
    '', //                      3
    '[[peer]]', //              4
    'name = "b"', //            5
    '', //                      6
    '[[peer]]', //              7
    'address = "c:1"', //       8
    'adress = "c:2"', //        9
  );

  it('puts the element index in the path of a missing key and points at its header', () => {
    const e = configError(() => parseTomlWith(schema, text, 'peers.toml'));
    expect(e.message).toBe('peers.toml:4: peer[1].address: is required');
  });

  it('points at an unknown key inside the right element', () => {
    const fixed = text.replace('name = "b"', 'address = "b:1"');
    const e = configError(() => parseTomlWith(schema, fixed, 'peers.toml'));
    expect(e.message).toBe('peers.toml:9: peer[2].adress: unknown key');
  });

  it('returns the typed result when valid', () => {
    const ok = parseTomlWith(schema, '[[peer]]\naddress = "a"\n[[peer]]\naddress = "b"', 'p');
    expect(ok.peer.map((p) => p.address)).toEqual(['a', 'b']);
  });
});

describe('formatKeyPath', () => {
  it('writes indexes in brackets and quotes keys that are not bare', () => {
    expect(formatKeyPath(['peer', 1, 'address'])).toBe('peer[1].address');
    expect(formatKeyPath(['a', 'b.c', 'd e'])).toBe('a."b.c"."d e"');
    expect(formatKeyPath([])).toBe('');
  });
});

describe('loadConfig', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lifeboat-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads a file and reports errors under its path', () => {
    const file = path.join(dir, 'lifeboat.toml');
    writeFileSync(file, '[backup]\nworkers = 3\n');
    expect(loadConfig(file).backup.workers).toBe(3);
    writeFileSync(file, '[backup]\nworkers = -1\n');
    expect(configError(() => loadConfig(file)).message).toBe(
      `${file}:2: backup.workers: must be an integer >= 1, got -1`,
    );
  });

  it('reports a missing file with line 0 and the reason', () => {
    const file = path.join(dir, 'absent.toml');
    const e = configError(() => loadConfig(file));
    expect(e.message).toBe(`${file}: cannot read: no such file or directory (ENOENT)`);
    expect([e.line, e.keyPath, e.exitCode]).toEqual([0, '', 2]);
  });

  it('reports a directory given as the file', () => {
    expect(configError(() => loadConfig(dir)).message).toBe(
      `${dir}: cannot read: illegal operation on a directory (EISDIR)`,
    );
  });
});
