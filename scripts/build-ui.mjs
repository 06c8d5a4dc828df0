// Builds the operator web UI (ui/) into dist/ui: one ES module bundle, one stylesheet, the page
// and its icon. Everything the page loads is in that directory (no CDN, system fonts), and the
// gateway serves it at / (core/gateway/ui.ts). Run by `npm run build`.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'ui');
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: { app: join(root, 'ui', 'src', 'main.tsx'), 'app-style': join(root, 'ui', 'src', 'style.css') },
  outdir: out,
  bundle: true,
  format: 'esm',
  target: ['es2022', 'chrome120', 'firefox120', 'safari17'],
  minify: true,
  sourcemap: false,
  jsx: 'automatic',
  jsxImportSource: 'preact',
  tsconfig: join(root, 'ui', 'tsconfig.json'),
  legalComments: 'none',
  logLevel: 'warning',
  // The bundle must not reach for Node built-ins: the browser has none.
  platform: 'browser',
});
// esbuild names the stylesheet after its entry; the page links /ui/app.css.
copyFileSync(join(out, 'app-style.css'), join(out, 'app.css'));
rmSync(join(out, 'app-style.css'));
for (const f of ['index.html', 'icon.svg']) copyFileSync(join(root, 'ui', f), join(out, f));
console.log(`operator UI built into ${out}`);
