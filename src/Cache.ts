/**
 * Memoization on a pluggable `Store`: joblib's `Memory`, so that the same
 * thing is never computed twice, in this process or in others sharing the
 * store.
 *
 * A memoized function hashes its arguments (with `Hashing`) together with its
 * identity (name and version) into a key, and keeps its results as `Codec`
 * dumps in the store. Concurrent callers of one missing key compute it once:
 * fibers of this process wait on the first one, and other processes wait on
 * the store's lock for that key.
 *
 * @stability unstable
 * @since 0.3.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { EntryNotFound, InvalidCacheOptions, InvalidMemoize, StoreError, Unstorable } from "./CacheError.ts"
import * as Codec from "./Codec.ts"
import * as CacheOptionsSchema from "./internal/cache/cacheOptions.ts"
import * as Memo from "./internal/cache/memoize/definition.ts"
import { makeKeyer } from "./internal/cache/memoize/key.ts"
import { makeLookup } from "./internal/cache/memoize/lookup.ts"
import { makeMiss } from "./internal/cache/memoize/singleFlight.ts"
import { makeSourceCheck } from "./internal/cache/memoize/source.ts"
import { logHit } from "./internal/cache/memoize/verbose.ts"
import * as Service from "./internal/cache/service.ts"
import * as MemoryStore from "./internal/cache/store/memory.ts"
import { callerUrl } from "./internal/caller.ts"
import * as Store from "./Store.ts"
import * as Task from "./Task.ts"

/**
 * Options of a cache.
 *
 * @category models
 * @since 0.3.0
 */
export interface CacheOptions {
  /**
   * When the store cannot be read or written (a read-only or full directory, a server gone):
   * `"fail"` (the default) fails the call with `StoreError`; `"compute"` computes without caching
   * and logs one warning.
   */
  readonly onStoreError?: "fail" | "compute" | undefined
  /**
   * How long a computation holds its key's lock against other processes. A holder that died releases
   * it after this long, and another caller computes. Default 10 minutes.
   */
  readonly lockTimeout?: Duration.Input | undefined
  /** How often a caller waiting for another process's computation looks for its result. Default 50 millis. */
  readonly pollInterval?: Duration.Input | undefined
  /** Compress stored entries, as `Persist.dump`'s `compress` (joblib's `Memory(compress=...)`). Default: none. */
  readonly compress?: Codec.CompressOption | undefined
  /**
   * Load the typed arrays of a hit into shared memory, so that they go to `Backend.layerThreads` workers with
   * no copy (joblib's `Memory(mmap_mode=...)`).
   */
  readonly shared?: boolean | undefined
  /**
   * joblib's `Memory(verbose=...)`, through the Effect Logger, one log per joblib line: above 0, each
   * computation logs `[Memory] Calling f...` and `f(arguments)`, then `f - 0.1s, 0.0min` once stored;
   * above 1, each hit logs `[Memory]<time since the cache was built>: Loading f...`; above 4, also the
   * time the hit took to load. Default 0 (joblib's default is 1).
   */
  readonly verbose?: number | undefined
}

/**
 * The cache service: its settings, and the operations the memoize pipeline runs on its store (reads and writes
 * that follow `onStoreError`, the lock, the in-process single flight and the once-only warnings). Build one
 * with {@link make}, or a Layer with {@link layer}.
 *
 * **Example** (What a cache holds)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Cache } from "effect-joblib"
 *
 * const functions = Effect.flatMap(Cache.Cache, (cache: Cache.Shape) =>
 *   Effect.map(cache.list, (metas) => new Set(metas.map((meta) => meta.function))))
 * ```
 *
 * @category models
 * @since 0.6.0
 */
export interface Shape extends Service.CacheShape {}

/**
 * The cache service.
 *
 * **Example** (A cache on the filesystem)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Cache } from "effect-joblib"
 *
 * const square = Cache.memoize((x: number) => x * x, { name: "square" })
 * const program = square(4).pipe(Effect.provide(Cache.layerFileSystem(".cache/effect-joblib")))
 * ```
 *
 * @category services
 * @since 0.3.0
 */
