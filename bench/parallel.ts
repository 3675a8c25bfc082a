/**
 * `npm run bench -- parallel`: P1–P4 of the Parallel core issue, against raw
 * worker_threads (hand-batched), piscina, tinypool and joblib (loky) in one run,
 * all on 2 workers.
 */
import { Effect, Layer } from "effect"
import { execFileSync } from "node:child_process"
import { Worker } from "node:worker_threads"
import { Piscina } from "piscina"
import { Tinypool } from "tinypool"
import { Backend, Parallel } from "../src/index.ts"
import { interleaved, measure, now, roundRobin, type Row, table } from "./harness.ts"
import { joblib, parallelInputs, spin, sum } from "./workloads.ts"

const WORKERS = 2
const workerFile = (name: string) => new URL(`./workers/${name}.mjs`, import.meta.url).href

/** A raw worker_threads pool with hand-made batches: the floor any library pays. */
const rawPool = async () => {
  const workers = Array.from({ length: WORKERS }, () => new Worker(new URL("./workers/batch.mjs", import.meta.url)))
  await Promise.all(workers.map((w) => new Promise((resolve) => w.once("message", resolve))))
  const dispatch = roundRobin(workers)
  const run = (items: ReadonlyArray<number>, batch: number) =>
    dispatch<number>(items, batch, (worker, id, part) => worker.postMessage({ id, items: part }))
  return { run, close: () => Promise.all(workers.map((w) => w.terminate())) }
}

