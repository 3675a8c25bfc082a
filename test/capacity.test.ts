/**
 * The engine follows a runner whose capacity changes during a map (Remote: the workers connected): it keeps as
 * many batches in flight as the capacity allows, grows when it grows, and never past a concurrency asked for.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { Batching } from "../src/index.ts"
import { type EngineOptions, forEachBatch } from "../src/internal/parallel/engine.ts"
import { makeSettled, makeSlotCounts } from "../src/internal/parallel/outcome.ts"
import type { Runner } from "../src/internal/parallel/runner.ts"

/**
 * A runner of 16 slots whose capacity is 2 until `grow` sets it to 5. Each batch takes 20 ms: long enough
 * that the engine runs one per slot rather than pipelining two.
 */
const elasticRunner = () => {
  const { counted, outstanding, settled } = makeSlotCounts(16)
  const changed = makeSettled()
  let capacity = 2
  const state = { inFlight: 0, max: 0 }
  const runner: Runner<number, number, never> = {
    slots: 16,
    capacity: () => capacity,
    outstanding,
    settled: Effect.raceFirst(settled, changed.wait),
    batchState: undefined,
    restarts: () => 0,
    run: (slot, items) =>
      counted(
        slot,
        Effect.suspend(() => {
          state.max = Math.max(state.max, ++state.inFlight)
          return Effect.as(Effect.sleep(20), { _tag: "Values" as const, values: items, duration: 20 })
        }).pipe(Effect.ensuring(Effect.sync(() => state.inFlight--)))
      )
  }
  const grow = () => {
    capacity = 5
    state.max = 0
    changed.notify()
  }
  return { runner, state, grow }
}

const options = (given: EngineOptions["given"]): EngineOptions => ({
  concurrency: 2,
  preDispatch: 4,
  preDispatchPerWorker: 2,
  given,
  batchSize: Batching.fixed(1),
  splitTail: false,
  failFast: true,
  ordered: false,
  timeout: undefined,
  retry: undefined,
  observer: undefined
})

const run = (given: EngineOptions["given"]) =>
  Effect.gen(function*() {
    const { grow, runner, state } = elasticRunner()
    let done = 0
    let before = 0
    yield* forEachBatch<number, number, never, never, never>(
      Array.from({ length: 60 }, (_, i) => i),
      runner,
      options(given),
      () =>
        Effect.sync(() => {
          if (++done === 10) {
            before = state.max
            grow()
          }
        })
    ).pipe(Effect.scoped)
    return { before, after: state.max }
  })

describe("a runner's changing capacity", () => {
  it.live("a map keeps the capacity busy and grows with it", () =>
    Effect.gen(function*() {
      const { after, before } = yield* run({ concurrency: undefined })
      assert.strictEqual(before, 2)
      assert.strictEqual(after, 5)
    }))

  it.live("a concurrency asked for caps it, without freezing it at the capacity the map started with", () =>
    Effect.gen(function*() {
      const { after, before } = yield* run({ concurrency: 3 })
      assert.strictEqual(before, 2)
      assert.strictEqual(after, 3)
    }))
})

describe("a runner's target batch length", () => {
  it.effect("automatic batching jumps to it once it knows how long an item takes", () =>
    Effect.gen(function*() {
      const { counted, outstanding, settled } = makeSlotCounts(1)
      const sizes: Array<number> = []
      const runner: Runner<number, number, never> = {
        slots: 1,
        outstanding,
        settled,
        batchState: undefined,
        restarts: () => 0,
        targetBatchMillis: 100,
        // Each item reports 2 ms of work.
        run: (slot, items) =>
          counted(
            slot,
            Effect.sync(() => {
              sizes.push(items.length)
              return { _tag: "Values" as const, values: items, duration: 2 * items.length }
            })
          )
      }
      yield* forEachBatch<number, number, never, never, never>(
        Array.from({ length: 1000 }, (_, i) => i),
        runner,
        { ...options(undefined), concurrency: 1, batchSize: Batching.auto, splitTail: true },
        () => Effect.void
      ).pipe(Effect.scoped)
      assert.strictEqual(sizes[0], 1, "cold: one item")
      assert.strictEqual(sizes[1], 50, "then 100 ms of work")
      assert.strictEqual(sizes.reduce((a, b) => a + b, 0), 1000)
    }))
})
