/**
 * An MCP server that runs inside the sandbox: a plugin module exporting the WASM MCP ABI of mcp.run
 * servlets and hyper-mcp "v1" plugins (one ABI: both generate it from the same XTP schema), so
 * existing modules of that kind run unchanged under Tyrum's policy (docs/mcp-wasm.md):
 *
 * - `describe`: input ignored (Tyrum sends none); output a ListToolsResult, `{"tools": [Tool]}`.
 *   Early servlets returned one bare Tool (`{name, description, inputSchema}`); that is accepted too.
 * - `call`: input a CallToolRequest, `{"method": "tools/call", "params": {"name", "arguments"}}`;
 *   output a CallToolResult, `{"content": [...], "isError"?}`. A tool that fails for its arguments
 *   answers with `isError`; a request the module cannot serve (e.g. an unknown tool) fails the call
 *   through Extism's `error_set`, which the sandbox reports as `TYRUM_ERR_SANDBOX_PLUGIN_ERROR`.
 *
 * Everything the module writes is untrusted: it is decoded strictly, shape-checked and normalized
 * to the fields of the MCP types (others are dropped, so nothing unseen gets pinned), and refused
 * with `TYRUM_ERR_SANDBOX_PLUGIN_ERROR` otherwise. Sandbox failures (timeout, trap, budgets) pass
 * through with their own codes. This module does not know the sandbox: the caller binds `call` to
 * the plugin's loaded instance.
 */
import { TyrumError } from '../errors/index.js';
import { MCP_TOOL_NAME_RE, type McpCallOptions, type McpCallResult, type McpConnection, type McpToolDefinition } from './types.js';
import { raceAbort } from '../util/abort.js';

/** The exports a WASM MCP server must have; the plugin host requires them at load. */
export const WASM_MCP_EXPORTS = ['call', 'describe'] as const;

/** Most tools one WASM MCP server may list. */
export const MAX_WASM_MCP_TOOLS = 256;
/** Most content items in one result. */
export const MAX_WASM_MCP_CONTENT_ITEMS = 1024;
/** Default cap on what one export call may return (the `max_output_bytes` default of a wasm server). */
export const DEFAULT_WASM_MCP_OUTPUT_BYTES = 1024 * 1024;

/** What the caller binds: the plugin's exports, and the server's name (for messages). */
export interface WasmMcpTarget {
  /** Call an export of the plugin's loaded module (e.g. SandboxPool.call bound to its key). */
  call(exportName: string, input: Uint8Array, opts: { timeoutMs: number }): Promise<Uint8Array>;
  serverName: string;
  /** Largest output accepted from one export call, in bytes (default 1 MiB). */
  maxOutputBytes?: number;
}

type Json = Record<string, unknown>;

const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function kind(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}


/** An {@link McpConnection} to the MCP server a plugin module implements. */
export class WasmMcpConnection implements McpConnection {
  readonly #target: WasmMcpTarget;
  readonly #maxOutputBytes: number;
  #closed = false;
  /** WASM servers never notify (their tool list is fixed by the pinned module): kept, never called. */
  readonly #handlers: { toolsChanged?: () => void; closed?: (reason: string) => void } = {};

