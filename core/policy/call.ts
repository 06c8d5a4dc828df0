/**
 * Building the policy's view of a call from what the registry knows, so every caller describes
 * calls the same way (the egress hosts and secrets are the plugin's effective rights: what the
 * tool *could* reach, which is what an operator's rule is about).
 */
import type { RiskFlag } from '../../schemas/src/manifest.js';
import type { ToolEntry } from '../registry/host.js';
import type { EffectiveRights } from '../../manifests/capabilities.js';
import type { PolicyCall } from './decide.js';

/**
 * The PolicyCall for `toolId`. `tool` undefined means the registry does not know it: the call
 * is marked unknown (always denied), with the plugin id taken from the id's prefix for
 * explanations. `risks` are the risk flags the plugin declares.
 */
export function policyCall(
  toolId: string,
  tool: Pick<ToolEntry, 'plugin_id' | 'effect'> | undefined,
  plugin: { risks: readonly RiskFlag[]; rights: Pick<EffectiveRights, 'egress' | 'secrets'> } | null,
  argsHash: string | null = null,
): PolicyCall {
  if (tool === undefined) {
    const dot = toolId.indexOf('.');
    return { tool_id: toolId, known: false, plugin_id: dot > 0 ? toolId.slice(0, dot) : null, effect: 'unknown', risks: [], egress_hosts: [], secrets: [], args_hash: argsHash };
  }
  return {
    tool_id: toolId,
    known: true,
    plugin_id: tool.plugin_id,
    effect: tool.effect,
    risks: [...new Set(plugin?.risks ?? [])],
    egress_hosts: [...new Set((plugin?.rights.egress ?? []).map((e) => e.host.toLowerCase()))],
    secrets: [...new Set((plugin?.rights.secrets ?? []).map((s) => s.name))],
    args_hash: argsHash,
  };
}
