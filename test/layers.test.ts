import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';

// The shape of src/ that README's "How the code is organised" describes, held by the imports
// themselves (type-only ones too): arrows point down, and a newcomer finds a behaviour by the
// folder named for it.

const SRC = new URL('../src/', import.meta.url).pathname;

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

/** Each module of src/ (by its path under src/) with the modules of src/ it imports. */
const GRAPH = new Map(files(SRC).map((file) => {
  const text = readFileSync(file, 'utf8');
  const targets = [...text.matchAll(/(?:from\s+|import\()\s*'(\.[^']+)'/g)].map((m) => normalize(relative(SRC, join(dirname(file), m[1]!))));
  return [relative(SRC, file), targets] as const;
}));

const folderOf = (module: string) => (module.includes('/') ? module.slice(0, module.indexOf('/')) : '.');
const importsOf = (prefix: string) => [...GRAPH].filter(([m]) => m.startsWith(prefix)).flatMap(([m, targets]) => targets.map((t) => `${m} -> ${t}`));

describe('the layers of src/', () => {
  test('no import cycle passes through more than one folder', () => {
    // Tarjan's strongly connected components: every cycle lies within one.
    const index = new Map<string, number>();
    const low = new Map<string, number>();
    const stack: string[] = [];
    const crossing: string[][] = [];
    let next = 0;
    const visit = (v: string) => {
      index.set(v, next);
      low.set(v, next++);
      stack.push(v);
      for (const w of GRAPH.get(v) ?? []) {
        if (!GRAPH.has(w)) continue;
        if (!index.has(w)) {
          visit(w);
          low.set(v, Math.min(low.get(v)!, low.get(w)!));
        } else if (stack.includes(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
      if (low.get(v) !== index.get(v)) return;
      const component: string[] = [];
      for (let w = stack.pop(); ; w = stack.pop()) {
        component.push(w!);
        if (w === v) break;
      }
      if (component.length > 1 && new Set(component.map(folderOf)).size > 1) crossing.push(component.sort());
    };
    for (const v of GRAPH.keys()) if (!index.has(v)) visit(v);
    assert.deepEqual(crossing, []);
  });

  test('the stores keep what they are handed: they import neither the account rules nor a source', () => {
    assert.deepEqual(importsOf('storage/').filter((i) => /-> (sign-in|sources|oidc|http|config)\//.test(i)), []);
  });

  test('http/ imports no source and no source imports http/ (a source renders through what it is handed)', () => {
    assert.deepEqual(importsOf('http/').filter((i) => /-> sources\//.test(i)), []);
    assert.deepEqual(importsOf('sources/').filter((i) => /-> http\//.test(i)), []);
  });

  test('the core config does not import the source registry: a loader above both combines them', () => {
    assert.deepEqual(importsOf('config/config.ts').concat(importsOf('config/fields.ts')).filter((i) => /-> sources\//.test(i)), []);
    assert.ok(importsOf('config/load.ts').some((i) => i.endsWith('-> sources/registry.ts')));
  });

  test('oidc-provider\'s configuration imports nothing of the interaction routes', () => {
    assert.deepEqual(importsOf('oidc/provider.ts').filter((i) => /interactions\.ts$/.test(i)), []);
  });

  test('at most 10 files at the top of src/, the rest in folders that name ideas', () => {
    const top = [...GRAPH.keys()].filter((m) => !m.includes('/'));
    assert.ok(top.length <= 10, top.join(' '));
  });
});
