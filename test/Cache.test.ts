import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Logger, Schema } from "effect"
import { TestClock } from "effect/testing"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { DatabaseSync } from "node:sqlite"
import { Backend, Cache, CacheError, Parallel, Store } from "../src/index.ts"
import { hasRedis, startRedis } from "./redisServer.ts"
import { tmpfs } from "./tmpfs.ts"

const tmp = () => Fs.mkdtempSync(Path.join(Os.tmpdir(), "ejl-cache-"))

/** Runs `effect` with a Logger that keeps the messages. */
const logged = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const lines: Array<string> = []
    const logger = Logger.make(({ message }) => {
      lines.push((Array.isArray(message) ? message : [message]).join(" "))
    })
    const value = yield* effect.pipe(Effect.provide(Logger.layer([logger])))
    return { value, lines }
  })

class Boom extends Schema.TaggedError<Boom>()("Boom", { n: Schema.Number }) {}

describe("Cache (joblib's Memory examples)", () => {
  it.effect("f(1) runs once, then is read back; f(2) recomputes", () => {
    const calls: Array<number> = []
    const f = Cache.memoize(function f(x: number) {
      calls.push(x)
      return { x, squared: x * x }
    })
    return Effect.gen(function*() {
      assert.deepStrictEqual(yield* f(1), { x: 1, squared: 1 })
      assert.deepStrictEqual(yield* f(1), { x: 1, squared: 1 })
      assert.deepStrictEqual(yield* f(2), { x: 2, squared: 4 })
      assert.deepStrictEqual(calls, [1, 2])
      assert.isTrue(yield* f.check(1))
      assert.isFalse(yield* f.check(3))
    }).pipe(Effect.provide(Cache.layerMemory()))
  })

  it.effect("ignore=['debug']: an ignored argument is left out of the key", () => {
    let calls = 0
    const f = Cache.memoize(function f(x: number, debug = false) {
      calls++
      if (debug) console.log("debug")
      return x
    }, { ignore: ["debug"] })
    return Effect.gen(function*() {
      yield* f(1, false)
      yield* f(1, true)
      yield* f(1)
      assert.strictEqual(calls, 1)
      const bad = yield* Effect.flip(
        Cache.memoize(function g(x: number) {
          return x
        }, { ignore: ["verbose"] })(1)
      )
      assert.instanceOf(bad, CacheError.InvalidMemoize)
      assert.include(bad.message, `no parameter "verbose"`)
    }).pipe(Effect.provide(Cache.layerMemory()))
  })

  it.effect("a path into an argument can be ignored", () => {
    let calls = 0
    const f = Cache.memoize(function f(options: { size: number; verbose: boolean }) {
      calls++
      return options.size
    }, { ignore: ["options.verbose"] })
    return Effect.gen(function*() {
      yield* f({ size: 1, verbose: true })
      yield* f({ size: 1, verbose: false })
      yield* f({ size: 2, verbose: false })
      assert.strictEqual(calls, 2)
    }).pipe(Effect.provide(Cache.layerMemory()))
  })

  it.effect("call_and_shelve, then get, clear, and get again failing", () => {
    const g = Cache.memoize(function g(x: number) {
      return new Float64Array([x, x + 1])
    })
    return Effect.gen(function*() {
      const shelved = yield* g.shelve(41)
      // A plain reference: it survives structured cloning (as when sent to a worker).
      const copy = structuredClone(shelved)
      assert.deepStrictEqual(Array.from(yield* Cache.get(copy)), [41, 42])
      yield* Cache.clearShelved(copy)
      const missing = yield* Effect.flip(Cache.get(shelved))
      assert.instanceOf(missing, CacheError.EntryNotFound)
    }).pipe(Effect.provide(Cache.layerMemory()))
  })

  it.effect("checkpointing inside Parallel: the second round is served from the cache", () => {
    const calls: Array<number> = []
    const slow = Cache.memoize(function slow(x: number) {
      calls.push(x)
      return Effect.as(Effect.sleep(1), x * 10)
    })
    return Effect.gen(function*() {
      const items = Array.from({ length: 12 }, (_, i) => i)
      const first = yield* Parallel.map(items, (x) => Effect.runPromise(Effect.provide(slow(x), cacheContext)))
      const second = yield* Parallel.map(items, (x) => Effect.runPromise(Effect.provide(slow(x), cacheContext)))
      assert.deepStrictEqual(first, second)
      assert.strictEqual(calls.length, 12, "each item computed once")
    }).pipe(Effect.provide(Backend.layerSequential({ concurrency: 4 })))
  })
})

