import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../config/load.ts';
import { defaultStateDir } from '../config/schema.ts';
import { ConfigError, ServiceCommandError, ServiceManagerUnavailableError, UsageError } from '../errors/errors.ts';
import {
  cliEntry,
  defaultConfigPath,
  installRoot,
  installService,
  pinnedNode,
  planInstall,
  renderSystemdUnit,
  renderWinswXml,
  type ServiceHost,
  systemdTemplate,
  uninstallService,
  UNIT_FILE,
  winswTemplate,
  withPasswordFile,
} from './service.ts';

const root = installRoot();
const unitTemplate = fs.readFileSync(systemdTemplate(root), 'utf8');
const xmlTemplate = fs.readFileSync(winswTemplate(root), 'utf8');
const example = fs.readFileSync(path.join(root, 'config.example.toml'), 'utf8');

/** A Linux host whose commands are recorded instead of run. */
function fakeHost(o: { root?: boolean; systemd?: string; fail?: (cmd: string) => boolean } = {}) {
  const commands: string[] = [];
  const host: ServiceHost = {
    platform: 'linux',
    installDir: root,
    isRoot: () => o.root ?? true,
    systemdMissing: () => o.systemd,
    run: async (file, args) => {
      const cmd = [file, ...args].join(' ');
      commands.push(cmd);
      if (o.fail?.(cmd)) throw new ServiceCommandError(`${cmd} failed: nope`);
    },
  };
  return { host, commands };
}

describe('paths', () => {
  it('resolves the install from the running module: the checkout, with the pinned node and the build', () => {
    expect(JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).name).toBe('lifeboat');
    expect(pinnedNode(root, 'linux')).toBe(path.join(root, 'node_modules/node/bin/node'));
    expect(cliEntry(root, 'linux')).toBe(path.join(root, 'dist/cli/main.js'));
  });

  it('defaults to /etc/lifeboat and /var/lib/lifeboat on Linux, C:\\ProgramData\\Lifeboat on Windows', () => {
    expect(defaultConfigPath('linux')).toBe('/etc/lifeboat/lifeboat.toml');
    expect(defaultStateDir('linux')).toBe('/var/lib/lifeboat');
    expect(defaultConfigPath('win32')).toBe('C:\\ProgramData\\Lifeboat\\lifeboat.toml');
    expect(defaultStateDir('win32')).toBe('C:\\ProgramData\\Lifeboat');
    expect(path.win32.isAbsolute(defaultConfigPath('win32'))).toBe(true);
    expect(path.win32.dirname(defaultConfigPath('win32'))).toBe(defaultStateDir('win32'));
    expect(pinnedNode('C:\\Lifeboat', 'win32')).toBe('C:\\Lifeboat\\node_modules\\node\\bin\\node.exe');
    expect(cliEntry('C:\\Lifeboat', 'win32')).toBe('C:\\Lifeboat\\dist\\cli\\main.js');
  });
});

describe('the systemd unit', () => {
  it('runs the pinned node on the build with the config, absolute paths, no placeholder left', () => {
    const unit = renderSystemdUnit(unitTemplate, { installDir: '/opt/lifeboat/', config: '/etc/lifeboat/lifeboat.toml' });
    expect(unit).toMatch(/^ExecStart=\/opt\/lifeboat\/node_modules\/node\/bin\/node --max-semi-space-size=1 \/opt\/lifeboat\/dist\/cli\/main\.js run --config \/etc\/lifeboat\/lifeboat\.toml$/m);
    expect(unit).not.toMatch(/@[A-Z_]+@/);
    for (const line of ['Type=simple', 'Restart=on-failure', 'ProtectSystem=strict', 'StateDirectory=lifeboat', 'ConfigurationDirectory=lifeboat', 'NoNewPrivileges=yes', 'PrivateTmp=yes', 'WantedBy=multi-user.target']) {
      expect(unit.split('\n')).toContain(line);
    }
    expect(unit).toMatch(/^CapabilityBoundingSet=.*CAP_DAC_READ_SEARCH/m);
    expect(unit).toMatch(/^ReadWritePaths=-\/var\/lib\/docker\/volumes$/m);
    expect(unit).not.toMatch(/^MemoryDenyWriteExecute/m); // V8's JIT needs W+X memory
    expect(unit).not.toMatch(/^RestrictSUIDSGID/m); // restores set-id bits
  });

  it('refuses paths a unit would misread', () => {
    for (const bad of ['opt/lifeboat', '/opt/life boat', '/opt/100%', '/opt/$HOME', '/opt/a"b', '/opt/a\\b']) {
      expect(() => renderSystemdUnit(unitTemplate, { installDir: bad, config: '/etc/lifeboat/lifeboat.toml' }), bad).toThrow(UsageError);
    }
    expect(() => renderSystemdUnit(unitTemplate, { installDir: '/opt/lifeboat', config: 'lifeboat.toml' })).toThrow(/absolute/);
  });

});

