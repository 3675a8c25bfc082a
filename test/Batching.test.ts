import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Schedule } from "effect"
import { Batching } from "../src/index.ts"

const drive = (policy: Batching.BatchSize, observations: ReadonlyArray<Batching.Observation>) =>
  Effect.gen(function*() {
    const step = yield* Schedule.toStep(policy)
    const sizes: Array<number> = []
    for (const observation of [{ size: 0, duration: 0 }, ...observations]) {
      const [size, delay] = yield* step(0, observation)
      assert.isTrue(Duration.isZero(delay))
      sizes.push(size)
    }
    return sizes
  })

describe("Batching", () => {
  it.effect("auto starts at 1 and at most doubles while batches are fast", () =>
    Effect.gen(function*() {
      const sizes = yield* drive(Batching.auto, [
        { size: 1, duration: 0.01 },
        { size: 2, duration: 0.02 },
        { size: 4, duration: 0.04 }
      ])
      assert.deepStrictEqual(sizes, [1, 2, 4, 8])
    }))

  it.effect("auto grows only towards the 0.2 s target", () =>
    Effect.gen(function*() {
      // 1 item took 150 ms: ideal = 1 * 200 / 150 = 1, doubled to 2.
      assert.deepStrictEqual(yield* drive(Batching.auto, [{ size: 1, duration: 150 }]), [1, 2])
      // Between 0.2 s and 2 s nothing changes.
      assert.deepStrictEqual(yield* drive(Batching.auto, [{ size: 1, duration: 500 }]), [1, 1])
    }))

  it.effect("auto shrinks batches that take over 2 s", () =>
    Effect.gen(function*() {
      const sizes = yield* drive(Batching.auto, [
        { size: 1, duration: 1 },
        { size: 2, duration: 1 },
        { size: 4, duration: 8000 }
      ])
      // 4 items in 8 s: ideal = 4 * 0.2 / 8 = 0.1, times 2, at least 1.
      assert.deepStrictEqual(sizes, [1, 2, 4, 1])
    }))

  it.effect("auto ignores batches of an older size", () =>
    Effect.gen(function*() {
      const sizes = yield* drive(Batching.auto, [{ size: 1, duration: 1 }, { size: 1, duration: 5000 }])
      assert.deepStrictEqual(sizes, [1, 2, 2])
    }))

  it.effect("fixed never changes", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* drive(Batching.fixed(8), [{ size: 8, duration: 9000 }]), [8, 8])
    }))
})
