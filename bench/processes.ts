/**
 * `npm run bench -- processes`: the Processes backend on P1–P4 next to the
 * Threads backend, raw child_process (hand-batched) and joblib (loky), plus
 * the time to recover from a SIGKILLed worker and the latency of a timeout on
 * a stuck synchronous task. 2 workers throughout.
 */
import { Effect, Exit, Fiber, Layer, Schedule, Scope } from "effect"
import { type ChildProcess, fork } from "node:child_process"
import { fileURLToPath } from "node:url"
import { Backend, Parallel, Progress } from "../src/index.ts"
import { interleaved, median, now, roundRobin, type Row, table } from "./harness.ts"
import { joblib, parallelInputs, spin, sum } from "./workloads.ts"

const WORKERS = 2

/** Raw child processes with hand-made batches, round robin: the floor a process pool pays. */
const rawProcesses = async () => {
  const children: Array<ChildProcess> = Array.from(
    { length: WORKERS },
    () =>
      fork(fileURLToPath(new URL("./workers/batch-process.mjs", import.meta.url)), [], { serialization: "advanced" })
  )
  for (const child of children) child.setMaxListeners(0)
  await Promise.all(children.map((c) => new Promise((resolve) => c.once("message", resolve))))
  const dispatch = roundRobin(children)
  const run = (op: string, items: ReadonlyArray<unknown>, batch: number) =>
    dispatch<unknown>(items, batch, (child, id, part) => child.send({ id, op, items: part }))
  const close = () =>
    Promise.all(children.map((c) =>
      new Promise((resolve) => {
        c.once("exit", resolve)
        c.kill()
      })
    ))
  return { run, close }
}

