/**
 * R4 of the Remote scaling issue: 24 worker processes with 4 threads each (96 slots) on one Redis run 10,000
 * tasks that each sleep 100 ms (ideal: 10.4 s). Sleeping keeps the two cores free, so that what is measured
 * is the protocol's cost. Then the same map with a quarter of the workers SIGKILLed mid-map: it completes,
 * and every result is in its place. Reports throughput against the ideal, and the driver's and Redis's CPU
 * per batch.
 */
import { Effect, Fiber, Layer } from "effect"
import { Redis } from "ioredis"
import type * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import { Parallel, Progress, Remote } from "../src/index.ts"
import { SleepEcho } from "../test/fixtures/tasks.ts"
import { startRedis, startWorkerProcess } from "../test/redisServer.ts"
import { now } from "./harness.ts"

/** Busy share of all CPUs since `from` (from /proc/stat), and a new reading. */
const cpuTimes = () => Fs.readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number)
const busySince = (from: ReadonlyArray<number>) => {
  const delta = cpuTimes().map((value, i) => value - from[i]!)
  const total = delta.reduce((sum, value) => sum + value, 0)
  return total === 0 ? 0 : 1 - (delta[3]! + delta[4]!) / total
}

const WORKERS = 24
const THREADS = 4
const TASKS = 10_000
const SLEEP_MS = 100

export const run = async () => {
  const server = await startRedis()
  const queue = "scale"
  const admin = new Redis(server.url)
  const redisCpu = async () => {
    const info = await admin.info("cpu")
    const read = (key: string) => Number(new RegExp(`${key}:([\\d.]+)`).exec(info)![1])
    return (read("used_cpu_user") + read("used_cpu_sys")) * 1e6
  }
  const redisCalls = async () => {
    const info = await admin.info("commandstats")
    return [...info.matchAll(/calls=(\d+)/g)].reduce((sum, match) => sum + Number(match[1]), 0)
  }
  const workers: Array<ChildProcess.ChildProcess> = []
  for (let i = 0; i < WORKERS; i++) {
    workers.push(startWorkerProcess(server.url, queue, { concurrency: THREADS }))
  }
  const items = Array.from({ length: TASKS }, (_, i) => [i, SLEEP_MS] as const)
  try {
    const results = await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const read = yield* Remote.monitor({ redis: server.url, queue })
      while ((yield* read).capacity < WORKERS * THREADS) yield* Effect.sleep(200)
      const context = yield* Layer.build(Remote.layer({ redis: server.url, queue, noWorkerTimeout: "60 seconds" }))
      // Warm: every thread loads the task module before the clock starts.
      yield* Parallel.map(items.slice(0, 3 * WORKERS * THREADS).map(([i]) => [i, 50] as const), SleepEcho, {
        batchSize: 1
      }).pipe(Effect.provide(context))
      // 24 processes starting 96 threads keep both cores busy for a while: the clock starts once they are quiet.
      for (let i = 0; i < 120; i++) {
        const from = cpuTimes()
        yield* Effect.sleep(1000)
        if (busySince(from) < 0.3) break
      }
      const measure = (killAfter: number | undefined) =>
        Effect.gen(function*() {
          const cpuFrom = cpuTimes()
          let batches = 0
          let completed = 0
          const cpu = process.cpuUsage()
          const redis = yield* Effect.promise(redisCpu)
          const calls = yield* Effect.promise(redisCalls)
          const started = now()
          const fiber = yield* Effect.forkChild(
            Parallel.map(items, SleepEcho).pipe(
              Effect.provideService(Progress.Progress, (event) => {
                if (event._tag === "BatchCompleted") {
                  batches++
                  completed += event.size
                }
              }),
              Effect.provide(context)
            )
          )
          if (killAfter !== undefined) {
            while (completed < killAfter) yield* Effect.sleep(20)
            for (const worker of workers.slice(0, WORKERS / 4)) worker.kill("SIGKILL")
          }
          const out = yield* Fiber.join(fiber)
          const ms = now() - started
          const busy = busySince(cpuFrom)
          const driver = process.cpuUsage(cpu)
          const wrong = out.filter((value, i) => value !== i).length
          return {
            ms,
            busy,
            batches,
            wrong,
            length: out.length,
            driverUs: (driver.user + driver.system) / batches,
            redisUs: ((yield* Effect.promise(redisCpu)) - redis) / batches,
            callsPerBatch: ((yield* Effect.promise(redisCalls)) - calls) / batches
          }
        })
      const clean = yield* measure(undefined)
      const killed = yield* measure(TASKS * 0.3)
      return { clean, killed }
    })))
    const ideal = (TASKS * SLEEP_MS) / (WORKERS * THREADS)
    const { clean, killed } = results
    console.log(
      "| R4 | ms | tasks/s | of ideal | batches | driver CPU per batch | Redis CPU per batch | Redis calls per batch | CPUs busy |"
    )
    console.log("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (const [name, r] of [["96 slots (24 × 4)", clean], ["a quarter SIGKILLed at 30%", killed]] as const) {
      console.log(
        `| ${name} | ${r.ms.toFixed(0)} | ${(TASKS / r.ms * 1000).toFixed(0)} | ${
          (ideal / r.ms * 100).toFixed(0)
        }% | ${r.batches} | ${r.driverUs.toFixed(0)} µs | ${r.redisUs.toFixed(0)} µs | ${
          r.callsPerBatch.toFixed(1)
        } | ${(r.busy * 100).toFixed(0)}% |`
      )
    }
    console.log()
    console.log(
      `R4: ideal ${ideal.toFixed(0)} ms (${
        (TASKS / ideal * 1000).toFixed(0)
      } tasks/s; target ≥ 80%). Results in place: ` +
        `${clean.length - clean.wrong}/${TASKS} clean, ${killed.length - killed.wrong}/${TASKS} with workers killed.`
    )
  } finally {
    for (const worker of workers) worker.kill("SIGKILL")
    admin.disconnect()
    await server.stop()
  }
}
