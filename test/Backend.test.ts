import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber, Layer, Option, Schedule, Schema, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import { Backend, Parallel, ParallelError, Progress, Task } from "../src/index.ts"
import * as Cpus from "../src/internal/parallel/cpus.ts"
import { workerSource } from "../src/internal/parallel/workerRuntime.js"
import { suite } from "./BackendSuite.ts"
import { Negative, Sleep, SquareRoot } from "./fixtures/tasks.ts"

suite("Backend.layerSequential (default)", Backend.layerSequential(), {
  isolated: false,
  sharedMemory: true,
  workers: 1
})
suite("Backend.layerSequential({ concurrency: 4 })", Backend.layerSequential({ concurrency: 4 }), {
  isolated: false,
  sharedMemory: true,
  workers: 4,
  sized: (workers) => Backend.layerSequential({ concurrency: workers })
})
// A custom backend that runs every batch here, counting them: it passes the same conformance suite.
const customBatches = { count: 0 }
suite(
  "Backend.make (custom, in process)",
  Backend.make({
    name: "counting",
    workers: 2,
    runBatch: (batch) => Effect.andThen(Effect.sync(() => customBatches.count++), batch.runHere)
  }),
  {
    isolated: false,
    sharedMemory: true,
    workers: 2,
    sized: (workers) => Backend.make({ name: "counting", workers, runBatch: (batch) => batch.runHere })
  }
)
suite("Backend.layerThreads", Backend.layerThreads({ workers: 2 }), {
  isolated: true,
  sharedMemory: true,
  workers: 2,
  sized: (workers) => Backend.layerThreads({ workers })
})
suite("Backend.layerProcesses", Backend.layerProcesses({ workers: 2 }), {
  isolated: true,
  sharedMemory: false,
  workers: 2,
  sized: (workers) => Backend.layerProcesses({ workers })
})

describe("inline functions and Effects", () => {
  it.effect("a real Effect from an inline function is refused in process, as workers refuse it", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Parallel.map([1, 2], (x: number) => Effect.succeed(x)))
      assert.instanceOf(error, ParallelError.UnshippableFunction)
      assert.include(error.message, "Define a Task")
      const onThreads = yield* Effect.flip(
        Parallel.map([1, 2], (x: number) => Effect.succeed(x)).pipe(
          Effect.provide(Backend.layerThreads({ workers: 1 }))
        )
      )
      assert.instanceOf(onThreads, ParallelError.UnshippableFunction, "it cannot even be shipped: it uses Effect")
    }))
})

describe("transfer: moving the caller's arrays into thread workers", () => {
  const MB = 1024 * 1024
  const sum = (a: Float64Array) => {
    let total = 0
    for (let i = 0; i < a.length; i++) total += a[i]!
    return total
  }
  const arrays = () => Array.from({ length: 4 }, (_, i) => new Float64Array((2 * MB) / 8).fill(i + 1))
  const expected = [1, 2, 3, 4].map((v) => v * (2 * MB) / 8)

  it.effect("with transfer the arrays move (the caller's are detached); without, they stay intact", () =>
    Effect.gen(function*() {
      const kept = arrays()
      assert.deepStrictEqual(yield* Parallel.map(kept, sum), expected)
      assert.isTrue(kept.every((a) => a.length === (2 * MB) / 8), "copied: intact")
      const moved = arrays()
      assert.deepStrictEqual(yield* Parallel.map(moved, sum, { transfer: true }), expected)
      assert.isTrue(moved.every((a) => a.length === 0 && a.buffer.detached), "moved: detached")
    }).pipe(Effect.provide(Backend.layerThreads({ workers: 2 }))))

  it.effect("a buffer several items share is copied once, not moved; a stream moves each buffer it meets", () =>
    Effect.gen(function*() {
      const shared = new Float64Array((2 * MB) / 8).fill(1)
      const views = [shared, shared.subarray(0, 10), shared]
      assert.deepStrictEqual(yield* Parallel.map(views, sum, { transfer: true, batchSize: 1 }), [
        (2 * MB) / 8,
        10,
        (2 * MB) / 8
      ])
      assert.isFalse(shared.buffer.detached)
      const streamed = arrays()
      const sums = yield* Stream.runCollect(Parallel.stream(Stream.fromIterable(streamed), sum, { transfer: true }))
      assert.deepStrictEqual(sums, expected)
      assert.isTrue(streamed.every((a) => a.buffer.detached))
    }).pipe(Effect.provide(Backend.layerThreads({ workers: 2 }))))

  it.effect("a stream that sends one buffer in two batches fails with InvalidOptions naming transfer", () =>
    Effect.gen(function*() {
      const one = new Float64Array((2 * MB) / 8).fill(1)
      const error = yield* Effect.flip(
        Stream.runCollect(Parallel.stream(Stream.make(one, one), sum, { transfer: true, batchSize: 1, preDispatch: 1 }))
      )
      assert.instanceOf(error, ParallelError.InvalidOptions)
      assert.strictEqual((error as ParallelError.InvalidOptions).option, "transfer")
    }).pipe(Effect.provide(Backend.layerThreads({ workers: 1 }))))

  it.effect("other backends ignore it and keep the caller's arrays", () =>
    Effect.gen(function*() {
      for (const layer of [Backend.layerSequential(), Backend.layerProcesses({ workers: 1 })]) {
        const kept = arrays()
        assert.deepStrictEqual(yield* Parallel.map(kept, sum, { transfer: true }).pipe(Effect.provide(layer)), expected)
        assert.isTrue(kept.every((a) => !a.buffer.detached))
      }
    }))
})

