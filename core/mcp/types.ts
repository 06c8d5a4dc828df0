/**
 * Shapes shared by every MCP transport Tyrum speaks to (stdio, Streamable HTTP, WASM in the
 * sandbox). They mirror the MCP specification's `Tool` and `CallToolResult`; nothing here trusts
 * a server: definitions are screened and pinned by core/mcp/registry, results are size-checked.
 */

/** MCP tool names Tyrum accepts (the specification's recommended charset, dots allowed): they become part of tool ids. */
export const MCP_TOOL_NAME_RE = /^[A-Za-z0-9_.-]{1,128}$/;

/** A tool as an MCP server describes it in `tools/list`: the whole object is what gets pinned. */
export interface McpToolDefinition {
  name: string;
  title?: string;
  description?: string;
  inputSchema: Record<string, unknown>;
  outputSchema?: Record<string, unknown>;
  /** Hints only (readOnlyHint, destructiveHint, ...): shown to operators, never trusted by policy. */
  annotations?: Record<string, unknown>;
  [key: string]: unknown;
}

/** The result of `tools/call`. */
export interface McpCallResult {
  content: Array<Record<string, unknown>>;
  structuredContent?: Record<string, unknown>;
  isError?: boolean;
  [key: string]: unknown;
}

export interface McpCallOptions {
  timeoutMs: number;
  signal?: AbortSignal;
}

/** A live connection to one MCP server, whatever its transport. */
export interface McpConnection {
  listTools(opts: McpCallOptions): Promise<McpToolDefinition[]>;
  callTool(name: string, args: Record<string, unknown>, opts: McpCallOptions): Promise<McpCallResult>;
  /** Registers the handler for `notifications/tools/list_changed` (if the transport has any). */
  onToolsChanged(handler: () => void): void;
  /** Registers the handler for an unexpected end of the connection (process exit, stream error). */
  onClosed(handler: (reason: string) => void): void;
  close(): Promise<void>;
  /** The version the server reported in its handshake, if any. */
  serverVersion?(): string | undefined;
}
