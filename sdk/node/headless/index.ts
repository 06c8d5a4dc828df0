/**
 * The headless node's capabilities as a library: workspace confinement (Linux), the fs
 * capabilities over it and shell.exec. No CLI, no network, no gateway imports: the node runtime
 * (or a third-party node) maps each `task.execute` to a handler here and answers with its
 * `{ output, evidence }`, or with a NodeCapabilityError's code. What the confinement covers and
 * what it does not is written at the top of workspace.ts and shell.ts.
 */
import { NodeCapabilityError } from './workspace.js';

export { NodeCapabilityError, Workspace, splitWorkspacePath, type WorkspaceHooks, type WorkspaceOptions, type DirRef, type FileRef } from './workspace.js';
export { FsCapabilities, DEFAULT_FS_LIMITS, globToRegExp, type FsLimits, type CapabilityResult, type WriteBefore } from './fs.js';
export { ShellExec, SHELL_PATH, DEFAULT_SHELL_OUTPUT_BYTES, resolveCommand, type ShellOptions, type ExecContext } from './shell.js';
export { BUILTIN_CAPABILITIES, CAPABILITY_ID_PATTERN, builtinCapability, type BuiltinCapabilityId, type CapabilityContract } from '../../../schemas/src/capabilities.js';

/** sys.noop: answers ok; for tests and benchmarks. */
export async function sysNoop(args: unknown): Promise<{ output: { ok: true }; evidence: Record<string, unknown> }> {
  if (typeof args !== 'object' || args === null || Array.isArray(args) || Object.keys(args).length > 0) throw new NodeCapabilityError('invalid_request', 'sys.noop takes no arguments');
  return { output: { ok: true }, evidence: {} };
}
