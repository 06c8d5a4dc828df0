// The JSON runtime of the first-party plugins is the AssemblyScript PDK's (one source, shared with
// plugins built by authors and with the helpers `tyrum plugin types` generates): a strict RFC 8259
// parser over UTF-8 bytes and a writer that produces UTF-8 bytes directly.
export * from "../../../sdk/pdk/assemblyscript/json";
