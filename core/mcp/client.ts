/**
 * The client side of MCP for external servers: the only module that imports the SDK's `Client`
 * and its transports. Turns a resolved server spec into an {@link McpConnection}.
 *
 * Two SDK conveniences are deliberately bypassed:
 * - `Client.listTools()` compiles every tool's `outputSchema` with the SDK's own ajv as soon as
 *   it is listed; a hostile schema (catastrophic pattern, huge) would then be compiled before
 *   Tyrum screens it (TESTPLAN H2). We send `tools/list` and `tools/call` with `client.request`
 *   and validate with the screened, pinned schemas instead.
 * - `StdioClientTransport` merges HOME, USER, SHELL, ... into the child's environment; see
 *   ./stdio.ts.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema, ErrorCode, ListToolsResultSchema, McpError, ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { TyrumError } from '../errors/index.js';
import { ProcessTransport, stderrSummary } from './stdio.js';
import type { McpCallOptions, McpCallResult, McpConnection, McpToolDefinition } from './types.js';
import { packageInfo } from '../util/package-info.js';

/** A spec whose secret templates are already filled in (values exist only in memory). */
export type ResolvedSpec =
  | { transport: 'stdio'; command: string; args: string[]; env: Record<string, string>; cwd: string }
  | { transport: 'streamable_http'; url: string; headers: Record<string, string> };

export interface ConnectOptions {
  /** Largest single message accepted from the server (a tools/list or a result). */
  maxMessageBytes: number;
  /** Time allowed for the initialize handshake. */
  connectTimeoutMs: number;
}

/** Most pages of tools/list followed; more is a hostile or broken server. */
const MAX_LIST_PAGES = 16;
/** Most tools accepted from one server. */
export const MAX_TOOLS_PER_SERVER = 512;

class SdkConnection implements McpConnection {
  private changed: (() => void) | null = null;
  private closedHandler: ((reason: string) => void) | null = null;
  private closing = false;

  constructor(
    private readonly client: Client,
    private readonly transport: Transport,
    private readonly describeExit: () => string,
  ) {
    client.setNotificationHandler(ToolListChangedNotificationSchema, async () => this.changed?.());
    client.onclose = () => {
      if (!this.closing) this.closedHandler?.(this.describeExit());
    };
  }

  async listTools(opts: McpCallOptions): Promise<McpToolDefinition[]> {
    const tools: McpToolDefinition[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < MAX_LIST_PAGES; page++) {
      const res = await this.client.request({ method: 'tools/list', params: cursor ? { cursor } : {} }, ListToolsResultSchema, requestOptions(opts));
      tools.push(...(res.tools as McpToolDefinition[]));
      if (tools.length > MAX_TOOLS_PER_SERVER) throw new TyrumError('TYRUM_ERR_MCP_SERVER', `the server lists more than ${MAX_TOOLS_PER_SERVER} tools`);
      if (!res.nextCursor) return tools;
      cursor = res.nextCursor;
    }
    throw new TyrumError('TYRUM_ERR_MCP_SERVER', `the server's tools/list did not end within ${MAX_LIST_PAGES} pages`);
  }

  async callTool(name: string, args: Record<string, unknown>, opts: McpCallOptions): Promise<McpCallResult> {
    try {
      const res = await this.client.request({ method: 'tools/call', params: { name, arguments: args } }, CallToolResultSchema, requestOptions(opts));
      return res as McpCallResult;
    } catch (e) {
      throw callError(name, e, opts.timeoutMs);
    }
  }

  onToolsChanged(handler: () => void): void {
    this.changed = handler;
  }

  onClosed(handler: (reason: string) => void): void {
    this.closedHandler = handler;
  }

  serverVersion(): string | undefined {
    return this.client.getServerVersion()?.version;
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.client.close().catch(() => undefined);
    await this.transport.close().catch(() => undefined);
  }
}

/**
 * SDK errors → coded errors. A timeout or a connection lost while the call was in flight means
 * the call may or may not have taken effect: the engine treats both as cut off (retry if
 * idempotent, else outcome_unknown for an operator). A JSON-RPC error answer is a server error.
 */
