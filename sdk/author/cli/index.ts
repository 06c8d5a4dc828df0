/**
 * The plugin author's commands under `tyrum plugin` (new, build, types, test, pack, keygen, sign):
 * the one entry the kernel's CLI imports, lazily, when one of them is typed. Each command loads its
 * own toolchain (compilers, typegen, the sandbox) only when it runs.
 */
import type { Io } from '../../../core/cli/io.js';

/** The `tyrum plugin` sub-commands served here. */
export const AUTHOR_COMMANDS = ['new', 'build', 'types', 'test', 'pack', 'keygen', 'sign'] as const;
export type AuthorCommand = (typeof AUTHOR_COMMANDS)[number];

/** Runs `tyrum plugin SUB ARGV...` for an author sub-command; resolves with the exit code. */
export async function authorCommand(sub: AuthorCommand, argv: string[], io: Io): Promise<number> {
  switch (sub) {
    case 'new':
      return (await import('./new-build.js')).pluginNew(argv, io);
    case 'build':
      return (await import('./new-build.js')).pluginBuild(argv, io);
    case 'types':
      return (await import('./types.js')).pluginTypes(argv, io);
    case 'test':
      return (await import('./test-pack.js')).pluginTest(argv, io);
    case 'pack':
      return (await import('./test-pack.js')).pluginPack(argv, io);
    case 'keygen':
      return (await import('./test-pack.js')).pluginKeygen(argv, io);
    case 'sign':
      return (await import('./test-pack.js')).pluginSign(argv, io);
  }
}
