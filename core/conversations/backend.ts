/**
 * The execution-backend port: the gateway owns conversations, tools, policy, approvals and audit;
 * a backend only turns a conversation so far (and the tools it may use) into the next assistant
 * message, which is text and/or tool calls, streamed. It never executes anything: every tool call
 * it proposes goes through the one pipeline (core/conversations/turns.ts submits it to the engine).
 */

/** One message of the context given to the backend, in Chat Completions terms. */
export type ChatMessage =
  | { role: 'system'; content: string }
  | { role: 'user'; content: string }
  | { role: 'assistant'; content: string | null; tool_calls?: BackendToolCall[] }
  | { role: 'tool'; tool_call_id: string; content: string };

/** A tool call the model proposes. `arguments` is the model's raw JSON text (it may be malformed). */
export interface BackendToolCall {
  id: string;
  /** The function name the backend was offered (see {@link BackendTool.name}). */
  name: string;
  arguments: string;
}

/** A tool offered to the model: a function name valid for the API, its description and JSON Schema. */
export interface BackendTool {
  /** ^[a-zA-Z0-9_-]{1,64}$ (the turn runner maps tool ids to such names and back). */
  name: string;
  description: string;
  parameters: Record<string, unknown>;
}

export interface TokenUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface CompletionRequest {
  messages: ChatMessage[];
  tools: BackendTool[];
  /** Aborted when the turn is cancelled or the gateway stops. */
  signal: AbortSignal;
  /** Called with each piece of assistant text as it streams in. */
  onDelta?: (text: string) => void;
}

export interface Completion {
  content: string | null;
  tool_calls: BackendToolCall[];
  /** 'stop' | 'tool_calls' | 'length' | 'content_filter' | ... as the server said, or null. */
  finish_reason: string | null;
  /** Null when the server reported none. */
  usage: TokenUsage | null;
  /** The model that answered, as the server named it. */
  model: string | null;
  /** Attempts made (1 + retries after 429/5xx/network errors). */
  attempts: number;
}

/** What every backend implements. Errors are TyrumErrors with TYRUM_ERR_BACKEND_* codes. */
export interface ExecutionBackend {
  /** e.g. "openai-compatible". */
  readonly kind: string;
  complete(request: CompletionRequest): Promise<Completion>;
}