describe("Backend.make", () => {
  it.live("maps go through runBatch, one batch per slot at a time, with the map's batching", () =>
    Effect.gen(function*() {
      const seen: Array<
        { readonly slot: number; readonly start: number; readonly size: number; readonly label: string }
      > = []
      let running = 0
      let most = 0
      const layer = Backend.make({
        name: "watching",
        workers: 3,
        runBatch: (batch, slot) =>
          Effect.gen(function*() {
            seen.push({ slot, start: batch.start, size: batch.items.length, label: batch.label })
            most = Math.max(most, ++running)
            yield* Effect.sleep("2 millis")
            return yield* batch.runHere
          }).pipe(Effect.ensuring(Effect.sync(() => void running--)))
      })
      const squares = yield* Parallel.map(Array.from({ length: 30 }, (_, i) => i), function square(x: number) {
        return x * x
      }, { batchSize: 4 }).pipe(Effect.provide(layer))
      assert.deepStrictEqual(squares, Array.from({ length: 30 }, (_, i) => i * i))
      assert.deepStrictEqual(seen.map((b) => b.size).sort((a, b) => a - b), [2, 4, 4, 4, 4, 4, 4, 4])
      assert.isTrue(seen.every((b) => b.slot >= 0 && b.slot < 3 && b.label === "square"))
      assert.isAtMost(most, 3)
      assert.isAbove(customBatches.count, 0, "the conformance suite ran through runBatch too")
    }))

  it.effect("a WorkerCrashed from runBatch is retried as a crashed worker's batch is", () =>
    Effect.gen(function*() {
      let failures = 1
      const layer = Backend.make({
        name: "flaky",
        workers: 1,
        runBatch: (batch) =>
          failures-- > 0
            ? Effect.fail(new ParallelError.WorkerCrashed({ worker: 0, message: "the remote machine went away" }))
            : batch.runHere
      })
      const crashed = yield* Effect.flip(Parallel.map([1, 2], (x: number) => x).pipe(Effect.provide(layer)))
      assert.instanceOf(crashed, ParallelError.WorkerCrashed)
      failures = 1
      const events: Array<string> = []
      const retried = yield* Parallel.map([1, 2], (x: number) => x, { retry: Schedule.recurs(2) }).pipe(
        Effect.provide(layer),
        Effect.provideService(Progress.Progress, (event) => {
          if (event._tag === "BatchRetried") events.push(`${event.reason} ${event.size}`)
        })
      )
      assert.deepStrictEqual(retried, [1, 2])
      assert.deepStrictEqual(events, ["crashed 1"], "the crashed batch's re-run is a Progress event")
    }))

  it.effect("bad options are InvalidOptions; a runBatch that returns no Outcome is a defect naming the backend", () =>
    Effect.gen(function*() {
      const bad = yield* Effect.flip(
        Parallel.map([1], (x: number) => x).pipe(
          Effect.provide(Backend.make({ name: "", workers: 0, runBatch: () => Effect.die("unused") } as any))
        )
      )
      assert.instanceOf(bad, ParallelError.InvalidOptions)
      const exit = yield* Effect.exit(
        Parallel.map([1], (x: number) => x).pipe(
          Effect.provide(
            Backend.make({ name: "broken", workers: 1, runBatch: () => Effect.succeed({ nope: 1 } as any) })
          )
        )
      )
      assert.isTrue(Exit.isFailure(exit))
      assert.include(String(Cause.squash((exit as Exit.Failure<unknown, unknown>).cause)), `Backend "broken"`)
    }))
})