function callError(name: string, e: unknown, timeoutMs: number): TyrumError {
  if (e instanceof TyrumError) return e;
  if (e instanceof McpError) {
    if (e.code === ErrorCode.RequestTimeout) return new TyrumError('TYRUM_ERR_TIMEOUT', `${name}: no result within ${timeoutMs} ms`);
    if (e.code === ErrorCode.ConnectionClosed) return new TyrumError('TYRUM_ERR_MCP_CONNECTION_LOST', `${name}: the connection to the server ended during the call`);
    return new TyrumError('TYRUM_ERR_MCP_SERVER', `${name}: the server answered with error ${e.code}: ${e.message.slice(0, 500)}`, { rpc_code: e.code });
  }
  return new TyrumError('TYRUM_ERR_MCP_SERVER', `${name}: ${(e instanceof Error ? e.message : String(e)).slice(0, 500)}`);
}

function requestOptions(opts: McpCallOptions): { timeout: number; maxTotalTimeout: number; signal?: AbortSignal } {
  return { timeout: opts.timeoutMs, maxTotalTimeout: opts.timeoutMs, ...(opts.signal ? { signal: opts.signal } : {}) };
}

/** Starts (stdio) or reaches (HTTP) a server and completes the MCP handshake. */
export async function connectMcp(spec: ResolvedSpec, o: ConnectOptions): Promise<McpConnection> {
  let transport: Transport;
  let describeExit: () => string;
  if (spec.transport === 'stdio') {
    const pt = new ProcessTransport({ command: spec.command, args: spec.args, env: spec.env, cwd: spec.cwd, maxMessageBytes: o.maxMessageBytes });
    transport = pt;
    describeExit = () => {
      if (pt.failure) return pt.failure;
      const said = stderrSummary(pt.stderrStart, pt.stderr);
      return said ? `the server process ended (stderr: ${said.slice(0, 800)})` : 'the server process ended';
    };
  } else {
    const headers = spec.headers;
    transport = new StreamableHTTPClientTransport(new URL(spec.url), {
      requestInit: { headers, redirect: 'error' },
      fetch: limitedFetch(o.maxMessageBytes),
    });
    describeExit = () => 'the HTTP session ended';
  }
  // The SDK would otherwise compile output schemas with its own ajv (see the module comment).
  const client = new Client(
    { name: 'tyrum-gateway', version: packageInfo().version },
    { capabilities: {}, jsonSchemaValidator: { getValidator: () => () => ({ valid: true, data: undefined, errorMessage: undefined }) } as never },
  );
  try {
    await client.connect(transport, { timeout: o.connectTimeoutMs });
  } catch (e) {
    await transport.close().catch(() => undefined);
    const why = e instanceof Error ? e.message : String(e);
    const extra = spec.transport === 'stdio' ? describeExit() : '';
    throw new TyrumError('TYRUM_ERR_MCP_SERVER', `could not start an MCP session: ${why.slice(0, 300)}${extra && extra !== 'the server process ended' ? `; ${extra}` : ''}`);
  }
  return new SdkConnection(client, transport, describeExit);
}

/**
 * `fetch` that fails a response whose body grows past `maxBytes` (the SDK reads bodies whole),
 * and never follows redirects (a redirect could move the headers, secrets included, elsewhere).
 */
function limitedFetch(maxBytes: number): typeof fetch {
  return async (input, init) => {
    const res = await fetch(input, { ...init, redirect: 'error' });
    if (!res.body) return res;
    let seen = 0;
    const limiter = new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, ctl) {
        seen += chunk.byteLength;
        if (seen > maxBytes) ctl.error(new TyrumError('TYRUM_ERR_MCP_SERVER', `the server's response exceeded ${maxBytes} bytes`));
        else ctl.enqueue(chunk);
      },
    });
    return new Response(res.body.pipeThrough(limiter), { status: res.status, statusText: res.statusText, headers: res.headers });
  };
}