export class Cache extends Context.Service<Cache, Shape>()("effect-joblib/Cache") {}

/**
 * A cache over the `Store` provided to it.
 *
 * **Example** (A cache over an in-memory store)
 *
 * ```ts
 * import { Layer } from "effect"
 * import { Cache, Store } from "effect-joblib"
 *
 * const layer = Cache.layer().pipe(Layer.provide(Store.layerMemory()))
 * ```
 *
 * @category layers
 * @since 0.3.0
 */
export const layer = (options?: CacheOptions): Layer.Layer<Cache, InvalidCacheOptions, Store.Store> =>
  Layer.effect(Cache)(Effect.flatMap(Effect.service(Store.Store), (store) => makeAt("Cache.layer", store, options)))

/**
 * A cache over `store`: its options checked, with their defaults. {@link layer} provides one over the
 * `Store` service.
 *
 * **Example** (A cache of one's own)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Cache, Store } from "effect-joblib"
 *
 * const square = Cache.memoize((x: number) => x * x, { name: "square" })
 * const program = Effect.gen(function*() {
 *   const cache = yield* Cache.make(yield* Store.Store, { verbose: 1 })
 *   return yield* square(3).pipe(Effect.provideService(Cache.Cache, cache))
 * }).pipe(Effect.provide(Store.layerMemory()))
 * ```
 *
 * @category constructors
 * @since 0.6.0
 */
export const make = (store: Store.Shape, options?: CacheOptions): Effect.Effect<Shape, InvalidCacheOptions> =>
  makeAt("Cache.make", store, options)

const makeAt = (where: string, store: Store.Shape, options: CacheOptions | undefined) =>
  Effect.gen(function*() {
    const parsed = yield* CacheOptionsSchema.parse(CacheOptionsSchema.CacheOptions, where, options)
    if (parsed.compress !== undefined) {
      // An unknown method or a level out of range is refused now, not at the first store.
      yield* Codec.make().encode(null, { compress: parsed.compress }).pipe(
        Effect.mapError((error) =>
          new InvalidCacheOptions({ option: "compress", message: `${where}: ${error.message}` })
        )
      )
    }
    return Service.makeCache(store, parsed, false)
  })

/** A cache over a store: the options both take, checked as one, then split between them. */
const layerOver = (
  where: string,
  options: (CacheOptions & Store.StoreOptions) | undefined,
  store: (options: Store.StoreOptions) => Layer.Layer<Store.Store, StoreError | InvalidCacheOptions>
): Layer.Layer<Cache, StoreError | InvalidCacheOptions> =>
  Layer.unwrap(Effect.map(
    CacheOptionsSchema.parse(CacheOptionsSchema.CacheStoreOptions, where, options),
    ({ limits, ...cache }) => {
      const built = layer(cache).pipe(Layer.provide(store(limits === undefined ? {} : { limits })))
      if (cache.onStoreError !== "compute") return built
      // A store that cannot even be opened (a full or read-only disk) computes every call, with one warning.
      return built.pipe(Layer.catchTag("StoreError", (error) =>
        Layer.unwrap(Effect.as(
          Effect.logWarning(
            `effect-joblib cache: the ${error.store} store cannot be opened (${error.message}); computing without caching`
          ),
          layerNone
        ))))
    }
  ))

/**
 * A cache in `directory`, joblib's `Memory(location)`.
 *
 * **Example** (The usual set-up)
 *
 * ```ts
 * import { Cache } from "effect-joblib"
 *
 * const layer = Cache.layerFileSystem(".cache/effect-joblib", { limits: { maxBytes: 1e9 } })
 * ```
 *
 * @category layers
 * @since 0.3.0
 */
export const layerFileSystem = (
  directory: string,
  options?: CacheOptions & Store.StoreOptions
): Layer.Layer<Cache, StoreError | InvalidCacheOptions> =>
  layerOver("Cache.layerFileSystem", options, (store) => Store.layerFileSystem(directory, store))

