// text-utils: Unicode-aware text tools for Tyrum (AssemblyScript, Extism ABI).
//
// Every export reads JSON arguments from the call input, writes a JSON result as UTF-8, returns 0;
// on bad input it reports a message through Extism's error_set and returns 1. The module is pure
// computation: it imports only the Extism kernel (and AssemblyScript's env.abort, served by Tyrum).
import { isCased, isCaseIgnorable } from "~lib/util/string";
import { argsError, argsObject, fail, outputJson, stringArg } from "../../_shared/assembly/io";
import { escapedStringLength, JsonWriter } from "../../_shared/assembly/json";

/** Longest text accepted, in Unicode code points (the tools' input schemas say the same). */
const MAX_TEXT_CHARS: i32 = 1048576;
/**
 * UTF-16 units case-mapped at a time. AssemblyScript's toUpperCase allocates 3x its input before
 * shrinking; working in slices keeps a 1 MiB text well inside the default 16 MiB memory cap.
 */
const SLICE_UNITS: i32 = 16384;

// Memory: a plugin instance serves many calls, and a call's garbage is collected incrementally as the
// next allocations go. Each export starts with a full collection, and collects again once the input
// bytes are parsed (they are dead then), so a call's peak is about its input or its output, not both
// plus the previous call's leftovers.

// --- word_count ---------------------------------------------------------------------------------

/** {text} -> {words, chars, lines} */
export function word_count(): i32 {
  __collect();
  const args = argsObject(["text"]);
  __collect();
  if (args === null) return fail(argsError);
  const text = stringArg(args, "text");
  if (text === null) return fail(argsError);
  const chars = codePointCount(text);
  if (chars > MAX_TEXT_CHARS) return fail(tooLong(chars));

  const w = new JsonWriter(64);
  w.raw('{"words":').int(countWords(text)).raw(',"chars":').int(chars).raw(',"lines":').int(countLines(text)).raw("}");
  return outputJson(w);
}

// --- transform ----------------------------------------------------------------------------------

/** {text, op: "upper" | "lower" | "reverse" | "slug"} -> {text} */
export function transform(): i32 {
  __collect();
  const args = argsObject(["text", "op"]);
  __collect();
  if (args === null) return fail(argsError);
  const text = stringArg(args, "text");
  if (text === null) return fail(argsError);
  const op = stringArg(args, "op");
  if (op === null) return fail(argsError);
  if (op != "upper" && op != "lower" && op != "reverse" && op != "slug") {
    return fail('invalid input: "op" must be one of "upper", "lower", "reverse", "slug"');
  }
  const chars = codePointCount(text);
  if (chars > MAX_TEXT_CHARS) return fail(tooLong(chars));

  // Sized for the usual case, an output as long as the input (case mapping rarely changes lengths).
  const w = new JsonWriter(escapedStringLength(text) + 16);
  w.raw('{"text":').quote();
  if (op == "upper") writeUpper(w, text);
  else if (op == "lower") writeLower(w, text);
  else if (op == "reverse") writeReversed(w, text);
  else writeSlug(w, text);
  w.quote().raw("}");
  return outputJson(w);
}

function tooLong(chars: i32): string {
  return 'invalid input: "text" has ' + chars.toString() + " characters, more than the " + MAX_TEXT_CHARS.toString() + " allowed";
}

// --- Unicode helpers ----------------------------------------------------------------------------

@inline function isHigh(c: i32): bool {
  return c >= 0xd800 && c <= 0xdbff;
}
@inline function isLow(c: i32): bool {
  return c >= 0xdc00 && c <= 0xdfff;
}

/** The code point at unit `i` of `s` (a lone surrogate stands for itself). */
function codePointAt(s: string, i: i32): i32 {
  const c = s.charCodeAt(i);
  if (isHigh(c) && i + 1 < s.length) {
    const d = s.charCodeAt(i + 1);
    if (isLow(d)) return 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
  }
  return c;
}

@inline function unitsOf(cp: i32): i32 {
  return cp >= 0x10000 ? 2 : 1;
}

/** The end of the slice of `s` starting at `i`: at most SLICE_UNITS, never inside a surrogate pair. */
function sliceEnd(s: string, i: i32): i32 {
  let j = min(i + SLICE_UNITS, s.length);
  if (j < s.length && isHigh(s.charCodeAt(j - 1)) && isLow(s.charCodeAt(j))) j--;
  return j;
}

