/**
 * Which slot takes the next batch: the least busy one. Shared by the engine, which picks among a map's
 * slots, and by a Remote worker, which picks among its threads.
 */

/**
 * The index of the least busy of slots `0 … usable - 1`. Ties go to the first from `from` on, so that a
 * caller that rotates `from` spreads its batches over slots equally idle.
 */
export const leastBusy = (usable: number, busy: (index: number) => number, from = 0): number => {
  let best = from % usable
  for (let k = 1; k < usable; k++) {
    const index = (from + k) % usable
    if (busy(index) < busy(best)) best = index
  }
  return best
}
