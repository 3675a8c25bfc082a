/**
 * Where `Cache` keeps its entries. A store is a service provided by a Layer:
 * in memory, on the filesystem (the default for a cache with a directory),
 * in SQLite (for millions of entries), in Redis (shared across machines), or
 * in any Effect `KeyValueStore`.
 *
 * Every store writes atomically, records accesses itself (never from file
 * atimes) for LRU eviction, offers a lock per key so that concurrent callers
 * in other processes compute a missing entry once, and enforces the size
 * limits it was given. A store of your own supplies its primitives to
 * {@link make}, which adds the key checks and the limits; each built-in store
 * lives in a file of its own under `internal/store/`.
 *
 * @stability unstable
 * @since 0.3.0
 */
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { KeyValueStore } from "effect/persistence"
import * as Redacted from "effect/Redacted"
import { type EntryDamaged, type InvalidCacheOptions, StoreError } from "./CacheError.ts"
import * as CacheOptions from "./internal/cache/cacheOptions.ts"
import * as FileSystemStore from "./internal/cache/store/fileSystem.ts"
import * as KeyValueStoreStore from "./internal/cache/store/keyValue.ts"
import * as MemoryStore from "./internal/cache/store/memory.ts"
import * as RedisStore from "./internal/cache/store/redis.ts"
import * as SqliteStore from "./internal/cache/store/sqlite.ts"
import * as Options from "./internal/options.ts"

/**
 * What a store records about an entry.
 *
 * @category models
 * @since 0.3.0
 */
export interface Meta {
  readonly key: string
  /** The memoized function's name. */
  readonly function: string
  /** Bytes of the stored data. */
  readonly size: number
  /** Milliseconds the original computation took. */
  readonly duration: number
  /** When it was stored and last read, in epoch milliseconds. */
  readonly created: number
  readonly accessed: number
  /** A short representation of the input, for listings. */
  readonly input: string
  /** The function's version tag and source hash when it was stored. */
  readonly version?: string | undefined
  readonly source?: string | undefined
  /** Epoch milliseconds after which the entry is stale. */
  readonly expires?: number | undefined
  /** The entry holds a typed failure, not a value. */
  readonly failure?: boolean | undefined
}

/**
 * An entry: its metadata and the data (a `Codec` dump, checksummed).
 *
 * @category models
 * @since 0.3.0
 */
export interface Entry {
  readonly meta: Meta
  readonly data: Uint8Array
}

/**
 * An entry to write: its data may come in parts (a `Codec` dump's sections), which the filesystem store
 * writes without joining them first.
 *
 * @category models
 * @since 0.3.0
 */
export interface NewEntry {
  readonly meta: Meta
  readonly data: Uint8Array | ReadonlyArray<Uint8Array>
}

/**
 * A held lock on a key; `release` is idempotent.
 *
 * @category models
 * @since 0.3.0
 */
export interface Lock {
  readonly release: Effect.Effect<void>
}

/**
 * Size limits a store enforces after each write, evicting the least recently
 * used entries first.
 *
 * @category models
 * @since 0.3.0
 */
export interface Limits {
  readonly maxBytes?: number | undefined
  readonly maxItems?: number | undefined
  /** How long after its last access an entry is removed (a number is millis), such as `"30 days"`. */
  readonly maxAge?: Duration.Input | undefined
}

/**
 * The store service.
 *
 * @category models
 * @since 0.3.0
 */
export interface Shape {
  readonly name: string
  /**
   * Reads an entry and records the access; undefined when missing, `EntryDamaged` when the store holds
   * something under the key that cannot be read back whole.
   */
  readonly get: (key: string) => Effect.Effect<Entry | undefined, StoreError | EntryDamaged>
  /** Reads an entry's metadata without recording an access. */
  readonly meta: (key: string) => Effect.Effect<Meta | undefined, StoreError>
  /** Writes an entry atomically, replacing any other; then enforces the limits. */
  readonly put: (entry: NewEntry) => Effect.Effect<void, StoreError>
  readonly remove: (key: string) => Effect.Effect<boolean, StoreError>
  readonly list: Effect.Effect<ReadonlyArray<Meta>, StoreError>
  readonly clear: Effect.Effect<void, StoreError>
  /**
   * Takes the lock on `key` for `ttl` (a number is millis), or returns undefined when another caller holds it. A lock whose holder
   * died expires after its ttl, on the Clock of the caller that looks at it.
   */
  readonly lock: (key: string, ttl: Duration.Input) => Effect.Effect<Lock | undefined, StoreError>
}