  constructor(target: WasmMcpTarget) {
    if (typeof target?.call !== 'function' || typeof target.serverName !== 'string') {
      throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'a WASM MCP connection needs a call function and a server name');
    }
    const max = target.maxOutputBytes ?? DEFAULT_WASM_MCP_OUTPUT_BYTES;
    if (!Number.isSafeInteger(max) || max < 1) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'maxOutputBytes must be a positive integer');
    this.#target = target;
    this.#maxOutputBytes = max;
  }

  /** The server's tools, from its `describe` export. */
  async listTools(opts: McpCallOptions): Promise<McpToolDefinition[]> {
    const doc = await this.#invoke('describe', EMPTY, opts);
    let list: unknown;
    if (isObject(doc) && 'tools' in doc) list = doc['tools'];
    else if (isObject(doc) && 'name' in doc && 'inputSchema' in doc) list = [doc]; // an early servlet's single Tool
    else throw this.#refuse('describe', `output must be a ListToolsResult object {"tools": [...]}, got ${kind(doc)}${isObject(doc) ? ' without "tools"' : ''}`, 'shape');
    if (!Array.isArray(list)) throw this.#refuse('describe', `output's "tools" must be an array, got ${kind(list)}`, 'shape');
    if (list.length > MAX_WASM_MCP_TOOLS) {
      throw this.#refuse('describe', `output lists ${list.length} tools, more than the ${MAX_WASM_MCP_TOOLS} allowed`, 'tool_count', { count: list.length, limit: MAX_WASM_MCP_TOOLS });
    }
    const seen = new Set<string>();
    return list.map((item, i) => {
      const tool = this.#tool(item, i);
      if (seen.has(tool.name)) throw this.#refuse('describe', `tools[${i}]: the name "${tool.name}" is listed twice`, 'shape');
      seen.add(tool.name);
      return tool;
    });
  }

  /** Call tool `name` through the `call` export. */
  async callTool(name: string, args: Record<string, unknown>, opts: McpCallOptions): Promise<McpCallResult> {
    if (typeof name !== 'string' || name.length === 0) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'the tool name must be a non-empty string');
    if (!isObject(args)) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `tool arguments must be an object, got ${kind(args)}`);
    let input: Uint8Array;
    try {
      input = encoder.encode(JSON.stringify({ method: 'tools/call', params: { name, arguments: args } }));
    } catch (e) {
      throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `tool arguments are not JSON-serializable: ${(e as Error).message}`);
    }
    const doc = await this.#invoke('call', input, opts);
    return this.#result(doc);
  }

  onToolsChanged(handler: () => void): void {
    this.#handlers.toolsChanged = handler;
  }

  onClosed(handler: (reason: string) => void): void {
    this.#handlers.closed = handler;
  }

  /** Ends this connection; the plugin's module stays loaded (its owner unloads it). */
  async close(): Promise<void> {
    this.#closed = true;
    delete this.#handlers.toolsChanged;
    delete this.#handlers.closed;
  }

  // --- internals ---

  /** Call an export and parse its output as JSON. */
  async #invoke(exportName: (typeof WASM_MCP_EXPORTS)[number], input: Uint8Array, opts: McpCallOptions): Promise<unknown> {
    if (this.#closed) throw new TyrumError('TYRUM_ERR_INVALID_STATE', `the connection to WASM MCP server "${this.#target.serverName}" is closed`);
    if (opts.signal?.aborted) throw opts.signal.reason;
    const output = await raceAbort(this.#target.call(exportName, input, { timeoutMs: opts.timeoutMs }), opts.signal);
    if (!(output instanceof Uint8Array)) throw this.#refuse(exportName, 'returned no output', 'output');
    if (output.byteLength > this.#maxOutputBytes) {
      throw this.#refuse(exportName, `output of ${output.byteLength} bytes exceeds the ${this.#maxOutputBytes}-byte limit`, 'output_size', {
        output_bytes: output.byteLength,
        limit: this.#maxOutputBytes,
      });
    }
    if (output.byteLength === 0) throw this.#refuse(exportName, 'output is empty, not JSON', 'json');
    let text: string;
    try {
      text = decoder.decode(output);
    } catch {
      throw this.#refuse(exportName, 'output is not valid UTF-8', 'json');
    }
    try {
      return JSON.parse(text) as unknown;
    } catch (e) {
      throw this.#refuse(exportName, `output is not JSON (${(e as Error).message.slice(0, 200)})`, 'json');
    }
  }

  /** One Tool of a ListToolsResult, checked and reduced to the MCP Tool fields. */
  #tool(item: unknown, i: number): McpToolDefinition {
    const at = `tools[${i}]`;
    if (!isObject(item)) throw this.#refuse('describe', `${at} must be an object, got ${kind(item)}`, 'shape');
    const name = item['name'];
    if (typeof name !== 'string' || !MCP_TOOL_NAME_RE.test(name)) {
      const shown = typeof name === 'string' ? JSON.stringify(name.slice(0, 64)) : kind(name);
      throw this.#refuse('describe', `${at}.name must be 1-128 characters of A-Z a-z 0-9 _ - . (got ${shown})`, 'shape');
    }
    const inputSchema = item['inputSchema'];
    if (!isObject(inputSchema)) throw this.#refuse('describe', `${at} ("${name}").inputSchema must be a JSON Schema object, got ${kind(inputSchema)}`, 'shape');
    const tool: McpToolDefinition = { name, inputSchema };
    for (const key of ['title', 'description'] as const) {
      const v = item[key];
      if (v === undefined) continue;
      if (typeof v !== 'string') throw this.#refuse('describe', `${at} ("${name}").${key} must be a string, got ${kind(v)}`, 'shape');
      tool[key] = v;
    }
    for (const key of ['outputSchema', 'annotations'] as const) {
      const v = item[key];
      if (v === undefined || (v === null && key === 'annotations')) continue;
      if (!isObject(v)) throw this.#refuse('describe', `${at} ("${name}").${key} must be an object, got ${kind(v)}`, 'shape');
      tool[key] = v;
    }
    return tool;
  }

  /** A CallToolResult, checked and reduced to the MCP fields. */
  #result(doc: unknown): McpCallResult {
    if (!isObject(doc)) throw this.#refuse('call', `output must be a CallToolResult object, got ${kind(doc)}`, 'shape');
    const content = doc['content'];
    if (!Array.isArray(content)) throw this.#refuse('call', `output's "content" must be an array, got ${kind(content)}`, 'shape');
    if (content.length > MAX_WASM_MCP_CONTENT_ITEMS) {
      throw this.#refuse('call', `output has ${content.length} content items, more than the ${MAX_WASM_MCP_CONTENT_ITEMS} allowed`, 'shape');
    }
    content.forEach((c: unknown, i) => {
      if (!isObject(c)) throw this.#refuse('call', `content[${i}] must be an object, got ${kind(c)}`, 'shape');
      if (typeof c['type'] !== 'string' || c['type'].length === 0) throw this.#refuse('call', `content[${i}].type must be a non-empty string`, 'shape');
      if (c['type'] === 'text' && typeof c['text'] !== 'string') throw this.#refuse('call', `content[${i}] is text content without a "text" string`, 'shape');
    });
    const result: McpCallResult = { content: content as Json[] };
    const isError = doc['isError'];
    if (isError !== undefined && isError !== null) {
      if (typeof isError !== 'boolean') throw this.#refuse('call', `output's "isError" must be a boolean, got ${kind(isError)}`, 'shape');
      if (isError) result.isError = true;
    }
    const structured = doc['structuredContent'];
    if (structured !== undefined && structured !== null) {
      if (!isObject(structured)) throw this.#refuse('call', `output's "structuredContent" must be an object, got ${kind(structured)}`, 'shape');
      result.structuredContent = structured;
    }
    return result;
  }

  #refuse(exportName: string, problem: string, check: string, extra: Json = {}): TyrumError {
    const server = this.#target.serverName;
    return new TyrumError('TYRUM_ERR_SANDBOX_PLUGIN_ERROR', `WASM MCP server "${server}": ${exportName}: ${problem}`, {
      reason: 'plugin_error',
      server,
      export: exportName,
      check,
      ...extra,
    });
  }
}
