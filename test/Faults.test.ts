/**
 * Faults with real workers: crashes of every kind, stuck code, memory growth,
 * and interruption, checked against real thread ids and process PIDs.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Metric, Option, Schedule } from "effect"
import { TestClock } from "effect/testing"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { Backend, Parallel, ParallelError } from "../src/index.ts"
import * as Cpus from "../src/internal/parallel/cpus.ts"
import { Flaky, NestedProbe, UsesConnection } from "./fixtures/tasks.ts"

/** A process that still runs: a zombie (dead, not yet reaped by whoever adopted it) does not count. */
const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  try {
    const stat = Fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z"
  } catch {
    return false
  }
}

/** Waits until none of `pids` is alive, up to a few seconds; returns those still alive. */
const waitGone = (pids: Iterable<number>) =>
  Effect.promise(async () => {
    const deadline = Date.now() + 5000
    let left = [...pids].filter(alive)
    while (left.length > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50))
      left = left.filter(alive)
    }
    return left
  })

/** The PID of the process an inline function runs in. */
const pidOf = (_: unknown) => (globalThis as any).process.pid as number

const tmp = () => Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-joblib-faults-"))

/** Inline functions that crash their worker at item 2, with a check of the error. */
const crashes: Array<readonly [string, (x: number) => unknown, (error: ParallelError.WorkerCrashed) => void]> = [
  [
    "process.exit(3)",
    (x) => (x === 2 ? (globalThis as any).process.exit(3) : x),
    (e) => assert.strictEqual(e.exitCode, 3)
  ],
  [
    "an uncaught exception in async code",
    (x) => {
      if (x !== 2) return x
      setTimeout(() => {
        throw new Error("async boom")
      }, 1)
      return new Promise(() => {})
    },
    // A thread reports the exception as an error event; a process prints it to its stderr and exits.
    (e) => assert.match(e.stderr ?? e.message, /Error: async boom/)
  ]
]

describe.each(
  [
    ["threads", (options?: Backend.ThreadsOptions) => Backend.layerThreads({ workers: 2, ...options })],
    ["processes", (options?: Backend.ProcessesOptions) => Backend.layerProcesses({ workers: 2, ...options })]
  ] as const
)("faults on %s", (name, make) => {
  for (const [what, crash, check] of crashes) {
    it.live(`${what} fails its batch with WorkerCrashed; the map never hangs and the pool recovers`, () =>
      Effect.gen(function*() {
        const restarts = Effect.map(
          Metric.snapshot,
          (all) =>
            (all.find((m) => m.id === "effect_joblib_worker_restarts")?.state as { count: number } | undefined)
              ?.count ?? 0
        )
        const before = yield* restarts
        const error = yield* Effect.flip(Parallel.map([0, 1, 2, 3], crash, { batchSize: 1 }))
        assert.instanceOf(error, ParallelError.WorkerCrashed)
        check(error as ParallelError.WorkerCrashed)
        assert.deepStrictEqual(
          yield* Parallel.map(Array.from({ length: 8 }, (_, i) => i), (x) => x * 2, { batchSize: 1 }),
          [0, 2, 4, 6, 8, 10, 12, 14]
        )
        assert.isAbove(yield* restarts, before, "the replacement is counted as a worker restart")
      }).pipe(Effect.provide(make({ stderr: "capture" }))))
  }

  it.live("running out of memory crashes only the worker", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Parallel.map([1], (_) => {
        const hoard: Array<Array<number>> = []
        while (true) hoard.push(Array.from({ length: 100_000 }, (_, i) => i))
      }))
      assert.instanceOf(error, ParallelError.WorkerCrashed)
      const crashed = error as ParallelError.WorkerCrashed
      // A thread is stopped by its resource limit; a process's V8 prints its out-of-memory report and aborts.
      if (name === "threads") assert.match(crashed.message, /out of memory/i)
      else assert.include(crashed.stderr, "JavaScript heap out of memory")
      assert.deepStrictEqual(yield* Parallel.map([1, 2], (x) => x + 1), [2, 3])
    }).pipe(Effect.provide(
      name === "threads"
        ? make({ workers: 1, stderr: "capture", resourceLimits: { maxOldGenerationSizeMb: 32 } })
        : make({ workers: 1, stderr: "capture", execArgv: ["--max-old-space-size=32"] })
    )))

  it.live("a worker that crashes mid-batch is retried on a replacement", () =>
    Effect.gen(function*() {
      const dir = tmp()
      // The first attempt at item 2 leaves a marker and exits; the retry finds the marker and succeeds.
      const items = [0, 1, 2, 3].map((i) => ({ i, marker: Path.join(dir, `crashed-${i}`) }))
      const out = yield* Parallel.map(items, ({ i, marker }) => {
        const fs = (globalThis as any).process.getBuiltinModule("node:fs")
        if (i === 2 && !fs.existsSync(marker)) {
          fs.writeFileSync(marker, "")
          ;(globalThis as any).process.exit(3)
        }
        return i * 10
      }, { batchSize: 2, retry: Schedule.recurs(2) })
      assert.deepStrictEqual(out, [0, 10, 20, 30])
      assert.isTrue(Fs.existsSync(items[2]!.marker), "the first attempt did crash")
      Fs.rmSync(dir, { recursive: true, force: true })
    }).pipe(Effect.provide(make())))

  it.live("a worker over its memory limit is recycled between batches", () =>
    Effect.gen(function*() {
      const seen = yield* Parallel.map(Array.from({ length: 12 }, (_, i) => i), (_) => {
        // Each task keeps 8 MB alive in its worker.
        const g = globalThis as any
        ;(g.hoard ??= []).push(new Float64Array(1024 * 1024).fill(1))
        const threads = g.process.getBuiltinModule("node:worker_threads")
        return `${g.process.pid}:${threads.threadId}`
      }, { batchSize: 1, concurrency: 1 })
      // With a limit above a fresh worker's footprint and below it plus ~100 MB, workers are replaced along the way.
      assert.isAbove(new Set(seen).size, 1, "the worker was replaced")
      assert.isBelow(new Set(seen).size, 12, "but not after every batch")
    }).pipe(Effect.provide(make({ workers: 1, memoryLimitMb: name === "threads" ? 40 : 120 }))))

  it.live("workers size native thread pools to their share of the CPUs, unless told otherwise", () =>
    Effect.gen(function*() {
      const [env] = yield* Parallel.map([1], (_) => {
        const env = (globalThis as any).process.env
        return { omp: env.OMP_NUM_THREADS, uv: env.UV_THREADPOOL_SIZE, budget: env.EFFECT_JOBLIB_CPU_BUDGET }
      })
      const share = String(Math.max(1, Math.floor(Cpus.available() / 2)))
      assert.deepStrictEqual(env, { omp: "4", uv: share, budget: share })
    }).pipe(Effect.provide(make({ env: { OMP_NUM_THREADS: "4" } }))))
}, 60_000)