/**
 * A cache in a SQLite file, for millions of entries.
 *
 * **Example** (One file, shared by processes)
 *
 * ```ts
 * import { Cache } from "effect-joblib"
 *
 * const layer = Cache.layerSqlite(".cache/effect-joblib.sqlite")
 * ```
 *
 * @category layers
 * @since 0.3.0
 */
export const layerSqlite = (
  file: string,
  options?: CacheOptions & Store.StoreOptions
): Layer.Layer<Cache, StoreError | InvalidCacheOptions> =>
  layerOver("Cache.layerSqlite", options, (store) => Store.layerSqlite(file, store))

/**
 * A cache in this process's memory, for tests.
 *
 * **Example** (In tests)
 *
 * ```ts
 * import { Cache } from "effect-joblib"
 *
 * const layer = Cache.layerMemory()
 * ```
 *
 * @category layers
 * @since 0.3.0
 */
export const layerMemory = (options?: CacheOptions & Store.StoreOptions): Layer.Layer<Cache, InvalidCacheOptions> =>
  // A memory store opens without fail: only bad options can fail this Layer.
  layerOver("Cache.layerMemory", options, (store) => Store.layerMemory(store)) as Layer.Layer<
    Cache,
    InvalidCacheOptions
  >

/**
 * A cache that computes every call and stores nothing, joblib's `Memory(location=None)`: turns caching
 * off by Layer, with the same code. Shelved results are kept in memory, so that {@link get} reads them.
 *
 * **Example** (Caching off in tests)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Cache } from "effect-joblib"
 *
 * let calls = 0
 * const f = Cache.memoize((x: number) => ++calls + x, { name: "f" })
 * const program = Effect.all([f(1), f(1)]).pipe(Effect.provide(Cache.layerNone)) // [2, 3]: computed twice
 * ```
 *
 * @category layers
 * @since 0.5.0
 */
export const layerNone: Layer.Layer<Cache> = Layer.sync(Cache)(() =>
  // Shelved results only, kept in memory: no lock is waited for.
  Service.makeCache(Store.make(MemoryStore.make()), { lockTimeout: 0, pollInterval: 0 }, true)
)

/**
 * Options of {@link memoize}.
 *
 * @category models
 * @since 0.3.0
 */
export interface MemoizeOptions<
  S extends Schema.Top = Schema.Codec<any, any>,
  F extends Schema.Top = Schema.Codec<any, any>
> {
  /** The function's name in keys and listings; defaults to the function's own name. */
  readonly name?: string | undefined
  /** An explicit invalidation tag: changing it makes every earlier entry a miss. */
  readonly version?: string | undefined
  /**
   * Arguments left out of the key, by parameter name (joblib's `ignore=['debug']`) or by a path into
   * one: `"options.verbose"`.
   */
  readonly ignore?: ReadonlyArray<string> | undefined
  /** Entries older than this are recomputed (joblib's `expires_after`). */
  readonly timeToLive?: Duration.Input | undefined
  /** Called with an entry's metadata on each hit; false recomputes it (joblib's `cache_validation_callback`). */
  readonly validate?: ((meta: Store.Meta) => boolean) | undefined
  /** Cache typed failures too, optionally with a time to live of their own. Default false. */
  readonly cacheFailures?: boolean | { readonly timeToLive?: Duration.Input | undefined } | undefined
  /**
   * Treat entries stored by a different source of the function as stale (the default), or rely on
   * `version` alone (`false`).
   */
  readonly invalidateOnSourceChange?: boolean | undefined
  /** The source whose changes invalidate entries; default: the function's own. */
  readonly source?: string | undefined
  /**
   * The Schema of the stored result: needed for class instances, optional for plain data (which the
   * codec stores as it is). Typed against the function's result, so a Schema of another type fails in `tsc`.
   */
  readonly success?: S | undefined
  /** The Schema of a stored failure (with `cacheFailures`), typed against the function's error. */
  readonly failure?: F | undefined
  /**
   * A result that cannot be stored (a class instance without its Schema, a value its Schema refuses):
   * `"fail"` (the default) fails the call with `Unstorable`; `"warn"` returns the result uncached and logs
   * one warning line per function.
   */
  readonly onUnstorable?: "fail" | "warn" | undefined
  /** This function's `verbose`, instead of the cache's (joblib's `memory.cache(verbose=...)`). */
  readonly verbose?: number | undefined
}

