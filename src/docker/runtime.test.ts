import { describe, expect, it } from 'vitest';
import { spec } from './testing/inventory-fixture.ts';
import { capability, ENGINE_DEFAULTS, highestCpu, namespaceOwners, recordedSpec } from './runtime.ts';

describe('runtime settings', () => {
  it('spell capabilities as the engine reports them', () => {
    expect(['net_admin', 'NET_ADMIN', 'CAP_NET_ADMIN', 'cap_sys_time', 'all'].map(capability)).toEqual([
      'CAP_NET_ADMIN',
      'CAP_NET_ADMIN',
      'CAP_NET_ADMIN',
      'CAP_SYS_TIME',
      'ALL',
    ]);
  });

  it('read the highest CPU of a cpuset, and nothing of one that does not parse', () => {
    expect(highestCpu('0')).toBe(0);
    expect(highestCpu('0-3,6')).toBe(6);
    expect(highestCpu('8-9, 2')).toBe(9);
    expect(highestCpu('0-')).toBeUndefined();
    expect(highestCpu('a')).toBeUndefined();
  });

  it('name each container whose namespaces a spec joins, once', () => {
    const joins = (networkMode: string, ipcMode: string, pidMode: string) => namespaceOwners({ networkMode, runtime: { ...ENGINE_DEFAULTS, ipcMode, pidMode } });
    expect(joins('container:db', 'container:db', 'container:db')).toEqual(['db']);
    expect(joins('appnet', 'container:shm', 'host')).toEqual(['shm']);
    expect(joins('none', 'shareable', '')).toEqual([]);
  });

  it("give a spec recorded before them (and the healthcheck's start period) the engine defaults, and keep those of a newer one", () => {
    const { runtime: _none, ...old } = spec('db', 'postgres:16', { healthcheck: { test: ['CMD', 'pg_isready'], intervalNs: 1e9, timeoutNs: 1e9, retries: 3, startPeriodNs: 0 } });
    const { startPeriodNs: _neither, ...oldCheck } = old.healthcheck!;
    expect(recordedSpec({ ...old, healthcheck: oldCheck })).toEqual({ ...old, runtime: ENGINE_DEFAULTS, healthcheck: { ...oldCheck, startPeriodNs: 0 } });
    expect(recordedSpec({ ...old, healthcheck: null }).healthcheck).toBeNull();
    const tuned = spec('db', 'postgres:16', { runtime: { ...ENGINE_DEFAULTS, privileged: true }, healthcheck: { ...oldCheck, startPeriodNs: 30e9 } });
    expect(recordedSpec(tuned)).toEqual(tuned);
  });
});