/**
 * The store a `Cache` uses.
 *
 * **Example** (An in-memory store for tests)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Store } from "effect-joblib"
 *
 * const program = Effect.gen(function*() {
 *   const store = yield* Store.Store
 *   return yield* store.list
 * }).pipe(Effect.provide(Store.layerMemory()))
 * ```
 *
 * @category services
 * @since 0.3.0
 */
export class Store extends Context.Service<Store, Shape>()("effect-joblib/Store") {}

/** The entries to evict to meet `limits` at `now` (epoch millis), least recently used first. */
export const overLimits = (entries: ReadonlyArray<Meta>, limits: Limits, now: number): Array<string> => {
  const evict: Array<string> = []
  const kept: Array<Meta> = []
  const maxAge = limits.maxAge === undefined ? undefined : Options.toMillis(limits.maxAge)
  for (const meta of entries) {
    if (maxAge !== undefined && now - meta.accessed > maxAge) evict.push(meta.key)
    else kept.push(meta)
  }
  kept.sort((a, b) => a.accessed - b.accessed)
  let bytes = kept.reduce((sum, meta) => sum + meta.size, 0)
  let items = kept.length
  for (const meta of kept) {
    const over = (limits.maxBytes !== undefined && bytes > limits.maxBytes) ||
      (limits.maxItems !== undefined && items > limits.maxItems)
    if (!over) break
    evict.push(meta.key)
    bytes -= meta.size
    items--
  }
  return evict
}

const hasLimits = (limits: Limits | undefined): limits is Limits =>
  limits !== undefined &&
  (limits.maxBytes !== undefined || limits.maxItems !== undefined || limits.maxAge !== undefined)

/**
 * What a store supplies to {@link make}: reads, writes and locks, with no key checks and no limits;
 * `enforce`, when given, applies limits its own way (the default lists the entries and removes the least
 * recently used).
 *
 * @category models
 * @since 0.5.0
 */
export interface Primitives extends Shape {
  readonly enforce?: ((limits: Limits) => Effect.Effect<void, StoreError>) | undefined
}

const KEY = /^[A-Za-z0-9:_-]{1,200}$/

/**
 * A store from its primitives, with what every store shares: keys are checked before any operation uses
 * them, and the limits are enforced after each write.
 *
 * **Example** (A store of your own)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Store } from "effect-joblib"
 *
 * const entries = new Map<string, Store.Entry>()
 * const mine = Store.make({
 *   name: "mine",
 *   get: (key) => Effect.sync(() => entries.get(key)),
 *   meta: (key) => Effect.sync(() => entries.get(key)?.meta),
 *   put: (entry) =>
 *     Effect.sync(() => {
 *       const data = entry.data instanceof Uint8Array ? entry.data : new Uint8Array(Buffer.concat(entry.data))
 *       entries.set(entry.meta.key, { meta: entry.meta, data })
 *     }),
 *   remove: (key) => Effect.sync(() => entries.delete(key)),
 *   list: Effect.sync(() => Array.from(entries.values(), (entry) => entry.meta)),
 *   clear: Effect.sync(() => entries.clear()),
 *   lock: () => Effect.succeed({ release: Effect.void })
 * }, { limits: { maxItems: 100 } })
 * ```
 *
 * @category constructors
 * @since 0.5.0
 */
export const make = (store: Primitives, options?: StoreOptions): Shape => {
  const limits = options?.limits
  const enforce = !hasLimits(limits)
    ? Effect.void
    : store.enforce !== undefined
    ? store.enforce(limits)
    : Effect.flatMap(
      Effect.zip(store.list, Clock.currentTimeMillis),
      ([entries, now]) => Effect.forEach(overLimits(entries, limits, now), store.remove, { discard: true })
    )
  const checked = <A, E>(operation: string, key: string, use: () => Effect.Effect<A, E>) =>
    KEY.test(key)
      ? use()
      : Effect.fail(
        new StoreError({
          store: store.name,
          operation,
          message: `invalid key ${JSON.stringify(key)}: use letters, digits, ':', '_', '-'`
        })
      )
  return {
    name: store.name,
    get: (key) => checked("get", key, () => store.get(key)),
    meta: (key) => checked("meta", key, () => store.meta(key)),
    put: (entry) => checked("put", entry.meta.key, () => Effect.andThen(store.put(entry), enforce)),
    remove: (key) => checked("remove", key, () => store.remove(key)),
    list: store.list,
    clear: store.clear,
    lock: (key, ttl) => checked("lock", key, () => store.lock(key, ttl))
  }
}

/**
 * Options of every store layer.
 *
 * @category models
 * @since 0.3.0
 */
export interface StoreOptions {
  readonly limits?: Limits | undefined
}

