/**
 * The headless node behind `tyrum node run`: a TyrumNode whose capabilities are the
 * workspace-confined fs.* of ./fs.ts and, only when its operator names commands, shell.exec
 * (./shell.ts). What it offers is its own operator's decision, independent of the gateway:
 * fs.write only without `readOnly`, shell.exec only with `allowExec`; anything else the gateway
 * asks for is refused on the node (`not_enabled`).
 *
 * Its state directory holds the device key and the node token; it must not be inside the
 * workspace (nor the workspace inside it), or fs.read could hand the node's own credential out.
 */
import { mkdirSync, realpathSync } from 'node:fs';
import { sep } from 'node:path';
import { hostname, platform } from 'node:os';
import { loadOrCreateDeviceKey } from '../../client/identity.js';
import { FileCredentialStore, NodeTaskError, TyrumNode, nodeStatePaths, type NodeCapability, type NodeStatus } from '../runtime.js';
import { Workspace } from './workspace.js';
import { FsCapabilities } from './fs.js';
import { ShellExec } from './shell.js';
import { sysNoop } from './index.js';

export interface HeadlessNodeOptions {
  url: string;
  workspace: string;
  stateDir: string;
  enrollmentToken?: string;
  allowExec?: string[];
  readOnly?: boolean;
  label?: string;
  onStatus?: (status: NodeStatus) => void;
}

/** Start the node; resolves with it once connected (stop it with `node.stop()`). */
export async function startHeadlessNode(o: HeadlessNodeOptions): Promise<{ node: TyrumNode; capabilities: string[] }> {
  mkdirSync(o.stateDir, { recursive: true, mode: 0o700 });
  const root = realpathSync(o.workspace);
  const state = realpathSync(o.stateDir);
  if (within(state, root) || within(root, state)) throw new NodeTaskError('invalid_request', `the state directory (${state}) and the workspace (${root}) must not contain each other: the node's token would be readable through fs.read`);
  const workspace = new Workspace(root);
  const fs = new FsCapabilities(workspace);
  const caps: NodeCapability[] = [
    { id: 'fs.list', version: '1', handler: (args) => fs.list(args) },
    { id: 'fs.read', version: '1', handler: (args) => fs.read(args) },
    { id: 'fs.search', version: '1', handler: (args) => fs.search(args) },
    { id: 'sys.noop', version: '1', handler: (args) => sysNoop(args) },
  ];
  if (!o.readOnly) caps.push({ id: 'fs.write', version: '1', handler: (args) => fs.write(args) });
  if (o.allowExec && o.allowExec.length > 0) {
    const shell = new ShellExec(workspace, { allow: o.allowExec });
    caps.push({
      id: 'shell.exec',
      version: '1',
      // The process id is streamed as soon as it exists: kept with the attempt even if it is cut off.
      handler: (args, ctx) => shell.exec(args, { timeout_ms: ctx.timeout_ms, onEvidence: (e) => void ctx.evidence(e).catch(() => undefined) }),
    });
  }
  const paths = nodeStatePaths(state);
  const node = new TyrumNode({
    url: o.url,
    deviceKey: await loadOrCreateDeviceKey(paths.deviceKey),
    ...(o.enrollmentToken !== undefined ? { enrollmentToken: o.enrollmentToken } : {}),
    credentials: new FileCredentialStore(paths.token),
    capabilities: caps,
    device: { label: o.label ?? hostname(), platform: platform(), version: 'tyrum-headless-node/1' },
    maxConcurrent: 1,
    ...(o.onStatus ? { onStatus: o.onStatus } : {}),
  });
  await node.start();
  return { node, capabilities: caps.map((c) => `${c.id}@${c.version}`) };
}

export { nodeStatePaths };

function within(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}
