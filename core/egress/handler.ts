/**
 * The gateway's checked HTTP egress: the only way a plugin's `http_request` reaches a network.
 *
 * Every hop (the first request and each redirect) is checked before any connection is made:
 * the URL's scheme, host and port must match one of the plugin's effective egress rules
 * exactly, and the method must be among the rule's methods. The host is then resolved once and
 * every address it resolves to must be public (no loopback, private, link-local/metadata,
 * shared, multicast or reserved address, nor an IPv6 form wrapping one), unless the rule grants
 * that very IP literal. The connection goes to the address that was checked (a pinned lookup),
 * so a DNS answer that changes between check and connect cannot redirect it.
 *
 * Secrets are injected only into header values written `{{secret:NAME}}`, and only when the
 * plugin holds the handle and the hop's origin (scheme, host, port) is a destination both of the
 * plugin's right and of the handle itself (core/secrets/destination.ts: a bare host means https
 * on port 443 only; plain http only where a destination names `http://`). Every redirect is
 * checked again: one that would carry a secret to an origin it is not bound to is refused
 * (`secret_redirect`), never followed with the secret or silently without it. The response
 * (headers and body) is redacted before the plugin sees it, so a destination echoing a secret
 * does not hand it over.
 *
 * Egress never adds credentials of its own: the only headers it sets are Host, Content-Length,
 * `Connection: close` (no pooled sockets) and `Accept-Encoding: identity` (a compressed body
 * could not be redacted; one sent anyway is decoded, within the budget, before redaction).
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP, isIPv6, type LookupFunction } from 'node:net';
import { promisify } from 'node:util';
import { brotliDecompress, gunzip, inflate, inflateRaw } from 'node:zlib';
import type { EffectiveRights } from '../../manifests/capabilities.js';
import type { EgressHandler, EgressRequest, EgressResponse } from '../../sandbox/pool.js';
import { sandboxError, sandboxReason } from '../../sandbox/errors.js';
import { isTyrumError, type TyrumError } from '../errors/index.js';
import { canonicalHost, destinationAllows, originLabel, parseSecretRef, urlOrigin, type Redactor, type SecretOrigin, type SecretStore } from '../secrets/index.js';
import { classifyAddress } from './address.js';
import { looksLikeTemplate, parseTemplate, type TemplatePart } from './templates.js';

const MiB = 1024 * 1024;

/** Named limits of egress, with their defaults in {@link DEFAULT_EGRESS_LIMITS}. */
export interface EgressLimits {
  /** Redirects followed per request (each re-checked). Default 5. */
  maxRedirects: number;
  /** Largest request body a plugin may send. Default 1 MiB. */
  maxRequestBytes: number;
  /** Time to resolve the host, and again to establish the TCP connection. Default 10 s. */
  connectTimeoutMs: number;
  /** Longest silence on the socket while waiting for or reading the response. Default 30 s. */
  idleTimeoutMs: number;
  /** Most headers a plugin may set on one request. Default 64. */
  maxRequestHeaders: number;
  /** Most bytes of header names and values a plugin may set (after injection). Default 32 KiB. */
  maxRequestHeaderBytes: number;
}

export const DEFAULT_EGRESS_LIMITS: Readonly<EgressLimits> = Object.freeze({
  maxRedirects: 5,
  maxRequestBytes: 1 * MiB,
  connectTimeoutMs: 10_000,
  idleTimeoutMs: 30_000,
  maxRequestHeaders: 64,
  maxRequestHeaderBytes: 32 * 1024,
});

/** Why egress refused a request (`details.egress` of the capability_denied error). */
export type EgressDenial =
  | 'no_rights'
  | 'invalid_url'
  | 'scheme'
  | 'userinfo'
  | 'host_not_granted'
  | 'method_not_granted'
  | 'private_address'
  | 'invalid_header'
  | 'template_misplaced'
  | 'template_malformed'
  | 'secret_not_granted'
  | 'secret_destination'
  | 'secret_redirect'
  | 'secret_missing'
  | 'secret_value_in_request';

