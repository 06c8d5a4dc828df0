/**
 * The host API's per-plugin key-value storage, backed by the store with a byte quota (keys and
 * values counted). A write that would exceed the quota is refused, which the guest sees as 1.
 */
import type { Store } from '../store/index.js';

export interface PluginKv {
  get(key: string): Uint8Array | null;
  set(key: string, value: Uint8Array | null): boolean;
}

/** Storage for one plugin with `quotaBytes`. */
export function pluginKv(store: Store, pluginId: string, quotaBytes: number): PluginKv {
  return {
    get: (key) => store.pluginKv.get(pluginId, key) ?? null,
    set: (key, value) => {
      return store.tx(() => {
        const old = store.pluginKv.get(pluginId, key);
        if (value === null) {
          store.pluginKv.delete(pluginId, key);
          return true;
        }
        const keyBytes = Buffer.byteLength(key);
        const next = store.pluginKv.usage(pluginId) - (old ? keyBytes + old.length : 0) + keyBytes + value.length;
        if (next > quotaBytes) return false;
        store.pluginKv.set(pluginId, key, value);
        return true;
      });
    },
  };
}