describe('the WinSW configuration', () => {
  it('runs the pinned node.exe on the build with the config, logs rolled by size in the state dir', () => {
    const xml = renderWinswXml(xmlTemplate, { installDir: 'C:\\Program Files\\R&D Lifeboat\\', config: defaultConfigPath('win32'), stateDir: defaultStateDir('win32') });
    expect(xml).not.toMatch(/@[A-Z_]+@/);
    expect(xml).toContain('<id>lifeboat</id>');
    expect(xml).toContain('<executable>C:\\Program Files\\R&amp;D Lifeboat\\node_modules\\node\\bin\\node.exe</executable>');
    expect(xml).toContain('<arguments>--max-semi-space-size=1 "C:\\Program Files\\R&amp;D Lifeboat\\dist\\cli\\main.js" run --config "C:\\ProgramData\\Lifeboat\\lifeboat.toml"</arguments>');
    expect(xml).toContain('<logpath>C:\\ProgramData\\Lifeboat\\logs</logpath>');
    expect(xml).toMatch(/<log mode="roll-by-size">/);
    expect(xml).toMatch(/<onfailure action="restart" delay="\d+ sec"\/>/);
    expect(xml).toMatch(/<stoptimeout>\d+ sec<\/stoptimeout>/);
    // Every element closes: a cheap well-formedness check without an XML parser.
    const body = xml.replace(/<!--[\s\S]*?-->/g, '');
    const open = [...body.matchAll(/<([a-zA-Z]+)[^>]*?(\/?)>/g)].filter((m) => m[2] !== '/').map((m) => m[1]);
    const close = [...body.matchAll(/<\/([a-zA-Z]+)>/g)].map((m) => m[1]);
    expect(open.sort()).toEqual(close.sort());
  });

  it('refuses paths that are not absolute Windows paths', () => {
    for (const bad of ['/opt/lifeboat', 'Lifeboat', 'C:Lifeboat']) {
      expect(() => renderWinswXml(xmlTemplate, { installDir: bad, config: defaultConfigPath('win32'), stateDir: defaultStateDir('win32') }), bad).toThrow(UsageError);
    }
    expect(() => renderWinswXml(xmlTemplate, { installDir: '\\\\srv\\share\\lifeboat', config: defaultConfigPath('win32'), stateDir: defaultStateDir('win32') })).not.toThrow();
  });

  it('plans an install that copies WinSW beside the xml, then installs and starts it', () => {
    const host: ServiceHost = {
      platform: 'win32',
      installDir: 'C:\\Lifeboat',
      sourceDir: root,
      isRoot: () => false,
      systemdMissing: () => 'no',
      run: async () => {
        throw new Error('a plan runs nothing');
      },
    };
    expect(() => planInstall(host, { dryRun: true })).toThrow(/--winsw PATH/);
    const plan = planInstall(host, { winsw: 'D:\\Downloads\\WinSW-x64.exe', dryRun: true });
    const dir = 'C:\\Lifeboat\\service\\windows';
    expect(plan.manager).toBe('winsw');
    expect(plan.unit).toBe(`${dir}\\lifeboat-service.xml`);
    expect(plan.config).toBe('C:\\ProgramData\\Lifeboat\\lifeboat.toml');
    expect(plan.unitContent).toContain('<executable>C:\\Lifeboat\\node_modules\\node\\bin\\node.exe</executable>');
    expect(plan.steps.map((s) => (s.op === 'run' ? `run ${[s.file, ...s.args].join(' ')}` : `${s.op} ${'path' in s ? s.path : `${s.from} -> ${s.to}`}`))).toEqual([
      'mkdir C:\\ProgramData\\Lifeboat',
      'run icacls C:\\ProgramData\\Lifeboat /inheritance:r /grant:r *S-1-5-18:(OI)(CI)F *S-1-5-32-544:(OI)(CI)F',
      'mkdir C:\\ProgramData\\Lifeboat',
      'write C:\\ProgramData\\Lifeboat\\lifeboat.toml',
      'write C:\\ProgramData\\Lifeboat\\password',
      'run C:\\Lifeboat\\node_modules\\node\\bin\\node.exe C:\\Lifeboat\\dist\\cli\\main.js --config C:\\ProgramData\\Lifeboat\\lifeboat.toml init',
      `write ${dir}\\lifeboat-service.xml`,
      `copy D:\\Downloads\\WinSW-x64.exe -> ${dir}\\lifeboat-service.exe`,
      `run ${dir}\\lifeboat-service.exe install`,
      `run ${dir}\\lifeboat-service.exe start`,
    ]);
    const noStart = planInstall(host, { winsw: 'D:\\WinSW.exe', dryRun: true, start: false });
    expect(noStart.steps.at(-1)).toEqual({ op: 'run', file: `${dir}\\lifeboat-service.exe`, args: ['install'] });
  });
});

