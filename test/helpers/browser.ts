// The real-browser tests (test/ui) drive Debian's chromium with playwright-core. Without it they
// skip with this reason (tap counts and prints skips; .ci/run installs chromium when missing), as
// the C toolchain tests do without clang. They also need the built UI (npm run build).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { packageInfo } from '../../core/util/package-info.js';

export const CHROMIUM = process.env.TYRUM_CHROMIUM ?? '/usr/bin/chromium';
export const UI_DIR = join(packageInfo().root, 'dist', 'ui');

/** The reason to skip a browser test, or false to run it (the form tap's `skip` option takes). */
export function skipWithoutChromium(): string | false {
  if (!existsSync(CHROMIUM)) return `needs Chromium at ${CHROMIUM} (apt-get install chromium, or set TYRUM_CHROMIUM)`;
  if (!existsSync(join(UI_DIR, 'index.html'))) return 'needs the built UI: run npm run build (it writes dist/ui)';
  return false;
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--headless'] });
}
