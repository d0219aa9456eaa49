// No import cycles under controller/: entry points depend on the modules they start, never the
// other way. Every import counts — static, type-only, re-exports and dynamic `import()` — since a
// type-only cycle is still a cycle in the design (and becomes a runtime one with one edit).
// TypeScript's own pre-processor lists a file's imports, so no regex guesses and no new dependency.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return sources(p);
    return p.endsWith('.ts') && !p.endsWith('.d.ts') ? [p] : [];
  });
}

/** The import graph of the given files: file → the local files it imports. */
export function importGraph(files: string[]): Map<string, string[]> {
  const known = new Set(files);
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    const targets = info.importedFiles
      .map((f) => f.fileName)
      .filter((spec) => spec.startsWith('.'))
      .map((spec) => resolve(dirname(file), spec))
      .filter((p) => known.has(p));
    graph.set(file, [...new Set(targets)]);
  }
  return graph;
}

/** Every elementary cycle found by a depth-first search (one per back edge), as file lists. */
export function findCycles(graph: Map<string, string[]>): string[][] {
  const cycles: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (n: string): void => {
    state.set(n, 'open');
    stack.push(n);
    for (const m of graph.get(n) ?? []) {
      if (state.get(m) === 'open') cycles.push([...stack.slice(stack.indexOf(m)), m]);
      else if (!state.has(m)) visit(m);
    }
    stack.pop();
    state.set(n, 'done');
  };
  for (const n of [...graph.keys()].sort()) if (!state.has(n)) visit(n);
  return cycles;
}

it('the cycle finder finds a cycle, including one closed by a type-only or dynamic import (it can fail)', () => {
  const g = new Map([
    ['a', ['b']],
    ['b', ['c']],
    ['c', ['a']],
    ['d', ['a']],
  ]);
  assert.deepEqual(findCycles(g), [['a', 'b', 'c', 'a']]);
  assert.deepEqual(findCycles(new Map([['a', ['b']], ['b', []]])), []);
  const info = ts.preProcessFile("import type { X } from './x.ts';\nexport { y } from './y.ts';\nconst z = () => import('./z.ts');\n", true, true);
  assert.deepEqual(info.importedFiles.map((f) => f.fileName), ['./x.ts', './y.ts', './z.ts']);
});

it('controller/ has no import cycle', () => {
  const files = sources(join(root, 'controller'));
  assert.ok(files.length > 20, `found only ${files.length} files under controller/`);
  const graph = importGraph(files);
  assert.ok([...graph.values()].some((t) => t.length > 0), 'the graph has edges');
  const cycles = findCycles(graph).map((c) => c.map((f) => relative(root, f)).join(' → '));
  assert.deepEqual(cycles, [], `import cycles:\n${cycles.join('\n')}`);
});