const cacheContext = Effect.runSync(Effect.scoped(Layer.build(Cache.layerMemory())))

describe("Cache behaviour", () => {
  it.effect("N fibers asking for one missing key compute it once", () => {
    let calls = 0
    const f = Cache.memoize(function slowSquare(x: number) {
      calls++
      return Effect.as(Effect.sleep(20), x * x)
    })
    return Effect.gen(function*() {
      const results = yield* Effect.all(Array.from({ length: 10 }, () => f(7)), { concurrency: "unbounded" })
      assert.deepStrictEqual(results, Array.from({ length: 10 }, () => 49))
      assert.strictEqual(calls, 1)
    }).pipe(Effect.provide(Cache.layerMemory()), advancingClock)
  })

  it.effect("timeToLive recomputes stale entries (TestClock)", () => {
    let calls = 0
    const f = Cache.memoize(function ttl(x: number) {
      calls++
      return x
    }, { timeToLive: "1 hour" })
    return Effect.gen(function*() {
      yield* f(1)
      yield* TestClock.adjust("59 minutes")
      yield* f(1)
      assert.strictEqual(calls, 1)
      yield* TestClock.adjust("2 minutes")
      yield* f(1)
      assert.strictEqual(calls, 2)
    }).pipe(Effect.provide(Cache.layerMemory()))
  })

  it.effect("validate decides from the entry's metadata", () => {
    let calls = 0
    const f = Cache.memoize(function validated(x: number) {
      calls++
      return x
    }, { validate: (meta) => meta.duration < 0 })
    return Effect.gen(function*() {
      yield* f(1)
      yield* f(1)
      assert.strictEqual(calls, 2, "every entry rejected")
    }).pipe(Effect.provide(Cache.layerMemory()))
  })

  it.effect("typed failures pass through, and are cached only when asked", () => {
    let calls = 0
    const make = (cacheFailures: boolean) =>
      Cache.memoize(function fails(n: number) {
        calls++
        return Effect.fail(new Boom({ n }))
      }, { cacheFailures, name: `fails-${cacheFailures}`, failure: Boom })
    return Effect.gen(function*() {
      const plain = make(false)
      assert.instanceOf(yield* Effect.flip(plain(1)), Boom)
      yield* Effect.flip(plain(1))
      assert.strictEqual(calls, 2)
      calls = 0
      const cached = make(true)
      const first = yield* Effect.flip(cached(1))
      const second = yield* Effect.flip(cached(1))
      assert.strictEqual(calls, 1)
      assert.deepStrictEqual(second, first)
    }).pipe(Effect.provide(Cache.layerMemory()))
  })

  it.effect("a changed source invalidates the old entries once, in the next session over the same store", () =>
    Effect.gen(function*() {
      const store = yield* Layer.build(Store.layerMemory())
      // Each session is a cache of its own over the store, as each process would have.
      const session = () => Layer.build(Cache.layer().pipe(Layer.provide(Layer.succeedContext(store))))
      let calls = 0
      const v1 = Cache.memoize((x: number) => {
        calls++
        return x + 1
      }, { name: "evolving" })
      const v2 = Cache.memoize((x: number) => {
        calls++
        return x + 2
      }, { name: "evolving" })
      yield* Effect.all([v1(1), v1(2), v1(1)]).pipe(Effect.provide(yield* session()))
      const next = yield* session()
      const { value, lines } = yield* logged(v2(1).pipe(Effect.provide(next)))
      assert.strictEqual(value, 3, "the new source's result, not the old entry")
      assert.strictEqual(calls, 3)
      assert.isTrue(lines.some((line) => line.includes("the source of evolving changed; 2 cached entries")))
      const versionOnly = Cache.memoize((x: number) => x + 3, { name: "evolving", invalidateOnSourceChange: false })
      assert.strictEqual(yield* versionOnly(1).pipe(Effect.provide(next)), 3, "version-only control keeps entries")
    }))

  // joblib's documented gotcha: two functions named func in one session. After each has run once, neither
  // recomputes ("No recomputation so far"), and joblib warns once of the collision.
  for (
    const [storeName, layerOf] of [
      ["filesystem", (dir: string) => Cache.layerFileSystem(dir)],
      ["sqlite", (dir: string) => Cache.layerSqlite(`${dir}/cache.sqlite`)]
    ] as const
  ) {
    it.effect(`test_memory_name_collision: both functions keep their entries, with one warning (${storeName})`, () =>
      Effect.gen(function*() {
        const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "collision-"))
        yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true })))
        const runs: Array<string> = []
        const func = Cache.memoize(function func(x: number) {
          runs.push(`Running func(${x})`)
          return x
        })
        const func2 = func
        const different = Cache.memoize(function func(x: number) {
          runs.push(`Running a different func(${x})`)
          return -x
        })
        const { value, lines } = yield* logged(
          Effect.all([different(1), func2(1), different(1), func2(1), different(1), func2(1)]).pipe(
            Effect.provide(layerOf(dir))
          )
        )
        assert.deepStrictEqual(value, [-1, 1, -1, 1, -1, 1])
        assert.deepStrictEqual(runs, ["Running a different func(1)", "Running func(1)"], "no recomputation so far")
        assert.strictEqual(lines.filter((line) => line.includes("two different functions are memoized")).length, 1)
        assert.isFalse(lines.some((line) => line.includes("entries were invalidated")))
      }))
  }

  it.effect("a damaged entry is a miss: recomputed, replaced, with a warning naming the key", () => {
    let calls = 0
    const f = Cache.memoize(function damaged(x: number) {
      calls++
      return x * 3
    })
    return Effect.gen(function*() {
      yield* f(5)
      const key = yield* f.key(5)
      const store = yield* Effect.service(Store.Store)
      const entry = (yield* store.get(key))!
      const data = entry.data.slice()
      data[data.length - 30]! ^= 0xff
      yield* store.put({ meta: entry.meta, data })
      const { value, lines } = yield* logged(f(5))
      assert.strictEqual(value, 15)
      assert.strictEqual(calls, 2)
      assert.isTrue(lines.some((line) => line.includes(key) && line.includes("damaged")))
      yield* f(5)
      assert.strictEqual(calls, 2, "the replacement is served")
    }).pipe(Effect.provide(Cache.layer().pipe(Layer.provideMerge(Store.layerMemory()))))
  })

  it.effect("stats, entries, reduceSize and clear", () => {
    const f = Cache.memoize(function sized(n: number) {
      return new Uint8Array(n)
    })
    return Effect.gen(function*() {
      yield* f(1000)
      yield* f(2000)
      yield* f(3000)
      const stats = yield* Cache.stats
      assert.strictEqual(stats.items, 3)
      assert.strictEqual(stats.functions.sized, 3)
      assert.isAbove(stats.bytes, 6000)
      const listed = yield* Cache.entries
      assert.isTrue(listed.every((meta) => meta.function === "sized" && meta.input.length > 0))
      assert.strictEqual(yield* Cache.reduceSize({ maxItems: 1 }), 2)
      assert.strictEqual((yield* Cache.stats).items, 1)
      yield* Cache.clear
      assert.strictEqual((yield* Cache.stats).items, 0)
    }).pipe(Effect.provide(Cache.layerMemory()))
  })

  it.effect("primitive arguments that differ never share an entry, whatever their text", () => {
    let calls = 0
    const describe = Cache.memoize(function describe(a: unknown, b?: unknown) {
      calls++
      return `${typeof a}:${String(a)}|${typeof b}:${String(b)}`
    })
    const cases: Array<[unknown, unknown]> = [
      [1, undefined],
      ["1", undefined],
      [1n, undefined],
      [true, undefined],
      ["true", undefined],
      [null, undefined],
      ["null", undefined],
      [Number.NaN, undefined],
      [0, undefined],
      ["a", "b;s1:c"],
      ["a;s1:b", "c"],
      ["a", null]
    ]
    return Effect.gen(function*() {
      for (let round = 0; round < 2; round++) {
        for (const [a, b] of cases) {
          assert.strictEqual(yield* describe(a, b), `${typeof a}:${String(a)}|${typeof b}:${String(b)}`)
        }
      }
      assert.strictEqual(calls, cases.length, "each computed once, read back the second time")
    }).pipe(Effect.provide(Cache.layerMemory()))
  })

  it.effect("an anonymous function must be named", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Cache.memoize((x: number) => x)(1))
      assert.instanceOf(error, CacheError.InvalidMemoize)
      assert.include(error.message, "name")
    }).pipe(Effect.provide(Cache.layerMemory())))

  it.effect("results survive across layers on the filesystem, with no partial entry on a crash", () => {
    const dir = tmp()
    let calls = 0
    const f = Cache.memoize(function persisted(x: number) {
      calls++
      return { x, values: new Float64Array(1000).fill(x) }
    })
    return Effect.gen(function*() {
      yield* Effect.scoped(Effect.provide(f(3), Cache.layerFileSystem(dir)))
      const again = yield* Effect.scoped(Effect.provide(f(3), Cache.layerFileSystem(dir)))
      assert.strictEqual(calls, 1)
      assert.strictEqual(again.values[999], 3)
    })
  })

  it.effect("an unwritable store fails with StoreError, or computes with one warning when asked", () =>
    Effect.gen(function*() {
      const dir = yield* tmpfs("size=1m")
      yield* Effect.scoped(Effect.provide(Effect.void, Cache.layerFileSystem(dir)))
      ChildProcess.execFileSync("mount", ["-o", "remount,ro", dir])
      let calls = 0
      const f = Cache.memoize(function unwritable(x: number) {
        calls++
        return x
      })
      const error = yield* Effect.flip(Effect.scoped(Effect.provide(f(1), Cache.layerFileSystem(dir))))
      assert.instanceOf(error, CacheError.StoreError)
      const { value, lines } = yield* logged(
        Effect.scoped(Effect.provide(
          Effect.all([f(1), f(2)]),
          Cache.layerFileSystem(dir, { onStoreError: "compute" })
        ))
      )
      assert.deepStrictEqual(value, [1, 2])
      assert.strictEqual(calls, 2, "the failing call stopped at the store; then both computed without caching")
      assert.strictEqual(lines.filter((line) => line.includes("computing without caching")).length, 1)
    }))
})

