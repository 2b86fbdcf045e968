import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../config/load.ts';
import { ConfigError, UsageError } from '../errors/errors.ts';
import { credentialsFrom, openTarget, targetNamed } from './targets.ts';

describe('targets', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lifeboat-targets-'));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = (text: string) => {
    fs.mkdirSync(dir, { recursive: true });
    const f = path.join(dir, 'credentials');
    fs.writeFileSync(f, text);
    return f;
  };

  it('reads a profile of an AWS shared-credentials file, and says what is missing', () => {
    const f = file('# keys\n[default]\naws_access_key_id = AK1\naws_secret_access_key = s1\n\n[profile backup]\nAWS_ACCESS_KEY_ID=AK2\naws_secret_access_key= s2 \naws_session_token = t2\n; end\n');
    expect(credentialsFrom(f, 'default', 'x.toml')).toEqual({ accessKeyId: 'AK1', secretAccessKey: 's1' });
    expect(credentialsFrom(f, 'backup', 'x.toml')).toEqual({ accessKeyId: 'AK2', secretAccessKey: 's2', sessionToken: 't2' });
    expect(() => credentialsFrom(f, 'other', 'x.toml')).toThrow(/no aws_access_key_id and aws_secret_access_key under \[other\]/);
    expect(() => credentialsFrom(path.join(dir, 'absent'), 'default', 'x.toml')).toThrow(ConfigError);
  });

  it('finds a target by name, names the others when it is not there, and opens its bucket', () => {
    const config = parseConfig('[[target]]\nname = "offsite"\nbucket = "dr-copies"\nprefix = "hosts/a"\nendpoint = "http://127.0.0.1:9000"\npath_style = true\n', 'x.toml');
    expect(() => targetNamed(config, 'nope')).toThrow(UsageError);
    expect(() => targetNamed(config, 'nope')).toThrow('there are: offsite');
    expect(openTarget(targetNamed(config, 'offsite')).location).toBe('s3://dr-copies/hosts/a/ at http://127.0.0.1:9000');
  });
});
