/**
 * The remote backend against a real redis-server on a free loopback port, with workers in this process
 * (each on its own thread pool).
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Cause, Config, ConfigProvider, Effect, Exit, Fiber, Layer, Redacted, Schema, Tracer } from "effect"
import * as ChildProcess from "node:child_process"
import * as NodePath from "node:path"
import * as V8 from "node:v8"
import { Backend, Parallel, ParallelError, Progress, Remote, Task } from "../src/index.ts"
import { decodeError as decodeWireError } from "../src/internal/parallel/protocol.ts"
import { suite } from "./BackendSuite.ts"
import { Mirror, Negative, Paced, Point, Sleep, SleepWhere, SquareRoot, Throws, TraceProbe } from "./fixtures/tasks.ts"
import { hasRedis, startRedis, startWorkerProcess } from "./redisServer.ts"
import { recordingTracer } from "./tracing.ts"

const server = hasRedis ? await startRedis() : undefined
afterAll(() => server?.stop())

const tasks = new URL("./fixtures/tasks.ts", import.meta.url).href

/** A driver and one worker on `queue`. */
const setup = (queue: string, allowInline = true, threads = 2) =>
  Layer.merge(
    Remote.layer({ redis: Redacted.make(server!.url), queue, noWorkerTimeout: "5 seconds", slots: threads }),
    Remote.layerWorker({ redis: server!.url, queue, modules: [tasks], concurrency: threads, allowInline })
  )

