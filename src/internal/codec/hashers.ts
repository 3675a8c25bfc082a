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

/** A spare xxh64 for checksums computed in steps across awaits, which cannot share {@link xxh64}. */
let spare: IHasher | undefined

/** Takes an xxh64 of its own; give it back with {@link releaseStepHasher}. */
export const acquireStepHasher = async (): Promise<IHasher> => {
  const hasher = spare ?? (await createXXHash64())
  spare = undefined
  hasher.init()
  return hasher
}

export const releaseStepHasher = (hasher: IHasher): void => {
  spare = hasher
}

/** Checksums computed while bytes were read, by the bytes they belong to and the length they cover. */
const known = new WeakMap<Uint8Array, { readonly length: number; readonly digest: Uint8Array }>()

export const rememberDigest = (bytes: Uint8Array, length: number, digest: Uint8Array): void => {
  known.set(bytes, { length, digest })
}

/** The digest computed for `bytes` while they were read, if it covers exactly `length` bytes after the header. */
export const knownDigest = (bytes: Uint8Array, length: number): Uint8Array | undefined => {
  const entry = known.get(bytes)
  return entry?.length === length ? entry.digest : undefined
}
