import { NodeServices } from "@effect/platform-node"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Clock, Config, ConfigProvider, Context, Duration, Effect, Layer } from "effect"
import { KeyValueStore } from "effect/persistence"
import { TestClock } from "effect/testing"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { DatabaseSync } from "node:sqlite"
import { Cache, CacheError, Store } from "../src/index.ts"
import { hasRedis, startRedis } from "./redisServer.ts"
import { conformance, fullDiskSuite } from "./StoreSuite.ts"
import { tmpfs } from "./tmpfs.ts"

/** Builds a store layer in the test's scope, so that its resources live as long as the test. */
const open = <E>(layer: Layer.Layer<Store.Store, E>) => Effect.map(Layer.build(layer), Context.get(Store.Store))

const tmp = () => Fs.mkdtempSync(Path.join(Os.tmpdir(), "ejl-store-"))

// A store of one's own, from primitives: Store.make adds the key checks and the limits.
const ownStore = (limits?: Store.Limits) =>
  Layer.sync(Store.Store)(() => {
    const entries = new Map<string, Store.Entry>()
    const locks = new Map<string, number>()
    return Store.make({
      name: "own",
      get: (key) =>
        Effect.map(Clock.currentTimeMillis, (now) => {
          const entry = entries.get(key)
          if (entry === undefined) return undefined
          const touched = { meta: { ...entry.meta, accessed: now }, data: entry.data }
          entries.set(key, touched)
          return touched
        }),
      meta: (key) => Effect.sync(() => entries.get(key)?.meta),
      put: (entry) =>
        Effect.sync(() => {
          const data = entry.data instanceof Uint8Array ? entry.data : new Uint8Array(Buffer.concat(entry.data))
          entries.set(entry.meta.key, { meta: entry.meta, data })
        }),
      remove: (key) => Effect.sync(() => entries.delete(key)),
      list: Effect.sync(() => Array.from(entries.values(), (entry) => entry.meta)),
      clear: Effect.sync(() => entries.clear()),
      lock: (key, ttl) =>
        Effect.map(Clock.currentTimeMillis, (now) => {
          if ((locks.get(key) ?? 0) > now) return undefined
          const expires = now + Duration.toMillis(ttl)
          locks.set(key, expires)
          return { release: Effect.sync(() => void (locks.get(key) === expires && locks.delete(key))) }
        })
    }, limits === undefined ? undefined : { limits })
  })
conformance("Store.layerMemory", (limits) => Store.layerMemory(limits && { limits }))
conformance("Store.layerFileSystem", (limits) => Store.layerFileSystem(tmp(), limits && { limits }))
conformance("Store.layerSqlite", (limits) => Store.layerSqlite(Path.join(tmp(), "cache.sqlite"), limits && { limits }))
conformance("Store.make (a store of one's own)", ownStore)
conformance(
  "Store.layerKeyValueStore over KeyValueStore.layerMemory",
  (limits) => Store.layerKeyValueStore(limits && { limits }).pipe(Layer.provide(KeyValueStore.layerMemory))
)
conformance(
  "Store.layerKeyValueStore over KeyValueStore.layerFileSystem",
  (limits) =>
    Store.layerKeyValueStore(limits && { limits }).pipe(
      Layer.provide(KeyValueStore.layerFileSystem(tmp())),
      Layer.provide(NodeServices.layer)
    )
)
/** Files anywhere under `dir` that a store must not leave: temp files, and lock or lock-claim files. */
const strayFiles = (dir: string) =>
  Fs.existsSync(dir)
    ? files(dir).filter((file) => /\.(tmp|lock|break)$/.test(file) || /\.tmp\b/.test(file))
    : []

fullDiskSuite("Store.layerFileSystem", (dir, options) => Cache.layerFileSystem(dir, options), strayFiles, true)

