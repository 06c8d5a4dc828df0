/**
 * MCP servers: how one is declared (by an operator with `tyrum mcp add`, or by a plugin manifest's
 * `contributes.mcp_servers`). A declaration is only a request: every server starts quarantined
 * and its tools stay hidden until an operator approves them (see core/mcp).
 */
import { Type, type Static } from '@sinclair/typebox';
import { Strict } from './common.js';

/** Server names become part of tool ids (`mcp.<server>.<tool>`), so they carry no dots. */
export const MCP_SERVER_NAME_PATTERN = '^[a-z][a-z0-9_-]{0,47}$';
export const ENV_NAME_PATTERN = '^[A-Za-z_][A-Za-z0-9_]{0,127}$';
/** Header names per RFC 9110 token, bounded. */
const HEADER_NAME_PATTERN = "^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$";

export const McpServerName = Type.String({ pattern: MCP_SERVER_NAME_PATTERN, description: 'Server name: lowercase, no dots; tools are mcp.<server>.<tool>.' });

/** A value that may contain `{{secret:NAME}}` handles; they are resolved only when the server starts. */
const TemplatedValue = Type.String({ maxLength: 4096, description: 'Literal text; `{{secret:NAME}}` is replaced by the secret at start and never stored or logged.' });

const limits = {
  call_timeout_ms: Type.Optional(Type.Integer({ minimum: 100, maximum: 600_000, description: 'Per tool call (default 60000).' })),
  max_output_bytes: Type.Optional(Type.Integer({ minimum: 1024, maximum: 16 * 1024 * 1024, description: 'Largest tool result accepted, serialized (default 1 MiB).' })),
};

export const McpStdioSpec = Strict({
  transport: Type.Literal('stdio'),
  command: Type.String({ minLength: 1, maxLength: 1024, description: 'Executable (absolute path, or a name looked up on PATH).' }),
  args: Type.Optional(Type.Array(Type.String({ maxLength: 4096 }), { maxItems: 64 })),
  env: Type.Optional(Type.Record(Type.String({ pattern: ENV_NAME_PATTERN }), TemplatedValue, { description: 'The whole environment of the server, besides PATH, HOME and TMPDIR (nothing is inherited unless listed in inherit_env).' })),
  inherit_env: Type.Optional(Type.Array(Type.String({ pattern: ENV_NAME_PATTERN }), { maxItems: 32, uniqueItems: true, description: "Names of the gateway's own environment variables passed through (never TYRUM_*)." })),
  ...limits,
});
export type McpStdioSpec = Static<typeof McpStdioSpec>;

export const McpHttpSpec = Strict({
  transport: Type.Literal('streamable_http'),
  url: Type.String({ minLength: 8, maxLength: 2048, pattern: '^https?://', description: 'The Streamable HTTP endpoint.' }),
  headers: Type.Optional(Type.Record(Type.String({ pattern: HEADER_NAME_PATTERN }), TemplatedValue, { description: 'Sent with every request; values may use secret handles.' })),
  ...limits,
});
export type McpHttpSpec = Static<typeof McpHttpSpec>;

/** The declaring plugin's own module is the MCP server (exports `describe` and `call`, mcp.run servlet ABI). */
export const McpWasmSpec = Strict({
  transport: Type.Literal('wasm'),
  ...limits,
});
export type McpWasmSpec = Static<typeof McpWasmSpec>;

export const McpServerSpec = Type.Union([McpStdioSpec, McpHttpSpec, McpWasmSpec]);
export type McpServerSpec = Static<typeof McpServerSpec>;

/** An entry of a manifest's `contributes.mcp_servers`. */
export const McpServerContribution = Type.Union(
  [McpStdioSpec, McpHttpSpec, McpWasmSpec].map((s) =>
    Strict({ name: McpServerName, description: Type.Optional(Type.String({ maxLength: 1000 })), ...s.properties }),
  ),
);
export type McpServerContribution = Static<typeof McpServerContribution>;
