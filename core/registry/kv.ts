/**
 * The host API's per-plugin key-value storage, backed by the store with a byte quota (keys and
 * values counted). A write that would exceed the quota is refused, which the guest sees as 1.
 */
import type { Store } from '../store/index.js';

export interface PluginKv {
  get(key: string): Uint8Array | null;
  set(key: string, value: Uint8Array | null): boolean;
}

/**
 * Storage for one plugin with `quotaBytes`, in `tenant`'s namespace (the default tenant's unless named). A write is applied at once (later reads in the call
 * see it) as a deferred unit of the store's group commit, and the guest is answered without
 * waiting for the fsync: the write commits in the same group as the end of the step that made
 * it, or an earlier one, so nothing built on it is acknowledged before it is durable, and a
 * call's writes cost no commit of their own. A commit that fails takes the step's end with it (the call is then
 * not answered as done).
 */
export function pluginKv(store: Store, pluginId: string, quotaBytes: number, tenant = 'default'): PluginKv {
  return {
    get: (key) => store.pluginKv.get(pluginId, key, tenant) ?? null,
    set: (key, value) => {
      const r: { outcome: { ok: true; stored: boolean } | { ok: false; error: unknown } } = { outcome: { ok: false, error: new Error('kv write did not run') } };
      store
        .commit(() => {
          try {
            r.outcome = { ok: true, stored: write(store, pluginId, quotaBytes, key, value, tenant) };
          } catch (error) {
            r.outcome = { ok: false, error };
            throw error;
          }
        }, { deferred: true })
        // Reported below (the unit's own error) or with the step's end (a failed COMMIT).
        .catch(() => undefined);
      if (!r.outcome.ok) throw r.outcome.error;
      return r.outcome.stored;
    },
  };
}

function write(store: Store, pluginId: string, quotaBytes: number, key: string, value: Uint8Array | null, tenant: string): boolean {
  const old = store.pluginKv.get(pluginId, key, tenant);
  if (value === null) {
    store.pluginKv.delete(pluginId, key, tenant);
    return true;
  }
  const keyBytes = Buffer.byteLength(key);
  const next = store.pluginKv.usage(pluginId, tenant) - (old ? keyBytes + old.length : 0) + keyBytes + value.length;
  if (next > quotaBytes) return false;
  store.pluginKv.set(pluginId, key, value, tenant);
  return true;
}