class Summary extends Schema.Class<Summary>("Summary")({ mean: Schema.Number, count: Schema.Number }) {
  get total() {
    return this.mean * this.count
  }
}

describe("Cache.memoize: results that cannot be stored", () => {
  const summarize = (xs: ReadonlyArray<number>) =>
    new Summary({ mean: xs.reduce((a, b) => a + b, 0) / xs.length, count: xs.length })

  it.effect("a class result without its Schema is a typed Unstorable naming the function and the option", () => {
    let calls = 0
    const f = Cache.memoize(function summary(xs: ReadonlyArray<number>) {
      calls++
      return summarize(xs)
    })
    return Effect.gen(function*() {
      const error = yield* Effect.flip(f([1, 2, 3]))
      assert.instanceOf(error, CacheError.Unstorable)
      assert.strictEqual((error as CacheError.Unstorable).function, "summary")
      assert.include(error.message, "the result of summary cannot be stored")
      assert.include(error.message, "{ success: TheSchema }")
      assert.isDefined((error as CacheError.Unstorable).cause, "the codec's error is kept")
      yield* Effect.flip(f([1, 2, 3]))
      assert.strictEqual(calls, 2, "nothing was stored")
    }).pipe(Effect.provide(Cache.layerMemory()))
  })

  it.effect("with its Schema, the class result is stored and read back as an instance", () => {
    let calls = 0
    const f = Cache.memoize(function summaryTyped(xs: ReadonlyArray<number>) {
      calls++
      return summarize(xs)
    }, { success: Summary })
    return Effect.gen(function*() {
      yield* f([1, 2, 3])
      const back = yield* f([1, 2, 3])
      assert.instanceOf(back, Summary)
      assert.strictEqual(back.total, 6)
      assert.strictEqual(calls, 1)
    }).pipe(Effect.provide(Cache.layerMemory()))
  })

  it.effect("onUnstorable: \"warn\" returns the result uncached, with one warning line and no stack", () => {
    let calls = 0
    const f = Cache.memoize(function summaryWarned(xs: ReadonlyArray<number>) {
      calls++
      return summarize(xs)
    }, { onUnstorable: "warn" })
    return Effect.gen(function*() {
      const { value, lines } = yield* logged(Effect.all([f([1, 2]), f([1, 2]), f([3])]))
      assert.deepStrictEqual(value.map((summary) => summary.mean), [1.5, 1.5, 3])
      assert.strictEqual(calls, 3)
      const warnings = lines.filter((line) => line.includes("cannot be stored"))
      assert.strictEqual(warnings.length, 1, lines.join("\n"))
      assert.notInclude(warnings[0], "    at ", "one line, no stack trace")
      assert.include(warnings[0], "returning it uncached")
    }).pipe(Effect.provide(Cache.layerMemory()))
  })

  it.effect("a failure that cannot be stored with cacheFailures is Unstorable too", () => {
    class Odd extends Error {}
    const f = Cache.memoize(function oddFails(x: number) {
      return x % 2 === 1 ? Effect.fail(new Odd("odd")) : Effect.succeed(x)
    }, { cacheFailures: true })
    return Effect.gen(function*() {
      const error = yield* Effect.flip(f(1))
      assert.instanceOf(error, CacheError.Unstorable)
      assert.include(error.message, "the failure of oddFails cannot be stored")
      assert.include(error.message, "{ failure: TheSchema }")
      assert.strictEqual(yield* f(2), 2)
    }).pipe(Effect.provide(Cache.layerMemory()))
  })
})