/**
 * A user's own store over files, made with Store.make as the README shows: each entry a data file and a metadata
 * file written whole (a temp file, then a rename) with Node's file API, locks in memory. It meets the full-disk
 * cases too.
 */
const userFileStore = (dir: string) =>
  Layer.sync(Store.Store)(() => {
    const locks = new Map<string, number>()
    const path = (key: string) => Path.join(dir, key.replaceAll(":", "_"))
    const io = <A>(operation: string, run: () => A) =>
      Effect.try({
        try: run,
        catch: (cause) => new CacheError.StoreError({ store: "mine", operation, message: String(cause), cause })
      })
    const writeWhole = (file: string, data: Uint8Array | string) => {
      const temporary = `${file}.${process.pid}.tmp`
      try {
        Fs.writeFileSync(temporary, data)
        Fs.renameSync(temporary, file)
      } catch (error) {
        Fs.rmSync(temporary, { force: true })
        throw error
      }
    }
    const readMeta = (key: string) =>
      Fs.existsSync(`${path(key)}.meta`)
        ? JSON.parse(Fs.readFileSync(`${path(key)}.meta`, "utf8")) as Store.Meta
        : undefined
    return Store.make({
      name: "mine",
      get: (key) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) =>
          io("get", () => {
            const meta = readMeta(key)
            return meta === undefined ? undefined : {
              meta: { ...meta, accessed: now },
              data: new Uint8Array(Fs.readFileSync(path(key)))
            }
          })),
      meta: (key) => io("meta", () => readMeta(key)),
      put: (entry) =>
        io("put", () => {
          const data = entry.data instanceof Uint8Array ? entry.data : new Uint8Array(Buffer.concat(entry.data))
          writeWhole(path(entry.meta.key), data)
          writeWhole(`${path(entry.meta.key)}.meta`, JSON.stringify(entry.meta))
        }),
      remove: (key) => io("remove", () => Fs.existsSync(`${path(key)}.meta`) && (Fs.rmSync(`${path(key)}.meta`), true)),
      list: io("list", () =>
        Fs.readdirSync(dir).filter((file) =>
          file.endsWith(".meta")
        ).map((file) => JSON.parse(Fs.readFileSync(Path.join(dir, file), "utf8")) as Store.Meta)),
      clear: io("clear", () =>
        Fs.rmSync(dir, { recursive: true, force: true })),
      lock: (key, ttl) =>
        Effect.map(Clock.currentTimeMillis, (now) => {
          if ((locks.get(key) ?? 0) > now) {
            return undefined
          }
          const expires = now + Duration.toMillis(ttl)
          locks.set(key, expires)
          return {
            release: Effect.sync(() =>
              void (locks.get(key) === expires && locks.delete(key))
            )
          }
        })
    })
  })
fullDiskSuite(
  "Store.make (a user's store over files)",
  (dir, options) => {
    Fs.mkdirSync(dir, { recursive: true })
    return Cache.layer(options).pipe(Layer.provide(userFileStore(dir)))
  },
  strayFiles,
  true
)
fullDiskSuite(
  "Store.layerSqlite",
  (dir, options) => Cache.layerSqlite(Path.join(dir, "cache.sqlite"), options),
  (dir) => {
    const file = Path.join(dir, "cache.sqlite")
    if (!Fs.existsSync(file)) return strayFiles(dir)
    const db = new DatabaseSync(file, { readOnly: true })
    try {
      const locks = (db.prepare("SELECT key FROM locks").all() as Array<{ key: string }>).map((row) =>
        `lock ${row.key}`
      )
      const named = new Set(
        (db.prepare("SELECT file FROM entries WHERE file IS NOT NULL").all() as Array<{ file: string }>)
          .map((row) => row.file)
      )
      const blobs = Path.join(dir, "cache.sqlite.blobs")
      const orphans = Fs.existsSync(blobs)
        ? Fs.readdirSync(blobs).filter((name) => !name.startsWith(".") && !named.has(name)).map((name) =>
          `blob ${name}`
        )
        : []
      return [...strayFiles(dir), ...locks, ...orphans]
    } finally {
      db.close()
    }
  }
)

