/**
 * Static screening of the regular expressions inside a plugin's JSON Schemas (`pattern`,
 * `patternProperties`). Ajv compiles them to JavaScript RegExps, whose backtracking can take
 * exponential time on a crafted input and would freeze the gateway's event loop at call time.
 * There is no linear-time engine available without native code, so patterns that can backtrack
 * catastrophically are refused at registration instead. The screen is conservative: it refuses
 * some patterns that are in fact safe, and says how to rewrite them.
 *
 * Refused:
 * - patterns longer than {@link SCHEMA_MAX_PATTERN_LENGTH} characters, or invalid with the `u` flag;
 * - nested quantifiers: a repeated group containing a variable-length repeat, e.g. `(a+)+`,
 *   `(a*)*`, `(a?){20}`, `(\w+\s?)*`;
 * - a repeated alternation whose branches can start with the same character or match nothing,
 *   e.g. `(a|a)*`, `(\w|_)+`, `(a|)*`;
 * - three or more adjacent unbounded repeats over overlapping characters, e.g. `\d*\d*\d*`
 *   (polynomial backtracking of degree 3 and up);
 * - backreferences (they make matching NP-hard).
 */
import { SCHEMA_MAX_PATTERN_LENGTH } from './limits.js';

/** A set of code points: sorted ranges, or every character. */
type CharSet = 'any' | Array<[number, number]>;

type Node =
  | { kind: 'seq'; items: Node[] }
  | { kind: 'alt'; options: Node[] }
  | { kind: 'group'; body: Node }
  | { kind: 'look' }
  | { kind: 'repeat'; body: Node; min: number; max: number }
  | { kind: 'char'; set: CharSet }
  | { kind: 'assert' }
  | { kind: 'backref' };

const DIGIT: Array<[number, number]> = [[48, 57]];
const WORD: Array<[number, number]> = [[48, 57], [65, 90], [95, 95], [97, 122]];
const SPACE: Array<[number, number]> = [[9, 13], [32, 32], [160, 160], [0x1680, 0x1680], [0x2000, 0x200a], [0x2028, 0x2029], [0x202f, 0x202f], [0x205f, 0x205f], [0x3000, 0x3000], [0xfeff, 0xfeff]];
const CONTROL_ESCAPES: Record<string, number> = { f: 12, n: 10, r: 13, t: 9, v: 11, '0': 0 };
const MAX_CODE_POINT = 0x10ffff;

/** Every code point not in `ranges`. */
function complement(ranges: Array<[number, number]>): Array<[number, number]> {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const out: Array<[number, number]> = [];
  let next = 0;
  for (const [lo, hi] of sorted) {
    if (lo > next) out.push([next, lo - 1]);
    next = Math.max(next, hi + 1);
  }
  if (next <= MAX_CODE_POINT) out.push([next, MAX_CODE_POINT]);
  return out;
}

class Unanalysable extends Error {}

