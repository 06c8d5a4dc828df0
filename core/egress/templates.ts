/**
 * Secret templates: a plugin writes `{{secret:NAME}}` in a header value and the egress handler
 * replaces it with the value, if the destination allows. Templates are accepted in header
 * values only; anywhere else they are refused so that a typo never sends the literal text
 * (or, worse, makes an author believe a secret went out when it did not).
 */
import { SECRET_NAME_PATTERN } from '../../schemas/src/manifest.js';

const TEMPLATE_RE = /\{\{secret:([^{}]*)\}\}/g;
/** Anything that looks like the start of a template, including sloppy spellings. */
const TEMPLATE_START_RE = /\{\{\s*secret\s*:/i;
const NAME_RE = new RegExp(SECRET_NAME_PATTERN);

/** One piece of a header value: literal text, or a secret to insert. */
export type TemplatePart = { text: string } | { secret: string };

/** The outcome of parsing a header value. */
export type ParsedTemplate = { ok: true; parts: TemplatePart[]; secrets: string[] } | { ok: false; problem: string };

/** True when `s` contains something that looks like a secret template. */
export function looksLikeTemplate(s: string): boolean {
  return TEMPLATE_START_RE.test(s);
}

/** Split a header value into literal text and secret references. */
export function parseTemplate(value: string): ParsedTemplate {
  const parts: TemplatePart[] = [];
  const secrets: string[] = [];
  let last = 0;
  for (const m of value.matchAll(TEMPLATE_RE)) {
    const name = m[1] ?? '';
    if (!NAME_RE.test(name)) return { ok: false, problem: `"{{secret:${name.slice(0, 70)}}}" does not name a valid secret handle (${SECRET_NAME_PATTERN})` };
    const text = value.slice(last, m.index);
    if (looksLikeTemplate(text)) return { ok: false, problem: 'a malformed secret template; write {{secret:NAME}}' };
    if (text !== '') parts.push({ text });
    parts.push({ secret: name });
    if (!secrets.includes(name)) secrets.push(name);
    last = m.index + m[0].length;
  }
  const rest = value.slice(last);
  if (looksLikeTemplate(rest)) return { ok: false, problem: 'a malformed secret template; write {{secret:NAME}}' };
  if (rest !== '') parts.push({ text: rest });
  return { ok: true, parts, secrets };
}
