/**
 * Every public function decodes its options at the boundary: wrong types, unknown keys, out-of-range
 * numbers and extra tuple elements each fail with the module's typed error naming the option, never with
 * a defect and never with a success.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Layer, Stream } from "effect"
import * as Os from "node:os"
import * as Path from "node:path"
import { Backend, Cache, Codec, Hashing, Parallel, Persist, Remote, Store } from "../src/index.ts"

const file = Path.join(Os.tmpdir(), "ejl-bad-input.ejlb")
const build = <A, E>(layer: Layer.Layer<A, E, never>) => Effect.scoped(Layer.build(layer))
const map = (options: unknown) => Parallel.map([1, 2], (x) => x, options as never)

type Case = readonly [what: string, effect: Effect.Effect<unknown, unknown, never>, tag: string, option: string]

const cases: ReadonlyArray<Case> = [
  ["Parallel.map: concurrency as text", map({ concurrency: "2" }), "InvalidOptions", "concurrency"],
  ["Parallel.map: concurrency 0", map({ concurrency: 0 }), "InvalidOptions", "concurrency"],
  ["Parallel.map: batchSize 0", map({ batchSize: 0 }), "InvalidOptions", "batchSize"],
  ["Parallel.map: preDispatch -1", map({ preDispatch: -1 }), "InvalidOptions", "preDispatch"],
  ["Parallel.map: preDispatch \"-2*n_jobs\"", map({ preDispatch: "-2*n_jobs" }), "InvalidOptions", "preDispatch"],
  ["Parallel.map: preDispatch \"2*workers\"", map({ preDispatch: "2*workers" }), "InvalidOptions", "preDispatch"],
  ["Parallel.map: an unknown mode", map({ mode: "lenient" }), "InvalidOptions", "mode"],
  ["Parallel.map: a timeout that is no duration", map({ timeout: "soon" }), "InvalidOptions", "timeout"],
  // Duration reads NaN as zero, which would time every task out.
  ["Parallel.map: a NaN timeout", map({ timeout: NaN }), "InvalidOptions", "timeout"],
  ["Parallel.map: a negative timeout", map({ timeout: "-1 seconds" }), "InvalidOptions", "timeout"],
  ["Parallel.map: a zero timeout", map({ timeout: 0 }), "InvalidOptions", "timeout"],
  ["Parallel.map: an unknown key", map({ jobs: 2 }), "InvalidOptions", "jobs"],
  [
    "Parallel.stream: ordered as text",
    Stream.runDrain(Parallel.stream([1], (x) => x, { ordered: "yes" } as never)),
    "InvalidOptions",
    "ordered"
  ],
  [
    "Backend.layerSequential: concurrency 0",
    build(Backend.layerSequential({ concurrency: 0 })),
    "InvalidOptions",
    "concurrency"
  ],
  ["Backend.layerThreads: workers 0", build(Backend.layerThreads({ workers: 0 })), "InvalidOptions", "workers"],
  ["Backend.layerThreads: workers 1.5", build(Backend.layerThreads({ workers: 1.5 })), "InvalidOptions", "workers"],
  ["Backend.layerThreads: maxBytes -1", build(Backend.layerThreads({ maxBytes: -1 })), "InvalidOptions", "maxBytes"],
  [
    "Backend.layerThreads: stderr discard",
    build(Backend.layerThreads({ stderr: "discard" as never })),
    "InvalidOptions",
    "stderr"
  ],
  [
    "Backend.layerProcesses: an unknown key",
    build(Backend.layerProcesses({ cpus: 2 } as never)),
    "InvalidOptions",
    "cpus"
  ],
  [
    "Backend.layerProcesses: interruptGrace as a word",
    build(Backend.layerProcesses({ interruptGrace: "brief" as never })),
    "InvalidOptions",
    "interruptGrace"
  ],
  [
    "Persist.dump: compress {}",
    Persist.dump({ a: 1 }, file, { compress: {} as never }),
    "InvalidPersistOptions",
    "compress"
  ],
  [
    "Persist.dump: compress with a third element",
    Persist.dump({ a: 1 }, file, { compress: ["zlib", 3, "extra"] as never }),
    "InvalidPersistOptions",
    "compress"
  ],
  [
    "Persist.dump: a level out of range",
    Persist.dump({ a: 1 }, file, { compress: ["zlib", 99] }),
    "InvalidPersistOptions",
    "compress"
  ],
  [
    "Persist.dump: a fractional level",
    Persist.dump({ a: 1 }, file, { compress: ["zlib", 2.5] }),
    "InvalidPersistOptions",
    "compress"
  ],
  [
    "Persist.dump: an unknown method",
    // @ts-expect-error: "lz77" is no method's name, which tsc refuses; a JavaScript caller gets the error
    Persist.dump({ a: 1 }, file, { compress: "lz77" }),
    "InvalidPersistOptions",
    "compress"
  ],
  [
    "Persist.dump: fsync as text",
    Persist.dump({ a: 1 }, file, { fsync: "yes" as never }),
    "InvalidPersistOptions",
    "fsync"
  ],
  [
    "Persist.dump: a schema that is no Schema",
    Persist.dump({ a: 1 }, file, { schema: 5 as never }),
    "InvalidPersistOptions",
    "schema"
  ],
  [
    "Persist.dump: an unknown key",
    Persist.dump({ a: 1 }, file, { mmap: true } as never),
    "InvalidPersistOptions",
    "mmap"
  ],
  [
    "Persist.load: shared as a number",
    Persist.load(file, undefined, { shared: 1 as never }),
    "InvalidPersistOptions",
    "shared"
  ],
  [
    "Persist.load: an unknown key",
    Persist.load(file, undefined, { mmapMode: "r" } as never),
    "InvalidPersistOptions",
    "mmapMode"
  ],
  [
    "Codec.encode: compress {}",
    Codec.make().encode({ a: 1 }, { compress: {} as never }),
    "InvalidPersistOptions",
    "compress"
  ],
  [
    "Codec.decode: verify as text",
    Codec.make().decode(new Uint8Array(0), { verify: "no" as never }),
    "InvalidPersistOptions",
    "verify"
  ],
  [
    "Hashing.hash: an unknown algorithm",
    Hashing.hash({ foo: "bar" }, { algorithm: "invalid" as never }),
    "InvalidHashOptions",
    "algorithm"
  ],
  [
    "Hashing.hash: an unknown key",
    Hashing.hash({ foo: "bar" }, { seed: 1 } as never),
    "InvalidHashOptions",
    "seed"
  ],
  [
    "Cache.memoize: a timeToLive that is no duration",
    Effect.provide(
      Cache.memoize((x: number) => x, { name: "f", timeToLive: "forever" as never })(1),
      Cache.layerMemory()
    ),
    "InvalidMemoize",
    "timeToLive"
  ],
  [
    "Cache.memoize: ignore as a string",
    Effect.provide(Cache.memoize((x: number) => x, { name: "f", ignore: "x" as never })(1), Cache.layerMemory()),
    "InvalidMemoize",
    "ignore"
  ],
  [
    "Cache.memoize: an unknown key",
    Effect.provide(Cache.memoize((x: number) => x, { name: "f", ttl: 5 } as never)(1), Cache.layerMemory()),
    "InvalidMemoize",
    "ttl"
  ],
  [
    "Cache.layer: an unknown onStoreError",
    build(Cache.layer({ onStoreError: "ignore" as never }).pipe(Layer.provide(Store.layerMemory()))),
    "InvalidCacheOptions",
    "onStoreError"
  ],
  [
    "Cache.layerMemory: a negative maxBytes",
    build(Cache.layerMemory({ limits: { maxBytes: -1 } })),
    "InvalidCacheOptions",
    "limits"
  ],
  [
    "Cache.layerMemory: a fractional maxItems",
    build(Cache.layerMemory({ limits: { maxItems: 1.5 } })),
    "InvalidCacheOptions",
    "limits"
  ],
  [
    "Cache.layerFileSystem: an unknown key",
    build(Cache.layerFileSystem(Os.tmpdir(), { location: "x" } as never)),
    "InvalidCacheOptions",
    "location"
  ],
  ["Cache.layerFileSystem: an empty directory", build(Cache.layerFileSystem("")), "InvalidCacheOptions", "directory"],
  [
    "Cache.layerSqlite: a lockTimeout that is no duration",
    build(Cache.layerSqlite(Path.join(Os.tmpdir(), "x.sqlite"), { lockTimeout: "long" as never })),
    "InvalidCacheOptions",
    "lockTimeout"
  ],
  [
    "Cache.layerSqlite: a zero pollInterval, which would poll without pause",
    build(Cache.layerSqlite(Path.join(Os.tmpdir(), "x.sqlite"), { pollInterval: 0 })),
    "InvalidCacheOptions",
    "pollInterval"
  ],
  [
    "Cache.reduceSize: a negative maxItems",
    Effect.provide(Cache.reduceSize({ maxItems: -5 }), Cache.layerMemory()),
    "InvalidCacheOptions",
    "maxItems"
  ],
  ["Store.layerSqlite: a file that is no string", build(Store.layerSqlite(5 as never)), "InvalidCacheOptions", "file"],
  [
    "Store.layerRedis: a zero timeout (before any connection)",
    build(Store.layerRedis("redis://127.0.0.1:1", { timeout: 0 })),
    "InvalidCacheOptions",
    "timeout"
  ],
  [
    "Store.layerRedis: a timeout longer than Node's longest timer, which would fire at once",
    build(Store.layerRedis("redis://127.0.0.1:1", { timeout: 2 ** 31 })),
    "InvalidCacheOptions",
    "timeout"
  ],
  ["Remote.layer: an empty URL", build(Remote.layer({ redis: "" })), "InvalidOptions", "redis"],
  [
    "Remote.layer: a timeout longer than Node's longest timer, which would fire at once",
    build(Remote.layer({ redis: "redis://127.0.0.1:1", timeout: 30 * 86_400_000 })),
    "InvalidOptions",
    "timeout"
  ],
  [
    "Remote.layer: slots 0 (before any connection)",
    build(Remote.layer({ redis: "redis://127.0.0.1:1", slots: 0 })),
    "InvalidOptions",
    "slots"
  ],
  [
    "Remote.layer: a queue name with a colon",
    build(Remote.layer({ redis: "redis://127.0.0.1:1", queue: "a:b" })),
    "InvalidOptions",
    "queue"
  ],
  [
    "Remote.layer: an unknown key",
    build(Remote.layer({ redis: "redis://127.0.0.1:1", retries: 3 } as never)),
    "InvalidOptions",
    "retries"
  ],
  [
    "Remote.layerWorker: modules as a string",
    build(Remote.layerWorker({ redis: "redis://127.0.0.1:1", modules: "./tasks.ts" as never })),
    "InvalidOptions",
    "modules"
  ],
  [
    "Remote.layerWorker: a lockDuration longer than Node's longest timer",
    build(Remote.layerWorker({ redis: "redis://127.0.0.1:1", modules: [], lockDuration: 2 ** 31 })),
    "InvalidOptions",
    "lockDuration"
  ],
  [
    "Remote.layerWorker: a negative maxStalledCount",
    build(Remote.layerWorker({ redis: "redis://127.0.0.1:1", modules: [], maxStalledCount: -1 })),
    "InvalidOptions",
    "maxStalledCount"
  ]
]

describe("bad options at every public boundary", () => {
  for (const [what, effect, tag, option] of cases) {
    it.live(`${what}: ${tag}`, () =>
      Effect.gen(function*() {
        const exit = yield* Effect.exit(effect)
        assert.isTrue(Exit.isFailure(exit), "it must not succeed")
        const cause = (exit as Exit.Failure<unknown, unknown>).cause
        assert.isFalse(Cause.hasDies(cause), `a defect: ${Cause.pretty(cause)}`)
        const error = Cause.squash(cause) as { _tag: string; message: string; option?: string }
        assert.strictEqual(error._tag, tag, error.message)
        assert.include(error.message, option)
        if (error.option !== undefined) assert.strictEqual(error.option, option)
      }))
  }
})
