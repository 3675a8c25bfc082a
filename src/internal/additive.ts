/**
 * Services that add up: each Layer contributes an entry under a key of its own, so that `Layer.mergeAll`,
 * `Layer.provideMerge` and nested `Effect.provide` all keep every entry. A Layer that reads "the previous
 * value" of one shared service and replaces it cannot do that: layers merged side by side are built from
 * the same input, so each sees none of the others and the last one wins.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"

export interface Additive<T> {
  /** A Layer that adds the entry `make` builds. Providing the same Layer value twice adds it once. */
  readonly layer: <E, R>(make: Effect.Effect<T, E, R>) => Layer.Layer<never, E, Exclude<R, Scope.Scope>>
  /** The entries in the current context, in the order they were provided. */
  readonly entries: Effect.Effect<ReadonlyArray<T>>
}

export const makeAdditive = <T>(prefix: string): Additive<T> => {
  let next = 0
  const keyPrefix = `${prefix}/`
  return {
    layer: (make) => {
      const key = Context.Service<T>(`${keyPrefix}${next++}`)
      return Layer.effectContext(Effect.map(make, (entry) => Context.make(key, entry))) as any
    },
    entries: Effect.map(Effect.context<never>(), (context) => {
      const found: Array<T> = []
      for (const [key, value] of context.mapUnsafe) if (key.startsWith(keyPrefix)) found.push(value)
      return found
    })
  }
}
