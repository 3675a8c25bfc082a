/**
 * The backend conformance suite: every Backend layer must pass it.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Cause, Clock, Duration, Effect, Exit, Fiber, type Layer, Option, Result, Schedule, Stream } from "effect"
import { TestClock } from "effect/testing"
import { Cache, Parallel, ParallelError, Progress } from "../src/index.ts"
import * as Cpus from "../src/internal/parallel/cpus.ts"
import { CurrentObserver, type Observer } from "../src/internal/parallel/engine.ts"
import {
  Fit,
  Flake,
  Flaky,
  InterruptsItself,
  Label,
  Mirror,
  Negative,
  Point,
  Reports,
  Scaled,
  Sleep,
  SquareRoot,
  Throws
} from "./fixtures/tasks.ts"

export interface Capabilities {
  /** Work runs in another isolate: values are copied, inline functions are shipped by source. */
  readonly isolated: boolean
  /** Workers see the parent's SharedArrayBuffers (false for processes). */
  readonly sharedMemory: boolean
  readonly workers: number
  /** The work a batch aims at under automatic batching, where the backend sets one (Remote: about 1 s). */
  readonly batchTargetMillis?: number | undefined
  /**
   * Per-task timeouts are kept by the worker's own pool, on its clock, not on the caller's (Remote: the
   * driver hears of a batch's items only when the batch is done). The outcome is the same; only the wait is not
   * the caller's TestClock's to shorten or lengthen.
   */
  readonly timeoutsOnWorkerClock?: boolean | undefined
  /** The same backend with `workers` workers, for the scheduling cases run at several sizes. */
  readonly sized?: ((workers: number) => Layer.Layer<never, unknown>) | undefined
}

/** Waits `ms` of real time, whatever Clock the caller has: for a worker to get on with its part. */
const realWait = (ms: number) => Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, ms)))

/** Moves the TestClock by `step` until `fiber` is done, letting real time pass between steps for workers. */
const adjustUntilDone = Effect.fnUntraced(function*<A, E>(fiber: Fiber.Fiber<A, E>, step: Duration.Input) {
  for (let i = 0; i < 500 && fiber.pollUnsafe() === undefined; i++) {
    yield* TestClock.adjust(step)
    yield* realWait(10)
  }
  return yield* Fiber.await(fiber)
})

/** Records dispatched and completed batches. */
export const recordBatches = () => {
  const dispatched: Array<{ start: number; size: number; slot: number }> = []
  const completed: Array<{ start: number; size: number; duration: number; failed: number }> = []
  const observer: Observer = {
    dispatched: (start, size, slot) => void dispatched.push({ start, size, slot }),
    completed: (start, size, duration, failed) => void completed.push({ start, size, duration, failed })
  }
  return { dispatched, completed, provide: Effect.provideService(CurrentObserver, observer) }
}

/** The thread (or process) an inline function runs in. */
const whereAmI = (_: unknown) => {
  const threads = (globalThis as any).process.getBuiltinModule("node:worker_threads")
  return `${(globalThis as any).process.pid}:${threads.threadId}`
}

/** {@link whereAmI} after 50 ms of work, so that every free worker gets a part of a map of a few items. */
const busyWhereAmI = (_: unknown) => {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50)
  const threads = (globalThis as any).process.getBuiltinModule("node:worker_threads")
  return `${(globalThis as any).process.pid}:${threads.threadId}`
}

