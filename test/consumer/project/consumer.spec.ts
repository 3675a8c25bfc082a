// The consumer's own vitest: swapping backends by providing a Layer, with a Task from the consumer's module.
import { Effect, Schema } from "effect"
import { Backend, Parallel, ParallelError, Task } from "effect-joblib"
import { assert, describe, it } from "vitest"
import { Square } from "./tasks.ts"

// A Task in the test file itself, which a worker cannot import outside vitest.
const InTest = Task.make("InTest", { payload: Schema.Number, success: Schema.Number, run: (x) => x + 100 })

const backends = [
  ["sequential", Backend.layerSequential()],
  ["threads", Backend.layerThreads({ workers: 2 })],
  ["processes", Backend.layerProcesses({ workers: 2 })]
] as const

describe("a consumer's tests", () => {
  for (const [name, backend] of backends) {
    it(`runs the consumer's Task on ${name}`, async () => {
      const squares = await Effect.runPromise(Parallel.map([1, 2, 3], Square).pipe(Effect.provide(backend)))
      assert.deepStrictEqual(squares, [1, 4, 9])
    })
  }

  it("runs a test file's Task sequentially, and refuses it on threads with a typed error", async () => {
    assert.deepStrictEqual(await Effect.runPromise(Parallel.map([1], InTest)), [101])
    const error = await Effect.runPromise(
      Effect.flip(Parallel.map([1], InTest).pipe(Effect.provide(Backend.layerThreads({ workers: 1 }))))
    )
    assert.instanceOf(error, ParallelError.TaskModuleError)
    assert.include(error.message, "Define the task in an ordinary module")
  })
})
