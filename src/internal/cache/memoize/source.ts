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
  /**
   * The name this function's entries go under in `cache`: its own, unless another function of another source
   * was memoized under that name in this cache first (joblib's name collision in one session). Then both keep
   * their entries, this one's under its name and its source's hash, and one warning names the collision.
   */
  readonly identity: (cache: CacheShape) => Effect.Effect<string>
  /** Drops the entries stored under `identity` by another source, once per process. */
  readonly invalidate: (cache: CacheShape, identity: string) => Effect.Effect<void, StoreError>
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
    identity: (cache) => {
      // Relying on `version` alone, the source never tells two functions apart.
      if (!definition.checkSource) return Effect.succeed(name)
      if (known !== undefined && cache.sourceOf(name, known) === known) return Effect.succeed(name)
      return Effect.flatMap(hash, (current) => {
        if (cache.sourceOf(name, current) === current) return Effect.succeed(name)
        return Effect.as(
          cache.warnOnce(
            `collision:${name}`,
            `effect-joblib cache: two different functions are memoized under the name "${name}" (joblib's name ` +
              `collision); each keeps its own entries in this process, but in a new one only the first to run ` +
              `keeps them: give them distinct names`
          ),
          `${name}@${current.slice(0, 12)}`
        )
      })
    },
    invalidate: (cache, identity) =>
      Effect.gen(function*() {
        const current = yield* hash
        if (!cache.firstTime(`source:${identity}:${current}`)) return
        const stale = (yield* cache.list).filter((meta) =>
          meta.function === identity && meta.source !== undefined && meta.source !== current
        )
        yield* Effect.forEach(stale, (meta) => Effect.ignore(cache.remove(meta.key)), { discard: true })
        yield* Effect.logInfo(
          `effect-joblib cache: the source of ${name} changed; ${stale.length} cached entries were invalidated`
        )
      })
  }
}