/** One outbound hop (or refusal), for evidence and audit. Never contains a secret value. */
export interface EgressRecord {
  pluginKey: string;
  /** The plugin's id, when its rights name it. */
  plugin_id?: string;
  /** The tenant whose sandbox made the request (absent: the default tenant's). */
  tenant?: string;
  method: string;
  /** The hop's URL, redacted. */
  url: string;
  /** The hop's origin, `scheme://host:port` (absent when the URL does not parse). */
  origin?: string;
  /** 0 for the request as made, 1.. for redirects. */
  hop: number;
  /** Response status, or null when no response was received. */
  status: number | null;
  bytes_out: number;
  /** Response body bytes as received on the wire. */
  bytes_in: number;
  /** The address connected to, when a connection was made. */
  address?: string;
  /** Names of the secret handles injected into this hop. */
  secrets?: string[];
  /** Set when the hop was refused before any connection. */
  denied?: EgressDenial;
  /** Set when the hop failed after the checks (network error, limit, timeout); redacted. */
  error?: string;
  ms: number;
}

/** The parts of a plugin's effective rights that egress uses, and whose they are (named in records and audit). */
/** The rights of the call's sandbox; `tenant`: whose secret handles it names (absent: the default tenant's). */
export type EgressRights = Pick<EffectiveRights, 'egress' | 'secrets'> & { plugin_id?: string; tenant?: string };

/** An audit entry for one egress record (written by the gateway for each record). */
export interface EgressAuditEntry {
  type: 'egress.request' | 'egress.denied';
  data: Record<string, unknown>;
}

/**
 * How a record is audited. A hop that was made is an `egress.request` with the record (its URL
 * redacted). A refused request is an `egress.denied` naming the plugin, the method, the
 * destination origin and the reason (`details.egress`) and nothing else: no path or query, no
 * header, no body, no secret.
 */
export function egressAuditEntry(r: EgressRecord): EgressAuditEntry {
  if (r.denied === undefined) return { type: 'egress.request', data: { ...r } };
  return {
    type: 'egress.denied',
    data: {
      ...(r.plugin_id !== undefined ? { plugin_id: r.plugin_id } : {}),
      plugin_key: r.pluginKey,
      method: r.method,
      origin: r.origin ?? null,
      reason: r.denied,
      hop: r.hop,
    },
  };
}

export interface EgressOptions {
  /** The plugin's current effective rights (looked up per request, so a revocation applies at once); null = none. */
  rightsFor: (pluginKey: string) => EgressRights | null;
  /** The handles: whether one is set, the origins it is bound to, its value. */
  secrets: Pick<SecretStore, 'has' | 'destinations' | 'reveal'>;
  redactor: Redactor;
  /** Resolve a host name to its addresses. Default: `dns.lookup` with `all: true`. */
  resolve?: (host: string) => Promise<string[]>;
  /** Called once per hop and per refusal. Must not throw (an exception is ignored). */
  onEgress?: (record: EgressRecord) => void;
  limits?: Partial<EgressLimits>;
  /**
   * Operator escape hatch for internal services reached by name: return true to let `host`
   * connect to the non-public `address`. Default: never. (A rule naming an IP literal needs no
   * hook: that literal is allowed as granted.)
   */
  allowPrivateAddress?: (host: string, address: string) => boolean;
  /**
   * Answer a hop that passed every check instead of the network (the plugin test harness answers
   * from recordings). The host is then neither resolved nor its addresses checked. Default: resolve,
   * check every address and connect to the checked one.
   */
  transport?: (hop: EgressHop) => Promise<EgressReply>;
}

/** A hop that passed the checks: what egress sends (besides Host, Content-Length, Connection, Accept-Encoding). */
export interface EgressHop {
  /** Without fragment. */
  url: URL;
  method: string;
  /** Lower-case names; secrets injected. */
  headers: Record<string, string>;
  body: Uint8Array | null;
  /** Most response body bytes the call may still receive (over it: budget_exceeded). */
  maxResponseBytes: number;
  signal: AbortSignal;
}