describe.skipIf(!hasRedis)("Backend: Remote", () => {
  it.live(
    "runs inline functions and Tasks, in input order, with Schema payloads and results",
    () =>
      Effect.gen(function*() {
        const xs = Array.from({ length: 300 }, (_, i) => i)
        assert.deepStrictEqual(yield* Parallel.map(xs, (x) => x * 2), xs.map((x) => x * 2))
        assert.deepStrictEqual(yield* Parallel.map([0, 1, 4, 9], SquareRoot), [0, 1, 2, 3])
        const [mirrored] = yield* Parallel.map([new Point({ x: 1, y: 2 })], Mirror)
        assert.instanceOf(mirrored, Point)
        assert.deepStrictEqual([mirrored!.x, mirrored!.y], [2, 1])
        // Typed arrays come back whole, as raw bytes.
        const [array] = yield* Parallel.map([3], (n) => new Float64Array(100_000).fill(n))
        assert.instanceOf(array, Float64Array)
        assert.strictEqual(array![99_999], 3)
        // A batch too big to travel inside its job (400 KB) is stored beside it.
        const [sum] = yield* Parallel.map([new Float64Array(50_000).fill(2)], (xs) => xs.reduce((a, b) => a + b, 0))
        assert.strictEqual(sum, 100_000)
      }).pipe(Effect.provide(setup("order"))),
    30_000
  )

  it.live(
    "a trace shows map → batch → task across the queue, each task where its worker ran it",
    () =>
      Effect.gen(function*() {
        const { spans, tracer } = recordingTracer()
        yield* Parallel.map([1, 2, 3, 4], SquareRoot, { batchSize: 2 }).pipe(
          Effect.provideService(Tracer.Tracer, tracer)
        )
        const map = spans.find((span) => span.name === "Parallel.map")!
        const batches = spans.filter((span) => span.name === "Parallel.batch")
        const tasks = spans.filter((span) => span.name === "Parallel.task")
        assert.strictEqual(batches.length, 2)
        assert.deepStrictEqual(tasks.map((t) => t.attributes.get("task.index")).sort(), [0, 1, 2, 3])
        for (const task of tasks) {
          const parent = batches.find((b) => task.parent?._tag === "Some" && task.parent.value.spanId === b.spanId)
          assert.isDefined(parent)
          assert.strictEqual(task.traceId, map.traceId)
        }
        // On the worker, a Task's own spans and logs join the batch's trace.
        const probes = yield* Parallel.map([1], TraceProbe).pipe(Effect.provideService(Tracer.Tracer, tracer))
        const probeMap = spans.filter((span) => span.name === "Parallel.map").at(-1)!
        const probeBatch = spans.filter((span) => span.name === "Parallel.batch").at(-1)!
        assert.strictEqual(probes[0]!.traceId, probeMap.traceId)
        assert.strictEqual(probes[0]!.parentSpanId, probeBatch.spanId)
        assert.strictEqual(probes[0]!.logTraceId, probeMap.traceId)
      }).pipe(Effect.provide(setup("trace"))),
    30_000
  )

  it.live("typed failures decode to their class; defects carry the worker's stack", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Parallel.map([4, -1], SquareRoot))
      assert.instanceOf(error, Negative)
      const exits = yield* Parallel.map([1, 3], Throws, { mode: "exit" })
      assert.deepStrictEqual(exits[0], Exit.succeed(1))
      const failed = exits[1]!
      assert.isTrue(Exit.isFailure(failed))
      const defect = Cause.squash((failed as Exit.Failure<unknown, unknown>).cause) as Error
      assert.strictEqual(defect.name, "RangeError")
      assert.include(defect.message, "three is not allowed")
      assert.include(defect.stack ?? "", "fixtures/tasks.ts", "the stack points at the task's source")
      assert.include(defect.stack ?? "", "remote worker")
    }).pipe(Effect.provide(setup("failures"))), 30_000)

  it.live(
    "a worker that does not allow inline functions rejects them with a typed error",
    () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(Parallel.map([1], (x) => x + 1))
        assert.instanceOf(error, ParallelError.RemoteFailure)
        assert.strictEqual((error as ParallelError.RemoteFailure).reason, "Rejected")
        assert.include(error.message, "inline functions are not allowed")
        assert.deepStrictEqual(yield* Parallel.map([9], SquareRoot), [3], "Tasks still run")
      }).pipe(Effect.provide(setup("tasks-only", false))),
    30_000
  )

  it.live(
    "a batch for another version of a task is rejected with a typed error, not run",
    () =>
      Effect.gen(function*() {
        // Same name as the workers' SquareRoot, different code.
        const stale = Task.make("SquareRoot", {
          payload: Schema.Number,
          success: Schema.Number,
          run: (x) => x * x,
          url: "file:///elsewhere/old-tasks.ts"
        })
        const error = yield* Effect.flip(Parallel.map([4], stale))
        assert.instanceOf(error, ParallelError.RemoteFailure)
        assert.include(error.message, "different version")
      }).pipe(Effect.provide(setup("versions"))),
    30_000
  )

  it.live(
    "a task the workers do not have fails with TaskNotFound, the same class as on a local pool",
    () =>
      Effect.gen(function*() {
        const missing = Task.make("NotOnTheWorkers", {
          payload: Schema.Number,
          success: Schema.Number,
          run: (x) => x,
          url: "file:///elsewhere/other-tasks.ts"
        })
        const error = yield* Effect.flip(Parallel.map([1], missing))
        assert.instanceOf(error, ParallelError.TaskNotFound)
        assert.strictEqual((error as ParallelError.TaskNotFound).task, "NotOnTheWorkers")
        assert.include(error.message, "no task named \"NotOnTheWorkers\"")
      }).pipe(Effect.provide(setup("missing"))),
    30_000
  )

  it.live("interrupting a map leaves nothing queued for workers to run later", () =>
    Effect.gen(function*() {
      const fiber = yield* Effect.forkChild(
        Parallel.map(Array.from({ length: 40 }, () => 300), Sleep, { batchSize: 1, preDispatch: 8 })
      )
      yield* Effect.sleep(500)
      yield* Fiber.interrupt(fiber)
      const { Redis } = yield* Effect.promise(() => import("ioredis"))
      const redis = new Redis(server!.url)
      yield* Effect.addFinalizer(() => Effect.sync(() => redis.disconnect()))
      // Batch payloads are deleted and waiting jobs removed; running ones were cancelled on their worker.
      yield* Effect.sleep(300)
      assert.deepStrictEqual(yield* Effect.promise(() => redis.keys("effect-joblib:pending:in:*")), [])
      assert.strictEqual(yield* Effect.promise(() => redis.llen("bull:pending:wait")), 0)
    }).pipe(Effect.provide(setup("pending"))), 30_000)

  it.live(
    "with no worker connected, a map fails with a typed error that says to start one",
    () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(
          Parallel.map([1], SquareRoot).pipe(
            Effect.provide(Remote.layer({ redis: server!.url, queue: "nobody", noWorkerTimeout: 300 }))
          )
        )
        assert.instanceOf(error, ParallelError.RemoteFailure)
        assert.strictEqual((error as ParallelError.RemoteFailure).reason, "NoWorker")
        assert.include(error.message, "start one")
      }),
    30_000
  )

  it.live(
    "an unreachable server is a typed error within a bounded time, with no password in it",
    () =>
      Effect.gen(function*() {
        const started = Date.now()
        const error = yield* Effect.flip(
          Parallel.map([1], SquareRoot).pipe(
            Effect.provide(Remote.layer({ redis: Redacted.make("redis://user:s3cret@127.0.0.1:1/0"), timeout: 500 }))
          )
        )
        assert.instanceOf(error, ParallelError.RemoteFailure)
        assert.strictEqual((error as ParallelError.RemoteFailure).reason, "Unreachable")
        assert.notInclude(error.message, "s3cret")
        assert.isBelow(Date.now() - started, 10_000)
      }),
    30_000
  )
})

describe.skipIf(!hasRedis)("Remote: options from Config", () => {
  it.live(
    "layerConfig and layerWorkerConfig read the server (a Redacted) and the queue from Config",
    () =>
      Effect.gen(function*() {
        const provider = ConfigProvider.fromUnknown({ REDIS_URL: server!.url, QUEUE: `config-${process.pid}` })
        const squares = yield* Parallel.map([0, 1, 4, 9], SquareRoot).pipe(
          Effect.provide(
            Layer.merge(
              Remote.layerConfig({ redis: Config.Redacted("REDIS_URL"), queue: Config.String("QUEUE") }),
              Remote.layerWorkerConfig({
                redis: Config.Redacted("REDIS_URL"),
                queue: Config.String("QUEUE"),
                modules: Config.succeed([tasks]),
                concurrency: Config.succeed(1)
              })
            ).pipe(Layer.provide(ConfigProvider.layer(provider)))
          )
        )
        assert.deepStrictEqual(squares, [0, 1, 2, 3])
        const missing = yield* Effect.flip(
          Parallel.map([1], SquareRoot).pipe(
            Effect.provide(Remote.layerConfig({ redis: Config.Redacted("NO_SUCH_REDIS_URL") })),
            Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({})))
          )
        )
        assert.strictEqual(missing._tag, "ConfigError")
        assert.include(String(missing), "NO_SUCH_REDIS_URL")
      }),
    30_000
  )
})