/** Runs `effect` while moving the TestClock forward, so that its sleeps end. */
const advancingClock = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.forkChild(effect)
    while (fiber.pollUnsafe() === undefined) yield* TestClock.adjust(10)
    return yield* Fiber.join(fiber)
  })

describe.skipIf(!hasRedis)("Cache on Redis", () => {
  it.live("results are shared through the server; when it goes away, calls fail or compute as configured", () =>
    Effect.gen(function*() {
      const server = yield* Effect.promise(() => startRedis())
      yield* Effect.addFinalizer(() => Effect.promise(() => server.stop()))
      let calls = 0
      const f = Cache.memoize(function viaRedis(x: number) {
        calls++
        return x * 2
      })
      const layer = (onStoreError: "fail" | "compute") =>
        Cache.layer({ onStoreError }).pipe(Layer.provide(Store.layerRedis(server.url, { timeout: 500 })))
      const failing = yield* Layer.build(layer("fail"))
      const computing = yield* Layer.build(layer("compute"))
      assert.strictEqual(yield* Effect.provide(f(21), failing), 42)
      assert.strictEqual(yield* Effect.provide(f(21), computing), 42, "another client reads it back")
      assert.strictEqual(calls, 1)
      yield* Effect.promise(() => server.stop())
      const error = yield* Effect.flip(Effect.provide(f(21), failing))
      assert.instanceOf(error, CacheError.StoreError)
      const { value, lines } = yield* logged(Effect.provide(f(21), computing))
      assert.strictEqual(value, 42)
      assert.strictEqual(calls, 2)
      assert.isTrue(lines.some((line) => line.includes("computing without caching")))
    }))
})