/** The answer to one hop: a redirect (`location` set, body not read) or a response whose body egress redacts. */
export interface EgressReply {
  status: number;
  headers: IncomingHttpHeaders;
  location: string | null;
  /** Decoded (no content-encoding left), not yet redacted. */
  body: Uint8Array;
  /** Body bytes as received. */
  bytesIn: number;
}

/** Headers a plugin may not set: connection management, framing and the target host are egress's job. */
const DROPPED_HEADERS = new Set([
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'upgrade',
  'te',
  'trailer',
  'expect',
  'proxy-connection',
  'proxy-authorization',
  'accept-encoding',
  'http2-settings',
]);
/** Literal credentials a plugin set itself, dropped when a redirect leaves the original origin. */
const CROSS_ORIGIN_DROPPED = new Set(['authorization', 'cookie', 'proxy-authorization']);
/** Response headers that describe the connection or the encoding we undid. */
const RESPONSE_DROPPED = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-encoding', 'content-length', 'proxy-connection', 'upgrade', 'trailer']);
const HEADER_NAME_RE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const HEADER_VALUE_RE = /^[\t\x20-\x7e\x80-\xff]*$/;
/** Statuses egress follows when they carry a Location. */
export const REDIRECT_STATUSES: ReadonlySet<number> = new Set([301, 302, 303, 307, 308]);

interface HeaderSpec {
  name: string;
  /** Literal value, or parts to fill in per hop. */
  parts: TemplatePart[];
  secrets: string[];
}

/** A granted hop: its URL and origin (host canonical as in URL.hostname, IPv6 in brackets). */
interface Target extends SecretOrigin {
  url: URL;
}

function bareHost(host: string): string {
  return host.replace(/^\[|\]$/g, '');
}

/** How records name the origin of a URL: `scheme://host:port`, or `scheme://host` for a scheme egress refuses. */
function originText(url: URL): string {
  const o = urlOrigin(url);
  return o ? originLabel(o) : `${url.protocol}//${url.hostname}`;
}

/**
 * Network failures that may pass if the call is made again (the engine retries an idempotent
 * step whose error says `retryable: true`); anything else (TLS, a name that does not exist, a
 * redirect loop, a body egress cannot decode) fails the same way every time.
 */