describe("a pool's timers run on the Clock", () => {
  it.effect(
    "a stuck worker is replaced when the Clock passes its timeout, not before: TestClock drives it",
    () =>
      Effect.gen(function*() {
        const fiber = yield* Effect.forkChild(Parallel.map([1, 2], (x) => {
          if (x === 1) { while (true) {} }
          return x * 10
        }, { timeout: 100, mode: "exit", batchSize: 2 }))
        // Half a second of real time, five times the timeout: the Clock has not moved, so the worker is not replaced.
        yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 500)))
        assert.isUndefined(fiber.pollUnsafe(), "still waiting for the stuck item")
        // Moving the Clock past the timeout and grace replaces the worker; retried in case the item's start was late.
        let exits: ReadonlyArray<Exit.Exit<number, unknown>> | undefined
        for (let attempt = 0; attempt < 50 && exits === undefined; attempt++) {
          yield* TestClock.adjust("1 second")
          yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 100)))
          const done = fiber.pollUnsafe()
          if (done !== undefined) exits = yield* done
        }
        assert.isDefined(exits)
        const stuck = Option.getOrThrow(Exit.findErrorOption(exits![0]!))
        assert.instanceOf(stuck, ParallelError.TaskTimeout)
        assert.deepStrictEqual(exits![1], Exit.succeed(20), "the item after it ran on the replacement")
      }).pipe(Effect.provide(Backend.layerThreads({ workers: 1 }))),
    30_000
  )
})

describe("in process, with the workers' item loop", () => {
  it.effect("a Task's Effect times out on the Clock: TestClock decides, as for a worker pool", () =>
    Effect.gen(function*() {
      const fiber = yield* Effect.forkChild(Parallel.map([10_000, 5], Sleep, { timeout: 100, mode: "exit" }))
      // The Clock moves in steps, with real turns of the event loop between them for the batch to start.
      let exits: ReadonlyArray<Exit.Exit<number, unknown>> | undefined
      for (let step = 0; step < 200 && exits === undefined; step++) {
        yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
        yield* TestClock.adjust("10 millis")
        const done = fiber.pollUnsafe()
        if (done !== undefined) exits = yield* done
      }
      assert.isDefined(exits, "the timeout fired once the Clock passed it")
      const timedOut = Option.getOrThrow(Exit.findErrorOption(exits![0]!))
      assert.instanceOf(timedOut, ParallelError.TaskTimeout)
      assert.strictEqual((timedOut as ParallelError.TaskTimeout).index, 0)
      assert.deepStrictEqual(exits![1], Exit.succeed(5))
    }))

  it.effect("a defect is the thrown value itself and a typed failure its own error, never a copy", () =>
    Effect.gen(function*() {
      class Odd extends Error {}
      const thrown = new Odd("odd")
      const exits = yield* Parallel.map([2, 3], (x) => {
        if (x % 2 === 1) throw thrown
        return x
      }, { mode: "exit" })
      assert.deepStrictEqual(exits[0], Exit.succeed(2))
      assert.strictEqual(Cause.squash((exits[1] as Exit.Failure<unknown, unknown>).cause), thrown)
      const error = yield* Effect.flip(Parallel.map([4, -1], SquareRoot))
      assert.instanceOf(error, Negative)
    }))

  it.effect("interrupting a map interrupts the Effect running in it, and its finalizer runs first", () =>
    Effect.gen(function*() {
      let finalized = false
      const started = yield* Deferred.make<void>()
      const fiber = yield* Effect.forkChild(
        Parallel.map(
          [1],
          Task.make("Forever", {
            payload: Schema.Number,
            success: Schema.Number,
            run: () =>
              Deferred.succeed(started, undefined).pipe(
                Effect.andThen(Effect.never),
                Effect.ensuring(Effect.sync(() => (finalized = true)))
              )
          })
        )
      )
      yield* Deferred.await(started)
      yield* Fiber.interrupt(fiber)
      assert.isTrue(finalized)
    }))
})

