/**
 * Typed access to the WebAssembly JS API. The project's `lib` (ES2022, no DOM) and @types/node 20
 * do not declare the `WebAssembly` global, so the few members the sandbox uses are typed here
 * instead of widening the whole program's lib.
 */
declare const moduleBrand: unique symbol;

/** A compiled module (`WebAssembly.Module`): structured-clonable to worker threads. */
export interface WasmModule {
  readonly [moduleBrand]: true;
}

/** `WebAssembly.Memory`. */
export interface WasmMemory {
  readonly buffer: ArrayBuffer;
}

interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  compile(bytes: Uint8Array): Promise<WasmModule>;
  Memory: abstract new (...args: never[]) => WasmMemory;
}

/** The global `WebAssembly` object. */
export const Wasm: WasmApi = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