/**
 * Keeps entries in this process's memory.
 *
 * **Example** (A bounded in-memory store)
 *
 * ```ts
 * import { Store } from "effect-joblib"
 *
 * const layer = Store.layerMemory({ limits: { maxItems: 1000 } })
 * ```
 *
 * @category layers
 * @since 0.3.0
 */
export const layerMemory = (options?: StoreOptions): Layer.Layer<Store, InvalidCacheOptions> =>
  Layer.effect(Store)(
    Effect.map(CacheOptions.parse(CacheOptions.StoreOptions, "Store.layerMemory", options), (options) =>
      make(MemoryStore.make(), options))
  )

/**
 * Keeps entries as files under `directory`: one file per entry (metadata and
 * data together, so that a rename publishes both at once), in two levels of
 * shard directories, with a `.gitignore` at the root as joblib does. Writes
 * go through a temporary file and a rename. Reads record the access time in
 * the entry's modification time, set explicitly and in batches, at most once
 * every 10 seconds per entry. Small entries read lately (up to 16 MB) stay in
 * memory and are served while a `stat` shows their file unchanged. Locks are
 * files holding their owner's PID and expiry, written whole and linked into
 * place; a stale one is broken by one waiter at a time.
 *
 * **Example** (A cache directory with a size budget)
 *
 * ```ts
 * import { Store } from "effect-joblib"
 *
 * const layer = Store.layerFileSystem(".cache/effect-joblib", { limits: { maxBytes: 1e9 } })
 * ```
 *
 * @category layers
 * @since 0.3.0
 */
export const layerFileSystem = (
  rawDirectory: string,
  rawOptions?: StoreOptions
): Layer.Layer<Store, StoreError | InvalidCacheOptions> =>
  Layer.effect(Store)(Effect.gen(function*() {
    const directory = yield* CacheOptions.location("Store.layerFileSystem", "directory", rawDirectory)
    const options = yield* CacheOptions.parse(CacheOptions.StoreOptions, "Store.layerFileSystem", rawOptions)
    return make(yield* FileSystemStore.open(directory), options)
  }))

/**
 * Keeps entries in a SQLite database file, through Node's built-in
 * `node:sqlite`: one table of entries indexed by last access, and one of
 * locks with expiry. WAL mode and a busy timeout let several processes share
 * the file. Accesses are recorded in batches, at most once every 10 seconds
 * per entry, so that a hit is a single indexed read. Entries of 100 KB or more
 * keep their data in a file of their own in `<file>.blobs/` (written by
 * rename, named by the row), which SQLite measures as faster than a blob in the
 * database at that size; files a crash leaves behind are removed on open, at
 * most once every ten minutes.
 *
 * **Example** (A cache for millions of entries)
 *
 * ```ts
 * import { Store } from "effect-joblib"
 *
 * const layer = Store.layerSqlite(".cache/effect-joblib.sqlite", { limits: { maxItems: 5_000_000 } })
 * ```
 *
 * @category layers
 * @since 0.3.0
 */
export const layerSqlite = (
  rawFile: string,
  rawOptions?: StoreOptions
): Layer.Layer<Store, StoreError | InvalidCacheOptions> =>
  Layer.effect(Store)(Effect.gen(function*() {
    const file = yield* CacheOptions.location("Store.layerSqlite", "file", rawFile)
    const options = yield* CacheOptions.parse(CacheOptions.StoreOptions, "Store.layerSqlite", rawOptions)
    return make(yield* SqliteStore.open(file), options)
  }))

/**
 * Options of {@link layerKeyValueStore}.
 *
 * @category models
 * @since 0.6.0
 */
export interface KeyValueStoreOptions extends StoreOptions {
  /** Prefix of every key the store writes, so that the cache can share a KeyValueStore. Default `"effect-joblib/"`. */
  readonly prefix?: string | undefined
}

