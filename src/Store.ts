/**
 * Where `Cache` keeps its entries. A store is a service provided by a Layer:
 * in memory, on the filesystem (the default for a cache with a directory),
 * in SQLite (for millions of entries), or in Redis (shared across machines).
 *
 * Every store writes atomically, records accesses itself (never from file
 * atimes) for LRU eviction, offers a lock per key so that concurrent callers
 * in other processes compute a missing entry once, and enforces the size
 * limits it was given.
 *
 * @stability unstable
 * @since 0.3.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as NodePath from "node:path"
import type * as NodeSqlite from "node:sqlite"
import { EntryDamaged, type InvalidCacheOptions, StoreError } from "./CacheError.ts"
import { AccessLog } from "./internal/accessLog.ts"
import { writeFileAtomicallySync } from "./internal/atomicFile.ts"
import * as CacheOptions from "./internal/cacheOptions.ts"
import { connectRedis } from "./internal/redis.ts"

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

/** The data of an entry as one buffer. */
const joined = (data: NewEntry["data"]): Uint8Array => {
  if (data instanceof Uint8Array) return data
  if (data.length === 1) return data[0]!
  let size = 0
  for (const part of data) size += part.length
  const out = new Uint8Array(size)
  let offset = 0
  for (const part of data) {
    out.set(part, offset)
    offset += part.length
  }
  return out
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
  /** Milliseconds since the last access after which an entry is removed. */
  readonly maxAge?: number | undefined
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
   * Takes the lock on `key` for `ttl` milliseconds, or returns undefined when another caller holds it.
   * A lock whose holder died expires after its ttl.
   */
  readonly lock: (key: string, ttl: number) => Effect.Effect<Lock | undefined, StoreError>
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

const KEY = /^[A-Za-z0-9:_-]{1,200}$/

const checkKey = (store: string, operation: string, key: string) =>
  KEY.test(key)
    ? Effect.void
    : Effect.fail(
      new StoreError({
        store,
        operation,
        message: `invalid key ${JSON.stringify(key)}: use letters, digits, ':', '_', '-'`
      })
    )

/** Runs synchronous store code, turning a throw into a StoreError. */
const attempt = <A>(store: string, operation: string, run: () => A) =>
  Effect.try({
    try: run,
    catch: (error) =>
      new StoreError({ store, operation, message: error instanceof Error ? error.message : String(error) })
  })

/** Thrown by a store's readers when what it holds under a key cannot be read back whole. */
class Damaged extends Error {}

/** Reads an entry with `read`, which throws `Damaged` for an entry it cannot read back whole. */
const attemptRead = <A>(store: string, key: string, read: () => A): Effect.Effect<A, StoreError | EntryDamaged> =>
  Effect.try({
    try: read,
    catch: (error) =>
      error instanceof Damaged
        ? new EntryDamaged({ store, key, message: error.message })
        : new StoreError({ store, operation: "get", message: error instanceof Error ? error.message : String(error) })
  })

/** The entries to evict to meet `limits`, least recently used first. */
export const overLimits = (entries: ReadonlyArray<Meta>, limits: Limits, now: number): Array<string> => {
  const evict: Array<string> = []
  const kept: Array<Meta> = []
  for (const meta of entries) {
    if (limits.maxAge !== undefined && now - meta.accessed > limits.maxAge) evict.push(meta.key)
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

/** Removes what is over the limits, through the store's own list and remove. */
const enforce = (shape: Pick<Shape, "list" | "remove">, limits: Limits) =>
  Effect.flatMap(
    shape.list,
    (entries) => Effect.forEach(overLimits(entries, limits, Date.now()), shape.remove, { discard: true })
  )

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
    Effect.map(CacheOptions.parse(CacheOptions.StoreOptions, "Store.layerMemory", options), (options) => {
      const entries = new Map<string, Entry>()
      const locks = new Map<string, { token: string; expires: number }>()
      const shape: Shape = {
        name: "memory",
        get: (key) =>
          Effect.sync(() => {
            const entry = entries.get(key)
            if (entry === undefined) return undefined
            const touched = { meta: { ...entry.meta, accessed: Date.now() }, data: entry.data }
            entries.set(key, touched)
            return touched
          }),
        meta: (key) => Effect.sync(() => entries.get(key)?.meta),
        put: (entry) =>
          Effect.andThen(
            Effect.andThen(
              checkKey("memory", "put", entry.meta.key),
              Effect.sync(() => void entries.set(entry.meta.key, { meta: entry.meta, data: joined(entry.data) }))
            ),
            hasLimits(options?.limits) ? enforce(shape, options.limits) : Effect.void
          ),
        remove: (key) => Effect.sync(() => entries.delete(key)),
        list: Effect.sync(() => Array.from(entries.values(), (entry) => entry.meta)),
        clear: Effect.sync(() => entries.clear()),
        lock: (key, ttl) =>
          Effect.sync(() => {
            const held = locks.get(key)
            if (held !== undefined && held.expires > Date.now()) return undefined
            const token = Crypto.randomUUID()
            locks.set(key, { token, expires: Date.now() + ttl })
            return { release: Effect.sync(() => void (locks.get(key)?.token === token && locks.delete(key))) }
          })
      }
      return shape
    })
  )

const ENTRY_MAGIC = Buffer.from("EJLBC1\n\0", "latin1")

/** The file of an entry: two levels of shards, so that no directory grows huge. */
const entryPath = (root: string, key: string) => {
  const name = key.replaceAll(":", "_")
  const digest = name.length > 4 ? name.slice(-4) : name.padStart(4, "0")
  // Joined by hand: `root` is resolved and a checked key has no separators, and this is on every hit.
  return `${root}${NodePath.sep}${digest.slice(0, 2)}${NodePath.sep}${digest.slice(2, 4)}${NodePath.sep}${name}.entry`
}

/**
 * Writes `bytes` to `path` through a temporary file and a rename, so that readers never see a part.
 * `accessed` (epoch ms) becomes the file's modification time: the filesystem store's access record.
 */
const encodeEntry = (entry: NewEntry): Array<Uint8Array> => {
  const json = JSON.stringify(entry.meta)
  // Padded with spaces so that the data starts 64-byte aligned in the file: views over it need no copy.
  const metaBytes = Buffer.byteLength(json, "utf8")
  const meta = Buffer.from(json + " ".repeat((64 - ((12 + metaBytes) % 64)) % 64), "utf8")
  const length = Buffer.alloc(4)
  length.writeUInt32LE(meta.length)
  return [ENTRY_MAGIC, length, meta, ...(entry.data instanceof Uint8Array ? [entry.data] : entry.data)]
}

/** Parses an entry file; throws `Damaged` when it is not one, or not whole. */
const decodeEntry = (bytes: Uint8Array, key: string): Entry => {
  if (bytes.length < 12) throw new Damaged(`the entry file has ${bytes.length} bytes, too few for its header`)
  if (!ENTRY_MAGIC.equals(bytes.subarray(0, 8))) throw new Damaged("the entry file does not start with its magic")
  const metaLength = (bytes[8]! | (bytes[9]! << 8) | (bytes[10]! << 16) | (bytes[11]! << 24)) >>> 0
  if (12 + metaLength > bytes.length) throw new Damaged("the entry file is cut short in its metadata")
  const meta = parseMetaText(Buffer.from(bytes.buffer, bytes.byteOffset + 12, metaLength).toString("utf8"))
  return checkedEntry(meta, bytes.subarray(12 + metaLength), key)
}

/** Parses an entry's metadata; throws `Damaged` when it is not JSON. */
const parseMetaText = (text: string): Meta => {
  try {
    return JSON.parse(text) as Meta
  } catch {
    throw new Damaged("the entry's metadata is not readable")
  }
}

/** An entry whose metadata names its key and its data's size; throws `Damaged` otherwise. */
const checkedEntry = (meta: Meta, data: Uint8Array, key: string): Entry => {
  if (meta.key !== key) throw new Damaged(`the entry's metadata names another key, ${String(meta.key)}`)
  if (meta.size !== data.length) {
    throw new Damaged(`the entry holds ${data.length} bytes of data where its metadata says ${meta.size}`)
  }
  return { meta, data }
}

const isMissing = (error: unknown) => (error as NodeJS.ErrnoException).code === "ENOENT"

/** Opens a file for reading; undefined when it does not exist. */
const openIfExists = (path: string): number | undefined => {
  try {
    return Fs.openSync(path, "r")
  } catch (error) {
    if (isMissing(error)) return undefined
    throw error
  }
}

/** Small entries are read in one call into this buffer, then copied out. */
const scratch = Buffer.allocUnsafe(64 * 1024)

/** What tells one file from another at the same path: entries are replaced by rename, never in place. */
interface FileIdentity {
  readonly ino: number
  readonly size: number
  readonly ctimeMs: number
}

const sameFile = (stat: FileIdentity, file: FileIdentity) =>
  stat.ino === file.ino && stat.size === file.size && stat.ctimeMs === file.ctimeMs

/** Entries kept in memory by a filesystem store, at most; and only those of this size or less. */
const RECENT_ENTRIES = 4096
const RECENT_BYTES = 16 * 1024 * 1024
const RECENT_ENTRY_BYTES = 64 * 1024
/** Blobs of at least this size are kept by a SQLite store in files beside the database. */
const EXTERNAL_BYTES = 100 * 1024

/** How old a blob file named by no row must be before a SQLite store removes it as left by a crash. */
const ORPHAN_AGE = 10 * 60 * 1000

/** More than a filesystem timestamp's granularity (a kernel tick). */
const RACY_MILLIS = 100

/** Reads a whole entry file, and which file it was; undefined when it does not exist. */
const readEntryFile = (path: string): { readonly bytes: Uint8Array; readonly file: FileIdentity } | undefined => {
  const fd = openIfExists(path)
  if (fd === undefined) return undefined
  try {
    const n = Fs.readSync(fd, scratch, 0, scratch.length, 0)
    const { ino, size, ctimeMs } = Fs.fstatSync(fd)
    const file = { ino, size, ctimeMs }
    if (n < scratch.length) {
      // Copied into a buffer of its own at offset 0, so that the data's 64-byte alignment holds.
      const out = new Uint8Array(n)
      out.set(scratch.subarray(0, n))
      return { bytes: out, file }
    }
    const out = new Uint8Array(size)
    let offset = 0
    while (offset < size) {
      const read = Fs.readSync(fd, out, offset, size - offset, offset)
      if (read === 0) break
      offset += read
    }
    return { bytes: offset === size ? out : out.subarray(0, offset), file }
  } finally {
    Fs.closeSync(fd)
  }
}

/** Whether a process of this machine is alive (a lock left by a dead one can be taken at once). */
const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

/**
 * Keeps entries as files under `directory`: one file per entry (metadata and
 * data together, so that a rename publishes both at once), in two levels of
 * shard directories, with a `.gitignore` at the root as joblib does. Writes
 * go through a temporary file and a rename. Reads record the access time in
 * the entry's modification time, set explicitly and in batches, at most once
 * every 10 seconds per entry. Small entries read lately (up to 16 MB) stay in
 * memory and are served while a `stat` shows their file unchanged. Locks are
 * files created with `O_EXCL`, holding their owner's PID and expiry.
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
    // Best effort: a read-only cache still serves hits.
    const accesses = new AccessLog<string>((batch) => {
      for (const [path, at] of batch) {
        try {
          Fs.utimesSync(path, at / 1000, at / 1000)
        } catch {}
      }
    })
    yield* Effect.addFinalizer(() => Effect.sync(() => accesses.flush()))
    return yield* attempt("filesystem", "open", () => makeFileSystem(directory, options, accesses))
  }))

interface LockHolder {
  readonly token: string
  readonly pid: number
  readonly host: string
  readonly expires: number
}

const lockBody = (token: string, ttl: number) =>
  JSON.stringify({ token, pid: process.pid, host: Os.hostname(), expires: Date.now() + ttl })

/**
 * Creates a lock file whole or not at all: its body goes to a file of its own, which is then linked to the
 * lock's name. A link fails when the name exists, so no one ever reads a half-written lock.
 */
const createLockFile = (path: string, token: string, body: string): boolean => {
  const written = `${path}.${token}.tmp`
  Fs.writeFileSync(written, body)
  try {
    Fs.linkSync(written, path)
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false
    throw error
  } finally {
    Fs.rmSync(written, { force: true })
  }
}

const readLockFile = (path: string): LockHolder | "missing" | "unreadable" => {
  let text: string
  try {
    text = Fs.readFileSync(path, "utf8")
  } catch (error) {
    if (isMissing(error)) return "missing"
    throw error
  }
  try {
    return JSON.parse(text) as LockHolder
  } catch {
    return "unreadable"
  }
}

/** A lock whose holder can no longer be working: past its expiry, or its process gone on this host. */
const staleLock = (holder: LockHolder) =>
  holder.expires < Date.now() || (holder.host === Os.hostname() && !alive(holder.pid))

/** How long one process may take to break a stale lock before others may break its claim. */
const BREAK_TTL = 10_000

/**
 * Removes the stale lock `token` (undefined: an unreadable one) so that waiters can race for it again. One
 * breaker at a time, by a claim file made like a lock, and only if the lock is still the one judged stale:
 * two waiters that both saw it stale never remove a lock that one of them has just taken.
 */
const breakLock = (path: string, token: string | undefined): boolean => {
  const claim = `${path}.break`
  const mine = Crypto.randomUUID()
  if (!createLockFile(claim, mine, lockBody(mine, BREAK_TTL))) {
    // A breaker that died leaves its claim behind: clear it once it is stale, for the next try.
    const breaker = readLockFile(claim)
    if (breaker === "unreadable" || (typeof breaker === "object" && staleLock(breaker))) {
      Fs.rmSync(claim, { force: true })
    }
    return false
  }
  try {
    const current = readLockFile(path)
    if (current === "missing") return true
    if ((current === "unreadable" ? undefined : current.token) !== token) return false
    Fs.rmSync(path, { force: true })
    return true
  } finally {
    Fs.rmSync(claim, { force: true })
  }
}

const makeFileSystem = (
  directory: string,
  options: StoreOptions | undefined,
  accesses: AccessLog<string>
): Shape => {
  const root = NodePath.resolve(directory)
  Fs.mkdirSync(root, { recursive: true })
  const ignore = NodePath.join(root, ".gitignore")
  if (!Fs.existsSync(ignore)) writeFileAtomicallySync(ignore, [Buffer.from("# Created by effect-joblib\n*\n")])
  const store = "filesystem"
  const readMeta = (path: string, key: string): Meta | undefined => {
    const fd = openIfExists(path)
    if (fd === undefined) return undefined
    try {
      const head = Buffer.alloc(12)
      if (Fs.readSync(fd, head, 0, 12, 0) < 12 || !ENTRY_MAGIC.equals(head.subarray(0, 8))) return undefined
      const metaLength = head.readUInt32LE(8)
      const metaBytes = Buffer.alloc(metaLength)
      if (Fs.readSync(fd, metaBytes, 0, metaLength, 12) < metaLength) return undefined
      const meta = JSON.parse(metaBytes.toString("utf8")) as Meta
      const { size, mtimeMs } = Fs.fstatSync(fd)
      if (meta.key !== key || 12 + metaLength + meta.size !== size) return undefined
      return { ...meta, accessed: Math.max(Math.floor(mtimeMs), accesses.lastSeen(path) ?? 0) }
    } catch {
      return undefined
    } finally {
      Fs.closeSync(fd)
    }
  }
  const keyOf = (file: string) => file.slice(0, -".entry".length).replaceAll("_", ":")
  const walk = (visit: (path: string, file: string) => void) => {
    for (const a of Fs.readdirSync(root)) {
      if (a.startsWith(".") || !Fs.statSync(NodePath.join(root, a)).isDirectory()) continue
      for (const b of Fs.readdirSync(NodePath.join(root, a))) {
        const dir = NodePath.join(root, a, b)
        for (const file of Fs.readdirSync(dir)) {
          if (file.endsWith(".entry")) visit(NodePath.join(dir, file), file)
        }
      }
    }
  }
  // Small entries read lately, with the identity of the file they came from: while a `stat` shows the same
  // file (entries are replaced by rename, so a new entry is a new inode with a new ctime), a hit is one system
  // call instead of three. Handed out as copies, so that a caller mutating its result changes nothing here.
  const recent = new Map<string, { readonly file: FileIdentity; readonly entry: Entry }>()
  let recentBytes = 0
  const forgetRecent = (path: string) => {
    const known = recent.get(path)
    if (known === undefined) return
    recent.delete(path)
    recentBytes -= known.entry.data.length
  }
  const remember = (path: string, file: FileIdentity, entry: Entry) => {
    // A file changed just before it was read could change again within the same timestamp tick, unseen by
    // `stat`: only files older than that are remembered (git's "racily clean" rule).
    if (entry.data.length > RECENT_ENTRY_BYTES || Date.now() - file.ctimeMs < RACY_MILLIS) return false
    recent.set(path, { file, entry })
    recentBytes += entry.data.length
    for (const [oldest] of recent) {
      if (recent.size <= RECENT_ENTRIES && recentBytes <= RECENT_BYTES) break
      forgetRecent(oldest)
    }
    return true
  }
  const readFresh = (path: string, key: string): Entry | undefined => {
    const read = readEntryFile(path)
    if (read === undefined) return undefined
    const entry = decodeEntry(read.bytes, key)
    if (entry === undefined || !remember(path, read.file, entry)) return entry
    return { meta: entry.meta, data: entry.data.slice() }
  }
  const shape: Shape = {
    name: store,
    get: (key) =>
      Effect.andThen(
        checkKey(store, "get", key),
        attemptRead(store, key, () => {
          const path = entryPath(root, key)
          let entry: Entry | undefined
          const known = recent.get(path)
          if (known !== undefined) {
            const stat = Fs.statSync(path, { throwIfNoEntry: false })
            if (stat === undefined) forgetRecent(path)
            else if (sameFile(stat, known.file)) entry = { meta: known.entry.meta, data: known.entry.data.slice() }
            else {
              forgetRecent(path)
              entry = readFresh(path, key)
            }
          } else {
            entry = readFresh(path, key)
          }
          if (entry === undefined) return undefined
          const now = Date.now()
          accesses.seen(path, now)
          return { meta: { ...entry.meta, accessed: now }, data: entry.data }
        })
      ),
    meta: (key) =>
      Effect.andThen(checkKey(store, "meta", key), attempt(store, "meta", () => readMeta(entryPath(root, key), key))),
    put: (entry) =>
      Effect.andThen(
        Effect.andThen(
          checkKey(store, "put", entry.meta.key),
          attempt(store, "put", () => {
            const path = entryPath(root, entry.meta.key)
            Fs.mkdirSync(NodePath.dirname(path), { recursive: true })
            writeFileAtomicallySync(path, encodeEntry(entry), entry.meta.accessed)
            accesses.stores(path, entry.meta.accessed)
          })
        ),
        hasLimits(options?.limits) ? enforce(shape, options.limits) : Effect.void
      ),
    remove: (key) =>
      Effect.andThen(
        checkKey(store, "remove", key),
        attempt(store, "remove", () => {
          const path = entryPath(root, key)
          accesses.forget(path)
          forgetRecent(path)
          try {
            Fs.unlinkSync(path)
            return true
          } catch (error) {
            if (isMissing(error)) return false
            throw error
          }
        })
      ),
    list: attempt(store, "list", () => {
      const out: Array<Meta> = []
      walk((path, file) => {
        const meta = readMeta(path, keyOf(file))
        if (meta !== undefined) out.push(meta)
      })
      return out
    }),
    clear: attempt(store, "clear", () => {
      accesses.forgetAll()
      recent.clear()
      recentBytes = 0
      walk((path) => Fs.rmSync(path, { force: true }))
    }),
    lock: (key, ttl) =>
      Effect.andThen(
        checkKey(store, "lock", key),
        attempt(store, "lock", () => {
          const path = `${entryPath(root, key)}.lock`
          Fs.mkdirSync(NodePath.dirname(path), { recursive: true })
          const token = Crypto.randomUUID()
          const body = lockBody(token, ttl)
          for (let attempt = 0; attempt < 2; attempt++) {
            if (createLockFile(path, token, body)) {
              return {
                release: Effect.sync(() => {
                  const held = readLockFile(path)
                  if (typeof held === "object" && held.token === token) Fs.rmSync(path, { force: true })
                })
              }
            }
            // Held: take it over only if its holder died or it expired, and only the lock judged so.
            const holder = readLockFile(path)
            if (holder === "missing") continue
            if (holder !== "unreadable" && !staleLock(holder)) return undefined
            if (!breakLock(path, holder === "unreadable" ? undefined : holder.token)) return undefined
          }
          return undefined
        })
      )
  }
  return shape
}

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
    const store = "sqlite"
    const sqlite = process.getBuiltinModule("node:sqlite") as typeof NodeSqlite | undefined
    if (sqlite === undefined) {
      return yield* new StoreError({
        store,
        operation: "open",
        message: `Store.layerSqlite needs node:sqlite, from Node 22.13 on; this is Node ${process.versions.node}`
      })
    }
    const { DatabaseSync } = sqlite
    const db = yield* Effect.acquireRelease(
      attempt(store, "open", () => {
        if (file !== ":memory:") Fs.mkdirSync(NodePath.dirname(NodePath.resolve(file)), { recursive: true })
        const db = new DatabaseSync(file, { timeout: 5000 })
        // Large pages and a rowid table keep big blobs cheap to write (4× faster than the defaults for 1 MB).
        db.exec(`
          PRAGMA page_size = 65536;
          PRAGMA journal_mode = WAL;
          PRAGMA synchronous = NORMAL;
          CREATE TABLE IF NOT EXISTS entries (
            key TEXT PRIMARY KEY, meta TEXT NOT NULL, data BLOB NOT NULL,
            size INTEGER NOT NULL, accessed INTEGER NOT NULL
          );
          CREATE INDEX IF NOT EXISTS entries_by_access ON entries (accessed);
          CREATE TABLE IF NOT EXISTS locks (key TEXT PRIMARY KEY, token TEXT NOT NULL, expires INTEGER NOT NULL);
        `)
        // Caches made by earlier versions gain the columns added since: an entry's file (big blobs beside the
        // database), and a lock's holder (so that a lock whose process is gone is taken over at once).
        const addColumn = (table: string, column: string, type: string) => {
          const columns = db.prepare(`PRAGMA table_info(${table})`).all() as Array<{ name: string }>
          if (columns.some((existing) => existing.name === column)) return
          try {
            db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`)
          } catch (error) {
            // Another process added it first.
            if (!String(error).includes("duplicate column")) throw error
          }
        }
        addColumn("entries", "file", "TEXT")
        addColumn("locks", "pid", "INTEGER")
        addColumn("locks", "host", "TEXT")
        return db
      }),
      (db) => Effect.sync(() => db.close())
    )
    const statements = yield* attempt(store, "open", () => ({
      get: db.prepare("SELECT meta, data, file FROM entries WHERE key = ?"),
      meta: db.prepare("SELECT meta, accessed FROM entries WHERE key = ?"),
      fileOf: db.prepare("SELECT file FROM entries WHERE key = ?"),
      files: db.prepare("SELECT file FROM entries WHERE file IS NOT NULL"),
      put: db.prepare(
        "INSERT OR REPLACE INTO entries (key, meta, data, size, accessed, file) VALUES (?, ?, ?, ?, ?, ?)"
      ),
      touch: db.prepare("UPDATE entries SET accessed = ? WHERE key = ? AND accessed < ?"),
      remove: db.prepare("DELETE FROM entries WHERE key = ? RETURNING file"),
      list: db.prepare("SELECT meta, accessed FROM entries"),
      totals: db.prepare("SELECT count(*) AS items, coalesce(sum(size), 0) AS bytes FROM entries"),
      oldest: db.prepare("SELECT key, size FROM entries ORDER BY accessed LIMIT ?"),
      expired: db.prepare("DELETE FROM entries WHERE accessed < ? RETURNING file"),
      clear: db.prepare("DELETE FROM entries"),
      lock: db.prepare(
        "INSERT INTO locks (key, token, expires, pid, host) VALUES (?, ?, ?, ?, ?) " +
          "ON CONFLICT (key) DO UPDATE SET token = excluded.token, expires = excluded.expires, pid = excluded.pid, " +
          "host = excluded.host WHERE locks.expires < ?"
      ),
      holder: db.prepare("SELECT token, pid, host FROM locks WHERE key = ?"),
      // Takes over the lock `token` held: one caller wins, since the first changes the token.
      takeOver: db.prepare("UPDATE locks SET token = ?, expires = ?, pid = ?, host = ? WHERE key = ? AND token = ?"),
      unlock: db.prepare("DELETE FROM locks WHERE key = ? AND token = ?")
    }))
    // Big blobs live in files beside the database, named in the row: SQLite would write each twice (its log,
    // then the database), and measures external files as faster from about 100 KB
    // (https://www.sqlite.org/intern-v-extern-blob.html). The rows still say which entries exist.
    const blobs = file === ":memory:" ? undefined : `${NodePath.resolve(file)}.blobs`
    const dropBlob = (name: string | null | undefined) => {
      if (name != null && blobs !== undefined) Fs.rmSync(NodePath.join(blobs, name), { force: true })
    }
    const readBlob = (name: string): Uint8Array | undefined => {
      try {
        const bytes = Fs.readFileSync(NodePath.join(blobs!, name))
        return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length)
      } catch (error) {
        if (isMissing(error)) return undefined
        throw error
      }
    }
    // Files a crash left behind (written but never named by a row, or unnamed but not yet removed) go when a
    // store opens, once old enough that no writer can still be about to name them. At most once per
    // `ORPHAN_AGE` across processes (a marker file's time says when), so that opening a big cache in every
    // worker does not walk its files each time.
    if (blobs !== undefined && Fs.existsSync(blobs)) {
      yield* attempt(store, "open", () => {
        const marker = NodePath.join(blobs, ".swept")
        const before = Date.now() - ORPHAN_AGE
        if ((Fs.statSync(marker, { throwIfNoEntry: false })?.mtimeMs ?? 0) >= before) return
        Fs.writeFileSync(marker, "")
        const named = new Set((statements.files.all() as Array<{ file: string }>).map((row) => row.file))
        for (const name of Fs.readdirSync(blobs)) {
          if (name.startsWith(".") || named.has(name)) continue
          const path = NodePath.join(blobs, name)
          const stat = Fs.statSync(path, { throwIfNoEntry: false })
          if (stat !== undefined && stat.mtimeMs < before) Fs.rmSync(path, { force: true })
        }
      })
    }
    const accesses = new AccessLog<string>((batch) => {
      db.exec("BEGIN")
      try {
        for (const [key, at] of batch) statements.touch.run(at, key, at)
        db.exec("COMMIT")
      } catch (error) {
        db.exec("ROLLBACK")
        throw error
      }
    })
    yield* Effect.addFinalizer(() => Effect.sync(() => accesses.flush()).pipe(Effect.ignore))
    const parseMeta = (row: { meta: string; accessed: number }): Meta | undefined => {
      try {
        const meta = JSON.parse(row.meta) as Meta
        return { ...meta, accessed: Math.max(row.accessed, accesses.lastSeen(meta.key) ?? 0) }
      } catch {
        return undefined
      }
    }
    const limits = options?.limits
    const enforceSql = () => {
      if (!hasLimits(limits)) return
      if (limits.maxAge !== undefined) {
        for (const row of statements.expired.all(Date.now() - limits.maxAge) as Array<{ file: string | null }>) {
          dropBlob(row.file)
        }
      }
      const { items, bytes } = statements.totals.get() as { items: number; bytes: number }
      let overItems = limits.maxItems === undefined ? 0 : items - limits.maxItems
      let overBytes = limits.maxBytes === undefined ? 0 : bytes - limits.maxBytes
      if (overItems <= 0 && overBytes <= 0) return
      accesses.flush(true)
      const rows = statements.oldest.all(Math.max(overItems, 64)) as Array<{ key: string; size: number }>
      for (const row of rows) {
        if (overItems <= 0 && overBytes <= 0) break
        remove(row.key)
        overItems--
        overBytes -= row.size
      }
    }
    const remove = (key: string) => {
      accesses.forget(key)
      const rows = statements.remove.all(key) as Array<{ file: string | null }>
      for (const row of rows) dropBlob(row.file)
      return rows.length > 0
    }
    /** The entry of `key`; undefined without a row; `missing` when its row names a data file that is gone. */
    const read = (key: string): Entry | undefined | typeof missing => {
      const row = statements.get.get(key) as { meta: string; data: Uint8Array; file: string | null } | undefined
      if (row === undefined) return undefined
      const meta = parseMetaText(row.meta)
      const data = row.file === null ? row.data : readBlob(row.file)
      if (data === undefined) return missing
      return checkedEntry(meta, data, key)
    }
    const missing = Symbol("missing")
    const shape: Shape = {
      name: store,
      get: (key) =>
        attemptRead(store, key, () => {
          // A blob file gone between the row and the read was replaced by another process: read the row again.
          let entry = read(key)
          if (entry === missing) entry = read(key)
          if (entry === missing) throw new Damaged("the entry's data file is missing")
          if (entry === undefined) return undefined
          const now = Date.now()
          accesses.seen(key, now)
          return { meta: { ...entry.meta, accessed: now }, data: entry.data }
        }),
      meta: (key) =>
        attempt(store, "meta", () => {
          const row = statements.meta.get(key) as { meta: string; accessed: number } | undefined
          return row === undefined ? undefined : parseMeta(row)
        }),
      put: (entry) =>
        Effect.andThen(
          checkKey(store, "put", entry.meta.key),
          attempt(store, "put", () => {
            const meta = entry.meta
            const parts = entry.data instanceof Uint8Array ? [entry.data] : entry.data
            const size = parts.reduce((sum, part) => sum + part.length, 0)
            let name: string | null = null
            if (blobs !== undefined && size >= EXTERNAL_BYTES) {
              Fs.mkdirSync(blobs, { recursive: true })
              name = `${meta.key.replaceAll(":", "_")}.${Crypto.randomBytes(8).toString("hex")}`
              writeFileAtomicallySync(NodePath.join(blobs, name), parts)
            }
            const old = (statements.fileOf.get(meta.key) as { file: string | null } | undefined)?.file
            try {
              statements.put.run(
                meta.key,
                JSON.stringify(meta),
                name === null ? joined(parts) : new Uint8Array(0),
                size,
                meta.accessed,
                name
              )
            } catch (error) {
              dropBlob(name)
              throw error
            }
            if (old !== name) dropBlob(old)
            accesses.stores(meta.key, meta.accessed)
            enforceSql()
          })
        ),
      remove: (key) => attempt(store, "remove", () => remove(key)),
      list: attempt(store, "list", () => {
        const out: Array<Meta> = []
        for (const row of statements.list.all() as Array<{ meta: string; accessed: number }>) {
          const meta = parseMeta(row)
          if (meta !== undefined) out.push(meta)
        }
        return out
      }),
      clear: attempt(store, "clear", () => {
        statements.clear.run()
        accesses.forgetAll()
        if (blobs !== undefined && Fs.existsSync(blobs)) {
          for (const name of Fs.readdirSync(blobs)) Fs.rmSync(NodePath.join(blobs, name), { force: true })
        }
      }),
      lock: (key, ttl) =>
        attempt(store, "lock", () => {
          const token = Crypto.randomUUID()
          const now = Date.now()
          const host = Os.hostname()
          const release = { release: Effect.sync(() => void statements.unlock.run(key, token)).pipe(Effect.ignore) }
          if (statements.lock.run(key, token, now + ttl, process.pid, host, now).changes > 0) return release
          // Held and not expired: a holder whose process is gone on this host is taken over at once.
          const holder = statements.holder.get(key) as
            | { token: string; pid: number | null; host: string | null }
            | undefined
          if (holder === undefined || holder.pid === null || holder.host !== host || alive(holder.pid)) return undefined
          const taken = statements.takeOver.run(token, now + ttl, process.pid, host, key, holder.token).changes > 0
          return taken ? release : undefined
        })
    }
    return shape
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
  /** Milliseconds to wait for a connection or a reply before failing. Default 2000. */
  readonly timeout?: number | undefined
}

const toBuffer = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length)

const unlockScript = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"

/**
 * Keeps entries on a Redis server (`redis://host:port/db`), so that workers
 * on several machines share one cache. Each entry is a hash of its metadata
 * and data; a sorted set records accesses for LRU eviction; locks are
 * `SET NX PX` keys released by token. Commands fail fast with `StoreError`
 * while the server is unreachable (no offline queue), and the client keeps
 * reconnecting in the background.
 *
 * **Example** (A shared cache)
 *
 * ```ts
 * import { Store } from "effect-joblib"
 *
 * const layer = Store.layerRedis("redis://127.0.0.1:6379/0", { prefix: "my-pipeline:" })
 * ```
 *
 * @category layers
 * @since 0.3.0
 */
export const layerRedis = (
  rawUrl: string,
  rawOptions?: RedisOptions
): Layer.Layer<Store, StoreError | InvalidCacheOptions> =>
  Layer.effect(Store)(Effect.gen(function*() {
    const url = yield* CacheOptions.location("Store.layerRedis", "url", rawUrl)
    const options = yield* CacheOptions.parse(CacheOptions.RedisOptions, "Store.layerRedis", rawOptions)
    const store = "redis"
    const prefix = options?.prefix ?? "effect-joblib:"
    const timeout = options?.timeout ?? 2000
    const request = <A>(operation: string, run: () => Promise<A>) =>
      Effect.tryPromise({
        try: run,
        catch: (error) =>
          new StoreError({ store, operation, message: error instanceof Error ? error.message : String(error) })
      })
    /** Runs a pipeline or transaction; its commands report errors in their replies, not by rejecting. */
    const exec = (operation: string, run: () => Promise<Array<[Error | null, unknown]> | null>) =>
      Effect.flatMap(request(operation, run), (replies) => {
        const failed = replies === null
          ? new Error("the transaction was aborted")
          : replies.find(([error]) => error)?.[0]
        return failed
          ? Effect.fail(new StoreError({ store, operation, message: failed.message }))
          : Effect.succeed((replies ?? []).map(([, reply]) => reply))
      })
    const client = yield* connectRedis({
      url,
      feature: "Store.layerRedis",
      install: "ioredis",
      timeout,
      mode: "failFast",
      commandTimeout: true
    }).pipe(
      Effect.mapError((failure) =>
        new StoreError({
          store,
          operation: failure.reason === "Unreachable" ? "connect" : "open",
          message: failure.message
        })
      )
    )
    const entryKey = (key: string) => `${prefix}entry:${key}`
    const accessKey = `${prefix}access`
    const parse = (key: string, fields: Record<string, Buffer> | null): Entry | undefined => {
      if (fields === null) return undefined
      if (fields.meta === undefined || fields.data === undefined) {
        throw new Damaged(`the entry lacks its ${fields.meta === undefined ? "metadata" : "data"}`)
      }
      const meta = parseMetaText(fields.meta.toString("utf8"))
      return checkedEntry(meta, new Uint8Array(fields.data.buffer, fields.data.byteOffset, fields.data.length), key)
    }
    const metaOf = Effect.fnUntraced(function*(keys: ReadonlyArray<string>) {
      if (keys.length === 0) return [] as Array<Meta>
      const pipeline = client.pipeline()
      for (const key of keys) pipeline.hget(entryKey(key), "meta")
      pipeline.zmscore(accessKey, ...keys)
      const replies = yield* exec("list", () => pipeline.exec())
      const scores = (replies.at(-1) ?? []) as Array<string | null>
      const out: Array<Meta> = []
      keys.forEach((_key, i) => {
        const raw = replies[i] as string | null | undefined
        if (raw === null || raw === undefined) return
        try {
          const meta = JSON.parse(raw) as Meta
          out.push({ ...meta, accessed: Number(scores[i] ?? meta.accessed) })
        } catch {}
      })
      return out
    })
    const shape: Shape = {
      name: store,
      get: (key) =>
        Effect.andThen(
          checkKey(store, "get", key),
          Effect.gen(function*() {
            const now = Date.now()
            const replies = yield* exec(
              "get",
              () => client.pipeline().hgetallBuffer(entryKey(key)).zadd(accessKey, "XX", String(now), key).exec()
            )
            const fields = replies[0] as Record<string, Buffer> | null
            const entry = yield* attemptRead(
              store,
              key,
              () => parse(key, fields && Object.keys(fields).length > 0 ? fields : null)
            )
            return entry === undefined ? undefined : { meta: { ...entry.meta, accessed: now }, data: entry.data }
          })
        ),
      meta: (key) => Effect.andThen(checkKey(store, "meta", key), Effect.map(metaOf([key]), (metas) => metas[0])),
      put: (entry) =>
        Effect.andThen(
          Effect.andThen(
            checkKey(store, "put", entry.meta.key),
            exec("put", () =>
              client.multi()
                .hset(
                  entryKey(entry.meta.key),
                  "meta",
                  JSON.stringify(entry.meta),
                  "data",
                  toBuffer(joined(entry.data))
                )
                .zadd(accessKey, String(entry.meta.accessed), entry.meta.key)
                .exec())
          ),
          hasLimits(options?.limits) ? enforce(shape, options.limits) : Effect.void
        ),
      remove: (key) =>
        Effect.map(
          exec("remove", () => client.multi().del(entryKey(key)).zrem(accessKey, key).exec()),
          (replies) => Number(replies[0] ?? 0) > 0
        ),
      list: Effect.flatMap(request("list", () => client.zrange(accessKey, "0", "-1")), metaOf),
      clear: Effect.gen(function*() {
        const keys = yield* request("clear", () => client.zrange(accessKey, "0", "-1"))
        for (let i = 0; i < keys.length; i += 500) {
          const chunk = keys.slice(i, i + 500)
          yield* request("clear", () => client.del(...chunk.map(entryKey)))
        }
        yield* request("clear", () => client.del(accessKey))
      }),
      lock: (key, ttl) =>
        Effect.andThen(
          checkKey(store, "lock", key),
          Effect.gen(function*() {
            const token = Crypto.randomUUID()
            const lockKey = `${prefix}lock:${key}`
            const taken = yield* request("lock", () => client.set(lockKey, token, "PX", Math.max(1, ttl), "NX"))
            if (taken !== "OK") return undefined
            return {
              release: request("unlock", () => client.eval(unlockScript, 1, lockKey, token)).pipe(Effect.ignore)
            }
          })
        )
    }
    return shape
  }))