/** A damage done to the stored entry of one key: through the Store API, or to the store's own files or keys. */
interface Damage {
  readonly name: string
  readonly apply: (key: string, place: string) => Effect.Effect<void, unknown, Store.Store>
}

/** Rewrites an entry's data through the Store API: damage any store can be given. */
const rewritten = (name: string, change: (data: Uint8Array) => Uint8Array): Damage => ({
  name,
  apply: (key) =>
    Effect.gen(function*() {
      const store = yield* Effect.service(Store.Store)
      const entry = (yield* store.get(key))!
      const data = change(entry.data.slice())
      yield* store.put({ meta: { ...entry.meta, size: data.length }, data })
    })
})

const flipAt = (offset: (length: number) => number) => (data: Uint8Array) => {
  data[offset(data.length)]! ^= 0xff
  return data
}

const anyStoreDamage: ReadonlyArray<Damage> = [
  rewritten("garbage", (data) => data.map((_, i) => (i * 7919) & 0xff)),
  rewritten("cut in half", (data) => data.subarray(0, data.length >> 1)),
  rewritten("a wrong magic number", flipAt(() => 0)),
  rewritten("a bad checksum", flipAt((length) => length - 30))
]

const entryFile = (dir: string, key: string) =>
  Path.join(
    dir,
    Fs.readdirSync(dir, { recursive: true, encoding: "utf8" }).find((file) =>
      file.endsWith(`${key.replaceAll(":", "_")}.entry`)
    )!
  )

