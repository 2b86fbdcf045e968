/**
 * Pins the shape of src/: its folders in layers, each importing only from
 * layers below it (type-only imports count), so no folder cycle can form;
 * product code never imports test code; and the repository's index is
 * reached in SQL from src/repo/ alone.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = path.dirname(new URL(import.meta.url).pathname);

/** Lowest first. A folder may import its own files and any folder of a lower layer. */
const LAYERS: readonly (readonly string[])[] = [
  ['errors'],
  ['util'],
  ['log', 'db', 'workers'],
  ['config', 'backend'],
  ['repo'],
  ['docker'],
  ['catalog'],
  ['inventory', 'watch'],
  ['backup', 'restore', 'replicate', 'notify'],
  ['recover', 'console'],
  ['agent'],
  ['cli'],
];
const layerOf = new Map(LAYERS.flatMap((names, i) => names.map((n) => [n, i] as const)));

const isTest = (file: string) => file.endsWith('.test.ts') || file.split(path.sep).includes('testing');

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sources(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

/** Relative specifiers a file imports or re-exports, statically or dynamically, type-only ones included. */
function imports(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8');
  const found = [...text.matchAll(/(?:^|[\s;])(?:import|export)\s[^'"`;]*?from\s*['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)|^import\s+['"](\.[^'"]+)['"]/gm)];
  return found.map((m) => (m[1] ?? m[2] ?? m[3])!);
}

const folderOf = (file: string) => path.relative(SRC, file).split(path.sep)[0]!;
const product = sources(SRC).filter((f) => !isTest(f) && path.dirname(f) !== SRC);

describe('the folders of src/', () => {
  it('each have a layer', () => {
    const folders = [...new Set(product.map(folderOf))].sort();
    expect(folders.filter((f) => !layerOf.has(f))).toEqual([]);
  });

  it('import only from lower layers (no cycle)', () => {
    const wrong: string[] = [];
    for (const file of product) {
      const from = folderOf(file);
      for (const spec of imports(file)) {
        const target = path.resolve(path.dirname(file), spec);
        if (!target.startsWith(SRC + path.sep)) continue; // package.json
        const to = folderOf(target);
        if (to !== from && !(layerOf.get(to)! < layerOf.get(from)!)) wrong.push(`${path.relative(SRC, file)} -> ${spec}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it('never import tests or test helpers from product code', () => {
    const wrong = product.flatMap((file) => imports(file).filter((spec) => isTest(path.resolve(path.dirname(file), spec))).map((spec) => `${path.relative(SRC, file)} -> ${spec}`));
    expect(wrong).toEqual([]);
  });

  it('reach the repository index in SQL from repo/ alone', () => {
    const index = path.join(SRC, 'repo', 'index-db.ts');
    const wrong = product
      .filter((file) => folderOf(file) !== 'repo')
      .flatMap((file) => imports(file).filter((spec) => path.resolve(path.dirname(file), spec) === index).map(() => path.relative(SRC, file)));
    expect(wrong).toEqual([]);
    // and nobody opens the index file on their own
    const opened = product.filter((file) => folderOf(file) !== 'repo' && /['"`]index\.db['"`]/.test(fs.readFileSync(file, 'utf8')));
    expect(opened).toEqual([]);
  });

  it('see one dockerode import, in docker/', () => {
    const users = product.filter((file) => /from\s+['"]dockerode['"]|import\(\s*['"]dockerode['"]/.test(fs.readFileSync(file, 'utf8')));
    expect(users.map((f) => path.relative(SRC, f))).toEqual([path.join('docker', 'dockerode-engine.ts')]);
  });

  it('see the S3 client in one place, backend/s3.ts', () => {
    const users = product.filter((file) => /from\s+['"]@aws-sdk\/|import\(\s*['"]@aws-sdk\//.test(fs.readFileSync(file, 'utf8')));
    expect(users.map((f) => path.relative(SRC, f))).toEqual([path.join('backend', 's3.ts')]);
  });
});

describe('the import scanner', () => {
  it('finds static, type-only, re-exported and dynamic imports', () => {
    const dir = fs.mkdtempSync(path.join(SRC, '..', '.arch-'));
    try {
      const file = path.join(dir, 'x.ts');
      fs.writeFileSync(
        file,
        [
          "import a from './a.ts';",
          "import type { B } from '../b.ts';",
          "import {\n  c,\n  type D,\n} from './c.ts';",
          "export { e } from './e.ts';",
          "export * from './f.ts';",
          "const g = await import('./g.ts');",
          "import './h.ts';",
          "import fs from 'node:fs';",
        ].join('\n'),
      );
      expect(imports(file).sort()).toEqual(['../b.ts', './a.ts', './c.ts', './e.ts', './f.ts', './g.ts', './h.ts']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