@inline function writeUnits(w: JsonWriter, s: string): void {
  w.units(changetype<usize>(s), s.length);
}

function codePointCount(s: string): i32 {
  const n = s.length;
  let count = 0;
  for (let i = 0; i < n; i++) {
    if (isHigh(s.charCodeAt(i)) && i + 1 < n && isLow(s.charCodeAt(i + 1))) i++;
    count++;
  }
  return count;
}

/** Unicode White_Space. */
function isSpace(cp: i32): bool {
  if (cp <= 0x20) return cp === 0x20 || (cp >= 0x09 && cp <= 0x0d);
  if (cp < 0x85) return false;
  return (
    cp === 0x85 ||
    cp === 0xa0 ||
    cp === 0x1680 ||
    (cp >= 0x2000 && cp <= 0x200a) ||
    cp === 0x2028 ||
    cp === 0x2029 ||
    cp === 0x202f ||
    cp === 0x205f ||
    cp === 0x3000
  );
}

/** Scripts written without spaces between words, where each character counts as a word: Han, kana. */
function isCjkWordChar(cp: i32): bool {
  return (
    (cp >= 0x3040 && cp <= 0x30ff) || // Hiragana, Katakana
    (cp >= 0x31f0 && cp <= 0x31ff) || // Katakana phonetic extensions
    (cp >= 0x3400 && cp <= 0x4dbf) || // CJK extension A
    (cp >= 0x4e00 && cp <= 0x9fff) || // CJK unified ideographs
    (cp >= 0xf900 && cp <= 0xfaff) || // CJK compatibility ideographs
    (cp >= 0xff66 && cp <= 0xff9f) || // half-width Katakana
    (cp >= 0x20000 && cp <= 0x3134f) // CJK extensions B-G, compatibility supplement
  );
}

/** CJK and full-width punctuation: separates words, is not one. */
function isCjkPunctuation(cp: i32): bool {
  return (
    (cp >= 0x3001 && cp <= 0x303f) ||
    (cp >= 0xff01 && cp <= 0xff0f) ||
    (cp >= 0xff1a && cp <= 0xff20) ||
    (cp >= 0xff3b && cp <= 0xff40) ||
    (cp >= 0xff5b && cp <= 0xff65)
  );
}

/**
 * Words: runs of characters between white space; in CJK text (no spaces between words) every Han or
 * kana character counts as one word, as word processors count it, and CJK punctuation separates.
 */
function countWords(s: string): i32 {
  const n = s.length;
  let words = 0;
  let inWord = false;
  for (let i = 0; i < n; ) {
    const cp = codePointAt(s, i);
    i += unitsOf(cp);
    if (isSpace(cp) || isCjkPunctuation(cp)) {
      inWord = false;
    } else if (isCjkWordChar(cp)) {
      words++;
      inWord = false;
    } else if (!inWord) {
      words++;
      inWord = true;
    }
  }
  return words;
}

/**
 * Lines as an editor shows them, not counting an empty last line after a final line break: "" has 0,
 * "a" 1, "a\n" 1, "a\nb" 2. Line breaks: LF, CR, CRLF (one break), NEL, LS, PS.
 */
function countLines(s: string): i32 {
  const n = s.length;
  if (n === 0) return 0;
  let breaks = 0;
  let endsWithBreak = false;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x0d) {
      if (i + 1 < n && s.charCodeAt(i + 1) === 0x0a) i++;
      breaks++;
      endsWithBreak = true;
    } else if (c === 0x0a || c === 0x85 || c === 0x2028 || c === 0x2029) {
      breaks++;
      endsWithBreak = true;
    } else {
      endsWithBreak = false;
    }
  }
  return endsWithBreak ? breaks : breaks + 1;
}