const fileSystemDamage: ReadonlyArray<Damage> = [
  {
    name: "the entry file cut in half",
    apply: (key, dir) =>
      Effect.sync(() => {
        const file = entryFile(dir, key)
        Fs.truncateSync(file, Fs.statSync(file).size >> 1)
      })
  },
  {
    name: "the entry file overwritten with garbage",
    apply: (key, dir) => Effect.sync(() => Fs.writeFileSync(entryFile(dir, key), "garbage, not an entry"))
  }
]

const sqliteDamage: ReadonlyArray<Damage> = [
  {
    name: "a missing data file",
    apply: (_key, file) =>
      Effect.sync(() => {
        const blobs = `${file}.blobs`
        for (const blob of Fs.readdirSync(blobs)) if (!blob.startsWith(".")) Fs.rmSync(Path.join(blobs, blob))
      })
  },
  {
    name: "garbage metadata in the row",
    apply: (key, file) =>
      Effect.sync(() => {
        const db = new DatabaseSync(file)
        db.prepare("UPDATE entries SET meta = 'garbage' WHERE key = ?").run(key)
        db.close()
      })
  }
]

const places = tmp()
let nextPlace = 0

/**
 * Every kind of damage is a miss with exactly one warning naming the function and the key; the entry is
 * recomputed and replaced, and served from then on.
 */
const damageSuite = (
  store: string,
  layerAt: (place: string) => Layer.Layer<Store.Store, unknown>,
  damages: ReadonlyArray<Damage>
) => {
  for (const damage of [...anyStoreDamage, ...damages]) {
    it.live(`${store}: ${damage.name} is a miss with one warning naming the function and key`, () => {
      const place = Path.join(places, `${store}-${nextPlace++}`)
      let calls = 0
      // 200 KB: big enough that SQLite keeps the data in a file of its own.
      const scored = Cache.memoize(function scored(x: number) {
        calls++
        return { x, padding: "p".repeat(200_000) }
      })
      return Effect.gen(function*() {
        yield* scored(5)
        const key = yield* scored.key(5)
        yield* damage.apply(key, place)
        const { value, lines } = yield* logged(scored(5))
        assert.strictEqual(value.x, 5)
        assert.strictEqual(calls, 2, "recomputed")
        const warnings = lines.filter((line) => line.includes("damaged"))
        assert.strictEqual(warnings.length, 1, lines.join("\n"))
        assert.include(warnings[0], key)
        assert.include(warnings[0], "scored")
        const again = yield* logged(scored(5))
        assert.strictEqual(calls, 2, "the replacement is served")
        assert.deepStrictEqual(again.lines, [])
      }).pipe(Effect.provide(Cache.layer().pipe(Layer.provideMerge(layerAt(place)))))
    })
  }
}