/**
 * `unknown` when values of type `A` are what the Schema `S` encodes (a function's result, for its
 * `success` Schema); otherwise a member `S` lacks, so that the mismatch fails in `tsc`, naming `A`.
 *
 * @category models
 * @since 0.6.0
 */
export type Describes<S extends Schema.Top, A> = [A] extends [S["Type"]] ? unknown
  : { readonly "~the Schema does not describe": A }

/**
 * A small serializable reference to a cached result (joblib's `MemorizedResult`): pass it to workers,
 * read it with {@link get}, drop it with {@link clearShelved}.
 *
 * @category models
 * @since 0.3.0
 */
export interface Shelved<A> {
  readonly _tag: "Shelved"
  readonly key: string
  readonly function: string
  /** Phantom: the value's type. */
  readonly _A?: A
}

/**
 * A memoized function and its methods.
 *
 * @category models
 * @since 0.3.0
 */
export interface Memoized<Args extends ReadonlyArray<unknown>, A, E, R> {
  /** Returns the cached result, or computes and stores it. */
  (...args: Args): Effect.Effect<A, E | StoreError | InvalidMemoize | Unstorable, R | Cache>
  /** Computes and stores, whatever the cache holds (joblib's `func.call`). */
  readonly call: (...args: Args) => Effect.Effect<A, E | StoreError | InvalidMemoize | Unstorable, R | Cache>
  /** Whether a valid entry is cached for these arguments (joblib's `check_call_in_cache`). */
  readonly check: (...args: Args) => Effect.Effect<boolean, StoreError | InvalidMemoize, Cache>
  /** Computes or fetches, and returns a reference to the stored result (joblib's `call_and_shelve`). */
  readonly shelve: (
    ...args: Args
  ) => Effect.Effect<Shelved<A>, E | StoreError | InvalidMemoize | Unstorable, R | Cache>
  /** Removes every entry of this function (joblib's `func.clear()`). */
  readonly clear: Effect.Effect<number, StoreError, Cache>
  /** The key for these arguments. */
  readonly key: (...args: Args) => Effect.Effect<string, InvalidMemoize>
  readonly name: string
}

/** A memoized function whose options were refused: every call fails with why; it stored nothing to clear. */
const refusing = <Args extends ReadonlyArray<unknown>, A, E, R>(
  name: string,
  error: InvalidMemoize
): Memoized<Args, A, E, R> => {
  const fail = () => Effect.fail(error)
  const memoized = fail as unknown as Memoized<Args, A, E, R>
  Object.defineProperty(memoized, "name", { value: name })
  return Object.assign(memoized, { call: fail, check: fail, shelve: fail, key: fail, clear: Effect.succeed(0) })
}

/**
 * Memoizes a function of any arguments that returns a value, a Promise or an Effect. Typed failures
 * of an Effect are passed through (and cached with `cacheFailures`). The function must have a name,
 * or be given one.
 *
 * **Example** (joblib's first Memory example)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Cache } from "effect-joblib"
 *
 * let calls = 0
 * const f = Cache.memoize(function f(x: number) {
 *   calls++
 *   return x * 2
 * })
 * const program = Effect.gen(function*() {
 *   yield* f(1) // computes
 *   yield* f(1) // read back
 *   return calls // 1
 * }).pipe(Effect.provide(Cache.layerMemory()))
 * ```
 *
 * @category memoization
 * @since 0.3.0
 */
export const memoize = <
  Args extends ReadonlyArray<unknown>,
  A,
  E = never,
  R = never,
  S extends Schema.Codec<any, any> = never,
  F extends Schema.Codec<any, any> = never