/** Parse a pattern already known to compile with the `u` flag. */
function parse(src: string): Node {
  let pos = 0;
  const peek = () => src[pos];

  const escapeSet = (): CharSet | 'assert' | 'backref' => {
    // pos is just after the backslash.
    const c = src[pos++];
    if (c === undefined) throw new Unanalysable();
    if (c === 'b' || c === 'B') return 'assert';
    if (c === 'd') return DIGIT;
    if (c === 'w') return WORD;
    if (c === 's') return SPACE;
    if (c === 'D') return complement(DIGIT);
    if (c === 'W') return complement(WORD);
    if (c === 'S') return complement(SPACE);
    if (c === 'p' || c === 'P') {
      const end = src.indexOf('}', pos);
      if (end < 0) throw new Unanalysable();
      pos = end + 1;
      return 'any';
    }
    if (c >= '1' && c <= '9') {
      while (peek() !== undefined && /[0-9]/.test(peek() as string)) pos++;
      return 'backref';
    }
    if (c === 'k') {
      const end = src.indexOf('>', pos);
      if (end < 0) throw new Unanalysable();
      pos = end + 1;
      return 'backref';
    }
    if (c === 'u') {
      if (peek() === '{') {
        const end = src.indexOf('}', pos);
        if (end < 0) throw new Unanalysable();
        const cp = parseInt(src.slice(pos + 1, end), 16);
        pos = end + 1;
        return [[cp, cp]];
      }
      const cp = parseInt(src.slice(pos, pos + 4), 16);
      pos += 4;
      return [[cp, cp]];
    }
    if (c === 'x') {
      const cp = parseInt(src.slice(pos, pos + 2), 16);
      pos += 2;
      return [[cp, cp]];
    }
    if (c === 'c') {
      const letter = src.charCodeAt(pos++);
      return [[letter % 32, letter % 32]];
    }
    if (Object.hasOwn(CONTROL_ESCAPES, c)) {
      const cp = CONTROL_ESCAPES[c] as number;
      return [[cp, cp]];
    }
    const cp = c.codePointAt(0) as number;
    return [[cp, cp]];
  };

  const classSet = (): CharSet => {
    // pos is just after '['.
    let negated = false;
    if (peek() === '^') {
      negated = true;
      pos++;
    }
    const ranges: Array<[number, number]> = [];
    let any = false;
    const single = (): CharSet => {
      if (peek() === '\\') {
        pos++;
        if (peek() === 'b') {
          pos++;
          return [[8, 8]];
        }
        if (peek() === '-') {
          pos++;
          return [[45, 45]];
        }
        const s = escapeSet();
        if (s === 'assert' || s === 'backref') throw new Unanalysable();
        return s;
      }
      const cp = src.codePointAt(pos);
      if (cp === undefined) throw new Unanalysable();
      pos += cp > 0xffff ? 2 : 1;
      return [[cp, cp]];
    };
    while (peek() !== ']') {
      if (peek() === undefined) throw new Unanalysable();
      const lo = single();
      if (peek() === '-' && src[pos + 1] !== ']' && src[pos + 1] !== undefined && lo !== 'any' && lo.length === 1) {
        pos++;
        const hi = single();
        if (hi === 'any' || hi.length !== 1) throw new Unanalysable();
        ranges.push([(lo[0] as [number, number])[0], (hi[0] as [number, number])[1]]);
      } else if (lo === 'any') any = true;
      else ranges.push(...lo);
    }
    pos++;
    if (any) return 'any';
    return negated ? complement(ranges) : ranges;
  };

  const quantifier = (): { min: number; max: number } | null => {
    const c = peek();
    let q: { min: number; max: number } | null = null;
    if (c === '*') q = { min: 0, max: Infinity };
    else if (c === '+') q = { min: 1, max: Infinity };
    else if (c === '?') q = { min: 0, max: 1 };
    if (q) pos++;
    else if (c === '{') {
      const m = /^\{([0-9]+)(,([0-9]*))?\}/.exec(src.slice(pos));
      if (!m) return null;
      const min = Number(m[1]);
      const max = m[2] === undefined ? min : m[3] === '' ? Infinity : Number(m[3]);
      pos += m[0].length;
      q = { min, max };
    }
    if (q && peek() === '?') pos++;
    return q;
  };

  const disjunction = (): Node => {
    const options: Node[] = [alternative()];
    while (peek() === '|') {
      pos++;
      options.push(alternative());
    }
    return options.length === 1 ? (options[0] as Node) : { kind: 'alt', options };
  };

  const alternative = (): Node => {
    const items: Node[] = [];
    for (;;) {
      const c = peek();
      if (c === undefined || c === '|' || c === ')') break;
      let atom: Node;
      if (c === '^' || c === '$') {
        pos++;
        items.push({ kind: 'assert' });
        continue;
      }
      if (c === '(') {
        pos++;
        let look = false;
        if (src.startsWith('?:', pos)) pos += 2;
        else if (src.startsWith('?=', pos) || src.startsWith('?!', pos)) {
          pos += 2;
          look = true;
        } else if (src.startsWith('?<=', pos) || src.startsWith('?<!', pos)) {
          pos += 3;
          look = true;
        } else if (src.startsWith('?<', pos)) pos = src.indexOf('>', pos) + 1;
        const body = disjunction();
        if (peek() !== ')') throw new Unanalysable();
        pos++;
        atom = look ? { kind: 'look' } : { kind: 'group', body };
      } else if (c === '[') {
        pos++;
        atom = { kind: 'char', set: classSet() };
      } else if (c === '.') {
        pos++;
        atom = { kind: 'char', set: 'any' };
      } else if (c === '\\') {
        pos++;
        const s = escapeSet();
        atom = s === 'assert' ? { kind: 'assert' } : s === 'backref' ? { kind: 'backref' } : { kind: 'char', set: s };
      } else {
        const cp = src.codePointAt(pos) as number;
        pos += cp > 0xffff ? 2 : 1;
        atom = { kind: 'char', set: [[cp, cp]] };
      }
      const q = quantifier();
      items.push(q ? { kind: 'repeat', body: atom, ...q } : atom);
    }
    return items.length === 1 ? (items[0] as Node) : { kind: 'seq', items };
  };

  const root = disjunction();
  if (pos !== src.length) throw new Unanalysable();
  return root;
}

