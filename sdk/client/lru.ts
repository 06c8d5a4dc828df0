/**
 * A tiny least-recently-used map. Dedupe state must stay bounded however long a client runs,
 * both in entries and, when values can be large, in total weight (e.g. bytes).
 */
export class LruMap<K, V> {
  readonly #limit: number;
  readonly #maxWeight: number;
  readonly #weigh: (value: V) => number;
  // Map iterates in insertion order, so re-inserting on access makes the first key the oldest.
  readonly #map = new Map<K, { value: V; weight: number }>();
  #weight = 0;

  constructor(limit: number, options: { maxWeight?: number; weigh?: (value: V) => number } = {}) {
    if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError('LruMap limit must be a positive integer');
    this.#limit = limit;
    this.#maxWeight = options.maxWeight ?? Number.POSITIVE_INFINITY;
    this.#weigh = options.weigh ?? (() => 0);
  }

  get size(): number {
    return this.#map.size;
  }

  /** The value for `key`, marking it recently used. */
  get(key: K): V | undefined {
    const entry = this.#map.get(key);
    if (!entry) return undefined;
    this.#map.delete(key);
    this.#map.set(key, entry);
    return entry.value;
  }

  has(key: K): boolean {
    return this.#map.has(key);
  }

  /**
   * Insert or refresh `key`, evicting least recently used entries beyond the limits. Returns
   * false (and stores nothing) when the value alone outweighs `maxWeight`.
   */
  set(key: K, value: V): boolean {
    this.delete(key);
    const weight = this.#weigh(value);
    if (weight > this.#maxWeight) return false;
    this.#map.set(key, { value, weight });
    this.#weight += weight;
    while (this.#map.size > this.#limit || this.#weight > this.#maxWeight) {
      const oldest = this.#map.keys().next();
      if (oldest.done) break;
      this.delete(oldest.value);
    }
    return true;
  }

  delete(key: K): void {
    const entry = this.#map.get(key);
    if (!entry) return;
    this.#map.delete(key);
    this.#weight -= entry.weight;
  }
}
