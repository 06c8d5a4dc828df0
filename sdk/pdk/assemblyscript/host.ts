/* eslint-disable @typescript-eslint/ban-ts-comment */
// @ts-nocheck -- AssemblyScript (compiled by asc, not tsc).
//
// Tyrum host API v1 (docs/host-api.md). AssemblyScript's `module "<name>";` statement sets the import
// module of every `declare` in this file: these are the imports `@external("tyrum:host/v1", "kv_get")`
// would declare, written without decorators on functions (which TypeScript tooling cannot parse).
// Addresses are Extism kernel block offsets.
module "tyrum:host/v1";

/** Log `message` (a kernel block of UTF-8) at `level`: 0 trace, 1 debug, 2 info, 3 warn, 4 error. */
export declare function log(level: i32, message: u64): void;

/** The value stored under the UTF-8 key block `key`, as a new kernel block; 0 when absent. */
export declare function kv_get(key: u64): u64;

/** Store the value block under the key block (value 0 deletes); 0 = stored, 1 = refused by the quota. */
export declare function kv_set(key: u64, value: u64): i32;
