// The plugin-author toolchain is not kernel: it lives in sdk/author, and core/ reaches it only
// through the one lazy entry of the CLI (`tyrum plugin new|build|types|test|pack|keygen|sign`, a
// dynamic import of sdk/author/cli/index.js in core/cli/plugin.ts). Every import, re-export,
// `import type` and dynamic import() of every core/*.ts module is checked with the TypeScript parser.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import ts from 'typescript';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const AUTHOR = join(ROOT, 'sdk', 'author');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

/** Each module specifier of `file` with how it is imported. */
function imports(file: string): Array<{ spec: string; dynamic: boolean }> {
  const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const out: Array<{ spec: string; dynamic: boolean }> = [];
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      out.push({ spec: node.moduleSpecifier.text, dynamic: false });
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0] && ts.isStringLiteral(node.arguments[0])) {
      out.push({ spec: node.arguments[0].text, dynamic: true });
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      out.push({ spec: node.argument.literal.text, dynamic: false });
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

t.test('the author toolchain lives in sdk/author, not in the kernel', async (t) => {
  t.notOk(existsSync(join(ROOT, 'core', 'author')), 'no core/author');
  for (const f of ['scaffold.ts', 'build.ts', 'types.ts', 'harness.ts', 'pack.ts', 'signing.ts', 'cli/index.ts']) t.ok(existsSync(join(AUTHOR, f)), `sdk/author/${f}`);
  t.notOk(readdirSync(join(ROOT, 'core', 'cli')).some((f) => f.startsWith('author')), 'no author commands in core/cli');
});

t.test('core/ reaches sdk/author only through the CLI\'s one lazy entry', async (t) => {
  const edges: string[] = [];
  for (const file of sources(join(ROOT, 'core'))) {
    for (const { spec, dynamic } of imports(file)) {
      if (!spec.startsWith('.')) continue;
      const target = resolve(dirname(file), spec);
      if (target === AUTHOR || target.startsWith(AUTHOR + '/')) edges.push(`${relative(ROOT, file)} -> ${relative(ROOT, target)}${dynamic ? ' (dynamic)' : ''}`);
    }
  }
  t.same(edges, ['core/cli/plugin.ts -> sdk/author/cli/index.js (dynamic)']);
});
