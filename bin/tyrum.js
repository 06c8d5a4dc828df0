#!/usr/bin/env node
// Entry point of the `tyrum` command; the CLI itself is compiled TypeScript in dist/.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/core/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  console.error('tyrum: the build output is missing; run `npm install` (or `npm run build`) in the tyrum checkout first');
  process.exit(1);
}
const { runProcess } = await import(entry.href);
await runProcess();