describe("processes", () => {
  it.live("worker processes get glibc's huge pages, unless the environment says otherwise", () =>
    Effect.gen(function*() {
      const tunables = (_: number) => (globalThis as any).process.env.GLIBC_TUNABLES as string | undefined
      const inherited = process.env.GLIBC_TUNABLES
      const [byDefault] = yield* Parallel.map([1], tunables).pipe(
        Effect.provide(Backend.layerProcesses({ workers: 1 }))
      )
      assert.strictEqual(byDefault, inherited ?? "glibc.malloc.hugetlb=1")
      const [chosen] = yield* Parallel.map([1], tunables).pipe(
        Effect.provide(Backend.layerProcesses({ workers: 1, env: { GLIBC_TUNABLES: "glibc.malloc.arena_max=2" } }))
      )
      assert.strictEqual(chosen, "glibc.malloc.arena_max=2")
    }))

  it.live("a segfault or SIGKILL fails the batch with the signal; the parent is unharmed", () =>
    Effect.gen(function*() {
      const segfault = yield* Effect.flip(Parallel.map([1], (_) => {
        const proc = (globalThis as any).process
        proc.kill(proc.pid, "SIGSEGV")
        return new Promise(() => {})
      }))
      assert.instanceOf(segfault, ParallelError.WorkerCrashed)
      assert.strictEqual((segfault as ParallelError.WorkerCrashed).signal, "SIGSEGV")

      // SIGKILL one worker from outside while a map of slow tasks runs.
      const pids = [...new Set(yield* Parallel.map(Array.from({ length: 20 }, (_, i) => i), pidOf, { batchSize: 1 }))]
      assert.strictEqual(pids.length, 2)
      const fiber = yield* Effect.forkChild(Parallel.map(Array.from({ length: 200 }, (_, i) => i), (x) => {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5)
        return x
      }, { batchSize: 1 }))
      yield* Effect.sleep(100)
      process.kill(pids[0]!, "SIGKILL")
      const killed = yield* Effect.flip(Fiber.join(fiber))
      assert.instanceOf(killed, ParallelError.WorkerCrashed)
      assert.strictEqual((killed as ParallelError.WorkerCrashed).signal, "SIGKILL")
      assert.isFalse(alive(pids[0]!))
    }).pipe(Effect.provide(Backend.layerProcesses({ workers: 2 }))))

  it.live("closing the Layer, or interrupting a map, leaves no worker process alive", () =>
    Effect.gen(function*() {
      const pids = new Set<number>()
      yield* Effect.gen(function*() {
        for (const pid of yield* Parallel.map(Array.from({ length: 20 }, (_, i) => i), pidOf, { batchSize: 1 })) {
          pids.add(pid)
        }
        // A map stuck in synchronous loops, interrupted from outside.
        const stuck = yield* Effect.forkChild(Parallel.map([1, 2], (_) => {
          while (true) {}
        }))
        yield* Effect.sleep(200)
        yield* Fiber.interrupt(stuck)
        for (const pid of yield* Parallel.map(Array.from({ length: 20 }, (_, i) => i), pidOf, { batchSize: 1 })) {
          pids.add(pid)
        }
      }).pipe(Effect.provide(Backend.layerProcesses({ workers: 2, interruptGrace: 100 })))
      assert.isAtLeast(pids.size, 2)
      assert.deepStrictEqual(yield* waitGone(pids), [])
    }))

  it.live("a whole-map Effect.timeout stops every worker's work", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const result = yield* Parallel.map(Array.from({ length: 4 }, (_, i) => Path.join(dir, `${i}`)), (file) => {
        const fs = (globalThis as any).process.getBuiltinModule("node:fs")
        const until = Date.now() + 3000
        while (Date.now() < until) {}
        fs.writeFileSync(file, "finished")
      }, { batchSize: 1 }).pipe(Effect.timeoutOption(300))
      assert.isTrue(Option.isNone(result))
      yield* Effect.sleep(3500)
      assert.deepStrictEqual(Fs.readdirSync(dir), [], "no task ran to its end after the timeout")
      Fs.rmSync(dir, { recursive: true, force: true })
    }).pipe(Effect.provide(Backend.layerProcesses({ workers: 2, interruptGrace: 100 }))), 15_000)

  it.live("closing a pool runs each worker's task layer finalizers, on threads and processes", () =>
    Effect.gen(function*() {
      for (const make of [Backend.layerThreads, Backend.layerProcesses]) {
        const dir = tmp()
        const ids = yield* Effect.scoped(Effect.gen(function*() {
          const context = yield* Layer.build(make({ workers: 2, env: { EJL_RELEASE_DIR: dir } }))
          const out = yield* Effect.provide(Parallel.map([1, 2, 3, 4], UsesConnection, { batchSize: 1 }), context)
          assert.deepStrictEqual(Fs.readdirSync(dir), [], "nothing is released while the pool is open")
          return new Set(out.map((value) => value.split(":")[0]!))
        }))
        const released = Fs.readdirSync(dir).map((file) => file.slice("released-".length)).sort()
        assert.deepStrictEqual(released, [...ids].sort(), "every worker's connection is released once")
        Fs.rmSync(dir, { recursive: true, force: true })
      }
    }))

  it("a worker stuck in synchronous code does not outlive a SIGKILLed driver", async () => {
    const driver = ChildProcess.spawn(
      Path.join(process.cwd(), "node_modules/.bin/node"),
      [Path.join(import.meta.dirname, "fixtures/orphan.ts")],
      { stdio: ["ignore", "pipe", "inherit"] }
    )
    let output = ""
    const pid = await new Promise<number>((resolve, reject) => {
      driver.stdout.on("data", (chunk) => {
        output += chunk
        const line = output.split("\n").find((l) => l.startsWith("worker "))
        if (line !== undefined) resolve(Number(line.slice(7)))
      })
      driver.on("exit", () => reject(new Error(`exited early: ${output}`)))
    })
    // Let the worker enter its endless loop, where it can no longer see its channel close.
    await new Promise((resolve) => setTimeout(resolve, 300))
    assert.isTrue(alive(pid))
    driver.kill("SIGKILL")
    assert.deepStrictEqual(await Effect.runPromise(waitGone([pid])), [], "the orphaned worker is gone")
  }, 30_000)

  it("SIGINT to a program leaves no worker process and no temp file behind", async () => {
    const dir = tmp()
    const child = ChildProcess.spawn(
      Path.join(process.cwd(), "node_modules/.bin/node"),
      [Path.join(import.meta.dirname, "fixtures/interrupted.ts"), dir],
      { stdio: ["ignore", "pipe", "inherit"] }
    )
    let output = ""
    const pids = await new Promise<Array<number>>((resolve, reject) => {
      child.stdout.on("data", (chunk) => {
        output += chunk
        const line = output.split("\n").find((l) => l.startsWith("workers "))
        if (line !== undefined) resolve(line.slice(8).split(",").map(Number))
      })
      child.on("exit", () => reject(new Error(`exited early: ${output}`)))
    })
    assert.strictEqual(pids.length, 2)
    for (const pid of pids) assert.isTrue(alive(pid))
    // Let a dump start, then interrupt the program as Ctrl-C would.
    await new Promise((resolve) => setTimeout(resolve, 300))
    child.kill("SIGINT")
    const code = await new Promise((resolve) => child.on("exit", (code, signal) => resolve(code ?? signal)))
    assert.notStrictEqual(code, 0)
    assert.deepStrictEqual(await Effect.runPromise(waitGone(pids)), [])
    assert.deepStrictEqual(
      Fs.readdirSync(dir).filter((f) => f !== "done.ejlb" && f !== "big.ejlb"),
      [],
      "no temp files"
    )
    Fs.rmSync(dir, { recursive: true, force: true })
  }, 30_000)
})

