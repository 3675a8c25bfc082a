// A consumer's @effect/vitest tests: the same bodies under TestClock on four backends, swapped by Layer.
import { assert, describe, it } from "@effect/vitest"
import { Cause, Clock, type Duration, Effect, Exit, Fiber, Layer, Redacted, Schedule, Stream } from "effect"
import { Backend, Cache, Parallel, ParallelError, Progress, Remote } from "effect-joblib"
import { TestClock } from "effect/testing"
import { Flaky, Nap, Square } from "./tasks.ts"

const redis = Redacted.make(process.env.REDIS_URL!)
const tasks = new URL("./tasks.ts", import.meta.url).href

const backends = [
  ["sequential", () => Backend.layerSequential()],
  ["threads", () => Backend.layerThreads({ workers: 2 })],
  ["processes", () => Backend.layerProcesses({ workers: 2 })],
  ["Remote", () => {
    const queue = `clock-${Math.random().toString(36).slice(2)}`
    // The worker first, so that the driver finds it registered.
    return Remote.layer({ redis, queue }).pipe(
      Layer.provideMerge(Remote.layerWorker({ redis, queue, modules: [tasks], concurrency: 2 }))
    )
  }]
] as const

/** Moves the TestClock until `fiber` is done, letting real time pass for the workers between steps. */
const adjustUntilDone = <A, E>(fiber: Fiber.Fiber<A, E>, step: Duration.Input) =>
  Effect.gen(function*() {
    for (let i = 0; i < 500 && fiber.pollUnsafe() === undefined; i++) {
      yield* TestClock.adjust(step)
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 10)))
    }
    return yield* Fiber.await(fiber)
  })

for (const [name, backend] of backends) {
  describe(`under TestClock on ${name}`, () => {
    it.effect("a timeout passes with TestClock.adjust", () =>
      Effect.gen(function*() {
        const fiber = yield* Effect.forkChild(Parallel.map([3_600_000], Nap, { timeout: "1 second" }))
        const exit = yield* adjustUntilDone(fiber, "1 second")
        assert.isTrue(Exit.isFailure(exit))
        assert.instanceOf(Cause.squash((exit as Exit.Failure<unknown, unknown>).cause), ParallelError.TaskTimeout)
      }).pipe(Effect.provide(backend())), 60_000)

    it.effect("a retry waits out Schedule.spaced on the TestClock", () =>
      Effect.gen(function*() {
        const key = `${name}-${Math.random().toString(36).slice(2)}`
        const fiber = yield* Effect.forkChild(
          Parallel.map([{ key, failures: 2 }], Flaky, { retry: Schedule.spaced("1 hour") })
        )
        const exit = yield* adjustUntilDone(fiber, "10 minutes")
        assert.deepStrictEqual(exit, Exit.succeed([3]))
        assert.isAtLeast(yield* Clock.currentTimeMillis, 2 * 3_600_000)
      }).pipe(Effect.provide(backend())), 60_000)

    it.effect("a memoized map's time to live expires with TestClock.adjust", () => {
      let computed = 0
      const squares = Cache.memoize(function squares(xs: ReadonlyArray<number>) {
        computed++
        return Parallel.map(xs, Square)
      }, { timeToLive: "1 hour" })
      return Effect.gen(function*() {
        assert.deepStrictEqual(yield* squares([1, 2, 3]), [1, 4, 9])
        yield* squares([1, 2, 3])
        assert.strictEqual(computed, 1)
        yield* TestClock.adjust("61 minutes")
        assert.deepStrictEqual(yield* squares([1, 2, 3]), [1, 4, 9])
        assert.strictEqual(computed, 2)
      }).pipe(Effect.provide(Layer.merge(backend(), Cache.layerMemory())))
    }, 60_000)
  })
}

describe("reporters joined with Layer.mergeAll", () => {
  it.effect("both see every event of a map", () => {
    const handled: Array<string> = []
    return Effect.gen(function*() {
      const events = yield* (yield* Progress.Events).subscribe
      const streamed = yield* events.pipe(
        Stream.takeUntil((event) => event._tag === "Finished"),
        Stream.map((event) => event._tag),
        Stream.runCollect,
        Effect.forkScoped
      )
      yield* Parallel.map([1, 2, 3], Square, { batchSize: 1 })
      const tags = yield* Fiber.join(streamed)
      yield* Effect.yieldNow
      assert.strictEqual(tags.filter((tag) => tag === "BatchCompleted").length, 3)
      assert.deepStrictEqual(handled, tags)
    }).pipe(Effect.provide(Layer.mergeAll(
      Progress.layerEvents,
      Progress.layer((event) => Effect.sync(() => void handled.push(event._tag))),
      Backend.layerThreads({ workers: 2 })
    )))
  })
})
