import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { defaultConfigPath } from '../agent/service.ts';
import { parseConfig } from '../config/load.ts';
import { configFileOf, type Context, logSettings, readPassword, repoPath } from './context.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lifeboat-context-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  const p = path.join(dir, name);
  fs.writeFileSync(p, text);
  return p;
};
const ctx = (toml: string, configFile?: string) => ({ config: parseConfig(toml, 'test.toml'), configFile }) as unknown as Context;

describe('the config file a command reads', () => {
  it('is --config, else LIFEBOAT_CONFIG, else the default path when a file is there', () => {
    const none = () => false;
    expect(configFileOf({ config: '/a.toml' }, { LIFEBOAT_CONFIG: '/b.toml' }, none)).toBe('/a.toml');
    expect(configFileOf({}, { LIFEBOAT_CONFIG: '/b.toml' }, none)).toBe('/b.toml');
    expect(configFileOf({}, {}, none)).toBeUndefined();
    expect(configFileOf({}, {}, (f) => f === defaultConfigPath())).toBe(defaultConfigPath());
    expect(configFileOf({}, { LIFEBOAT_CONFIG: '' }, none)).toBeUndefined();
  });
});

describe('the repository a command opens', () => {
  it('is --repo, else LIFEBOAT_REPOSITORY, else the config\'s, else a usage error naming all three', () => {
    const withConfig = ctx('[repository]\npath = "/from/config"', '/etc/x.toml');
    expect(repoPath(withConfig, { repo: '/flag' }, { LIFEBOAT_REPOSITORY: '/env' })).toBe('/flag');
    expect(repoPath(withConfig, {}, { LIFEBOAT_REPOSITORY: '/env' })).toBe('/env');
    expect(repoPath(withConfig, {}, {})).toBe('/from/config');
    expect(() => repoPath(ctx(''), {}, {})).toThrow(/--repo DIR, set LIFEBOAT_REPOSITORY, or pass --config FILE/);
  });
});

describe('the repository password', () => {
  const flagFile = file('flag.pw', 'from-flag\nsecond line\n');
  const envFile = file('env.pw', 'from-env-file\n');
  const configFile = file('config.pw', 'from-config\n');
  const c = ctx(`[repository]\npassword_file = ${JSON.stringify(configFile)}`);

  it('follows restic\'s order: --password-file, LIFEBOAT_PASSWORD_FILE, LIFEBOAT_PASSWORD_COMMAND, LIFEBOAT_PASSWORD, then the config\'s file', () => {
    const all = { LIFEBOAT_PASSWORD_FILE: envFile, LIFEBOAT_PASSWORD_COMMAND: 'echo from-command', LIFEBOAT_PASSWORD: 'from-env' };
    expect(readPassword(c, { passwordFile: flagFile }, all)).toBe('from-flag');
    expect(readPassword(c, {}, all)).toBe('from-env-file');
    expect(readPassword(c, {}, { ...all, LIFEBOAT_PASSWORD_FILE: undefined })).toBe('from-command');
    expect(readPassword(c, {}, { LIFEBOAT_PASSWORD: 'from-env' })).toBe('from-env');
    expect(readPassword(c, {}, {})).toBe('from-config');
    expect(() => readPassword(ctx(''), {}, {})).toThrow(expect.objectContaining({ code: 'LB_ERR_PASSWORD_MISSING', exitCode: 2 }));
  });

  it('takes the first line a command prints, and refuses a command that fails or prints nothing', () => {
    expect(readPassword(c, {}, { LIFEBOAT_PASSWORD_COMMAND: "printf 'line one\\nline two\\n'" })).toBe('line one');
    expect(() => readPassword(c, {}, { LIFEBOAT_PASSWORD_COMMAND: 'exit 3' })).toThrow(/LIFEBOAT_PASSWORD_COMMAND exited with status 3/);
    expect(() => readPassword(c, {}, { LIFEBOAT_PASSWORD_COMMAND: 'true' })).toThrow(/printed no password/);
    expect(() => readPassword(c, {}, { LIFEBOAT_PASSWORD_COMMAND: 'exit 3' })).toThrow(expect.objectContaining({ code: 'LB_ERR_USAGE', exitCode: 2 }));
  });
});

describe('the log settings', () => {
  it('are --log-level and --log-format, else LIFEBOAT_LOG_LEVEL and LIFEBOAT_LOG_FORMAT, else the config\'s level', () => {
    const c = ctx('[agent]\nlog_level = "debug"').config;
    expect(logSettings({}, c, {})).toEqual({ level: 'debug', format: undefined });
    expect(logSettings({}, c, { LIFEBOAT_LOG_LEVEL: 'warn', LIFEBOAT_LOG_FORMAT: 'json' })).toEqual({ level: 'warn', format: 'json' });
    expect(logSettings({ logLevel: 'trace', logFormat: 'pretty' }, c, { LIFEBOAT_LOG_LEVEL: 'warn' })).toEqual({ level: 'trace', format: 'pretty' });
    expect(() => logSettings({ logLevel: 'loud' }, c, {})).toThrow(/log level must be one of/);
    expect(() => logSettings({ logFormat: 'xml' }, c, {})).toThrow(expect.objectContaining({ code: 'LB_ERR_USAGE' }));
  });
});