// The server is started here and stopped after the file; CI installs redis-server.
const redis = hasRedis ? await startRedis() : undefined
afterAll(() => redis?.stop())
if (redis !== undefined) {
  let db = 0
  // One prefix per layer: suites must not see each other's entries.
  conformance("Store.layerRedis", (limits) => Store.layerRedis(redis.url, { prefix: `suite-${db++}:`, limits }))
  // The URL a Redacted read from Config, as an application reads its secrets from the environment.
  conformance("Store.layerRedisConfig", (limits) =>
    Store.layerRedisConfig({
      url: Config.Redacted("REDIS_URL"),
      prefix: Config.String("CACHE_PREFIX"),
      ...(limits === undefined ? {} : { limits: Config.succeed(limits) })
    }).pipe(
      Layer.provide(ConfigProvider.layer(
        ConfigProvider.fromUnknown({ REDIS_URL: redis.url, CACHE_PREFIX: `config-suite-${db++}:` })
      ))
    ))
  describe("Store.layerRedisConfig", () => {
    it.effect("a missing variable is a ConfigError naming it, before any connection", () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(Effect.scoped(Layer.build(
          Store.layerRedisConfig({ url: Config.Redacted("REDIS_URL_MISSING") }).pipe(
            Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({})))
          )
        )))
        assert.strictEqual(error._tag, "ConfigError")
        assert.include(String(error), "REDIS_URL_MISSING")
      }))
  })
}

const entry = (key: string, text: string): Store.Entry => {
  const data = new TextEncoder().encode(text)
  const now = Date.now()
  return { meta: { key, function: "f", size: data.length, duration: 1, created: now, accessed: now, input: "" }, data }
}

const files = (dir: string): Array<string> =>
  Fs.readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => Path.relative(dir, Path.join(entry.parentPath, entry.name)))

describe("Store.layerKeyValueStore", () => {
  const kvLayer = KeyValueStore.layerMemory
  const put = (store: Store.Shape, key: string, text: string) => {
    const data = new TextEncoder().encode(text)
    return store.put({
      meta: { key, function: "f", size: data.length, duration: 1, created: 0, accessed: 0, input: "()" },
      data
    })
  }

  it.effect("clear removes its prefix only; a torn value reads as damaged; a Cache memoizes into it", () =>
    Effect.gen(function*() {
      const kv = yield* KeyValueStore.KeyValueStore
      yield* kv.set("someone-else", "theirs")
      const store = yield* open(
        Store.layerKeyValueStore({ prefix: "cache/" }).pipe(Layer.provide(Layer.succeed(
          KeyValueStore.KeyValueStore,
          kv
        )))
      )
      yield* put(store, "xxh128:a", "one")
      assert.strictEqual(new TextDecoder().decode((yield* store.get("xxh128:a"))!.data), "one")
      // A write torn by a crash: the entry value cut short.
      const whole = (yield* kv.getUint8Array("cache/e:xxh128:a"))!
      yield* kv.set("cache/e:xxh128:a", whole.subarray(0, whole.length - 1))
      const damaged = yield* Effect.flip(store.get("xxh128:a"))
      assert.strictEqual(damaged._tag, "EntryDamaged")
      yield* store.clear
      assert.deepStrictEqual(yield* kv.keys, ["someone-else"])
      let calls = 0
      const square = (n: number) => Effect.sync(() => (calls++, n * n))
      const cached = Cache.memoize(square, { name: "square" })
      const results = yield* Effect.all([cached(4), cached(4)]).pipe(
        Effect.provide(Cache.layer().pipe(Layer.provide(Layer.succeed(Store.Store, store))))
      )
      assert.deepStrictEqual(results, [16, 16])
      assert.strictEqual(calls, 1)
    }).pipe(Effect.provide(kvLayer), Effect.scoped))
})