describe.skipIf(!hasRedis)("Remote: messages that are not the protocol's", () => {
  /** A BullMQ queue and a Redis connection of the test's own, closed with the scope. */
  const rawQueue = (queue: string) =>
    Effect.gen(function*() {
      const { Queue } = yield* Effect.promise(() => import("bullmq"))
      const { Redis } = yield* Effect.promise(() => import("ioredis"))
      const redis = new Redis(server!.url, { maxRetriesPerRequest: null })
      const bull = new Queue(queue, { connection: new Redis(server!.url, { maxRetriesPerRequest: null }) })
      yield* Effect.addFinalizer(() => Effect.promise(() => bull.close().then(() => redis.quit())))
      return { bull, redis }
    })

  it.live(
    "a worker answers a malformed batch with a typed error naming it, and fails a job that is not a batch",
    () =>
      Effect.gen(function*() {
        const { bull, redis } = yield* rawQueue("wire-worker")
        const replyTo = "test-replies"
        const send = (id: string, batch: unknown) =>
          Effect.promise(async () => {
            const bytes = typeof batch === "string" ? Buffer.from(batch) : V8.serialize(batch)
            await bull.add("batch", { id, replyTo, batch: bytes.toString("base64") }, { jobId: id })
            const [, reply] = (await redis.blpopBuffer(replyTo, 10))!
            const decoded = V8.deserialize(reply) as { id: string; error: unknown }
            assert.strictEqual(decoded.id, id)
            return decodeWireError(decoded.error)
          })
        const notV8 = yield* send("not-v8", "\u0000garbage")
        assert.instanceOf(notV8, ParallelError.RemoteFailure)
        assert.include(notV8.message, "the batch not-v8 is malformed: not node:v8 data")
        const wrongShape = yield* send("wrong-shape", {
          spec: { kind: "task", name: "SquareRoot", source: "x" },
          items: "not an array",
          start: 0,
          failFast: true,
          refs: undefined
        })
        assert.instanceOf(wrongShape, ParallelError.RemoteFailure)
        assert.include(wrongShape.message, "the batch wrong-shape is malformed")
        assert.include(wrongShape.message, "items")
        // A job that is not a driver's fails in the queue, with the reason.
        yield* Effect.promise(() => bull.add("batch", { hello: "world" }, { jobId: "stranger" }))
        let state = ""
        for (let i = 0; i < 100 && state !== "failed"; i++) {
          yield* Effect.sleep(50)
          state = yield* Effect.promise(() => bull.getJobState("stranger"))
        }
        assert.strictEqual(state, "failed")
        const job = yield* Effect.promise(() => bull.getJob("stranger"))
        assert.include(job!.failedReason, "job stranger is not an effect-joblib batch: Missing key at [\"id\"]")
        // The worker goes on serving maps.
        assert.deepStrictEqual(yield* Parallel.map([0, 1, 4, 9], SquareRoot), [0, 1, 2, 3])
      }).pipe(Effect.provide(setup("wire-worker"))),
    30_000
  )

  it.live(
    "every mutation of a batch gets an answer, a result or a typed error, and the worker keeps serving",
    () =>
      Effect.gen(function*() {
        const { bull, redis } = yield* rawQueue("wire-fuzz")
        const valid: Record<string, unknown> = {
          spec: { kind: "fn", source: "(x) => x * 2" },
          items: [1, 2],
          start: 0,
          failFast: true,
          timeout: undefined,
          refs: undefined
        }
        const odd = [
          undefined,
          null,
          -1,
          0,
          1.5,
          NaN,
          2 ** 53,
          "x",
          "",
          true,
          [],
          {},
          [1, "a"],
          { kind: "fn" },
          {
            kind: "task",
            name: 1
          },
          { kind: "fn", source: "not a function(" },
          { prefix: "p", ids: [1] }
        ]
        // A seeded generator: a failure names a case that runs again the same way.
        let seed = 20261202
        const random = (n: number) => {
          // mulberry32
          seed = (seed + 0x6D2B79F5) | 0
          let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
          t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
          return (((t ^ (t >>> 14)) >>> 0) / 2 ** 32 * n) | 0
        }
        const fields = Object.keys(valid)
        for (let round = 0; round < 60; round++) {
          const message = { ...valid }
          for (let changes = 1 + random(2); changes > 0; changes--) {
            const field = fields[random(fields.length)]!
            if (random(5) === 0) delete message[field]
            else message[field] = odd[random(odd.length)]
          }
          let bytes = V8.serialize(message)
          if (round % 10 === 9) bytes = bytes.subarray(0, random(bytes.length))
          const id = `fuzz-${round}`
          const reply = yield* Effect.promise(async () => {
            await bull.add("batch", { id, replyTo: "fuzz-replies", batch: bytes.toString("base64") }, { jobId: id })
            return redis.blpopBuffer("fuzz-replies", 20)
          })
          assert.isNotNull(reply, `no answer to ${JSON.stringify(message)}`)
          const decoded = V8.deserialize(reply![1]) as { id: string; result?: unknown; error?: unknown }
          assert.strictEqual(decoded.id, id)
          if ("error" in decoded) {
            const error = decodeWireError(decoded.error)
            assert.isTrue(ParallelError.isParallelError(error), String(error))
            assert.notInclude(error.message, "a worker failed the batch with", "an error of the protocol's own")
          } else {
            assert.isArray((decoded.result as { values: unknown }).values)
          }
        }
        assert.deepStrictEqual(yield* Parallel.map([0, 1, 4, 9], SquareRoot), [0, 1, 2, 3])
      }).pipe(Effect.provide(setup("wire-fuzz"))),
    60_000
  )

  it.live(
    "a map whose reply is malformed fails with a typed error, and one whose reply is unreadable does not hang",
    () =>
      Effect.gen(function*() {
        const queue = "wire-driver"
        const { redis } = yield* rawQueue(queue)
        // A worker of another kind: registered as one, replying with what it likes.
        const info = { id: "odd", host: "test", pid: process.pid, threads: 1, started: Date.now() }
        yield* Effect.promise(() =>
          redis.multi().sadd(`effect-joblib:${queue}:workers`, "odd")
            .set(`effect-joblib:${queue}:worker:odd`, JSON.stringify(info), "PX", 60_000)
            // An entry that is not a worker's is left out, not a failure of the registry.
            .sadd(`effect-joblib:${queue}:workers`, "junk").set(`effect-joblib:${queue}:worker:junk`, "{nope")
            .exec()
        )
        const replies: Array<(id: string) => Buffer> = [
          (id) => V8.serialize({ id, result: { values: "not an array" }, progress: [] }),
          () => Buffer.from("not v8 at all")
        ]
        const { Worker } = yield* Effect.promise(() => import("bullmq"))
        const { Redis } = yield* Effect.promise(() => import("ioredis"))
        const odd = new Worker(queue, async (job) => {
          const { id, replyTo } = job.data as { id: string; replyTo: string }
          await redis.rpush(replyTo, replies.shift()!(id))
        }, { connection: new Redis(server!.url, { maxRetriesPerRequest: null }) })
        yield* Effect.addFinalizer(() => Effect.promise(() => odd.close()))
        const driver = Remote.layer({ redis: server!.url, queue, noWorkerTimeout: "5 seconds" })
        const malformed = yield* Effect.flip(Parallel.map([1], SquareRoot).pipe(Effect.provide(driver)))
        assert.instanceOf(malformed, ParallelError.RemoteFailure)
        assert.include(malformed.message, "a malformed reply to batch")
        assert.include(malformed.message, "values")
        const lost = yield* Effect.flip(Parallel.map([1], SquareRoot).pipe(Effect.provide(driver)))
        assert.instanceOf(lost, ParallelError.RemoteFailure)
        assert.include(lost.message, "without a result")
      }),
    30_000
  )
})

