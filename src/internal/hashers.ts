/** Lazily instantiated WebAssembly hashers (hash-wasm), shared by the codec and Hashing. */
import * as Effect from "effect/Effect"
import { createXXHash128, createXXHash64, type IHasher } from "hash-wasm"

const lazy = (make: () => Promise<IHasher>) => {
  let instance: IHasher | undefined
  let pending: Promise<IHasher> | undefined
  return Effect.suspend(() => {
    if (instance !== undefined) return Effect.succeed(instance)
    pending ??= make().then((hasher) => (instance = hasher))
    return Effect.promise(() => pending!)
  })
}

/** xxh64: the dump checksum. Each use must init, update and digest in one synchronous step. */
export const xxh64: Effect.Effect<IHasher> = lazy(() => createXXHash64())

/** xxh128: content hashes and schema fingerprints. Same rule as {@link xxh64}. */
export const xxh128: Effect.Effect<IHasher> = lazy(() => createXXHash128())

/** Hashes byte parts in one synchronous pass. */
export const digestParts = (hasher: IHasher, parts: Iterable<Uint8Array>): Uint8Array => {
  hasher.init()
  for (const part of parts) hasher.update(part)
  return hasher.digest("binary")
}