export const run = async () => {
  const rows: Array<Row> = []
  const { xs, spins, arrays } = parallelInputs()

  // Ours: one warm pool for P1–P3, as a user's scoped Layer would give. Peers whose ratio has a
  // target run interleaved with ours, round by round, so that machine noise hits both alike.
  const raw = await rawPool()
  const ours = await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const context = yield* Layer.build(Backend.layerThreads({ workers: WORKERS }))
    const go = <A>(effect: Effect.Effect<A, unknown>) => Effect.runPromise(Effect.provide(effect, context))
    const [p1, rawP1] = yield* Effect.promise(() =>
      interleaved(21, [
        () => go(Parallel.map(xs, (x) => Math.sqrt(x * x))),
        () => raw.run(xs, Math.ceil(xs.length / (4 * WORKERS)))
      ])
    )
    const [p2, sequentialP2] = yield* Effect.promise(() =>
      interleaved(3, [
        () => go(Parallel.map(spins, spin)),
        () => spins.map(spin)
      ])
    )
    const p3 = yield* Effect.promise(() => measure(5, () => go(Parallel.map(arrays, sum))))
    const intact = arrays.every((a) => a.length === 1_000_000 && !(a.buffer instanceof SharedArrayBuffer))
    // The zero-copy path: inputs the caller already keeps in shared memory (e.g. from Persist.load into shared memory).
    const shared = arrays.map((a) => {
      const copy = new Float64Array(new SharedArrayBuffer(a.byteLength))
      copy.set(a)
      return copy
    })
    const p3Shared = yield* Effect.promise(() => measure(5, () => go(Parallel.map(shared, sum))))
    // transfer: true moves the arrays, as piscina's transferList does: fresh copies each run, made before timing.
    const p3MoveTimes: Array<number> = []
    for (let r = 0; r < 6; r++) {
      const copies = arrays.map((a) => a.slice())
      const start = now()
      yield* Effect.promise(() => go(Parallel.map(copies, sum, { transfer: true })))
      if (r > 0) p3MoveTimes.push(now() - start)
    }
    const p3Move = p3MoveTimes.sort((a, b) => a - b)[Math.floor(p3MoveTimes.length / 2)]!
    // S1: one 1.5 s task among 20 of 10 ms (sleeps): the ideal wall time is 1.5 s.
    const naps = Array.from({ length: 21 }, (_, i) => i)
    const s1 = yield* Effect.promise(() =>
      measure(
        3,
        () => go(Parallel.map(naps, (i) => new Promise((resolve) => setTimeout(() => resolve(i), i === 1 ? 1500 : 10))))
      )
    )
    return { p1, rawP1, p2, sequentialP2, p3, p3Shared, p3Move, s1, intact }
  })))
  const { rawP1, sequentialP2 } = ours
  await raw.close()

  const piscina = new Piscina({ filename: workerFile("sqrt"), minThreads: WORKERS, maxThreads: WORKERS })
  const piscinaP1 = await measure(1, () => Promise.all(xs.map((x) => piscina.run(x))))
  await piscina.destroy()
  const piscinaSpin = new Piscina({ filename: workerFile("spin"), minThreads: WORKERS, maxThreads: WORKERS })
  const piscinaP2 = await measure(3, () => Promise.all(spins.map((n) => piscinaSpin.run(n))))
  await piscinaSpin.destroy()
  const piscinaSum = new Piscina({ filename: workerFile("sum"), minThreads: WORKERS, maxThreads: WORKERS })
  // Piscina moves each array (its caller loses it), so every run gets fresh copies, made before timing.
  const piscinaP3Times: Array<number> = []
  for (let r = 0; r < 6; r++) {
    const copies = arrays.map((a) => a.slice())
    const start = now()
    await Promise.all(copies.map((a) => piscinaSum.run(a, { transferList: [a.buffer] })))
    if (r > 0) piscinaP3Times.push(now() - start)
  }
  // To keep its arrays, a piscina caller must copy them before moving them.
  const piscinaP3Keep = await measure(3, () =>
    Promise.all(arrays.map((a) => {
      const copy = a.slice()
      return piscinaSum.run(copy, { transferList: [copy.buffer] })
    })))
  await piscinaSum.destroy()
  const piscinaP3 = piscinaP3Times.sort((a, b) => a - b)[Math.floor(piscinaP3Times.length / 2)]!

  const tinypool = new Tinypool({ filename: workerFile("sqrt"), minThreads: WORKERS, maxThreads: WORKERS })
  const tinypoolP1 = await measure(1, () => Promise.all(xs.map((x) => tinypool.run(x))))
  await tinypool.destroy()
  const tinypoolSum = new Tinypool({ filename: workerFile("sum"), minThreads: WORKERS, maxThreads: WORKERS })
  const tinypoolP3 = await measure(3, () => Promise.all(arrays.map((a) => tinypoolSum.run(a))))
  await tinypoolSum.destroy()

  // P4: a cold pool, from creating it to the first result of a 1-item map.
  const oursP4 = await measure(5, () =>
    Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const start = now()
      const context = yield* Layer.build(Backend.layerThreads({ workers: WORKERS }))
      yield* Effect.provide(Parallel.map([4], (x) => Math.sqrt(x)), context)
      return now() - start
    }))), 1)
  const rawP4 = await measure(5, async () => {
    const pool = await rawPool()
    await pool.run([4], 1)
    await pool.close()
  }, 1)
  const piscinaP4 = await measure(5, async () => {
    const pool = new Piscina({ filename: workerFile("sqrt"), minThreads: WORKERS, maxThreads: WORKERS })
    await pool.run(4)
    await pool.destroy()
  }, 1)

  const warm = joblib("warm")
  const cold = joblib("cold")

  rows.push(
    { workload: "P1 100k × sqrt(x*x)", peer: "effect-joblib", ms: ours.p1, note: "threads, default options" },
    { workload: "P1 100k × sqrt(x*x)", peer: "raw worker_threads", ms: rawP1, note: "hand-batched, 8 batches" },
    { workload: "P1 100k × sqrt(x*x)", peer: "piscina", ms: piscinaP1, note: "one task per item" },
    { workload: "P1 100k × sqrt(x*x)", peer: "tinypool", ms: tinypoolP1, note: "one task per item" },
    { workload: "P1 100k × sqrt(x*x)", peer: "joblib loky", ms: warm?.P1, note: "batch_size=auto" },
    { workload: "S1 1 × 1.5 s among 20 × 10 ms", peer: "effect-joblib", ms: ours.s1, note: "ideal 1500" },
    { workload: "S1 1 × 1.5 s among 20 × 10 ms", peer: "joblib loky", ms: warm?.S1, note: "ideal 1500" },
    { workload: "P2 200 × 10 ms CPU", peer: "effect-joblib", ms: ours.p2 },
    { workload: "P2 200 × 10 ms CPU", peer: "sequential loop", ms: sequentialP2, note: "same process" },
    { workload: "P2 200 × 10 ms CPU", peer: "piscina", ms: piscinaP2 },
    { workload: "P2 200 × 10 ms CPU", peer: "joblib loky", ms: warm?.P2 },
    { workload: "P3 50 × sum(8 MB Float64Array)", peer: "effect-joblib", ms: ours.p3, note: "caller's arrays intact" },
    {
      workload: "P3 50 × sum(8 MB Float64Array)",
      peer: "effect-joblib, transfer: true",
      ms: ours.p3Move,
      note: "arrays moved, caller loses them"
    },
    {
      workload: "P3 50 × sum(8 MB Float64Array)",
      peer: "piscina",
      ms: piscinaP3,
      note: "transferList, caller loses arrays"
    },
    { workload: "P3 50 × sum(8 MB Float64Array)", peer: "tinypool", ms: tinypoolP3, note: "structured clone" },
    { workload: "P3 50 × sum(8 MB Float64Array)", peer: "joblib loky", ms: warm?.P3, note: "numpy, memmapped" },
    {
      workload: "P3 50 × sum(8 MB Float64Array)",
      peer: "piscina, caller keeps arrays",
      ms: piscinaP3Keep,
      note: "slice() then transferList"
    },
    {
      workload: "P3s same, inputs in shared memory",
      peer: "effect-joblib",
      ms: ours.p3Shared,
      note: "SharedArrayBuffer-backed, zero copy"
    },
    {
      workload: "P3s same, inputs in shared memory",
      peer: "piscina",
      ms: piscinaP3,
      note: "transferList, caller loses arrays"
    },
    { workload: "P4 cold pool, first result", peer: "effect-joblib", ms: oursP4 },
    { workload: "P4 cold pool, first result", peer: "raw worker_threads", ms: rawP4 },
    { workload: "P4 cold pool, first result", peer: "piscina", ms: piscinaP4 },
    { workload: "P4 cold pool, first result", peer: "joblib loky", ms: cold?.P4, note: "fresh process" }
  )
  console.log(table(rows, "effect-joblib"))
  console.log()
  console.log(`P2 speedup over the sequential loop: ${(sequentialP2 / ours.p2).toFixed(2)}x (target ≥ 1.90)`)
  if (warm?.P2_sequential !== undefined) {
    console.log(`joblib P2 speedup over its own sequential loop: ${(warm.P2_sequential / warm.P2).toFixed(2)}x`)
  }
  console.log(`P3 caller's arrays intact after our maps: ${ours.intact}`)
  if (warm === undefined) {
    console.log(
      "joblib: /usr/bin/python3 with joblib and numpy not found (apt-get install python3-joblib python3-numpy)"
    )
  }
  await huge()
}

