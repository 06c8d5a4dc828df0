/** This package's name and version, read from package.json (works from source and from dist/). */
import { readFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: { name: string; version: string; root: string } | null = null;

export function packageInfo(): { name: string; version: string; root: string } {
  if (cached) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const p = join(dir, 'package.json');
    if (existsSync(p)) {
      const pkg = JSON.parse(readFileSync(p, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'tyrum') return (cached = { name: pkg.name, version: pkg.version ?? '0.0.0', root: dir });
    }
    const up = dirname(dir);
    if (up === dir) return (cached = { name: 'tyrum', version: '0.0.0', root: dir });
    dir = up;
  }
}