/**
 * Keeps entries in whatever Effect `KeyValueStore` is provided: Effect's
 * `layerMemory`, `layerFileSystem`, `layerSql` over a `SqlClient`, or browser
 * storage. Each entry is one value holding its metadata and data together, so
 * one `set` publishes both; a small metadata value beside it serves `list`
 * and LRU eviction without reading the data.
 *
 * Its limits, from what a `KeyValueStore` offers:
 * - **Single flight holds only within one process.** A `KeyValueStore` has no
 *   atomic operation to take a lock with, so the store's locks live in this
 *   process: two processes missing the same key may both compute it.
 * - **Each read costs a write**: the entry's access time, which LRU eviction
 *   (`limits`) goes by.
 * - **Writes are as atomic as the `KeyValueStore`'s `set`**: Effect's
 *   `layerFileSystem` writes a file in place, so a crash during a write can
 *   leave a torn value (read back as damaged, then recomputed).
 *
 * Prefer {@link layerFileSystem} for a cache on disk: it writes through a
 * temporary file and a rename, takes locks other processes see, and its
 * `clear` removes only the cache's entries, where a `KeyValueStore` shared
 * with other data is cleared here by the store's `prefix`.
 *
 * **Example** (A cache in a KeyValueStore)
 *
 * ```ts
 * import { Layer } from "effect"
 * import { KeyValueStore } from "effect/persistence"
 * import { Store } from "effect-joblib"
 *
 * const layer = Store.layerKeyValueStore({ prefix: "pipeline/" }).pipe(Layer.provide(KeyValueStore.layerMemory))
 * ```
 *
 * @category layers
 * @since 0.6.0
 */
export const layerKeyValueStore = (
  rawOptions?: KeyValueStoreOptions
): Layer.Layer<Store, InvalidCacheOptions, KeyValueStore.KeyValueStore> =>
  Layer.effect(Store)(Effect.gen(function*() {
    const options = yield* CacheOptions.parse(
      CacheOptions.KeyValueStoreOptions,
      "Store.layerKeyValueStore",
      rawOptions
    )
    const kv = yield* KeyValueStore.KeyValueStore
    return make(KeyValueStoreStore.make(kv, options.prefix ?? "effect-joblib/"), options)
  }))

/**
 * Options of {@link layerRedis}.
 *
 * @category models
 * @since 0.3.0
 */
export interface RedisOptions extends StoreOptions {
  /** Prefix of every key the store writes, so that caches can share a server. Default `"effect-joblib:"`. */
  readonly prefix?: string | undefined
  /** How long to wait for a connection or a reply before failing (a number is millis). Default 2 seconds. */
  readonly timeout?: Duration.Input | undefined
}

/**
 * Keeps entries on a Redis server (`redis://host:port/db`), so that workers
 * on several machines share one cache. Each entry is a hash of its metadata
 * and data; a sorted set records accesses for LRU eviction; locks are keys
 * released by token, expiring on the taker's Clock and on the server. Commands
 * fail fast with `StoreError` while the server is unreachable (no offline
 * queue), and the client keeps reconnecting in the background. A `Redacted`
 * URL keeps its password out of logs; {@link layerRedisConfig} reads it from
 * `Config`.
 *
 * **Example** (A shared cache)
 *
 * ```ts
 * import { Redacted } from "effect"
 * import { Store } from "effect-joblib"
 *
 * const layer = Store.layerRedis(Redacted.make("redis://127.0.0.1:6379/0"), { prefix: "my-pipeline:" })
 * ```
 *
 * @category layers
 * @since 0.3.0
 */
export const layerRedis = (
  rawUrl: string | Redacted.Redacted<string>,
  rawOptions?: RedisOptions
): Layer.Layer<Store, StoreError | InvalidCacheOptions> =>
  Layer.effect(Store)(Effect.gen(function*() {
    const url = yield* CacheOptions.location(
      "Store.layerRedis",
      "url",
      Redacted.isRedacted(rawUrl) ? Redacted.value(rawUrl) : rawUrl
    )
    const options = yield* CacheOptions.parse(CacheOptions.RedisOptions, "Store.layerRedis", rawOptions)
    return make(yield* RedisStore.open(url, options), options)
  }))

/**
 * What {@link layerRedisConfig} reads: the server's URL and the store's options.
 *
 * @category models
 * @since 0.6.0
 */
export interface RedisConfig extends RedisOptions {
  readonly url: string | Redacted.Redacted<string>
}

/**
 * {@link layerRedis} with its URL and options read from `Config`, as
 * Effect's own layers take their secrets: `Config.Redacted("REDIS_URL")`.
 * Any field may be a `Config`, or the whole record one.
 *
 * **Example** (The server from the environment)
 *
 * ```ts
 * import { Config } from "effect"
 * import { Store } from "effect-joblib"
 *
 * const layer = Store.layerRedisConfig({ url: Config.Redacted("REDIS_URL"), prefix: Config.String("CACHE_PREFIX") })
 * ```
 *
 * @category layers
 * @since 0.6.0
 */
export const layerRedisConfig = (
  config: Config.Wrap<RedisConfig>
): Layer.Layer<Store, StoreError | InvalidCacheOptions | Config.ConfigError> =>
  Layer.unwrap(Effect.map(Config.unwrap(config), ({ url, ...options }) => layerRedis(url, options)))
