/**
 * `npm run bench -- cache`: C1–C4 of the Cache issue against joblib.Memory in
 * one run: hit latency for a small argument and for a 1 MB array argument,
 * miss cost for a 1 MB result, and SQLite hit latency at 1,000 and 1,000,000
 * entries.
 */
import { Effect, Layer } from "effect"
import { execFileSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { DatabaseSync } from "node:sqlite"
import { Cache } from "../src/index.ts"
import { median, now } from "./harness.ts"

const joblib = (): Record<string, number> | undefined => {
  try {
    return JSON.parse(execFileSync("/usr/bin/python3", [new URL("./joblib_cache.py", import.meta.url).pathname], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"]
    }))
  } catch {
    return undefined
  }
}

const RESULT = new Float64Array(131072).map(() => Math.random()) // 1 MB

const small = Cache.memoize(function small(x: number) {
  return x * 2
})
const summed = Cache.memoize(function summed(a: Float64Array) {
  return a[0]!
})
const big = Cache.memoize(function big(_i: number) {
  return RESULT
})

/**
 * Microseconds per call of `f`, the best of three rounds of `runs` calls, in one running Effect, after an
 * untimed round that lets the JIT compile the hot path (CPython, on joblib's side, has none to warm).
 */
const perCall = (
  layer: Layer.Layer<Cache.Cache, unknown>,
  f: (i: number) => Effect.Effect<unknown, unknown, Cache.Cache>,
  runs: number
) =>
  Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const context = yield* Layer.build(layer)
    const rounds: Array<number> = []
    let offset = 0
    for (let i = 0; i < runs; i++) yield* Effect.provide(f(-1 - i), context)
    for (let round = 0; round < 3; round++) {
      const start = now()
      for (let i = 0; i < runs; i++) yield* Effect.provide(f(offset + i), context)
      rounds.push(((now() - start) / runs) * 1000)
      offset += runs
    }
    return Math.min(...rounds)
  })))

/**
 * Hits per timed round: a round of a few milliseconds would time code the JIT is still compiling, and C1 is
 * about the steady state of a hot cache.
 */
const C1_RUNS = 20_000

const tmp = () => Fs.mkdtempSync(Path.join(Os.tmpdir(), "ejl-bench-cache-"))

/** Fills a SQLite cache file with `n` small entries, straight through SQL (the store's schema). */
const populate = async (file: string, n: number) => {
  await Effect.runPromise(Effect.scoped(Effect.provide(small(1), Cache.layerSqlite(file))))
  const db = new DatabaseSync(file)
  const template = db.prepare("SELECT meta, data FROM entries LIMIT 1").get() as { meta: string; data: Uint8Array }
  const insert = db.prepare("INSERT OR IGNORE INTO entries (key, meta, data, size, accessed) VALUES (?, ?, ?, ?, ?)")
  db.exec("BEGIN")
  for (let i = 0; i < n; i++) {
    const key = `xxh128:${i.toString(16).padStart(32, "0")}`
    const meta = JSON.parse(template.meta)
    insert.run(key, JSON.stringify({ ...meta, key }), template.data, template.data.length, Date.now())
  }
  db.exec("COMMIT")
  db.close()
}

export const run = async () => {
  const peer = joblib()
  const fsLayer = () => Cache.layerFileSystem(tmp())
  const sqliteLayer = () => Cache.layerSqlite(Path.join(tmp(), "cache.sqlite"))
  const array = new Float64Array(131072).map(() => Math.random())
  const rows: Array<[string, string, number, number | undefined, string]> = []

  const c1Fs = await perCall(fsLayer(), () => small(7), C1_RUNS)
  const c1Sqlite = await perCall(sqliteLayer(), () => small(7), C1_RUNS)
  const c1Memory = await perCall(Cache.layerMemory(), () => small(7), C1_RUNS)
  const c2Fs = await perCall(fsLayer(), () => summed(array), 300)
  const c2Sqlite = await perCall(sqliteLayer(), () => summed(array), 300)
  // Misses: a new argument every call, the result already computed.
  const c3Fs = await perCall(fsLayer(), (i) => big(i), 100)
  const c3Sqlite = await perCall(sqliteLayer(), (i) => big(i), 100)
  rows.push(
    ["C1 hit, small int", "filesystem", c1Fs, peer?.C1, "target ≤ 0.2"],
    ["C1 hit, small int", "sqlite", c1Sqlite, peer?.C1, "target ≤ 0.2"],
    ["C1 hit, small int", "memory", c1Memory, peer?.C1, ""],
    ["C2 hit, 1 MB Float64Array argument", "filesystem", c2Fs, peer?.C2, "target ≤ 0.2"],
    ["C2 hit, 1 MB Float64Array argument", "sqlite", c2Sqlite, peer?.C2, "target ≤ 0.2"],
    ["C3 miss, 1 MB result (compute excluded)", "filesystem", c3Fs, peer?.C3, "target ≤ 1"],
    ["C3 miss, 1 MB result (compute excluded)", "sqlite", c3Sqlite, peer?.C3, "target ≤ 1"]
  )
  console.log("| workload | store | effect-joblib µs | joblib.Memory µs | ours ÷ joblib | |")
  console.log("|---|---|---:|---:|---:|---|")
  for (const [workload, store, ours, theirs, note] of rows) {
    console.log(
      `| ${workload} | ${store} | ${ours.toFixed(1)} | ${theirs?.toFixed(1) ?? "n/a"} | ${
        theirs === undefined ? "" : (ours / theirs).toFixed(2)
      } | ${note} |`
    )
  }

  // C4: SQLite hit latency with 1,000 and with 1,000,000 entries.
  const hits: Record<number, number> = {}
  for (const n of [1_000, 1_000_000]) {
    const file = Path.join(tmp(), "cache.sqlite")
    await populate(file, n)
    hits[n] = await perCall(Cache.layerSqlite(file), () => small(1), C1_RUNS)
  }
  console.log()
  console.log(
    `C4 SQLite hit at 1,000 entries ${hits[1_000]!.toFixed(1)} µs, at 1,000,000 ${hits[1_000_000]!.toFixed(1)} µs: ` +
      `ratio ${(hits[1_000_000]! / hits[1_000]!).toFixed(2)} (target ≤ 2)`
  )
  if (peer === undefined) console.log("joblib: /usr/bin/python3 with joblib and numpy not found")
  void median
}
