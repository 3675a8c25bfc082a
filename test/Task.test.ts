import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { Parallel, ParallelError, Task } from "../src/index.ts"
import { Negative, Scaled, SquareRoot } from "./fixtures/tasks.ts"

describe("Task", () => {
  it("records the module that defined it", () => {
    assert.isTrue(SquareRoot.url.startsWith("file://"))
    assert.isTrue(SquareRoot.url.endsWith("/test/fixtures/tasks.ts"))
    assert.strictEqual(Task.lookup(SquareRoot.url, "SquareRoot"), SquareRoot)
    assert.isTrue(Task.isTask(SquareRoot))
    assert.isFalse(Task.isTask((x: number) => x))
  })

  it("refuses two tasks of one name in one module", () => {
    const spec = { payload: Schema.Number, success: Schema.Number, run: (x: number) => x }
    Task.make("Twice", spec)
    assert.throws(() => Task.make("Twice", spec), /already defines a task of that name/)
  })

  it.effect("runOnce runs a task in place, with its layer", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* Task.runOnce(SquareRoot, 16), 4)
      assert.instanceOf(yield* Effect.flip(Task.runOnce(SquareRoot, -1)), Negative)
      assert.strictEqual((yield* Task.runOnce(Scaled, 2)).value, 20)
    }))

  it.effect("a task whose module cannot be found fails with TaskNotFound", () =>
    Effect.gen(function*() {
      const ghost = Task.make("Ghost", {
        payload: Schema.Number,
        success: Schema.Number,
        run: (x) => x,
        url: "file:///nowhere/tasks.ts"
      })
      const { Backend } = yield* Effect.promise(() => import("../src/index.ts"))
      const error = yield* Effect.flip(
        Parallel.map([1], ghost).pipe(Effect.provide(Backend.threads({ workers: 1 })))
      )
      assert.instanceOf(error, ParallelError.TaskNotFound)
      assert.strictEqual((error as ParallelError.TaskNotFound).task, "Ghost")
      assert.include(error.message, "nowhere")
    }))
})
