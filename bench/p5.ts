/**
 * One P5 measurement in a process of its own, so that its peak RSS is its own: `n` tiny items through
 * `Parallel.map`, `Parallel.stream` (ordered or not) or a plain `Stream.map`, on two worker threads.
 * Usage: node p5.ts <n> map|stream|unordered|baseline. Prints JSON: ms, maxRssMb.
 */
import { Effect, Stream } from "effect"
import * as Fs from "node:fs"
import { Backend, Parallel } from "../src/index.ts"

/**
 * This process's peak resident set: VmHWM, which starts afresh with the process's own memory (getrusage's
 * maxRSS does not: Linux carries it over from the parent across exec).
 */
const peakRssMb = () => Number(/VmHWM:\s+(\d+) kB/.exec(Fs.readFileSync("/proc/self/status", "utf8"))![1]) / 1024

const n = Number(process.argv[2])
const kind = process.argv[3]!

const square = (x: number) => Math.sqrt(x * x)
const run: Effect.Effect<number, unknown, never> = kind === "baseline"
  ? Stream.runCount(Stream.map(Stream.range(0, n - 1), square))
  : Effect.gen(function*() {
    yield* Parallel.map([1, 2, 3], square) // a warm pool, as a long-lived Layer gives
    if (kind === "map") return (yield* Parallel.map(Array.from({ length: n }, (_, i) => i), square)).length
    return yield* Stream.runCount(Parallel.stream(Stream.range(0, n - 1), square, { ordered: kind !== "unordered" }))
  }).pipe(Effect.provide(Backend.layerThreads({ workers: 2 })))

const started = performance.now()
Effect.runPromise(Effect.flatMap(Effect.suspend(() => run), (count) =>
  Effect.sync(() => {
    if (count !== n) throw new Error(`counted ${count} of ${n}`)
    const ms = performance.now() - started
    console.log(JSON.stringify({ ms, maxRssMb: peakRssMb() }))
  })))