describe("Store.overLimits", () => {
  it("picks expired entries, then the least recently used until under budget", () => {
    const now = 10_000
    const metas = [1, 2, 3, 4].map((i) => ({ ...entry(`xxh128:k${i}`, "12345").meta, accessed: now - i * 100 }))
    assert.deepStrictEqual(Store.overLimits(metas, { maxItems: 2 }, now), ["xxh128:k4", "xxh128:k3"])
    assert.deepStrictEqual(Store.overLimits(metas, { maxBytes: 12 }, now), ["xxh128:k4", "xxh128:k3"])
    assert.deepStrictEqual(Store.overLimits(metas, { maxAge: 250 }, now), ["xxh128:k3", "xxh128:k4"])
  })
})

describe("Store.layerFileSystem faults", () => {
  it.effect("writes a .gitignore, and one sharded file per entry", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const store = yield* open(Store.layerFileSystem(dir))
      yield* store.put(entry("xxh128:0123abcd", "x"))
      assert.strictEqual(Fs.readFileSync(Path.join(dir, ".gitignore"), "utf8").trim().split("\n").at(-1), "*")
      assert.deepStrictEqual(files(dir).sort(), [".gitignore", Path.join("ab", "cd", "xxh128_0123abcd.entry")])
    }))

  it.effect("a corrupt or truncated entry is EntryDamaged, never data", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const store = yield* open(Store.layerFileSystem(dir))
      yield* store.put(entry("xxh128:00aa", "hello world"))
      const file = Path.join(dir, "00", "aa", "xxh128_00aa.entry")
      const whole = Fs.readFileSync(file)
      const damagedAs = function*(bytes: Uint8Array | string, what: string, reason: string) {
        Fs.writeFileSync(file, bytes)
        const error = yield* Effect.flip(store.get("xxh128:00aa"))
        assert.instanceOf(error, CacheError.EntryDamaged, what)
        assert.strictEqual((error as CacheError.EntryDamaged).key, "xxh128:00aa")
        assert.include(error.message, reason, what)
      }
      yield* damagedAs(whole.subarray(0, whole.length - 3), "truncated", "bytes of data where its metadata says")
      const flipped = Buffer.from(whole)
      flipped[20]! ^= 0xff
      yield* damagedAs(flipped, "damaged metadata", "metadata")
      yield* damagedAs("not an entry", "garbage", "does not start with its magic")
      yield* damagedAs("tiny", "cut in its header", "too few for its header")
      Fs.rmSync(file)
      assert.isUndefined(yield* store.get("xxh128:00aa"), "a missing entry is a miss")
    }))

  it.effect("a read-only directory gives a StoreError on write, and hits are still served", () =>
    Effect.gen(function*() {
      const dir = yield* tmpfs("size=1m")
      yield* Effect.flatMap(open(Store.layerFileSystem(dir)), (store) => store.put(entry("xxh128:11bb", "kept")))
      ChildProcess.execFileSync("mount", ["-o", "remount,ro", dir])
      const store = yield* open(Store.layerFileSystem(dir))
      const error = yield* Effect.flip(store.put(entry("xxh128:22cc", "new")))
      assert.instanceOf(error, CacheError.StoreError)
      assert.strictEqual(error.operation, "put")
      assert.strictEqual(new TextDecoder().decode((yield* store.get("xxh128:11bb"))!.data), "kept")
      ChildProcess.execFileSync("mount", ["-o", "remount,rw", dir])
    }))

  it.effect("a full disk gives a StoreError and leaves no partial entry or temp file", () =>
    Effect.gen(function*() {
      const dir = yield* tmpfs("size=64k")
      const store = yield* open(Store.layerFileSystem(dir))
      const error = yield* Effect.flip(store.put(entry("xxh128:33dd", "x".repeat(200_000))))
      assert.instanceOf(error, CacheError.StoreError)
      assert.deepStrictEqual(files(dir), [".gitignore"])
      assert.isUndefined(yield* store.get("xxh128:33dd"))
    }))

  it.live("hits served from memory follow the file: replaced by another store, changed in place, removed", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const reader = yield* open(Store.layerFileSystem(dir))
      const writer = yield* open(Store.layerFileSystem(dir))
      const read = Effect.map(reader.get("xxh128:55ff"), (e) => e && new TextDecoder().decode(e.data))
      const file = Path.join(dir, "55", "ff", "xxh128_55ff.entry")
      yield* writer.put(entry("xxh128:55ff", "first"))
      // Past a timestamp tick, so that the reader keeps what it reads.
      yield* Effect.sleep(150)
      assert.strictEqual(yield* read, "first")
      assert.strictEqual(yield* read, "first")
      yield* writer.put(entry("xxh128:55ff", "other")) // the same size
      assert.strictEqual(yield* read, "other")
      yield* Effect.sleep(150)
      assert.strictEqual(yield* read, "other")
      const bytes = Fs.readFileSync(file)
      bytes[bytes.length - 1] = "!".charCodeAt(0)
      Fs.writeFileSync(file, bytes) // the same file and size
      assert.strictEqual(yield* read, "othe!")
      yield* writer.remove("xxh128:55ff")
      assert.isUndefined(yield* read)
    }))

  it.live("a hit's data is the caller's own: changing it changes no later hit", () =>
    Effect.gen(function*() {
      const store = yield* open(Store.layerFileSystem(tmp()))
      yield* store.put(entry("xxh128:66aa", "kept"))
      yield* Effect.sleep(150)
      for (let i = 0; i < 3; i++) {
        const hit = yield* store.get("xxh128:66aa")
        assert.strictEqual(new TextDecoder().decode(hit!.data), "kept")
        hit!.data.fill(0)
      }
    }))

  it.effect("a lock left by a dead process is taken over at once", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const store = yield* open(Store.layerFileSystem(dir))
      const dead = ChildProcess.spawnSync(process.execPath, ["-e", "console.log(process.pid)"], { encoding: "utf8" })
      const pid = Number(dead.stdout.trim())
      const lockFile = Path.join(dir, "ee", "ff", "xxh128_44eeff.entry.lock")
      Fs.mkdirSync(Path.dirname(lockFile), { recursive: true })
      Fs.writeFileSync(
        lockFile,
        JSON.stringify({ token: "t", pid, host: Os.hostname(), expires: Date.now() + 600_000 })
      )
      const lock = yield* store.lock("xxh128:44eeff", 60_000)
      assert.isDefined(lock)
      yield* lock!.release
      assert.isFalse(Fs.existsSync(lockFile))
    }))
})

