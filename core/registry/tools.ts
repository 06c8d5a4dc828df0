/**
 * The gateway's one tool catalog: plugin tools (PluginHost) and approved MCP tools (McpHost)
 * behind the same four calls the pipeline makes (describe for policy, tools for listing,
 * checkCall before a run exists, invoke inside a step). `mcp.<server>.<tool>` ids belong to MCP
 * (no plugin may be named "mcp"), `node.<capability>[@<node>]` to nodes (nor "node");
 * everything else to plugins.
 */
import type { RiskFlag } from '../../schemas/index.js';
import { TyrumError } from '../errors/index.js';
import type { AuditActor } from '../audit/index.js';
import type { EffectiveRights } from '../../manifests/capabilities.js';
import type { PluginHost, ToolEntry } from './host.js';
import type { McpHost } from '../mcp/host.js';
import type { ArtifactOutput } from '../execution/types.js';

export interface DescribedTool {
  entry: ToolEntry;
  risks: RiskFlag[];
  rights: Pick<EffectiveRights, 'egress' | 'secrets'>;
  /** Safe to run again after an unknown outcome even though it changes state (a node capability's contract says so). */
  idempotent?: boolean;
}

export interface ToolSource {
  /** `tenant`: a tenant other than the default gets the rights of its own grant (plugin tools). */
  describe(toolId: string, tenant?: string): DescribedTool | undefined;
  tools(): Array<Omit<ToolEntry, 'postcondition'>>;
  checkCall(toolId: string, args: Record<string, unknown>): void;
  /** `tenant`: whose call it is (plugin tools run under that tenant's grant, namespace and secrets). */
  invoke(toolId: string, args: Record<string, unknown>, actor: AuditActor, signal?: AbortSignal, tenant?: string): Promise<{ output: unknown; definition_hash?: string; plugin_digest?: string; duration_ms?: number; usage?: Record<string, unknown> | null; evidence?: Record<string, unknown> | null; artifacts?: ArtifactOutput[] }>;
}

export class ToolCatalog implements ToolSource {
  constructor(
    private readonly plugins: PluginHost,
    private readonly mcp: McpHost | null,
    private readonly nodes: (ToolSource & { lookup(toolId: string): DescribedTool | TyrumError }) | null = null,
  ) {}

  private source(toolId: string): ToolSource {
    if (toolId.startsWith('node.') && this.nodes) return this.nodes;
    return toolId.startsWith('mcp.') && this.mcp ? this.mcp : this.plugins;
  }

  describe(toolId: string, tenant?: string): DescribedTool | undefined {
    return this.source(toolId).describe(toolId, tenant);
  }

  tools(): Array<Omit<ToolEntry, 'postcondition'>> {
    const all = [...this.plugins.tools(), ...(this.mcp?.tools() ?? []), ...(this.nodes?.tools() ?? [])];
    return all.sort((a, b) => (a.tool_id < b.tool_id ? -1 : a.tool_id > b.tool_id ? 1 : 0));
  }

  /** {@link tools}, after reading every enabled plugin without stalling the event loop. */
  async list(): Promise<Array<Omit<ToolEntry, 'postcondition'>>> {
    await this.plugins.readAll();
    return this.tools();
  }

  checkCall(toolId: string, args: Record<string, unknown>): void {
    this.source(toolId).checkCall(toolId, args);
  }

  invoke(toolId: string, args: Record<string, unknown>, actor: AuditActor, signal?: AbortSignal, tenant?: string): ReturnType<ToolSource['invoke']> {
    return this.source(toolId).invoke(toolId, args, actor, signal, tenant);
  }

  /**
   * `describe`, or the error a call of the tool fails with: a quarantined (or refused) MCP tool
   * says so (TYRUM_ERR_MCP_QUARANTINED, TYRUM_ERR_MCP_SCHEMA_REFUSED); anything else is not found.
   */
  lookup(toolId: string): DescribedTool | TyrumError {
    if (toolId.startsWith('mcp.') && this.mcp) return this.mcp.lookup(toolId);
    if (toolId.startsWith('node.') && this.nodes) return this.nodes.lookup(toolId);
    return this.plugins.describe(toolId) ?? new TyrumError('TYRUM_ERR_NOT_FOUND', `no enabled tool ${toolId}`, { tool_id: toolId });
  }
}
