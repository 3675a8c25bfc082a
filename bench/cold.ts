/**
 * `npm run bench -- cold`: P4 and P4t, from no pool to the first result, against raw worker_threads in the same
 * run, interleaved round by round. P4 maps an inline function; P4t a Task, whose module every worker imports
 * (with `effect`), which is what a user waits for. Both on 2 workers.
 */
import { Effect, Layer } from "effect"
import { Worker } from "node:worker_threads"
import { Backend, Parallel } from "../src/index.ts"
import { median, type Row, table } from "./harness.ts"
import { Root } from "./tasks/root.ts"

const WORKERS = 2
const taskModule = new URL("./tasks/root.ts", import.meta.url).href

/**
 * Raw worker_threads: `WORKERS` workers started (each imports what its file imports), the first answers one
 * item. Returns the milliseconds to that answer; stopping the workers is not timed.
 */
const raw = (file: string, workerData: unknown, item: unknown, onlyFirst = false) => async () => {
  const start = performance.now()
  const workers = Array.from(
    { length: WORKERS },
    (_, i) => new Worker(new URL(file, import.meta.url), { workerData: onlyFirst && i > 0 ? undefined : workerData })
  )
  const first = workers[0]!
  await new Promise((resolve) => first.once("message", resolve)) // ready (the module imported)
  const result = new Promise((resolve) => first.once("message", resolve))
  first.postMessage(item)
  await result
  const elapsed = performance.now() - start
  await Promise.all(workers.map((worker) => worker.terminate()))
  return elapsed
}

/** Ours: a Layer built and a 1-item map, timed to its result; closing the scope is not timed. */
const ours = (work: Effect.Effect<unknown, unknown>, options: Backend.ThreadsOptions = {}) => () =>
  Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const start = performance.now()
    const context = yield* Layer.build(Backend.layerThreads({ workers: WORKERS, ...options }))
    yield* Effect.provide(work, context)
    return performance.now() - start
  })))

/** Runs each of `fs` once per round, in turn, after one untimed round: each one's median of what it returned. */
const rounds = async (count: number, fs: ReadonlyArray<() => Promise<number>>) => {
  for (const f of fs) await f()
  const times = fs.map((): Array<number> => [])
  for (let round = 0; round < count; round++) {
    for (let i = 0; i < fs.length; i++) times[i]!.push(await fs[i]!())
  }
  return times.map(median)
}

export const run = async () => {
  const [p4, rawP4, p4t, rawP4t, rawP4t1] = await rounds(11, [
    ours(Parallel.map([4], (x) => Math.sqrt(x))),
    raw("./workers/batch.mjs", undefined, { id: 0, items: [4] }),
    ours(Parallel.map([4], Root)),
    raw("./workers/task.mjs", { module: taskModule }, 4),
    raw("./workers/task.mjs", { module: taskModule }, 4, true)
  ])
  const rows: Array<Row> = [
    { workload: "P4 cold pool, first result (inline)", peer: "effect-joblib", ms: p4 },
    { workload: "P4 cold pool, first result (inline)", peer: "raw worker_threads", ms: rawP4 },
    { workload: "P4t cold pool, first result of a Task", peer: "effect-joblib", ms: p4t },
    {
      workload: "P4t cold pool, first result of a Task",
      peer: "raw worker_threads",
      ms: rawP4t,
      note: "every worker imports it"
    },
    {
      workload: "P4t cold pool, first result of a Task",
      peer: "raw worker_threads, one importing",
      ms: rawP4t1,
      note: "only the answering worker imports it"
    }
  ]
  console.log(table(rows, "effect-joblib"))
  console.log(
    `\nP4 ours ÷ raw: ${(p4! / rawP4!).toFixed(2)} (target ≤ 1.5); P4t ours ÷ raw: ${
      (p4t! / rawP4t!).toFixed(2)
    }, ÷ raw with one importing: ${(p4t! / rawP4t1!).toFixed(2)} (target ≤ 1.2)`
  )
}