>(
  fn: (...args: Args) => A | PromiseLike<A> | Effect.Effect<A, E, R>,
  options?: MemoizeOptions<S & Describes<S, NoInfer<A>>, F & Describes<F, NoInfer<E>>>
): Memoized<Args, A, E, R> => {
  const invalid = CacheOptionsSchema.parseMemoize("Cache.memoize", options)
  if (invalid !== undefined) return refusing(options?.name ?? fn.name, invalid)
  const definition = Memo.define(fn, options)
  const keyOf = makeKeyer(definition)
  const source = makeSourceCheck(definition)
  const lookup = makeLookup(definition, source)
  const miss = makeMiss(definition, source, lookup)
  const { name } = definition
  type Failure = E | StoreError | InvalidMemoize | Unstorable
  /** A hit logged as joblib's `verbose` does, above 1. */
  const loggedHit = (cache: Shape, key: string, identity: string, args: Args) => {
    const started = performance.now()
    return Effect.flatMap(lookup(cache, key, identity), (hit) =>
      hit === undefined
        ? Effect.flatMap(miss(cache, key, identity, args, false), Memo.fromFound)
        : Effect.andThen(
          logHit(name, cache.settings.started, started, definition.verbose ?? cache.settings.verbose),
          Memo.fromFound(hit)
        ))
  }
  /** The call's key in `cache`, and the name its entries go under there. */
  const keyIn = (cache: Shape, args: Args) =>
    Effect.flatMap(
      source.identity(cache),
      (identity) => Effect.map(keyOf(args, identity), (key) => ({ key, identity }))
    )
  /** Key, then lookup, then a hit or a single computation; a forced call skips the lookup. */
  const run = (args: Args, force: boolean): Effect.Effect<A, Failure, R | Cache> =>
    Effect.flatMap(Effect.service(Cache), (cache) => {
      if (cache.disabled) return Memo.call(definition, args)
      return Effect.flatMap(keyIn(cache, args), ({ identity, key }) => {
        if (force) return Effect.flatMap(miss(cache, key, identity, args, true), Memo.fromFound)
        if ((definition.verbose ?? cache.settings.verbose) > 1) return loggedHit(cache, key, identity, args)
        // The hit path: a chain, with nothing more than the lookup and its result.
        return Effect.flatMap(lookup(cache, key, identity), (hit) =>
          hit === undefined
            ? Effect.flatMap(miss(cache, key, identity, args, false), Memo.fromFound)
            : Memo.fromFound(hit))
      })
    })
  const memoized = ((...args: Args) => run(args, false)) as Memoized<Args, A, E, R>
  Object.defineProperty(memoized, "name", { value: name })
  return Object.assign(memoized, {
    call: (...args: Args) => run(args, true),
    check: (...args: Args) =>
      Effect.gen(function*() {
        const cache = yield* Effect.service(Cache)
        if (cache.disabled) return false
        const { identity, key } = yield* keyIn(cache, args)
        return (yield* lookup(cache, key, identity)) !== undefined
      }),
    shelve: (...args: Args) =>
      Effect.flatMap(Effect.service(Cache), (cache) =>
        Effect.flatMap(keyIn(cache, args), ({ identity, key }) => {
          const shelved: Shelved<A> = { _tag: "Shelved", key, function: identity }
          // Caching off: the result is still stored, so that the reference can be read.
          return cache.disabled
            ? Effect.as(Effect.flatMap(miss(cache, key, identity, args, true), Memo.fromFound), shelved)
            : Effect.as(run(args, false), shelved)
        })),
    clear: Effect.gen(function*() {
      const cache = yield* Effect.service(Cache)
      const identity = yield* source.identity(cache)
      const mine = (yield* cache.store.list).filter((meta) => meta.function === identity)
      for (const meta of mine) yield* cache.store.remove(meta.key)
      return mine.length
    }),
    key: (...args: Args) => keyOf(args, name)
  })
}