const TRANSIENT_ERRNO = new Set(['ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'ETIMEDOUT', 'ETIMEOUT', 'EHOSTUNREACH', 'EHOSTDOWN', 'ENETUNREACH', 'ENETDOWN', 'EPIPE', 'EAI_AGAIN']);

/** A host_error egress may recover from on a later call. */
function transient(message: string, details: Record<string, unknown>): TyrumError {
  return sandboxError('host_error', message, { ...details, retryable: true });
}

function denied(reason: EgressDenial, message: string, details: Record<string, unknown> = {}): TyrumError {
  return sandboxError('capability_denied', message, { ...details, egress: reason });
}

function latin1(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
}

async function defaultResolve(host: string): Promise<string[]> {
  const all = await dnsLookup(host, { all: true, verbatim: true });
  return all.map((a) => a.address);
}

/** Create the handler the sandbox calls for every `http_request` of a plugin. */
export function createEgressHandler(options: EgressOptions): EgressHandler {
  const limits: EgressLimits = { ...DEFAULT_EGRESS_LIMITS, ...(options.limits ?? {}) };
  const resolve = options.resolve ?? defaultResolve;
  const allowPrivate = options.allowPrivateAddress ?? (() => false);
  const { secrets, redactor } = options;

  const emit = (r: EgressRecord): void => {
    try {
      options.onEgress?.(r);
    } catch {
      // An observer must not change the outcome of a request that already happened.
    }
  };

  /** Match a URL against the rights; throws a denial naming host and method. */
  function authorize(rights: EgressRights, url: URL, method: string): Target {
    const o = urlOrigin(url);
    if (o === null) throw denied('scheme', `egress refused: scheme ${url.protocol.replace(/:$/, '')} is not allowed (http or https only)`);
    if (url.username !== '' || url.password !== '') throw denied('userinfo', `egress refused: credentials in the URL are not allowed (host ${url.hostname})`, { host: url.hostname });
    const { scheme, host, port } = o;
    const label = originLabel(o);
    const rule = rights.egress.find((r) => r.scheme === scheme && r.port === port && canonicalHost(r.host) === host);
    if (!rule) throw denied('host_not_granted', `egress to ${label} is not granted to this plugin`, { host, port, scheme, method });
    if (!rule.methods.includes(method)) throw denied('method_not_granted', `egress ${method} to ${label} is not granted (granted: ${rule.methods.join(', ')})`, { host, port, scheme, method });
    return { url, scheme, host, port };
  }

  /** Check every address of the host; returns the one to connect to. */
  async function checkAddress(t: Target): Promise<string> {
    // An IP literal only matches a rule naming that very literal (authorize compares exactly),
    // so the operator granted this address on purpose, private or not (e.g. a local service).
    if (isIP(bareHost(t.host)) !== 0) return bareHost(t.host);
    let addresses: string[];
    let timer: NodeJS.Timeout | undefined;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(Object.assign(new Error('timeout'), { code: 'ETIMEOUT' })), limits.connectTimeoutMs);
      });
      addresses = await Promise.race([resolve(t.host), timeout]);
    } catch (e) {
      const errno = (e as NodeJS.ErrnoException)?.code;
      const message = `egress could not resolve ${t.host}: ${errno ?? (e as Error)?.message ?? String(e)}`;
      throw errno !== undefined && TRANSIENT_ERRNO.has(errno) ? transient(message, { host: t.host }) : sandboxError('host_error', message, { host: t.host });
    } finally {
      clearTimeout(timer);
    }
    if (!Array.isArray(addresses) || addresses.length === 0) throw sandboxError('host_error', `egress could not resolve ${t.host}: no addresses`, { host: t.host });
    for (const a of addresses) {
      const cls = typeof a === 'string' ? classifyAddress(a) : 'invalid';
      if (cls !== null && !(cls !== 'invalid' && allowPrivate(t.host, a))) {
        // One bad address is enough: the resolver decides which one a client would use.
        throw denied('private_address', `egress to ${t.host} refused: it resolves to the ${cls.replace('_', '-')} address ${String(a)}`, { host: t.host, address: String(a), class: cls });
      }
    }
    return addresses[0]!;
  }

  /** Parse and vet the plugin's headers once; templates stay unresolved until each hop. */
  function prepareHeaders(raw: Record<string, string>): HeaderSpec[] {
    const out = new Map<string, HeaderSpec>();
    const entries = Object.entries(raw ?? {});
    if (entries.length > limits.maxRequestHeaders) throw denied('invalid_header', `egress refused: ${entries.length} headers (at most ${limits.maxRequestHeaders})`);
    for (const [name, value] of entries) {
      if (looksLikeTemplate(name)) throw denied('template_misplaced', 'egress refused: secret templates are allowed in header values only, not in header names');
      if (!HEADER_NAME_RE.test(name)) throw denied('invalid_header', `egress refused: ${JSON.stringify(name.slice(0, 60))} is not a valid header name`);
      if (typeof value !== 'string' || !HEADER_VALUE_RE.test(value)) throw denied('invalid_header', `egress refused: header ${name} has an invalid value (control or non-Latin-1 characters)`, { header: name });
      const lower = name.toLowerCase();
      if (DROPPED_HEADERS.has(lower)) continue;
      const parsed = parseTemplate(value);
      if (!parsed.ok) throw denied('template_malformed', `egress refused: header ${name}: ${parsed.problem}`, { header: name });
      out.set(lower, { name: lower, parts: parsed.parts, secrets: parsed.secrets });
    }
    return [...out.values()];
  }

  /**
   * The headers for one hop. A template whose secret may not go to the hop's origin is refused:
   * `secret_destination` on the first hop, `secret_redirect` on a redirect (a redirect never
   * carries a secret to an origin it is not bound to, nor drops it silently).
   */
  function materialize(
    specs: readonly HeaderSpec[],
    rights: EgressRights,
    t: Target,
    redirected: boolean,
    crossOrigin: boolean,
  ): { headers: Record<string, string>; injected: string[]; literal: string[] } {
    const headers: Record<string, string> = {};
    const injected = new Set<string>();
    const literal: string[] = [];
    let size = 0;
    for (const spec of specs) {
      if (spec.secrets.length === 0) {
        if (crossOrigin && CROSS_ORIGIN_DROPPED.has(spec.name)) continue;
        const v = spec.parts.map((p) => ('text' in p ? p.text : '')).join('');
        headers[spec.name] = v;
        literal.push(spec.name, v);
        size += spec.name.length + v.length;
        continue;
      }
      const values = new Map<string, string>();
      const label = originLabel(t);
      // A tenant's call names its own tenant's handles, never the host's.
      const tenant = rights.tenant ?? 'default';
      for (const name of spec.secrets) {
        const right = rights.secrets.find((s) => s.name === name);
        if (!right) throw denied('secret_not_granted', `egress refused: secret handle ${name} is not granted to this plugin`, { secret: name, host: t.host });
        if (!secrets.has(name, tenant)) throw denied('secret_missing', `egress refused: secret handle ${name} is not set on this gateway`, { secret: name });
        const mayGo = right.destinations.some((d) => destinationAllows(d, t)) && secrets.destinations(name, tenant).some((d) => destinationAllows(d, t));
        if (!mayGo) {
          if (redirected) throw denied('secret_redirect', `egress refused: a redirect to ${label} would carry secret handle ${name}, which is not bound to that origin`, { secret: name, origin: label });
          throw denied('secret_destination', `egress refused: secret handle ${name} may not be sent to ${label}`, { secret: name, origin: label });
        }
        let value: Buffer;
        try {
          value = secrets.reveal(name, tenant);
        } catch (e) {
          if (isTyrumError(e, 'TYRUM_ERR_NOT_FOUND')) throw denied('secret_missing', `egress refused: secret handle ${name} is not set on this gateway`, { secret: name });
          throw sandboxError('host_error', `egress could not read secret handle ${name}: ${isTyrumError(e) ? e.code : 'error'}`, { secret: name });
        }
        const text = value.toString('latin1'); // the exact bytes on the wire
        if (!HEADER_VALUE_RE.test(text)) throw sandboxError('host_error', `secret handle ${name} cannot be sent in a header: its value contains control characters`, { secret: name });
        values.set(name, text);
      }
      const v = spec.parts.map((p) => ('text' in p ? p.text : (values.get(p.secret) ?? ''))).join('');
      headers[spec.name] = v;
      size += spec.name.length + v.length;
      for (const n of spec.secrets) injected.add(n);
    }
    if (size > limits.maxRequestHeaderBytes) throw denied('invalid_header', `egress refused: ${size} bytes of headers (at most ${limits.maxRequestHeaderBytes})`);
    return { headers, injected: [...injected], literal };
  }

  /**
   * A plugin should never hold a secret's value; if one appears in what it sends (URL, body,
   * its own headers) to a host the handle is not bound to, refuse.
   */
  function refuseCarriedValues(t: Target, literalHeaders: readonly string[], body: Uint8Array | null): void {
    const found = new Set<string>([...redactor.findInText(t.url.href), ...literalHeaders.flatMap((h) => redactor.findInText(h))]);
    if (body) for (const n of redactor.findInBytes(body)) found.add(n);
    for (const ref of found) {
      // A value of any tenant's handle: it may go only where that handle may.
      const { name, tenant } = parseSecretRef(ref);
      if (!secrets.destinations(name, tenant).some((d) => destinationAllows(d, t))) {
        throw denied('secret_value_in_request', `egress refused: the request carries the value of secret handle ${name}, which is not bound to ${originLabel(t)}`, { secret: name, origin: originLabel(t) });
      }
    }
  }

  return async function egress(req: EgressRequest): Promise<EgressResponse> {
    const method = String(req.method).toUpperCase();
    const body0 = req.body && req.body.byteLength > 0 ? req.body : null;
    // What the record of a refusal shows: the hop being checked when it was refused.
    let hop = 0;
    let hopUrl = redactor.redactText(String(req.url));
    let hopMethod = method;
    let hopOrigin: string | undefined;
    let hopStarted = Date.now();
    let pluginId: string | undefined;
    let tenant: string | undefined;
    try {
      const rights = options.rightsFor(req.pluginKey);
      pluginId = rights?.plugin_id;
      tenant = rights?.tenant;
      let url: URL;
      try {
        url = new URL(String(req.url));
      } catch {
        throw denied('invalid_url', 'egress refused: the URL does not parse');
      }
      url.hash = '';
      hopOrigin = originText(url);
      if (!rights || rights.egress.length === 0) throw denied('no_rights', `egress to ${hopOrigin} refused: this plugin has no egress rights`);
      if (looksLikeTemplate(String(req.url)) || looksLikeTemplate(decodeURIComponentSafe(url.href))) {
        throw denied('template_misplaced', `egress refused: secret templates are allowed in header values only, not in the URL (host ${url.hostname})`, { host: url.hostname });
      }
      if (body0 && body0.byteLength > limits.maxRequestBytes) {
        throw sandboxError('budget_exceeded', `egress request body of ${body0.byteLength} bytes exceeds the ${limits.maxRequestBytes}-byte limit`, {
          budget: 'egress_request_bytes',
          limit: limits.maxRequestBytes,
        });
      }
      if (body0 && looksLikeTemplate(latin1(body0))) {
        throw denied('template_misplaced', `egress refused: secret templates are allowed in header values only, not in the body (host ${url.hostname})`, { host: url.hostname });
      }
      const specs = prepareHeaders(req.headers);
      const origin = url.origin;
      let body = body0;
      for (;;) {
        if (req.signal.aborted) throw sandboxError('host_error', 'egress aborted: the call ended');
        hopUrl = redactor.redactText(url.href);
        hopOrigin = originText(url);
        hopStarted = Date.now();
        const t = authorize(rights, url, hopMethod);
        const { headers, injected, literal } = materialize(specs, rights, t, hop > 0, url.origin !== origin);
        refuseCarriedValues(t, literal, body);
        const address = options.transport ? undefined : await checkAddress(t);
        const record = {
          pluginKey: req.pluginKey,
          ...(pluginId !== undefined ? { plugin_id: pluginId } : {}),
          ...(tenant !== undefined ? { tenant } : {}),
          method: hopMethod,
          url: hopUrl,
          origin: originLabel(t),
          hop,
          bytes_out: body?.byteLength ?? 0,
          ...(address !== undefined ? { address } : {}),
          secrets: injected,
        };
        let res: EgressReply;
        try {
          res =
            address === undefined
              ? await options.transport!({ url, method: hopMethod, headers, body, maxResponseBytes: req.maxResponseBytes, signal: req.signal })
              : await send(t, address, hopMethod, headers, body, req, limits);
        } catch (e) {
          emit({ ...record, status: null, bytes_in: 0, error: redactor.redactText((e as Error)?.message ?? String(e)), ms: Date.now() - hopStarted });
          throw e;
        }
        emit({ ...record, status: res.status, bytes_in: res.bytesIn, ms: Date.now() - hopStarted });
        if (res.location !== null) {
          if (hop >= limits.maxRedirects) throw sandboxError('host_error', `egress stopped after ${limits.maxRedirects} redirects (last from ${t.host})`, { host: t.host });
          let next: URL;
          try {
            next = new URL(res.location, url);
          } catch {
            throw sandboxError('host_error', `egress: ${t.host} answered a redirect with an invalid Location`, { host: t.host });
          }
          next.hash = '';
          // As fetch does: 303 (and 301/302 after a POST) continue as a GET without the body.
          if ((res.status === 303 && hopMethod !== 'GET' && hopMethod !== 'HEAD') || ((res.status === 301 || res.status === 302) && hopMethod === 'POST')) {
            hopMethod = 'GET';
            body = null;
          }
          url = next;
          hop += 1;
          continue;
        }
        const out = redactor.redactBytes(res.body);
        const resHeaders = redactHeaders(res.headers, redactor);
        if (hopMethod !== 'HEAD') resHeaders['content-length'] = String(out.byteLength);
        return { status: res.status, headers: resHeaders, body: out };
      }
    } catch (e) {
      const reason = isTyrumError(e) && sandboxReason(e) === 'capability_denied' ? (e.details?.['egress'] as EgressDenial | undefined) : undefined;
      if (reason !== undefined) {
        emit({ pluginKey: req.pluginKey, ...(pluginId !== undefined ? { plugin_id: pluginId } : {}), ...(tenant !== undefined ? { tenant } : {}), method: hopMethod, url: hopUrl, ...(hopOrigin !== undefined ? { origin: hopOrigin } : {}), hop, status: null, bytes_out: 0, bytes_in: 0, denied: reason, ms: Date.now() - hopStarted });
      }
      if (sandboxReason(e) !== undefined) throw e;
      throw sandboxError('host_error', `egress failed: ${redactor.redactText((e as Error)?.message ?? String(e))}`);
    }
  };
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

