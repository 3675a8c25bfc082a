/**
 * Batches are capped in items and in bytes whatever the batching policy asks, so that a stream's memory
 * follows its options and the weight of its items, never the length of its input.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import { Backend, Batching, Parallel } from "../src/index.ts"
import { MAX_BATCH_BYTES, MAX_BATCH_ITEMS } from "../src/internal/parallel/engine.ts"
import { estimateBytes } from "../src/internal/parallel/sizeEstimate.ts"
import { recordBatches } from "./BackendSuite.ts"

const MB = 1024 * 1024

describe("batch caps", () => {
  it.effect("a fixed batch size larger than the item cap is cut to it", () =>
    Effect.gen(function*() {
      const record = recordBatches()
      const n = MAX_BATCH_ITEMS * 2 + 5
      const count = yield* Stream.runCount(
        Parallel.stream(Stream.range(1, n), (x: number) => x + 1, { batchSize: Batching.fixed(10 * MAX_BATCH_ITEMS) })
      ).pipe(record.provide, Effect.provide(Backend.layerSequential()))
      assert.strictEqual(count, n)
      assert.deepStrictEqual(record.dispatched.map((b) => b.size), [MAX_BATCH_ITEMS, MAX_BATCH_ITEMS, 5])
    }))

  it.effect("heavy inputs are cut by bytes", () =>
    Effect.gen(function*() {
      const record = recordBatches()
      const items = Stream.range(1, 40).pipe(Stream.map((i) => new Uint8Array(MB).fill(i)))
      const sums = yield* Stream.runCollect(
        Parallel.stream(items, (bytes: Uint8Array) => bytes[0]! + bytes[MB - 1]!, { batchSize: Batching.fixed(1000) })
      ).pipe(record.provide, Effect.provide(Backend.layerSequential()))
      assert.deepStrictEqual(sums, Array.from({ length: 40 }, (_, i) => 2 * (i + 1)))
      const perBatch = Math.floor(MAX_BATCH_BYTES / MB)
      assert.isAbove(record.dispatched.length, 1)
      for (const batch of record.dispatched) assert.isAtMost(batch.size, perBatch)
    }))

  it.effect("heavy outputs cut the batches after them", () =>
    Effect.gen(function*() {
      const record = recordBatches()
      const output = 256 * 1024
      const count = yield* Stream.runCount(
        Parallel.stream(Stream.range(1, 300), (i: number) => "x".repeat(output) + i, { batchSize: Batching.fixed(50) })
      ).pipe(record.provide, Effect.provide(Backend.layerSequential()))
      assert.strictEqual(count, 300)
      // Batches sized before the first output was seen may be whole; every later one knows an output's weight.
      const sizes = record.dispatched.map((b) => b.size)
      assert.isAtLeast(sizes.length, 10)
      for (const size of sizes.slice(2)) assert.isAtMost(size, Math.floor(MAX_BATCH_BYTES / output))
    }))

  it("estimates sizes by sampling, at a bounded cost", () => {
    assert.isAtLeast(estimateBytes(new Float64Array(1000)), 8000)
    assert.isAtLeast(estimateBytes("a".repeat(5000)), 5000)
    const big = Array.from({ length: 100_000 }, (_, i) => ({ id: i, name: `item ${i}` }))
    const estimate = estimateBytes(big)
    assert.isAbove(estimate, 100_000 * 20)
    assert.isBelow(estimate, 100_000 * 200)
    assert.isAtLeast(estimateBytes(new Map([["k", new Uint8Array(4096)]])), 4096)
    // A deep chain costs its budget, not its depth.
    let deep: object = {}
    for (let i = 0; i < 100_000; i++) deep = { next: deep }
    assert.isBelow(estimateBytes(deep), 100_000)
  })
})