describe("Store.layerSqlite faults", () => {
  it.effect("a damaged database file is a StoreError when the layer is built", () =>
    Effect.gen(function*() {
      const file = Path.join(tmp(), "cache.sqlite")
      Fs.writeFileSync(file, "this is not a database, just text long enough to look like a header".repeat(20))
      const error = yield* Effect.flip(open(Store.layerSqlite(file)))
      assert.instanceOf(error, CacheError.StoreError)
      assert.strictEqual(error.store, "sqlite")
    }))

  it.effect("big entries live in files beside the database, and replacing, evicting or clearing them leaves none", () =>
    Effect.gen(function*() {
      const file = Path.join(tmp(), "cache.sqlite")
      const blobs = `${file}.blobs`
      const store = yield* open(Store.layerSqlite(file, { limits: { maxItems: 2 } }))
      yield* TestClock.setTime(1_700_000_000_000)
      const now = yield* Clock.currentTimeMillis
      const big = (key: string, fill: number, accessed = now): Store.Entry => ({
        meta: { key, function: "f", size: 300_000, duration: 1, created: accessed, accessed, input: "" },
        data: new Uint8Array(300_000).fill(fill)
      })
      yield* store.put(big("xxh128:b1", 1, now - 3000))
      assert.strictEqual(Fs.readdirSync(blobs).length, 1)
      const db = new DatabaseSync(file)
      const row = db.prepare("SELECT length(data) AS bytes, file FROM entries").get()
      db.close()
      assert.deepStrictEqual({ ...row }, { bytes: 0, file: Fs.readdirSync(blobs)[0]! }, "not in the database")
      yield* store.put(big("xxh128:b1", 2, now - 3000)) // replaced
      assert.strictEqual(Fs.readdirSync(blobs).length, 1)
      const read = yield* store.get("xxh128:b1")
      assert.strictEqual(read!.data.length, 300_000)
      assert.isTrue(read!.data.every((byte) => byte === 2))
      yield* store.put(big("xxh128:b2", 3, now - 2000))
      yield* store.put(entry("xxh128:b3", "small")) // over maxItems: the least recently used, b2, goes
      assert.deepStrictEqual((yield* store.list).map((meta) => meta.key).sort(), ["xxh128:b1", "xxh128:b3"])
      assert.strictEqual(Fs.readdirSync(blobs).length, 1)
      assert.isTrue(yield* store.remove("xxh128:b1"))
      assert.deepStrictEqual(Fs.readdirSync(blobs), [])
      yield* store.put(big("xxh128:b4", 4))
      yield* store.clear
      assert.deepStrictEqual(Fs.readdirSync(blobs), [])
    }))

  it.effect("a missing or truncated blob file is EntryDamaged; files a crash left are swept on open", () =>
    Effect.gen(function*() {
      const file = Path.join(tmp(), "cache.sqlite")
      const blobs = `${file}.blobs`
      const store = yield* open(Store.layerSqlite(file))
      const big = (key: string): Store.Entry => ({
        meta: { key, function: "f", size: 200_000, duration: 1, created: 1, accessed: 1, input: "" },
        data: new Uint8Array(200_000).fill(7)
      })
      yield* store.put(big("xxh128:c1"))
      const [name] = Fs.readdirSync(blobs)
      Fs.truncateSync(Path.join(blobs, name!), 1000)
      const truncated = yield* Effect.flip(store.get("xxh128:c1"))
      assert.instanceOf(truncated, CacheError.EntryDamaged)
      assert.include(truncated.message, "holds 1000 bytes of data where its metadata says 200000")
      Fs.rmSync(Path.join(blobs, name!))
      const missing = yield* Effect.flip(store.get("xxh128:c1"))
      assert.instanceOf(missing, CacheError.EntryDamaged)
      assert.include(missing.message, "data file is missing")
      const old = Path.join(blobs, "xxh128_dead.0123456789abcdef")
      const fresh = Path.join(blobs, "xxh128_live.0123456789abcdef")
      Fs.writeFileSync(old, "left by a crash")
      Fs.utimesSync(old, new Date(Date.now() - 3_600_000), new Date(Date.now() - 3_600_000))
      Fs.writeFileSync(fresh, "a writer about to name it")
      yield* open(Store.layerSqlite(file))
      assert.isFalse(Fs.existsSync(old))
      assert.isTrue(Fs.existsSync(fresh))
      // Swept at most once per ten minutes, whichever process opens the store.
      const hourAgo = new Date(Date.now() - 3_600_000)
      Fs.writeFileSync(old, "left by another crash")
      Fs.utimesSync(old, hourAgo, hourAgo)
      yield* open(Store.layerSqlite(file))
      assert.isTrue(Fs.existsSync(old), "not swept again so soon")
      Fs.utimesSync(Path.join(blobs, ".swept"), hourAgo, hourAgo)
      yield* open(Store.layerSqlite(file))
      assert.isFalse(Fs.existsSync(old))
    }))

  it.effect("a lock whose process is gone is taken over at once, by one caller; a live holder keeps it", () =>
    Effect.gen(function*() {
      const file = Path.join(tmp(), "cache.sqlite")
      const a = yield* open(Store.layerSqlite(file))
      const b = yield* open(Store.layerSqlite(file))
      const c = yield* open(Store.layerSqlite(file))
      assert.isDefined(yield* a.lock("xxh128:77aa", 600_000))
      assert.isUndefined(yield* b.lock("xxh128:77aa", 600_000), "its holder, this process, is alive")
      const dead = ChildProcess.spawnSync(process.execPath, ["-e", "console.log(process.pid)"], { encoding: "utf8" })
      const db = new DatabaseSync(file)
      db.prepare("UPDATE locks SET pid = ? WHERE key = ?").run(Number(dead.stdout.trim()), "xxh128:77aa")
      db.close()
      const taken = yield* b.lock("xxh128:77aa", 600_000)
      assert.isDefined(taken, "taken over long before the 10-minute expiry")
      assert.isUndefined(yield* c.lock("xxh128:77aa", 600_000), "the new holder is alive")
      yield* taken!.release
      assert.isDefined(yield* c.lock("xxh128:77aa", 600_000))
    }))

  it.effect("two connections to one file see each other's entries and locks", () =>
    Effect.gen(function*() {
      const file = Path.join(tmp(), "cache.sqlite")
      const a = yield* open(Store.layerSqlite(file))
      const b = yield* open(Store.layerSqlite(file))
      yield* a.put(entry("xxh128:55aa", "shared"))
      assert.strictEqual(new TextDecoder().decode((yield* b.get("xxh128:55aa"))!.data), "shared")
      const lock = yield* a.lock("xxh128:55aa", 60_000)
      assert.isDefined(lock)
      assert.isUndefined(yield* b.lock("xxh128:55aa", 60_000))
      yield* lock!.release
      assert.isDefined(yield* b.lock("xxh128:55aa", 60_000))
    }))
})

