import { describe, expect, it } from 'vitest';
import type { ContainerSpec } from '../docker/engine.ts';
import { spec, volumeMount } from '../docker/testing/inventory-fixture.ts';
import type { PlannedContainer, RecoveryPlan } from './plan.ts';
import { drillTarget, hardDependencies, recoveryTarget } from './target.ts';

const planned = (name: string, sourceId: string, over: Partial<ContainerSpec>): PlannedContainer => ({
  name,
  sourceId,
  state: 'running',
  start: true,
  imageId: 'sha256:aa',
  spec: spec(name, 'app:1', over),
  snapshot: 's',
});

const db = planned('db', 'a'.repeat(64), { networkMode: 'appnet', networks: [{ name: 'appnet', aliases: ['database'] }], hostname: 'db-host', mounts: [volumeMount('data', '/data')] });
const side = planned('side', 'b'.repeat(64), { networkMode: `container:${'a'.repeat(64)}`, hostname: 'bbbbbbbbbbbb' });
const web = planned('web', 'c'.repeat(64), {
  networkMode: 'bridge',
  networks: [{ name: 'bridge', aliases: [] }],
  links: ['db:database'],
  portBindings: [{ containerPort: '80/tcp', hostIp: '', hostPort: '8080' }],
  mounts: [volumeMount('data', '/data'), { type: 'bind', source: '/srv/static', destination: '/static', readOnly: false }],
  restartPolicy: { name: 'always', maximumRetryCount: 0 },
  labels: { app: 'web' },
});
const quiet = planned('quiet', 'd'.repeat(64), { networkMode: 'none', networks: [{ name: 'none', aliases: [] }] });
const plan: RecoveryPlan = { host: 'h', at: null, volumes: [], containers: [db, side, web, quiet], images: new Map() };

describe('recoveryTarget', () => {
  const t = recoveryTarget(plan, 'host-a', false);

  it('recreates a spec as recorded, labelled, with container:<id> turned into the container\'s name', () => {
    expect(t.spec(web)).toEqual({ ...web.spec, labels: { app: 'web', 'lifeboat.recovered-from': 'host-a' } });
    expect(t.spec(side)).toMatchObject({ networkMode: 'container:db', hostname: '' });
    expect(hardDependencies(t.spec(side))).toEqual(['db']);
    expect(hardDependencies(t.spec(web))).toEqual(['db']);
    expect(t.volumeName('data')).toBe('data');
    expect(t.volumeLabels({ name: 'data', driver: 'local', labels: { tier: 'db' }, snapshot: undefined as never })).toEqual({ tier: 'db', 'lifeboat.recovered-from': 'host-a' });
  });

  it('owns what a recovery of the same host made, and nothing else', () => {
    expect(t.owns({ 'lifeboat.recovered-from': 'host-a' })).toBe(true);
    expect(t.owns({ 'lifeboat.recovered-from': 'host-b' })).toBe(false);
    expect(t.owns({})).toBe(false);
  });
});

describe('drillTarget', () => {
  const t = drillTarget(plan, 'host-a', 'lbdrill-abc123');
  const mark = { 'lifeboat.drill': 'lbdrill-abc123', 'lifeboat.drill-from': 'host-a', 'lifeboat.exclude': 'true' };

  it('renames, unpublishes, makes bind mounts read-only, drops the restart policy, and moves the container to the drill network under its old names', () => {
    expect(t.spec(web)).toEqual({
      ...web.spec,
      name: 'lbdrill-abc123-web',
      labels: { app: 'web', ...mark },
      portBindings: [],
      mounts: [
        { type: 'volume', name: 'lbdrill-abc123-data', source: '', destination: '/data', readOnly: false },
        { type: 'bind', source: '/srv/static', destination: '/static', readOnly: true },
      ],
      restartPolicy: { name: 'no', maximumRetryCount: 0 },
      networkMode: 'lbdrill-abc123',
      networks: [{ name: 'lbdrill-abc123', aliases: ['web'] }],
      links: ['lbdrill-abc123-db:database'],
    });
    expect(t.spec(db)).toMatchObject({ networkMode: 'lbdrill-abc123', networks: [{ name: 'lbdrill-abc123', aliases: ['db', 'database'] }], hostname: 'db-host' });
  });

  it('points container:X at X\'s copy and leaves network none alone', () => {
    expect(t.spec(side)).toMatchObject({ name: 'lbdrill-abc123-side', networkMode: 'container:lbdrill-abc123-db', networks: [], hostname: '' });
    expect(t.spec(quiet)).toMatchObject({ networkMode: 'none', networks: [{ name: 'none', aliases: [] }] });
  });

  it('labels volumes and the network as the drill\'s, and owns nothing that exists', () => {
    expect(t.networkName).toBe('lbdrill-abc123');
    expect(t.network).toEqual({ internal: true, labels: mark });
    expect(t.volumeName('data')).toBe('lbdrill-abc123-data');
    expect(t.volumeLabels({ name: 'data', driver: 'local', labels: { tier: 'db' }, snapshot: undefined as never })).toEqual({ tier: 'db', ...mark });
    expect(t.owns({ 'lifeboat.recovered-from': 'host-a' })).toBe(false);
  });
});
