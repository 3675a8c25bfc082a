/**
 * The miss path: one computation per key. Within this process the cache's single flight makes later callers
 * wait for the first; across processes the store's lock does, each waiter polling on the Clock for the lock
 * or the result. The holder computes, stores the outcome, and releases the lock.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Result from "effect/Result"
import * as Schedule from "effect/Schedule"
import { type StoreError, Unstorable } from "../../../CacheError.ts"
import type * as Store from "../../../Store.ts"
import type { CacheShape } from "../service.ts"
import { call, type Definition, type Found } from "./definition.ts"
import type { Lookup } from "./lookup.ts"
import type { SourceCheck } from "./source.ts"
import { logCalling, logComputed, shortRepr } from "./verbose.ts"

type Acquired<A, E> = { readonly lock: Store.Lock } | { readonly found: Found<A, E> }

/**
 * Waits for `key`'s lock, or for another process's result under it. The caller has just looked for the
 * result, so the first attempt only tries the lock; `force` never takes another's result.
 */
const acquire = <A, E>(cache: CacheShape, lookup: Lookup<A, E>, key: string, identity: string, force: boolean) => {
  let polled = false
  const takeLock = Effect.map(
    cache.lock(key),
    (lock): Acquired<A, E> | undefined => (lock === undefined ? undefined : { lock })
  )
  const attempt = Effect.suspend((): Effect.Effect<Acquired<A, E> | undefined, StoreError> => {
    const look = polled && !force
    polled = true
    return look
      ? Effect.flatMap(
        lookup(cache, key, identity),
        (found): Effect.Effect<Acquired<A, E> | undefined, StoreError> =>
          found === undefined ? takeLock : Effect.succeed({ found })
      )
      : takeLock
  })
  return Effect.map(
    Effect.repeat(attempt, {
      schedule: Schedule.spaced(cache.settings.pollInterval),
      until: (outcome) => outcome !== undefined
    }),
    (acquired) => acquired!
  )
}

/** The store of a computation: its value, or its typed failure (with `cacheFailures`), and their codecs. */
const makeWriter = <Args extends ReadonlyArray<unknown>, A, E>(
  definition: Definition<Args, A, E, any>,
  source: SourceCheck
) => {
  const { name } = definition
  /**
   * What a result or failure that cannot be encoded becomes: `Unstorable` for the call to fail with, or (with
   * `onUnstorable: "warn"`) undefined after one warning line per function.
   */
  const unstorable = (cache: CacheShape, what: "result" | "failure", error: { readonly message: string }) => {
    const message = `the ${what} of ${name} cannot be stored: ${error.message}` +
      (definition.schemas[what === "result" ? "success" : "failure"]
        ? ""
        : ` (give its Schema: Cache.memoize(${name || "fn"}, { ${
          what === "result" ? "success" : "failure"
        }: TheSchema }))`)
    if (definition.onUnstorable !== "warn") {
      return Effect.succeed(new Unstorable({ function: name, message, cause: error }))
    }
    return Effect.as(
      cache.warnOnce(`unstorable:${name}`, `effect-joblib cache: ${message}; returning it uncached`),
      undefined
    )
  }
  /** Encodes and stores `value`; fails with `Unstorable` if it cannot be encoded (unless warned of). */
  return (
    cache: CacheShape,
    entry: { readonly key: string; readonly identity: string; readonly args: Args; readonly duration: number },
    outcome: { readonly failure: false; readonly value: A } | { readonly failure: true; readonly value: E }
  ): Effect.Effect<void, StoreError | Unstorable> =>
    Effect.gen(function*() {
      const codec = (outcome.failure ? definition.failureCodec : definition.valueCodec) as typeof definition.valueCodec
      const compress = cache.settings.compress === undefined ? undefined : { compress: cache.settings.compress }
      // In parts: the filesystem store writes them without joining them first.
      const data = yield* Effect.result(codec.encodeParts(outcome.value as A, compress))
      if (Result.isFailure(data)) {
        const refused = yield* unstorable(cache, outcome.failure ? "failure" : "result", data.failure)
        return refused === undefined ? undefined : yield* refused
      }
      const now = yield* Clock.currentTimeMillis
      const lifetime = outcome.failure ? definition.failureTimeToLive : definition.timeToLive
      yield* cache.write({
        meta: {
          key: entry.key,
          function: entry.identity,
          size: data.success.reduce((sum, part) => sum + part.length, 0),
          duration: entry.duration,
          created: now,
          accessed: now,
          input: shortRepr(entry.args),
          version: definition.version,
          source: yield* source.hash,
          expires: lifetime === undefined ? undefined : now + lifetime,
          failure: outcome.failure || undefined
        },
        data: data.success
      })
    })
}

export type Miss<Args, A, E, R> = (
  cache: CacheShape,
  key: string,
  identity: string,
  args: Args,
  force: boolean
) => Effect.Effect<Found<A, E>, E | StoreError | Unstorable, R>

/** Computes under the key's lock and stores the outcome, once per key in this process at a time. */
export const makeMiss = <Args extends ReadonlyArray<unknown>, A, E, R>(
  definition: Definition<Args, A, E, R>,
  source: SourceCheck,
  lookup: Lookup<A, E>
): Miss<Args, A, E, R> => {
  const { name } = definition
  const write = makeWriter(definition, source)
  const compute = (cache: CacheShape, key: string, identity: string, args: Args) =>
    Effect.gen(function*() {
      const verbose = definition.verbose ?? cache.settings.verbose
      if (verbose > 0) yield* logCalling(name, args)
      const started = performance.now()
      const exit = yield* Effect.exit(call(definition, args))
      const duration = performance.now() - started
      if (Exit.isSuccess(exit)) {
        yield* write(cache, { key, identity, args, duration }, { failure: false, value: exit.value })
        if (verbose > 0) yield* logComputed(name, started)
        return { _tag: "Value", value: exit.value } as Found<A, E>
      }
      const failure = exit.cause.reasons.find(Cause.isFailReason)
      if (failure !== undefined && definition.cacheFailures) {
        yield* write(cache, { key, identity, args, duration }, { failure: true, value: failure.error })
      }
      return yield* (exit as Exit.Exit<never, E>)
    })
  const underLock = (cache: CacheShape, key: string, identity: string, args: Args, force: boolean) =>
    Effect.flatMap(acquire(cache, lookup, key, identity, force), (acquired) => {
      if ("found" in acquired) return Effect.succeed(acquired.found)
      // Looked for again under the lock: its last holder may have stored it meanwhile.
      const found = force ? Effect.succeed(undefined) : lookup(cache, key, identity)
      return Effect.flatMap(
        found,
        (hit) => hit !== undefined ? Effect.succeed(hit) : compute(cache, key, identity, args)
      ).pipe(
        Effect.ensuring(acquired.lock.release)
      )
    })
  return (cache, key, identity, args, force) =>
    cache.singleFlight(key, underLock(cache, key, identity, args, force), force)
}
