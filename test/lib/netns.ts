/**
 * A test host of its own: a network namespace joined to this one by a veth
 * pair, with an address on each end, and a link that can be cut and
 * restored. Needs root and iproute2 (.ci/run installs it).
 */
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';

export interface TestHost {
  /** The namespace's name, for `ip netns exec`. */
  readonly netns: string;
  /** The namespace's address, reachable from here over the link. */
  readonly address: string;
  /** This side's address, reachable from the namespace. */
  readonly hostAddress: string;
  cut(): void;
  restore(): void;
  remove(): void;
}

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });

/**
 * Why this machine cannot make test hosts (no iproute2, no permission to make
 * namespaces), or undefined when it can: a test skips with this reason rather
 * than fail on what the machine cannot do.
 */
export function testHostsUnavailable(): string | undefined {
  const probe = `lbt-probe-${process.pid}`;
  try {
    ip('netns', 'add', probe);
    ip('netns', 'del', probe);
    return undefined;
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
    return `network namespaces are not available here: ${e.code === 'ENOENT' ? 'no `ip` command (iproute2)' : (e.stderr?.toString().trim() || e.message)}`;
  }
}

export function makeTestHost(): TestHost {
  const tag = crypto.randomBytes(3).toString('hex');
  const netns = `lbt-${tag}`;
  const outer = `lbto${tag}`;
  const inner = `lbti${tag}`;
  // a /30 of 10.200.0.0/16 per host, so that hosts of parallel test files do not collide
  const n = parseInt(tag, 16) % 16_000;
  const base = `10.200.${Math.floor((n * 4) / 256)}.${(n * 4) % 256}`;
  const [hostAddress, address] = [1, 2].map((i) => base.replace(/\d+$/, (last) => String(Number(last) + i))) as [string, string];
  ip('netns', 'add', netns);
  try {
    ip('link', 'add', outer, 'type', 'veth', 'peer', 'name', inner);
    ip('link', 'set', inner, 'netns', netns);
    ip('addr', 'add', `${hostAddress}/30`, 'dev', outer);
    ip('link', 'set', outer, 'up');
    ip('netns', 'exec', netns, 'ip', 'addr', 'add', `${address}/30`, 'dev', inner);
    ip('netns', 'exec', netns, 'ip', 'link', 'set', inner, 'up');
    ip('netns', 'exec', netns, 'ip', 'link', 'set', 'lo', 'up');
  } catch (err) {
    ip('netns', 'del', netns);
    throw err;
  }
  return {
    netns,
    address,
    hostAddress,
    cut: () => ip('link', 'set', outer, 'down'),
    restore: () => ip('link', 'set', outer, 'up'),
    remove: () => {
      try {
        ip('link', 'del', outer);
      } catch {
        // gone with the namespace
      }
      ip('netns', 'del', netns);
    },
  };
}
