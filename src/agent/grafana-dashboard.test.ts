import fs from 'node:fs';
import path from 'node:path';
import { Histogram } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { AgentMetrics } from './metrics.ts';

const DASHBOARD = path.join(import.meta.dirname, '..', '..', 'contrib', 'grafana', 'lifeboat.json');
const DATASOURCE = '${datasource}';
// the units the panels may use (Grafana's ids): a typo such as "Bytes" would show raw numbers
const UNITS = new Set(['s', 'bytes', 'Bps', 'short', 'none', 'dateTimeFromNow']);

interface Ref {
  type?: string;
  uid?: string;
}
interface Target {
  expr?: unknown;
  refId?: unknown;
  datasource?: Ref;
}
interface Panel {
  id?: unknown;
  type?: unknown;
  title?: unknown;
  gridPos?: { h?: unknown; w?: unknown; x?: unknown; y?: unknown };
  datasource?: Ref;
  targets?: Target[];
  panels?: Panel[];
  fieldConfig?: { defaults?: { unit?: unknown } };
}
interface Variable {
  name: string;
  type: string;
  query?: string | { query?: string };
  definition?: string;
  datasource?: Ref;
  multi?: boolean;
  includeAll?: boolean;
}
interface Dashboard {
  uid?: unknown;
  title?: unknown;
  schemaVersion?: unknown;
  __inputs?: { name: string; type: string; pluginId: string }[];
  panels?: Panel[];
  templating?: { list?: Variable[] };
}

const text = fs.readFileSync(DASHBOARD, 'utf8');
const dashboard = JSON.parse(text) as Dashboard;
const rows = (dashboard.panels ?? []).filter((p) => p.type === 'row');
// a collapsed row keeps its panels inside it
const all = [...(dashboard.panels ?? []), ...rows.flatMap((r) => r.panels ?? [])];
const panels = all.filter((p) => p.type !== 'row');
const variables = dashboard.templating?.list ?? [];

/** The metrics the agent exports (with prom-client's process metrics), by name: their label names, and whether a histogram. */
function exported(): Map<string, { labelNames: readonly string[]; histogram: boolean }> {
  const metrics = new AgentMetrics({ volumes: () => [], engineUp: () => true, peers: () => [], repository: () => ({ snapshots: 0, packBytes: 0 }) }, { processMetrics: true });
  return new Map(
    metrics.registry.getMetricsAsArray().map((m) => [m.name, { labelNames: (m as unknown as { labelNames: string[] }).labelNames, histogram: m instanceof Histogram }]),
  );
}

/**
 * Every series selector in a PromQL expression whose metric is one of the
 * agent's (lifeboat_*, and the process_* and nodejs_* prom-client adds),
 * checked against what the agent exports: a histogram only by its _bucket,
 * _sum and _count series, and label matchers only on the metric's labels or
 * the instance and job Prometheus adds (le too on _bucket). Returns how
 * many selectors it found.
 */
