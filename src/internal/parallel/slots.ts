/**
 * Which slot takes the next batch: the least busy one. Shared by the engine, which picks among a map's
 * slots, and by a Remote worker, which picks among its threads.
 */
import * as Effect from "effect/Effect"
import type { Runner } from "./runner.ts"

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

/**
 * The slots one map dispatches to: the least busy ones when it starts (all of them when the backend's changing
 * capacity decides how many). A slot takes a batch only once it is free, so that no batch waits behind another
 * on a busy worker while one idles. A batch given a slot is reserved until its fiber starts and the runner
 * counts it.
 */
export const makeSlotPicker = (
  runner: Runner<any, any, any>,
  options: {
    readonly concurrency: number
    readonly followsCapacity: boolean
    readonly usable: () => number
  }
) => {
  const slots = Array.from({ length: runner.slots }, (_, i) => i)
    .sort((a, b) => runner.outstanding(a) - runner.outstanding(b))
    .slice(0, options.followsCapacity ? runner.slots : Math.min(options.concurrency, runner.slots))
  const reserved = Array.from({ length: runner.slots }, () => 0)
  const busy = (slot: number) => runner.outstanding(slot) + reserved[slot]!
  const acquire: Effect.Effect<number> = Effect.suspend(() => {
    const best = slots[leastBusy(Math.min(slots.length, options.usable()), (i) => busy(slots[i]!))]!
    if (busy(best) >= 1) return Effect.andThen(runner.settled, acquire)
    reserved[best]!++
    return Effect.succeed(best)
  })
  return {
    /** Waits for a slot with room for a batch, and reserves it. */
    acquire,
    /** The batch given `slot` started, or was not needed: the runner counts it from here. */
    unreserve: (slot: number) => void reserved[slot]!--
  }
}
