/* eslint-disable @typescript-eslint/ban-ts-comment */
// @ts-nocheck -- AssemblyScript (compiled by asc, not tsc).
//
// Extism kernel functions @extism/as-pdk 1.0.0 does not declare (see host.ts for the `module` form).
module "extism:host/env";

/** The HTTP status of the last `http_request` response. */
export declare function http_status_code(): i32;

/** The headers of the last `http_request` response as a kernel block of JSON (an object), or 0. */
export declare function http_headers(): u64;
