/** What every store shares: error wrapping, entry checks, and telling a live process. */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Crypto from "node:crypto"
import { EntryDamaged, StoreError } from "../../../CacheError.ts"
import type { Entry, Meta, NewEntry, Primitives } from "../../../Store.ts"

/** What a store's failed operation becomes: a StoreError naming the store and the operation, with its cause. */
export const storeError = (store: string, operation: string) => (error: unknown) =>
  new StoreError({ store, operation, message: error instanceof Error ? error.message : String(error), cause: error })

/** Runs synchronous store code, turning a throw into a StoreError. */
export const attempt = <A>(store: string, operation: string, run: () => A) =>
  Effect.try({ try: run, catch: storeError(store, operation) })

/** Thrown by a store's readers when what it holds under a key cannot be read back whole. */
export class Damaged extends Error {}

/** Reads an entry with `read`, which throws `Damaged` for an entry it cannot read back whole. */
export const attemptRead = <A>(
  store: string,
  key: string,
  read: () => A
): Effect.Effect<A, StoreError | EntryDamaged> =>
  Effect.try({
    try: read,
    catch: (error) =>
      error instanceof Damaged
        ? new EntryDamaged({ store, key, message: error.message })
        : new StoreError({
          store,
          operation: "get",
          message: error instanceof Error ? error.message : String(error),
          cause: error
        })
  })

/** Parses an entry's metadata; throws `Damaged` when it is not JSON. */
export const parseMetaText = (text: string): Meta => {
  try {
    return JSON.parse(text) as Meta
  } catch {
    throw new Damaged("the entry's metadata is not readable")
  }
}

/** An entry whose metadata names its key and its data's size; throws `Damaged` otherwise. */
export const checkedEntry = (meta: Meta, data: Uint8Array, key: string): Entry => {
  if (meta.key !== key) throw new Damaged(`the entry's metadata names another key, ${String(meta.key)}`)
  if (meta.size !== data.length) {
    throw new Damaged(`the entry holds ${data.length} bytes of data where its metadata says ${meta.size}`)
  }
  return { meta, data }
}

export const isMissing = (error: unknown) => (error as NodeJS.ErrnoException).code === "ENOENT"

/** Whether a process runs on this host (one we may not signal still runs). */
export const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** The data of an entry as one buffer. */
export const joined = (data: NewEntry["data"]): Uint8Array => {
  if (data instanceof Uint8Array) return data
  if (data.length === 1) return data[0]!
  const out = new Uint8Array(data.reduce((sum, part) => sum + part.length, 0))
  let offset = 0
  for (const part of data) {
    out.set(part, offset)
    offset += part.length
  }
  return out
}

/**
 * The kernel's wall clock, which file times are on: only to compare with a file's own times (was it changed
 * within the last timestamp tick, is a blob old enough to be a crash's leftover). No decision about the
 * caller's time is made with it; access times, ages and lock expiry read the Clock.
 */
export const kernelNow = (): number => performance.timeOrigin + performance.now()

/**
 * Locks held in this process's memory, each expiring on the taker's Clock: the memory store's, and the
 * KeyValueStore store's (a KeyValueStore has no atomic operation another process could lock with).
 */
export const processLocks = (): Primitives["lock"] => {
  const locks = new Map<string, { readonly token: string; readonly expires: number }>()
  return (key, ttl) =>
    Effect.map(Clock.currentTimeMillis, (now) => {
      const held = locks.get(key)
      if (held !== undefined && held.expires > now) return undefined
      const token = Crypto.randomUUID()
      locks.set(key, { token, expires: now + Duration.toMillis(ttl) })
      return { release: Effect.sync(() => void (locks.get(key)?.token === token && locks.delete(key))) }
    })
}