if (hasRedis) {
  suite("Backend.remote (conformance)", setup("conformance"), {
    isolated: true,
    sharedMemory: false,
    workers: 2,
    batchTargetMillis: 1000,
    timeoutsOnWorkerClock: true,
    sized: (workers) => setup(`conformance-${workers}`, true, workers)
  })
}

/** Worker processes on `queue`, SIGKILLed (if still alive) and awaited when the scope closes. */
const workerProcesses = (queue: string, flags: ReadonlyArray<ReadonlyArray<string>>, concurrency = 1) =>
  Effect.acquireRelease(
    Effect.sync(() => flags.map((extra) => startWorkerProcess(server!.url, queue, { flags: extra, concurrency }))),
    (workers) =>
      Effect.promise(() =>
        Promise.all(workers.map((worker) => {
          if (worker.exitCode !== null || worker.signalCode !== null) return undefined
          worker.kill("SIGKILL")
          return new Promise((resolve) => worker.once("exit", resolve))
        }))
      )
  )

/** A map of `count` × 200 ms sleeps, one per batch, forked; `completed` counts finished batches. */
const forkSleeps = (queue: string, count: number) =>
  Effect.gen(function*() {
    const state = { completed: 0, retried: [] as Array<string> }
    const fiber = yield* Effect.forkChild(
      Parallel.map(Array.from({ length: count }, () => 200), Sleep, { batchSize: 1 }).pipe(
        Effect.provideService(Progress.Progress, (event) => {
          if (event._tag === "BatchCompleted") state.completed++
          if (event._tag === "BatchRetried") state.retried.push(`${event.reason} ${event.start}+${event.size}`)
        }),
        Effect.provide(Remote.layer({ redis: server!.url, queue, slots: 4, noWorkerTimeout: "20 seconds" }))
      )
    )
    const reached = (n: number) =>
      Effect.gen(function*() {
        while (state.completed < n && fiber.pollUnsafe() === undefined) yield* Effect.sleep(20)
      })
    return { fiber, reached, state }
  })

