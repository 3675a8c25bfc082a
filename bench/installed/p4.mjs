// P4 from the installed package: a cold pool, from creating it to the first result of a one-item map,
// against a raw worker_threads pool of the same size, interleaved round by round. Prints JSON medians.
import { Effect, Layer } from "effect"
import { Backend, Parallel } from "effect-joblib"
import { Worker } from "node:worker_threads"

const WORKERS = 2
const ROUNDS = Number(process.argv[2] ?? 15)
const rawWorker = `
const { parentPort } = require("node:worker_threads")
parentPort.on("message", ({ id, items }) => parentPort.postMessage({ id, out: items.map((x) => Math.sqrt(x)) }))
parentPort.postMessage("ready")`

const ours = () =>
  Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const context = yield* Layer.build(Backend.layerThreads({ workers: WORKERS }))
    return yield* Effect.provide(Parallel.map([4], (x) => Math.sqrt(x)), context)
  })))

const raw = async () => {
  const workers = Array.from({ length: WORKERS }, () => new Worker(rawWorker, { eval: true }))
  await Promise.all(workers.map((worker) => new Promise((resolve) => worker.once("message", resolve))))
  const out = await new Promise((resolve) => {
    workers[0].once("message", ({ out }) => resolve(out))
    workers[0].postMessage({ id: 1, items: [4] })
  })
  await Promise.all(workers.map((worker) => worker.terminate()))
  return out
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const times = { ours: [], raw: [] }
await ours()
await raw()
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, f] of [["ours", ours], ["raw", raw]]) {
    const start = performance.now()
    await f()
    times[name].push(performance.now() - start)
  }
}
console.log(JSON.stringify({ ours: median(times.ours), raw: median(times.raw) }))
