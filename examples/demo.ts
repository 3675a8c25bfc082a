/**
 * `npm run demo`: score a generated customer dataset sequentially, on worker
 * threads and on worker processes, report the speedups, persist and hash the
 * results, then run the scoring step through the disk cache: the first run
 * computes it, later runs read it back. On a terminal each map shows a
 * progress bar; Ctrl-C stops everything and leaves no worker behind.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Duration, Effect, Schema } from "effect"
import { Backend, Cache, Hashing, Parallel, Persist, Progress } from "effect-joblib"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { type Customer, Score, Scored } from "./scoring.ts"

const records = Number(process.env.DEMO_RECORDS ?? 100_000)
const cacheDir = process.env.DEMO_CACHE ?? ".cache/effect-joblib-demo"

/** The scoring step, memoized: keyed by the content hash of its input, stored on disk. */
const scoreAll = Cache.memoize(function scoreAll(customers: ReadonlyArray<Customer>) {
  return Parallel.map(customers, Score)
}, { success: Schema.Array(Scored) })
const regions = ["north", "south", "east", "west"]

const generate = (n: number): Array<Customer> => {
  let seed = 42
  const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648
  return Array.from({ length: n }, (_, id) => ({
    id,
    region: regions[id % regions.length]!,
    spend: Array.from({ length: 8 }, () => Math.round(random() * 100_000) / 100)
  }))
}

const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.map(Effect.timed(effect), ([duration, value]) => ({ millis: Duration.toMillis(duration), value }))

const summarize = (scored: ReadonlyArray<{ region: string; score: number }>) => {
  const byRegion = new Map<string, { n: number; total: number }>()
  for (const { region, score } of scored) {
    const entry = byRegion.get(region) ?? { n: 0, total: 0 }
    entry.n++
    entry.total += score
    byRegion.set(region, entry)
  }
  return [...byRegion].map(([region, { n, total }]) => `${region}: ${n} customers, mean risk ${(total / n).toFixed(4)}`)
}

const program = Effect.gen(function*() {
  const customers = generate(records)
  yield* Console.log(`Scoring ${customers.length.toLocaleString("en")} customers`)

  const sequential = yield* timed(Parallel.map(customers, Score))
  yield* Console.log(`sequential:            ${sequential.millis.toFixed(0).padStart(6)} ms`)

  // One pool for both maps: the first starts the workers and loads the task's module in them.
  const { threads, warmUp } = yield* Effect.gen(function*() {
    const backend = yield* Backend.Backend
    const warmUp = yield* timed(Parallel.map(customers.slice(0, 2_000), Score))
    yield* Console.log(
      `thread pool start-up (${backend.workers} workers, first 2,000 customers): ${warmUp.millis.toFixed(0)} ms`
    )
    const threads = yield* timed(Parallel.map(customers, Score))
    return { threads: { ...threads, value: { scored: threads.value, workers: backend.workers } }, warmUp }
  }).pipe(Effect.provide(Backend.layerThreads({ workers: -1 })))
  yield* Console.log(
    `threads (${threads.value.workers} workers):   ${threads.millis.toFixed(0).padStart(6)} ms  ` +
      `speedup ${(sequential.millis / threads.millis).toFixed(2)}x on a warm pool, ` +
      `${(sequential.millis / (threads.millis + warmUp.millis)).toFixed(2)}x counting start-up`
  )

  // Processes isolate each worker (a crash takes down only its batch); the data is copied to them.
  const processes = yield* Effect.gen(function*() {
    const backend = yield* Backend.Backend
    yield* Parallel.map(customers.slice(0, 2_000), Score)
    const run = yield* timed(Parallel.map(customers, Score))
    return { ...run, workers: backend.workers }
  }).pipe(Effect.provide(Backend.layerProcesses({ workers: -1 })))
  yield* Console.log(
    `processes (${processes.workers} workers): ${processes.millis.toFixed(0).padStart(6)} ms  ` +
      `speedup ${(sequential.millis / processes.millis).toFixed(2)}x on a warm pool`
  )

  const same = sequential.value.every((s, i) =>
    s.score === threads.value.scored[i]!.score && s.score === processes.value[i]!.score
  )
  if (!same) return yield* Effect.die(new Error("sequential and parallel scores differ"))
  yield* Console.log("results identical across backends")
  for (const line of summarize(threads.value.scored)) yield* Console.log(`  ${line}`)

  // Persist the results, Schema-typed and compressed, then read them back.
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-joblib-demo-"))
  const file = Path.join(dir, "scores.zst")
  const schema = Schema.Array(Scored)
  const dumped = yield* timed(Persist.dump(threads.value.scored, file, { schema }))
  const loaded = yield* timed(Persist.load(file, schema))
  const bytes = Fs.statSync(file).size
  Fs.rmSync(dir, { recursive: true, force: true })
  if (loaded.value.length !== customers.length) return yield* Effect.die(new Error("the reloaded scores differ"))
  yield* Console.log(
    `persisted ${customers.length.toLocaleString("en")} scores to ${(bytes / 1e6).toFixed(2)} MB (zstd) ` +
      `in ${dumped.millis.toFixed(0)} ms, loaded back in ${loaded.millis.toFixed(0)} ms`
  )
  const before = yield* Hashing.hash(threads.value.scored)
  const after = yield* Hashing.hash(loaded.value)
  if (before !== after) return yield* Effect.die(new Error("the reloaded scores hash differently"))
  yield* Console.log(`content hash of the scores, before and after: ${before}`)

  // The same step through the cache: computed on the first run, read back on every later one.
  const cached = yield* timed(
    Effect.gen(function*() {
      const hit = yield* scoreAll.check(customers)
      const scored = yield* scoreAll(customers)
      return { hit, scored }
    }).pipe(Effect.provide(Cache.layerFileSystem(cacheDir)), Effect.provide(Backend.layerThreads({ workers: -1 })))
  )
  if (cached.value.scored.length !== customers.length) return yield* Effect.die(new Error("the cached scores differ"))
  yield* Console.log(
    cached.value.hit
      ? `cache hit: the scoring step was read back from ${cacheDir} in ${cached.millis.toFixed(0)} ms (no scoring ran)`
      : `cache miss: scored and stored in ${cacheDir} in ${
        cached.millis.toFixed(0)
      } ms; run the demo again to read it back`
  )
})

// runMain turns Ctrl-C into interruption: every pool's scope closes and its workers are stopped.
NodeRuntime.runMain(program.pipe(Effect.provide(Progress.layerBar())))