export const suite = (name: string, backend: Layer.Layer<never, unknown>, capabilities: Capabilities) =>
  layer(backend, { timeout: 30_000, excludeTestServices: true })(name, (it) => {
    describe("ordering", () => {
      it.effect("keeps input order whatever the batch size", () =>
        Effect.gen(function*() {
          const xs = Array.from({ length: 500 }, (_, i) => i)
          for (const batchSize of [1, 7, 64, 1000, "auto"] as const) {
            // Uneven work so that batches finish out of order.
            const out = yield* Parallel.map(xs, (x) => {
              let spin = (x * 7919) % 13 * 2000
              while (spin > 0) spin--
              return x * 2
            }, { batchSize })
            assert.deepStrictEqual(out, xs.map((x) => x * 2), `batchSize ${batchSize}`)
          }
        }))

      it.effect("runs Tasks with Schema payloads and results", () =>
        Effect.gen(function*() {
          assert.deepStrictEqual(yield* Parallel.map([0, 1, 4, 9], SquareRoot), [0, 1, 2, 3])
          const [mirrored] = yield* Parallel.map([new Point({ x: 1, y: 2 })], Mirror)
          assert.instanceOf(mirrored, Point)
          assert.deepStrictEqual([mirrored!.x, mirrored!.y], [2, 1])
        }))

      it.effect("empty input gives an empty array", () =>
        Effect.gen(function*() {
          assert.deepStrictEqual(yield* Parallel.map([], SquareRoot), [])
        }))

      it.effect("accepts async iterables and streams", () =>
        Effect.gen(function*() {
          async function* gen() {
            for (let i = 0; i < 20; i++) yield i
          }
          assert.deepStrictEqual(yield* Parallel.map(gen(), (x) => x + 1), Array.from({ length: 20 }, (_, i) => i + 1))
          const fromStream = yield* Parallel.map(Stream.range(1, 30), (x) => -x, { batchSize: 4 })
          assert.deepStrictEqual(fromStream, Array.from({ length: 30 }, (_, i) => -(i + 1)))
        }))

      it.effect("stream: in order by default, with indices when unordered", () =>
        Effect.gen(function*() {
          const ordered = yield* Parallel.stream([5, 3, 1], (x) => x * 10).pipe(Stream.runCollect)
          assert.deepStrictEqual(ordered, [50, 30, 10])
          const unordered = yield* Parallel.stream([5, 3, 1], (x) => x * 10, { ordered: false, batchSize: 1 }).pipe(
            Stream.runCollect
          )
          assert.deepStrictEqual(
            [...unordered].sort((a, b) => a.index - b.index),
            [{ index: 0, value: 50 }, { index: 1, value: 30 }, { index: 2, value: 10 }]
          )
        }))

      it.effect("passes each item's input index to an inline function", () =>
        Effect.gen(function*() {
          const out = yield* Parallel.map(["a", "b", "c", "d", "e"], (x, i) => `${x}${i}`, { batchSize: 2 })
          assert.deepStrictEqual(out, ["a0", "b1", "c2", "d3", "e4"])
        }))
    })

    describe("failures", () => {
      it.effect("a typed failure fails the map with the decoded error", () =>
        Effect.gen(function*() {
          const error = yield* Effect.flip(Parallel.map([1, -4, 9], SquareRoot))
          assert.instanceOf(error, Negative)
          assert.strictEqual((error as Negative).value, -4)
        }))

      it.effect("a thrown exception is a defect carrying the worker's stack", () =>
        Effect.gen(function*() {
          const exit = yield* Effect.exit(Parallel.map([1, 2, 3, 4], Throws, { batchSize: 1 }))
          assert.isTrue(Exit.isFailure(exit))
          const defect = Cause.squash((exit as Exit.Failure<unknown, unknown>).cause) as Error
          assert.instanceOf(defect, RangeError)
          assert.strictEqual(defect.name, "RangeError")
          assert.strictEqual(defect.message, "three is not allowed")
          assert.include(defect.stack, "fixtures/tasks.ts", "the stack points at the task's source")
          if (capabilities.isolated) assert.include(defect.stack, "worker")
        }))

      it.effect("JavaScript's own error classes come back as their class, with message, stack and cause", () =>
        Effect.gen(function*() {
          const names = ["Error", "EvalError", "RangeError", "ReferenceError", "SyntaxError", "TypeError", "URIError"]
          const exits = yield* Parallel.map(names, (name: string) => {
            const Builtin = (globalThis as any)[name] as ErrorConstructor
            throw new Builtin(`a ${name}`, { cause: new TypeError("the inner cause", { cause: 42 }) })
          }, { mode: "exit", batchSize: 2 })
          names.forEach((name, i) => {
            const defect = Cause.squash((exits[i] as Exit.Failure<unknown, unknown>).cause) as Error
            assert.strictEqual(Object.getPrototypeOf(defect), (globalThis as any)[name].prototype, name)
            assert.strictEqual(defect.message, `a ${name}`)
            assert.include(defect.stack, `a ${name}`)
            const cause = defect.cause as Error
            assert.instanceOf(cause, TypeError)
            assert.strictEqual(cause.message, "the inner cause")
            assert.strictEqual(cause.cause, 42)
          })
        }))

      it.effect("an AggregateError keeps its errors; other classes are Errors with their name", () =>
        Effect.gen(function*() {
          const exits = yield* Parallel.map(["aggregate", "custom", "spoofed"], (kind: string) => {
            class Overflow extends RangeError {
              override name = "Overflow"
            }
            if (kind === "aggregate") throw new AggregateError([new URIError("bad uri"), "plain text"], "several")
            if (kind === "custom") throw new Overflow("too big")
            const spoofed = new Error("only named so")
            spoofed.name = "RangeError"
            throw spoofed
          }, { mode: "exit" })
          const [aggregate, custom, spoofed] = exits.map((exit) =>
            Cause.squash((exit as Exit.Failure<unknown, unknown>).cause) as Error
          )
          assert.instanceOf(aggregate, AggregateError)
          assert.strictEqual(aggregate!.message, "several")
          const errors = (aggregate as AggregateError).errors
          assert.instanceOf(errors[0], URIError)
          assert.strictEqual(errors[0].message, "bad uri")
          assert.strictEqual(errors[1], "plain text")
          assert.strictEqual(custom!.name, "Overflow")
          assert.strictEqual(custom!.message, "too big")
          if (capabilities.isolated) {
            assert.strictEqual(Object.getPrototypeOf(custom), Error.prototype, "a custom class crosses as an Error")
            assert.notInstanceOf(spoofed, RangeError, "a name alone does not make a RangeError")
          }
          assert.strictEqual(spoofed!.name, "RangeError")
        }))

      it.effect("an inline function that returns an Effect fails the map with UnshippableFunction, in every mode", () =>
        Effect.gen(function*() {
          for (const mode of ["failFast", "exit", "result"] as const) {
            // What an Effect looks like to every backend; a real one cannot be shipped (it captures `Effect`).
            const error = yield* Effect.flip(
              Parallel.map([1, 2], (x: number) => ({ "~effect/Effect": "~effect/Effect", x }), { mode })
            )
            assert.instanceOf(error, ParallelError.UnshippableFunction, mode)
            assert.include(error.message, "returned an Effect")
          }
        }))

      it.effect("fail-fast stops dispatch after the first failure", () =>
        Effect.gen(function*() {
          const record = recordBatches()
          const items = Array.from({ length: 400 }, (_, i) => i)
          const exit = yield* Effect.exit(
            Parallel.map(items, (i) => {
              Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2)
              if (i === 5) throw new Error("boom")
              return i
            }, { batchSize: 1 }).pipe(record.provide)
          )
          assert.isTrue(Exit.isFailure(exit))
          const ran = record.dispatched.length
          assert.isAtLeast(ran, 6)
          assert.isBelow(ran, 60, `only the batches in flight finish, ran ${ran}`)
        }))

      it.effect("mode: exit keeps every item's outcome", () =>
        Effect.gen(function*() {
          const exits = yield* Parallel.map([4, -1, 9, -2], SquareRoot, { mode: "exit", batchSize: 2 })
          assert.strictEqual(exits.length, 4)
          assert.deepStrictEqual(exits[0], Exit.succeed(2))
          assert.deepStrictEqual(exits[2], Exit.succeed(3))
          for (const i of [1, 3]) {
            const exit = exits[i]!
            assert.isTrue(Exit.isFailure(exit))
            assert.instanceOf(Option.getOrThrow(Exit.findErrorOption(exit)), Negative)
          }
        }))

      it.effect("mode: result gives a Result per item", () =>
        Effect.gen(function*() {
          const results = yield* Parallel.map([4, -1], SquareRoot, { mode: "result" })
          assert.deepStrictEqual(results[0], Result.succeed(2))
          assert.isTrue(Result.isFailure(results[1]!))
        }))

      it.effect("a task that interrupts itself is reported, never dropped", () =>
        Effect.gen(function*() {
          const exits = yield* Parallel.map([1, 2, 3], InterruptsItself, { mode: "exit", batchSize: 3 })
          assert.strictEqual(exits.length, 3, "no item is lost")
          assert.deepStrictEqual(exits[0], Exit.succeed(1))
          assert.isTrue(Exit.isFailure(exits[1]!) && Cause.hasInterruptsOnly(exits[1].cause))
          const failFast = yield* Effect.exit(Parallel.map([1, 2, 3], InterruptsItself))
          assert.isTrue(Exit.isFailure(failFast))
        }))

      it.effect("mode: exit also records defects per item", () =>
        Effect.gen(function*() {
          const exits = yield* Parallel.map([1, 2, 3, 4], Throws, { mode: "exit", batchSize: 4 })
          assert.deepStrictEqual(exits.map(Exit.isSuccess), [true, true, false, true])
        }))
    })

    describe("interruption", () => {
      it.effect("interrupting the map stops in-flight work and the pool stays usable", () =>
        Effect.gen(function*() {
          const before = new Set(yield* Parallel.map([1, 2, 3, 4], whereAmI, { batchSize: 1 }))
          const fiber = yield* Effect.forkChild(Parallel.map([60_000, 60_000, 60_000], Sleep, { batchSize: 1 }))
          yield* Effect.sleep("300 millis")
          yield* Fiber.interrupt(fiber)
          const exit = yield* Fiber.await(fiber)
          assert.isTrue(Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause))
          assert.deepStrictEqual(yield* Parallel.map([1, 4], SquareRoot), [1, 2])
          // Effect-based tasks stop cooperatively: the same workers serve the next map.
          const after = new Set(yield* Parallel.map([1, 2, 3, 4], whereAmI, { batchSize: 1 }))
          for (const worker of after) assert.isTrue(before.has(worker), `worker ${worker} is new`)
        }))

      // A sequential backend cannot preempt its own thread.
      it.effect.skipIf(!capabilities.isolated)(
        "a batch stuck in a synchronous loop is cancelled, its worker replaced",
        () =>
          Effect.gen(function*() {
            const fiber = yield* Effect.forkChild(Parallel.map([1], (_) => {
              while (true) {
                // spins until the worker is terminated
              }
            }))
            yield* Effect.sleep("200 millis")
            yield* Fiber.interrupt(fiber)
            assert.deepStrictEqual(yield* Parallel.map([9, 16], SquareRoot), [3, 4])
          })
      )

      // In process, exiting would end the test process itself.
      it.effect.skipIf(!capabilities.isolated)(
        "a worker that dies mid-batch fails the map with WorkerCrashed, and is replaced",
        () =>
          Effect.gen(function*() {
            const error = yield* Effect.flip(Parallel.map([1, 2, 3], (x) => {
              if (x === 2) (globalThis as any).process.exit(3)
              return x
            }, { batchSize: 1 }))
            assert.instanceOf(error, ParallelError.WorkerCrashed)
            assert.strictEqual((error as ParallelError.WorkerCrashed).exitCode, 3)
            assert.include(error.message, "exited with code 3")
            assert.deepStrictEqual(yield* Parallel.map([1, 4, 9], SquareRoot), [1, 2, 3], "the pool is whole again")
          })
      )

      it.effect(
        "maps interrupted in quick succession replace no worker, and the pool serves the next map",
        () =>
          Effect.gen(function*() {
            const before = new Set(yield* Parallel.map([1, 2, 3, 4], whereAmI, { batchSize: 1 }))
            for (let i = 0; i < 200; i++) {
              const fiber = yield* Effect.forkChild(Parallel.map([60_000, 60_000, 60_000], Sleep, { batchSize: 1 }))
              // Shortly after it starts: at once, or after a few milliseconds, so that some batches are running.
              if (i % 4 !== 0) yield* realWait(i % 4)
              yield* Fiber.interrupt(fiber)
            }
            assert.deepStrictEqual(yield* Parallel.map([1, 4, 9], SquareRoot), [1, 2, 3])
            const after = new Set(yield* Parallel.map([1, 2, 3, 4], whereAmI, { batchSize: 1 }))
            for (const worker of after) assert.isTrue(before.has(worker), `worker ${worker} is new: one was replaced`)
            // No interrupted batch goes on running somewhere: every worker is free to take part in the next map.
            const all = new Set(
              yield* Parallel.map(Array.from({ length: 8 }, (_, i) => i), busyWhereAmI, { batchSize: 1 })
            )
            assert.strictEqual(all.size, before.size, "a worker is still busy with an interrupted map's batch")
          }),
        120_000
      )

      it.effect("a whole-map timeout interrupts the work and leaves the pool usable", () =>
        Effect.gen(function*() {
          const exit = yield* Effect.exit(
            Parallel.map([60_000, 60_000], Sleep, { batchSize: 1 }).pipe(Effect.timeout("200 millis"))
          )
          assert.isTrue(Exit.isFailure(exit))
          assert.deepStrictEqual(yield* Parallel.map([16], SquareRoot), [4])
        }))

      it.effect("a stream that stops early interrupts the rest", () =>
        Effect.gen(function*() {
          const counter = new Int32Array(new SharedArrayBuffer(4))
          const items = Array.from({ length: 200 }, (_, i) => ({ i, counter }))
          const first = yield* Parallel.stream(items, async ({ i, counter }) => {
            await new Promise((resolve) => setTimeout(resolve, 5))
            Atomics.add(counter, 0, 1)
            return i
          }, { batchSize: 1 }).pipe(Stream.take(3), Stream.runCollect)
          assert.deepStrictEqual(first, [0, 1, 2])
          yield* Effect.sleep("100 millis")
          assert.isBelow(Atomics.load(counter, 0), 20, "no work runs on after the consumer stopped")
        }))

      it.effect("async work checks for cancellation between items", () =>
        Effect.gen(function*() {
          const counter = new Int32Array(new SharedArrayBuffer(4))
          const items = Array.from({ length: 50 }, () => counter)
          const fiber = yield* Effect.forkChild(Parallel.map(items, async (counter) => {
            await new Promise((resolve) => setTimeout(resolve, 20))
            Atomics.add(counter, 0, 1)
          }, { batchSize: 50 }))
          yield* Effect.sleep("150 millis")
          yield* Fiber.interrupt(fiber)
          const atInterrupt = Atomics.load(counter, 0)
          yield* Effect.sleep("300 millis")
          assert.isBelow(Atomics.load(counter, 0), 50)
          assert.isAtMost(Atomics.load(counter, 0) - atInterrupt, 1, "at most the item in flight finishes")
        }))
    })

    describe("lazy input", () => {
      it.effect("an infinite stream is pulled only as far as needed", () =>
        Effect.gen(function*() {
          let pulled = 0
          const naturals = Stream.iterate(0, (n) => n + 1).pipe(Stream.tap(() => Effect.sync(() => void pulled++)))
          const firstTwenty = yield* Parallel.stream(naturals, (n) => n * n, { batchSize: 2, preDispatch: 4 }).pipe(
            Stream.take(20),
            Stream.runCollect
          )
          assert.deepStrictEqual(firstTwenty, Array.from({ length: 20 }, (_, n) => n * n))
          assert.isAtMost(pulled, 20 + 4 * 2 + 1, `pulled ${pulled}`)
        }))

      // In process, a busy task holds the thread that would pull ahead.
      it.effect.skipIf(!capabilities.isolated)(
        "a generator is pulled exactly preDispatch items ahead before the first result, as joblib",
        () =>
          Effect.gen(function*() {
            // joblib's producer example: pre_dispatch=3, automatic batching, tasks slower than the pulls.
            const log: Array<string> = []
            function* producer() {
              for (let i = 0; i < 6; i++) {
                log.push(`produced ${i}`)
                yield i
              }
            }
            const results = yield* Parallel.map(producer(), (x) => {
              const end = Date.now() + 30
              while (Date.now() < end) {
                // busy, so that every pull before the first result happens while it runs
              }
              return Math.sqrt(x)
            }, { preDispatch: 3, concurrency: 2 }).pipe(
              Effect.provideService(CurrentObserver, {
                dispatched: () => {},
                completed: () => void log.push("completed")
              })
            )
            assert.deepStrictEqual(results, [0, 1, 2, 3, 4, 5].map(Math.sqrt))
            const firstDone = log.indexOf("completed")
            assert.deepStrictEqual(log.slice(0, firstDone), ["produced 0", "produced 1", "produced 2"])
          })
      )

      it.effect.skipIf(capabilities.workers < 2)(
        "pull scheduling: no short task waits behind a long one while a worker is free",
        () =>
          Effect.gen(function*() {
            // joblib's reason for generator_unordered: item 1 takes 1.5 s, the other 20 take 10 ms.
            const items = Array.from({ length: 21 }, (_, i) => i)
            const order = yield* Parallel.stream(
              items,
              (x) => new Promise<number>((resolve) => setTimeout(() => resolve(x), x === 1 ? 1500 : 10)),
              { ordered: false, concurrency: 2 }
            ).pipe(Stream.map(({ index }) => index), Stream.runCollect)
            assert.strictEqual(order.length, 21)
            assert.strictEqual(order[20], 1, `the long task comes last: ${order.join(",")}`)
          })
      )

      it.effect("a generator is consumed at most preDispatch batches ahead", () =>
        Effect.gen(function*() {
          const log: Array<string> = []
          function* producer() {
            for (let i = 0; i < 30; i++) {
              log.push(`produced ${i}`)
              yield i
            }
          }
          yield* Parallel.stream(producer(), (x) => x, { batchSize: 1, preDispatch: 3 }).pipe(
            Stream.runForEach((x) => Effect.sync(() => void log.push(`consumed ${x}`)))
          )
          const firstConsumed = log.indexOf("consumed 0")
          const producedBefore = log.slice(0, firstConsumed).filter((line) => line.startsWith("produced")).length
          assert.isAtMost(producedBefore, 3 + 1, log.slice(0, firstConsumed + 1).join(", "))
          assert.strictEqual(log.filter((line) => line.startsWith("consumed")).length, 30)
        }))
    })

    describe("large data", () => {
      it.effect("a big array passed to many tasks is shared, not copied per task, and the caller's stays intact", () =>
        Effect.gen(function*() {
          const big = new Float64Array(256 * 1024) // 2 MB, over the 1 MB threshold
          const items = Array.from({ length: 20 }, (_, i) => ({ i, big }))
          if (!capabilities.sharedMemory) {
            // One copy per process: the tasks a process runs all write into its copy, so later ones see the
            // writes of earlier ones there (threads of one process may run two at once, so not always all of
            // them). A copy per task would see only its own write, and no more than 20 writes exist.
            const seen = yield* Parallel.map(items, ({ i, big }) => {
              big[i] = i + 1
              return big.filter((x) => x > 0).length
            }, { batchSize: 1 })
            assert.isTrue(seen.some((written) => written > 1), "tasks share their process's copy")
            assert.isTrue(seen.every((written) => written >= 1 && written <= 20))
            assert.strictEqual(big[0], 0, "the caller's array is not written")
            return
          }
          const results = yield* Parallel.map(items, ({ i, big }) => {
            big[i] = i + 1
            return big
          }, { batchSize: 1 })
          if (capabilities.isolated) {
            assert.strictEqual(big.byteLength, 256 * 1024 * 8, "the caller's array is not detached")
            assert.strictEqual(big[0], 0, "the caller's array is not written")
            assert.instanceOf(results[0]!.buffer, SharedArrayBuffer)
            // Every task wrote into one shared copy: each result sees every write.
            for (const result of results) {
              assert.deepStrictEqual(Array.from(result.subarray(0, 20)), Array.from({ length: 20 }, (_, i) => i + 1))
            }
          } else {
            for (const result of results) assert.strictEqual(result, big)
          }
        }))

      it.effect("a big array only one task uses is copied once and moved; the caller's stays intact", () =>
        Effect.gen(function*() {
          const arrays = [1, 2, 3].map(() => new Float64Array(256 * 1024))
          const results = yield* Parallel.map(arrays, (a) => {
            a[0] = 99
            return a
          }, { batchSize: 1 })
          for (const [i, result] of results.entries()) {
            assert.strictEqual(result[0], 99)
            if (capabilities.isolated) {
              assert.strictEqual(arrays[i]![0], 0, "the caller's array is not written")
              assert.strictEqual(arrays[i]!.length, 256 * 1024, "the caller's array is not detached")
              assert.notInstanceOf(result.buffer, SharedArrayBuffer, "a single-use array is moved, not shared")
            }
          }
          // Without the whole input up front (a Stream), a big array is shared: it may come again.
          const fromStream = yield* Parallel.map(Stream.fromIterable(arrays), (a) => a[0], { batchSize: 1 })
          assert.deepStrictEqual(fromStream, capabilities.isolated ? [0, 0, 0] : [99, 99, 99])
          if (capabilities.isolated && capabilities.sharedMemory) {
            const same = yield* Parallel.map(Stream.fromIterable(arrays), (a) => a, { batchSize: 1 })
            assert.instanceOf(same[0]!.buffer, SharedArrayBuffer)
          }
        }))

      it.effect("arrays the caller already shares are used in place", () =>
        Effect.gen(function*() {
          const shared = new Int32Array(new SharedArrayBuffer(4 * 8))
          yield* Parallel.map([0, 1, 2, 3, 4, 5, 6, 7], (i) => i, { batchSize: 1 })
          yield* Parallel.map(Array.from({ length: 8 }, (_, i) => ({ i, shared })), ({ i, shared }) => {
            Atomics.store(shared, i, i * 10)
          }, { batchSize: 1 })
          assert.deepStrictEqual(
            Array.from(shared),
            capabilities.sharedMemory ? [0, 10, 20, 30, 40, 50, 60, 70] : [0, 0, 0, 0, 0, 0, 0, 0],
            "a process gets a copy of shared memory"
          )
        }))

      it.effect("big results come back whole", () =>
        Effect.gen(function*() {
          const sums = yield* Parallel.map([1, 2], (n) => new Float64Array(300_000).fill(n))
          assert.strictEqual(sums[1]!.length, 300_000)
          assert.strictEqual(sums[1]![299_999], 2)
        }))
    })

    describe("inline functions", () => {
      it.effect("self-contained functions run, including named and async ones", () =>
        Effect.gen(function*() {
          function factorial(n: number): number {
            return n <= 1 ? 1 : n * factorial(n - 1)
          }
          assert.deepStrictEqual(yield* Parallel.map([3, 5], factorial), [6, 120])
          assert.deepStrictEqual(
            yield* Parallel.map([1, 2], async (x) => {
              await new Promise((resolve) => setTimeout(resolve, 1))
              return x * 3
            }),
            [3, 6]
          )
        }))

      it.effect("a captured variable fails before dispatch, naming it", () =>
        Effect.gen(function*() {
          const factor = 3
          const counter = new Int32Array(new SharedArrayBuffer(4))
          const capture = Parallel.map([{ x: 1, counter }], ({ x, counter }) => {
            Atomics.add(counter, 0, 1)
            return x * factor
          })
          if (capabilities.isolated) {
            const error = yield* Effect.flip(capture)
            assert.instanceOf(error, ParallelError.UnshippableFunction)
            assert.deepStrictEqual((error as ParallelError.UnshippableFunction).identifiers, ["factor"])
            assert.include(error.message, `"factor"`)
            assert.include(error.message, "Task.make")
            assert.strictEqual(Atomics.load(counter, 0), 0, "nothing was dispatched")
          } else {
            assert.deepStrictEqual(yield* capture, [3], "the sequential backend runs closures")
          }
        }))
    })

    describe("pools and layers", () => {
      it.effect("repeated maps reuse the same workers", () =>
        Effect.gen(function*() {
          const first = new Set(
            yield* Parallel.map(Array.from({ length: 16 }, (_, i) => i), whereAmI, { batchSize: 1 })
          )
          const second = new Set(
            yield* Parallel.map(Array.from({ length: 16 }, (_, i) => i), whereAmI, { batchSize: 1 })
          )
          assert.isAtMost(first.size, capabilities.workers)
          for (const worker of second) assert.isTrue(first.has(worker))
        }))

      it.effect("concurrent maps share the pool and all finish", () =>
        Effect.gen(function*() {
          const xs = Array.from({ length: 30 }, (_, i) => i)
          const slow = (x: number) => {
            Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2)
            return x
          }
          const results = yield* Effect.all(
            [1, 2, 3].map((k) =>
              Parallel.map(xs, (x) => x * 2, { batchSize: 1 }).pipe(Effect.map((out) => out.length * k))
            ),
            { concurrency: "unbounded" }
          )
          assert.deepStrictEqual(results, [30, 60, 90])
          const slowOnes = yield* Effect.all([Parallel.map(xs, slow), Parallel.map(xs, slow)], { concurrency: 2 })
          assert.deepStrictEqual(slowOnes, [xs, xs])
        }))

      it.effect("a task's layer is built once per worker", () =>
        Effect.gen(function*() {
          const out = yield* Parallel.map(Array.from({ length: 40 }, (_, i) => i), Scaled, { batchSize: 1 })
          assert.deepStrictEqual(out.map((o) => o.value), Array.from({ length: 40 }, (_, i) => i * 10))
          // Each worker (or, in process, each map) counts its initializations: one per worker, not one per item.
          assert.strictEqual(new Set(out.map((o) => o.initialized)).size, 1)
        }))
    })

    describe("batching", () => {
      it.effect("auto batching grows the batch size for tiny tasks", () =>
        Effect.gen(function*() {
          const record = recordBatches()
          const xs = Array.from({ length: 20_000 }, (_, i) => i)
          // A function of its own, so that no earlier map has warmed its batch size.
          yield* Parallel.map(xs, (x) => x * 3 + 1).pipe(record.provide)
          const sizes = record.dispatched.map((batch) => batch.size)
          assert.strictEqual(sizes[0], 1)
          assert.isAtLeast(Math.max(...sizes), 64, `sizes ${sizes.join(",")}`)
          assert.strictEqual(sizes.reduce((a, b) => a + b, 0), xs.length)

          // A pool keeps the size for the next map of the same work, as joblib does within `with Parallel()`.
          const again = recordBatches()
          yield* Parallel.map(xs, (x) => x * 3 + 1).pipe(again.provide)
          const first = again.dispatched[0]!.size
          if (capabilities.isolated) assert.isAbove(first, 1, "a warm pool starts from the size it reached")
          else assert.strictEqual(first, 1)
        }))

      it.effect("auto batching stays at 1 for slow tasks", () =>
        Effect.gen(function*() {
          const record = recordBatches()
          // Slow for joblib's rule, and for a backend that aims batches at more work, as long as that.
          const slow = Math.max(250, capabilities.batchTargetMillis ?? 0)
          yield* Parallel.map(Array.from({ length: 6 }, () => slow), Sleep).pipe(record.provide)
          assert.deepStrictEqual(record.dispatched.map((batch) => batch.size), [1, 1, 1, 1, 1, 1])
        }))

      it.effect("a fixed batch size cuts the input evenly", () =>
        Effect.gen(function*() {
          const record = recordBatches()
          yield* Parallel.map(Array.from({ length: 10 }, (_, i) => i), (x) => x, { batchSize: 4 }).pipe(record.provide)
          assert.deepStrictEqual(record.dispatched.map((batch) => batch.size), [4, 4, 2])
        }))
    })

    describe("timeouts", () => {
      it.effect("a task over its timeout fails the map with TaskTimeout naming the item", () =>
        Effect.gen(function*() {
          const error = yield* Effect.flip(
            Parallel.map([0, 1, 2, 3], (x) =>
              new Promise<number>((resolve) => setTimeout(() => resolve(x), x === 2 ? 60_000 : 1)), {
              timeout: 150,
              batchSize: 1
            })
          )
          assert.instanceOf(error, ParallelError.TaskTimeout)
          const timeout = error as ParallelError.TaskTimeout
          assert.strictEqual(timeout.index, 2)
          assert.strictEqual(timeout.timeout, 150)
          assert.isAtLeast(timeout.elapsed, 100)
        }))

      it.effect("a timeout longer than Node's longest timer (24.8 days), or an infinite one, never fires early", () =>
        Effect.gen(function*() {
          for (const timeout of ["30 days", Duration.infinity] as ReadonlyArray<Duration.Input>) {
            assert.deepStrictEqual(yield* Parallel.map([20, 30], Sleep, { timeout, batchSize: 1 }), [20, 30])
          }
        }))

      it.effect("an Effect task over its timeout is interrupted; mode: result records it per item", () =>
        Effect.gen(function*() {
          const results = yield* Parallel.map([5, 60_000, 5, 5], Sleep, {
            timeout: "200 millis",
            mode: "result",
            batchSize: 2
          })
          assert.deepStrictEqual(results.map(Result.isSuccess), [true, false, true, true])
          const failure = results[1]!
          assert.isTrue(Result.isFailure(failure) && failure.failure instanceof ParallelError.TaskTimeout)
        }))

      if (capabilities.isolated) {
        it.effect("a synchronous infinite loop times out, its worker is replaced, and the pool stays full", () =>
          Effect.gen(function*() {
            const exits = yield* Parallel.map([1, 2, 3, 4, 5, 6], (x) => {
              if (x === 2) { while (true) {} }
              return x * 10
            }, { timeout: 100, mode: "exit", batchSize: 3 })
            assert.strictEqual(exits.length, 6)
            assert.deepStrictEqual(exits[0], Exit.succeed(10))
            const stuck = Option.getOrThrow(Exit.findErrorOption(exits[1]!))
            assert.instanceOf(stuck, ParallelError.TaskTimeout)
            assert.strictEqual((stuck as ParallelError.TaskTimeout).index, 1)
            // The items after the stuck one in its batch ran on the replacement worker.
            assert.deepStrictEqual(exits.slice(2), [30, 40, 50, 60].map((x) => Exit.succeed(x)))
            const workers = new Set(
              yield* Parallel.map(Array.from({ length: 40 }, (_, i) => i), (i) => {
                Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5)
                const threads = (globalThis as any).process.getBuiltinModule("node:worker_threads")
                return `${(globalThis as any).process.pid}:${threads.threadId}:${i % 1}`
              }, { batchSize: 1 })
            )
            assert.strictEqual(workers.size, capabilities.workers, "every slot has a live worker")
          }))
      }
    })

    describe("under the caller's TestClock", () => {
      // The same bodies on every backend: time-based decisions follow the Clock of the map's caller.
      const underTestClock = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, TestClock.layer())

      it.effect("a timeout fires when TestClock.adjust passes it, not on real time", () =>
        underTestClock(Effect.gen(function*() {
          const fiber = yield* Effect.forkChild(
            Parallel.map([3_600_000], Sleep, { timeout: 50, batchSize: 1 }).pipe(Effect.exit)
          )
          if (capabilities.timeoutsOnWorkerClock !== true) {
            yield* realWait(600)
            assert.isUndefined(fiber.pollUnsafe(), "50 ms of real time passed, but none on the caller's Clock")
          }
          const exit = yield* adjustUntilDone(fiber, 50)
          assert.isTrue(Exit.isSuccess(exit))
          const outcome = (exit as Exit.Success<Exit.Exit<unknown, unknown>>).value
          assert.isTrue(Exit.isFailure(outcome))
          const error = Cause.squash((outcome as Exit.Failure<unknown, unknown>).cause)
          assert.instanceOf(error, ParallelError.TaskTimeout)
        })))

      it.effect("a retry waits out Schedule.spaced on the caller's Clock", () =>
        underTestClock(Effect.gen(function*() {
          const key = `testclock-retry-${Math.random()}`
          const fiber = yield* Effect.forkChild(
            Parallel.map([{ key, failures: 2 }], Flaky, { retry: Schedule.spaced("1 hour") })
          )
          // Two failures, each followed by an hour on the Clock: far more than this test's real time.
          const exit = yield* adjustUntilDone(fiber, "10 minutes")
          assert.deepStrictEqual(exit, Exit.succeed([3]))
          assert.isAtLeast(yield* Clock.currentTimeMillis, 2 * 3_600_000)
        })))

      it.effect("a memoized map's time to live expires with TestClock.adjust", () =>
        underTestClock(
          Effect.gen(function*() {
            let computed = 0
            const roots = Cache.memoize(function rootsOnBackend(xs: ReadonlyArray<number>) {
              computed++
              return Parallel.map(xs, SquareRoot)
            }, { timeToLive: "1 hour" })
            assert.deepStrictEqual(yield* roots([1, 4, 9]), [1, 2, 3])
            assert.deepStrictEqual(yield* roots([1, 4, 9]), [1, 2, 3])
            assert.strictEqual(computed, 1, "a hit within the hour")
            yield* TestClock.adjust("59 minutes")
            yield* roots([1, 4, 9])
            assert.strictEqual(computed, 1, "still fresh at 59 minutes")
            yield* TestClock.adjust("2 minutes")
            assert.deepStrictEqual(yield* roots([1, 4, 9]), [1, 2, 3])
            assert.strictEqual(computed, 2, "expired after the hour: computed again")
          }).pipe(Effect.provide(Cache.layerMemory()))
        ))
    })

    describe("retries", () => {
      it.effect("retry re-runs typed failures as the Schedule allows", () =>
        Effect.gen(function*() {
          const key = `retry-${Math.random()}`
          const items = [0, 1, 2, 3].map((i) => ({ key: `${key}-${i}`, failures: i === 2 ? 2 : 0 }))
          const retried: Array<string> = []
          const attempts = yield* Parallel.map(items, Flaky, { retry: Schedule.recurs(3), batchSize: 2 }).pipe(
            Effect.provideService(Progress.Progress, (event) => {
              if (event._tag === "BatchRetried") retried.push(`${event.reason} ${event.start}+${event.size}`)
            })
          )
          assert.deepStrictEqual(attempts, [1, 1, 3, 1])
          // Each re-run is a Progress event: item 2 ran twice more.
          assert.deepStrictEqual(retried, ["failed 2+1", "failed 2+1"])
          const tooFew = yield* Effect.flip(
            Parallel.map([{ key: `${key}-x`, failures: 5 }], Flaky, { retry: Schedule.recurs(1) })
          )
          assert.instanceOf(tooFew, Flake)
          assert.strictEqual((tooFew as Flake).attempt, 2)
        }))

      it.effect("retry's while picks which failures are retried", () =>
        Effect.gen(function*() {
          const key = `while-${Math.random()}`
          const error = yield* Effect.flip(Parallel.map([{ key, failures: 1 }], Flaky, {
            retry: { schedule: Schedule.recurs(3), while: (e) => !(e instanceof Flake) }
          }))
          assert.instanceOf(error, Flake)
          assert.strictEqual((error as Flake).attempt, 1, "not retried")
        }))
    })

    describe("progress", () => {
      it.effect("reports started, batches and finished, with counts and the task's own progress", () =>
        Effect.gen(function*() {
          const events: Array<Progress.Event> = []
          yield* Parallel.map([1, 2, 3, 4, 5, 6], Reports, { batchSize: 2 }).pipe(
            Effect.provideService(Progress.Progress, (event) => void events.push(event))
          )
          const tags = events.map((event) => event._tag)
          assert.strictEqual(tags[0], "Started")
          assert.strictEqual(tags.at(-1), "Finished")
          assert.strictEqual(tags.filter((tag) => tag === "BatchDispatched").length, 3)
          assert.strictEqual(tags.filter((tag) => tag === "BatchCompleted").length, 3)
          const own = events.filter((event) => event._tag === "TaskProgress")
          assert.strictEqual(own.length, 12)
          assert.deepStrictEqual([...new Set(own.map((event) => event.index))].sort(), [0, 1, 2, 3, 4, 5])
          assert.deepStrictEqual(own[0]!.data, { step: 1, of: 2 })
          const finished = events.at(-1)!
          assert.strictEqual(finished.completed, 6)
          assert.strictEqual(finished.total, 6)
          // Each batch completes before the map finishes, and the ETA shrinks to 0 at the end.
          const completed = events.filter((event) => event._tag === "BatchCompleted")
          assert.strictEqual(completed.at(-1)!.eta, 0)
          // Each batch names the worker that ran it, for a report's lanes.
          for (const event of completed) {
            assert.match(event.worker, /^(slot \d+|\w+ worker \S+|\S+ pid \d+ thread \d+)$/)
          }
        }))

      it.effect("a failed map ends with a Failed event", () =>
        Effect.gen(function*() {
          const events: Array<Progress.Event> = []
          yield* Effect.exit(
            Parallel.map([1, -1], SquareRoot).pipe(
              Effect.provideService(Progress.Progress, (event) => void events.push(event))
            )
          )
          assert.strictEqual(events.at(-1)!._tag, "Failed")
          assert.include((events.at(-1) as { reason: string }).reason, "Negative")
        }))
    })

    describe("n_jobs", () => {
      it.effect("concurrency follows joblib's n_jobs rules", () =>
        Effect.gen(function*() {
          const record = recordBatches()
          const xs = Array.from({ length: 40 }, (_, i) => i)
          yield* Parallel.map(xs, (x) => x, { batchSize: 1, concurrency: 1 }).pipe(record.provide)
          assert.strictEqual(new Set(record.dispatched.map((batch) => batch.slot)).size, 1)
          assert.deepStrictEqual(yield* Parallel.map([1, 2], (x) => x, { concurrency: -1 }), [1, 2])
          if (Cpus.available() >= 2) {
            assert.deepStrictEqual(yield* Parallel.map([1], (x) => x, { concurrency: -2 }), [1])
          }
        }))

      it.effect("bad options are typed errors naming the option", () =>
        Effect.gen(function*() {
          const bad = [
            [{ concurrency: 0 }, "concurrency"],
            [{ concurrency: -(Cpus.available() + 1) }, "concurrency"],
            [{ concurrency: 1.5 }, "concurrency"],
            [{ batchSize: 0 }, "batchSize"],
            [{ preDispatch: 0 }, "preDispatch"],
            [{ mode: "fast" }, "mode"],
            [{ bogus: true }, "bogus"]
          ] as const
          for (const [options, option] of bad) {
            const error = yield* Effect.flip(Parallel.map([1], (x: number) => x, options as Parallel.MapOptions))
            assert.instanceOf(error, ParallelError.InvalidOptions, JSON.stringify(options))
            assert.strictEqual((error as ParallelError.InvalidOptions).option, option)
          }
        }))
    })
    describe("scheduling, as joblib's", () => {
      /** Item 1 takes a second, the others nothing; a timer leaves the thread free, so in-process backends run several. */
      const slowOne = (x: number) => new Promise<number>((resolve) => setTimeout(() => resolve(x), x === 1 ? 1000 : 0))
      const range = (n: number) => Array.from({ length: n }, (_, i) => i)

      for (const workers of [2, 4, 8]) {
        // joblib's test_parallel_unordered_generator_returns_fastest_first, on a cold pool then a warm one (after an
        // unrelated map taught it a batch size): no result waits behind the slow task while a worker is idle.
        it.effect.skipIf(capabilities.sized === undefined)(
          `test_parallel_unordered_generator_returns_fastest_first: ${workers} workers, cold and warm`,
          () =>
            Effect.gen(function*() {
              const fastestFirst = Parallel.stream(range(10), slowOne, { ordered: false }).pipe(
                Stream.map(({ index }) => index),
                Stream.runCollect
              )
              const cold = yield* fastestFirst.pipe(Effect.provide(capabilities.sized!(workers)))
              assert.strictEqual(cold.at(-1), 1, `cold: ${cold.join(",")}`)
              const warm = yield* Effect.andThen(Parallel.map(range(1000), (x) => x), fastestFirst).pipe(
                Effect.provide(capabilities.sized!(workers))
              )
              assert.strictEqual(warm.at(-1), 1, `warm: ${warm.join(",")}`)
            }),
          60_000
        )
      }

      /** The producer's pulls and the batches' completions, in the order they happened, for a map of 6 slow items. */
      const pullsBeforeFirstResult = (options: Parallel.MapOptions) =>
        Effect.gen(function*() {
          const log: Array<string> = []
          function* producer() {
            for (let i = 0; i < 6; i++) {
              log.push(`Produced ${i}`)
              yield i
            }
          }
          const out = yield* Parallel.map(
            producer(),
            (x: number) => new Promise<number>((resolve) => setTimeout(() => resolve(x), 100)),
            { batchSize: 1, concurrency: 2, ...options }
          ).pipe(
            Effect.provideService(CurrentObserver, { dispatched: () => {}, completed: () => void log.push("Consumed") })
          )
          assert.deepStrictEqual(out, range(6))
          assert.strictEqual(log.filter((line) => line.startsWith("Produced")).length, 6)
          return log.slice(0, log.indexOf("Consumed")).length
        })

      // joblib's test_dispatch_multiprocessing: only 3 tasks are pre-dispatched out of 6; the 4th is produced only
      // after one of the first 3 has completed. Pre-dispatched batches wait centrally, assigned to no worker.
      it.effect.skipIf(capabilities.workers < 2)(
        "test_dispatch_multiprocessing: pre_dispatch=3 pulls 3 ahead",
        () =>
          Effect.gen(function*() {
            assert.strictEqual(yield* pullsBeforeFirstResult({ preDispatch: 3 }), 3)
            // The default, 2 * n_jobs, pulls 4.
            assert.strictEqual(yield* pullsBeforeFirstResult({}), 4)
          })
      )
    })
    describe("calls of several tasks, as joblib's delayed", () => {
      it.effect("Parallel.all runs calls of several Tasks with their own payloads, in input order", () =>
        Effect.gen(function*() {
          const out = yield* Parallel.all([
            Fit(2, 3),
            Label({ n: 7, prefix: "#" }),
            SquareRoot(16),
            Fit(4, 5),
            Label({ n: 8, prefix: "n" })
          ])
          assert.deepStrictEqual(out, [6, "#7", 4, 20, "n8"])
          // Many calls: each Task's calls are batched as its map's would be.
          const many = Array.from({ length: 300 }, (_, i) => i % 3 === 0 ? Fit(i, 2) : SquareRoot(i * i))
          assert.deepStrictEqual(
            yield* Parallel.all(many),
            Array.from({ length: 300 }, (_, i) => i % 3 === 0 ? 2 * i : i)
          )
        }))

      it.effect("Parallel.all fails fast with a task's typed error, or reports every call in \"result\" mode", () =>
        Effect.gen(function*() {
          const calls = [Fit(1, 2), Label({ n: -1, prefix: "#" }), SquareRoot(-4), Fit(3, 3)] as const
          const error = yield* Effect.flip(Parallel.all(calls))
          assert.instanceOf(error, Negative)
          const results = yield* Parallel.all(calls, { mode: "result" })
          assert.deepStrictEqual(results.map((r) => r._tag), ["Success", "Failure", "Failure", "Success"])
          const refused = yield* Effect.flip(Parallel.all([Fit(1, 2), 3 as never]))
          assert.strictEqual(refused._tag, "InvalidOptions")
          assert.include(refused.message, "item 1 is not a call of a Task")
        }))
    })
  })
