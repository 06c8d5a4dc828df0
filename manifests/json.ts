/**
 * A strict JSON reader for files a third party wrote (RFC 8259, nothing more).
 *
 * Why not JSON.parse: a manifest must mean the same thing to every reader, so duplicate keys are
 * refused (JSON.parse silently keeps the last one, other parsers the first); `__proto__`,
 * `constructor` and `prototype` keys are refused (they turn into prototype pollution the moment
 * some later code merges the object); nesting is capped while parsing, so no later recursive walk
 * can run out of stack; and an error names the line, column and JSON pointer of the problem.
 * Recursion depth is bounded by `maxDepth`.
 */

/** Keys refused anywhere in a document: they alter prototypes when merged into other objects. */
export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

/** A JSON document that could not be read; `pointer` is where the problem is (JSON Pointer). */
export class JsonReadError extends Error {
  constructor(
    message: string,
    readonly line: number,
    readonly column: number,
    readonly pointer: string,
  ) {
    super(message);
    this.name = 'JsonReadError';
  }
}

export interface ReadJsonOptions {
  /** Deepest nesting of objects and arrays accepted (the root value is depth 1). */
  maxDepth: number;
}

const POINTER_SHOWN = 160;

/** RFC 6901 escaping of one reference token. */
export function pointerToken(key: string | number): string {
  return String(key).replace(/~/g, '~0').replace(/\//g, '~1');
}

/** A JSON pointer from tokens, cut to a readable length. */
export function pointer(tokens: readonly (string | number)[]): string {
  const p = tokens.map((t) => '/' + pointerToken(t)).join('');
  return p.length <= POINTER_SHOWN ? p : p.slice(0, POINTER_SHOWN) + '...';
}

const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
// eslint-disable-next-line no-control-regex -- control characters are exactly what JSON strings may not contain
const PLAIN_RUN = /[^"\\\u0000-\u001f]*/y;
const ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

/**
 * Parse `text` as strict JSON. Throws {@link JsonReadError} on a syntax error, a duplicate or
 * forbidden key, a number out of double range, or nesting deeper than `maxDepth`.
 */
export function readJson(text: string, opts: ReadJsonOptions): unknown {
  let pos = 0;
  const path: (string | number)[] = [];

  const fail = (message: string, at = pos): never => {
    let line = 1;
    let lineStart = 0;
    for (let i = 0; i < at && i < text.length; i++) {
      if (text.charCodeAt(i) === 10) {
        line++;
        lineStart = i + 1;
      }
    }
    const column = at - lineStart + 1;
    throw new JsonReadError(`${message} at line ${line}, column ${column}${path.length > 0 ? ` (${pointer(path)})` : ''}`, line, column, pointer(path));
  };

  const ws = () => {
    for (;;) {
      const c = text.charCodeAt(pos);
      if (c === 32 || c === 9 || c === 10 || c === 13) pos++;
      else return;
    }
  };

  const describe = (at: number): string => (at >= text.length ? 'end of input' : JSON.stringify(text.slice(at, at + 1)));

  const string = (): string => {
    // Caller saw the opening quote at pos.
    pos++;
    let out = '';
    for (;;) {
      PLAIN_RUN.lastIndex = pos;
      PLAIN_RUN.exec(text);
      out += text.slice(pos, PLAIN_RUN.lastIndex);
      pos = PLAIN_RUN.lastIndex;
      if (pos >= text.length) fail('unterminated string');
      const c = text[pos];
      if (c === '"') {
        pos++;
        return out;
      }
      if (c === '\\') {
        const e = text[pos + 1];
        if (e === 'u') {
          const hex = text.slice(pos + 2, pos + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail('invalid \\u escape');
          out += String.fromCharCode(parseInt(hex, 16));
          pos += 6;
        } else if (e !== undefined && Object.hasOwn(ESCAPES, e)) {
          out += ESCAPES[e];
          pos += 2;
        } else fail('invalid escape in string');
        continue;
      }
      fail('control character in string');
    }
  };

  const value = (depth: number): unknown => {
    ws();
    const c = text[pos];
    if (c === '{' || c === '[') {
      if (depth > opts.maxDepth) fail(`nesting deeper than ${opts.maxDepth} levels`);
      return c === '{' ? object(depth) : array(depth);
    }
    if (c === '"') return string();
    if (text.startsWith('true', pos)) {
      pos += 4;
      return true;
    }
    if (text.startsWith('false', pos)) {
      pos += 5;
      return false;
    }
    if (text.startsWith('null', pos)) {
      pos += 4;
      return null;
    }
    NUMBER.lastIndex = pos;
    const m = NUMBER.exec(text);
    if (m) {
      const n = Number(m[0]);
      if (!Number.isFinite(n)) fail('number out of range');
      pos += m[0].length;
      return n;
    }
    return fail(`unexpected ${describe(pos)}`);
  };

  const object = (depth: number): Record<string, unknown> => {
    pos++;
    const out: Record<string, unknown> = {};
    ws();
    if (text[pos] === '}') {
      pos++;
      return out;
    }
    for (;;) {
      ws();
      if (text[pos] !== '"') fail(`expected a quoted key, found ${describe(pos)}`);
      const keyAt = pos;
      const key = string();
      if (FORBIDDEN_KEYS.has(key)) fail(`key ${JSON.stringify(key)} is not allowed`, keyAt);
      if (Object.hasOwn(out, key)) fail(`duplicate key ${JSON.stringify(key.slice(0, 64))}`, keyAt);
      ws();
      if (text[pos] !== ':') fail(`expected ':' after a key, found ${describe(pos)}`);
      pos++;
      path.push(key);
      out[key] = value(depth + 1);
      path.pop();
      ws();
      const c = text[pos];
      pos++;
      if (c === '}') return out;
      if (c !== ',') fail(`expected ',' or '}', found ${describe(pos - 1)}`, pos - 1);
    }
  };

  const array = (depth: number): unknown[] => {
    pos++;
    const out: unknown[] = [];
    ws();
    if (text[pos] === ']') {
      pos++;
      return out;
    }
    for (;;) {
      path.push(out.length);
      out.push(value(depth + 1));
      path.pop();
      ws();
      const c = text[pos];
      pos++;
      if (c === ']') return out;
      if (c !== ',') fail(`expected ',' or ']', found ${describe(pos - 1)}`, pos - 1);
    }
  };

  // A leading byte-order mark is what some editors write; it carries no meaning.
  if (text.charCodeAt(0) === 0xfeff) pos = 1;
  const result = value(1);
  ws();
  if (pos < text.length) fail(`unexpected ${describe(pos)} after the document`);
  return result;
}

/**
 * Check that an in-memory value is plain JSON (null, boolean, finite number, string, array, plain
 * object) with no forbidden key and no nesting deeper than `maxDepth`. Returns the first problem
 * as `{ pointer, message }`, or null. Never recurses deeper than `maxDepth`, so cycles are caught.
 */
export function plainJsonProblem(value: unknown, maxDepth: number): { pointer: string; message: string } | null {
  const path: (string | number)[] = [];
  const walk = (v: unknown, depth: number): string | null => {
    if (v === null || typeof v === 'string' || typeof v === 'boolean') return null;
    if (typeof v === 'number') return Number.isFinite(v) ? null : 'is not a finite number';
    if (typeof v !== 'object') return `is a ${typeof v}, not JSON`;
    if (depth > maxDepth) return `nests deeper than ${maxDepth} levels`;
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        path.push(i);
        const p = walk(v[i], depth + 1);
        if (p) return p;
        path.pop();
      }
      return null;
    }
    const proto = Object.getPrototypeOf(v) as unknown;
    if (proto !== Object.prototype && proto !== null) return 'is not a plain object';
    for (const key of Object.keys(v)) {
      path.push(key);
      if (FORBIDDEN_KEYS.has(key)) return `key ${JSON.stringify(key)} is not allowed`;
      const p = walk((v as Record<string, unknown>)[key], depth + 1);
      if (p) return p;
      path.pop();
    }
    return null;
  };
  const message = walk(value, 1);
  return message === null ? null : { pointer: pointer(path), message };
}