const gunzipAsync = promisify(gunzip);
const inflateAsync = promisify(inflate);
const inflateRawAsync = promisify(inflateRaw);
const brotliAsync = promisify(brotliDecompress);

/** Undo a content-encoding so the body can be redacted; the output is capped at `max` bytes. */
async function decodeBody(raw: Buffer, encoding: string | undefined, max: number, host: string): Promise<Buffer> {
  const enc = (encoding ?? '').trim().toLowerCase();
  if (enc === '' || enc === 'identity' || raw.length === 0) return raw;
  const opts = { maxOutputLength: Math.max(1, max) };
  try {
    if (enc === 'gzip' || enc === 'x-gzip') return await gunzipAsync(raw, opts);
    if (enc === 'br') return await brotliAsync(raw, opts);
    if (enc === 'deflate') {
      try {
        return await inflateAsync(raw, opts);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw e;
        return await inflateRawAsync(raw, opts); // some servers send raw deflate
      }
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
      throw sandboxError('budget_exceeded', `egress response from ${host} decompresses to more than the remaining ${max}-byte egress budget`, { budget: 'egress_bytes' });
    }
    throw sandboxError('host_error', `egress response from ${host} has a corrupt ${enc} body`, { host });
  }
  // Not something we can undo, hence not something we can redact: refuse rather than pass it on.
  throw sandboxError('host_error', `egress response from ${host} uses content-encoding ${JSON.stringify(enc.slice(0, 40))}, which egress cannot decode`, { host });
}

