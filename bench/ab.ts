/**
 * `AB_BASE=<checkout> npm run bench -- ab`: an A/B of this tree against another checkout of the library
 * (a refactor's previous commit, say) on P1–P4, R1 and C1, in one process, interleaved round by round so that
 * machine noise hits both alike. Prints each workload's medians and the ratio this ÷ base.
 *
 * The base checkout needs `node_modules` (a symlink to this one's will do): both trees then share one `effect`.
 * `AB_ONLY=P1,P2` runs only those workloads.
 */
import { Effect, Exit, Layer, Scope } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as NodePath from "node:path"
import type * as ThisLibrary from "../src/index.ts"
import { startRedis } from "../test/redisServer.ts"
import { interleaved } from "./harness.ts"
import { parallelInputs, sum } from "./workloads.ts"

type Library = typeof ThisLibrary

const WORKERS = 2

/** One tree's workloads, each a function run once per round; closed after. */
const workloadsOf = async (
  lib: Library,
  redisUrl: string,
  queue: string,
  inputs: ReturnType<typeof parallelInputs>
) => {
  const { Backend, Cache, Parallel, Remote } = lib
  // Warm pools and a worker for the life of the A/B, as a user's scoped Layer would give.
  const closeables: Array<() => Promise<void>> = []
  const keep = async <R>(layer: Layer.Layer<R, unknown>) => {
    const scope = Effect.runSync(Scope.make())
    const context = await Effect.runPromise(Layer.buildWithScope(layer, scope))
    closeables.push(() => Effect.runPromise(Scope.close(scope, Exit.void)))
    return <A>(effect: Effect.Effect<A, unknown, any>) =>
      Effect.runPromise(Effect.provide(effect, context) as Effect.Effect<A, unknown>)
  }
  const threads = await keep(Backend.layerThreads({ workers: WORKERS }))
  await keep(Remote.layerWorker({ redis: redisUrl, queue, modules: [], allowInline: true, concurrency: WORKERS }))
  const remote = await keep(Remote.layer({ redis: redisUrl, queue }))
  const dir = Fs.mkdtempSync(NodePath.join(Os.tmpdir(), "ab-cache-"))
  const cached = await keep(Cache.layerFileSystem(dir))
  const small = Cache.memoize(function small(x: number) {
    return x + 1
  })
  await cached(small(7))
  const spinInline = (n: number) => {
    let x = 0
    for (let i = 0; i < n; i++) x = (x + Math.sqrt(i)) % 1000
    return x
  }
  const r1Items = Array.from({ length: 1000 }, () => Math.max(1, Math.round(inputs.spins[0]! / 10)))
  return {
    close: async () => {
      for (const close of closeables.reverse()) await close()
      Fs.rmSync(dir, { recursive: true, force: true })
    },
    P1: () => threads(Parallel.map(inputs.xs, (x) => Math.sqrt(x * x))),
    P2: () => threads(Parallel.map(inputs.spins, spinInline)),
    P3: () => threads(Parallel.map(inputs.arrays, sum)),
    P4: () =>
      Effect.runPromise(
        Parallel.map(Array.from({ length: 100 }, (_, i) => i), (x) => x * 2).pipe(
          Effect.provide(Backend.layerThreads({ workers: WORKERS }))
        )
      ),
    R1: () => remote(Parallel.map(r1Items, spinInline)),
    C1: async () => {
      for (let i = 0; i < 2000; i++) await cached(small(7))
    }
  }
}

export const run = async () => {
  const base = process.env.AB_BASE
  if (base === undefined) throw new Error("set AB_BASE to the checkout to compare against")
  const baseLib: Library = await import(NodePath.resolve(base, "src/index.ts"))
  const thisLib: Library = await import("../src/index.ts")
  const server = await startRedis()
  const inputs = parallelInputs()
  const a = await workloadsOf(baseLib, server.url, "ab-base", inputs)
  const b = await workloadsOf(thisLib, server.url, "ab-this", inputs)
  const rounds: Record<string, number> = { P1: 15, P2: 7, P3: 7, P4: 9, R1: 7, C1: 15 }
  const rows = []
  try {
    const only = process.env.AB_ONLY?.split(",")
    for (const name of ["P1", "P2", "P3", "P4", "R1", "C1"] as const) {
      if (only !== undefined && !only.includes(name)) continue
      const [ms1, ms2] = await interleaved(rounds[name]!, [a[name], b[name]])
      rows.push({ workload: name, base: ms1!, this: ms2!, ratio: ms2! / ms1! })
    }
  } finally {
    await a.close()
    await b.close()
    await server.stop()
  }
  console.log("| workload | base ms | this ms | this ÷ base |")
  console.log("|---|---:|---:|---:|")
  for (const row of rows) {
    console.log(`| ${row.workload} | ${row.base.toFixed(1)} | ${row.this.toFixed(1)} | ${row.ratio.toFixed(2)} |`)
  }
}
