/* eslint-disable @typescript-eslint/ban-ts-comment */
// @ts-nocheck -- AssemblyScript (compiled by asc, not tsc).
//
// The Tyrum plugin development kit for AssemblyScript: `import { Tyrum } from "<this folder>";`
// See README.md in this folder.
export { HttpResponse, LogLevel, Tyrum } from "./tyrum";
export {
  JsonArray,
  JsonBool,
  JsonKind,
  JsonNumber,
  JsonObject,
  JsonParser,
  JsonString,
  JsonValue,
  JsonWriter,
  jsonError,
  kindName,
  parseJson,
  stringifyJson,
} from "./json";