describe.skipIf(!hasRedis)("Store.layerRedis faults", () => {
  it.live("a server that goes away gives StoreErrors, and the store recovers when it is back", () =>
    Effect.gen(function*() {
      const server = yield* Effect.promise(() => startRedis())
      const store = yield* open(Store.layerRedis(server.url, { prefix: "outage:", timeout: 500 }))
      yield* store.put(entry("xxh128:66aa", "before"))
      yield* Effect.promise(() => server.stop())
      const error = yield* Effect.flip(store.get("xxh128:66aa"))
      assert.instanceOf(error, CacheError.StoreError)
      assert.strictEqual(error.store, "redis")
      const restarted = yield* Effect.promise(() => startRedis(server.port))
      yield* Effect.addFinalizer(() => Effect.promise(() => restarted.stop()))
      // The client reconnects by itself; the fresh server is empty.
      let back: Store.Entry | undefined | "down" = "down"
      for (let i = 0; i < 50 && back === "down"; i++) {
        back = yield* store.get("xxh128:66aa").pipe(
          Effect.catchTag("StoreError", () => Effect.succeed("down" as const))
        )
        if (back === "down") yield* Effect.sleep(100)
      }
      assert.isUndefined(back, "reconnected")
    }))

  it.live("an unreachable server is a StoreError when the layer is built", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(open(Store.layerRedis("redis://127.0.0.1:1/0", { timeout: 300 })))
      assert.instanceOf(error, CacheError.StoreError)
    }))
})