describe("prefer and nesting", () => {
  it.live("Backend.layerAuto follows the prefer hint; an explicit backend wins over it", () =>
    Effect.gen(function*() {
      const [inThread] = yield* Parallel.map([1], pidOf)
      const [inProcess] = yield* Parallel.map([1], pidOf, { prefer: "processes" })
      assert.strictEqual(inThread, process.pid, "threads by default")
      assert.notStrictEqual(inProcess, process.pid)
      const [explicit] = yield* Parallel.map([1], pidOf, { prefer: "processes" }).pipe(
        Effect.provide(Backend.layerThreads({ workers: 1 }))
      )
      assert.strictEqual(explicit, process.pid, "an explicitly provided threads backend ignores the hint")
    }).pipe(Effect.provide(Backend.layerAuto({ threads: { workers: 1 }, processes: { workers: 1 } }))))

  it.live("a map nested in a worker's task stays within that worker's CPU budget", () =>
    Effect.gen(function*() {
      // Every leaf task records how many leaves run at once, in shared memory.
      const counters = new Int32Array(new SharedArrayBuffer(8))
      const outer = Cpus.available()
      const results = yield* Parallel.map(
        Array.from({ length: outer }, (_, i) => ({ i, counters })),
        NestedProbe,
        { batchSize: 1 }
      )
      assert.strictEqual(results.length, outer)
      const budgetPerWorker = Math.max(1, Math.floor(Cpus.available() / outer))
      for (const inner of results) assert.strictEqual(inner.workers, budgetPerWorker)
      assert.isAtMost(Atomics.load(counters, 1), Cpus.available(), "busy threads never exceed the CPUs")
    }).pipe(Effect.provide(Backend.layerThreads({ workers: -1 }))), 30_000)
})

