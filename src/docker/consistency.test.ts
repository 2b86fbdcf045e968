import { describe, expect, it } from 'vitest';
import { flag, startOrder } from './consistency.ts';
import type { ContainerDetail } from './engine.ts';

function container(name: string, over: { labels?: Record<string, string>; networkMode?: string; links?: string[] } = {}): ContainerDetail {
  return {
    id: `id-${name}`,
    name,
    image: 'img',
    imageId: 'sha256:img',
    state: 'running',
    labels: over.labels ?? {},
    mounts: [],
    created: '2026-01-01T00:00:00Z',
    spec: { networkMode: over.networkMode ?? 'none', links: over.links ?? [] } as unknown as ContainerDetail['spec'],
  };
}

const names = (cs: ContainerDetail[]) => cs.map((c) => c.name);

describe('startOrder', () => {
  it('starts what a container shares a network namespace with, links to, or depends on first', () => {
    const db = container('db');
    const app = container('app', { links: ['db:database'] });
    const sidecar = container('a-sidecar', { networkMode: 'container:id-app' });
    const worker = container('worker', { labels: { 'lifeboat.depends-on': 'app, db' } });
    expect(names(startOrder([worker, sidecar, app, db]))).toEqual(['db', 'app', 'a-sidecar', 'worker']);
  });

  it('follows compose depends_on within one project only', () => {
    const compose = (name: string, service: string, project: string, dependsOn?: string) =>
      container(name, {
        labels: {
          'com.docker.compose.project': project,
          'com.docker.compose.service': service,
          ...(dependsOn ? { 'com.docker.compose.depends_on': dependsOn } : {}),
        },
      });
    const web = compose('a-web', 'web', 'shop', 'db:service_healthy:false,cache:service_started:false');
    const db = compose('z-db', 'db', 'shop');
    const cache = compose('m-cache', 'cache', 'shop');
    const otherDb = compose('b-db', 'db', 'blog');
    const order = names(startOrder([web, db, cache, otherDb]));
    expect(order.indexOf('z-db')).toBeLessThan(order.indexOf('a-web'));
    expect(order.indexOf('m-cache')).toBeLessThan(order.indexOf('a-web'));
    expect(order.indexOf('b-db')).toBeLessThan(order.indexOf('a-web')); // name order only: no edge across projects
    expect(order[0]).toBe('b-db');
  });

  it('is total even with a cycle, falling back to name order', () => {
    const a = container('a', { labels: { 'lifeboat.depends-on': 'b' } });
    const b = container('b', { labels: { 'lifeboat.depends-on': 'a' } });
    expect(names(startOrder([b, a]))).toEqual(['a', 'b']);
  });
});

describe('flag', () => {
  it('reads the usual spellings of true and nothing else', () => {
    for (const v of ['true', 'TRUE', '1', 'yes', 'on']) expect(flag({ x: v }, 'x')).toBe(true);
    for (const v of ['false', '0', '', 'no', 'maybe']) expect(flag({ x: v }, 'x')).toBe(false);
    expect(flag({}, 'x')).toBe(false);
  });
});
