// Shared harness for the first-party channel plugin tests (telegram, slack, webhook): load the
// built plugin into a real SandboxPool, call its inbound and outbound exports as the gateway will,
// and pass every answer through the host's own checks (core/channels/abi.ts), so a passing test
// means the host accepts what the adapter produced.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkInboundResult, checkOutboundResult, outboundHeaders, outboundUrl, type InboundResult, type OutboundInput, type OutboundRequest } from '../../core/channels/abi.js';
import { manifestExports } from '../../manifests/index.js';
import type { ChannelContribution } from '../../schemas/index.js';
import { SandboxPool } from '../../sandbox/index.js';
import { dec, enc, loadBuilt, readBuilt, ROOT, type BuiltPlugin } from './helpers.js';

export const FIXTURES = join(ROOT, 'test', 'fixtures', 'channels');

/** The raw text of test/fixtures/channels/<plugin>/<name>.json, as a platform would post it. */
export function fixture(plugin: string, name: string): string {
  return readFileSync(join(FIXTURES, plugin, `${name}.json`), 'utf8');
}

export interface ChannelHarness {
  plugin: BuiltPlugin;
  channel: ChannelContribution;
  /** The inbound export's raw answer (parsed JSON). */
  inboundRaw(body: string | object, headers?: Record<string, string>): Promise<unknown>;
  /** The inbound export's answer after the host's checkInboundResult. */
  inbound(body: string | object, headers?: Record<string, string>): Promise<InboundResult>;
  /** The outbound export's raw answer (parsed JSON). */
  outboundRaw(input: Partial<OutboundInput> & { text: string; chat_id: string }): Promise<unknown>;
  /** The outbound export's requests after the host's checkOutboundResult for this input. */
  outbound(input: Partial<OutboundInput> & { text: string; chat_id: string }): Promise<OutboundRequest[]>;
  /** The error of a call expected to fail (raw input bytes). */
  refused(exportName: string, input: string | object): Promise<Error>;
}

/** Loads plugins/<id>/build/ (built first if missing or stale) with its channel exports. */
export async function channelHarness(id: string, pool: SandboxPool): Promise<ChannelHarness> {
  const plugin = readBuilt(id);
  const channel = plugin.manifest.contributes.channels?.[0];
  if (channel === undefined) throw new Error(`${id} contributes no channel`);
  await loadBuilt(pool, id, plugin, { exports: manifestExports(plugin.manifest) });
  const call = async (exportName: string, input: unknown): Promise<unknown> => JSON.parse(dec((await pool.call(id, exportName, enc(input))).output)) as unknown;
  const fullInput = (input: Partial<OutboundInput> & { text: string; chat_id: string }): OutboundInput => ({
    thread_id: null,
    text_limit: channel.text_limit ?? 4096,
    ...input,
  });
  const h: ChannelHarness = {
    plugin,
    channel,
    inboundRaw: (body, headers = {}) => call(channel.inbound.export, { headers, body: typeof body === 'string' ? body : JSON.stringify(body), instance: 'test' }),
    inbound: async (body, headers) => checkInboundResult(await h.inboundRaw(body, headers)),
    outboundRaw: (input) => call(channel.outbound.export, fullInput(input)),
    outbound: async (input) => checkOutboundResult(channel, fullInput(input), await h.outboundRaw(input)),
    refused: (exportName, input) =>
      pool.call(id, exportName, enc(input)).then(
        () => new Error('expected the call to fail'),
        (e: unknown) => e as Error,
      ),
  };
  return h;
}

export interface Delivered {
  status: number;
  headers: Headers;
  body: unknown;
}

/**
 * Sends checked outbound requests the way the gateway does: to the instance's API base plus the
 * request's path, with the credential put in place in the path and headers, the body as JSON.
 */
export async function deliver(apiBase: string, credential: string | null, requests: OutboundRequest[], extraHeaders: (body: string) => Record<string, string> = () => ({})): Promise<Delivered[]> {
  const out: Delivered[] = [];
  for (const r of requests) {
    const body = JSON.stringify(r.body);
    const res = await fetch(outboundUrl(apiBase, r.path, credential), {
      method: r.method,
      headers: { 'content-type': 'application/json', ...outboundHeaders(r.headers, credential), ...extraHeaders(body) },
      body,
    });
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = text;
    }
    out.push({ status: res.status, headers: res.headers, body: parsed });
  }
  return out;
}