describe.skipIf(!hasRedis)("Remote: worker processes started by the command line", () => {
  it.live(
    "a driver and two worker processes; a SIGKILLed worker's batch runs elsewhere and the map completes",
    () =>
      Effect.gen(function*() {
        const queue = `processes-${process.pid}`
        const [killed] = yield* workerProcesses(queue, [[], []])
        const { fiber, reached, state } = yield* forkSleeps(queue, 30)
        yield* reached(6)
        killed!.kill("SIGKILL")
        assert.deepStrictEqual(yield* Fiber.join(fiber), Array.from({ length: 30 }, () => 200))
        assert.strictEqual(killed!.signalCode, "SIGKILL")
        // The driver hears that the batch moved: a Progress event names it.
        assert.isAtLeast(state.retried.length, 1, "a BatchRetried event")
        assert.match(state.retried[0]!, /^stalled \d+\+1$/)
      }),
    60_000
  )

  it.live(
    "a worker process stopped with SIGTERM hands its running batches back to the queue, and the map completes",
    () =>
      Effect.gen(function*() {
        const queue = `sigterm-${process.pid}`
        const [leaving] = yield* workerProcesses(queue, [[], []])
        const { fiber, reached } = yield* forkSleeps(queue, 30)
        yield* reached(4)
        const exited = new Promise<number | null>((resolve) => leaving!.once("exit", (code) => resolve(code)))
        leaving!.kill("SIGTERM")
        // Had its batches been completed without a reply, or failed, the map would fail.
        assert.deepStrictEqual(yield* Fiber.join(fiber), Array.from({ length: 30 }, () => 200))
        assert.isNotNull(yield* Effect.promise(() => exited), "the stopped worker exited by itself")
      }),
    60_000
  )

  it.live(
    "a batch whose worker dies more often than maxStalledCount allows fails with the queue's reason",
    () =>
      Effect.gen(function*() {
        const queue = `stalled-${process.pid}`
        // The survivor's stall check fails a batch at its first stall; the victim's lock lapses after 1 s.
        const [victim] = yield* workerProcesses(queue, [["--lock-duration", "1000"], [
          "--max-stalled-count",
          "0",
          "--stalled-interval",
          "300"
        ]])
        const { fiber, reached } = yield* forkSleeps(queue, 60)
        yield* reached(4)
        victim!.kill("SIGKILL")
        const exit = yield* Fiber.await(fiber)
        assert.isTrue(Exit.isFailure(exit))
        const error = Cause.squash((exit as Exit.Failure<unknown, unknown>).cause)
        assert.instanceOf(error, ParallelError.RemoteFailure)
        assert.match((error as ParallelError.RemoteFailure).message, /stalled/)
      }),
    60_000
  )
})

describe.skipIf(!hasRedis)("Remote: capacity discovered from the workers connected", () => {
  it.live(
    "a map keeps as many batches in flight as the threads connected, and follows a worker that joins and one that dies",
    () =>
      Effect.gen(function*() {
        const queue = `capacity-${process.pid}`
        yield* workerProcesses(queue, [[]], 2)
        const driver = Remote.layer({ redis: server!.url, queue, noWorkerTimeout: "20 seconds" })
        const context = yield* Layer.build(driver)
        // Slots are abstract on Remote: the map uses as many as the threads connected, one batch each.
        const state = {
          before: new Set<number>(),
          after: new Set<number>(),
          completed: 0,
          phase: "before" as "before" | "joining" | "after"
        }
        const fiber = yield* Effect.forkChild(
          Parallel.map(Array.from({ length: 120 }, () => 150), SleepWhere, { batchSize: 1 }).pipe(
            Effect.provideService(Progress.Progress, (event) => {
              if (event._tag === "BatchDispatched" && state.phase !== "joining") state[state.phase].add(event.slot)
              else if (event._tag === "BatchCompleted") state.completed++
            }),
            Effect.provideContext(context)
          )
        )
        while (state.completed < 4) yield* Effect.sleep(20)
        // A second worker joins mid-map; what follows counts from when the driver has seen it register (a
        // worker process takes a while to start on a busy machine).
        state.phase = "joining"
        const [second] = yield* workerProcesses(queue, [[]], 3)
        const connected = Effect.provideContext(Backend.Backend.useSync((backend) => backend.workers), context)
        for (let i = 0; i < 400 && (yield* connected) !== 5; i++) yield* Effect.sleep(25)
        state.phase = "after"
        const pids = yield* Fiber.join(fiber)
        // One batch waits in the queue for every 8 threads (rounded up), so that a thread finishing one takes
        // the next at once.
        assert.strictEqual(state.before.size, 2 + 1, "one worker of 2 threads: 2 batches running and 1 waiting")
        assert.isAbove(state.after.size, 3, "the joining worker's threads are used")
        assert.isAtMost(state.after.size, 5 + 1)
        // Each worker process (it restarts itself once, for huge pages) reports its own pid.
        assert.strictEqual(new Set(pids).size, 2, "the worker that joined mid-map ran batches too")
        const workers = yield* connected
        assert.strictEqual(workers, 5, "the backend reports the threads connected")
        // A worker that dies drops out of the registry when its entry lapses.
        second!.kill("SIGKILL")
        let after = workers
        for (let i = 0; i < 100 && after !== 2; i++) {
          yield* Effect.sleep(100)
          after = yield* connected
        }
        assert.strictEqual(after, 2)
      }),
    60_000
  )
})

