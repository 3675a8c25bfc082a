/**
 * `npm run bench -- interrupt`: maps interrupted in quick succession, as an HTTP service's aborted requests
 * interrupt theirs. For each pool: the time from `Fiber.interrupt` to the map's end, and a map's time right
 * after a burst of 200 interruptions against the same map unloaded. The interrupted maps keep their workers
 * busy in user code (CPU-bound tasks in batches), so that cancel messages arrive while a worker is busy.
 * piscina, aborting its tasks with an AbortSignal, in the same run.
 */
import { Effect, Fiber, Layer, Metric } from "effect"
import { Piscina } from "piscina"
import { Backend, Parallel } from "../src/index.ts"
import { median, type Row, table } from "./harness.ts"
import { Root, Spin } from "./tasks/root.ts"

const BURST = 200
const COLD_BURST = 64
const WORKERS = 2
const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const items = Array.from({ length: 64 }, (_, i) => i)
/** An interrupted map: 12 tasks of about 2 ms of CPU each, in batches of 4, so that workers are busy in user code. */
const spins = Array.from({ length: 12 }, () => 200_000)

/** Workers started to replace others, over every map so far (the library's own metric). */
const restarts = Effect.map(
  Metric.snapshot,
  (all) =>
    (all.find((m) => m.id === "effect_joblib_worker_restarts")?.state as { count: number } | undefined)?.count ?? 0
)

/** Ours on `layer`: unloaded map time, interrupt latency over a burst, and the map time right after. */
const ours = (layer: Layer.Layer<never, unknown>) =>
  Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const context = yield* Layer.build(layer)
    const run = <A, E>(effect: Effect.Effect<A, E>) => Effect.provide(effect, context)
    const timed = Effect.gen(function*() {
      const start = performance.now()
      yield* run(Parallel.map(items, Root))
      return performance.now() - start
    })
    // A cold pool: maps interrupted while its workers start and import the task module.
    const coldBefore = yield* restarts
    for (let i = 0; i < COLD_BURST; i++) {
      const fiber = yield* Effect.forkChild(run(Parallel.map(spins, Spin, { batchSize: 4 })))
      yield* Effect.promise(() => wait(i % 4))
      yield* Fiber.interrupt(fiber)
    }
    const coldReplaced = (yield* restarts) - coldBefore
    yield* timed // warm: workers started, module loaded
    const unloaded: Array<number> = []
    for (let i = 0; i < 5; i++) unloaded.push(yield* timed)
    const restartsBefore = yield* restarts
    const latencies: Array<number> = []
    for (let i = 0; i < BURST; i++) {
      const fiber = yield* Effect.forkChild(run(Parallel.map(spins, Spin, { batchSize: 4 })))
      yield* Effect.promise(() => wait(i % 4))
      const start = performance.now()
      yield* Fiber.interrupt(fiber)
      latencies.push(performance.now() - start)
    }
    const after = yield* timed
    const replaced = (yield* restarts) - restartsBefore
    return {
      unloaded: median(unloaded),
      latency: median(latencies),
      worst: Math.max(...latencies),
      slow: latencies.filter((ms) => ms > 80).length,
      replaced,
      coldReplaced,
      after
    }
  })))

const piscina = async () => {
  const pool = new Piscina({
    filename: new URL("./workers/spin.mjs", import.meta.url).href,
    minThreads: WORKERS,
    maxThreads: WORKERS
  })
  const timed = async () => {
    const start = performance.now()
    await Promise.all(items.map((x) => pool.run(x)))
    return performance.now() - start
  }
  await timed()
  const unloaded: Array<number> = []
  for (let i = 0; i < 5; i++) unloaded.push(await timed())
  const latencies: Array<number> = []
  for (let i = 0; i < BURST; i++) {
    const controller = new AbortController()
    const tasks = spins.map((n) => pool.run(n, { signal: controller.signal }).catch(() => {}))
    await wait(i % 4)
    const start = performance.now()
    controller.abort()
    await Promise.all(tasks)
    latencies.push(performance.now() - start)
  }
  // Aborting a running task replaces its worker: the next map may wait for the replacements.
  const after = await timed()
  await pool.destroy()
  return {
    unloaded: median(unloaded),
    latency: median(latencies),
    worst: Math.max(...latencies),
    slow: latencies.filter((ms) => ms > 80).length,
    replaced: undefined as number | undefined,
    coldReplaced: undefined as number | undefined,
    after
  }
}

export const run = async () => {
  const threads = await ours(Backend.layerThreads({ workers: WORKERS }))
  const processes = await ours(Backend.layerProcesses({ workers: WORKERS }))
  const peer = await piscina()
  const results = [
    { name: "effect-joblib", result: threads, note: "threads" },
    { name: "effect-joblib, processes", result: processes, note: "" },
    { name: "piscina abort", result: peer, note: "AbortSignal" }
  ]
  const rows: Array<Row> = results.flatMap(({ name, note, result: r }) => [
    {
      workload: `interrupt latency, median of ${BURST}`,
      peer: name,
      ms: r.latency,
      note: `${note} worst ${r.worst.toFixed(0)} ms, ${r.slow} over 80 ms${
        r.replaced === undefined
          ? ""
          : `, ${r.replaced} workers replaced; ${r.coldReplaced} in ${COLD_BURST} on a cold pool`
      }`.trim()
    },
    { workload: "a map, unloaded", peer: name, ms: r.unloaded, note },
    {
      workload: "the same map right after the burst",
      peer: name,
      ms: r.after,
      note: `${(r.after / r.unloaded).toFixed(2)}× unloaded`
    }
  ])
  console.log(table(rows, "effect-joblib"))
}