/** Builds a pool once and runs effects against it. */
const pool = async (layer: Layer.Layer<never, unknown>) => {
  const scope = await Effect.runPromise(Scope.make())
  const context = await Effect.runPromise(Layer.buildWithScope(layer, scope))
  return {
    go: <A>(effect: Effect.Effect<A, unknown>) => Effect.runPromise(Effect.provide(effect, context)),
    close: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

/** A 2-worker map of 1,000 × 5 ms tasks, with one worker SIGKILLed halfway when `kill` is set. */
const recovery = async (kill: boolean) => {
  const processes = await pool(Backend.layerProcesses({ workers: WORKERS }))
  const pids = [
    ...new Set(
      await processes.go(Parallel.map(Array.from({ length: 40 }, (_, i) => i), (_) => (globalThis as any).process.pid, {
        batchSize: 1
      }))
    )
  ]
  const batches: Array<number> = []
  const items = Array.from({ length: 1000 }, (_, i) => i)
  const task = (x: number) => {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5)
    return x
  }
  const start = now()
  const map = Parallel.map(items, task, { retry: Schedule.recurs(2) }).pipe(
    Effect.provideService(Progress.Progress, (event) => {
      if (event._tag === "BatchCompleted") batches.push(event.duration)
    })
  )
  const result = await processes.go(Effect.gen(function*() {
    const fiber = yield* Effect.forkChild(map)
    if (kill) {
      yield* Effect.sleep(1250)
      process.kill(pids[0] as number, "SIGKILL")
    }
    return yield* Fiber.join(fiber)
  }))
  const elapsed = now() - start
  await processes.close()
  if (result.length !== 1000 || result.some((x, i) => x !== i)) throw new Error("wrong results")
  return { elapsed, batch: median(batches), longest: Math.max(...batches) }
}

/** From the deadline of a task stuck in `while (true) {}` to the typed failure, then to a whole pool again. */
const timeoutLatency = async (layer: Layer.Layer<never, unknown>) => {
  const p = await pool(layer)
  const failures: Array<number> = []
  const whole: Array<number> = []
  const limit = 100
  for (let run = 0; run < 6; run++) {
    const start = now()
    await p.go(Effect.exit(Parallel.map([0], (_) => {
      while (true) {}
    }, { timeout: limit })))
    const failed = now()
    await p.go(Parallel.map([1, 2], (x) => x, { batchSize: 1 }))
    if (run > 0) {
      failures.push(failed - start - limit)
      whole.push(now() - start - limit)
    }
  }
  await p.close()
  return { failure: median(failures), whole: median(whole) }
}

export const run = async () => {
  const rows: Array<Row> = []
  const { xs, spins, arrays } = parallelInputs()

  const processes = await pool(Backend.layerProcesses({ workers: WORKERS }))
  const threads = await pool(Backend.layerThreads({ workers: WORKERS }))
  const raw = await rawProcesses()
  const [p1, p1Threads, p1Raw] = await interleaved(11, [
    () => processes.go(Parallel.map(xs, (x) => Math.sqrt(x * x))),
    () => threads.go(Parallel.map(xs, (x) => Math.sqrt(x * x))),
    () => raw.run("sqrt", xs, Math.ceil(xs.length / (4 * WORKERS)))
  ])
  const [p2, p2Threads, p2Raw] = await interleaved(3, [
    () => processes.go(Parallel.map(spins, spin)),
    () => threads.go(Parallel.map(spins, spin)),
    () => raw.run("spin", spins, 1)
  ])
  const [p3, p3Threads, p3Raw] = await interleaved(3, [
    () => processes.go(Parallel.map(arrays, sum)),
    () => threads.go(Parallel.map(arrays, sum)),
    () => raw.run("sum", arrays, 1)
  ])
  await Promise.all([processes.close(), threads.close(), raw.close()])

  const coldPool = (layer: Layer.Layer<never, unknown>) => () =>
    Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const context = yield* Layer.build(layer)
      yield* Effect.provide(Parallel.map([4], (x) => Math.sqrt(x)), context)
    })))
  const [p4, p4Threads, p4Raw] = await interleaved(5, [
    coldPool(Backend.layerProcesses({ workers: WORKERS })),
    coldPool(Backend.layerThreads({ workers: WORKERS })),
    async () => {
      const pool = await rawProcesses()
      await pool.run("sqrt", [4], 1)
      await pool.close()
    }
  ])

  const warm = joblib("warm")
  const cold = joblib("cold")

  rows.push(
    { workload: "P1 100k × sqrt(x*x)", peer: "effect-joblib processes", ms: p1, note: "default options" },
    { workload: "P1 100k × sqrt(x*x)", peer: "effect-joblib threads", ms: p1Threads },
    { workload: "P1 100k × sqrt(x*x)", peer: "raw child_process", ms: p1Raw, note: "hand-batched, 8 batches" },
    { workload: "P1 100k × sqrt(x*x)", peer: "joblib loky", ms: warm?.P1, note: "batch_size=auto" },
    { workload: "P2 200 × 10 ms CPU", peer: "effect-joblib processes", ms: p2 },
    { workload: "P2 200 × 10 ms CPU", peer: "effect-joblib threads", ms: p2Threads },
    { workload: "P2 200 × 10 ms CPU", peer: "raw child_process", ms: p2Raw, note: "one item per message" },
    { workload: "P2 200 × 10 ms CPU", peer: "joblib loky", ms: warm?.P2 },
    {
      workload: "P3 50 × sum(8 MB Float64Array)",
      peer: "effect-joblib processes",
      ms: p3,
      note: "copied to the process"
    },
    { workload: "P3 50 × sum(8 MB Float64Array)", peer: "effect-joblib threads", ms: p3Threads },
    { workload: "P3 50 × sum(8 MB Float64Array)", peer: "raw child_process", ms: p3Raw, note: "one array per message" },
    { workload: "P3 50 × sum(8 MB Float64Array)", peer: "joblib loky", ms: warm?.P3, note: "numpy, memmapped" },
    { workload: "P4 cold pool, first result", peer: "effect-joblib processes", ms: p4 },
    { workload: "P4 cold pool, first result", peer: "effect-joblib threads", ms: p4Threads },
    { workload: "P4 cold pool, first result", peer: "raw child_process", ms: p4Raw, note: "fork 2, first result" },
    { workload: "P4 cold pool, first result", peer: "joblib loky", ms: cold?.P4, note: "fresh process" }
  )
  console.log(table(rows, "effect-joblib processes"))

  const clean = await recovery(false)
  const killed = await recovery(true)
  const overhead = killed.elapsed - clean.elapsed
  console.log()
  console.log(
    `Recovery: 1,000 × 5 ms on 2 processes took ${
      clean.elapsed.toFixed(0)
    } ms; with one worker SIGKILLed after 1.25 s ` +
      `and retry, ${killed.elapsed.toFixed(0)} ms (ratio ${(killed.elapsed / clean.elapsed).toFixed(2)}). ` +
      `Extra time ${overhead.toFixed(0)} ms against a budget of a batch (median ${
        killed.batch.toFixed(0)
      } ms, longest ${killed.longest.toFixed(0)} ms) + 1000 ms: ${overhead <= killed.longest + 1000 ? "met" : "missed"}`
  )
  for (
    const [name, layer] of [
      ["threads", Backend.layerThreads({ workers: WORKERS })],
      ["processes", Backend.layerProcesses({ workers: WORKERS })]
    ] as const
  ) {
    const latency = await timeoutLatency(layer)
    console.log(
      `Timeout latency (${name}, default interruptGrace): deadline → TaskTimeout ${latency.failure.toFixed(0)} ms; ` +
        `deadline → the next map done on a whole pool ${latency.whole.toFixed(0)} ms (target < 250 ms: ${
          latency.whole < 250 ? "met" : "missed"
        })`
    )
  }
}
