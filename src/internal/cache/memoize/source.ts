/**
 * A memoized function's source, as the cache follows it: entries stored by another source are stale (joblib
 * invalidates them when a function's code changes), and two different functions under one name are named
 * in a warning.
 */
import * as Effect from "effect/Effect"
import type { StoreError } from "../../../CacheError.ts"
import * as Hashing from "../../../Hashing.ts"
import type { CacheShape } from "../service.ts"
import type { Definition } from "./definition.ts"

export interface SourceCheck {
  /** The source's hash, computed once on first use (the hasher loads asynchronously). */
  readonly hash: Effect.Effect<string>
  /** The hash once known, read synchronously on the hit path. */
  readonly known: () => string | undefined
  /** Warns once if another function was memoized under this name in this cache. */
  readonly notice: (cache: CacheShape) => Effect.Effect<void>
  /** Drops this function's entries stored by another source, once per process. */
  readonly invalidate: (cache: CacheShape) => Effect.Effect<void, StoreError>
}

export const makeSourceCheck = (definition: Definition<any, any, any, any>): SourceCheck => {
  const { name } = definition
  let known: string | undefined
  const hash: Effect.Effect<string> = Effect.suspend(() =>
    known !== undefined
      ? Effect.succeed(known)
      : Effect.map(Effect.orDie(Hashing.hash(definition.source)), (computed) => (known = computed))
  )
  return {
    hash,
    known: () => known,
    notice: (cache) =>
      known !== undefined && cache.sourceOf(name, known) === known ? Effect.void : Effect.flatMap(
        hash,
        (current) =>
          cache.sourceOf(name, current) === current ? Effect.void : cache.warnOnce(
            `collision:${name}`,
            `effect-joblib cache: two different functions are memoized under the name "${name}"; ` +
              `give them distinct names, or their results may be mixed up`
          )
      ),
    invalidate: (cache) =>
      Effect.gen(function*() {
        const current = yield* hash
        if (!cache.firstTime(`source:${name}:${current}`)) return
        const stale = (yield* cache.list).filter((meta) =>
          meta.function === name && meta.source !== undefined && meta.source !== current
        )
        yield* Effect.forEach(stale, (meta) => Effect.ignore(cache.remove(meta.key)), { discard: true })
        yield* Effect.logInfo(
          `effect-joblib cache: the source of ${name} changed; ${stale.length} cached entries were invalidated`
        )
      })
  }
}
