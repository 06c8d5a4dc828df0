/**
 * Frame decoding with limits, before anything else looks at a frame. Rejects binary frames,
 * oversized frames, invalid UTF-8, invalid JSON, nesting deeper than the limit, more values
 * than the limit, and the keys `__proto__`, `constructor` and `prototype` anywhere (so no later
 * merge of a payload can reach an object's prototype). Pure: tested by feeding raw bytes.
 */

export interface CodecLimits {
  maxFrameBytes: number;
  maxJsonDepth: number;
  maxJsonNodes: number;
}

export type Decoded = { ok: true; value: unknown } | { ok: false; reason: string };

const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/** Decodes one WebSocket message into a JSON value, or says why it is a protocol violation. */
export function decodeFrame(data: Uint8Array, isBinary: boolean, limits: CodecLimits): Decoded {
  if (isBinary) return { ok: false, reason: 'binary frames are not allowed' };
  if (data.byteLength > limits.maxFrameBytes) return { ok: false, reason: `frame exceeds ${limits.maxFrameBytes} bytes` };
  let text: string;
  try {
    text = utf8.decode(data);
  } catch {
    return { ok: false, reason: 'frame is not valid UTF-8' };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'frame is not valid JSON' };
  }
  const shape = checkShape(value, limits);
  return shape === null ? { ok: true, value } : { ok: false, reason: shape };
}

/** Iterative walk (no recursion, so hostile nesting cannot overflow our stack). */
function checkShape(root: unknown, limits: CodecLimits): string | null {
  const stack: Array<[unknown, number]> = [[root, 1]];
  let nodes = 0;
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (++nodes > limits.maxJsonNodes) return `frame has more than ${limits.maxJsonNodes} JSON values`;
    if (v === null || typeof v !== 'object') continue;
    if (depth > limits.maxJsonDepth) return `frame nests deeper than ${limits.maxJsonDepth}`;
    if (Array.isArray(v)) {
      for (const item of v) stack.push([item, depth + 1]);
    } else {
      for (const key of Object.keys(v)) {
        if (FORBIDDEN_KEYS.has(key)) return `forbidden key "${key}"`;
        stack.push([(v as Record<string, unknown>)[key], depth + 1]);
      }
    }
  }
  return null;
}
