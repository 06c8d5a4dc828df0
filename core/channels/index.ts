/** Chat channels: instances and inbound webhooks, the delivery outbox, the adapter ABI and webhook verification. */
export { ChannelService, channelLabel, channelInfo, senderInfo, PAIRING_CODE_TTL_MS } from './service.js';
export type { AddInstance, WebhookAnswer } from './service.js';
export { Deliverer } from './delivery.js';
export { verifyWebhook, signHmac, signSlack } from './verify.js';
export { checkInboundResult, checkOutboundResult, outboundUrl, outboundHeaders, CREDENTIAL_PLACEHOLDER } from './abi.js';