describe.skipIf(!hasRedis)("Remote: two drivers on one queue", () => {
  it.live(
    "share the workers fairly: while both run, each gets between 35% and 65% of the items finished",
    () =>
      Effect.gen(function*() {
        const queue = `fair-${process.pid}`
        yield* workerProcesses(queue, [[], []], 2)
        const driver = NodePath.join(import.meta.dirname, "fixtures", "driver.ts")
        const run = () =>
          new Promise<Array<{ at: number; size: number }>>((resolve, reject) =>
            ChildProcess.execFile(
              process.execPath,
              [driver, server!.url, queue, "200"],
              { encoding: "utf8" },
              (error, out) => {
                if (error !== null) return reject(error)
                const lines = out.trim().split("\n").map((line) => JSON.parse(line))
                const sum = lines.pop()
                assert.strictEqual(sum.sum, 200 * 50, "every item's result came back")
                resolve(lines)
              }
            )
          )
        const [a, b] = yield* Effect.promise(() => Promise.all([run(), run()]))
        // The window in which both were finishing batches.
        const from = Math.max(a![0]!.at, b![0]!.at)
        const to = Math.min(a!.at(-1)!.at, b!.at(-1)!.at)
        const within = (batches: Array<{ at: number; size: number }>) =>
          batches.filter((batch) => batch.at >= from && batch.at <= to).reduce((sum, batch) => sum + batch.size, 0)
        const [ownA, ownB] = [within(a!), within(b!)]
        assert.isAbove(ownA + ownB, 100, "the drivers overlapped")
        const share = ownA / (ownA + ownB)
        assert.isAtLeast(share, 0.35, `driver A got ${ownA} of ${ownA + ownB}`)
        assert.isAtMost(share, 0.65, `driver A got ${ownA} of ${ownA + ownB}`)
      }),
    60_000
  )
})

describe.skipIf(!hasRedis)("effect-joblib status", () => {
  const status = (queue: string, ...flags: Array<string>) =>
    Effect.promise(() =>
      new Promise<string>((resolve, reject) =>
        ChildProcess.execFile(
          process.execPath,
          [
            NodePath.join(import.meta.dirname, "..", "src", "bin.ts"),
            "status",
            "--redis",
            server!.url,
            "--queue",
            queue,
            ...flags
          ],
          { encoding: "utf8" },
          (error, stdout) => (error === null ? resolve(stdout) : reject(error))
        )
      )
    )
  const json = (queue: string) => Effect.map(status(queue, "--json"), (out) => JSON.parse(out) as Remote.Status)

  it.live(
    "shows the workers with their threads, the batches, and what finished in the last minute",
    () =>
      Effect.gen(function*() {
        const queue = `status-${process.pid}`
        yield* workerProcesses(queue, [[]], 2)
        const results = yield* Parallel.map(Array.from({ length: 20 }, () => 20), Sleep, { batchSize: 2 }).pipe(
          Effect.provide(Remote.layer({ redis: server!.url, queue, noWorkerTimeout: "20 seconds" }))
        )
        assert.strictEqual(results.length, 20)
        const now = yield* json(queue)
        assert.strictEqual(now.queue, queue)
        assert.strictEqual(now.workers.length, 1)
        assert.strictEqual(now.capacity, 2)
        assert.strictEqual(now.workers[0]!.threads, 2)
        assert.deepStrictEqual([now.waiting, now.running, now.stalled, now.failed], [0, 0, 0, 0])
        assert.closeTo(now.throughput.items * 60, 20, 1e-9, "every item finished within the last minute")
        assert.closeTo(now.throughput.batches * 60, 10, 1e-9)
        const text = yield* status(queue)
        assert.include(text, `queue "${queue}": 1 worker, 2 threads`)
        assert.include(text, "batches: 0 waiting, 0 running, 0 stalled, 0 failed")
      }),
    60_000
  )

  it.live("counts a running batch whose worker died as stalled", () =>
    Effect.gen(function*() {
      const queue = `status-stalled-${process.pid}`
      const [worker] = yield* workerProcesses(queue, [["--lock-duration", "1000"]])
      const fiber = yield* Effect.forkChild(
        Parallel.map([30_000], Sleep).pipe(
          Effect.provide(Remote.layer({ redis: server!.url, queue, noWorkerTimeout: "20 seconds" }))
        )
      )
      let now = yield* json(queue)
      for (let i = 0; i < 100 && now.running === 0; i++) now = yield* Effect.andThen(Effect.sleep(100), json(queue))
      assert.strictEqual(now.running, 1)
      assert.strictEqual(now.stalled, 0, "its worker renews its lock")
      worker!.kill("SIGKILL")
      for (let i = 0; i < 100 && now.stalled === 0; i++) now = yield* Effect.andThen(Effect.sleep(100), json(queue))
      assert.strictEqual(now.stalled, 1)
      yield* Fiber.interrupt(fiber)
    }), 60_000)

  it.live(
    "bad options are InvalidOptions; an unreachable server is a RemoteFailure, and one line from the command",
    () =>
      Effect.gen(function*() {
        const bad = yield* Effect.flip(Remote.status({ redis: server!.url, queue: "a:b" }))
        assert.instanceOf(bad, ParallelError.InvalidOptions)
        assert.include(bad.message, "queue")
        const unreachable = yield* Effect.flip(
          Remote.status({ redis: Redacted.make("redis://user:s3cret@127.0.0.1:1/0"), timeout: 500 })
        )
        assert.instanceOf(unreachable, ParallelError.RemoteFailure)
        assert.strictEqual((unreachable as ParallelError.RemoteFailure).reason, "Unreachable")
        assert.instanceOf((unreachable as ParallelError.RemoteFailure).cause, Error, "the client's error is kept")
        assert.notInclude(unreachable.message, "s3cret")
        const out = ChildProcess.spawnSync(process.execPath, [
          NodePath.join(import.meta.dirname, "..", "src", "bin.ts"),
          "status",
          "--redis",
          "redis://127.0.0.1:1/0",
          "--json"
        ], { encoding: "utf8" })
        assert.strictEqual(out.status, 1)
        assert.match(out.stderr.trim(), /^effect-joblib: cannot reach Redis/)
        assert.notInclude(out.stderr, "    at ")
      }),
    30_000
  )

  it.live(
    "the command reads the server from REDIS_URL when --redis is absent, so that ps does not show it",
    () =>
      Effect.sync(() => {
        const bin = NodePath.join(import.meta.dirname, "..", "src", "bin.ts")
        const queue = `status-env-${process.pid}`
        const fromEnv = ChildProcess.spawnSync(process.execPath, [bin, "status", "--queue", queue, "--json"], {
          encoding: "utf8",
          env: { ...process.env, REDIS_URL: server!.url }
        })
        assert.strictEqual(fromEnv.status, 0, fromEnv.stderr)
        assert.strictEqual(JSON.parse(fromEnv.stdout).queue, queue)
        const env = { ...process.env }
        delete env.REDIS_URL
        const neither = ChildProcess.spawnSync(process.execPath, [bin, "status", "--json"], { encoding: "utf8", env })
        assert.strictEqual(neither.status, 1)
        assert.include(neither.stderr, "Missing required flag: --redis")
      }),
    30_000
  )

  const hasTmux = ChildProcess.spawnSync("tmux", ["-V"]).status === 0

  it.live.skipIf(!hasTmux)("redraws itself on a terminal as workers come and go", () =>
    Effect.gen(function*() {
      const queue = `status-tty-${process.pid}`
      const socket = `effect-joblib-status-${process.pid}`
      const tmux = (...args: Array<string>) =>
        ChildProcess.execFileSync("tmux", ["-L", socket, ...args], { encoding: "utf8" })
      const command = `${process.execPath} ${
        NodePath.join(import.meta.dirname, "..", "src", "bin.ts")
      } status --redis ${server!.url} --queue ${queue}`
      yield* workerProcesses(queue, [[]], 2)
      tmux("new-session", "-d", "-s", "status", "-x", "100", "-y", "20", command)
      yield* Effect.addFinalizer(() => Effect.sync(() => tmux("kill-server")))
      const waitFor = (text: string) =>
        Effect.gen(function*() {
          let screen = ""
          for (let i = 0; i < 150 && !screen.includes(text); i++) {
            yield* Effect.sleep(100)
            screen = tmux("capture-pane", "-p", "-t", "status")
          }
          assert.include(screen, text)
        })
      yield* waitFor("1 worker, 2 threads")
      yield* workerProcesses(queue, [[]], 3)
      yield* waitFor("2 workers, 5 threads")
    }), 60_000)
})

