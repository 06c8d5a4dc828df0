// Extism kernel functions @extism/as-pdk 1.0.0 does not declare.
//
// AssemblyScript's `module "<name>";` statement names the import module of every `declare` in this
// file: the same import as `@external("extism:host/env", "http_status_code")`, written without a
// decorator on a function (which is not TypeScript, so the repository's TypeScript linter could not
// parse this file).
module "extism:host/env";

/** The HTTP status of the last `http_request` response. */
export declare function http_status_code(): i32;