/**
 * Reads a shelved result. Fails with `EntryNotFound` once it was cleared or evicted.
 *
 * **Example** (call_and_shelve, then get)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Cache } from "effect-joblib"
 *
 * const g = Cache.memoize(function g(x: number) {
 *   return x + 1
 * })
 * const program = Effect.gen(function*() {
 *   const shelved = yield* g.shelve(41)
 *   return yield* Cache.get(shelved) // 42
 * }).pipe(Effect.provide(Cache.layerMemory()))
 * ```
 *
 * @category shelving
 * @since 0.3.0
 */
export const get = <A>(
  shelved: Shelved<A>,
  schema?: Schema.Codec<A, unknown>
): Effect.Effect<A, EntryNotFound | StoreError, Cache> =>
  Effect.gen(function*() {
    const cache = yield* Effect.service(Cache)
    const missing = new EntryNotFound({
      key: shelved.key,
      message: `the shelved result of ${shelved.function} (${shelved.key}) is no longer in the cache`
    })
    const entry = yield* Effect.catchTag(
      cache.store.get(shelved.key),
      "EntryDamaged",
      (error) =>
        Effect.fail(
          new EntryNotFound({
            key: shelved.key,
            message: `the shelved result of ${shelved.function} (${shelved.key}) is damaged: ${error.message}`
          })
        )
    )
    if (entry === undefined || entry.meta.failure === true) return yield* missing
    const codec = schema === undefined ? Codec.make() : Codec.make(schema)
    const decoded = yield* Effect.exit(codec.decode(entry.data))
    if (Exit.isFailure(decoded)) return yield* missing
    return decoded.value as A
  })

/**
 * Removes a shelved result from the cache.
 *
 * **Example** (Clearing a shelved result)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Cache } from "effect-joblib"
 *
 * declare const shelved: Cache.Shelved<number>
 * const program = Cache.clearShelved(shelved)
 * ```
 *
 * @category shelving
 * @since 0.3.0
 */
export const clearShelved = <A>(shelved: Shelved<A>): Effect.Effect<void, StoreError, Cache> =>
  Effect.flatMap(Effect.service(Cache), (cache) => Effect.asVoid(cache.store.remove(shelved.key)))

/**
 * Every entry's metadata: function, key, size, duration of the original
 * computation, created and last-accessed times, and a short input.
 *
 * **Example** (Listing entries)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Cache } from "effect-joblib"
 *
 * const program = Cache.entries.pipe(Effect.provide(Cache.layerMemory()))
 * ```
 *
 * @category inspection
 * @since 0.3.0
 */
export const entries: Effect.Effect<ReadonlyArray<Store.Meta>, StoreError, Cache> = Effect.flatMap(
  Effect.service(Cache),
  (cache) => cache.store.list
)

/**
 * Totals of the cache.
 *
 * @category models
 * @since 0.3.0
 */
export interface Stats {
  readonly items: number
  readonly bytes: number
  /** Entries per function name. */
  readonly functions: Readonly<Record<string, number>>
}

/**
 * Counts the cache's entries and bytes, per function too.
 *
 * **Example** (Reporting the cache's size)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Cache } from "effect-joblib"
 *
 * const program = Cache.stats.pipe(Effect.provide(Cache.layerMemory()))
 * ```
 *
 * @category inspection
 * @since 0.3.0
 */
export const stats: Effect.Effect<Stats, StoreError, Cache> = Effect.map(entries, (metas) => {
  const functions: Record<string, number> = {}
  let bytes = 0
  for (const meta of metas) {
    bytes += meta.size
    functions[meta.function] = (functions[meta.function] ?? 0) + 1
  }
  return { items: metas.length, bytes, functions }
})

/**
 * Removes every entry.
 *
 * **Example** (Starting afresh)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Cache } from "effect-joblib"
 *
 * const program = Cache.clear.pipe(Effect.provide(Cache.layerMemory()))
 * ```
 *
 * @category maintenance
 * @since 0.3.0
 */
export const clear: Effect.Effect<void, StoreError, Cache> = Effect.flatMap(
  Effect.service(Cache),
  (cache) => cache.store.clear
)

