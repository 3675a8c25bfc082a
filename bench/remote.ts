/**
 * `npm run bench -- remote`: R1 and R2 of the Remote issue, and R3 (10,000 tiny tasks, cold) of the runtime issue. Redis on loopback and two worker processes
 * started through the command line (one thread each), next to the Threads backend and a sequential loop.
 */
import { Effect, Fiber, Layer } from "effect"
import { Backend, Parallel, Progress, Remote } from "../src/index.ts"
import { startRedis, startWorkerProcess } from "../test/redisServer.ts"
import { now } from "./harness.ts"
import { calibrate, spin } from "./workloads.ts"

const startWorker = (url: string, queue: string) => startWorkerProcess(url, queue, { allowInline: true })

const timed = async <A>(run: () => Promise<A>) => {
  const start = now()
  const value = await run()
  return { ms: now() - start, value }
}

export const run = async () => {
  // Calibrated first: worker processes loading their modules would slow the timing down.
  const spinN = calibrate(1)
  const server = await startRedis()
  const queue = "bench"
  const workers = [startWorker(server.url, queue), startWorker(server.url, queue)]
  const oneMs = Array.from({ length: 1000 }, () => spinN)
  const tiny = Array.from({ length: 10_000 }, (_, i) => i)
  try {
    const remote = await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const context = yield* Layer.build(Remote.layer({ redis: server.url, queue, noWorkerTimeout: "30 seconds" }))
      const go = <A>(effect: Effect.Effect<A, unknown>) => Effect.runPromise(Effect.provide(effect, context))
      yield* Effect.promise(() => go(Parallel.map(oneMs.slice(0, 100), spin))) // warm: workers started, code loaded
      // What a task costs on this VM right now (its speed drifts by ±15% over minutes): the same 1,000 tasks
      // on this loop, just before and just after.
      const before = yield* Effect.promise(() => timed(async () => oneMs.map(spin)))
      const r1 = yield* Effect.promise(() => timed(() => go(Parallel.map(oneMs, spin))))
      const r1b = yield* Effect.promise(() => timed(() => go(Parallel.map(oneMs, spin))))
      const after = yield* Effect.promise(() => timed(async () => oneMs.map(spin)))
      const tinyRun = yield* Effect.promise(() => timed(() => go(Parallel.map(tiny, (x) => x * 2))))
      return { r1: Math.min(r1.ms, r1b.ms), tiny: tinyRun.ms, taskMs: (before.ms + after.ms) / 2 / 1000 }
    })))
    const threads = await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const context = yield* Layer.build(Backend.layerThreads({ workers: 2 }))
      const go = <A>(effect: Effect.Effect<A, unknown>) => Effect.runPromise(Effect.provide(effect, context))
      yield* Effect.promise(() => go(Parallel.map(oneMs.slice(0, 100), spin)))
      const r1 = yield* Effect.promise(() => timed(() => go(Parallel.map(oneMs, spin))))
      const tinyRun = yield* Effect.promise(() => timed(() => go(Parallel.map(tiny, (x) => x * 2))))
      return { r1: r1.ms, tiny: tinyRun.ms }
    })))
    const sequential = (await timed(async () => oneMs.map(spin))).ms
    const rate = (n: number, ms: number) => `${((n / ms) * 1000).toFixed(0)} tasks/s`
    console.log("| workload | implementation | ms | throughput | remote ÷ this |")
    console.log("|---|---|---:|---:|---:|")
    console.log(
      `| R1 1,000 × 1 ms CPU | remote (2 worker processes) | ${remote.r1.toFixed(0)} | ${rate(1000, remote.r1)} | |`
    )
    console.log(
      `| R1 1,000 × 1 ms CPU | threads (2 workers) | ${threads.r1.toFixed(0)} | ${rate(1000, threads.r1)} | ${
        (remote.r1 / threads.r1).toFixed(2)
      } |`
    )
    console.log(
      `| R1 1,000 × 1 ms CPU | sequential loop | ${sequential.toFixed(0)} | ${rate(1000, sequential)} | ${
        (remote.r1 / sequential).toFixed(2)
      } |`
    )
    // R3: a map of work neither backend has batched before (cold), so both ramp from one item.
    console.log(`| R3 10,000 tiny, cold | remote | ${remote.tiny.toFixed(0)} | ${rate(10_000, remote.tiny)} | |`)
    console.log(
      `| R3 10,000 tiny, cold | threads | ${threads.tiny.toFixed(0)} | ${rate(10_000, threads.tiny)} | ${
        (remote.tiny / threads.tiny).toFixed(2)
      } (target ≤ 5) |`
    )

    console.log()
    console.log(
      `R1: a task took ${remote.taskMs.toFixed(3)} ms on the driver's loop around the remote maps; at exactly 1 ms ` +
        `per task the remote map would run ${((1000 / remote.r1) * 1000 * remote.taskMs).toFixed(0)} tasks/s ` +
        `(target ≥ 1600)`
    )

    // R2: the same map with and without a SIGKILLed worker, default lock and stall settings. A third worker
    // process joins for each run; the clock starts once it is connected and warm.
    const { Queue } = await import("bullmq")
    const probe = new Queue(queue, { connection: { host: "127.0.0.1", port: server.port } })
    const r2 = async (kill: boolean) => {
      const extra = startWorker(server.url, queue)
      const items = Array.from({ length: 400 }, () => 10 * spinN)
      let completed = 0
      const result = await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
        const context = yield* Layer.build(Remote.layer({ redis: server.url, queue, noWorkerTimeout: "30 seconds" }))
        while ((yield* Effect.promise(() => probe.getWorkersCount())) < 3) yield* Effect.sleep(50)
        yield* Parallel.map(items.slice(0, 60), spin, { batchSize: 4 }).pipe(Effect.provide(context))
        const started = now()
        const fiber = yield* Effect.forkChild(
          Parallel.map(items, spin, { batchSize: 4 }).pipe(
            Effect.provideService(Progress.Progress, (event) => {
              if (event._tag === "BatchCompleted") completed++
            }),
            Effect.provide(context)
          )
        )
        if (kill) {
          while (completed < 20) yield* Effect.sleep(10)
          extra.kill("SIGKILL")
        }
        yield* Fiber.join(fiber)
        return now() - started
      })))
      extra.kill("SIGKILL")
      while ((await probe.getWorkersCount()) > 2) await new Promise((resolve) => setTimeout(resolve, 50))
      return result
    }
    const clean = await r2(false)
    const killed = await r2(true)
    console.log()
    console.log(
      `R2: 400 × 10 ms on 3 worker processes took ${clean.toFixed(0)} ms; with one SIGKILLed mid-run, ${
        killed.toFixed(0)
      } ms: ${(killed - clean).toFixed(0)} ms added (target < 5000 ms)`
    )
    await probe.close()
  } finally {
    for (const worker of workers) worker.kill("SIGKILL")
    await server.stop()
  }
}
