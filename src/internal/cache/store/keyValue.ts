/**
 * A store over any Effect `KeyValueStore`. Each entry is one value (its metadata and its data together, so
 * one `set` publishes both), beside a small metadata value that `list` and `meta` read without the data and
 * that each read rewrites with its access time. Locks live in this process: `KeyValueStore` has no atomic
 * operation another process could take a lock with.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type { KeyValueStore } from "effect/persistence"
import type { EntryDamaged, StoreError } from "../../../CacheError.ts"
import type { Entry, Meta, Primitives } from "../../../Store.ts"
import { attemptRead, checkedEntry, Damaged, joined, parseMetaText, processLocks, storeError } from "./shared.ts"

const NAME = "keyValueStore"
/** The first byte of an entry value: its layout's version. */
const LAYOUT = 1
const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** One value holding an entry: the layout byte, the metadata's length (4 bytes), the metadata, the data. */
const entryValue = (meta: Meta, data: Uint8Array): Uint8Array => {
  const metaBytes = encoder.encode(JSON.stringify(meta))
  const out = new Uint8Array(5 + metaBytes.length + data.length)
  out[0] = LAYOUT
  new DataView(out.buffer).setUint32(1, metaBytes.length, true)
  out.set(metaBytes, 5)
  out.set(data, 5 + metaBytes.length)
  return out
}

/** Reads an entry value back, or throws `Damaged`. */
const parseEntry = (value: Uint8Array, key: string): Entry => {
  if (value.length < 5 || value[0] !== LAYOUT) throw new Damaged("the value is not an effect-joblib entry")
  const metaLength = new DataView(value.buffer, value.byteOffset, value.byteLength).getUint32(1, true)
  if (5 + metaLength > value.length) throw new Damaged("the entry ends inside its metadata")
  const meta = parseMetaText(decoder.decode(value.subarray(5, 5 + metaLength)))
  return checkedEntry(meta, value.subarray(5 + metaLength), key)
}

export const make = (kv: KeyValueStore.KeyValueStore, prefix: string): Primitives => {
  const entryKey = (key: string) => `${prefix}e:${key}`
  const metaKey = (key: string) => `${prefix}m:${key}`
  const failed = (operation: string) => Effect.mapError(storeError(NAME, operation))

  const readEntry = (key: string): Effect.Effect<Entry | undefined, StoreError | EntryDamaged> =>
    Effect.flatMap(
      kv.getUint8Array(entryKey(key)).pipe(failed("get")),
      (value) => value === undefined ? Effect.succeed(undefined) : attemptRead(NAME, key, () => parseEntry(value, key))
    )

  const writeMeta = (meta: Meta, operation: string) =>
    kv.set(metaKey(meta.key), JSON.stringify(meta)).pipe(failed(operation))

  /** The metadata value, or the entry's own when a crash came between the two writes. */
  const readMeta = (key: string): Effect.Effect<Meta | undefined, StoreError> =>
    Effect.flatMap(kv.get(metaKey(key)).pipe(failed("meta")), (text) => {
      if (text !== undefined) {
        try {
          return Effect.succeed(JSON.parse(text) as Meta)
        } catch {
          // A damaged metadata value: the entry's own copy decides.
        }
      }
      return readEntry(key).pipe(
        Effect.map((entry) => entry?.meta),
        Effect.catchTag("EntryDamaged", () => Effect.succeed(undefined))
      )
    })

  const entryKeys = Effect.map(
    kv.keys.pipe(failed("list")),
    (keys) => keys.flatMap((key) => key.startsWith(`${prefix}e:`) ? [key.slice(prefix.length + 2)] : [])
  )

  return {
    name: NAME,
    get: (key) =>
      Effect.gen(function*() {
        const entry = yield* readEntry(key)
        if (entry === undefined) return undefined
        const touched = { ...entry.meta, accessed: yield* Clock.currentTimeMillis }
        // Each read costs this write: the access time LRU eviction goes by.
        yield* writeMeta(touched, "get")
        return { meta: touched, data: entry.data }
      }),
    meta: readMeta,
    put: (entry) =>
      Effect.andThen(
        kv.set(entryKey(entry.meta.key), entryValue(entry.meta, joined(entry.data))).pipe(failed("put")),
        writeMeta(entry.meta, "put")
      ),
    remove: (key) =>
      Effect.gen(function*() {
        const existed = yield* kv.has(entryKey(key)).pipe(failed("remove"))
        yield* kv.remove(entryKey(key)).pipe(failed("remove"))
        yield* kv.remove(metaKey(key)).pipe(failed("remove"))
        return existed
      }),
    list: Effect.flatMap(
      entryKeys,
      (keys) =>
        Effect.map(
          Effect.forEach(keys, readMeta, { concurrency: 16 }),
          (metas) => metas.filter((meta): meta is Meta => meta !== undefined)
        )
    ),
    clear: kv.clearPrefix(prefix).pipe(failed("clear")),
    lock: processLocks()
  }
}
