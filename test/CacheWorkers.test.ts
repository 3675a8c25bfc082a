/**
 * A memoized Task in real workers: one computation per key across threads and
 * processes, and maps that resume where an interrupted run stopped.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { Backend, Cache, Parallel } from "../src/index.ts"
import { CachedCounted, CachedScaled } from "./fixtures/tasks.ts"

const computed = (dir: string) => {
  try {
    return Fs.readFileSync(Path.join(dir, "computed"), "utf8").trim().split("\n").filter((l) => l !== "").map(Number)
  } catch {
    return []
  }
}

/** A fresh scratch directory and cache directory; workers find the cache through the environment. */
const scratch = () => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "ejl-cache-workers-"))
  process.env.EJL_TEST_CACHE = Path.join(dir, "cache")
  return dir
}

describe.each(
  [
    ["sequential", () => Backend.layerSequential({ concurrency: 4 })],
    ["threads", () => Backend.layerThreads({ workers: 2 })],
    ["processes", () => Backend.layerProcesses({ workers: 2 })]
  ] as const
)("a memoized Task on %s", (_name, backend) => {
  it.live("every worker asking for one missing key waits for a single computation", () =>
    Effect.gen(function*() {
      const dir = scratch()
      const items = Array.from({ length: 8 }, () => ({ dir, x: 7, ms: 150 }))
      const results = yield* Parallel.map(items, CachedCounted, { batchSize: 1 }).pipe(Effect.provide(backend()))
      assert.deepStrictEqual(results, items.map(() => 14))
      assert.deepStrictEqual(computed(dir), [7], "computed once, by one worker")
    }), 30_000)

  it.live("a memoized task keeps its own layer, built once per worker", () =>
    Effect.gen(function*() {
      scratch()
      const items = Array.from({ length: 12 }, (_, i) => i)
      const out = yield* Parallel.map(items, CachedScaled, { batchSize: 1 }).pipe(Effect.provide(backend()))
      assert.deepStrictEqual(out.map((o) => o.value), items.map((i) => i * 10))
      assert.isAtMost(new Set(out.map((o) => o.initialized)).size, 2, "at most one initialization per worker")
    }), 30_000)

  it.live("an interrupted map, run again, recomputes only the items it had not finished", () =>
    Effect.gen(function*() {
      const dir = scratch()
      const items = Array.from({ length: 16 }, (_, x) => ({ dir, x, ms: 40 }))
      const first = yield* Effect.forkChild(
        Parallel.map(items, CachedCounted, { batchSize: 1 }).pipe(Effect.provide(backend()))
      )
      // Interrupt once a few items have finished (workers first have to start and load the task).
      while (computed(dir).length < 6) yield* Effect.sleep(10)
      yield* Effect.sleep(50)
      yield* Fiber.interrupt(first)
      const firstRun = computed(dir)
      const stored = (yield* Cache.stats.pipe(Effect.provide(Cache.layerFileSystem(process.env.EJL_TEST_CACHE!)))).items
      assert.isAbove(stored, 0, "some items finished before the interruption")
      assert.isBelow(stored, 16, "and some did not")
      const results = yield* Parallel.map(items, CachedCounted, { batchSize: 1 }).pipe(Effect.provide(backend()))
      assert.deepStrictEqual(results, items.map(({ x }) => x * 2))
      const secondRun = computed(dir).slice(firstRun.length)
      assert.strictEqual(secondRun.length, 16 - stored, "only the missing items were computed again")
    }), 30_000)
})
