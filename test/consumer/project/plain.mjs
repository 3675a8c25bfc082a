// Plain JavaScript, no TypeScript anywhere: a Task and an inline function on worker threads.
import { Effect, Schema } from "effect"
import { Backend, Parallel, Task } from "effect-joblib"

export const Half = Task.make("Half", { payload: Schema.Number, success: Schema.Number, run: (x) => x / 2 })

if (import.meta.main) {
  const program = Effect.all({
    task: Parallel.map([2, 4, 6], Half),
    inline: Parallel.map([1, 2, 3], (x) => x + 1)
  }).pipe(Effect.provide(Backend.layerThreads({ workers: 2 })))
  Effect.runPromise(program).then((result) => console.log(JSON.stringify({ ...result, node: process.versions.node })))
}