describe('service install and uninstall', () => {
  let dir: string;
  let unitDir: string;
  let config: string;
  beforeEach(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lb-service-'));
    unitDir = path.join(dir, 'systemd');
    await fsp.mkdir(unitDir);
    config = path.join(dir, 'etc', 'lifeboat.toml');
  });
  afterEach(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  const initCommand = (cfg: string) => `${path.join(root, 'node_modules/node/bin/node')} ${path.join(root, 'dist/cli/main.js')} --config ${cfg} init`;

  it('writes the unit, the config from the example (0640) naming a random password (0600), makes the repository, reloads, enables and starts', async () => {
    const { host, commands } = fakeHost();
    const res = await installService(host, { config, unitDir });
    const unit = path.join(unitDir, UNIT_FILE);
    const password = path.join(path.dirname(config), 'password');
    expect(await fsp.readFile(unit, 'utf8')).toBe(renderSystemdUnit(unitTemplate, { installDir: root, config }));
    expect((await fsp.stat(unit)).mode & 0o777).toBe(0o644);
    expect(await fsp.readFile(config, 'utf8')).toBe(withPasswordFile(example, password));
    expect(loadConfig(config).repository.password_file).toBe(password);
    expect((await fsp.stat(config)).mode & 0o777).toBe(0o640);
    expect(await fsp.readFile(password, 'utf8')).toMatch(/^[A-Za-z0-9_-]{32}\n$/);
    expect((await fsp.stat(password)).mode & 0o777).toBe(0o600);
    // the repository is made before the service starts, with the password just written
    expect(commands).toEqual([initCommand(config), 'systemctl daemon-reload', 'systemctl enable --now lifeboat.service']);
    expect(res.notes.join('\n')).toContain(`the repository's password is in ${password}`);
    expect(res).toMatchObject({ action: 'install', manager: 'systemd', unit, config, config_created: true, installed: true, started: true, dry_run: false });
    expect(res.done).toContain(`wrote ${unit}`);
    expect(res.steps.every((s) => !('content' in s))).toBe(true);
  });

  it('keeps a password file that is there, and says what it could not do for a config without one', async () => {
    const password = path.join(path.dirname(config), 'password');
    await fsp.mkdir(path.dirname(config));
    await fsp.writeFile(password, 'the operator\'s own\n', { mode: 0o600 });
    const first = await installService(fakeHost().host, { config, unitDir, start: false });
    expect(await fsp.readFile(password, 'utf8')).toBe('the operator\'s own\n');
    expect(first.config_created).toBe(true);
    const noPassword = path.join(dir, 'etc', 'other.toml');
    await fsp.writeFile(noPassword, `[repository]\npath = ${JSON.stringify(path.join(dir, 'repo'))}\n`);
    const { host, commands } = fakeHost();
    const res = await installService(host, { config: noPassword, unitDir, start: false });
    expect(commands).toEqual(['systemctl daemon-reload']);
    expect(res.notes.join('\n')).toContain(`${noPassword} names no repository.password_file, so the repository at ${path.join(dir, 'repo')} was not made`);
  });

  it('never overwrites an existing config, and restarts an installed agent onto the new unit', async () => {
    await fsp.mkdir(path.dirname(config));
    const mine = '# mine\n[agent]\nlog_level = "debug"\n';
    await fsp.writeFile(config, mine, { mode: 0o600 });
    await fsp.writeFile(path.join(unitDir, UNIT_FILE), 'old');
    const { host, commands } = fakeHost();
    const res = await installService(host, { config, unitDir });
    expect(await fsp.readFile(config, 'utf8')).toBe(mine);
    expect((await fsp.stat(config)).mode & 0o777).toBe(0o600);
    expect(res.config_created).toBe(false);
    expect(res.notes.join('\n')).toContain(`kept the existing ${config}`);
    expect(commands).toEqual(['systemctl daemon-reload', 'systemctl enable lifeboat.service', 'systemctl restart lifeboat.service']);
  });

  it('with --no-start only reloads; refuses an invalid existing config before changing anything', async () => {
    const a = fakeHost();
    await installService(a.host, { config, unitDir, start: false });
    expect(a.commands).toEqual([initCommand(config), 'systemctl daemon-reload']);

    await fsp.writeFile(config, '[agent]\nbogus = 1\n');
    await fsp.rm(path.join(unitDir, UNIT_FILE));
    const b = fakeHost();
    await expect(installService(b.host, { config, unitDir })).rejects.toThrow(ConfigError);
    await expect(installService(b.host, { config, unitDir })).rejects.toThrow(/lifeboat\.toml:2: agent\.bogus: unknown key/);
    expect(b.commands).toEqual([]);
    expect(fs.existsSync(path.join(unitDir, UNIT_FILE))).toBe(false);
  });

  it('refuses without root or without systemd (exit 2); --dry-run needs neither and changes nothing', async () => {
    const notRoot = fakeHost({ root: false });
    const err = await installService(notRoot.host, { config, unitDir }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect(err).toMatchObject({ exitCode: 2, code: 'LB_ERR_USAGE', message: expect.stringMatching(/must run as root.*--dry-run/) });
    await expect(uninstallService(notRoot.host, { config, unitDir })).rejects.toThrow(/uninstall must run as root/);

    const noSystemd = fakeHost({ systemd: 'systemctl is not installed' });
    const err2 = await installService(noSystemd.host, { config, unitDir }).catch((e: unknown) => e);
    expect(err2).toBeInstanceOf(ServiceManagerUnavailableError);
    expect(err2).toMatchObject({ exitCode: 2, code: 'LB_ERR_NO_SERVICE_MANAGER', message: 'cannot install the service: systemctl is not installed' });

    const dry = fakeHost({ root: false, systemd: 'none here' });
    const res = await installService(dry.host, { config, unitDir, dryRun: true });
    expect(res.dry_run).toBe(true);
    expect(res.unit_content).toContain(`ExecStart=${root}/node_modules/node/bin/node --max-semi-space-size=1 ${root}/dist/cli/main.js run --config ${config}`);
    expect(res.done).toEqual([
      `would write ${path.join(unitDir, UNIT_FILE)} (mode 0644)`,
      `would create ${path.dirname(config)} (mode 0750) if missing`,
      `would write ${config} (mode 0640, only if absent)`,
      `would write ${path.join(path.dirname(config), 'password')} (mode 0600, only if absent)`,
      `would run ${initCommand(config)}`,
      'would run systemctl daemon-reload',
      'would run systemctl enable --now lifeboat.service',
    ]);
    expect(dry.commands).toEqual([]);
    expect(await fsp.readdir(unitDir)).toEqual([]);
    expect(fs.existsSync(config)).toBe(false);
    for (const e of [notRoot, noSystemd]) expect(e.commands).toEqual([]);
  });

  it('uninstall stops, disables and removes the unit, keeps config and state, and says so', async () => {
    const { host, commands } = fakeHost({ fail: (c) => c.startsWith('systemctl reset-failed') });
    await installService(host, { config, unitDir });
    commands.length = 0;
    const res = await uninstallService(host, { config, unitDir });
    expect(commands).toEqual(['systemctl disable --now lifeboat.service', 'systemctl daemon-reload', 'systemctl reset-failed lifeboat.service']);
    expect(fs.existsSync(path.join(unitDir, UNIT_FILE))).toBe(false);
    expect(fs.existsSync(config)).toBe(true);
    expect(res).toMatchObject({ action: 'uninstall', installed: false, state_dir: '/var/lib/lifeboat' });
    expect(res.notes).toEqual([`kept the config ${config} and the state in /var/lib/lifeboat; remove them yourself if they are no longer needed`]);

    commands.length = 0;
    const again = await uninstallService(host, { config, unitDir });
    expect(commands).toEqual([]);
    expect(again.notes).toEqual([`the service is not installed (no ${path.join(unitDir, UNIT_FILE)})`]);
  });

  it('reports a failing systemctl as ServiceCommandError (exit 1)', async () => {
    const { host } = fakeHost({ fail: (c) => c.includes('enable') });
    const err = await installService(host, { config, unitDir }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ServiceCommandError);
    expect(err).toMatchObject({ exitCode: 1, code: 'LB_ERR_SERVICE_COMMAND' });
  });

  it('is a CLI command: service install --dry-run prints the unit for this checkout', () => {
    const out = execFileSync(path.join(root, 'bin', 'lifeboat'), ['--json', '--config', config, 'service', 'install', '--dry-run', '--unit-dir', unitDir], { encoding: 'utf8' });
    const res = JSON.parse(out) as { dry_run: boolean; unit: string; unit_content: string; config_created: boolean };
    expect(res).toMatchObject({ dry_run: true, unit: path.join(unitDir, UNIT_FILE), config_created: true });
    expect(res.unit_content).toContain(`ExecStart=${root}/node_modules/node/bin/node --max-semi-space-size=1 ${root}/dist/cli/main.js run --config ${config}`);
    expect(fs.readdirSync(unitDir)).toEqual([]);
    const text = execFileSync(path.join(root, 'bin', 'lifeboat'), ['service', 'uninstall', '--dry-run', '--unit-dir', unitDir], { encoding: 'utf8' });
    expect(text).toContain('the service is not installed');
  });
});
