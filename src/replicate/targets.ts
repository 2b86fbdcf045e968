import fs from 'node:fs';
import { S3Backend } from '../backend/s3.ts';
import type { Config } from '../config/schema.ts';
import { ConfigError, UsageError } from '../errors/errors.ts';

export type TargetConfig = Config['target'][number];

/** The configured target `name`; a usage error naming the ones there are when there is none. */
export function targetNamed(config: Config, name: string): TargetConfig {
  const t = config.target.find((x) => x.name === name);
  if (t) return t;
  const known = config.target.map((x) => x.name);
  throw new UsageError(`no target ${JSON.stringify(name)} in the config${known.length > 0 ? ` (there are: ${known.join(', ')})` : ': add a [[target]] table (and pass --config FILE)'}`);
}

/** The bucket a target names, with its credentials: from its credentials_file, else the standard AWS environment. */
export function openTarget(t: TargetConfig, configFile = '<config>'): S3Backend {
  const credentials = t.credentials_file === undefined ? undefined : credentialsFrom(t.credentials_file, t.profile, configFile);
  return new S3Backend({
    bucket: t.bucket,
    prefix: t.prefix,
    region: t.region,
    forcePathStyle: t.path_style,
    concurrency: t.concurrency,
    timeoutMs: t.timeout,
    ...(t.endpoint !== undefined ? { endpoint: t.endpoint } : {}),
    ...(credentials ? { credentials } : {}),
    ...(t.object_lock_days !== undefined ? { lock: { mode: t.object_lock_mode === 'governance' ? 'GOVERNANCE' : 'COMPLIANCE', days: t.object_lock_days } } : {}),
  });
}

/**
 * A profile of an AWS shared-credentials file (the INI file `aws configure`
 * writes): `[name]` sections of `key = value` lines, `#` and `;` comments.
 */
export function credentialsFrom(file: string, profile: string, configFile: string): { accessKeyId: string; secretAccessKey: string; sessionToken?: string } {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(configFile, 0, 'target.credentials_file', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const values = new Map<string, string>();
  let section: string | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const head = /^\[\s*(?:profile\s+)?([^\]]+?)\s*\]$/.exec(line);
    if (head) section = head[1];
    else if (section === profile) {
      const eq = line.indexOf('=');
      if (eq > 0) values.set(line.slice(0, eq).trim().toLowerCase(), line.slice(eq + 1).trim());
    }
  }
  const accessKeyId = values.get('aws_access_key_id');
  const secretAccessKey = values.get('aws_secret_access_key');
  if (!accessKeyId || !secretAccessKey) {
    throw new ConfigError(configFile, 0, 'target.credentials_file', `${file} has no aws_access_key_id and aws_secret_access_key under [${profile}]`);
  }
  const sessionToken = values.get('aws_session_token');
  return { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) };
}