/**
 * P5: huge inputs. Each measurement is a process of its own, so that its peak RSS is its own; the last
 * column is time per item against Parallel.map's on the same input.
 */
export const huge = async () => {
  const measure = (n: number, kind: string, heapMb?: number) =>
    JSON.parse(
      execFileSync(
        process.execPath,
        [
          ...(heapMb === undefined ? [] : [`--max-old-space-size=${heapMb}`]),
          new URL("./p5.ts", import.meta.url).pathname,
          String(n),
          kind
        ],
        { encoding: "utf8" }
      )
    ) as { ms: number; maxRssMb: number }
  // A warm pool that ran three items: what every row's process holds before its input.
  const idle = measure(3, "map").maxRssMb
  const lines = [
    "| workload | implementation | ms | ns per item | peak RSS | per item ÷ Parallel.map |",
    "|---|---|---:|---:|---:|---:|"
  ]
  const peaks: Record<string, number> = {}
  for (const n of [1_000_000, 10_000_000]) {
    const map = measure(n, "map")
    const rows: Array<readonly [string, { ms: number; maxRssMb: number } | undefined]> = [
      ["Parallel.map", map],
      ["Parallel.stream (ordered)", measure(n, "stream")],
      ["Parallel.stream (ordered), 128 MB heap", measure(n, "stream", 128)],
      ["Parallel.stream (unordered)", measure(n, "unordered")],
      ["Stream.map in one process (the floor)", measure(n, "baseline")]
    ]
    if (n === 1_000_000) {
      const joblib = joblibP5(n)
      rows.push([
        `joblib loky, ${joblib?.generator ? `return_as="generator"` : "a list (no return_as before 1.3)"}`,
        joblib
      ])
    }
    for (const [name, got] of rows) {
      if (got !== undefined) peaks[`${name} ${n}`] = got.maxRssMb
      lines.push(
        got === undefined
          ? `| P5 ${n / 1e6}M × sqrt(x*x) | ${name} | n/a | | | |`
          : `| P5 ${n / 1e6}M × sqrt(x*x) | ${name} | ${got.ms.toFixed(0)} | ${(got.ms * 1e6 / n).toFixed(0)} | ${
            got.maxRssMb.toFixed(0)
          } MB | ${(got.ms / map.ms).toFixed(2)} |`
      )
    }
  }
  const growth = (name: string) => (peaks[`${name} 10000000`]! / peaks[`${name} 1000000`]!).toFixed(2)
  const inputAndOutputMb = (10_000_000 * 8 * 2) / 2 ** 20
  console.log()
  console.log(lines.join("\n"))
  console.log()
  console.log(
    `Idle pool: ${idle.toFixed(0)} MB. Peak RSS at 10M ÷ at 1M: stream ${growth("Parallel.stream (ordered)")}, ` +
      `stream in a 128 MB heap ${growth("Parallel.stream (ordered), 128 MB heap")}. ` +
      `Parallel.map at 10M above the idle pool ÷ input and output arrays (${inputAndOutputMb.toFixed(0)} MB): ` +
      `${((peaks["Parallel.map 10000000"]! - idle) / inputAndOutputMb).toFixed(2)}`
  )
}

const joblibP5 = (n: number) => {
  try {
    const out = execFileSync("/usr/bin/python3", [
      new URL("./joblib_parallel.py", import.meta.url).pathname,
      "p5",
      String(n)
    ], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })
    return JSON.parse(out) as { ms: number; maxRssMb: number; generator: boolean }
  } catch {
    return undefined
  }
}
