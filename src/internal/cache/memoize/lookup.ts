/**
 * The hit path: reads a call's entry and checks it (the user's `validate`, the source, the time to live)
 * before decoding it. A chain, not a generator: this path runs on every hit.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type { StoreError } from "../../../CacheError.ts"
import type * as Store from "../../../Store.ts"
import type { CacheShape } from "../service.ts"
import type { Definition, Found } from "./definition.ts"
import type { SourceCheck } from "./source.ts"

export type Lookup<A, E> = (
  cache: CacheShape,
  key: string,
  identity: string
) => Effect.Effect<Found<A, E> | undefined, StoreError>

export const makeLookup = <A, E>(definition: Definition<any, A, E, any>, source: SourceCheck): Lookup<A, E> => {
  const { name } = definition
  const decode = (cache: CacheShape, key: string, entry: Store.Entry): Effect.Effect<Found<A, E> | undefined> =>
    Effect.matchEffect(
      entry.meta.failure === true
        ? definition.failureCodec.decode(entry.data) as Effect.Effect<unknown, { readonly message: string }>
        : definition.valueCodec.decode(entry.data, cache.settings.shared ? { shared: true } : undefined),
      {
        onFailure: (error) => cache.discardDamaged(key, name, error.message),
        onSuccess: (decoded): Effect.Effect<Found<A, E>> =>
          Effect.succeed(
            entry.meta.failure === true
              ? { _tag: "Failure", error: decoded as E }
              : { _tag: "Value", value: decoded as A }
          )
      }
    )
  const checked = (
    cache: CacheShape,
    key: string,
    identity: string,
    entry: Store.Entry
  ): Effect.Effect<Found<A, E> | undefined, StoreError> => {
    const meta = entry.meta
    if (definition.validate !== undefined && !definition.validate(meta)) return Effect.succeed(undefined)
    if (definition.checkSource && meta.source !== undefined && meta.source !== source.known()) {
      return Effect.flatMap(source.hash, (current) =>
        meta.source === current
          ? checked(cache, key, identity, entry)
          : Effect.as(source.invalidate(cache, identity), undefined))
    }
    if (meta.expires !== undefined) {
      return Effect.flatMap(
        Clock.currentTimeMillis,
        (now) => meta.expires! < now ? Effect.succeed(undefined) : decode(cache, key, entry)
      )
    }
    return decode(cache, key, entry)
  }
  return (cache, key, identity) =>
    Effect.flatMap(
      cache.read(key, name),
      (entry) => (entry === undefined ? Effect.succeed(undefined) : checked(cache, key, identity, entry))
    )
}