function overlaps(a: CharSet, b: CharSet): boolean {
  if (a === 'any') return b === 'any' || b.length > 0;
  if (b === 'any') return a.length > 0;
  return a.some(([lo, hi]) => b.some(([lo2, hi2]) => lo <= hi2 && lo2 <= hi));
}

function union(a: CharSet, b: CharSet): CharSet {
  return a === 'any' || b === 'any' ? 'any' : [...a, ...b];
}

function nullable(n: Node): boolean {
  switch (n.kind) {
    case 'seq':
      return n.items.every(nullable);
    case 'alt':
      return n.options.some(nullable);
    case 'group':
      return nullable(n.body);
    case 'repeat':
      return n.min === 0 || nullable(n.body);
    case 'char':
      return false;
    default:
      return true;
  }
}

/** Characters a match of `n` can start with. */
function first(n: Node): CharSet {
  switch (n.kind) {
    case 'seq': {
      let out: CharSet = [];
      for (const item of n.items) {
        out = union(out, first(item));
        if (!nullable(item)) break;
      }
      return out;
    }
    case 'alt':
      return n.options.reduce<CharSet>((acc, o) => union(acc, first(o)), []);
    case 'group':
    case 'repeat':
      return first(n.body);
    case 'char':
      return n.set;
    case 'backref':
      return 'any';
    default:
      return [];
  }
}

/** Every character a match of `n` can consume. */
function chars(n: Node): CharSet {
  switch (n.kind) {
    case 'seq':
      return n.items.reduce<CharSet>((acc, i) => union(acc, chars(i)), []);
    case 'alt':
      return n.options.reduce<CharSet>((acc, o) => union(acc, chars(o)), []);
    case 'group':
    case 'repeat':
      return chars(n.body);
    case 'char':
      return n.set;
    case 'backref':
      return 'any';
    default:
      return [];
  }
}

function some(n: Node, pred: (n: Node) => boolean): boolean {
  if (pred(n)) return true;
  switch (n.kind) {
    case 'seq':
      return n.items.some((i) => some(i, pred));
    case 'alt':
      return n.options.some((o) => some(o, pred));
    case 'group':
    case 'repeat':
      return some(n.body, pred);
    default:
      return false;
  }
}

const isVariableRepeat = (n: Node) => n.kind === 'repeat' && n.min !== n.max;
const isOverlappingAlt = (n: Node): boolean => {
  if (n.kind !== 'alt') return false;
  const firsts = n.options.map(first);
  for (let i = 0; i < n.options.length; i++) {
    if (nullable(n.options[i] as Node)) return true;
    for (let j = i + 1; j < n.options.length; j++) if (overlaps(firsts[i] as CharSet, firsts[j] as CharSet)) return true;
  }
  return false;
};

/** The first dangerous construct found in `n`, or null. */
function hazard(n: Node): string | null {
  if (some(n, (x) => x.kind === 'backref')) return 'uses a backreference';
  let found: string | null = null;
  some(n, (x) => {
    if (x.kind === 'repeat' && x.max > 1) {
      if (some(x.body, isVariableRepeat)) found = 'has nested quantifiers';
      else if (some(x.body, isOverlappingAlt)) found = 'repeats an alternation whose branches overlap';
    } else if (x.kind === 'seq') {
      // A run of unbounded repeats over shared characters, separated only by optional parts.
      let run = 0;
      let prev: CharSet | null = null;
      for (const item of x.items) {
        if (item.kind === 'repeat' && item.max === Infinity) {
          const cs = chars(item.body);
          run = prev !== null && overlaps(prev, cs) ? run + 1 : 1;
          prev = cs;
          if (run >= 3) found = 'has 3 or more adjacent unbounded quantifiers over overlapping characters';
        } else if (!nullable(item)) {
          run = 0;
          prev = null;
        }
      }
    }
    return found !== null;
  });
  return found;
}

/**
 * Why `pattern` is unsafe to run as a JSON Schema `pattern`, or null when it passes the screen.
 * The reason is a short phrase meant to follow the pattern's location, e.g. "has nested quantifiers".
 */
export function patternHazard(pattern: string): string | null {
  if (pattern.length > SCHEMA_MAX_PATTERN_LENGTH) return `is ${pattern.length} characters long, above the ${SCHEMA_MAX_PATTERN_LENGTH}-character limit`;
  try {
    new RegExp(pattern, 'u');
  } catch (e) {
    return `is not a valid regular expression (${(e as Error).message})`;
  }
  let tree: Node;
  try {
    tree = parse(pattern);
  } catch {
    return 'could not be analysed for catastrophic backtracking';
  }
  const h = hazard(tree);
  return h === null ? null : `${h} (catastrophic backtracking risk; rewrite without repeating a variable-length part, or bound the input with maxLength)`;
}