function redactHeaders(h: IncomingHttpHeaders, redactor: Redactor): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || RESPONSE_DROPPED.has(k)) continue;
    out[redactor.redactText(k)] = redactor.redactText(Array.isArray(v) ? v.join(', ') : String(v));
  }
  return out;
}

const BODYFUL = new Set(['POST', 'PUT', 'PATCH']);

/** Make one request to the pinned `address`; reads the body up to the call's remaining budget. */
function send(t: Target, address: string, method: string, headers: Record<string, string>, body: Uint8Array | null, req: EgressRequest, limits: EgressLimits): Promise<EgressReply> {
  return new Promise<EgressReply>((resolve, reject) => {
    const family = isIPv6(address) ? 6 : 4;
    // Pinned: the socket goes to the address that passed the checks, whatever DNS says now.
    const lookup: LookupFunction = (_host, opts, cb) => {
      if (opts.all) cb(null, [{ address, family }]);
      else cb(null, address, family);
    };
    const hostname = bareHost(t.host);
    const out: Record<string, string> = { ...headers, host: t.url.host, 'accept-encoding': 'identity' };
    if (body) out['content-length'] = String(body.byteLength);
    else if (BODYFUL.has(method)) out['content-length'] = '0';
    const opts: RequestOptions & { servername?: string } = {
      method,
      hostname,
      port: t.port,
      path: `${t.url.pathname}${t.url.search}`,
      headers: out,
      agent: false, // no pooled sockets: every hop connects to its own checked address
      lookup,
      signal: req.signal,
    };
    if (t.scheme === 'https' && isIP(hostname) === 0) opts.servername = hostname;
    const label = `${t.host}:${t.port}`;
    let settled = false;
    const done = (): boolean => {
      if (settled) return false;
      settled = true;
      clearTimeout(connectTimer);
      return true;
    };
    const fail = (e: TyrumError): void => {
      if (done()) reject(e);
      r.destroy();
    };
    const r = (t.scheme === 'https' ? httpsRequest : httpRequest)(opts);
    const connectTimer = setTimeout(() => fail(transient(`egress to ${label} timed out connecting after ${limits.connectTimeoutMs} ms`, { host: t.host })), limits.connectTimeoutMs);
    r.on('socket', (s) => {
      if (s.connecting) s.once('connect', () => clearTimeout(connectTimer));
      else clearTimeout(connectTimer);
    });
    r.setTimeout(limits.idleTimeoutMs, () => fail(transient(`egress to ${label}: no data for ${limits.idleTimeoutMs} ms`, { host: t.host })));
    r.on('error', (e: NodeJS.ErrnoException) => {
      if (req.signal.aborted) fail(sandboxError('host_error', 'egress aborted: the call ended'));
      else if (e.code !== undefined && TRANSIENT_ERRNO.has(e.code)) fail(transient(`egress to ${label} failed: ${e.code}`, { host: t.host }));
      else fail(sandboxError('host_error', `egress to ${label} failed: ${e.code ?? e.message}`, { host: t.host }));
    });
    r.on('response', (res: IncomingMessage) => {
      const status = res.statusCode ?? 0;
      const location = res.headers['location'];
      if (REDIRECT_STATUSES.has(status) && typeof location === 'string' && location !== '') {
        if (done()) resolve({ status, headers: res.headers, location, body: Buffer.alloc(0), bytesIn: 0 });
        res.destroy();
        r.destroy();
        return;
      }
      const chunks: Buffer[] = [];
      let received = 0;
      res.on('data', (c: Buffer) => {
        received += c.length;
        if (received > req.maxResponseBytes) {
          fail(sandboxError('budget_exceeded', `egress response from ${t.host} exceeds the remaining ${req.maxResponseBytes}-byte egress budget`, { budget: 'egress_bytes', host: t.host }));
          res.destroy();
          return;
        }
        chunks.push(c);
      });
      res.on('error', () => fail(transient(`egress to ${label}: the response was cut off`, { host: t.host })));
      res.on('close', () => {
        if (!res.complete) fail(transient(`egress to ${label}: the connection closed before the response ended`, { host: t.host }));
      });
      res.on('end', () => {
        if (settled) return;
        decodeBody(Buffer.concat(chunks), res.headers['content-encoding'], req.maxResponseBytes, t.host).then(
          (decoded) => {
            if (done()) resolve({ status, headers: res.headers, location: null, body: decoded, bytesIn: received });
          },
          (e: TyrumError) => fail(e),
        );
      });
    });
    r.end(body ? Buffer.from(body.buffer, body.byteOffset, body.byteLength) : undefined);
  });
}