/** Marks and joiners that belong to the character before them. */
function isExtend(cp: i32): bool {
  return (
    (cp >= 0x0300 && cp <= 0x036f) || // combining diacritical marks
    (cp >= 0x0483 && cp <= 0x0489) || // Cyrillic
    (cp >= 0x0591 && cp <= 0x05c7 && cp !== 0x05be && cp !== 0x05c0 && cp !== 0x05c3 && cp !== 0x05c6) || // Hebrew points
    (cp >= 0x0610 && cp <= 0x061a) || // Arabic
    (cp >= 0x064b && cp <= 0x065f) ||
    cp === 0x0670 ||
    (cp >= 0x06d6 && cp <= 0x06dc) ||
    (cp >= 0x06df && cp <= 0x06e4) ||
    (cp >= 0x0900 && cp <= 0x0903) || // Devanagari signs and vowel marks
    (cp >= 0x093a && cp <= 0x094f && cp !== 0x093d) ||
    (cp >= 0x0951 && cp <= 0x0957) ||
    (cp >= 0x0962 && cp <= 0x0963) ||
    cp === 0x0e31 || // Thai
    (cp >= 0x0e34 && cp <= 0x0e3a) ||
    (cp >= 0x0e47 && cp <= 0x0e4e) ||
    (cp >= 0x1ab0 && cp <= 0x1aff) || // combining marks extended
    (cp >= 0x1dc0 && cp <= 0x1dff) || // combining marks supplement
    cp === 0x200c || // zero-width non-joiner
    cp === 0x200d || // zero-width joiner
    (cp >= 0x20d0 && cp <= 0x20ff) || // combining marks for symbols (incl. keycap)
    (cp >= 0x3099 && cp <= 0x309a) || // kana voiced sound marks
    (cp >= 0xfe00 && cp <= 0xfe0f) || // variation selectors
    (cp >= 0xfe20 && cp <= 0xfe2f) || // combining half marks
    (cp >= 0x1f3fb && cp <= 0x1f3ff) || // emoji skin tone modifiers
    (cp >= 0xe0020 && cp <= 0xe007f) || // tags (subdivision flags)
    (cp >= 0xe0100 && cp <= 0xe01ef) // variation selectors supplement
  );
}

@inline function isRegionalIndicator(cp: i32): bool {
  return cp >= 0x1f1e6 && cp <= 0x1f1ff;
}

/**
 * Reverse by user-perceived characters, approximately: combining marks stay on their base letter,
 * ZWJ emoji sequences, skin tones, keycaps and flags stay whole, CRLF stays CRLF. (Full UAX #29
 * grapheme segmentation needs Unicode property tables this small module does not carry.)
 */
function writeReversed(w: JsonWriter, s: string): void {
  const n = s.length;
  if (n === 0) return;
  // Pass 1, forward: mark the unit where each cluster starts (a bit per unit, no copy of the text).
  const starts = new Uint8Array((n >> 3) + 1);
  let clusterStart = 0;
  let prev = -1; // previous code point in the cluster
  let riCount = 0; // regional indicators in the current cluster
  for (let i = 0; i < n; ) {
    const cp = codePointAt(s, i);
    let join = false;
    if (i > clusterStart) {
      if (isExtend(cp)) join = true;
      else if (prev === 0x200d) join = true; // the character after a ZWJ
      else if (prev === 0x0d && cp === 0x0a) join = true;
      else if (isRegionalIndicator(cp) && isRegionalIndicator(prev) && (riCount & 1) === 1) join = true;
    }
    if (!join) {
      clusterStart = i;
      riCount = 0;
      const bit: i32 = 1 << (i & 7);
      starts[i >> 3] = <u8>(<i32>starts[i >> 3] | bit);
    }
    if (isRegionalIndicator(cp)) riCount++;
    prev = cp;
    i += unitsOf(cp);
  }
  // Pass 2, backward: write the clusters last to first.
  const src = changetype<usize>(s);
  let end = n;
  for (let i = n - 1; i >= 0; i--) {
    if (((<i32>starts[i >> 3] >> (i & 7)) & 1) === 0) continue;
    w.units(src + (<usize>i << 1), end - i);
    end = i;
  }
}

// ASCII letters for Latin-1 (U+00C0-U+00FF) and Latin Extended-A (U+0100-U+017F), lower-cased first.
// Markers: A = "ae", T = "th", S = "ss", O = "oe", I = "ij", "-" = a separator (the signs × and ÷).
const FOLD_LATIN1 = "aaaaaaAceeeeiiiidnooooo-ouuuuyTSaaaaaaAceeeeiiiidnooooo-ouuuuyTy";
const FOLD_LATIN_EXT_A = "aaaaaaccccccccddddeeeeeeeeeegggggggghhhhiiiiiiiiiiIIjjkkkllllllllllnnnnnnnnnooooooOOrrrrrrssssssssttttttuuuuuuuuuuuuwwyyyzzzzzzs";