describe.skipIf(!hasRedis)("Remote: a Redis before 7.0", () => {
  it.live("a driver reads replies without BLMPOP where the server has none", () =>
    Effect.gen(function*() {
      const old = yield* Effect.acquireRelease(
        Effect.promise(() => startRedis(undefined, ["--rename-command", "BLMPOP", ""])),
        (server) => Effect.promise(() => server.stop())
      )
      const xs = Array.from({ length: 40 }, (_, i) => i)
      const squares = yield* Parallel.map(xs, SquareRoot, { batchSize: 1 }).pipe(
        Effect.provide(Layer.merge(
          Remote.layer({ redis: old.url, queue: "old", noWorkerTimeout: "5 seconds" }),
          Remote.layerWorker({ redis: old.url, queue: "old", modules: [tasks], concurrency: 2 })
        ))
      )
      assert.deepStrictEqual(squares, xs.map(Math.sqrt))
    }), 30_000)
})

describe.skipIf(!hasRedis)("Remote: Redis going away", () => {
  it.live(
    "a map whose server stops mid-run fails with a typed error within a bounded time",
    () =>
      Effect.gen(function*() {
        const own = yield* Effect.promise(() => startRedis())
        yield* Effect.addFinalizer(() => Effect.promise(() => own.stop()))
        const layer = Layer.merge(
          Remote.layer({ redis: own.url, queue: "outage", slots: 2, timeout: 1000 }),
          Remote.layerWorker({ redis: own.url, queue: "outage", modules: [tasks], concurrency: 1, timeout: 1000 })
        )
        const exit = yield* Effect.gen(function*() {
          const fiber = yield* Effect.forkChild(
            Parallel.map(Array.from({ length: 40 }, () => 100), Sleep, { batchSize: 1 })
          )
          yield* Effect.sleep(800)
          yield* Effect.promise(() => own.stop())
          const stopped = Date.now()
          const exit = yield* Fiber.await(fiber)
          return { exit, after: Date.now() - stopped }
        }).pipe(Effect.provide(layer))
        assert.isTrue(Exit.isFailure(exit.exit))
        const error = Cause.squash((exit.exit as Exit.Failure<unknown, unknown>).cause)
        assert.instanceOf(error, ParallelError.RemoteFailure)
        assert.isBelow(exit.after, 10_000, "failed within a bounded time")
      }),
    30_000
  )
})

