/** The memory store's primitives: a Map in this process. Access times and lock expiry follow the Clock. */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type { Entry, Primitives } from "../../../Store.ts"
import { joined, processLocks } from "./shared.ts"

export const make = (): Primitives => {
  const entries = new Map<string, Entry>()
  const shape: Primitives = {
    name: "memory",
    get: (key) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const entry = entries.get(key)
        if (entry === undefined) return undefined
        const touched = { meta: { ...entry.meta, accessed: now }, data: entry.data }
        entries.set(key, touched)
        return touched
      }),
    meta: (key) => Effect.sync(() => entries.get(key)?.meta),
    put: (entry) => Effect.sync(() => void entries.set(entry.meta.key, { meta: entry.meta, data: joined(entry.data) })),
    remove: (key) => Effect.sync(() => entries.delete(key)),
    list: Effect.sync(() => Array.from(entries.values(), (entry) => entry.meta)),
    clear: Effect.sync(() => entries.clear()),
    lock: processLocks()
  }
  return shape
}
