/**
 * The access record of a store's entries, for LRU eviction: kept in memory and written in batches, each entry
 * at most once per `RESOLUTION`. Eviction needs to know which entries went unused, not every hit, and a write
 * per hit would cost more than the hit itself.
 */

/** An entry's stored access time is never more than this behind its last access. */
const RESOLUTION = 10_000

/** Known entries past this many are forgotten after a flush; their stored times are within `RESOLUTION`. */
const REMEMBERED = 100_000

export class AccessLog<K> {
  /** The last access this process saw, per entry. */
  private readonly latest = new Map<K, number>()
  /** The access time last written to the store, per entry. */
  private readonly stored = new Map<K, number>()
  private readonly dirty = new Set<K>()
  /** The access time of the last flush, and the latest access noted: the log keeps no clock of its own. */
  private flushedAt = 0
  private latestAt = 0

  private readonly write: (accesses: ReadonlyArray<readonly [K, number]>) => void

  constructor(write: (accesses: ReadonlyArray<readonly [K, number]>) => void) {
    this.write = write
  }

  /** Notes an access; writes the batch once it is big or old enough. */
  seen(key: K, at: number): void {
    this.latest.set(key, at)
    if (at > this.latestAt) this.latestAt = at
    if (at - (this.stored.get(key) ?? 0) >= RESOLUTION) this.dirty.add(key)
    if (this.dirty.size >= 256 || (this.dirty.size > 0 && at - this.flushedAt > 1000)) this.flush()
  }

  /** Notes a time the store holds already (an entry just written with it). */
  stores(key: K, at: number): void {
    this.latest.set(key, at)
    if (at > this.latestAt) this.latestAt = at
    this.stored.set(key, at)
    this.dirty.delete(key)
  }

  /** The last access this process saw, if any. */
  lastSeen(key: K): number | undefined {
    return this.latest.get(key)
  }

  forget(key: K): void {
    this.latest.delete(key)
    this.stored.delete(key)
    this.dirty.delete(key)
  }

  forgetAll(): void {
    this.latest.clear()
    this.stored.clear()
    this.dirty.clear()
  }

  /**
   * Writes the accesses not yet stored; `exact` also those within `RESOLUTION` of what the store holds, for an
   * eviction that must see the true order.
   */
  flush(exact = false): void {
    this.flushedAt = this.latestAt
    if (exact) {
      for (const [key, at] of this.latest) if (at > (this.stored.get(key) ?? 0)) this.dirty.add(key)
    }
    if (this.dirty.size === 0) return
    const batch = [...this.dirty].map((key) => [key, this.latest.get(key)!] as const)
    this.write(batch)
    for (const [key, at] of batch) this.stored.set(key, at)
    this.dirty.clear()
    if (this.latest.size > REMEMBERED) {
      this.latest.clear()
      this.stored.clear()
    }
  }
}
