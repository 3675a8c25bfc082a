/**
 * `npm run bench -- report`: P1 and P2 on two worker threads with `Progress.layerReport` on and off,
 * interleaved round by round, and the size of the report of a 100k-item map with auto batching.
 */
import { Effect, Exit, Layer, Scope } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { Backend, Parallel, Progress } from "../src/index.ts"
import { interleaved } from "./harness.ts"
import { parallelInputs } from "./workloads.ts"

export const run = async () => {
  const inputs = parallelInputs()
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "ejl-report-"))
  const file = Path.join(dir, "report.html")
  const scope = Effect.runSync(Scope.make())
  const context = await Effect.runPromise(Layer.buildWithScope(Backend.layerThreads({ workers: 2 }), scope))
  const report = Progress.layerReport(file)
  const off = <A>(effect: Effect.Effect<A, unknown, any>) =>
    Effect.runPromise(Effect.provide(effect, context) as Effect.Effect<A, unknown>)
  const on = <A>(effect: Effect.Effect<A, unknown, any>) =>
    off(Effect.provide(effect, report) as Effect.Effect<A, unknown, any>)
  const spin = (n: number) => {
    let x = 0
    for (let i = 0; i < n; i++) x = (x + Math.sqrt(i)) % 1000
    return x
  }
  const p1 = (x: number) => Math.sqrt(x * x)
  try {
    const [p1Off, p1On] = await interleaved(15, [
      () => off(Parallel.map(inputs.xs, p1)),
      () => on(Parallel.map(inputs.xs, p1))
    ])
    const [p2Off, p2On] = await interleaved(7, [
      () => off(Parallel.map(inputs.spins, spin)),
      () => on(Parallel.map(inputs.spins, spin))
    ])
    const big = Path.join(dir, "big.html")
    await off(Effect.provide(Parallel.map(Array.from({ length: 100_000 }, (_, i) => i), p1), Progress.layerReport(big)))
    console.log("\n### Progress.layerReport: P1 and P2 with the report on and off (2 worker threads)\n")
    console.log("| workload | off ms | on ms | on ÷ off |")
    console.log("|---|---:|---:|---:|")
    console.log(`| P1 | ${p1Off!.toFixed(1)} | ${p1On!.toFixed(1)} | ${(p1On! / p1Off!).toFixed(2)} |`)
    console.log(`| P2 | ${p2Off!.toFixed(1)} | ${p2On!.toFixed(1)} | ${(p2On! / p2Off!).toFixed(2)} |`)
    console.log(`\nThe report of a 100k-item map (auto batching): ${(Fs.statSync(big).size / 1e6).toFixed(2)} MB`)
  } finally {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    Fs.rmSync(dir, { recursive: true, force: true })
  }
}
