/**
 * Who was seen, written off the handshake path. A completed handshake notes its device here and
 * an authenticated upgrade notes its token's last use in the TokenService; neither writes. The
 * gateway calls `flush()` every {@link PRESENCE_FLUSH_MS} and at close, which writes everything
 * noted since in one transaction (one fsync however many connections came in).
 *
 * Nothing here is an input to a security decision: device rows and `last_used_at` are an
 * inventory (`token list`); the durable, hash-chained record of every connection is its
 * `connection.opened` audit entry, which carries the device id. A crash loses at most the last
 * interval's sightings.
 */
import type { Store, DeviceRecord } from '../store/index.js';
import type { TokenService } from '../auth/tokens.js';

/** How often noted sightings are written. */
export const PRESENCE_FLUSH_MS = 1_000;
/** A known device seen again unchanged within this long of its recorded sighting is not noted. */
export const DEVICE_SEEN_RESOLUTION_MS = 60_000;

export type DeviceSighting = Omit<DeviceRecord, 'first_seen_at' | 'last_seen_at'>;

export class Presence {
  private readonly devices = new Map<string, { device: DeviceSighting; at: number }>();

  constructor(
    private readonly store: Store,
    private readonly tokens: Pick<TokenService, 'flushLastUsed'>,
    private readonly now: () => number = Date.now,
  ) {}

  /** Notes a device that completed a handshake (reads the store, never writes it). */
  device(d: DeviceSighting): void {
    const now = this.now();
    if (!this.devices.has(d.device_id)) {
      const known = this.store.devices.get(d.device_id);
      const unchanged = known && known.role === d.role && known.label === d.label && known.platform === d.platform && known.version === d.version;
      if (unchanged && now - known.last_seen_at < DEVICE_SEEN_RESOLUTION_MS) return;
    }
    this.devices.set(d.device_id, { device: d, at: now });
  }

  /** Sightings noted and not yet written. */
  get pending(): number {
    return this.devices.size;
  }

  /** Writes the noted devices and the tokens' noted last uses in one transaction. */
  flush(): void {
    const noted = [...this.devices.values()];
    this.devices.clear();
    if (noted.length === 0) return this.tokens.flushLastUsed();
    this.store.tx(() => {
      for (const { device, at } of noted) this.store.devices.upsert(device, at);
      this.tokens.flushLastUsed();
    });
  }
}