describe("renamed layers", () => {
  it("the 0.4 names are the same Layers as their layer* names", () => {
    assert.strictEqual(Backend.sequential, Backend.layerSequential)
    assert.strictEqual(Backend.threads, Backend.layerThreads)
    assert.strictEqual(Backend.processes, Backend.layerProcesses)
    assert.strictEqual(Backend.auto, Backend.layerAuto)
  })
})

describe("Backend options", () => {
  it.effect("threads: -1 is every CPU", () =>
    Effect.gen(function*() {
      const backend = yield* Backend.Backend
      assert.strictEqual(backend.workers, Cpus.available())
      assert.strictEqual(backend.name, "threads")
    }).pipe(Effect.provide(Backend.layerThreads({ workers: -1 }))))

  it.effect("threads: env and resourceLimits reach the workers", () =>
    Effect.gen(function*() {
      const seen = yield* Parallel.map([1], (_) => (globalThis as any).process.env.EJL_TEST)
      assert.deepStrictEqual(seen, ["from the layer"])
      const limit = yield* Parallel.map([1], (_) =>
        (globalThis as any).process.getBuiltinModule("node:worker_threads").resourceLimits.maxOldGenerationSizeMb)
      assert.deepStrictEqual(limit, [64])
    }).pipe(
      Effect.provide(
        Backend.layerThreads({
          workers: 1,
          env: { EJL_TEST: "from the layer" },
          resourceLimits: { maxOldGenerationSizeMb: 64 }
        })
      )
    ))

  it.effect("validateOptions checks options without running anything", () =>
    Effect.gen(function*() {
      yield* Parallel.validateOptions({ batchSize: 8, preDispatch: 2 })
      const error = yield* Effect.flip(Parallel.validateOptions({ batchSize: 0 }))
      assert.strictEqual(error.option, "batchSize")
    }))

  it.effect("the default backend is sequential", () =>
    Effect.gen(function*() {
      const backend = yield* Backend.Backend
      assert.strictEqual(backend.name, "sequential")
      assert.strictEqual(backend.workers, 1)
    }))

  it.effect("bad backend options are typed errors", () =>
    Effect.gen(function*() {
      for (
        const [layer, option] of [
          [Backend.layerThreads({ workers: 0 }), "workers"],
          [Backend.layerThreads({ workers: 1.5 }), "workers"],
          [Backend.layerThreads({ workers: -(Cpus.available() + 5) }), "workers"],
          [Backend.layerThreads({ maxBytes: 0 }), "maxBytes"],
          [Backend.layerThreads({ unknown: 1 } as Backend.ThreadsOptions), "unknown"],
          [Backend.layerSequential({ concurrency: 0 }), "concurrency"]
        ] as const
      ) {
        const error = yield* Effect.flip(Effect.provide(
          Effect.gen(function*() {
            return yield* Backend.Backend
          }),
          layer
        ))
        assert.instanceOf(error, ParallelError.InvalidOptions)
        assert.strictEqual(error.option, option)
      }
    }))
})

/** Worker processes of this process: children started by the processes backend. */
const workerProcesses = () =>
  ChildProcess.execFileSync("ps", ["--ppid", String(process.pid), "-o", "args="], { encoding: "utf8" })
    .split("\n").filter((line) => line.includes("EFFECT_JOBLIB_WORKER_SOURCE")).length

/** OS threads of this process: a worker thread adds at least one. */
const osThreads = () => Fs.readdirSync("/proc/self/task").length

/** Waits real time, whatever Clock the test has. */
const realWait = (ms: number) => Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, ms)))

