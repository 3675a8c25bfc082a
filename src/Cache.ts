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
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Result from "effect/Result"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Util from "node:util"
import { EntryNotFound, InvalidCacheOptions, InvalidMemoize, StoreError, Unstorable } from "./CacheError.ts"
import * as Codec from "./Codec.ts"
import * as Hashing from "./Hashing.ts"
import * as CacheOptionsSchema from "./internal/cache/cacheOptions.ts"
import * as MemoryStore from "./internal/cache/store/memory.ts"
import { callerUrl } from "./internal/caller.ts"
import * as Options from "./internal/options.ts"
import { parameterNames } from "./internal/parallel/closure.ts"
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

interface Shape {
  readonly store: Store.Shape
  readonly onStoreError: "fail" | "compute"
  readonly lockTimeout: number
  readonly pollInterval: number
  readonly compress: Codec.CompressOption | undefined
  readonly shared: boolean
  readonly verbose: number
  /** Computes every call and stores nothing but shelved results ({@link layerNone}). */
  readonly disabled: boolean
  /** When the cache was built (performance.now()), for joblib's time since the Memory was made. */
  readonly started: number
}

/** What a cache keeps while it runs: private to this module, not part of the service. */
interface State {
  /** Computations running in this process, by key. */
  readonly inflight: Map<string, Deferred.Deferred<Exit.Exit<unknown, unknown>>>
  /** Source hashes seen per function name, to warn about collisions and invalidate once. */
  readonly sources: Map<string, string>
  /** Warnings already given, so that each is given once. */
  readonly warned: Set<string>
}

const states = new WeakMap<Shape, State>()

/** The running state of `cache`, made on first use. */
const stateOf = (cache: Shape): State => {
  let state = states.get(cache)
  if (state === undefined) {
    state = { inflight: new Map(), sources: new Map(), warned: new Set() }
    states.set(cache, state)
  }
  return state
}

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
  Layer.effect(Cache)(Effect.gen(function*() {
    const parsed = yield* CacheOptionsSchema.parse(CacheOptionsSchema.CacheOptions, "Cache.layer", options)
    if (parsed.compress !== undefined) {
      // An unknown method or a level out of range is refused now, not at the first store.
      yield* Codec.make().encode(null, { compress: parsed.compress }).pipe(
        Effect.mapError((error) =>
          new InvalidCacheOptions({ option: "compress", message: `Cache.layer: ${error.message}` })
        )
      )
    }
    return makeShape(yield* Effect.service(Store.Store), parsed, false)
  }))

