/**
 * Every Redis key and channel of a queue that is not BullMQ's own, in one place: drivers, workers and the
 * monitor share them, and anything else on the server can tell them apart by the prefix.
 */
import * as Crypto from "node:crypto"

/** Keys a driver or worker leaves behind (after a crash) expire after a day. */
export const DAY = 86_400_000

/** The keys of queue `queue`. */
export const keysOf = (queue: string) => {
  const prefix = `effect-joblib:${queue}:`
  return {
    /** The set naming the workers connected. */
    workers: `${prefix}workers`,
    /** A worker's registry entry, renewed while it runs. */
    worker: (id: string) => `${prefix}worker:${id}`,
    /** A new driver's own reply list. */
    newReplyList: () => `${prefix}reply:${Crypto.randomUUID()}`,
    /** A big batch's bytes, stored beside its job. */
    batch: (id: string) => `${prefix}in:${id}`,
    /** A new map's prefix for the buffers it sends once. */
    newBufferPrefix: () => `${prefix}buf:${Crypto.randomUUID()}:`,
    /** The channel on which drivers cancel batches. */
    cancel: `${prefix}cancel`,
    /** The channel on which drivers release a map's buffers. */
    release: `${prefix}release`,
    /** The completion counters of one second. */
    done: (second: number) => `${prefix}done:${second}`
  } as const
}

export type Keys = ReturnType<typeof keysOf>
