/**
 * The typed errors of `Cache` and its `Store`s.
 *
 * @stability unstable
 * @since 0.3.0
 */
import * as Schema from "effect/Schema"

/**
 * A store could not be read or written: a read-only or full directory, a
 * locked or damaged database, a server that went away.
 *
 * **Example** (Matching a store failure)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { CacheError } from "effect-joblib"
 *
 * declare const program: Effect.Effect<unknown, CacheError.StoreError>
 * const recovered = program.pipe(Effect.catchTag("StoreError", (e: CacheError.StoreError) => Effect.succeed(e.store)))
 * ```
 *
 * @category errors
 * @since 0.3.0
 */
export class StoreError extends Schema.TaggedError<StoreError>()("StoreError", {
  /** Which store: `"memory"`, `"filesystem"`, `"sqlite"`, `"redis"`. */
  store: Schema.String,
  /** What it was doing: `"get"`, `"put"`, `"lock"`, … */
  operation: Schema.String,
  message: Schema.String,
  /** The error underneath, when there is one (an errno error, a driver's error). */
  cause: Schema.optional(Schema.Unknown)
}) {}

/**
 * Options of a cache or store layer that are not what it takes: an unknown
 * key, a value of the wrong type or out of range, an empty path. Names the
 * option, the value given and what is allowed.
 *
 * **Example** (A negative size limit)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Cache, CacheError } from "effect-joblib"
 *
 * const program = Cache.clear.pipe(
 *   Effect.provide(Cache.layerMemory({ limits: { maxBytes: -1 } })),
 *   Effect.catchTag("InvalidCacheOptions", (e: CacheError.InvalidCacheOptions) => Effect.succeed(e.option))
 * )
 * ```
 *
 * @category errors
 * @since 0.5.0
 */
export class InvalidCacheOptions extends Schema.TaggedError<InvalidCacheOptions>()("InvalidCacheOptions", {
  option: Schema.String,
  message: Schema.String
}) {}

/**
 * A store holds an entry under the key, but it cannot be read back whole:
 * garbage, a truncated or cut file, a wrong magic number, metadata that does
 * not match the data, a missing data file. `Cache` treats it as a miss: it
 * logs one warning naming the function and key, removes the entry and
 * recomputes it.
 *
 * **Example** (Matching a damaged entry)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { CacheError } from "effect-joblib"
 *
 * declare const program: Effect.Effect<unknown, CacheError.EntryDamaged>
 * const recovered = program.pipe(Effect.catchTag("EntryDamaged", (e: CacheError.EntryDamaged) => Effect.succeed(e.key)))
 * ```
 *
 * @category errors
 * @since 0.5.0
 */
export class EntryDamaged extends Schema.TaggedError<EntryDamaged>()("EntryDamaged", {
  store: Schema.String,
  key: Schema.String,
  message: Schema.String
}) {}

/**
 * A memoized function or a shelved result was asked for an entry the cache
 * does not hold (any more).
 *
 * **Example** (A cleared shelved result)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { CacheError } from "effect-joblib"
 *
 * declare const program: Effect.Effect<unknown, CacheError.EntryNotFound>
 * const recovered = program.pipe(Effect.catchTag("EntryNotFound", (e: CacheError.EntryNotFound) => Effect.succeed(e.key)))
 * ```
 *
 * @category errors
 * @since 0.3.0
 */
export class EntryNotFound extends Schema.TaggedError<EntryNotFound>()("EntryNotFound", {
  key: Schema.String,
  message: Schema.String
}) {}

/**
 * A memoized function was set up wrongly: for example a bare anonymous
 * function without a `name`, or an argument the key cannot be computed from.
 *
 * **Example** (Naming an anonymous function)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { CacheError } from "effect-joblib"
 *
 * declare const program: Effect.Effect<unknown, CacheError.InvalidMemoize>
 * const recovered = program.pipe(Effect.catchTag("InvalidMemoize", (e: CacheError.InvalidMemoize) => Effect.succeed(e.message)))
 * ```
 *
 * @category errors
 * @since 0.3.0
 */
export class InvalidMemoize extends Schema.TaggedError<InvalidMemoize>()("InvalidMemoize", {
  message: Schema.String
}) {}

/**
 * A memoized function's result (or, with `cacheFailures`, its failure) could not be stored: it cannot be
 * encoded as it is (a class instance without its Schema, a function), or it does not match the `success`
 * or `failure` Schema given. The call fails with it, unless `onUnstorable: "warn"` returns the result
 * uncached with one warning line. `cause` is the codec's error.
 *
 * **Example** (Giving a class result its Schema)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { CacheError } from "effect-joblib"
 *
 * declare const program: Effect.Effect<unknown, CacheError.Unstorable>
 * const explained = program.pipe(Effect.catchTag("Unstorable", (e: CacheError.Unstorable) => Effect.succeed(e.message)))
 * ```
 *
 * @category errors
 * @since 0.6.0
 */
export class Unstorable extends Schema.TaggedError<Unstorable>()("Unstorable", {
  function: Schema.String,
  message: Schema.String,
  cause: Schema.optional(Schema.Unknown)
}) {}

/**
 * Every error the cache adds to a memoized function's own, as one Schema: its type and its guard derive from
 * it, and a memoized Task's workers send these across with it.
 *
 * @category schemas
 * @since 0.6.0
 */
export const CacheError = Schema.Union([StoreError, EntryNotFound, InvalidMemoize, Unstorable])

/**
 * Every error the cache adds to a memoized function's own.
 *
 * @category models
 * @since 0.3.0
 */
export type CacheError = typeof CacheError.Type

/**
 * Tells whether a value is one of the {@link CacheError}s.
 *
 * **Example** (Guarding a failure)
 *
 * ```ts
 * import { CacheError } from "effect-joblib"
 *
 * CacheError.isCacheError(new CacheError.InvalidMemoize({ message: "no name" })) // true
 * ```
 *
 * @category guards
 * @since 0.6.0
 */
export const isCacheError: (u: unknown) => u is CacheError = Schema.is(CacheError)
