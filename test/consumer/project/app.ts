// A TypeScript app: run by Node, compiled by tsc, and bundled into one file by esbuild.
import { Effect } from "effect"
import { Backend, Parallel } from "effect-joblib"
import { Cube, Square } from "./tasks.ts"

const program = Effect.gen(function*() {
  const threads = yield* Parallel.map([1, 2, 3, 4], Square).pipe(Effect.provide(Backend.layerThreads({ workers: 2 })))
  const processes = yield* Parallel.map([1, 2, 3], Cube).pipe(Effect.provide(Backend.layerProcesses({ workers: 2 })))
  const inline = yield* Parallel.map([1, 4, 9], (x) => Math.sqrt(x)).pipe(
    Effect.provide(Backend.layerThreads({ workers: 2 }))
  )
  return { threads, processes, inline }
})

if (import.meta.main) {
  Effect.runPromise(program).then((result) => console.log(JSON.stringify(result)))
}