/** A cache's service over `store`, with its options' defaults; `disabled` computes every call. */
const makeShape = (
  store: Store.Shape,
  options: typeof CacheOptionsSchema.CacheOptions.Type,
  disabled: boolean
): Shape => ({
  store,
  onStoreError: options.onStoreError ?? "fail",
  lockTimeout: Options.toMillis(options.lockTimeout ?? "10 minutes"),
  pollInterval: Options.toMillis(options.pollInterval ?? 50),
  compress: options.compress,
  shared: options.shared ?? false,
  verbose: options.verbose ?? 0,
  disabled,
  started: performance.now()
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
  makeShape(Store.make(MemoryStore.make()), { lockTimeout: 0, pollInterval: 0 }, true)
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

/** Sets `path` (dot-separated, below a parameter) to undefined in a copy of `value`. */
const without = (value: unknown, path: ReadonlyArray<string>): unknown => {
  if (path.length === 0) return undefined
  if (value === null || typeof value !== "object") return value
  const [head, ...rest] = path
  const copy: Record<string, unknown> = Array.isArray(value) ? [...value] as any : { ...(value as object) }
  if (head! in copy) copy[head!] = without(copy[head!], rest)
  return copy
}

const shortRepr = (args: ReadonlyArray<unknown>) => {
  const text = args.map((arg) => Util.inspect(arg, { depth: 2, breakLength: Infinity, maxArrayLength: 4 })).join(", ")
  return text.length > 120 ? `${text.slice(0, 119)}…` : text
}

/** joblib's `format_time`: seconds and minutes, one decimal each. */
const formatTime = (millis: number) => `${(millis / 1000).toFixed(1)}s, ${(millis / 60_000).toFixed(1)}min`

/** joblib's closing line: the message pushed to column 80 by underscores. */
const rightAligned = (message: string) => "_".repeat(Math.max(0, 80 - message.length)) + message

const encodeOptions = (cache: Shape) => (cache.compress === undefined ? undefined : { compress: cache.compress })

/** The cache of the current context, with store failures handled as configured. */
const withStore = <A>(
  cache: Shape,
  operation: Effect.Effect<A, StoreError>,
  fallback: A
): Effect.Effect<A, StoreError> =>
  cache.onStoreError === "fail" ? operation : operation.pipe(
    Effect.catchTag("StoreError", (error) =>
      Effect.as(
        warnOnce(
          cache,
          "store",
          `effect-joblib cache: the ${error.store} store failed (${error.message}); computing without caching`
        ),
        fallback
      ))
  )

/** Logs `message` as a warning the first time `cache` meets `flag`, and never again. */
const warnOnce = (cache: Shape, flag: string, message: string): Effect.Effect<void> =>
  Effect.suspend(() => {
    const warned = stateOf(cache).warned
    if (warned.has(flag)) return Effect.void
    warned.add(flag)
    return Effect.logWarning(message)
  })

type Found<A, E> = { readonly _tag: "Value"; readonly value: A } | { readonly _tag: "Failure"; readonly error: E }

/** Keys remembered per memoized function, at most. */
const RECENT_KEYS = 10_000

/**
 * An exact text of arguments that are all primitives (distinct arguments, distinct texts: numbers in their
 * shortest round-trip form with -0 apart, strings length-prefixed), or undefined for any other argument.
 */
const primitiveSignature = (args: ReadonlyArray<unknown>): string | undefined => {
  let signature = ""
  for (const arg of args) {
    switch (typeof arg) {
      case "number":
        signature += Object.is(arg, -0) ? "n-0;" : `n${arg};`
        break
      case "string":
        signature += `s${arg.length}:${arg};`
        break
      case "boolean":
        signature += arg ? "t;" : "f;"
        break
      case "bigint":
        signature += `b${arg};`
        break
      case "undefined":
        signature += "u;"
        break
      default:
        if (arg !== null) return undefined
        signature += "z;"
    }
  }
  return signature
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
  const name = options?.name ?? fn.name
  const source = options?.source ?? fn.toString()
  const version = options?.version ?? ""
  const ttl = options?.timeToLive === undefined
    ? undefined
    : Duration.toMillis(Duration.fromInputUnsafe(options.timeToLive))
  const cacheFailures = options?.cacheFailures !== undefined && options.cacheFailures !== false
  const failureTtl = typeof options?.cacheFailures === "object" && options.cacheFailures.timeToLive !== undefined
    ? Duration.toMillis(Duration.fromInputUnsafe(options.cacheFailures.timeToLive))
    : ttl
  const checkSource = options?.invalidateOnSourceChange !== false
  const verboseOf = (cache: Shape) => options?.verbose ?? cache.verbose
  const valueCodec = options?.success === undefined ? Codec.make() : Codec.make(options.success)
  const failureCodec = options?.failure === undefined ? Codec.make() : Codec.make(options.failure)
  // Ignored arguments: a parameter name, optionally followed by a path into that argument.
  let ignored: Effect.Effect<
    ReadonlyArray<{ readonly index: number; readonly path: ReadonlyArray<string> }>,
    InvalidMemoize
  >
  const ignore = options?.ignore ?? []
  if (ignore.length === 0) ignored = Effect.succeed([])
  else {
    const params = parameterNames(fn)
    const resolved: Array<{ index: number; path: Array<string> }> = []
    let problem: string | undefined
    for (const entry of ignore) {
      const [param, ...path] = entry.split(".")
      const index = params?.indexOf(param!) ?? -1
      if (index < 0) {
        problem = `cannot ignore "${entry}": ${name || "the function"} has no parameter "${param}"` +
          (params === undefined ? " that can be read from its source" : ` (it has ${params.join(", ") || "none"})`)
        break
      }
      resolved.push({ index, path })
    }
    ignored = problem === undefined ? Effect.succeed(resolved) : Effect.fail(new InvalidMemoize({ message: problem }))
  }
  // Computed once, on first use (the hasher loads asynchronously); read synchronously after.
  let sourceKey: string | undefined
  const sourceHash: Effect.Effect<string> = Effect.suspend(() =>
    sourceKey !== undefined
      ? Effect.succeed(sourceKey)
      : Effect.map(Effect.orDie(Hashing.hash(source)), (hash) => (sourceKey = hash))
  )

  const unnamed = new InvalidMemoize({
    message: `an anonymous function needs a name to be memoized: Cache.memoize(fn, { name: "myFunction" })`
  })
  // Keys of recent calls whose arguments are all primitives, by an exact text of those arguments: on a hit,
  // hashing them would cost more than the rest of the lookup.
  const recentKeys = new Map<string, string>()
  const hashArgs = (args: ReadonlyArray<unknown>) => {
    // f(x) and f(x, undefined) are the same call.
    const keyed = args.length > 0 && args.at(-1) === undefined ? args.slice(0, -1) : args
    const signature = primitiveSignature(keyed)
    const known = signature === undefined ? undefined : recentKeys.get(signature)
    if (known !== undefined) return Effect.succeed(known)
    return Hashing.hash({ function: name, version, args: keyed }).pipe(
      Effect.map((key) => {
        if (signature !== undefined) {
          if (recentKeys.size >= RECENT_KEYS) recentKeys.clear()
          recentKeys.set(signature, key)
        }
        return key
      }),
      Effect.mapError((error) =>
        new InvalidMemoize({ message: `the arguments of ${name} cannot be hashed: ${error.message}` })
      )
    )
  }
  const keyOf = (args: Args): Effect.Effect<string, InvalidMemoize> => {
    if (name === "") return Effect.fail(unnamed)
    if (ignore.length === 0) return hashArgs(args)
    return Effect.flatMap(ignored, (paths) => {
      const keyed: Array<unknown> = [...args]
      for (const { index, path } of paths) keyed[index] = without(keyed[index], path)
      return hashArgs(keyed)
    })
  }

  /** A damaged entry is a miss: one warning naming the function, the key and the damage; then it goes. */
  const damaged = (cache: Shape, key: string, reason: string) =>
    Effect.logWarning(`effect-joblib cache: the entry ${key} of ${name} is damaged (${reason}); recomputing it`).pipe(
      Effect.andThen(Effect.ignore(cache.store.remove(key))),
      Effect.as(undefined)
    )

  /** Reads and checks an entry: undefined for a miss, never a damaged or stale entry. */
  const decodeEntry = (cache: Shape, key: string, entry: Store.Entry) =>
    Effect.matchEffect(
      entry.meta.failure === true
        ? failureCodec.decode(entry.data)
        : valueCodec.decode(entry.data, cache.shared ? { shared: true } : undefined),
      {
        onFailure: (error) => damaged(cache, key, error.message),
        onSuccess: (decoded): Effect.Effect<Found<A, E>> =>
          Effect.succeed(
            entry.meta.failure === true
              ? { _tag: "Failure", error: decoded as E }
              : { _tag: "Value", value: decoded as A }
          )
      }
    )

  /** Checks an entry's freshness and source, then decodes it. A chain, not a generator: this is the hit path. */
  const checked = (
    cache: Shape,
    key: string,
    entry: Store.Entry
  ): Effect.Effect<Found<A, E> | undefined, StoreError> => {
    const meta = entry.meta
    if (options?.validate !== undefined && !options.validate(meta)) return Effect.succeed(undefined)
    if (checkSource && meta.source !== undefined && meta.source !== sourceKey) {
      return Effect.flatMap(sourceHash, (current) =>
        meta.source === current
          ? checked(cache, key, entry)
          : Effect.as(invalidate(cache), undefined))
    }
    if (meta.expires !== undefined) {
      return Effect.flatMap(
        Clock.currentTimeMillis,
        (now) => meta.expires! < now ? Effect.succeed(undefined) : decodeEntry(cache, key, entry)
      )
    }
    return decodeEntry(cache, key, entry)
  }

  /** Reads and checks an entry: undefined for a miss, never a damaged or stale entry. */
  const lookup = (cache: Shape, key: string): Effect.Effect<Found<A, E> | undefined, StoreError> =>
    Effect.flatMap(
      withStore(
        cache,
        Effect.catchTag(cache.store.get(key), "EntryDamaged", (error) => damaged(cache, key, error.message)),
        undefined
      ),
      (entry) => (entry === undefined ? Effect.succeed(undefined) : checked(cache, key, entry))
    )

  /** Drops this function's entries stored by another source, once per process. */
  const invalidate = (cache: Shape) =>
    Effect.gen(function*() {
      const current = yield* sourceHash
      const flag = `source:${name}:${current}`
      if (stateOf(cache).warned.has(flag)) return
      stateOf(cache).warned.add(flag)
      const stale = (yield* withStore(cache, cache.store.list, [])).filter((meta) =>
        meta.function === name && meta.source !== undefined && meta.source !== current
      )
      yield* Effect.forEach(stale, (meta) => Effect.ignore(cache.store.remove(meta.key)), { discard: true })
      yield* Effect.logInfo(
        `effect-joblib cache: the source of ${name} changed; ${stale.length} cached entries were invalidated`
      )
    })

  const notifyIdentity = (cache: Shape) =>
    sourceKey !== undefined && stateOf(cache).sources.get(name) === sourceKey ? Effect.void : Effect.gen(function*() {
      const current = yield* sourceHash
      const seen = stateOf(cache).sources.get(name)
      if (seen === undefined) stateOf(cache).sources.set(name, current)
      else if (seen !== current) {
        yield* warnOnce(
          cache,
          `collision:${name}`,
          `effect-joblib cache: two different functions are memoized under the name "${name}"; ` +
            `give them distinct names, or their results may be mixed up`
        )
      }
    })

  const fromFound = (found: Found<A, E>): Effect.Effect<A, E> =>
    found._tag === "Value" ? Effect.succeed(found.value) : Effect.fail(found.error)

  const compute = (args: Args) =>
    Effect.suspend(() => {
      const out = fn(...args)
      if (Effect.isEffect(out)) return out
      if (out !== null && typeof out === "object" && typeof (out as PromiseLike<A>).then === "function") {
        return Effect.promise(() => out as PromiseLike<A>)
      }
      return Effect.succeed(out as A)
    })

  /**
   * What a result or failure that cannot be encoded becomes: `Unstorable` for the call to fail with, or (with
   * `onUnstorable: "warn"`) undefined after one warning line per function.
   */
  const unstorable = (cache: Shape, what: "result" | "failure", error: { readonly message: string }) => {
    const schema = what === "result" ? "success" : "failure"
    const message = `the ${what} of ${name} cannot be stored: ${error.message}` +
      ((what === "result" ? options?.success : options?.failure) === undefined
        ? ` (give its Schema: Cache.memoize(${name || "fn"}, { ${schema}: TheSchema }))`
        : "")
    if (options?.onUnstorable !== "warn") {
      return Effect.succeed(new Unstorable({ function: name, message, cause: error }))
    }
    return Effect.as(
      warnOnce(cache, `unstorable:${name}`, `effect-joblib cache: ${message}; returning it uncached`),
      undefined
    )
  }

  /** Computes under the key's lock and stores the outcome. */
  const computeAndStore = (
    cache: Shape,
    key: string,
    args: Args,
    force: boolean
  ): Effect.Effect<Exit.Exit<Found<A, E>, E | Unstorable>, StoreError, R> =>
    Effect.gen(function*() {
      // Another process may be computing it: wait for its lock or its result, polling on the Clock. The caller
      // has just looked for the result, so the first attempt only tries the lock.
      type Acquired = { readonly lock: Store.Lock } | { readonly found: Found<A, E> } | undefined
      let polled = false
      const takeLock: Effect.Effect<Acquired, StoreError> = Effect.map(
        withStore(cache, cache.store.lock(key, cache.lockTimeout), { release: Effect.void }),
        (lock) => (lock === undefined ? undefined : { lock })
      )
      const attempt = Effect.suspend((): Effect.Effect<Acquired, StoreError> => {
        const look = polled && !force
        polled = true
        return look
          ? Effect.flatMap(lookup(cache, key), (found) => (found === undefined ? takeLock : Effect.succeed({ found })))
          : takeLock
      })
      const acquired = yield* Effect.repeat(attempt, {
        schedule: Schedule.spaced(cache.pollInterval),
        until: (outcome) => outcome !== undefined
      })
      if ("found" in acquired!) return Exit.succeed(acquired.found)
      const lock = acquired!.lock
      return yield* Effect.gen(function*() {
        if (!force) {
          const found = yield* lookup(cache, key)
          if (found !== undefined) return Exit.succeed(found)
        }
        const verbose = verboseOf(cache)
        if (verbose > 0) {
          yield* Effect.logInfo("_".repeat(80))
          yield* Effect.logInfo(`[Memory] Calling ${name}...`)
          yield* Effect.logInfo(`${name}(${shortRepr(args)})`)
        }
        const started = performance.now()
        const exit = yield* Effect.exit(compute(args))
        const duration = performance.now() - started
        const failure = Exit.isFailure(exit) ? exit.cause.reasons.find(Cause.isFailReason) : undefined
        const store = (data: ReadonlyArray<Uint8Array>, isFailure: boolean, lifetime: number | undefined) =>
          Effect.gen(function*() {
            const now = yield* Clock.currentTimeMillis
            yield* withStore(
              cache,
              cache.store.put({
                meta: {
                  key,
                  function: name,
                  size: data.reduce((sum, part) => sum + part.length, 0),
                  duration,
                  created: now,
                  accessed: now,
                  input: shortRepr(args),
                  version,
                  source: yield* sourceHash,
                  expires: lifetime === undefined ? undefined : now + lifetime,
                  failure: isFailure || undefined
                },
                data
              }),
              undefined
            )
          })
        if (Exit.isSuccess(exit)) {
          // In parts: the filesystem store writes them without joining them first.
          const data = yield* Effect.result(valueCodec.encodeParts(exit.value as never, encodeOptions(cache)))
          if (Result.isSuccess(data)) yield* store(data.success, false, ttl)
          else {
            const refused = yield* unstorable(cache, "result", data.failure)
            if (refused !== undefined) return Exit.fail(refused)
          }
          if (verbose > 0) yield* Effect.logInfo(rightAligned(`${name} - ${formatTime(performance.now() - started)}`))
          return Exit.succeed<Found<A, E>>({ _tag: "Value", value: exit.value })
        }
        if (failure !== undefined && cacheFailures) {
          const data = yield* Effect.result(failureCodec.encodeParts(failure.error as never, encodeOptions(cache)))
          if (Result.isSuccess(data)) yield* store(data.success, true, failureTtl)
          else {
            const refused = yield* unstorable(cache, "failure", data.failure)
            if (refused !== undefined) return Exit.fail(refused)
          }
        }
        return exit as Exit.Exit<never, E>
      }).pipe(Effect.ensuring(lock.release))
    })

  const run = (args: Args, force: boolean): Effect.Effect<A, E | StoreError | InvalidMemoize | Unstorable, R | Cache> =>
    Effect.flatMap(
      Effect.service(Cache),
      (cache) =>
        cache.disabled ? compute(args) : Effect.andThen(notifyIdentity(cache), keyOf(args)).pipe(
          Effect.flatMap((key) =>
            force
              ? miss(cache, key, args, force)
              : verboseOf(cache) > 1
              ? loggedLookup(cache, key, args, force)
              : Effect.flatMap(
                lookup(cache, key),
                (found) => found !== undefined ? fromFound(found) : miss(cache, key, args, force)
              )
          )
        )
    )

  /** A lookup that logs a hit as joblib's `verbose` does. */
  const loggedLookup = (cache: Shape, key: string, args: Args, force: boolean) =>
    Effect.gen(function*() {
      const started = performance.now()
      const found = yield* lookup(cache, key)
      if (found === undefined) return yield* miss(cache, key, args, force)
      const since = formatTime(performance.now() - cache.started)
      yield* Effect.logInfo(`[Memory]${since.padEnd(16)}: Loading ${name}...`)
      if (verboseOf(cache) > 4) {
        yield* Effect.logInfo(rightAligned(`${name} cache loaded - ${formatTime(performance.now() - started)}`))
      }
      return yield* fromFound(found)
    })

  const miss = (cache: Shape, key: string, args: Args, force: boolean) =>
    Effect.gen(function*() {
      // One computation per key in this process: later callers wait for it.
      const running = stateOf(cache).inflight.get(key)
      if (running !== undefined && !force) {
        const exit = yield* Deferred.await(running)
        if (!(Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause))) {
          return yield* (exit as Exit.Exit<Found<A, E>, E | StoreError | Unstorable>).pipe(Effect.flatMap(fromFound))
        }
        return yield* run(args, force) // the computing fiber was interrupted: try again
      }
      const deferred = Deferred.makeUnsafe<Exit.Exit<unknown, unknown>>()
      stateOf(cache).inflight.set(key, deferred)
      // The outcome, with a store failure folded in: waiting fibers get exactly what this one gets.
      const outcome = yield* computeAndStore(cache, key, args, force).pipe(
        Effect.exit,
        Effect.map((exit): Exit.Exit<Found<A, E>, E | StoreError | Unstorable> =>
          Exit.isSuccess(exit) ? exit.value : Exit.failCause(exit.cause)
        ),
        Effect.onExit((done) =>
          Effect.sync(() => {
            if (stateOf(cache).inflight.get(key) === deferred) stateOf(cache).inflight.delete(key)
            Deferred.doneUnsafe(
              deferred,
              Effect.succeed(Exit.isSuccess(done) ? done.value : done) as Effect.Effect<Exit.Exit<unknown, unknown>>
            )
          })
        )
      )
      return yield* Effect.flatMap(outcome, fromFound)
    }) as Effect.Effect<A, E | StoreError | InvalidMemoize | Unstorable, R | Cache>

  const memoized = ((...args: Args) => run(args, false)) as Memoized<Args, A, E, R>
  Object.defineProperty(memoized, "name", { value: name })
  return Object.assign(memoized, {
    call: (...args: Args) => run(args, true),
    check: (...args: Args) =>
      Effect.gen(function*() {
        const cache = yield* Effect.service(Cache)
        if (cache.disabled) return false
        return (yield* lookup(cache, yield* keyOf(args))) !== undefined
      }),
    shelve: (...args: Args) =>
      Effect.flatMap(Effect.service(Cache), (cache) =>
        Effect.flatMap(keyOf(args), (key) => {
          const shelved: Shelved<A> = { _tag: "Shelved", key, function: name }
          // Caching off: the result is still stored, so that the reference can be read.
          return cache.disabled
            ? Effect.as(
              Effect.flatMap(
                Effect.flatten(computeAndStore(cache, key, args, true)),
                fromFound
              ),
              shelved
            )
            : Effect.as(run(args, false), shelved)
        })),
    clear: Effect.gen(function*() {
      const cache = yield* Effect.service(Cache)
      const mine = (yield* cache.store.list).filter((meta) => meta.function === name)
      for (const meta of mine) yield* cache.store.remove(meta.key)
      return mine.length
    }),
    key: (...args: Args) => keyOf(args)
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
