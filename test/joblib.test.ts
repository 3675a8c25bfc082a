/**
 * The Parallel examples of joblib's documentation, with the same results.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, Stream } from "effect"
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
