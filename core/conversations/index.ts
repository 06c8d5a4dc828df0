/** Conversations, agent turns and the execution-backend port (see each module's header). */
export { ConversationService, conversationInfo, messageInfo, turnInfo, deliveryInfo, OPERATOR_CHANNEL, MAX_PENDING_MESSAGES_DEFAULT } from './service.js';
export type { Provenance } from './service.js';
export { TurnRunner, functionName, MAX_STEPS_DEFAULT, DEFAULT_SYSTEM_PROMPT } from './turns.js';
export type { OfferedTool, TurnSettings } from './turns.js';
export { BackendSource, setBackend, backendFrom, BACKEND_NAME } from './settings.js';
export type { BackendInput } from './settings.js';
export { OpenAiCompatibleBackend } from './openai.js';
export type { ExecutionBackend, Completion, CompletionRequest, ChatMessage, BackendTool } from './backend.js';
export { globMatch } from '../policy/index.js';