describe.skipIf(!hasRedis)("Remote: load", () => {
  it.live("workers pull batches, so a slow worker takes less of the work", () =>
    Effect.gen(function*() {
      const queue = `load-${process.pid}`
      const start = (slow: boolean) => startWorkerProcess(server!.url, queue, { env: { EJL_SLOW: slow ? "1" : "" } })
      const slow = start(true)
      const fast = start(false)
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          slow.kill("SIGKILL")
          fast.kill("SIGKILL")
        })
      )
      // Both workers connected before the map starts, so that neither gets a head start.
      const { Queue } = yield* Effect.promise(() => import("bullmq"))
      const probe = new Queue(queue, { connection: { host: "127.0.0.1", port: server!.port } })
      yield* Effect.addFinalizer(() => Effect.promise(() => probe.close()))
      while ((yield* Effect.promise(() => probe.getWorkersCount())) < 2) yield* Effect.sleep(50)
      const ran = yield* Parallel.map(Array.from({ length: 120 }, (_, i) => i), Paced, { batchSize: 1 }).pipe(
        Effect.provide(Remote.layer({ redis: server!.url, queue, slots: 4, noWorkerTimeout: "20 seconds" }))
      )
      const bySlow = ran.filter((where) => where.slow).length
      const byFast = ran.length - bySlow
      assert.strictEqual(ran.length, 120)
      assert.isAbove(byFast, 2 * bySlow, `fast ${byFast}, slow ${bySlow}`)
      // The command line restarts a worker with glibc's huge pages, unless the environment sets its tunables.
      for (const where of ran) {
        assert.strictEqual(where.tunables, process.env.GLIBC_TUNABLES ?? "glibc.malloc.hugetlb=1")
      }
    }), 60_000)
})

describe.skipIf(!hasRedis)("Remote: a worker process says what it does", () => {
  it.live(
    "one line when it starts (queue, threads, server, modules), one when it hands batches back, one when it stops",
    () =>
      Effect.gen(function*() {
        const queue = `lines-${process.pid}`
        const worker = startWorkerProcess(server!.url, queue, { output: "pipe" })
        let output = ""
        worker.stdout!.on("data", (chunk) => void (output += chunk))
        worker.stderr!.on("data", (chunk) => void (output += chunk))
        yield* Effect.addFinalizer(() => Effect.sync(() => worker.kill("SIGKILL")))
        for (let i = 0; i < 200 && !output.includes("serving queue"); i++) yield* Effect.sleep(50)
        assert.include(output, `serving queue "${queue}" on 1 thread, 127.0.0.1:${server!.port}/0; tasks from `)
        const fiber = yield* Effect.forkChild(
          Parallel.map([3000, 3000], Sleep, { batchSize: 1 }).pipe(
            Effect.provide(Remote.layer({ redis: server!.url, queue, slots: 1 }))
          )
        )
        yield* Effect.sleep(1000)
        const exited = new Promise<number | null>((resolve) => worker.once("exit", (code) => resolve(code)))
        worker.kill("SIGTERM")
        yield* Effect.promise(() => exited)
        assert.match(output, /handing 1 running batch back to the queue/)
        assert.match(output, /: stopped/)
        const lines = output.split("\n").filter((line) => line.includes("effect-joblib worker"))
        assert.strictEqual(lines.length, 3, output)
        yield* Fiber.interrupt(fiber)
      }),
    30_000
  )

  it.live(
    "under npx, a worker stops when npx is killed rather than run on as an orphan",
    () =>
      Effect.gen(function*() {
        const queue = `npx-${process.pid}`
        // npx's place: a parent that starts the worker as npx does (npm_command=exec), then dies by SIGKILL,
        // passing nothing on.
        const parent = ChildProcess.spawn(process.execPath, [
          "-e",
          `const { spawn } = require("node:child_process");
           spawn(process.execPath, ${
            JSON.stringify([
              NodePath.join(import.meta.dirname, "..", "src", "bin.ts"),
              "worker",
              "--redis",
              server!.url,
              "--tasks",
              tasks,
              "--concurrency",
              "1",
              "--queue",
              queue
            ])
          }, { stdio: "ignore", env: { ...process.env, npm_command: "exec" } });
           setInterval(() => {}, 1000)`
        ], { stdio: "ignore" })
        yield* Effect.addFinalizer(() => Effect.sync(() => parent.kill("SIGKILL")))
        const workers = () =>
          Effect.map(Remote.status({ redis: server!.url, queue }), (status) => status.workers.length)
        let connected = 0
        for (let i = 0; i < 200 && connected === 0; i++) connected = yield* Effect.andThen(Effect.sleep(50), workers())
        assert.strictEqual(connected, 1, "the worker connected")
        parent.kill("SIGKILL")
        let left = 1
        for (let i = 0; i < 100 && left > 0; i++) left = yield* Effect.andThen(Effect.sleep(100), workers())
        assert.strictEqual(left, 0, "the worker left the queue once its parent was gone")
      }),
    30_000
  )
})