describe("retry timing", () => {
  it.effect("retries back off as the Schedule says (TestClock)", () =>
    Effect.gen(function*() {
      const key = `backoff-${Math.random()}`
      const fiber = yield* Effect.forkChild(
        Parallel.map([{ key, failures: 2 }], Flaky, {
          retry: Schedule.max([Schedule.exponential("1 second"), Schedule.recurs(3)])
        })
      )
      yield* Effect.yieldNow
      assert.isUndefined(fiber.pollUnsafe(), "waiting 1s before the first retry")
      yield* TestClock.adjust("1 second")
      assert.isUndefined(fiber.pollUnsafe(), "then 2s before the second")
      yield* TestClock.adjust("2 seconds")
      const exit = yield* Fiber.await(fiber)
      assert.deepStrictEqual(exit, Exit.succeed([3]))
    }))
})

describe("after every fault above", () => {
  it("no worker process of this test run is left alive", () => {
    // Children of this process whose command line is the process worker bootstrap.
    const orphans = Fs.readdirSync("/proc").filter((entry) => {
      if (!/^\d+$/.test(entry)) return false
      try {
        const stat = Fs.readFileSync(`/proc/${entry}/stat`, "utf8")
        const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1])
        return ppid === process.pid &&
          Fs.readFileSync(`/proc/${entry}/cmdline`, "utf8").includes("EFFECT_JOBLIB_WORKER_SOURCE")
      } catch {
        return false
      }
    })
    assert.deepStrictEqual(orphans, [])
  })
})
