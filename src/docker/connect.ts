import type { Config } from '../config/schema.ts';
import { DockerodeEngine, type DockerTlsFiles, formatEndpoint, parseDockerHost } from './dockerode-engine.ts';

/**
 * The engine the config points at: [docker] host, else DOCKER_HOST, else the
 * platform's default socket or pipe. TLS files from [docker] tls_* when set,
 * else (as the docker CLI) from DOCKER_TLS_VERIFY / DOCKER_CERT_PATH; TLS
 * applies to tcp:// only. Connecting is lazy: the first call reaches the engine.
 */
export function connectEngine(
  config: Config,
  platform: NodeJS.Platform = process.platform,
  env: NodeJS.ProcessEnv = process.env,
): DockerodeEngine {
  const endpoint = parseDockerHost(config.docker.host, platform, env);
  const { tls_ca: ca, tls_cert: cert, tls_key: key } = config.docker;
  const tls: DockerTlsFiles | undefined = ca !== undefined || cert !== undefined ? { ca, cert, key } : undefined;
  return new DockerodeEngine({ endpoint, ...(tls ? { tls } : {}) });
}

/** Where connectEngine(config) would connect, in `docker -H` form, for messages. */
export function engineAddress(config: Config, platform: NodeJS.Platform = process.platform, env: NodeJS.ProcessEnv = process.env): string {
  return formatEndpoint(parseDockerHost(config.docker.host, platform, env));
}
