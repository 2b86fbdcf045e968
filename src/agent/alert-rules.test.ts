import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AgentMetrics } from './metrics.ts';

const RULES = path.join(import.meta.dirname, '..', '..', 'contrib', 'prometheus', 'lifeboat.rules.yml');

describe('the alert rules in contrib/', () => {
  it('use only metrics the agent exports, with the labels it gives them', async () => {
    const metrics = new AgentMetrics({ volumes: () => [], engineUp: () => true, peers: () => [], repository: () => ({ snapshots: 0, packBytes: 0 }) }, { processMetrics: false });
    const exported = new Map((await metrics.registry.getMetricsAsJSON()).map((m) => [m.name, m]));
    const rules = fs.readFileSync(RULES, 'utf8');
    const used = [...rules.matchAll(/\b(lifeboat_[a-z_]+)(\{[^}]*\})?/g)];
    expect(used.length).toBeGreaterThan(5);
    for (const [, name, selector] of used) {
      expect(exported.has(name!), `${name} is not a metric the agent exports`).toBe(true);
      for (const [, label] of (selector ?? '').matchAll(/([a-z_]+)=/g)) {
        expect((metrics.registry.getSingleMetric(name!) as unknown as { labelNames: string[] }).labelNames, `${name} has no label ${label}`).toContain(label);
      }
    }
  });
});
