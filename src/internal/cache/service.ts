/**
 * The cache service's operations over a store: reads and writes that apply the cache's `onStoreError`
 * policy, its lock, its in-process single flight, and its once-only warnings. `Cache.make`, `Cache.layer`
 * and `Cache.layerNone` all build one here; the memoize pipeline (`memoize/`) is written against it.
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type { StoreError } from "../../CacheError.ts"
import type * as Codec from "../../Codec.ts"
import type * as Store from "../../Store.ts"
import * as Options from "../options.ts"
import type * as CacheOptions from "./cacheOptions.ts"

/**
 * A cache's settings, with their defaults (public as `Cache.Shape`'s `settings`).
 *
 * @inline
 */
export interface Settings {
  readonly onStoreError: "fail" | "compute"
  /** Milliseconds a computation holds its key's lock against other processes. */
  readonly lockTimeout: number
  /** Milliseconds between looks for another process's result. */
  readonly pollInterval: number
  readonly compress: Codec.CompressOption | undefined
  readonly shared: boolean
  readonly verbose: number
  /** When the cache was built (performance.now()), for joblib's time since the Memory was made. */
  readonly started: number
}

/** The cache service's shape (public as `Cache.Shape`). */
export interface CacheShape {
  readonly store: Store.Shape
  readonly settings: Settings
  /** Computes every call and stores nothing but shelved results (`Cache.layerNone`). */
  readonly disabled: boolean
  /**
   * The entry under `key`, or undefined: a miss, a damaged entry (removed, with one warning naming `owner`), or
   * a store failure when `onStoreError` is `"compute"` (with one warning).
   */
  readonly read: (key: string, owner: string) => Effect.Effect<Store.Entry | undefined, StoreError>
  /** Stores an entry; a store failure is ignored, with one warning, when `onStoreError` is `"compute"`. */
  readonly write: (entry: Store.NewEntry) => Effect.Effect<void, StoreError>
  /** Takes `key`'s lock against other processes, or undefined if another holds it. */
  readonly lock: (key: string) => Effect.Effect<Store.Lock | undefined, StoreError>
  /** Every entry's metadata (none when the store fails and `onStoreError` is `"compute"`). */
  readonly list: Effect.Effect<ReadonlyArray<Store.Meta>, StoreError>
  readonly remove: (key: string) => Effect.Effect<boolean, StoreError>
  /** Removes a damaged entry, with one warning naming `owner` and the damage: it is a miss. */
  readonly discardDamaged: (key: string, owner: string, reason: string) => Effect.Effect<undefined>
  /**
   * Runs `compute` once per key in this process at a time: fibers asking for a key being computed wait for its
   * exit and get the same. If the computing fiber is interrupted, a waiter computes instead. `force` always
   * computes (joblib's `func.call`).
   */
  readonly singleFlight: <A, E, R>(
    key: string,
    compute: Effect.Effect<A, E, R>,
    force: boolean
  ) => Effect.Effect<A, E, R>
  /** Logs `message` as a warning the first time this cache meets `flag`, and never again. */
  readonly warnOnce: (flag: string, message: string) => Effect.Effect<void>
  /** Marks `flag` seen; true the first time. */
  readonly firstTime: (flag: string) => boolean
  /** The source hash the cache has seen for function `name`, remembering `hash` if it is the first. */
  readonly sourceOf: (name: string, hash: string) => string
}

/** A cache over `store` with its options' defaults; `disabled` computes every call. */
export const makeCache = (
  store: Store.Shape,
  options: typeof CacheOptions.CacheOptions.Type,
  disabled: boolean
): CacheShape => {
  const settings: Settings = {
    onStoreError: options.onStoreError ?? "fail",
    lockTimeout: Options.toMillis(options.lockTimeout ?? "10 minutes"),
    pollInterval: Options.toMillis(options.pollInterval ?? 50),
    compress: options.compress,
    shared: options.shared ?? false,
    verbose: options.verbose ?? 0,
    started: performance.now()
  }
  const seen = new Set<string>()
  const sources = new Map<string, string>()
  const inflight = new Map<string, Deferred.Deferred<Exit.Exit<unknown, unknown>>>()
  const firstTime = (flag: string) => !seen.has(flag) && seen.add(flag) !== undefined
  const warnOnce = (flag: string, message: string) =>
    Effect.suspend(() => (firstTime(flag) ? Effect.logWarning(message) : Effect.void))
  /** A store operation with failures handled as configured. */
  const guarded = <A>(operation: Effect.Effect<A, StoreError>, fallback: A): Effect.Effect<A, StoreError> =>
    settings.onStoreError === "fail" ? operation : operation.pipe(
      Effect.catchTag("StoreError", (error) =>
        Effect.as(
          warnOnce(
            "store",
            `effect-joblib cache: the ${error.store} store failed (${error.message}); computing without caching`
          ),
          fallback
        ))
    )
  const damaged = (key: string, owner: string, reason: string) =>
    Effect.logWarning(`effect-joblib cache: the entry ${key} of ${owner} is damaged (${reason}); recomputing it`).pipe(
      Effect.andThen(Effect.ignore(store.remove(key))),
      Effect.as(undefined)
    )
  const singleFlight = <A, E, R>(
    key: string,
    compute: Effect.Effect<A, E, R>,
    force: boolean
  ): Effect.Effect<A, E, R> =>
    Effect.suspend(() => {
      const running = inflight.get(key)
      if (running !== undefined && !force) {
        return Effect.flatMap(Deferred.await(running), (exit) =>
          Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause)
            ? singleFlight(key, compute, force) // the computing fiber was interrupted: compute here
            : (exit as Exit.Exit<A, E>))
      }
      const deferred = Deferred.makeUnsafe<Exit.Exit<unknown, unknown>>()
      inflight.set(key, deferred)
      return Effect.onExit(compute, (exit) =>
        Effect.sync(() => {
          if (inflight.get(key) === deferred) {
            inflight.delete(key)
          }
          Deferred.doneUnsafe(deferred, Effect.succeed(exit))
        }))
    })
  return {
    store,
    settings,
    disabled,
    read: (key, owner) =>
      guarded(
        Effect.catchTag(store.get(key), "EntryDamaged", (error) => damaged(key, owner, error.message)),
        undefined
      ),
    write: (entry) => guarded(store.put(entry), undefined),
    lock: (key) => guarded(store.lock(key, settings.lockTimeout), { release: Effect.void }),
    list: guarded(store.list, []),
    remove: (key) => store.remove(key),
    discardDamaged: damaged,
    singleFlight,
    warnOnce,
    firstTime,
    sourceOf: (name, hash) => {
      const known = sources.get(name)
      if (known !== undefined) return known
      sources.set(name, hash)
      return hash
    }
  }
}