describe.skipIf(!hasRedis)("the Redis store's locks when the server pauses", () => {
  it.live(
    "a lock taken while the server was paused, which it runs once resumed, is no lock left behind",
    () =>
      Effect.gen(function*() {
        const server = yield* Effect.acquireRelease(
          Effect.promise(() => startRedis()),
          (s) => Effect.promise(() => s.stop())
        )
        const store = yield* open(Store.layerRedis(server.url, { timeout: 300, prefix: "paused:" }))
        server.pause()
        // The client gives up after 300 ms; the server still holds the SET in its socket, and runs it on resuming.
        const gaveUp = yield* Effect.flip(store.lock("xxh128:beef", "10 minutes"))
        assert.instanceOf(gaveUp, CacheError.StoreError)
        server.resume()
        const { Redis } = yield* Effect.promise(() => import("ioredis"))
        const raw = new Redis(server.url)
        yield* Effect.addFinalizer(() => Effect.promise(() => raw.quit()))
        // Once the server has caught up, no lock remains, or if one does, it is this process's to take at once.
        for (let i = 0; i < 50 && (yield* Effect.promise(() => raw.ping())) !== "PONG"; i++) yield* Effect.sleep(20)
        const lock = yield* store.lock("xxh128:beef", "10 minutes")
        assert.isDefined(lock, "the next call takes the lock at once, not after 10 minutes")
        yield* lock!.release
        assert.strictEqual(yield* Effect.promise(() => raw.exists("paused:lock:xxh128:beef")), 0, "no lock left")
      }),
    30_000
  )
})

