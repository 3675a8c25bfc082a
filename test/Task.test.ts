import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { Backend, Parallel, ParallelError, Task } from "../src/index.ts"
import { Negative, Scaled, SquareRoot } from "./fixtures/tasks.ts"
import { runNode } from "./subprocess.ts"

// Defined in this test file, which a worker cannot import outside vitest.
const Tripled = Task.make("Tripled", { payload: Schema.Number, success: Schema.Number, run: (x) => x * 3 })

const unguarded = new URL("./fixtures/unguarded.ts", import.meta.url)

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

  it("takes the same definition evaluated again (a module loaded by two loaders) as the same task", () => {
    const spec = { payload: Schema.Number, success: Schema.Number, run: (x: number) => x + 1 }
    const defined: Array<unknown> = []
    // One Task.make call, evaluated twice, as a test runner's loader and Node's each evaluate a module once.
    for (let i = 0; i < 2; i++) defined.push(Task.make("Reloaded", spec))
    assert.strictEqual(Task.lookup((defined[1] as Task.Task<number, number>).url, "Reloaded"), defined[1])
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
        Parallel.map([1], ghost).pipe(Effect.provide(Backend.layerThreads({ workers: 1 })))
      )
      assert.instanceOf(error, ParallelError.TaskNotFound)
      assert.strictEqual((error as ParallelError.TaskNotFound).task, "Ghost")
      assert.include(error.message, "nowhere")
    }))

  it.effect("a task defined in a test file runs sequentially, and fails before dispatch on workers", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* Parallel.map([1, 2], Tripled), [3, 6])
      for (const backend of [Backend.layerThreads({ workers: 1 }), Backend.layerProcesses({ workers: 1 })]) {
        const error = yield* Effect.flip(Parallel.map([1, 2], Tripled).pipe(Effect.provide(backend)))
        assert.instanceOf(error, ParallelError.TaskModuleError)
        const moduleError = error as ParallelError.TaskModuleError
        assert.strictEqual(moduleError.reason, "TestFile")
        assert.strictEqual(moduleError.module, Tripled.url)
        assert.include(moduleError.message, "Define the task in an ordinary module")
      }
    }))

  for (const backend of ["threads", "processes"] as const) {
    it.live(`a task module that runs its program unguarded fails fast with TaskModuleError (${backend})`, () =>
      Effect.gen(function*() {
        const { code, stdout } = yield* runNode(unguarded, [backend])
        assert.strictEqual(code, 0, stdout)
        assert.include(stdout, "TaskModuleError TopLevelProgram")
        assert.include(stdout, unguarded.href)
        assert.include(stdout, "import.meta.main")
        assert.notInclude(stdout, "values")
      }))
  }
})
