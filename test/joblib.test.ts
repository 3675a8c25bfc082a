/**
 * The Parallel examples of joblib's documentation, with the same results.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, Stream } from "effect"
import * as Os from "node:os"
import { Backend, Parallel } from "../src/index.ts"

layer(Backend.layerThreads({ workers: 2 }), { excludeTestServices: true })("joblib's Parallel examples", (it) => {
  // Parallel(n_jobs=2)(delayed(sqrt)(i ** 2) for i in range(10))
  it.effect("the sqrt list", () =>
    Effect.gen(function*() {
      const out = yield* Parallel.map(Array.from({ length: 10 }, (_, i) => i ** 2), (x) => Math.sqrt(x))
      assert.deepStrictEqual(out, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    }))

  // with Parallel(n_jobs=2) as parallel: accumulate until 1000 -> (1136.596..., 14)
  it.effect("the reused-pool accumulator loop", () =>
    Effect.gen(function*() {
      let accumulator = 0
      let iterations = 0
      while (accumulator < 1000) {
        const base = accumulator
        const results = yield* Parallel.map(
          Array.from({ length: 5 }, (_, i) => base + i ** 2),
          (x) => Math.sqrt(x)
        )
        accumulator += results.reduce((a, b) => a + b, 0)
        iterations++
      }
      assert.strictEqual(iterations, 14)
      assert.strictEqual(accumulator.toFixed(3), "1136.597")
      assert.isTrue(String(accumulator).startsWith("1136.596"))
    }))

  // Parallel(n_jobs=2, pre_dispatch='1.5*n_jobs')(delayed(sqrt)(i) for i in producer())
  it.effect("the producer generator is consumed lazily with pre_dispatch", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      function* producer() {
        for (let i = 0; i < 6; i++) {
          log.push(`Produced ${i}`)
          yield i
        }
      }
      const out = yield* Parallel.stream(producer(), (x) => Math.sqrt(x), { batchSize: 1, preDispatch: 3 }).pipe(
        Stream.tap((x) => Effect.sync(() => void log.push(`Done ${x}`))),
        Stream.runCollect
      )
      assert.deepStrictEqual(out, [0, 1, 2, 3, 4, 5].map(Math.sqrt))
      // As in joblib's transcript: three items are produced before the first result, then one per result.
      const beforeFirstResult = log.slice(0, log.indexOf("Done 0"))
      assert.deepStrictEqual(beforeFirstResult, ["Produced 0", "Produced 1", "Produced 2"])
      assert.strictEqual(log.filter((line) => line.startsWith("Produced")).length, 6)
    }))
})

describe("joblib's Parallel examples, n_jobs=1", () => {
  // r = Parallel(n_jobs=1)(delayed(modf)(i/2.) for i in range(10)); res, i = zip(*r)
  it.effect("modf unzip", () =>
    Effect.gen(function*() {
      const r = yield* Parallel.map(Array.from({ length: 10 }, (_, i) => i / 2), (x) => {
        const whole = Math.trunc(x)
        return [x - whole, whole] as const
      }, { concurrency: 1 })
      const res = r.map(([fraction]) => fraction)
      const i = r.map(([, whole]) => whole)
      assert.deepStrictEqual(res, [0, 0.5, 0, 0.5, 0, 0.5, 0, 0.5, 0, 0.5])
      assert.deepStrictEqual(i, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    }))
})

describe("joblib's test_parallel.py, ported", () => {
  // test_dispatch_one_job: with one job and no backend, a generator is consumed as an iterator: each batch is
  // produced, then consumed, before the next is produced.
  for (
    const [batchSize, expected] of [
      [1, [0, 1, 2, 3, 4, 5].flatMap((i) => [`Produced ${i}`, `Consumed ${i}`])],
      [4, [
        ...[0, 1, 2, 3].map((i) => `Produced ${i}`),
        ...[0, 1, 2, 3].map((i) => `Consumed ${i}`),
        "Produced 4",
        "Produced 5",
        "Consumed 4",
        "Consumed 5"
      ]]
    ] as const
  ) {
    it.effect(`test_dispatch_one_job: batch_size=${batchSize}`, () =>
      Effect.gen(function*() {
        const queue: Array<string> = []
        function* producer() {
          for (let i = 0; i < 6; i++) {
            queue.push(`Produced ${i}`)
            yield i
          }
        }
        yield* Parallel.map(producer(), (x) => void queue.push(`Consumed ${x}`), { batchSize })
        assert.deepStrictEqual(queue, expected)
        assert.strictEqual(queue.length, 12)
      }))
  }
})

describe("the options joblib users write", () => {
  const producedBeforeFirstResult = (preDispatch: Parallel.PreDispatch) =>
    Effect.gen(function*() {
      let produced = 0
      let atFirst = -1
      function* producer() {
        for (let i = 0; i < 40; i++) {
          produced++
          yield i
        }
      }
      yield* Parallel.stream(
        producer(),
        (x: number) => new Promise<number>((resolve) => setTimeout(() => resolve(x), 20)),
        { batchSize: 1, preDispatch }
      ).pipe(
        Stream.runForEach(() => Effect.sync(() => void (atFirst < 0 && (atFirst = produced)))),
        Effect.provide(Backend.layerSequential({ concurrency: 2 }))
      )
      return atFirst
    })

  it.effect("preDispatch takes joblib's expressions: \"2*n_jobs\", \"n_jobs\", \"1.5*n_jobs\" and \"all\"", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* producedBeforeFirstResult("2*n_jobs"), 4)
      assert.strictEqual(yield* producedBeforeFirstResult("n_jobs"), 2)
      assert.strictEqual(yield* producedBeforeFirstResult("1.5*n_jobs"), 3)
      assert.strictEqual(yield* producedBeforeFirstResult("all"), 40)
      assert.strictEqual(yield* producedBeforeFirstResult(3), 3)
    }))

  it.effect("maxBytes takes \"1M\"-style sizes and null, as joblib's max_nbytes", () =>
    Effect.gen(function*() {
      const big = new Float64Array(40_000) // 320 KB
      const sharedUnder = (maxBytes: Backend.PoolOptions["maxBytes"]) =>
        Parallel.map([big, big], (array) => array.buffer instanceof SharedArrayBuffer).pipe(
          Effect.provide(Backend.layerThreads({ workers: 2, maxBytes }))
        )
      assert.deepStrictEqual(yield* sharedUnder("256K"), [true, true])
      assert.deepStrictEqual(yield* sharedUnder("1M"), [false, false])
      assert.deepStrictEqual(yield* sharedUnder(0.25 * 1024 * 1024), [true, true])
      assert.deepStrictEqual(yield* sharedUnder(null), [false, false])
      const bad = yield* Effect.flip(sharedUnder("1T" as never))
      assert.strictEqual(bad._tag, "InvalidOptions")
      assert.include(bad.message, "maxBytes")
    }))

  it.effect("test_effective_n_jobs: cpuCount and effectiveConcurrency, as joblib's cpu_count and effective_n_jobs", () =>
    Effect.gen(function*() {
      const cpus = Parallel.cpuCount()
      assert.isAtLeast(cpus, 1)
      assert.isAtMost(cpus, Os.availableParallelism())
      const threads = (n?: number) =>
        Parallel.effectiveConcurrency(n).pipe(
          Effect.provide(Backend.layerThreads({ workers: 16, oversubscribe: true }))
        )
      assert.strictEqual(yield* threads(-1), Math.min(16, cpus))
      assert.strictEqual(yield* threads(3), 3)
      assert.strictEqual(yield* threads(), 16)
      assert.strictEqual(yield* threads(100), 16)
      // The sequential backend runs one at a time, as joblib's effective_n_jobs says for n_jobs=1.
      assert.strictEqual(yield* Parallel.effectiveConcurrency(4), 1)
      const zero = yield* Effect.flip(Parallel.effectiveConcurrency(0))
      assert.strictEqual(zero._tag, "InvalidOptions")
    }))
})