describe("joblib's Memory options", () => {
  it.effect("layerNone computes every call and stores nothing, yet shelved results can be read", () =>
    Effect.gen(function*() {
      let calls = 0
      const f = Cache.memoize((x: number) => ({ x, call: ++calls }), { name: "none-f" })
      assert.deepStrictEqual(yield* f(1), { x: 1, call: 1 })
      assert.deepStrictEqual(yield* f(1), { x: 1, call: 2 })
      assert.deepStrictEqual(yield* f.call(1), { x: 1, call: 3 })
      assert.isFalse(yield* f.check(1))
      assert.deepStrictEqual(yield* Cache.entries, [])
      const shelved = yield* f.shelve(7)
      assert.deepStrictEqual(yield* Cache.get(shelved), { x: 7, call: 4 })
      assert.isFalse(yield* f.check(7), "a shelved result is not a cache hit")
      assert.strictEqual(calls, 4)
    }).pipe(Effect.provide(Cache.layerNone)))

  it.effect("compress stores entries compressed, and they load the same", () =>
    Effect.gen(function*() {
      const value = { rows: Array.from({ length: 20_000 }, (_, i) => i % 10), label: "x".repeat(10_000) }
      const f = Cache.memoize((_: number) => value, { name: "compressed-f" })
      const sizes: Array<number> = []
      for (const layer of [Cache.layerMemory(), Cache.layerMemory({ compress: ["zstd", 3] })]) {
        yield* Effect.gen(function*() {
          assert.deepStrictEqual(yield* f(1), value)
          assert.deepStrictEqual(yield* f(1), value, "read back")
          sizes.push((yield* Cache.entries)[0]!.size)
        }).pipe(Effect.provide(layer))
      }
      assert.isBelow(sizes[1]!, sizes[0]! / 4, `plain ${sizes[0]} bytes, compressed ${sizes[1]}`)
      const bad = yield* Effect.flip(Layer.build(Cache.layerMemory({ compress: ["nope", 1] as any })))
      assert.instanceOf(bad, CacheError.InvalidCacheOptions)
    }))

  it.effect("shared: a hit's typed arrays live in shared memory, ready for threads", () =>
    Effect.gen(function*() {
      const f = Cache.memoize((n: number) => ({ walk: new Float64Array(n).fill(2) }), { name: "shared-f" })
      const first = yield* f(1000)
      assert.notInstanceOf(first.walk.buffer, SharedArrayBuffer, "a computed value is returned as computed")
      const hit = yield* f(1000)
      assert.instanceOf(hit.walk.buffer, SharedArrayBuffer)
      assert.strictEqual(hit.walk[999], 2)
    }).pipe(Effect.provide(Cache.layerMemory({ shared: true }))))

  it.effect("verbose logs joblib's lines: calling, the time, and loading", () =>
    Effect.gen(function*() {
      const f = Cache.memoize((x: number, y: number = 2) => x + y, { name: "f" })
      const { lines } = yield* logged(Effect.all([f(1), f(1), f([1, 2, 3] as any, 4)]))
      assert.strictEqual(lines.length, 10, lines.join("\n"))
      assert.strictEqual(lines[0], "_".repeat(80))
      assert.strictEqual(lines[1], "[Memory] Calling f...")
      assert.strictEqual(lines[2], "f(1)")
      assert.match(lines[3]!, /^_+f - \d+\.\ds, \d+\.\dmin$/)
      assert.strictEqual(lines[3]!.length, 80)
      assert.match(lines[4]!, /^\[Memory\]\d+\.\ds, \d+\.\dmin +: Loading f\.\.\.$/)
      assert.strictEqual(lines[4]!.indexOf(":"), "[Memory]".length + 16)
      assert.match(lines[5]!, /^_+f cache loaded - \d+\.\ds, \d+\.\dmin$/)
      assert.strictEqual(lines[5]!.length, 80)
      assert.strictEqual(lines[8], "f([ 1, 2, 3 ], 4)")
      // A function's own verbose wins over the cache's; 0 is silent.
      const quiet = Cache.memoize((x: number) => x, { name: "quiet", verbose: 0 })
      assert.deepStrictEqual((yield* logged(quiet(1))).lines, [])
    }).pipe(Effect.provide(Cache.layerMemory({ verbose: 5 }))))
})

describe("damaged entries, on every store", () => {
  damageSuite("memory", () => Store.layerMemory(), [])
  damageSuite("filesystem", (dir) => Store.layerFileSystem(dir), fileSystemDamage)
  damageSuite("sqlite", (file) => Store.layerSqlite(file), sqliteDamage)
})

describe.skipIf(!hasRedis)("damaged entries, on Redis", () => {
  const server = hasRedis ? startRedis() : undefined
  afterAll(() => server?.then((running) => running.stop()))
  const redisDamage: ReadonlyArray<Damage> = [{
    name: "an entry without its data field",
    apply: (key, prefix) =>
      Effect.promise(async () => {
        const { Redis } = await import("ioredis")
        const client = new Redis((await server!).url)
        await client.hdel(`${prefix}entry:${key}`, "data")
        client.disconnect()
      })
  }]
  damageSuite(
    "redis",
    (prefix) => Layer.unwrap(Effect.promise(async () => Store.layerRedis((await server!).url, { prefix }))),
    redisDamage
  )
})