describe("pools start on demand", () => {
  it.effect("a pool starts no worker until a map needs one, and a small map starts only those it uses", () =>
    Effect.gen(function*() {
      const context = yield* Layer.build(Backend.layerProcesses({ workers: 2 }))
      assert.strictEqual(workerProcesses(), 0, "built, and no map yet")
      assert.deepStrictEqual(yield* Effect.provide(Parallel.map([4], SquareRoot), context), [2])
      assert.strictEqual(workerProcesses(), 1, "one item, one worker")
      yield* Effect.provide(
        Parallel.map(Array.from({ length: 40 }, (_, i) => i), SquareRoot, { batchSize: 1 }),
        context
      )
      assert.strictEqual(workerProcesses(), 2, "never more than workers")
    }).pipe(Effect.scoped))

  it.effect("threads too: 16 workers asked for start no thread until a map runs", () =>
    Effect.gen(function*() {
      const before = osThreads()
      const context = yield* Layer.build(Backend.layerThreads({ workers: 16, oversubscribe: true }))
      assert.isBelow(osThreads() - before, 8, "a warm pool of 16 would have added at least 16 threads")
      assert.deepStrictEqual(yield* Effect.provide(Parallel.map([9], SquareRoot), context), [3])
      const warmed = yield* Layer.build(Backend.layerThreads({ workers: 4, warm: true }))
      assert.isAtLeast(osThreads() - before, 5, "warm: true starts every worker when the Layer is built")
      assert.deepStrictEqual(yield* Effect.provide(Parallel.map([16], SquareRoot), warmed), [4])
    }).pipe(Effect.scoped))

  it.effect("an idle worker stops after idleTimeout on the Clock, and the next map starts another", () =>
    Effect.gen(function*() {
      const context = yield* Layer.build(Backend.layerProcesses({ workers: 2, idleTimeout: "1 minute" }))
      yield* Effect.provide(Parallel.map([4], SquareRoot), context)
      assert.strictEqual(workerProcesses(), 1)
      yield* TestClock.adjust("59 seconds")
      yield* realWait(300)
      assert.strictEqual(workerProcesses(), 1, "not idle long enough yet")
      yield* TestClock.adjust("2 seconds")
      for (let i = 0; i < 100 && workerProcesses() > 0; i++) yield* realWait(50)
      assert.strictEqual(workerProcesses(), 0, "stopped once idle for a minute on the TestClock")
      assert.deepStrictEqual(yield* Effect.provide(Parallel.map([25], SquareRoot), context), [5])
      assert.strictEqual(workerProcesses(), 1)
    }).pipe(Effect.scoped))

  it.effect("more than 4 workers per CPU is a typed error naming the CPU count, unless oversubscribe allows it", () =>
    Effect.gen(function*() {
      const cpus = Cpus.available()
      const error = yield* Effect.flip(Layer.build(Backend.layerThreads({ workers: 10_000 })))
      assert.instanceOf(error, ParallelError.InvalidOptions)
      assert.strictEqual((error as ParallelError.InvalidOptions).option, "workers")
      assert.include(
        error.message,
        `Backend.layerThreads: option "workers": 10000 workers is more than 4× the ${cpus} CPU`
      )
      assert.include(error.message, "oversubscribe: true")
      const processes = yield* Effect.flip(Layer.build(Backend.layerProcesses({ workers: 4 * cpus + 1 })))
      assert.include(processes.message, "Backend.layerProcesses")
      const before = osThreads()
      yield* Layer.build(Backend.layerThreads({ workers: 10_000, oversubscribe: true }))
      assert.isBelow(osThreads() - before, 8, "allowed, and nothing started until a map needs it")
      const negative = yield* Effect.flip(Layer.build(Backend.layerThreads({ workers: -(cpus + 5) })))
      assert.match(negative.message, /^Backend\.layerThreads: option "workers": -\d+ asks for/)
    }).pipe(Effect.scoped))
})

describe("the worker runtime's source", () => {
  it("stays well within what one environment variable may hold (128 KB), for process workers", () => {
    assert.isBelow(workerSource("startProcess").length, 96 * 1024)
  })
})