/** Runs a fixture in a process of its own; resolves with what it printed once it exits. */
const runFixture = (name: string, args: ReadonlyArray<string>) =>
  new Promise<{ code: number | null; stdout: string; child: ChildProcess.ChildProcess }>((resolve) => {
    const child = ChildProcess.spawn(process.execPath, [Path.join(import.meta.dirname, "fixtures", name), ...args], {
      stdio: ["ignore", "pipe", "inherit"]
    })
    let stdout = ""
    child.stdout.on("data", (chunk) => (stdout += chunk))
    child.on("exit", (code) => resolve({ code, stdout, child }))
  })

describe("the filesystem store's locks across processes", () => {
  it("8 processes asking for the same 120 keys compute each exactly once, and agree", async () => {
    const dir = tmp()
    const log = Path.join(dir, "computed.log")
    Fs.writeFileSync(log, "")
    const startAt = String(Date.now() + 2500)
    const runs = await Promise.all(
      Array.from({ length: 8 }, () => runFixture("singleFlight.ts", [Path.join(dir, "cache"), log, "30", "4", startAt]))
    )
    for (const run of runs) assert.strictEqual(run.code, 0, run.stdout)
    const computed = Fs.readFileSync(log, "utf8").trim().split("\n")
    const duplicates = computed.length - new Set(computed).size
    assert.strictEqual(new Set(computed).size, 120)
    assert.strictEqual(duplicates, 0, "keys computed more than once")
    const [first, ...others] = runs.map((run) => JSON.parse(run.stdout) as Record<string, string>)
    for (const other of others) assert.deepStrictEqual(other, first, "every process got the same values")
  }, 60_000)

  it("a frozen holder past its expiry is taken over by exactly one of the waiters", async () => {
    const dir = tmp()
    const holder = ChildProcess.spawn(
      process.execPath,
      [Path.join(import.meta.dirname, "fixtures", "lockHolder.ts"), dir, "xxh128:f00d", "300", "60000"],
      { stdio: ["ignore", "pipe", "inherit"] }
    )
    const said = await new Promise<string>((resolve) => holder.stdout.once("data", (chunk) => resolve(String(chunk))))
    assert.strictEqual(said.trim(), "held")
    holder.kill("SIGSTOP")
    try {
      // The waiters start together, after the frozen holder's lock has expired.
      const startAt = String(Date.now() + 2000)
      const waiters = await Promise.all(
        Array.from({ length: 3 }, () => runFixture("lockHolder.ts", [dir, "xxh128:f00d", "30000", "300", startAt]))
      )
      const answers = waiters.map((waiter) => waiter.stdout.trim()).sort()
      assert.deepStrictEqual(answers, ["busy", "busy", "held"])
    } finally {
      holder.kill("SIGKILL")
    }
  }, 30_000)
})