/**
 * A URL slug: lower case, Latin letters folded to ASCII ("Ça déjà" -> "ca-deja", "ß" -> "ss"),
 * apostrophes dropped, every other run of non-alphanumerics one "-", none at the ends. Characters with
 * no ASCII form (CJK, emoji, other scripts) are separators, so a slug can be empty.
 */
function writeSlug(w: JsonWriter, s: string): void {
  let written = false;
  let pendingDash = false;
  for (let start = 0; start < s.length; ) {
    const end = sliceEnd(s, start);
    const lower = s.substring(start, end).toLowerCase();
    start = end;
    const n = lower.length;
    for (let i = 0; i < n; ) {
      const cp = codePointAt(lower, i);
      i += unitsOf(cp);
      let a = -1; // ASCII letter or digit to append
      let b = -1; // second letter of a ligature
      if ((cp >= 0x61 && cp <= 0x7a) || (cp >= 0x30 && cp <= 0x39)) {
        a = cp;
      } else if (cp === 0x27 || cp === 0x2019 || (cp >= 0x0300 && cp <= 0x036f)) {
        continue; // apostrophes and combining marks vanish: "don't" -> "dont", "e\u0301" -> "e"
      } else if (cp >= 0xc0 && cp <= 0x17f) {
        const f = cp < 0x100 ? FOLD_LATIN1.charCodeAt(cp - 0xc0) : FOLD_LATIN_EXT_A.charCodeAt(cp - 0x100);
        if (f === 0x41) {
          a = 0x61;
          b = 0x65; // ae
        } else if (f === 0x54) {
          a = 0x74;
          b = 0x68; // th
        } else if (f === 0x53) {
          a = 0x73;
          b = 0x73; // ss
        } else if (f === 0x4f) {
          a = 0x6f;
          b = 0x65; // oe
        } else if (f === 0x49) {
          a = 0x69;
          b = 0x6a; // ij
        } else if (f !== 0x2d) {
          a = f;
        }
      }
      if (a < 0) {
        pendingDash = written;
        continue;
      }
      if (pendingDash) {
        w.byte(0x2d);
        pendingDash = false;
      }
      w.byte(a);
      if (b >= 0) w.byte(b);
      written = true;
    }
  }
}

/** Full Unicode upper case (ß -> SS, ŉ -> ʼN), a slice at a time (no mapping depends on context). */
function writeUpper(w: JsonWriter, s: string): void {
  for (let start = 0; start < s.length; ) {
    const end = sliceEnd(s, start);
    writeUnits(w, s.substring(start, end).toUpperCase());
    start = end;
  }
}

/**
 * Full Unicode lower case, a slice at a time. Capital sigma is the one context-dependent mapping:
 * it becomes final "ς" at the end of a word, else "σ". It is decided here on the whole text, not by
 * AssemblyScript's toLowerCase, which looks only 30 units around and misreads any other word there.
 */
function writeLower(w: JsonWriter, s: string): void {
  for (let start = 0; start < s.length; ) {
    const end = sliceEnd(s, start);
    let from = start;
    for (let i = start; i < end; i++) {
      if (s.charCodeAt(i) !== 0x03a3) continue;
      if (i > from) writeUnits(w, s.substring(from, i).toLowerCase());
      writeUnits(w, isFinalSigma(s, i) ? "ς" : "σ");
      from = i + 1;
    }
    if (end > from) writeUnits(w, s.substring(from, end).toLowerCase());
    start = end;
  }
}

/** Unicode's Final_Sigma condition for the capital sigma at `pos`: a cased letter before, none after. */
function isFinalSigma(s: string, pos: i32): bool {
  let i = pos;
  let casedBefore = false;
  while (i > 0) {
    let j = i - 1;
    if (j > 0 && isLow(s.charCodeAt(j)) && isHigh(s.charCodeAt(j - 1))) j--;
    const cp = codePointAt(s, j);
    i = j;
    if (isCaseIgnorable(<u32>cp)) continue;
    casedBefore = isCased(<u32>cp);
    break;
  }
  if (!casedBefore) return false;
  for (let k = pos + 1; k < s.length; ) {
    const cp = codePointAt(s, k);
    k += unitsOf(cp);
    if (isCaseIgnorable(<u32>cp)) continue;
    return !isCased(<u32>cp);
  }
  return true;
}