function checkSelectors(where: string, expr: string, metrics: ReturnType<typeof exported>): number {
  let found = 0;
  for (const [, name, selector] of expr.matchAll(/\b((?:lifeboat|process|nodejs)_[a-z0-9_]+)\s*(\{[^}]*\})?/g)) {
    found++;
    let metric = metrics.get(name!);
    const labels = ['instance', 'job'];
    if (metric?.histogram) expect.fail(`${where}: ${name} is a histogram: select its _bucket, _sum or _count series`);
    if (!metric) {
      const [, base, suffix] = /^(.+)_(bucket|sum|count)$/.exec(name!) ?? [];
      const histogram = base === undefined ? undefined : metrics.get(base);
      if (histogram?.histogram) {
        metric = histogram;
        if (suffix === 'bucket') labels.push('le');
      }
    }
    expect(metric, `${where}: ${name} is not a metric the agent exports`).toBeDefined();
    labels.push(...metric!.labelNames);
    const body = (selector ?? '{}').slice(1, -1);
    const matchers = [...body.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"/g)];
    // whatever the matchers leave of the selector is only their commas: a matcher this parser missed must not go unchecked
    expect(body.replace(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"/g, '').replace(/[\s,]/g, ''), `${where}: selector ${selector}`).toBe('');
    for (const [, label] of matchers) expect(labels, `${where}: ${name} has no label ${label}`).toContain(label);
  }
  return found;
}

describe('the Grafana dashboard in contrib/', () => {
  it('is a dashboard Grafana imports: its data source an input and a variable, panels with unique ids on the grid', () => {
    expect(dashboard.uid).toMatch(/^[A-Za-z0-9_-]{1,40}$/);
    expect(dashboard.title).toEqual(expect.any(String));
    expect(dashboard.schemaVersion).toBe(39);
    // imported through the UI: the input asks for the Prometheus, and is the data source variable's default
    expect(dashboard.__inputs).toContainEqual(expect.objectContaining({ name: 'DS_PROMETHEUS', type: 'datasource', pluginId: 'prometheus' }));
    expect(text).toContain('${DS_PROMETHEUS}');
    // provisioned from a file: the variable picks a Prometheus
    expect(variables).toContainEqual(expect.objectContaining({ name: 'datasource', type: 'datasource', query: 'prometheus' }));
    expect(variables.map((v) => v.name)).toEqual(expect.arrayContaining(['instance', 'volume', 'peer']));
    for (const v of variables.filter((v) => v.type === 'query')) expect(v.datasource?.uid, `variable ${v.name}`).toBe(DATASOURCE);
    for (const name of ['volume', 'peer']) expect(variables.find((v) => v.name === name), name).toMatchObject({ multi: true, includeAll: true });

    expect(rows.map((r) => r.title)).toEqual(['Recovery points', 'Replication', 'Drills', 'Agent']);
    expect(panels.length).toBeGreaterThanOrEqual(12);
    const ids = all.map((p) => p.id);
    for (const id of ids) expect(Number.isInteger(id) && (id as number) > 0, `panel id ${id}`).toBe(true);
    expect(new Set(ids).size, 'panel ids are unique').toBe(ids.length);

    const cells = new Map<string, unknown>();
    for (const p of all) {
      const where = `panel ${p.id} (${p.title})`;
      expect(p.title, where).toEqual(expect.any(String));
      const { h, w, x, y } = p.gridPos ?? {};
      for (const n of [h, w, x, y]) expect(Number.isInteger(n) && (n as number) >= 0, `${where}: gridPos ${JSON.stringify(p.gridPos)}`).toBe(true);
      const [ph, pw, px, py] = [h, w, x, y] as [number, number, number, number];
      expect(ph > 0 && pw > 0 && px + pw <= 24, `${where}: gridPos ${JSON.stringify(p.gridPos)}`).toBe(true);
      // no two panels on the same cell (a collapsed row's panels are placed when it opens: only the dashboard's own)
      if (!dashboard.panels!.includes(p)) continue;
      for (let i = px; i < px + pw; i++) {
        for (let j = py; j < py + ph; j++) {
          expect(cells.get(`${i},${j}`), `${where} overlaps another panel`).toBeUndefined();
          cells.set(`${i},${j}`, p.id);
        }
      }
    }

    for (const p of panels) {
      const where = `panel ${p.id} (${p.title})`;
      expect(p.datasource, where).toEqual({ type: 'prometheus', uid: DATASOURCE });
      expect(UNITS, `${where}: unit ${p.fieldConfig?.defaults?.unit}`).toContain(p.fieldConfig?.defaults?.unit);
      expect(p.targets?.length, `${where} has no targets`).toBeGreaterThan(0);
      const refIds = p.targets!.map((t) => t.refId);
      expect(new Set(refIds).size, `${where}: refIds are unique`).toBe(refIds.length);
      for (const t of p.targets!) {
        expect(t.refId, where).toMatch(/^[A-Z]$/);
        expect(t.expr, where).toEqual(expect.stringMatching(/\S/));
        if (t.datasource) expect(t.datasource.uid, where).toBe(DATASOURCE);
      }
    }
  });

  it('queries only metrics the agent exports, with the labels it gives them', () => {
    const metrics = exported();
    let found = 0;
    for (const p of panels) for (const t of p.targets ?? []) found += checkSelectors(`panel ${p.id} (${p.title}) ${t.refId}`, String(t.expr), metrics);
    for (const v of variables.filter((v) => v.type === 'query')) {
      for (const query of [typeof v.query === 'string' ? v.query : v.query?.query, v.definition]) {
        const where = `variable ${v.name}`;
        const [, selector, label] = /^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$/.exec(query ?? '') ?? [];
        expect(selector, `${where}: ${query}`).toBeDefined();
        expect(checkSelectors(where, selector!, metrics), `${where}: ${query}`).toBe(1);
        const name = /^[a-z0-9_]+/.exec(selector!)![0];
        expect([...metrics.get(name)!.labelNames, 'instance', 'job'], `${where}: ${name} has no label ${label}`).toContain(label);
        found++;
      }
    }
    expect(found).toBeGreaterThan(20);
  });
});
