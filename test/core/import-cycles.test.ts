// The kernel's import graph (core/) has no cycles. Every relative import and re-export of every
// core/*.ts module is an edge, `import type` / `export type` included: a type-only cycle is still a
// circle in the design (runtime.ts ↔ protocol/handlers.ts was one), and it is one refactor away
// from a runtime cycle, where a module sees another's bindings before they are initialized.
// Only imports that stay inside core/ matter here (schemas/, manifests/, sandbox/ are leaves to it).
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import ts from 'typescript';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CORE = join(ROOT, 'core');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

/** The core/ modules `file` imports or re-exports (static and dynamic `import()`), as absolute paths. */
export function coreImports(file: string): string[] {
  const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const specs: string[] = [];
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      specs.push(node.moduleSpecifier.text);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0] && ts.isStringLiteral(node.arguments[0])) {
      specs.push(node.arguments[0].text);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      specs.push(node.argument.literal.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  const out: string[] = [];
  for (const s of specs) {
    if (!s.startsWith('.')) continue;
    const target = resolve(dirname(file), s.replace(/\.js$/, '.ts'));
    const file2 = existsSync(target) ? target : existsSync(join(target, 'index.ts')) ? join(target, 'index.ts') : null;
    if (file2 !== null && file2.startsWith(CORE + '/')) out.push(file2);
  }
  return out;
}

/** Every elementary cycle's first witness per strongly connected component (Tarjan), as module paths. */
export function cycles(graph: Map<string, string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const found: string[][] = [];
  const strong = (v: string): void => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        strong(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) !== idx.get(v)) return;
    const comp: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      on.delete(w);
      comp.push(w);
    } while (w !== v);
    const selfLoop = (graph.get(v) ?? []).includes(v);
    if (comp.length > 1 || selfLoop) found.push(witness(graph, new Set(comp), v));
  };
  for (const v of graph.keys()) if (!idx.has(v)) strong(v);
  return found;
}

/** One concrete circle through `start` inside its component (breadth-first back to it). */
function witness(graph: Map<string, string[]>, comp: Set<string>, start: string): string[] {
  const prev = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const v = queue.shift()!;
    for (const w of graph.get(v) ?? []) {
      if (!comp.has(w)) continue;
      if (w === start) {
        const path = [v];
        while (path[0] !== start) path.unshift(prev.get(path[0]!)!);
        return [...path, start];
      }
      if (!prev.has(w)) {
        prev.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start];
}

t.test('the cycle finder sees a type-only circle and a longer one', async (t) => {
  const g = new Map([
    ['a', ['b']],
    ['b', ['a', 'c']],
    ['c', []],
    ['d', ['e']],
    ['e', ['f']],
    ['f', ['d']],
    ['g', ['g']],
  ]);
  const found = cycles(g).map((c) => c.join(' → ')).sort();
  t.same(found, ['a → b → a', 'd → e → f → d', 'g → g'].sort());
  t.same(cycles(new Map([['x', ['y']], ['y', []]])), []);
});

t.test('core/ modules import each other without cycles (type-only imports included)', async (t) => {
  const graph = new Map<string, string[]>();
  for (const f of sources(CORE)) graph.set(f, coreImports(f));
  t.ok(graph.size > 50, `read the kernel's modules (${graph.size})`);
  t.ok((graph.get(join(CORE, 'runtime.ts')) ?? []).length > 10, 'runtime.ts imports are seen');
  const found = cycles(graph).map((c) => c.map((p) => relative(ROOT, p)).join(' → '));
  t.same(found, [], found.length === 0 ? 'no import cycles in core/' : `import cycles in core/:\n${found.join('\n')}`);
});