/**
 * Evicts entries until the cache is within `limits`: expired first, then the
 * least recently used (joblib's `reduce_size`). Returns how many were removed.
 *
 * **Example** (Keeping the cache under 1 GB)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Cache } from "effect-joblib"
 *
 * const program = Cache.reduceSize({ maxBytes: 1e9 }).pipe(Effect.provide(Cache.layerMemory()))
 * ```
 *
 * @category maintenance
 * @since 0.3.0
 */
export const reduceSize = (limits: Store.Limits): Effect.Effect<number, StoreError | InvalidCacheOptions, Cache> =>
  Effect.gen(function*() {
    const parsed = yield* CacheOptionsSchema.parse(CacheOptionsSchema.Limits, "Cache.reduceSize", limits)
    const cache = yield* Effect.service(Cache)
    const evict = Store.overLimits(yield* cache.store.list, parsed, yield* Clock.currentTimeMillis)
    for (const key of evict) yield* cache.store.remove(key)
    return evict.length
  })

/**
 * Options of {@link memoizeTask}.
 *
 * @category models
 * @since 0.3.0
 */
export interface MemoizeTaskOptions extends Omit<MemoizeOptions, "success" | "failure"> {
  /**
   * The cache each worker opens (built once per worker, like a task's layer). Workers share results
   * through the store, so use one that processes can share: a directory, SQLite or Redis.
   */
  readonly cache: Layer.Layer<Cache, StoreError | InvalidCacheOptions>
  /** The memoized task's name. Default: the task's name followed by `.cached`. */
  readonly taskName?: string | undefined
}

/**
 * Memoizes a Task and returns a new Task, so that `Parallel.map` runs it in
 * workers of any backend, every worker sharing the store. Results, and typed
 * failures with `cacheFailures`, are stored with the task's own Schemas. Call
 * it at the top level of a module, as `Task.make` is: workers import that
 * module to find it.
 *
 * **Example** (A resumable map)
 *
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { Cache, Parallel, Task } from "effect-joblib"
 *
 * export const Score = Task.make("Score", { payload: Schema.Number, success: Schema.Number, run: (x) => x * 2 })
 * export const CachedScore = Cache.memoizeTask(Score, { cache: Cache.layerFileSystem(".cache/scores") })
 *
 * // Interrupted and run again, this recomputes only what was not finished.
 * const program = Parallel.map([1, 2, 3], CachedScore)
 * ```
 *
 * @category memoization
 * @since 0.3.0
 */
export const memoizeTask = <P, A, E>(
  task: Task.Task<P, A, E>,
  options: MemoizeTaskOptions
): Task.Task<P, A, E | StoreError | InvalidMemoize | Unstorable> => {
  const { cache, taskName, ...rest } = options
  // The task runs with its own services, provided with the cache by the memoized task's layer: built once per worker.
  const run = task.run as (payload: P) => A | Effect.Effect<A, E, any>
  const memoized = memoize((payload: P) => run(payload), {
    ...rest,
    name: options.name ?? task.name,
    source: String(task.run),
    success: task.success as Schema.Codec<A, any>,
    failure: task.error as Schema.Codec<E, any>
  })
  const layer: Layer.Layer<any, StoreError | unknown> = task.layer === undefined
    ? cache
    : Layer.merge(cache, task.layer)
  return Task.make(taskName ?? `${task.name}.cached`, {
    payload: task.payload as Schema.Codec<P, unknown>,
    success: task.success as Schema.Codec<A, unknown>,
    error: Schema.Union([task.error, StoreError, InvalidMemoize, Unstorable]) as unknown as Schema.Codec<
      E | StoreError | InvalidMemoize | Unstorable,
      unknown
    >,
    run: (payload: P) => memoized(payload) as Effect.Effect<A, E | StoreError | InvalidMemoize | Unstorable, any>,
    layer: layer as Layer.Layer<any, unknown>,
    url: callerUrl(memoizeTask) ?? task.url
  }) as Task.Task<P, A, E | StoreError | InvalidMemoize | Unstorable>
}
